// lib/l7/balancer.h: every algorithm with its expected picks written out, and
// the properties that matter (smooth WRR spreads, p2c prefers the idle one,
// ip_hash is stable, passive health ejects and readmits).
#include "lib/l7/balancer.h"

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

std::string Picks(Balancer& b, int n, int64_t now = 0) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    const int x = b.Pick(0, now);
    s.push_back(x < 0 ? '-' : static_cast<char>('a' + x));
  }
  return s;
}

TEST(Balancer, RoundRobinIgnoresWeightsAndSkipsExcluded) {
  Balancer b(BalanceAlgorithm::kRoundRobin, {1, 5, 1}, {}, 1);
  EXPECT_EQ(Picks(b, 7), "abcabca");
  const int ex[] = {1};
  EXPECT_EQ(b.Pick(0, 0, ex), 2);  // next would be b: excluded
  EXPECT_EQ(b.Pick(0, 0, ex), 0);
}

TEST(Balancer, SmoothWeightedRoundRobinGolden) {
  // nginx's example: weights 5,1,1 -> a a b a c a a, no burst of five a's.
  Balancer b(BalanceAlgorithm::kWeightedRoundRobin, {5, 1, 1}, {}, 1);
  EXPECT_EQ(Picks(b, 14), "aabacaaaabacaa");
  Balancer z(BalanceAlgorithm::kWeightedRoundRobin, {0, 2, 1}, {}, 1);
  EXPECT_EQ(Picks(z, 6), "bcbbcb");  // weight 0 never picked
}

TEST(Balancer, WeightedShareOverManyPicks) {
  Balancer b(BalanceAlgorithm::kWeightedRoundRobin, {3, 2, 1}, {}, 1);
  std::map<int, int> n;
  for (int i = 0; i < 600; ++i) ++n[b.Pick(0, 0)];
  EXPECT_EQ(n[0], 300);
  EXPECT_EQ(n[1], 200);
  EXPECT_EQ(n[2], 100);
}

TEST(Balancer, LeastConnectionsPicksTheLeastBusy) {
  Balancer b(BalanceAlgorithm::kLeastConnections, {1, 1, 1}, {}, 1);
  b.Begin(0);
  b.Begin(0);
  b.Begin(1);
  EXPECT_EQ(b.Pick(0, 0), 2);
  b.Begin(2);
  b.Begin(2);
  EXPECT_EQ(b.Pick(0, 0), 1);
  b.End(0);
  b.End(0);
  EXPECT_EQ(b.Pick(0, 0), 0);
}

TEST(Balancer, WeightedLeastConnectionsPerUnitOfWeight) {
  Balancer b(BalanceAlgorithm::kWeightedLeastConnections, {1, 3}, {}, 1);
  // Active counts after each pick, written out: b takes three for a's one.
  std::string s;
  for (int i = 0; i < 8; ++i) {
    const int x = b.Pick(0, 0);
    b.Begin(x);
    s.push_back(static_cast<char>('a' + x));
  }
  EXPECT_EQ(s, "abbbabbb");
  EXPECT_EQ(b.active(0), 2);
  EXPECT_EQ(b.active(1), 6);
}

TEST(Balancer, LeastConnectionsCountsAcrossWorkers) {
  ActiveCounts shared(2);
  Balancer w0(BalanceAlgorithm::kLeastConnections, {1, 1}, {}, 1, &shared);
  Balancer w1(BalanceAlgorithm::kLeastConnections, {1, 1}, {}, 2, &shared);
  w0.Begin(0);
  w0.Begin(0);
  EXPECT_EQ(w1.Pick(0, 0), 1);  // w1 sees w0's two requests on backend 0
  w1.Begin(1);
  w1.Begin(1);
  w1.Begin(1);
  EXPECT_EQ(w0.Pick(0, 0), 0);
  w0.End(0);
  w0.End(0);
  EXPECT_EQ(shared.Get(0), 0);
  EXPECT_EQ(shared.Get(1), 3);
  // Without shared counts a worker sees only its own.
  Balancer alone(BalanceAlgorithm::kLeastConnections, {1, 1}, {}, 3);
  alone.Begin(1);
  EXPECT_EQ(alone.Pick(0, 0), 0);
}

