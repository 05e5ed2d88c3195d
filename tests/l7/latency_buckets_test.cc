// Bucket placement of lb-l7's latency histograms (lib/l7/latency_buckets.h).
#include "lib/l7/latency_buckets.h"

#include <cstdint>
#include <cstdlib>

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

TEST(LatencyBucketTest, Golden) {
  struct Case {
    int64_t ns;
    int bucket;
  };
  const Case cases[] = {
      {-5, 0},  // clock went back
      {0, 0},
      {499'999, 0},
      {500'000, 0},  // le is inclusive
      {500'001, 1},
      {1'000'000, 1},
      {3'000'000, 3},  // 3 ms: le=0.005
      {99'999'999, 7},
      {100'000'000, 7},
      {100'000'001, 8},
      {10'000'000'000, 13},              // 10 s: the last bound
      {10'000'000'001, kLatencyBounds},  // +Inf
      {INT64_MAX, kLatencyBounds},
  };
  for (const Case& c : cases) EXPECT_EQ(LatencyBucket(c.ns), c.bucket) << c.ns << " ns";
}

TEST(LatencyBucketTest, BoundsIncreaseAndMatchLabels) {
  for (int i = 0; i < kLatencyBounds; ++i) {
    if (i > 0) {
      EXPECT_LT(kLatencyBoundNs[i - 1], kLatencyBoundNs[i]);
    }
    // The `le` label is the bound in seconds.
    EXPECT_EQ(static_cast<int64_t>(std::strtod(kLatencyLe[i], nullptr) * 1e9 + 0.5),
              kLatencyBoundNs[i])
        << kLatencyLe[i];
  }
}

// Property: every duration lands in the one bucket whose bounds enclose it.
TEST(LatencyBucketTest, EnclosingBucket) {
  for (int64_t ns = 1; ns < 20'000'000'000; ns = ns * 3 / 2 + 7) {
    const int b = LatencyBucket(ns);
    if (b < kLatencyBounds) {
      EXPECT_LE(ns, kLatencyBoundNs[b]);
    }
    if (b > 0) {
      EXPECT_GT(ns, kLatencyBoundNs[b - 1]);
    }
  }
}

}  // namespace
}  // namespace lb::l7
