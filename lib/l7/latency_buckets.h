// The fixed buckets of lb-l7's latency histograms
// (lb_l7_request_duration_seconds, lb_l7_upstream_response_seconds):
// 0.5 ms .. 10 s, then +Inf. LatencyBucket() maps a duration in nanoseconds
// to its bucket index: the first bound it does not exceed (Prometheus `le`
// is inclusive), kLatencyBounds for longer ones (+Inf); a negative duration
// (a clock that went back) lands in bucket 0. No allocation, no failure.
//
// Threads: any (pure functions over constants).
#ifndef LB_LIB_L7_LATENCY_BUCKETS_H_
#define LB_LIB_L7_LATENCY_BUCKETS_H_

#include <cstdint>

namespace lb::l7 {

inline constexpr int kLatencyBounds = 14;
// Slots per histogram: the bounds, then +Inf.
inline constexpr int kLatencySlots = kLatencyBounds + 1;
inline constexpr int64_t kLatencyBoundNs[kLatencyBounds] = {
    500'000,       1'000'000,     2'500'000,     5'000'000,     10'000'000,
    25'000'000,    50'000'000,    100'000'000,   250'000'000,   500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
// The same bounds as Prometheus `le` label values.
inline constexpr const char* kLatencyLe[kLatencyBounds] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",     "10"};

inline int LatencyBucket(int64_t ns) {
  // 14 compares at most; the common answers (a few ms) are found early.
  for (int i = 0; i < kLatencyBounds; ++i) {
    if (ns <= kLatencyBoundNs[i]) return i;
  }
  return kLatencyBounds;
}

}  // namespace lb::l7

#endif  // LB_LIB_L7_LATENCY_BUCKETS_H_
