#include "controlplane/query_snapshot.h"

#include "absl/strings/str_format.h"
#include "controlplane/config_lookup.h"

namespace lb {

std::map<uint32_t, uint32_t> SlotsOf(const BuildResult& build) {
  std::map<uint32_t, uint32_t> out;
  for (uint32_t slot = 1; slot < build.assignment.backends.size(); ++slot) {
    const auto& b = build.assignment.backends[slot];
    if (b.in_use()) out[b.backend_id] = slot;
  }
  return out;
}

uint64_t LiveFlows(const QuerySnapshot& s, const DataplaneView& view, uint32_t id) {
  auto it = s.slot_of.find(id);
  return it == s.slot_of.end() ? 0 : view.SumBackend(it->second).active_flows;
}

v1::BackendStatus BackendStatusOf(const QuerySnapshot& s, const DataplaneView& view,
                                  const std::string& pool, const v1::Backend& b) {
  v1::BackendStatus out;
  out.set_pool(pool);
  *out.mutable_backend() = b;
  v1::HealthStatus h = v1::HEALTH_STATUS_UNKNOWN;
  auto hit = s.published_health.find(b.id());
  if (hit != s.published_health.end()) h = hit->second.report.status;
  if (h == v1::HEALTH_STATUS_UNSPECIFIED) h = v1::HEALTH_STATUS_UNKNOWN;
  out.set_health(h);
  v1::BackendState st =
      b.state() == v1::BACKEND_STATE_UNSPECIFIED ? v1::BACKEND_STATE_ACTIVE : b.state();
  if (st == v1::BACKEND_STATE_ACTIVE && b.has_weight() && b.weight() == 0) {
    st = v1::BACKEND_STATE_DRAINING;
  }
  if (h == v1::HEALTH_STATUS_UNHEALTHY) st = v1::BACKEND_STATE_DOWN;
  out.set_effective_state(st);
  auto sit = s.slot_of.find(b.id());
  if (sit != s.slot_of.end()) {
    BackendCountersSum c = view.SumBackend(sit->second);
    out.set_active_connections(c.active_flows);
    out.set_packets(c.packets);
    out.set_bytes(c.bytes);
  }
  return out;
}

v1::VipStatus VipStatusOf(const QuerySnapshot& s, const v1::Vip& v) {
  v1::VipStatus out;
  *out.mutable_vip() = v;
  out.set_generation(s.generation);
  for (const VipSummary& sum : s.vips) {
    if (sum.vip_id == v.id()) {
      out.set_fingerprint(absl::StrFormat("%016x", sum.fingerprint));
      out.set_active_members(sum.members);
      break;
    }
  }
  return out;
}

v1::BackendHealth BackendHealthOf(const QuerySnapshot& s, const DataplaneView& view, uint32_t id) {
  v1::BackendHealth h;
  h.set_id(id);
  h.set_status("unknown");
  if (auto it = s.health.find(id); it != s.health.end()) {
    const HealthReport& r = it->second.report;
    h.set_status(HealthStatusName(r.status));
    h.set_last_check(Rfc3339(r.check_unix_ms));
    h.set_last_latency_ms(r.latency_ms);
    h.set_consecutive_successes(r.consecutive_successes);
    h.set_consecutive_failures(r.consecutive_failures);
    h.set_failed_checks(r.failed_checks);
    h.set_last_error(r.last_error);
  }
  if (auto it = s.slot_of.find(id); it != s.slot_of.end()) {
    BackendCountersSum c = view.SumBackend(it->second);
    h.set_active_connections(c.active_flows);
    h.set_total_requests(c.new_flows);
  }
  return h;
}

}  // namespace lb
