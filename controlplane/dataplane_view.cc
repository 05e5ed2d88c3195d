#include "controlplane/dataplane_view.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/clock.h"
#include "lib/drop_reasons.h"

namespace lb {
namespace {

// WaitReclaim's poll: spins for the first 0.5 ms, then yields until 2 ms,
// then sleeps of 10 us doubling to 500 us. An lcore switches generation
// between two bursts, within microseconds when it is not descheduled, or
// after verifying a slot inline (~0.1-0.2 ms for one 65,537-entry ring).
// Spinning first keeps the CPU through that window: a sched_yield on a
// loaded machine hands the CPU to another runnable task for the rest of its
// slice (measured at 1,000 backends on 2 shared vCPUs: commit -> lcores
// p50 1.3-7.5 ms with yields from the start, see perf/RESULTS.md). The spin
// is bounded, so a control plane that shares a CPU with the lcore it waits
// for (a benchmark, not a deployment: lcores own their cores) delays it by
// at most kSpinNs before yielding. A sleep on a loaded machine oversleeps by
// up to milliseconds, and a fixed 1 ms period would put a 1 ms floor under
// every api -> lcores latency.
constexpr uint64_t kSpinNs = 500'000;
constexpr uint64_t kYieldNs = 2'000'000;
constexpr uint64_t kFirstSleepNs = 10'000;
constexpr uint64_t kMaxSleepNs = 500'000;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

bool ProcessAlive(uint32_t pid) {
  return pid != 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH);
}

uint32_t NumLcores(const StatsRegion& s) {
  return std::min(s.control().num_lcores.load(std::memory_order_acquire), s.header().max_lcores);
}

// The one sum of a backend slot's counters over every lcore (queries,
// drains and metrics all read through it). `slot` < max_backends.
BackendCountersSum SumBackendSlot(const StatsRegion& s, uint32_t slot, bool count_active) {
  BackendCountersSum sum;
  for (uint32_t i = 0; i < NumLcores(s); ++i) {
    const BackendCounters& c = s.Backends(i)[slot];
    sum.packets += c.packets.load(std::memory_order_relaxed);
    sum.bytes += c.bytes.load(std::memory_order_relaxed);
    sum.new_flows += c.new_flows.load(std::memory_order_relaxed);
    sum.full_skips += c.full_skips.load(std::memory_order_relaxed);
    if (count_active) sum.active_flows += c.active_flows.load(std::memory_order_relaxed);
  }
  return sum;
}

}  // namespace

std::vector<uint32_t> ReclaimCheck::StuckLcores() const {
  std::vector<uint32_t> out;
  for (const LcoreHold& h : holding) {
    if (h.stuck) out.push_back(h.lcore_id);
  }
  return out;
}

std::string ReclaimCheck::DescribeHolding() const {
  std::vector<std::string> who;
  for (const LcoreHold& h : holding) {
    if (refused_generation != 0 && h.refused_generation == refused_generation) {
      who.push_back(absl::StrCat("lcore ", h.lcore_id, " refused generation ", h.refused_generation,
                                 " (observed generation ", h.observed_generation, ")"));
    } else if (h.stuck) {
      who.push_back(absl::StrCat("lcore ", h.lcore_id, " stuck (observed generation ",
                                 h.observed_generation, ", heartbeat ",
                                 h.heartbeat_age_ns / 1'000'000, " ms old)"));
    } else {
      who.push_back(absl::StrCat("lcore ", h.lcore_id, " waiting (observed generation ",
                                 h.observed_generation, ")"));
    }
  }
  return absl::StrJoin(who, ", ");
}

DataplaneView::DataplaneView(std::string stats_path, uint64_t stuck_after_ns)
    : stats_path_(std::move(stats_path)), stuck_after_ns_(stuck_after_ns) {}

