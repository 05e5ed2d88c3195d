// The control plane's one view of the running dataplane: the only owner of
// the attachment to the stats region (lib/shm_region.h) that lb-dataplane
// writes. Everything the control plane learns from the lcores goes through
// here, as structured results:
//   - reclamation / observed generation: which live lcores still hold a
//     table slot, whether their heartbeat stalled (stuck), whether they
//     refused the generation asked for (lib/slot_verify.h: then waiting is
//     pointless and the wait returns at once), and a bounded wait for them
//     to move on (the publisher before reusing a slot, the control plane
//     after a publish, for api -> lcores latency);
//   - counter sums over all lcores: per backend slot, per VIP and backend of
//     a published table slot (queries, drains, metrics);
//   - per-lcore status (online, heartbeat, observed generation, counters).
//
// The region is attached lazily and re-attached when the file or its writer
// changed (a restarted dataplane re-creates it); a missing file means no
// dataplane ever ran. A region that exists but does not validate is
// reported as kUnusable: the publisher must refuse to reuse a slot then,
// queries read zeros.
//
// Threads: every method is thread-safe. The view's mutex is a leaf lock (it
// is held only to check or swap the attachment; nothing is called under it),
// so callers may hold their own locks. Waits poll without it.
#ifndef LB_CONTROLPLANE_DATAPLANE_VIEW_H_
#define LB_CONTROLPLANE_DATAPLANE_VIEW_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "lb/v1/admin.pb.h"
#include "lib/shm_region.h"

namespace lb {

// One backend slot's counters summed over every lcore.
struct BackendCountersSum {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t new_flows = 0;
  uint64_t active_flows = 0;  // 0 unless the dataplane process is alive
  uint64_t full_skips = 0;    // new flows sent elsewhere: at max_connections
};

// Traffic counters summed over every lcore, keyed by the operator-visible
// ids of a published table slot.
struct TrafficCounters {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t new_flows = 0;
  uint64_t drops = 0;         // VIPs only
  uint64_t active_flows = 0;  // backends only (gauge)
  uint64_t full_skips = 0;    // backends only: skipped at max_connections
};
struct TrafficSnapshot {
  std::map<uint32_t, TrafficCounters> vips;      // by vip_id
  std::map<uint32_t, TrafficCounters> backends;  // by backend_id
};

// A live lcore that has not yet observed the generation asked for.
struct LcoreHold {
  uint32_t lcore_id = 0;  // the dataplane's lcore id (not the region index)
  uint64_t observed_generation = 0;
  uint64_t heartbeat_age_ns = 0;
  bool stuck = false;               // heartbeat older than stuck_after_ns
  uint64_t refused_generation = 0;  // the last generation it refused (0: none)
  uint64_t tables_refused = 0;      // how many it refused since it started
};

// Whether a table slot can be reused: every live lcore observed at least
// the generation asked for.
struct ReclaimCheck {
  enum class Region { kAbsent, kUnusable, kAttached };
  Region region = Region::kAbsent;
  std::string unusable_reason;  // kUnusable: why Attach refused the file
  bool ok = true;               // kAbsent: true; kUnusable: false
  std::vector<LcoreHold> holding;
  // A holding lcore refused the generation asked for (or a newer one): this
  // is that generation (0: none). It will not be observed; see the
  // reclamation protocol, step 4, in lib/table_format.h.
  uint64_t refused_generation = 0;

  std::vector<uint32_t> StuckLcores() const;
  // "lcore 3 stuck (observed generation 1, heartbeat 700 ms old), lcore 4
  // waiting (observed generation 1), lcore 5 refused generation 2 (observed
  // generation 1)".
  std::string DescribeHolding() const;
};

// Whether the dataplane forwards now: its process is alive, at least one
// lcore is online, and every online lcore's heartbeat is younger than the
// limit asked for. `why` says what failed ("no stats region", "process 123
// gone", "lcore 1 heartbeat 512 ms old", ...), empty when alive.
struct DataplaneLiveness {
  bool alive = false;
  std::string why;
};

class DataplaneView {
 public:
  DataplaneView(std::string stats_path, uint64_t stuck_after_ns);
  DataplaneView(const DataplaneView&) = delete;
  DataplaneView& operator=(const DataplaneView&) = delete;

  const std::string& stats_path() const { return stats_path_; }

  // One look: may a slot last holding `min_generation - 1` be reused?
  // `released_refused` != 0: lcores that refused exactly that generation do
  // not hold its slot (StatsRegion::CheckReclaim).
  ReclaimCheck CheckReclaim(uint64_t min_generation, uint64_t released_refused = 0) const;
  // Polls CheckReclaim until it is ok, an lcore refused min_generation (it
  // will never observe it), or `timeout_ns` passed (adaptive: yields first,
  // then sleeps 10 us doubling up to 500 us, so that a change the lcores
  // pick up within microseconds is not charged a timer tick).
  // *waited_ns = the time spent. kAbsent and kUnusable return at once.
  ReclaimCheck WaitReclaim(uint64_t min_generation, uint64_t timeout_ns, uint64_t* waited_ns,
                           uint64_t released_refused = 0) const;

  // Counters of backend slot `slot` (table index), summed over lcores.
  BackendCountersSum SumBackend(uint32_t slot) const;
  // Per VIP and backend of `slot`, summed over lcores; empty without region.
  TrafficSnapshot SumTraffic(const SlotView& slot) const;
  // Sets dataplane_running and one LcoreCounters per lcore; leaves `out`
  // untouched without a region.
  // Also adds one PortCounters per port the dataplane reported (the NIC's
  // own counters, lib/table_format.h PortCounters).
  void ReadLcores(v1::Stats* out) const;
  // The heartbeat check of DataplaneLiveness (the BGP announcer's input).
  DataplaneLiveness Liveness(uint64_t max_heartbeat_age_ns) const;
  // The per-port area of `s` into out->ports (entries not in use skipped).
  static void ReadPorts(const StatsRegion& s, v1::Stats* out);

 private:
  // The attachment, refreshed when the file or its writer changed; nullptr
  // when absent (then *unusable says whether a file exists but is refused).
  std::shared_ptr<const StatsRegion> Current(std::string* unusable) const;

  const std::string stats_path_;
  const uint64_t stuck_after_ns_;

  mutable absl::Mutex mu_;  // leaf: guards the attachment only
  mutable std::shared_ptr<const StatsRegion> region_ ABSL_GUARDED_BY(mu_);
  mutable struct {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    uint32_t pid = 0;
    uint64_t start_time_ns = 0;
  } id_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_DATAPLANE_VIEW_H_
