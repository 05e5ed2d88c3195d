// Prometheus metrics of lb-controlplane: GET /metrics renders them in the
// text exposition format 0.0.4 (HELP and TYPE for every family; names with
// the lb_ prefix, counters end in _total, base units seconds and bytes), so
// that `promtool check metrics` accepts the output.
//
// Families (labels in braces):
//   lb_build_info{version}                       gauge 1
//   lb_dataplane_up                              gauge 1/0 (stats region has a live writer)
//   lb_table_generation, lb_config_version       gauges
//   lb_stuck_lcores                              gauge: lcores holding up slot reuse
//   lb_lcore_online{lcore}, lb_lcore_observed_generation{lcore}
//   lb_lcore_{rx,tx}_{packets,bytes}_total{lcore}, lb_lcore_forwarded_packets_total,
//   lb_lcore_new_flows_total, lb_lcore_drops_total{lcore,reason}
//   lb_lcore_conn_table_entries{lcore} (gauge), lb_lcore_conn_table_evictions_total{lcore}
//   lb_syn_guard_stateless_total{lcore}, lb_syn_guard_engaged{lcore} (gauge 1/0)
//   lb_lcore_tables_refused_total{lcore}, lb_lcore_refused_generation{lcore}
//   lb_vip_{packets,bytes,new_flows,drops}_total{vip}    vip="198.51.100.1:80/tcp"
//   lb_vip_active_members{vip}, lb_vip_table_generation{vip}
//   lb_vip_table_info{vip,pool,fingerprint}      gauge 1 (the ring fingerprint)
//   lb_backend_up{pool,backend,backend_id}       1 = in the rings (takes new flows)
//   lb_backend_health{pool,backend,backend_id,status}  1 for the current status
//   lb_backend_{packets,bytes,flows}_total{pool,backend,backend_id}
//   lb_backend_full_skips_total{pool,backend,backend_id} counter, all lcores
//   lb_backend_active_flows{pool,backend,backend_id}   gauge, all lcores
//   lb_publish_duration_seconds                  histogram (MetricsInputs or ControlPlane)
//   lb_health_check_duration_seconds             histogram (MetricsInputs)
//   lb_l7_ticket_key_generation (gauge), lb_l7_ticket_key_rotations_total
//   lb_cp_leader, lb_cp_leader_term              gauges (etcd store, MetricsInputs)
//   lb_cp_leader_changes_total, lb_cp_health_writes_total,
//   lb_cp_health_write_failures_total, lb_cp_shared_health_refused_total
// Lcore families come from ControlPlane::GetStats and are absent without a
// dataplane; VIP and backend families come from ListVips/ListBackends, with
// per-VIP and per-backend traffic read from the stats region (indexed by the
// slots of the published table) when MetricsInputs names both regions, and
// zero otherwise. Unreadable regions are not an error: the counters read 0.
//
// Threads: RenderMetrics may be called from any thread. LatencyHistogram is
// thread-safe (Observe from the health checker's loop, Snapshot from the
// HTTP thread).
#ifndef LB_CONTROLPLANE_METRICS_H_
#define LB_CONTROLPLANE_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/control_plane.h"
#include "controlplane/l7_health.h"
#include "controlplane/leader.h"

namespace lb {

// Cumulative-bucket histogram contents, in seconds.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;  // ascending, +Inf implied
  std::vector<uint64_t> counts;      // per bucket (not cumulative), size upper_bounds + 1
  double sum = 0;
  uint64_t count = 0;
};

// Default buckets for latencies: 100 us .. 10 s.
std::vector<double> DefaultLatencyBuckets();

class LatencyHistogram {
 public:
  explicit LatencyHistogram(std::vector<double> upper_bounds = DefaultLatencyBuckets());
  void Observe(double seconds);
  HistogramSnapshot Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  HistogramSnapshot h_ ABSL_GUARDED_BY(mu_);
};

// Buckets `values` (in seconds) into a histogram.
HistogramSnapshot MakeHistogram(const std::vector<double>& values_seconds,
                                std::vector<double> upper_bounds = DefaultLatencyBuckets());

struct MetricsInputs {
  std::string version = "unknown";  // lb_build_info
  // The regions the ControlPlane's publisher uses; empty = no per-VIP
  // traffic. When both are named, traffic is read through the
  // ControlPlane's DataplaneView (ControlPlane::Traffic), which owns the
  // attachment.
  std::string table_path;
  std::string stats_path;
  // Health-check latencies; nullptr = an empty histogram.
  const LatencyHistogram* health_check_latency = nullptr;
  // Publish latencies, fed by the caller (e.g. from ControlPlaneOptions::
  // on_publish with wait_ms + build_ms). nullptr = bucket
  // ControlPlane::PublishLatenciesMs(), which only keeps the last
  // latency_samples publishes: its counts stop growing after that many.
  const LatencyHistogram* publish_latency = nullptr;
  // Leader election (etcd store, leader.h): the lb_cp_leader* and
  // lb_cp_health_* families; empty = absent.
  std::function<LeaderStatus()> leader_status;
  // The active checks of lb-l7's pools (l7_health.h): the lb_l7_health_*
  // families; nullptr = absent.
  const L7HealthBook* l7_health = nullptr;
};

std::string RenderMetrics(const ControlPlane& cp, const MetricsInputs& inputs);

// Label value escaping of the text format (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& v);

}  // namespace lb

#endif  // LB_CONTROLPLANE_METRICS_H_
