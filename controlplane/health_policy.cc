#include "controlplane/health_policy.h"

#include <utility>

namespace lb {

void HealthState::Record(bool ok, std::string error, int64_t now_ns, const HealthPolicy& policy) {
  if (ok) {
    ++successes_;
    failures_ = 0;
  } else {
    ++failures_;
    successes_ = 0;
    ++failed_checks_;
    last_error_ = std::move(error);
  }
  // Damping: no second change within min_state_ns of the previous one; the
  // counts keep running meanwhile.
  if (changed_ever_ && now_ns - last_change_ns_ < policy.min_state_ns) return;
  v1::HealthStatus next = status_;
  if (ok && successes_ >= policy.healthy_threshold) next = v1::HEALTH_STATUS_HEALTHY;
  if (!ok && failures_ >= policy.unhealthy_threshold) next = v1::HEALTH_STATUS_UNHEALTHY;
  if (next != status_) {
    status_ = next;
    changed_ever_ = true;
    last_change_ns_ = now_ns;
  }
}

}  // namespace lb