std::shared_ptr<const StatsRegion> DataplaneView::Current(std::string* unusable) const {
  struct stat st;
  absl::MutexLock l(&mu_);
  if (stats_path_.empty() || stat(stats_path_.c_str(), &st) != 0) {
    region_.reset();
    return nullptr;
  }
  // Size first: a truncated file must not be read through the old mapping.
  if (region_ != nullptr && st.st_dev == id_.dev && st.st_ino == id_.ino &&
      st.st_size == id_.size &&
      region_->control().writer_pid.load(std::memory_order_acquire) == id_.pid &&
      region_->control().start_time_ns.load(std::memory_order_acquire) == id_.start_time_ns) {
    return region_;
  }
  region_.reset();
  auto attached = StatsRegion::Attach(stats_path_);
  if (!attached.ok()) {
    if (unusable != nullptr) *unusable = std::string(attached.status().message());
    return nullptr;
  }
  region_ = std::make_shared<const StatsRegion>(*std::move(attached));
  id_.dev = st.st_dev;
  id_.ino = st.st_ino;
  id_.size = st.st_size;
  id_.pid = region_->control().writer_pid.load(std::memory_order_acquire);
  id_.start_time_ns = region_->control().start_time_ns.load(std::memory_order_acquire);
  return region_;
}

namespace {

ReclaimCheck CheckOn(const StatsRegion& s, uint64_t min_generation, uint64_t stuck_after_ns,
                     uint64_t released_refused) {
  ReclaimCheck rc;
  rc.region = ReclaimCheck::Region::kAttached;
  const uint64_t now = MonotonicNs();
  StatsRegion::ReclaimStatus rs =
      s.CheckReclaim(min_generation, now, stuck_after_ns, released_refused);
  rc.ok = rs.ok;
  for (uint32_t i : rs.waiting) {
    const LcoreStats& l = s.Lcore(i);
    LcoreHold h;
    h.lcore_id = l.lcore_id;
    h.observed_generation = l.observed_generation.load(std::memory_order_relaxed);
    const uint64_t hb = l.heartbeat_ns.load(std::memory_order_relaxed);
    h.heartbeat_age_ns = now > hb ? now - hb : 0;
    h.stuck = std::find(rs.stuck.begin(), rs.stuck.end(), i) != rs.stuck.end();
    h.refused_generation = l.refused_generation.load(std::memory_order_acquire);
    h.tables_refused = l.tables_refused.load(std::memory_order_relaxed);
    if (std::find(rs.refused.begin(), rs.refused.end(), i) != rs.refused.end()) {
      rc.refused_generation = std::max(rc.refused_generation, h.refused_generation);
    }
    rc.holding.push_back(h);
  }
  return rc;
}

}  // namespace

ReclaimCheck DataplaneView::CheckReclaim(uint64_t min_generation, uint64_t released_refused) const {
  std::string unusable;
  std::shared_ptr<const StatsRegion> s = Current(&unusable);
  if (s == nullptr) {
    ReclaimCheck rc;
    if (!unusable.empty()) {
      rc.region = ReclaimCheck::Region::kUnusable;
      rc.unusable_reason = std::move(unusable);
      rc.ok = false;
    }
    return rc;
  }
  return CheckOn(*s, min_generation, stuck_after_ns_, released_refused);
}

ReclaimCheck DataplaneView::WaitReclaim(uint64_t min_generation, uint64_t timeout_ns,
                                        uint64_t* waited_ns, uint64_t released_refused) const {
  const uint64_t start = MonotonicNs();
  *waited_ns = 0;
  std::string unusable;
  std::shared_ptr<const StatsRegion> s = Current(&unusable);
  if (s == nullptr) return CheckReclaim(min_generation, released_refused);
  uint64_t pause = kFirstSleepNs;
  for (;;) {
    ReclaimCheck rc = CheckOn(*s, min_generation, stuck_after_ns_, released_refused);
    const uint64_t now = MonotonicNs();
    *waited_ns = now - start;
    if (rc.ok || rc.refused_generation != 0 || now - start >= timeout_ns) return rc;
    if (now - start < kSpinNs) {
      // A few pauses between checks: each CheckOn reads every lcore's
      // cache line, which the lcores write.
      for (int i = 0; i < 32; ++i) CpuRelax();
    } else if (now - start < kYieldNs) {
      sched_yield();
    } else {
      SleepNs(pause);
      pause = std::min(pause * 2, kMaxSleepNs);
    }
  }
}

