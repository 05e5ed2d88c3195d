#include "controlplane/metrics.h"

#include <netinet/in.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controlplane/config.h"
#include "lib/drop_reasons.h"
#include "lib/shm_region.h"

namespace lb {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// One metric family: HELP, TYPE and its samples, in the order they were added.
struct Family {
  std::string name;
  std::string type;
  std::string help;
  std::string samples;
};

class Exposition {
 public:
  Family& Add(const std::string& name, const std::string& type, const std::string& help) {
    families_.push_back(Family{name, type, help, ""});
    return families_.back();
  }

  static void Sample(Family& f, const std::string& suffix, const Labels& labels,
                     const std::string& value) {
    absl::StrAppend(&f.samples, f.name, suffix);
    if (!labels.empty()) {
      f.samples += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) f.samples += ',';
        absl::StrAppend(&f.samples, labels[i].first, "=\"", EscapeLabelValue(labels[i].second),
                        "\"");
      }
      f.samples += '}';
    }
    absl::StrAppend(&f.samples, " ", value, "\n");
  }

  // Families without samples are left out (e.g. lcores without a dataplane).
  std::string Render() const {
    std::string out;
    for (const Family& f : families_) {
      if (f.samples.empty()) continue;
      absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n",
                      f.samples);
    }
    return out;
  }

 private:
  std::deque<Family> families_;  // a deque: references from Add stay valid
};

std::string U(uint64_t v) { return absl::StrCat(v); }

std::string D(double v) { return absl::StrFormat("%.9g", v); }

void AddHistogram(Family& f, const HistogramSnapshot& h, const Labels& labels) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.upper_bounds.size(); ++i) {
    cumulative += i < h.counts.size() ? h.counts[i] : 0;
    Labels l = labels;
    l.emplace_back("le", absl::StrCat(h.upper_bounds[i]));
    Exposition::Sample(f, "_bucket", l, U(cumulative));
  }
  Labels l = labels;
  l.emplace_back("le", "+Inf");
  Exposition::Sample(f, "_bucket", l, U(h.count));
  Exposition::Sample(f, "_sum", labels, D(h.sum));
  Exposition::Sample(f, "_count", labels, U(h.count));
}

std::string ProtocolName(v1::Protocol p) {
  switch (p) {
    case v1::PROTOCOL_TCP:
      return "tcp";
    case v1::PROTOCOL_UDP:
      return "udp";
    default:
      return "unspecified";
  }
}

// "198.51.100.1:80/tcp", the same key the control plane logs (VipKey).
std::string VipLabel(const v1::Vip& v) {
  auto ip = ParseIpAddress(v.address());
  const uint8_t proto = v.protocol() == v1::PROTOCOL_UDP ? IPPROTO_UDP : IPPROTO_TCP;
  if (ip.ok() && v.protocol() != v1::PROTOCOL_UNSPECIFIED) {
    return VipKey(*ip, proto, static_cast<uint16_t>(v.port()));
  }
  return absl::StrCat(v.address(), ":", v.port(), "/", ProtocolName(v.protocol()));
}

std::string BackendLabel(const v1::Backend& b) {
  auto ip = ParseIpAddress(b.address());
  const std::string addr = ip.ok() ? ip->text : b.address();
  return addr.find(':') != std::string::npos ? absl::StrCat("[", addr, "]:", b.port())
                                             : absl::StrCat(addr, ":", b.port());
}

}  // namespace

std::vector<double> DefaultLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

LatencyHistogram::LatencyHistogram(std::vector<double> upper_bounds) {
  std::sort(upper_bounds.begin(), upper_bounds.end());
  h_.counts.assign(upper_bounds.size() + 1, 0);
  h_.upper_bounds = std::move(upper_bounds);
}

void LatencyHistogram::Observe(double seconds) {
  absl::MutexLock l(&mu_);
  const size_t i = static_cast<size_t>(
      std::lower_bound(h_.upper_bounds.begin(), h_.upper_bounds.end(), seconds) -
      h_.upper_bounds.begin());
  ++h_.counts[i];
  h_.sum += seconds;
  ++h_.count;
}

