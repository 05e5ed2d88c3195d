// Tests for lib/spsc_mailbox.h: order, capacity, and one producer thread
// against one consumer thread.
#include "lib/spsc_mailbox.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>

namespace lb {
namespace {

struct Msg {
  uint64_t seq;
  uint64_t check;
};

TEST(SpscMailboxTest, FifoAndCapacity) {
  SpscMailbox<Msg, 4> box;
  Msg m;
  EXPECT_TRUE(box.Empty());
  EXPECT_FALSE(box.Take(&m));
  EXPECT_TRUE(box.Post({1, 1}));
  EXPECT_TRUE(box.Post({2, 2}));
  EXPECT_TRUE(box.Post({3, 3}));
  EXPECT_FALSE(box.Post({4, 4}));  // N - 1 waiting: full
  ASSERT_TRUE(box.Take(&m));
  EXPECT_EQ(m.seq, 1u);
  EXPECT_TRUE(box.Post({4, 4}));
  for (uint64_t want = 2; want <= 4; ++want) {
    ASSERT_TRUE(box.Take(&m));
    EXPECT_EQ(m.seq, want);
  }
  EXPECT_FALSE(box.Take(&m));
  EXPECT_TRUE(box.Empty());
}

TEST(SpscMailboxTest, WrapsAroundManyTimes) {
  SpscMailbox<Msg, 2> box;
  Msg m;
  for (uint64_t i = 0; i < 100000; ++i) {
    ASSERT_TRUE(box.Post({i, ~i}));
    ASSERT_FALSE(box.Post({i, ~i}));
    ASSERT_TRUE(box.Take(&m));
    ASSERT_EQ(m.seq, i);
  }
}

TEST(SpscMailboxTest, TwoThreadsSeeEveryMessageInOrderAndWhole) {
  SpscMailbox<Msg, 16> box;
  constexpr uint64_t kCount = 1000000;
  std::thread producer([&] {
    for (uint64_t i = 0; i < kCount;) {
      if (box.Post({i, i * 0x9E3779B97F4A7C15ull})) ++i;
    }
  });
  uint64_t next = 0;
  Msg m;
  while (next < kCount) {
    if (!box.Take(&m)) continue;
    ASSERT_EQ(m.seq, next);
    ASSERT_EQ(m.check, next * 0x9E3779B97F4A7C15ull);
    ++next;
  }
  producer.join();
  EXPECT_TRUE(box.Empty());
}

}  // namespace
}  // namespace lb
