// The health merge: how the health checker's reports change what is
// published. The desired state is what the operator asked for; the
// effective state marks unhealthy backends DOWN (existing flows re-picked);
// unknown health publishes the backend as configured. A report counts only
// for the backend (id and address) it was made for, in a pool with a health
// check; entries for backends that left or changed address are pruned at
// every commit.
//
// Pure functions over values; the caller serialises (the transaction mutex).
#ifndef LB_CONTROLPLANE_HEALTH_MERGE_H_
#define LB_CONTROLPLANE_HEALTH_MERGE_H_

#include <cstdint>
#include <map>
#include <string>

#include "controlplane/config.h"
#include "controlplane/control_plane.h"
#include "lb/v1/config.pb.h"

namespace lb {

struct HealthEntry {
  HealthReport report;
  std::string address;  // canonical address the report was for
};
using HealthMap = std::map<uint32_t, HealthEntry>;  // by backend id

bool AnyUnhealthy(const HealthMap& h);

// `d` with every unhealthy backend DOWN.
DesiredState Effective(const DesiredState& d, const HealthMap& h);

// The entries of `h` still meaningful for `c` (validated as `d`): the
// backend exists with the same address and its pool is health-checked.
HealthMap PrunedHealth(const HealthMap& h, const v1::Config& c, const DesiredState& d);

// Records `report` for the backend at `address`. Returns the status before
// (UNKNOWN when the entry was for another address) and after; UNSPECIFIED
// is stored as UNKNOWN.
struct HealthChange {
  v1::HealthStatus before = v1::HEALTH_STATUS_UNKNOWN;
  v1::HealthStatus after = v1::HEALTH_STATUS_UNKNOWN;
  // healthy/unknown <-> unhealthy: the effective state changes.
  bool flips() const {
    return (before == v1::HEALTH_STATUS_UNHEALTHY) != (after == v1::HEALTH_STATUS_UNHEALTHY);
  }
};
HealthChange ApplyReport(HealthMap* h, const HealthReport& report, const std::string& address);

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_MERGE_H_