HistogramSnapshot LatencyHistogram::Snapshot() const {
  absl::MutexLock l(&mu_);
  return h_;
}

HistogramSnapshot MakeHistogram(const std::vector<double>& values_seconds,
                                std::vector<double> upper_bounds) {
  LatencyHistogram h(std::move(upper_bounds));
  for (double v : values_seconds) h.Observe(v);
  return h.Snapshot();
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// Node-wide gauges: build, dataplane, generation, version, stuck lcores.
void AddNodeFamilies(Exposition& x, const v1::Stats& stats, const v1::TablesInfo& tables,
                     const MetricsInputs& in) {
  {
    Family& f = x.Add("lb_build_info", "gauge", "Build information of lb-controlplane.");
    Exposition::Sample(f, "", {{"version", in.version}}, "1");
  }
  {
    Family& f = x.Add("lb_dataplane_up", "gauge",
                      "1 when a live lb-dataplane process writes the stats region.");
    Exposition::Sample(f, "", {}, stats.dataplane_running() ? "1" : "0");
  }
  {
    Family& f = x.Add("lb_table_generation", "gauge", "Table generation currently published.");
    Exposition::Sample(f, "", {}, U(std::max(stats.generation(), tables.generation())));
  }
  {
    Family& f = x.Add("lb_config_version", "gauge", "Version of the stored desired state.");
    Exposition::Sample(f, "", {}, U(tables.config_version()));
  }
  {
    Family& f = x.Add("lb_stuck_lcores", "gauge",
                      "Dataplane lcores whose stalled heartbeat holds up table slot reuse.");
    Exposition::Sample(f, "", {}, U(static_cast<uint64_t>(tables.stuck_lcores_size())));
  }
  {
    Family& f = x.Add("lb_last_publish_duration_seconds", "gauge",
                      "Duration of the last table publish (reclamation wait and build).");
    Exposition::Sample(f, "", {}, D(tables.last_publish_ms() / 1000.0));
  }
}

// The desired-state store: reachable, and races lost to other control
// planes (etcd store; the file store is always up with no conflicts).
void AddStoreFamilies(Exposition& x, const ControlPlane& cp) {
  const StoreHealth h = cp.StoreStatus();
  {
    Family& f = x.Add("lb_store_up", "gauge",
                      "1 when the desired-state store answered the last call (and, for etcd, "
                      "its watch runs); 0 = changes are refused, the last good state is served.");
    Exposition::Sample(f, "", {{"store", cp.StoreName()}}, h.up ? "1" : "0");
  }
  {
    Family& f = x.Add("lb_store_conflicts_total", "counter",
                      "Writes that lost the store's compare-and-swap to another control plane "
                      "(each retried on the fresh state).");
    Exposition::Sample(f, "", {}, U(h.conflicts));
  }
}

// lb-l7's session ticket keys (ticket_keys.h): never the bytes.
void AddTicketKeyFamilies(Exposition& x, const ControlPlane& cp) {
  {
    Family& f = x.Add("lb_l7_ticket_key_generation", "gauge",
                      "Generation of lb-l7's session ticket keys in force (+1 per rotation; 0 = "
                      "no L7 configuration yet).");
    Exposition::Sample(f, "", {}, U(cp.GetL7Config().ticket_key_generation()));
  }
  {
    Family& f = x.Add("lb_l7_ticket_key_rotations_total", "counter",
                      "Session ticket key generations this control plane drew and stored (the "
                      "first with the first L7 configuration, then one per rotation).");
    Exposition::Sample(f, "", {}, U(cp.l7_ticket_key_rotations()));
  }
}

// Leader election among the control planes on one etcd (leader.h).
void AddLeaderFamilies(Exposition& x, const LeaderStatus& s) {
  {
    Family& f = x.Add("lb_cp_leader", "gauge",
                      "1 while this control plane is the elected leader (its health verdicts "
                      "are the ones every node's tables apply).");
    Exposition::Sample(f, "", {}, s.leader ? "1" : "0");
  }
  {
    Family& f = x.Add("lb_cp_leader_term", "gauge",
                      "Term (create revision of <prefix>/leader) of the leader this node last "
                      "saw; 0 = none seen.");
    Exposition::Sample(f, "", {}, absl::StrCat(s.term));
  }
  {
    Family& f = x.Add("lb_cp_leader_changes_total", "counter",
                      "New leader terms this control plane has seen.");
    Exposition::Sample(f, "", {}, U(s.leader_changes));
  }
  {
    Family& f = x.Add("lb_cp_health_writes_total", "counter",
                      "Shared health documents this control plane stored as leader.");
    Exposition::Sample(f, "", {}, U(s.health_writes));
  }
  {
    Family& f = x.Add("lb_cp_health_write_failures_total", "counter",
                      "Shared health writes that got no answer or that the lease fence refused.");
    Exposition::Sample(f, "", {}, U(s.health_write_failures));
  }
  {
    Family& f = x.Add("lb_cp_shared_health_refused_total", "counter",
                      "Stored shared health documents refused (not written by lb-controlplane); "
                      "the last good one stays in force.");
    Exposition::Sample(f, "", {}, U(s.health_refused));
  }
}

void AddLcoreFamilies(Exposition& x, const v1::Stats& stats) {
  struct LcoreCounter {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*get)(const v1::LcoreCounters&);
  };
  static const LcoreCounter kLcore[] = {
      {"lb_lcore_online", "gauge", "1 when the lcore is online.",
       [](const v1::LcoreCounters& c) -> uint64_t { return c.online() ? 1 : 0; }},
      {"lb_lcore_observed_generation", "gauge", "Table generation the lcore last switched to.",
       [](const v1::LcoreCounters& c) { return c.observed_generation(); }},
      {"lb_lcore_rx_packets_total", "counter", "Packets received by the lcore.",
       [](const v1::LcoreCounters& c) { return c.rx_packets(); }},
      {"lb_lcore_rx_bytes_total", "counter", "Bytes received by the lcore.",
       [](const v1::LcoreCounters& c) { return c.rx_bytes(); }},
      {"lb_lcore_tx_packets_total", "counter", "Packets transmitted by the lcore.",
       [](const v1::LcoreCounters& c) { return c.tx_packets(); }},
      {"lb_lcore_tx_bytes_total", "counter", "Bytes transmitted by the lcore.",
       [](const v1::LcoreCounters& c) { return c.tx_bytes(); }},
      {"lb_lcore_forwarded_packets_total", "counter",
       "Packets encapsulated to a backend by the lcore.",
       [](const v1::LcoreCounters& c) { return c.forwarded(); }},
      {"lb_lcore_new_flows_total", "counter", "Flows the lcore started (connection-table inserts).",
       [](const v1::LcoreCounters& c) { return c.new_flows(); }},
      {"lb_lcore_conn_table_entries", "gauge", "Live entries in the lcore's connection table.",
       [](const v1::LcoreCounters& c) { return c.conn_entries(); }},
      {"lb_lcore_conn_table_evictions_total", "counter",
       "Connection-table entries evicted to make room for new flows.",
       [](const v1::LcoreCounters& c) { return c.conn_evictions(); }},
      {"lb_syn_guard_stateless_total", "counter",
       "New flows the SYN-flood guard forwarded by the consistent pick without a "
       "connection-table entry (above --new_flow_rate_limit).",
       [](const v1::LcoreCounters& c) { return c.syn_guard_stateless(); }},
      {"lb_syn_guard_engaged", "gauge",
       "1 while the lcore's SYN-flood guard is engaged (a stateless forward within the last "
       "second).",
       [](const v1::LcoreCounters& c) { return c.syn_guard_engaged(); }},
      {"lb_lcore_tables_refused_total", "counter",
       "Table generations the lcore refused (stale checksum or an index out of bounds); it "
       "keeps forwarding with its last good table.",
       [](const v1::LcoreCounters& c) { return c.tables_refused(); }},
      {"lb_lcore_refused_generation", "gauge",
       "The last table generation the lcore refused (0 = none).",
       [](const v1::LcoreCounters& c) { return c.refused_generation(); }},
      {"lb_lcore_to_kernel_packets_total", "counter",
       "Packets the lcore handed to the kernel through the exception path.",
       [](const v1::LcoreCounters& c) { return c.to_kernel(); }},
      {"lb_lcore_from_kernel_packets_total", "counter",
       "Kernel frames the lcore sent out a port through the exception path.",
       [](const v1::LcoreCounters& c) { return c.from_kernel(); }},
  };
  for (const LcoreCounter& lc : kLcore) {
    Family& f = x.Add(lc.name, lc.type, lc.help);
    for (const v1::LcoreCounters& c : stats.lcores()) {
      Exposition::Sample(f, "", {{"lcore", U(c.lcore())}}, U(lc.get(c)));
    }
  }
  {
    Family& f = x.Add("lb_lcore_drops_total", "counter", "Packets the lcore dropped, by reason.");
    for (const v1::LcoreCounters& c : stats.lcores()) {
      std::vector<std::string> reasons;
      for (int r = 0; r < kNumDropReasons; ++r) {
        reasons.push_back(DropReasonName(static_cast<DropReason>(r)));
      }
      for (const auto& [name, value] : c.drops()) {
        if (std::find(reasons.begin(), reasons.end(), name) == reasons.end()) {
          reasons.push_back(name);
        }
      }
      for (const std::string& r : reasons) {
        auto it = c.drops().find(r);
        Exposition::Sample(f, "", {{"lcore", U(c.lcore())}, {"reason", r}},
                           U(it == c.drops().end() ? 0 : it->second));
      }
    }
  }
}