BackendCountersSum DataplaneView::SumBackend(uint32_t slot) const {
  std::shared_ptr<const StatsRegion> s = Current(nullptr);
  if (s == nullptr || slot == 0 || slot >= s->header().max_backends) return {};
  // A dead dataplane's connection tables died with it: its gauges are stale.
  const bool alive = ProcessAlive(s->control().writer_pid.load(std::memory_order_acquire));
  return SumBackendSlot(*s, slot, alive);
}

TrafficSnapshot DataplaneView::SumTraffic(const SlotView& slot) const {
  TrafficSnapshot snap;
  std::shared_ptr<const StatsRegion> s = Current(nullptr);
  if (s == nullptr || slot.header == nullptr || slot.header->generation == 0) return snap;
  const StatsRegionHeader& sh = s->header();
  const uint32_t lcores = NumLcores(*s);
  const uint32_t num_vips = std::min({slot.header->num_vips, slot.max_vips, sh.max_vips});
  for (uint32_t i = 0; i < num_vips; ++i) {
    const VipEntry& v = slot.vips[i];
    if (!(v.flags & kVipInUse)) continue;
    TrafficCounters& c = snap.vips[v.vip_id];
    for (uint32_t l = 0; l < lcores; ++l) {
      const VipCounters& vc = s->Vips(l)[i];
      c.packets += vc.packets.load(std::memory_order_relaxed);
      c.bytes += vc.bytes.load(std::memory_order_relaxed);
      c.new_flows += vc.new_flows.load(std::memory_order_relaxed);
      c.drops += vc.drops.load(std::memory_order_relaxed);
    }
  }
  const uint32_t num_backends =
      std::min({slot.header->num_backends, slot.max_backends, sh.max_backends});
  for (uint32_t j = 1; j < num_backends; ++j) {  // slot 0 = "no backend"
    const BackendEntry& b = slot.backends[j];
    if (b.state == static_cast<uint8_t>(BackendState::kUnused)) continue;
    // Metrics report the gauge as the region holds it, live writer or not.
    const BackendCountersSum sum = SumBackendSlot(*s, j, /*count_active=*/true);
    TrafficCounters& c = snap.backends[b.backend_id];
    c.packets += sum.packets;
    c.bytes += sum.bytes;
    c.new_flows += sum.new_flows;
    c.active_flows += sum.active_flows;
    c.full_skips += sum.full_skips;
  }
  return snap;
}

DataplaneLiveness DataplaneView::Liveness(uint64_t max_heartbeat_age_ns) const {
  DataplaneLiveness r;
  std::string unusable;
  std::shared_ptr<const StatsRegion> s = Current(&unusable);
  if (s == nullptr) {
    r.why = unusable.empty() ? "no stats region" : "stats region unusable: " + unusable;
    return r;
  }
  const uint32_t pid = s->control().writer_pid.load(std::memory_order_acquire);
  if (!ProcessAlive(pid)) {
    r.why = absl::StrCat("process ", pid, " gone");
    return r;
  }
  const uint64_t now = MonotonicNs();
  uint32_t online = 0;
  for (uint32_t i = 0; i < NumLcores(*s); ++i) {
    const LcoreStats& l = s->Lcore(i);
    if (l.state.load(std::memory_order_acquire) != static_cast<uint32_t>(LcoreState::kOnline)) {
      continue;
    }
    ++online;
    const uint64_t hb = l.heartbeat_ns.load(std::memory_order_relaxed);
    const uint64_t age = now > hb ? now - hb : 0;
    if (age > max_heartbeat_age_ns) {
      r.why = absl::StrCat("lcore ", l.lcore_id, " heartbeat ", age / 1000000, " ms old");
      return r;
    }
  }
  if (online == 0) {
    r.why = "no lcore online";
    return r;
  }
  r.alive = true;
  return r;
}