TEST(Balancer, IpHashIsStableAndFallsThrough) {
  Balancer b(BalanceAlgorithm::kIpHash, {1, 1, 1, 1}, {1, 1'000'000'000}, 1);
  for (uint64_t h : {0ull, 5ull, 1234567ull}) {
    const int first = b.Pick(h, 0);
    EXPECT_EQ(first, static_cast<int>(h % 4));
    for (int i = 0; i < 5; ++i) EXPECT_EQ(b.Pick(h, 0), first);
  }
  b.OnConnectFailure(1, 0);                // ejected (threshold 1)
  EXPECT_EQ(b.Pick(5, 0), 2);              // 5 % 4 = 1 is out: the next one
  EXPECT_EQ(b.Pick(6, 0), 2);              // others unchanged
  EXPECT_EQ(b.Pick(5, 2'000'000'000), 1);  // readmitted after eject_ns
}

TEST(Balancer, RandomPowerOfTwoChoicesAvoidsTheBusyOne) {
  Balancer b(BalanceAlgorithm::kRandom, {1, 1, 1}, {}, 42);
  for (int i = 0; i < 100; ++i) b.Begin(0);
  int to_busy = 0;
  std::map<int, int> n;
  for (int i = 0; i < 3000; ++i) {
    const int x = b.Pick(0, 0);
    ++n[x];
    to_busy += x == 0;
  }
  // Backend 0 wins only when both choices fall on it: about 1/9.
  EXPECT_GT(to_busy, 200);
  EXPECT_LT(to_busy, 500);
  EXPECT_GT(n[1], 1000);
  EXPECT_GT(n[2], 1000);
}

TEST(Balancer, PassiveHealthOn5xx) {
  PassiveHealth h;
  h.consecutive_5xx = 2;
  h.eject_ns = 1000;
  Balancer b(BalanceAlgorithm::kRoundRobin, {1, 1}, h, 1);
  b.OnResponse(0, 502, 0);
  b.OnResponse(0, 404, 0);  // not a server error: the run restarts
  b.OnResponse(0, 500, 0);
  EXPECT_FALSE(b.ejected(0, 0));
  b.OnResponse(0, 503, 5);
  EXPECT_TRUE(b.ejected(0, 5));
  EXPECT_EQ(Picks(b, 2, 5), "bb");
  Balancer off(BalanceAlgorithm::kRoundRobin, {1, 1}, {}, 1);  // default: never
  for (int i = 0; i < 10; ++i) off.OnResponse(0, 500, 0);
  EXPECT_FALSE(off.ejected(0, 0));
}

TEST(Balancer, PassiveHealthEjectsAfterConsecutiveFailures) {
  Balancer b(BalanceAlgorithm::kRoundRobin, {1, 1}, {3, 1000}, 1);
  b.OnConnectFailure(0, 0);
  b.OnConnectFailure(0, 0);
  b.OnConnectSuccess(0);  // resets the run
  b.OnConnectFailure(0, 0);
  b.OnConnectFailure(0, 0);
  EXPECT_FALSE(b.ejected(0, 0));
  b.OnConnectFailure(0, 10);
  EXPECT_TRUE(b.ejected(0, 10));
  EXPECT_EQ(Picks(b, 3, 10), "bbb");
  EXPECT_EQ(b.Pick(0, 1010), 0);  // back after eject_ns
  b.OnConnectFailure(0, 1010);    // one more failure ejects it again
  EXPECT_TRUE(b.ejected(0, 1010));
  b.OnConnectFailure(1, 1010);
  b.OnConnectFailure(1, 1010);
  b.OnConnectFailure(1, 1010);
  EXPECT_EQ(b.Pick(0, 1010), -1);  // nobody left: the proxy answers 503
}

}  // namespace
}  // namespace lb::l7

namespace lb::l7 {
namespace {

// Draining (a flag in the shared counts): out of every pick, back when
// cleared; requests already counted on it stay counted until they end.
TEST(BalancerDrain, DrainingBackendGetsNoNewRequests) {
  ActiveCounts shared(3);
  Balancer b(BalanceAlgorithm::kRoundRobin, {1, 1, 1}, {}, 1, &shared);
  b.Begin(1);
  shared.SetDraining(1, true);
  EXPECT_FALSE(b.Available(1, 0));
  EXPECT_EQ(Picks(b, 6), "acacac");
  EXPECT_EQ(b.active(1), 1);  // in flight: finishes
  b.End(1);
  shared.SetDraining(1, false);
  EXPECT_TRUE(b.Available(1, 0));
  EXPECT_NE(Picks(b, 3).find('b'), std::string::npos);
  // Every algorithm: a Maglev ring falls through, ip_hash moves on.
  shared.SetDraining(0, true);
  Balancer h(BalanceAlgorithm::kIpHash, {1, 1, 1}, {}, 1, &shared);
  for (uint64_t k = 0; k < 30; ++k) EXPECT_NE(h.Pick(k, 0), 0);
  // Another worker's Balancer sees the same flag.
  Balancer other(BalanceAlgorithm::kLeastConnections, {1, 1, 1}, {}, 2, &shared);
  for (int i = 0; i < 6; ++i) EXPECT_NE(other.Pick(0, 0), 0);
  // All draining: nothing to pick, and it is not "full" (503, not queue).
  shared.SetDraining(1, true);
  shared.SetDraining(2, true);
  EXPECT_EQ(b.Pick(0, 0), -1);
  EXPECT_FALSE(b.saw_full());
}

// Down by the control plane's active checks (a flag in the shared counts,
// apart from draining): out of every algorithm, back when cleared.
TEST(BalancerDown, DownBackendOutOfEveryAlgorithm) {
  for (BalanceAlgorithm alg :
       {BalanceAlgorithm::kRoundRobin, BalanceAlgorithm::kWeightedRoundRobin,
        BalanceAlgorithm::kLeastConnections, BalanceAlgorithm::kWeightedLeastConnections,
        BalanceAlgorithm::kIpHash, BalanceAlgorithm::kRandom}) {
    ActiveCounts shared(3);
    Balancer b(alg, {1, 2, 1}, {}, 7, &shared);
    shared.SetDown(1, true);
    EXPECT_TRUE(b.down(1));
    EXPECT_FALSE(b.draining(1));
    EXPECT_FALSE(b.Available(1, 0));
    for (uint64_t k = 0; k < 60; ++k) EXPECT_NE(b.Pick(k, 0), 1) << int(alg);
    shared.SetDown(1, false);
    bool back = false;
    for (uint64_t k = 0; k < 60 && !back; ++k) back = b.Pick(k, 0) == 1;
    EXPECT_TRUE(back) << int(alg);
    // All down: nothing to pick, not "full" (503, no queue).
    for (int i = 0; i < 3; ++i) shared.SetDown(i, true);
    EXPECT_EQ(b.Pick(0, 0), -1);
    EXPECT_FALSE(b.saw_full());
  }
}

// max_connections counted across workers: two Balancers on one ActiveCounts
// never exceed the limit together; a full backend is skipped, and with all
// full Pick says so (the request queues).
TEST(BalancerLimits, MaxConnectionsAcrossWorkers) {
  ActiveCounts shared(2);
  Balancer w1(BalanceAlgorithm::kRoundRobin, {1, 1}, {}, 1, &shared);
  Balancer w2(BalanceAlgorithm::kRoundRobin, {1, 1}, {}, 2, &shared);
  w1.SetLimits({2, 1});
  w2.SetLimits({2, 1});
  EXPECT_TRUE(w1.TryBegin(0));
  EXPECT_TRUE(w2.TryBegin(0));
  EXPECT_FALSE(w1.TryBegin(0));  // 2 in flight, from two workers
  EXPECT_TRUE(w1.Full(0));
  EXPECT_EQ(w2.Pick(0, 0), 1);  // 0 is full: skipped
  EXPECT_TRUE(w2.TryBegin(1));
  EXPECT_EQ(w1.Pick(0, 0), -1);
  EXPECT_TRUE(w1.saw_full());
  w2.End(0);
  EXPECT_EQ(w1.Pick(0, 0), 0);
  EXPECT_EQ(shared.Get(0), 1);
  EXPECT_EQ(shared.Get(1), 1);
  // 0 = unlimited.
  Balancer u(BalanceAlgorithm::kRoundRobin, {1}, {}, 3);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(u.TryBegin(0));
}

TEST(BalancerLimits, SharedQueueIsBounded) {
  ActiveCounts shared(1);
  EXPECT_TRUE(shared.TryQueue(2));
  EXPECT_TRUE(shared.TryQueue(2));
  EXPECT_FALSE(shared.TryQueue(2));
  shared.Unqueue();
  EXPECT_EQ(shared.Queued(), 1);
  EXPECT_TRUE(shared.TryQueue(2));
}

// Many threads racing TryAdd on one slot never exceed the limit.
TEST(BalancerLimits, TryAddIsExactUnderRace) {
  ActiveCounts shared(1);
  std::atomic<int> admitted{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        if (shared.TryAdd(0, 7)) {
          admitted.fetch_add(1);
          EXPECT_LE(shared.Get(0), 7);
          shared.Add(0, -1);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(shared.Get(0), 0);
  EXPECT_GT(admitted.load(), 0);
}

}  // namespace
}  // namespace lb::l7
