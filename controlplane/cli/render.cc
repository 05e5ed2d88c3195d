#include "controlplane/cli/render.h"

#include <map>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "controlplane/cli/text_table.h"

namespace lb::cli {

std::string Algo(v1::Algorithm a) {
  return EnumShort(a == v1::ALGORITHM_UNSPECIFIED ? v1::ALGORITHM_MAGLEV : a, "ALGORITHM_");
}
std::string State(v1::BackendState s) {
  return EnumShort(s == v1::BACKEND_STATE_UNSPECIFIED ? v1::BACKEND_STATE_ACTIVE : s,
                   "BACKEND_STATE_");
}
std::string Health(v1::HealthStatus h) { return EnumShort(h, "HEALTH_STATUS_"); }
std::string Proto(v1::Protocol p) { return EnumShort(p, "PROTOCOL_"); }

std::string Num(uint64_t v) { return absl::StrCat(v); }

std::string UnixMsText(uint64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(static_cast<int64_t>(ms)),
                          absl::UTCTimeZone());
}

const std::vector<std::string> kVipHeader = {
    "ID", "ADDRESS", "PORT", "PROTO", "POOL", "MEMBERS", "GENERATION", "FINGERPRINT", "FRAG"};

std::vector<std::string> VipRow(const v1::Vip& v, const v1::VipStatus* status) {
  return {Num(v.id()),
          v.address(),
          Num(v.port()),
          Proto(v.protocol()),
          v.pool(),
          status != nullptr ? Num(status->active_members()) : "-",
          status != nullptr ? Num(status->generation()) : "-",
          status != nullptr ? status->fingerprint() : "-",
          v.fragment_tolerant() ? "yes" : "no"};
}

std::string HealthCheckText(const v1::HealthCheck& hc) {
  switch (hc.kind()) {
    case v1::HEALTH_CHECK_KIND_UNSPECIFIED:
    case v1::HEALTH_CHECK_KIND_NONE:
      return "none";
    default:
      break;
  }
  std::string out = EnumShort(hc.kind(), "HEALTH_CHECK_KIND_");
  if (hc.kind() == v1::HEALTH_CHECK_KIND_HTTP) {
    absl::StrAppend(&out, ":", hc.http_path().empty() ? "/health" : hc.http_path());
  }
  absl::StrAppend(&out, "/", hc.interval_ms() == 0 ? 5000 : hc.interval_ms(), "ms");
  if (hc.through_tunnel()) absl::StrAppend(&out, "/tunnel");
  return out;
}

const std::vector<std::string> kPoolHeader = {"NAME",          "ALGORITHM", "STICKY",
                                              "STICKY_TTL",    "BACKENDS",  "HEALTH_CHECK",
                                              "DRAIN_TIMEOUT", "KIND"};

std::vector<std::string> PoolRow(const v1::Pool& p) {
  return {
      p.name(),
      Algo(p.algorithm()),
      p.sticky_sessions() ? "yes" : "no",
      p.sticky_sessions() ? Num(p.sticky_ttl_seconds() == 0 ? 3600 : p.sticky_ttl_seconds()) : "-",
      Num(static_cast<uint64_t>(p.backends_size())),
      HealthCheckText(p.health_check()),
      Num(p.drain_timeout_seconds() == 0 ? 30 : p.drain_timeout_seconds()),
      p.kind() == v1::POOL_KIND_PROXY ? "proxy" : "dsr"};
}

const std::vector<std::string> kBackendHeader = {"ID",        "POOL",      "ADDRESS", "PORT",
                                                 "WEIGHT",    "MAX_CONNS", "STATE",   "HEALTH",
                                                 "EFFECTIVE", "CONNS",     "PACKETS", "BYTES"};

std::vector<std::string> BackendRow(const v1::BackendStatus& s) {
  const v1::Backend& b = s.backend();
  return {Num(b.id()),
          s.pool(),
          b.address(),
          Num(b.port()),
          Num(b.has_weight() ? b.weight() : 1),
          b.max_connections() == 0 ? "-" : Num(b.max_connections()),
          State(b.state()),
          Health(s.health()),
          State(s.effective_state()),
          Num(s.active_connections()),
          Num(s.packets()),
          Num(s.bytes())};
}

std::string VipText(const v1::Vip& v) {
  TextTable t(kVipHeader);
  t.AddRow(VipRow(v, nullptr));
  return t.Render();
}

std::string PoolText(const v1::Pool& p) {
  TextTable t(kPoolHeader);
  t.AddRow(PoolRow(p));
  return t.Render();
}

std::string BackendText(const v1::BackendStatus& s) {
  TextTable t(kBackendHeader);
  t.AddRow(BackendRow(s));
  return t.Render();
}

std::string VipsText(const google::protobuf::RepeatedPtrField<v1::VipStatus>& vips) {
  TextTable t(kVipHeader);
  for (const v1::VipStatus& v : vips) t.AddRow(VipRow(v.vip(), &v));
  return t.Render();
}