void DataplaneView::ReadLcores(v1::Stats* out) const {
  std::shared_ptr<const StatsRegion> s = Current(nullptr);
  if (s == nullptr) return;
  const bool alive = ProcessAlive(s->control().writer_pid.load(std::memory_order_acquire));
  out->set_dataplane_running(alive);
  const uint32_t reasons = std::min<uint32_t>(s->header().num_drop_reasons, kNumDropReasons);
  for (uint32_t i = 0; i < NumLcores(*s); ++i) {
    const LcoreStats& l = s->Lcore(i);
    v1::LcoreCounters* c = out->add_lcores();
    c->set_lcore(l.lcore_id);
    c->set_online(alive && l.state.load(std::memory_order_acquire) ==
                               static_cast<uint32_t>(LcoreState::kOnline));
    c->set_observed_generation(l.observed_generation.load(std::memory_order_acquire));
    c->set_rx_packets(l.rx_packets.load(std::memory_order_relaxed));
    c->set_rx_bytes(l.rx_bytes.load(std::memory_order_relaxed));
    c->set_tx_packets(l.tx_packets.load(std::memory_order_relaxed));
    c->set_tx_bytes(l.tx_bytes.load(std::memory_order_relaxed));
    c->set_forwarded(l.forwarded.load(std::memory_order_relaxed));
    c->set_new_flows(l.new_flows.load(std::memory_order_relaxed));
    c->set_conn_entries(l.conn_entries.load(std::memory_order_relaxed));
    c->set_conn_evictions(l.conn_evictions.load(std::memory_order_relaxed));
    c->set_syn_guard_stateless(l.syn_guard_stateless.load(std::memory_order_relaxed));
    c->set_syn_guard_engaged(l.syn_guard_engaged.load(std::memory_order_relaxed));
    c->set_tables_refused(l.tables_refused.load(std::memory_order_relaxed));
    c->set_refused_generation(l.refused_generation.load(std::memory_order_relaxed));
    c->set_to_kernel(l.to_kernel.load(std::memory_order_relaxed));
    c->set_from_kernel(l.from_kernel.load(std::memory_order_relaxed));
    auto* drops = c->mutable_drops();
    for (uint32_t r = 0; r < reasons; ++r) {
      (*drops)[DropReasonName(static_cast<DropReason>(r))] =
          l.drops[r].load(std::memory_order_relaxed);
    }
  }
  ReadPorts(*s, out);
}

void DataplaneView::ReadPorts(const StatsRegion& s, v1::Stats* out) {
  constexpr auto kRelaxed = std::memory_order_relaxed;
  for (uint32_t i = 0; i < s.header().max_ports; ++i) {
    const PortCounters& p = s.Port(i);
    // Acquire: pairs with the dataplane's release of in_use (port_id).
    if (p.in_use.load(std::memory_order_acquire) == 0) continue;
    v1::PortCounters* c = out->add_ports();
    c->set_port(p.port_id);
    c->set_rx_packets(p.rx_packets.load(kRelaxed));
    c->set_tx_packets(p.tx_packets.load(kRelaxed));
    c->set_rx_bytes(p.rx_bytes.load(kRelaxed));
    c->set_tx_bytes(p.tx_bytes.load(kRelaxed));
    c->set_rx_missed(p.rx_missed.load(kRelaxed));
    c->set_rx_errors(p.rx_errors.load(kRelaxed));
    c->set_tx_errors(p.tx_errors.load(kRelaxed));
    c->set_rx_nombuf(p.rx_nombuf.load(kRelaxed));
    for (uint32_t q = 0; q < kPortStatQueues; ++q) {
      c->add_queue_rx_packets(p.queue_rx_packets[q].load(kRelaxed));
      c->add_queue_tx_packets(p.queue_tx_packets[q].load(kRelaxed));
    }
  }
}

}  // namespace lb
