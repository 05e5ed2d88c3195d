// Rise/fall thresholds and damping (controlplane/health_policy.h), driven
// with a hand-made clock: the status sequence is checked against golden
// strings ("?" unknown, "H" healthy, "U" unhealthy).
#include "controlplane/health_policy.h"

#include <gtest/gtest.h>

#include <string>

namespace lb {
namespace {

constexpr int64_t kMs = 1'000'000;

char Letter(v1::HealthStatus s) {
  return s == v1::HEALTH_STATUS_HEALTHY ? 'H' : s == v1::HEALTH_STATUS_UNHEALTHY ? 'U' : '?';
}

// Feeds `checks` ('+' success, '-' failure) one per `step_ms`; returns the
// status after each.
std::string Statuses(const std::string& checks, const HealthPolicy& policy, int64_t step_ms,
                     HealthState* state) {
  std::string out;
  int64_t now = 1000 * kMs;
  for (char c : checks) {
    state->Record(c == '+', c == '+' ? "" : "HTTP 503", now, policy);
    out.push_back(Letter(state->status()));
    now += step_ms * kMs;
  }
  return out;
}

TEST(HealthPolicy, ChangesExactlyAtTheThresholds) {
  HealthState s;
  const HealthPolicy p{2, 3, 0};
  EXPECT_EQ(Statuses("++--+---++", p, 10, &s), "?HHHHHHUUH");
  EXPECT_EQ(s.consecutive_successes(), 2u);
  EXPECT_EQ(s.consecutive_failures(), 0u);
  EXPECT_EQ(s.failed_checks(), 5u);
  EXPECT_EQ(s.last_error(), "HTTP 503");  // kept after recovery
}

TEST(HealthPolicy, FirstChangeIsNeverDampedThenAtMostOnePerWindow) {
  HealthState s;
  const HealthPolicy p{1, 1, 35 * kMs};  // a change may follow the last after 35 ms
  // One check every 10 ms: after the first change (t=0) the next may come at
  // t>=35, i.e. the 5th check (t=40); after that one not before t=75, so the
  // success at t=70 is held back and the one at t=80 flips it.
  EXPECT_EQ(Statuses("+-+----++", p, 10, &s), "HHHHUUUUH");
  EXPECT_EQ(s.consecutive_successes(), 2u);
}

TEST(HealthPolicy, StartsUnknownAndStaysSoBelowTheThresholds) {
  HealthState s;
  const HealthPolicy p{3, 3, 0};
  EXPECT_EQ(Statuses("++--++-", p, 10, &s), "???????");
}

}  // namespace
}  // namespace lb