// The NICs' own counters, one sample per port; absent without a dataplane.
void AddPortFamilies(Exposition& x, const v1::Stats& stats) {
  struct PortCounter {
    const char* name;
    const char* help;
    uint64_t (*get)(const v1::PortCounters&);
  };
  static const PortCounter kPort[] = {
      {"lb_port_rx_packets_total", "Packets the NIC port received (rte_eth_stats ipackets).",
       [](const v1::PortCounters& c) { return c.rx_packets(); }},
      {"lb_port_tx_packets_total", "Packets the NIC port sent (opackets).",
       [](const v1::PortCounters& c) { return c.tx_packets(); }},
      {"lb_port_rx_missed_total",
       "Packets the NIC dropped for lack of RX descriptors: the lcores did not keep up "
       "(imissed).",
       [](const v1::PortCounters& c) { return c.rx_missed(); }},
      {"lb_port_rx_errors_total", "Erroneous packets the NIC received (ierrors).",
       [](const v1::PortCounters& c) { return c.rx_errors(); }},
      {"lb_port_rx_nombuf_total", "RX mbuf allocation failures of the port (rx_nombuf).",
       [](const v1::PortCounters& c) { return c.rx_nombuf(); }},
      {"lb_port_tx_errors_total", "Packets the NIC port failed to send (oerrors).",
       [](const v1::PortCounters& c) { return c.tx_errors(); }},
  };
  for (const PortCounter& pc : kPort) {
    Family& f = x.Add(pc.name, "counter", pc.help);
    for (const v1::PortCounters& c : stats.ports()) {
      Exposition::Sample(f, "", {{"port", U(c.port())}}, U(pc.get(c)));
    }
  }
}

