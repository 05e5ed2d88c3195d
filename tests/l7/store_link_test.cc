// lib/l7/store_link.h: connect at once, back off doubling to the cap, reset
// when up, and one "news" per up/down change (the log lines).
#include "lib/l7/store_link.h"

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

constexpr int64_t kMs = 1'000'000;

TEST(StoreLink, BackoffDoublesToTheCapAndResetsWhenUp) {
  StoreLink l(100 * kMs, 500 * kMs);
  EXPECT_TRUE(l.ShouldConnect(0));  // first attempt immediate
  EXPECT_EQ(l.state(), StoreLink::State::kConnecting);
  EXPECT_FALSE(l.ShouldConnect(0));  // already connecting
  EXPECT_TRUE(l.OnFailure(0));       // news: first known state is down
  EXPECT_EQ(l.backoff_ns(), 100 * kMs);
  EXPECT_FALSE(l.ShouldConnect(99 * kMs));
  EXPECT_TRUE(l.ShouldConnect(100 * kMs));
  EXPECT_FALSE(l.OnFailure(100 * kMs));  // still down: no new log line
  EXPECT_EQ(l.backoff_ns(), 200 * kMs);
  EXPECT_TRUE(l.ShouldConnect(300 * kMs));
  l.OnFailure(300 * kMs);
  EXPECT_EQ(l.backoff_ns(), 400 * kMs);
  EXPECT_TRUE(l.ShouldConnect(700 * kMs));
  l.OnFailure(700 * kMs);
  EXPECT_EQ(l.backoff_ns(), 500 * kMs);  // capped
  EXPECT_EQ(l.next_attempt_ns(), 1200 * kMs);
  EXPECT_TRUE(l.ShouldConnect(1200 * kMs));
  EXPECT_TRUE(l.OnUp());  // news: up
  EXPECT_TRUE(l.up());
  EXPECT_FALSE(l.ShouldConnect(5000 * kMs));
  EXPECT_TRUE(l.OnFailure(5000 * kMs));  // news: down again
  EXPECT_EQ(l.backoff_ns(), 100 * kMs);  // reset by the success
}

TEST(StoreLink, UpTwiceIsOneLine) {
  StoreLink l(100 * kMs, 100 * kMs);
  ASSERT_TRUE(l.ShouldConnect(0));
  EXPECT_TRUE(l.OnUp());
  EXPECT_TRUE(l.OnFailure(kMs));
  ASSERT_TRUE(l.ShouldConnect(200 * kMs));
  EXPECT_TRUE(l.OnUp());
  EXPECT_FALSE(l.OnUp());
}

}  // namespace
}  // namespace lb::l7
