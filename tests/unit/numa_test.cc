// CrossSocketPolls (lib/numa.h) with fake socket ids: this machine has one
// NUMA node, so the real ids never differ here.
#include "lib/numa.h"

#include <gtest/gtest.h>

namespace lb {
namespace {

TEST(CrossSocketPolls, OneLinePerPairOnDifferentKnownSockets) {
  const std::vector<LcorePortPoll> polls = {
      {0, 0, 0, 0, 0},    // same socket
      {1, 8, 1, 0, 0},    // lcore on 1, port on 0: warned
      {1, 8, 1, 1, 1},    // same socket
      {2, 9, -1, 0, 0},   // lcore socket unknown
      {3, 10, 1, 2, -1},  // port socket unknown (a vdev)
      {3, 10, 0, 1, 1},   // warned
  };
  const std::vector<std::string> w = CrossSocketPolls(polls);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0],
            "worker 1 (lcore 8, socket 1) polls port 0 on socket 0: its packets cross sockets "
            "(give it an lcore of socket 0 with -l)");
  EXPECT_EQ(w[1].substr(0, 46), "worker 3 (lcore 10, socket 0) polls port 1 on ");
}

TEST(CrossSocketPolls, NothingWhenAllLocalOrUnknown) {
  EXPECT_TRUE(CrossSocketPolls({}).empty());
  EXPECT_TRUE(CrossSocketPolls({{0, 0, 0, 0, 0}, {1, 1, -1, 0, 1}, {2, 2, 1, 0, -1}}).empty());
}

}  // namespace
}  // namespace lb