void AddVipFamilies(Exposition& x, const std::vector<v1::VipStatus>& vips,
                    const TrafficSnapshot& traffic) {
  struct VipCounter {
    const char* name;
    const char* help;
    uint64_t TrafficCounters::*field;
  };
  static const VipCounter kVip[] = {
      {"lb_vip_packets_total", "Packets forwarded for the VIP, all lcores.",
       &TrafficCounters::packets},
      {"lb_vip_bytes_total", "Bytes (inner packets) forwarded for the VIP, all lcores.",
       &TrafficCounters::bytes},
      {"lb_vip_new_flows_total", "Flows started for the VIP, all lcores.",
       &TrafficCounters::new_flows},
      {"lb_vip_drops_total", "Packets dropped after matching the VIP, all lcores.",
       &TrafficCounters::drops},
  };
  for (const VipCounter& vc : kVip) {
    Family& f = x.Add(vc.name, "counter", vc.help);
    for (const v1::VipStatus& v : vips) {
      auto it = traffic.vips.find(v.vip().id());
      Exposition::Sample(f, "", {{"vip", VipLabel(v.vip())}},
                         U(it == traffic.vips.end() ? 0 : it->second.*(vc.field)));
    }
  }
  {
    Family& f = x.Add("lb_vip_active_members", "gauge", "Backends in the VIP's ring.");
    for (const v1::VipStatus& v : vips) {
      Exposition::Sample(f, "", {{"vip", VipLabel(v.vip())}}, U(v.active_members()));
    }
  }
  {
    Family& f = x.Add("lb_vip_table_generation", "gauge",
                      "Table generation the VIP was last published in.");
    for (const v1::VipStatus& v : vips) {
      Exposition::Sample(f, "", {{"vip", VipLabel(v.vip())}}, U(v.generation()));
    }
  }
  {
    Family& f = x.Add("lb_vip_table_info", "gauge",
                      "The VIP's pool and ring fingerprint; equal on nodes with equal config.");
    for (const v1::VipStatus& v : vips) {
      Exposition::Sample(
          f, "",
          {{"vip", VipLabel(v.vip())}, {"pool", v.vip().pool()}, {"fingerprint", v.fingerprint()}},
          "1");
    }
  }
}

