// Tests for lib/balance.h: the per-lcore algorithms, with the sequences the
// Worker produced before they moved to lib/.
#include "lib/balance.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/unit/fake_slot.h"

namespace lb {
namespace {

std::vector<uint32_t> Picks(Balancer& b, const SlotView& slot, int vip, int n) {
  std::vector<uint32_t> out;
  const FlowKey k{};
  for (int i = 0; i < n; ++i) {
    BackendPick p;
    out.push_back(b.Pick(slot, vip, k, 0, nullptr, &p) ? p.slot : 0);
  }
  return out;
}

TEST(BalanceTest, RoundRobinRotatesPerVipAndRestarts) {
  FakeSlot fs(7, 7);
  const int a = fs.AddVip(Algorithm::kRoundRobin, {3, 5, 7});
  const int b = fs.AddVip(Algorithm::kRoundRobin, {1, 2});
  const SlotView slot = fs.view();
  Balancer bal;
  bal.Init(2, 5, 0);
  EXPECT_EQ(Picks(bal, slot, a, 4), (std::vector<uint32_t>{3, 5, 7, 3}));
  EXPECT_EQ(Picks(bal, slot, b, 3), (std::vector<uint32_t>{1, 2, 1}));
  EXPECT_EQ(Picks(bal, slot, a, 1), (std::vector<uint32_t>{5}));
  bal.Restart();
  EXPECT_EQ(Picks(bal, slot, a, 2), (std::vector<uint32_t>{3, 5}));
}

TEST(BalanceTest, SmoothWeightedInterleaves) {
  FakeSlot fs(3, 7);
  const int vip = fs.AddVip(Algorithm::kWeightedRoundRobin, {1, 2, 3});
  fs.backend(1).weight = 5;
  const SlotView slot = fs.view();
  Balancer bal;
  bal.Init(1, 3, 0);
  // nginx's sequence for weights 5, 1, 1: a a b a c a a, then again.
  const std::vector<uint32_t> cycle = {1, 1, 2, 1, 3, 1, 1};
  EXPECT_EQ(Picks(bal, slot, vip, 7), cycle);
  EXPECT_EQ(Picks(bal, slot, vip, 7), cycle);
  Picks(bal, slot, vip, 3);
  bal.Restart();
  EXPECT_EQ(Picks(bal, slot, vip, 7), cycle);
}

TEST(BalanceTest, RandomStreamsArePerLcoreAndPinned) {
  FakeSlot fs(5, 7);
  const int vip = fs.AddVip(Algorithm::kRandom, {1, 2, 3, 4, 5});
  const SlotView slot = fs.view();
  Balancer l0, l1;
  l0.Init(1, 5, 0);
  l1.Init(1, 5, 1);
  // Member index + 1 (slots are 1..5), as the Worker's xorshift64* drew them.
  EXPECT_EQ(Picks(l0, slot, vip, 10), (std::vector<uint32_t>{5, 4, 1, 2, 1, 3, 1, 5, 4, 2}));
  EXPECT_EQ(Picks(l1, slot, vip, 10), (std::vector<uint32_t>{3, 3, 2, 3, 1, 4, 5, 5, 5, 5}));
}

TEST(BalanceTest, LeastConnectionsPlainAndWeighted) {
  FakeSlot fs(3, 7);
  const int lc = fs.AddVip(Algorithm::kLeastConnections, {1, 2, 3});
  const int wlc = fs.AddVip(Algorithm::kWeightedLeastConnections, {1, 2, 3});
  fs.backend(1).weight = 4;
  const SlotView slot = fs.view();
  std::vector<BackendCounters> counters(4);
  for (auto& c : counters) c.active_flows.store(0);
  counters[1].active_flows.store(6);
  counters[2].active_flows.store(2);
  counters[3].active_flows.store(2);
  EXPECT_EQ(Balancer::LeastConnections(slot, lc, counters.data(), false), 2u);  // tie: earlier
  // Weighted: 6/4 = 1.5 beats 2/1.
  EXPECT_EQ(Balancer::LeastConnections(slot, wlc, counters.data(), true), 1u);
  Balancer bal;
  bal.Init(2, 6, 0);
  BackendPick p;
  ASSERT_TRUE(bal.Pick(slot, wlc, FlowKey{}, 0, counters.data(), &p));
  EXPECT_EQ(p.slot, 1u);
  EXPECT_EQ(p.incarnation, 101u);
  counters[1].active_flows.store(9);  // 9/4 > 2/1
  ASSERT_TRUE(bal.Pick(slot, wlc, FlowKey{}, 0, counters.data(), &p));
  EXPECT_EQ(p.slot, 2u);
}

TEST(BalanceTest, NoMembersOrInactivePickFails) {
  FakeSlot fs(2, 7);
  Balancer bal;
  bal.Init(8, 8, 0);
  for (Algorithm a : {Algorithm::kRoundRobin, Algorithm::kWeightedRoundRobin, Algorithm::kRandom,
                      Algorithm::kLeastConnections, Algorithm::kWeightedLeastConnections}) {
    FakeSlot empty(2, 7);
    const int vip = empty.AddVip(a, {});
    BackendPick p;
    EXPECT_FALSE(bal.Pick(empty.view(), vip, FlowKey{}, 0, nullptr, &p)) << static_cast<int>(a);
  }
  const int vip = fs.AddVip(Algorithm::kRoundRobin, {1});
  fs.backend(1).state = static_cast<uint8_t>(BackendState::kDraining);
  BackendPick p;
  EXPECT_FALSE(bal.Pick(fs.view(), vip, FlowKey{}, 0, nullptr, &p));
}

TEST(BalanceTest, ConsistentAlgorithmsGoThroughTheRing) {
  FakeSlot fs(3, 7);
  const int vip = fs.AddVip(Algorithm::kMaglev, {1, 2, 3});
  for (uint32_t i = 0; i < 7; ++i) fs.ring(vip)[i] = 3;
  Balancer bal;
  bal.Init(1, 3, 0);
  BackendPick p;
  ASSERT_TRUE(bal.Pick(fs.view(), vip, FlowKey{}, 0x1234, nullptr, &p));
  EXPECT_EQ(p.slot, 3u);
}

// max_connections with the stateful algorithms: a full member is skipped
// for the next member with room (from a start chosen by the flow hash);
// every member full fails with all_full.
TEST(BalanceTest, StatefulPicksSkipAFullMember) {
  FakeSlot fs(3, 7);
  const int rr = fs.AddVip(Algorithm::kRoundRobin, {1, 2, 3});
  const int lc = fs.AddVip(Algorithm::kLeastConnections, {1, 2, 3});
  fs.backend(2).max_connections = 3;
  const SlotView slot = fs.view();
  std::vector<BackendCounters> own(4);
  for (auto& c : own) c.active_flows.store(5);
  own[2].active_flows.store(1);
  std::vector<uint64_t> peers(4, 0);
  peers[2] = 2;  // 1 + 2 = 3: full across lcores
  const BackendLoad load{own.data(), peers.data()};
  Balancer bal;
  bal.Init(2, 6, 0);
  auto picks = [&](int vip, uint64_t hash, int n) {
    std::vector<uint32_t> out;
    for (int i = 0; i < n; ++i) {
      BackendPick p;
      bool full = false;
      out.push_back(bal.PickWithRoom(slot, vip, FlowKey{}, hash, load, &p, &full) ? p.slot
                    : full                                                        ? 99
                                                                                  : 0);
    }
    return out;
  };
  // Hash 0 starts the member scan at member 0, a hash near 2^64 at the last.
  EXPECT_EQ(picks(rr, 0, 4), (std::vector<uint32_t>{1, 1, 3, 1}));
  EXPECT_EQ(picks(lc, 0, 1), (std::vector<uint32_t>{1}));  // least (2) is full
  EXPECT_EQ(picks(lc, ~0ull, 1), (std::vector<uint32_t>{3}));
  peers[2] = 1;  // room again
  EXPECT_EQ(picks(lc, 0, 1), (std::vector<uint32_t>{2}));
  for (uint32_t s = 1; s <= 3; ++s) fs.backend(s).max_connections = 1;
  EXPECT_EQ(picks(rr, 0, 3), (std::vector<uint32_t>{99, 99, 99}));
}

}  // namespace
}  // namespace lb
