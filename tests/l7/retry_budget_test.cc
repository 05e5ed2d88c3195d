// lib/l7/retry_budget.h: the minimum always passes, beyond it the percent of
// recent requests, and the window forgets old traffic.
#include "lib/l7/retry_budget.h"

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

constexpr int64_t kS = 1'000'000'000;

TEST(RetryBudget, MinimumWithoutTraffic) {
  RetryBudget b(20, 3);
  EXPECT_TRUE(b.TryRetry(0));
  EXPECT_TRUE(b.TryRetry(0));
  EXPECT_TRUE(b.TryRetry(0));
  EXPECT_FALSE(b.TryRetry(0));  // 3 retries, no requests: min 3 + 0
}

TEST(RetryBudget, PercentOfRecentRequests) {
  RetryBudget b(20, 2);
  for (int i = 0; i < 100; ++i) b.OnRequest(5 * kS);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += b.TryRetry(5 * kS);
  EXPECT_EQ(allowed, 22);  // 2 + 20 % of 100
}

TEST(RetryBudget, WindowForgets) {
  RetryBudget b(10, 1);
  for (int i = 0; i < 50; ++i) b.OnRequest(0);
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += b.TryRetry(0);
  EXPECT_EQ(allowed, 6);             // 1 + 10 % of 50
  EXPECT_FALSE(b.TryRetry(9 * kS));  // still inside the 10 s window
  // 10 s later the old requests and retries are gone: the minimum again.
  EXPECT_TRUE(b.TryRetry(10 * kS));
  EXPECT_FALSE(b.TryRetry(10 * kS));
}

TEST(RetryBudget, SpreadOverBuckets) {
  RetryBudget b(50, 0);
  for (int s = 0; s < 10; ++s) b.OnRequest(s * kS);  // one per second
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += b.TryRetry(9 * kS);
  EXPECT_EQ(allowed, 5);  // 50 % of the 10 requests of the window
}

}  // namespace
}  // namespace lb::l7
