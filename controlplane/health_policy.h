// The status a backend's checks add up to: rise/fall thresholds and damping.
// Pure: the caller passes the time.
//
// Contract
//  * UNKNOWN/UNHEALTHY -> HEALTHY after healthy_threshold consecutive
//    successes; UNKNOWN/HEALTHY -> UNHEALTHY after unhealthy_threshold
//    consecutive failures.
//  * Damping: a status that changed less than min_state_ns ago does not change
//    again until that time has passed; the counts keep running, so the first
//    check after the window that still meets the threshold flips it. The
//    first change away from UNKNOWN is never damped.
//  * last_error keeps the most recent failure's text after recovery.
//
// Threads: one HealthState per target, used by one thread at a time.
#ifndef LB_CONTROLPLANE_HEALTH_POLICY_H_
#define LB_CONTROLPLANE_HEALTH_POLICY_H_

#include <cstdint>
#include <string>

#include "lb/v1/admin.pb.h"

namespace lb {

struct HealthPolicy {
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  int64_t min_state_ns = 0;
};

class HealthState {
 public:
  // Counts one completed check at `now_ns` (any monotonic clock) and applies
  // the thresholds and damping. `error` is ignored when ok.
  void Record(bool ok, std::string error, int64_t now_ns, const HealthPolicy& policy);

  v1::HealthStatus status() const { return status_; }
  uint32_t consecutive_successes() const { return successes_; }
  uint32_t consecutive_failures() const { return failures_; }
  uint64_t failed_checks() const { return failed_checks_; }
  const std::string& last_error() const { return last_error_; }

 private:
  v1::HealthStatus status_ = v1::HEALTH_STATUS_UNKNOWN;
  uint32_t successes_ = 0;
  uint32_t failures_ = 0;
  uint64_t failed_checks_ = 0;
  bool changed_ever_ = false;
  int64_t last_change_ns_ = 0;
  std::string last_error_;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_POLICY_H_