void AddBackendFamilies(Exposition& x, const ControlPlane& cp, const v1::Config& config,
                        const TrafficSnapshot& traffic) {
  std::vector<v1::BackendStatus> backends;
  for (const v1::Pool& p : config.pools()) {
    for (v1::BackendStatus& b : cp.ListBackends(p.name())) backends.push_back(std::move(b));
  }
  auto backend_labels = [](const v1::BackendStatus& b) {
    return Labels{{"pool", b.pool()},
                  {"backend", BackendLabel(b.backend())},
                  {"backend_id", U(b.backend().id())}};
  };
  {
    Family& f = x.Add("lb_backend_up", "gauge",
                      "1 when the backend is in the rings (takes new flows), else 0.");
    for (const v1::BackendStatus& b : backends) {
      const bool up = b.effective_state() == v1::BACKEND_STATE_ACTIVE ||
                      (b.effective_state() == v1::BACKEND_STATE_UNSPECIFIED &&
                       b.health() != v1::HEALTH_STATUS_UNHEALTHY);
      Exposition::Sample(f, "", backend_labels(b), up ? "1" : "0");
    }
  }
  {
    Family& f = x.Add("lb_backend_health", "gauge",
                      "Health-check status of the backend: 1 for the current status.");
    for (const v1::BackendStatus& b : backends) {
      for (v1::HealthStatus s :
           {v1::HEALTH_STATUS_UNKNOWN, v1::HEALTH_STATUS_HEALTHY, v1::HEALTH_STATUS_UNHEALTHY}) {
        Labels l = backend_labels(b);
        l.emplace_back("status", HealthStatusName(s));
        const v1::HealthStatus current =
            b.health() == v1::HEALTH_STATUS_UNSPECIFIED ? v1::HEALTH_STATUS_UNKNOWN : b.health();
        Exposition::Sample(f, "", l, current == s ? "1" : "0");
      }
    }
  }
  {
    Family& f = x.Add("lb_backend_packets_total", "counter",
                      "Packets forwarded to the backend, all lcores.");
    for (const v1::BackendStatus& b : backends) {
      Exposition::Sample(f, "", backend_labels(b), U(b.packets()));
    }
  }
  {
    Family& f = x.Add("lb_backend_bytes_total", "counter",
                      "Bytes (inner packets) forwarded to the backend, all lcores.");
    for (const v1::BackendStatus& b : backends) {
      Exposition::Sample(f, "", backend_labels(b), U(b.bytes()));
    }
  }
  {
    Family& f =
        x.Add("lb_backend_flows_total", "counter", "Flows started on the backend, all lcores.");
    for (const v1::BackendStatus& b : backends) {
      auto it = traffic.backends.find(b.backend().id());
      Exposition::Sample(f, "", backend_labels(b),
                         U(it == traffic.backends.end() ? 0 : it->second.new_flows));
    }
  }
  {
    Family& f = x.Add("lb_backend_full_skips_total", "counter",
                      "New flows the pick chose for the backend and sent elsewhere (or dropped) "
                      "because it was at max_connections, all lcores.");
    for (const v1::BackendStatus& b : backends) {
      auto it = traffic.backends.find(b.backend().id());
      Exposition::Sample(f, "", backend_labels(b),
                         U(it == traffic.backends.end() ? 0 : it->second.full_skips));
    }
  }
  {
    Family& f =
        x.Add("lb_backend_active_flows", "gauge", "Live flows pinned to the backend, all lcores.");
    for (const v1::BackendStatus& b : backends) {
      Exposition::Sample(f, "", backend_labels(b), U(b.active_connections()));
    }
  }
}

