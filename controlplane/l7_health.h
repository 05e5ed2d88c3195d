// The control plane's active checks of lb-l7's pools (docs/L7.md "Active
// health checks"): which backends to check, and what the reports decide.
//
//   L7Config pools with health_check -> Targets() (HealthTargets, ids kept
//   per pool/address/port across configurations) -> a HealthChecker of
//   their own -> Report() -> Health() (v1::L7Health, +1 generation on every
//   change of a backend's `down`) -> ControlPlane::SetL7Health -> every
//   WatchL7Config stream.
//
// A backend is down once the checker's thresholds say UNHEALTHY and up again
// once they say HEALTHY (UNKNOWN, a new target, counts as up: lb-l7's
// passive checks cover it meanwhile). A configuration that removes a backend
// or its pool's check forgets it (a generation if it was down).
//
// Failure: none; a target the checker cannot check fails its checks.
// Threads: one mutex; every method from any thread.
#ifndef LB_CONTROLPLANE_L7_HEALTH_H_
#define LB_CONTROLPLANE_L7_HEALTH_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/control_plane.h"
#include "controlplane/health_target.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/l7.pb.h"

namespace lb {

// The L4 HealthCheck an L7 pool's check amounts to (kind HTTP or TCP).
v1::HealthCheck L4CheckOf(const v1::L7HealthCheck& h);

struct L7HealthCounters {
  uint64_t checks_ok = 0;
  uint64_t checks_failed = 0;
  uint64_t transitions = 0;  // down <-> up
  uint64_t generation = 0;
  uint64_t backends = 0;  // checked
  uint64_t down = 0;
};

class L7HealthBook {
 public:
  // The targets of `config` (pools with a health_check). Forgets backends no
  // longer checked.
  std::vector<HealthTarget> Targets(const v1::L7Config& config);
  // One completed check. True when a backend's `down` changed (a new
  // generation: publish Health()).
  bool Report(const HealthReport& report);
  v1::L7Health Health() const;
  L7HealthCounters Counters() const;

 private:
  struct Key {
    std::string pool, address;
    uint32_t port;
    bool operator<(const Key& o) const {
      return std::tie(pool, address, port) < std::tie(o.pool, o.address, o.port);
    }
  };
  struct Entry {
    uint32_t id = 0;
    bool down = false;
    std::string last_error;
  };
  mutable absl::Mutex mu_;
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, Key> by_id_ ABSL_GUARDED_BY(mu_);
  uint32_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ok_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t transitions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_L7_HEALTH_H_
