#include "controlplane/health_merge.h"

#include "controlplane/config_lookup.h"

namespace lb {

const char* HealthStatusName(v1::HealthStatus h) {
  switch (h) {
    case v1::HEALTH_STATUS_HEALTHY:
      return "healthy";
    case v1::HEALTH_STATUS_UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

bool AnyUnhealthy(const HealthMap& h) {
  for (const auto& [id, e] : h) {
    if (e.report.status == v1::HEALTH_STATUS_UNHEALTHY) return true;
  }
  return false;
}

DesiredState Effective(const DesiredState& d, const HealthMap& h) {
  DesiredState e = d;
  for (DesiredPool& p : e.pools) {
    for (DesiredBackend& b : p.backends) {
      auto it = h.find(b.id);
      if (b.id != 0 && it != h.end() && it->second.address == b.address.text &&
          it->second.report.status == v1::HEALTH_STATUS_UNHEALTHY) {
        b.state = BackendState::kDown;
      }
    }
  }
  return e;
}

HealthMap PrunedHealth(const HealthMap& h, const v1::Config& c, const DesiredState& d) {
  HealthMap out;
  for (int i = 0; i < c.pools_size(); ++i) {
    if (!HealthChecked(c.pools(i))) continue;
    for (int j = 0; j < c.pools(i).backends_size(); ++j) {
      const uint32_t id = c.pools(i).backends(j).id();
      auto it = h.find(id);
      if (id != 0 && it != h.end() && it->second.address == d.pools[i].backends[j].address.text) {
        out.insert(*it);
      }
    }
  }
  return out;
}

HealthChange ApplyReport(HealthMap* h, const HealthReport& report, const std::string& address) {
  HealthEntry& e = (*h)[report.backend_id];
  HealthChange change;
  change.before = e.address == address ? e.report.status : v1::HEALTH_STATUS_UNKNOWN;
  e.report = report;
  e.address = address;
  if (e.report.status == v1::HEALTH_STATUS_UNSPECIFIED) e.report.status = v1::HEALTH_STATUS_UNKNOWN;
  change.after = e.report.status;
  return change;
}

}  // namespace lb