void AddLatencyFamilies(Exposition& x, const ControlPlane& cp, const MetricsInputs& in) {
  {
    Family& f = x.Add("lb_publish_duration_seconds", "histogram",
                      "Table publish latency: accepted change to published generation.");
    if (in.publish_latency != nullptr) {
      AddHistogram(f, in.publish_latency->Snapshot(), {});
    } else {
      std::vector<double> seconds;
      for (double ms : cp.PublishLatenciesMs()) seconds.push_back(ms / 1000.0);
      AddHistogram(f, MakeHistogram(seconds), {});
    }
  }
  {
    Family& f = x.Add("lb_health_check_duration_seconds", "histogram",
                      "Health-check latency (connect, request or script run).");
    AddHistogram(f,
                 in.health_check_latency != nullptr ? in.health_check_latency->Snapshot()
                                                    : MakeHistogram({}),
                 {});
  }
}

void AddL7HealthFamilies(Exposition& x, const L7HealthCounters& c) {
  {
    Family& f = x.Add("lb_l7_health_checks_total", "counter",
                      "Active checks of lb-l7 pools' backends completed, by result.");
    Exposition::Sample(f, "", {{"result", "ok"}}, U(c.checks_ok));
    Exposition::Sample(f, "", {{"result", "failed"}}, U(c.checks_failed));
  }
  Exposition::Sample(x.Add("lb_l7_health_transitions_total", "counter",
                           "L7 backends marked down or up again by the active checks."),
                     "", {}, U(c.transitions));
  Exposition::Sample(x.Add("lb_l7_health_generation", "gauge",
                           "Generation of the L7 health streamed to lb-l7 (WatchL7Config)."),
                     "", {}, U(c.generation));
  Exposition::Sample(x.Add("lb_l7_health_backends", "gauge", "L7 backends actively checked."), "",
                     {}, U(c.backends));
  Exposition::Sample(
      x.Add("lb_l7_health_backends_down", "gauge", "L7 backends the active checks hold down."), "",
      {}, U(c.down));
}

}  // namespace

std::string RenderMetrics(const ControlPlane& cp, const MetricsInputs& in) {
  const v1::Stats stats = cp.GetStats();
  const TrafficSnapshot traffic =
      in.table_path.empty() || in.stats_path.empty() ? TrafficSnapshot() : cp.Traffic();
  Exposition x;
  AddNodeFamilies(x, stats, cp.GetTables(), in);
  AddStoreFamilies(x, cp);
  AddTicketKeyFamilies(x, cp);
  if (in.leader_status) AddLeaderFamilies(x, in.leader_status());
  AddLcoreFamilies(x, stats);
  AddPortFamilies(x, stats);
  AddVipFamilies(x, cp.ListVips(), traffic);
  AddBackendFamilies(x, cp, cp.config(), traffic);
  AddLatencyFamilies(x, cp, in);
  if (in.l7_health != nullptr) AddL7HealthFamilies(x, in.l7_health->Counters());
  return x.Render();
}

}  // namespace lb
