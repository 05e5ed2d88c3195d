// A retry budget (Envoy's retry_budget, Finagle's RetryBudget): retries are
// allowed while, over a sliding window, retries < min_retries +
// percent % of requests. Bounds the extra load retries put on a pool when
// many backends fail at once (a retry storm), while a trickle of retries
// (min_retries) always goes through.
//
// The window is 10 buckets of `bucket_ns` (1 s by default): a bucket older
// than the window is zeroed when time reaches it again, so counts reflect
// the last 10 to 11 s. No allocation, O(10) per call.
//
// Threads: one instance per worker and pool, used by that worker only.
#ifndef LB_LIB_L7_RETRY_BUDGET_H_
#define LB_LIB_L7_RETRY_BUDGET_H_

#include <cstdint>

namespace lb::l7 {

class RetryBudget {
 public:
  static constexpr int kBuckets = 10;

  RetryBudget(uint32_t percent, uint32_t min_retries, int64_t bucket_ns = 1'000'000'000)
      : percent_(percent), min_(min_retries), bucket_ns_(bucket_ns) {}

  // A new request (not a retry) entered the pool.
  void OnRequest(int64_t now_ns) { ++Slot(now_ns).requests; }

  // True (and the retry counted) when the budget allows one more retry.
  bool TryRetry(int64_t now_ns) {
    Bucket& cur = Slot(now_ns);
    uint64_t requests = 0, retries = 0;
    for (const Bucket& b : buckets_) {
      requests += b.requests;
      retries += b.retries;
    }
    if (retries >= min_ + requests * percent_ / 100) return false;
    ++cur.retries;
    return true;
  }

 private:
  struct Bucket {
    int64_t epoch = -1;  // which bucket_ns period it counts
    uint64_t requests = 0;
    uint64_t retries = 0;
  };
  Bucket& Slot(int64_t now_ns) {
    const int64_t e = now_ns / bucket_ns_;
    // Buckets of periods that left the window read as empty.
    for (Bucket& b : buckets_) {
      if (b.epoch >= 0 && e - b.epoch >= kBuckets) b = Bucket{};
    }
    Bucket& b = buckets_[static_cast<uint64_t>(e) % kBuckets];
    if (b.epoch != e) b = Bucket{e, 0, 0};
    return b;
  }

  uint32_t percent_;
  uint32_t min_;
  int64_t bucket_ns_;
  Bucket buckets_[kBuckets];
};

}  // namespace lb::l7

#endif  // LB_LIB_L7_RETRY_BUDGET_H_