std::string PoolsText(const v1::ListPoolsResponse& r) {
  TextTable t(kPoolHeader);
  for (const v1::Pool& p : r.pools()) t.AddRow(PoolRow(p));
  return t.Render();
}

std::string BackendsText(const v1::ListBackendsResponse& r) {
  TextTable t(kBackendHeader);
  for (const v1::BackendStatus& b : r.backends()) t.AddRow(BackendRow(b));
  return t.Render();
}

std::string EventLine(const v1::Event& e) {
  std::string line = absl::StrCat(UnixMsText(e.unix_ms()), "  ", e.kind());
  if (e.generation() != 0) absl::StrAppend(&line, "  generation=", e.generation());
  if (e.backend_id() != 0) absl::StrAppend(&line, "  backend=", e.backend_id());
  if (e.health() != v1::HEALTH_STATUS_UNSPECIFIED) {
    absl::StrAppend(&line, "  health=", Health(e.health()));
  }
  if (!e.message().empty()) absl::StrAppend(&line, "  ", e.message());
  return line;
}

std::string NodeText(const v1::Node& n) {
  return RenderKeyValues({
      {"tunnel_source_ipv4",
       n.tunnel_source_ipv4().empty() ? "(lb-dataplane --ipv4)" : n.tunnel_source_ipv4()},
      {"tunnel_source_ipv6",
       n.tunnel_source_ipv6().empty() ? "(lb-dataplane --ipv6)" : n.tunnel_source_ipv6()},
  });
}

std::string BackendHealthText(const v1::BackendHealth& h) {
  return RenderKeyValues({
      {"id", Num(h.id())},
      {"status", h.status()},
      {"last_check", h.last_check().empty() ? "-" : h.last_check()},
      {"last_latency_ms", absl::StrFormat("%.3f", h.last_latency_ms())},
      {"consecutive_successes", Num(h.consecutive_successes())},
      {"consecutive_failures", Num(h.consecutive_failures())},
      {"active_connections", Num(h.active_connections())},
      {"total_requests", Num(h.total_requests())},
      {"failed_checks", Num(h.failed_checks())},
      {"last_error", h.last_error().empty() ? "-" : h.last_error()},
  });
}

std::string StatsText(const v1::Stats& st) {
  std::string out = RenderKeyValues({
      {"generation", Num(st.generation())},
      {"dataplane_running", st.dataplane_running() ? "yes" : "no"},
      {"lcores", Num(static_cast<uint64_t>(st.lcores_size()))},
  });
  if (st.lcores_size() == 0) return out;
  TextTable t({"LCORE", "ONLINE", "GENERATION", "RX_PACKETS", "RX_BYTES", "TX_PACKETS", "TX_BYTES",
               "FORWARDED", "NEW_FLOWS", "CONN_ENTRIES", "CONN_EVICTIONS", "DROPS"});
  for (const v1::LcoreCounters& l : st.lcores()) {
    // Sorted by reason name so the column is stable across runs.
    std::map<std::string, uint64_t> drops(l.drops().begin(), l.drops().end());
    std::vector<std::string> nonzero;
    for (const auto& [reason, n] : drops) {
      if (n != 0) nonzero.push_back(absl::StrCat(reason, "=", n));
    }
    t.AddRow({Num(l.lcore()), l.online() ? "yes" : "no", Num(l.observed_generation()),
              Num(l.rx_packets()), Num(l.rx_bytes()), Num(l.tx_packets()), Num(l.tx_bytes()),
              Num(l.forwarded()), Num(l.new_flows()), Num(l.conn_entries()),
              Num(l.conn_evictions()), nonzero.empty() ? "none" : absl::StrJoin(nonzero, ",")});
  }
  return absl::StrCat(out, "\n", t.Render());
}

std::string TablesText(const v1::TablesInfo& ti) {
  std::string out = RenderKeyValues({
      {"generation", Num(ti.generation())},
      {"config_version", Num(ti.config_version())},
      {"last_publish_ms", absl::StrFormat("%.3f", ti.last_publish_ms())},
      {"stuck_lcores", ti.stuck_lcores().empty() ? "none" : absl::StrJoin(ti.stuck_lcores(), ",")},
  });
  return absl::StrCat(out, "\n", VipsText(ti.vips()));
}

std::string ExplainText(const v1::ExplainResponse& r) {
  return RenderKeyValues({
      {"vip", absl::StrCat(r.vip_id(), " (", r.vip(), ")")},
      {"backend", r.backend_id() != 0   ? absl::StrCat(r.backend_id(), " (", r.backend(), ")")
                  : r.backend().empty() ? "none (see reason)"
                                        : absl::StrCat("none (", r.backend(), ")")},
      {"algorithm", r.algorithm()},
      {"reason", r.reason()},
      {"generation", Num(r.generation())},
  });
}

}  // namespace lb::cli
