// Unit tests of the control plane's rooms on their own: the algorithm name
// table, id assignment, the health merge and the DataplaneView over a stats
// region this test writes (reclaim results as structured holds, re-attach
// after the dataplane re-creates its region, counter sums).
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/algorithms.h"
#include "controlplane/backend_ids.h"
#include "controlplane/dataplane_view.h"
#include "controlplane/health_merge.h"
#include "gtest/gtest.h"
#include "lib/backend_pick.h"

namespace lb {
namespace {

// --------------------------------------------------------- algorithms ---

TEST(Algorithms, EveryApiValueMapsOneToOneAndBack) {
  size_t n = 0;
  const AlgorithmInfo* table = AlgorithmTable(&n);
  ASSERT_EQ(n, static_cast<size_t>(kNumAlgorithms));
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(FindAlgorithm(table[i].api), &table[i]);
    EXPECT_EQ(FindAlgorithm(table[i].table), &table[i]);
    EXPECT_EQ(FindAlgorithmByName(table[i].name), &table[i]);
  }
  EXPECT_STREQ(AlgorithmName(v1::ALGORITHM_UNSPECIFIED), "maglev");
  EXPECT_STREQ(AlgorithmName(v1::ALGORITHM_WEIGHTED_ROUND_ROBIN), "weighted_round_robin");
  EXPECT_STREQ(AlgorithmName(Algorithm::kIpHash), "ip_hash");
  EXPECT_STREQ(AlgorithmName(static_cast<v1::Algorithm>(99)), "unknown");
  EXPECT_EQ(TableAlgorithm(v1::ALGORITHM_LEAST_CONNECTIONS), Algorithm::kLeastConnections);
  EXPECT_EQ(TableAlgorithm(v1::ALGORITHM_UNSPECIFIED), Algorithm::kMaglev);
  EXPECT_FALSE(TableAlgorithm(static_cast<v1::Algorithm>(99)).has_value());
  EXPECT_EQ(FindAlgorithmByName("Maglev"), nullptr);
  EXPECT_EQ(AlgorithmChoices(),
            "round_robin | weighted_round_robin | least_connections | "
            "weighted_least_connections | ip_hash | random | maglev");
  EXPECT_TRUE(IsConsistentAlgorithm(Algorithm::kMaglev));
  EXPECT_FALSE(IsConsistentAlgorithm(Algorithm::kRandom));
  EXPECT_EQ(FindAlgorithm(Algorithm::kMaglev)->per_lcore_state, nullptr);
  EXPECT_STREQ(FindAlgorithm(Algorithm::kRoundRobin)->per_lcore_state,
               "each lcore's rotation position");
}

// --------------------------------------------------------- backend ids ---

TEST(BackendIds, FreeIdsFillsHolesLowestFirst) {
  const std::set<uint32_t> used = {1, 2, 4, 7};  // FreeIds iterates it: must outlive f
  FreeIds f(used);
  EXPECT_EQ(f.Next(), 3u);
  EXPECT_EQ(f.Next(), 5u);
  EXPECT_EQ(f.Next(), 6u);
  EXPECT_EQ(f.Next(), 8u);
  EXPECT_EQ(f.Next(), 9u);
}

v1::Backend* AddBackend(v1::Pool* p, const std::string& address, uint32_t id) {
  v1::Backend* b = p->add_backends();
  b->set_address(address);
  b->set_port(80);
  b->set_id(id);
  return b;
}

TEST(BackendIds, KnownIdentitiesKeepTheirIdsNewOnesGetTheLowestInIdentityOrder) {
  v1::Config current;
  v1::Pool* p = current.add_pools();
  p->set_name("web");
  AddBackend(p, "10.0.0.1", 5);
  AddBackend(p, "10.0.0.2", 1);

  v1::Config next;
  v1::Pool* q = next.add_pools();
  q->set_name("web");
  AddBackend(q, "10.0.0.9", 0);  // new, sorts after .3
  AddBackend(q, "10.0.0.1", 0);  // known: keeps 5
  AddBackend(q, "10.0.0.3", 0);  // new
  AddBackend(q, "10.0.0.2", 0);  // known: keeps 1
  AssignMissingIds(current, &next);
  EXPECT_EQ(next.pools(0).backends(0).id(), 3u);
  EXPECT_EQ(next.pools(0).backends(1).id(), 5u);
  EXPECT_EQ(next.pools(0).backends(2).id(), 2u);
  EXPECT_EQ(next.pools(0).backends(3).id(), 1u);
}

TEST(BackendIds, AnExplicitIdWinsOverAnIdentitysOldId) {
  v1::Config current;
  v1::Pool* p = current.add_pools();
  p->set_name("web");
  AddBackend(p, "10.0.0.1", 1);
  v1::Config next;
  v1::Pool* q = next.add_pools();
  q->set_name("web");
  AddBackend(q, "10.0.0.2", 1);  // explicit: takes 1
  AddBackend(q, "10.0.0.1", 0);  // its old id is taken: lowest free
  AssignMissingIds(current, &next);
  EXPECT_EQ(next.pools(0).backends(0).id(), 1u);
  EXPECT_EQ(next.pools(0).backends(1).id(), 2u);
}

// -------------------------------------------------------- health merge ---

DesiredState OneBackend(uint32_t id, const std::string& address) {
  DesiredState d;
  DesiredPool p;
  p.name = "web";
  DesiredBackend b;
  b.id = id;
  b.address = *ParseIpAddress(address);
  b.state = BackendState::kActive;
  p.backends.push_back(b);
  d.pools.push_back(p);
  return d;
}

TEST(HealthMerge, OnlyTheReportedAddressGoesDownAndFlipsAreDetected) {
  HealthMap h;
  HealthReport r;
  r.backend_id = 7;
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  HealthChange c = ApplyReport(&h, r, "10.0.0.1");
  EXPECT_EQ(c.before, v1::HEALTH_STATUS_UNKNOWN);
  EXPECT_EQ(c.after, v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_TRUE(c.flips());
  EXPECT_TRUE(AnyUnhealthy(h));
  EXPECT_EQ(Effective(OneBackend(7, "10.0.0.1"), h).pools[0].backends[0].state,
            BackendState::kDown);
  // Same id, another address (the backend was replaced): not affected.
  EXPECT_EQ(Effective(OneBackend(7, "10.0.0.2"), h).pools[0].backends[0].state,
            BackendState::kActive);
  r.status = v1::HEALTH_STATUS_UNSPECIFIED;  // stored as unknown
  c = ApplyReport(&h, r, "10.0.0.1");
  EXPECT_EQ(c.before, v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(c.after, v1::HEALTH_STATUS_UNKNOWN);
  EXPECT_TRUE(c.flips());
  r.status = v1::HEALTH_STATUS_HEALTHY;
  EXPECT_FALSE(ApplyReport(&h, r, "10.0.0.1").flips());
  EXPECT_STREQ(HealthStatusName(v1::HEALTH_STATUS_HEALTHY), "healthy");
}

TEST(HealthMerge, PruneKeepsOnlyCheckedPoolsWithTheSameAddress) {
  HealthMap h;
  HealthReport r;
  r.backend_id = 7;
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  ApplyReport(&h, r, "10.0.0.1");
  v1::Config c;
  v1::Pool* p = c.add_pools();
  p->set_name("web");
  AddBackend(p, "10.0.0.1", 7);
  EXPECT_TRUE(PrunedHealth(h, c, OneBackend(7, "10.0.0.1")).empty());  // no health check
  p->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
  EXPECT_EQ(PrunedHealth(h, c, OneBackend(7, "10.0.0.1")).size(), 1u);
  EXPECT_TRUE(PrunedHealth(h, c, OneBackend(7, "10.0.0.2")).empty());
}

// ------------------------------------------------------- dataplane view ---

class DataplaneViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lb-cp-rooms-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/stats";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A region with `n` online lcores (ids 10, 11, ...) at `generation`,
  // written by this (live) process.
  StatsRegion MakeRegion(uint32_t n, uint64_t generation) {
    StatsCapacities caps;
    caps.max_lcores = 4;
    caps.max_vips = 4;
    caps.max_backends = 16;
    auto r = StatsRegion::Create(path_, caps);
    EXPECT_TRUE(r.ok()) << r.status();
    for (uint32_t i = 0; i < n; ++i) {
      LcoreStats& l = r->Lcore(i);
      l.lcore_id = 10 + i;
      l.heartbeat_ns.store(MonotonicNs());
      l.state.store(static_cast<uint32_t>(LcoreState::kOnline));
      l.observed_generation.store(generation);
    }
    r->control().num_lcores.store(n);
    return *std::move(r);
  }

  std::string dir_, path_;
};

TEST_F(DataplaneViewTest, AbsentRegionAllowsReclaimAndSumsZero) {
  DataplaneView v(path_, 100'000'000);
  ReclaimCheck rc = v.CheckReclaim(5);
  EXPECT_EQ(rc.region, ReclaimCheck::Region::kAbsent);
  EXPECT_TRUE(rc.ok);
  EXPECT_EQ(v.SumBackend(1).packets, 0u);
  v1::Stats s;
  v.ReadLcores(&s);
  EXPECT_FALSE(s.dataplane_running());
  EXPECT_EQ(s.lcores_size(), 0);
}

TEST_F(DataplaneViewTest, UnusableRegionRefusesReclaim) {
  std::ofstream(path_, std::ios::binary) << std::string(8192, 'x');
  DataplaneView v(path_, 100'000'000);
  ReclaimCheck rc = v.CheckReclaim(5);
  EXPECT_EQ(rc.region, ReclaimCheck::Region::kUnusable);
  EXPECT_FALSE(rc.ok);
  EXPECT_FALSE(rc.unusable_reason.empty());
}

TEST_F(DataplaneViewTest, HoldingLcoresAreReportedWaitingOrStuck) {
  StatsRegion r = MakeRegion(2, 3);
  r.Lcore(1).heartbeat_ns.store(MonotonicNs() - 2'000'000'000);  // stalled 2 s
  DataplaneView v(path_, 100'000'000);
  ReclaimCheck rc = v.CheckReclaim(3);
  EXPECT_EQ(rc.region, ReclaimCheck::Region::kAttached);
  EXPECT_TRUE(rc.ok);
  rc = v.CheckReclaim(4);
  EXPECT_FALSE(rc.ok);
  ASSERT_EQ(rc.holding.size(), 2u);
  EXPECT_EQ(rc.holding[0].lcore_id, 10u);
  EXPECT_FALSE(rc.holding[0].stuck);
  EXPECT_EQ(rc.holding[1].lcore_id, 11u);
  EXPECT_TRUE(rc.holding[1].stuck);
  EXPECT_GE(rc.holding[1].heartbeat_age_ns, 2'000'000'000u);
  EXPECT_EQ(rc.StuckLcores(), std::vector<uint32_t>{11});
  const std::string text = rc.DescribeHolding();
  EXPECT_NE(text.find("lcore 10 waiting (observed generation 3)"), std::string::npos) << text;
  EXPECT_NE(text.find("lcore 11 stuck (observed generation 3, heartbeat 2"), std::string::npos)
      << text;
}

TEST_F(DataplaneViewTest, WaitReclaimReturnsOnceTheLcoreMovesOnOrAtTheBound) {
  StatsRegion r = MakeRegion(1, 1);
  DataplaneView v(path_, 10'000'000'000);
  uint64_t waited = 0;
  ReclaimCheck rc = v.WaitReclaim(2, 20'000'000, &waited);
  EXPECT_FALSE(rc.ok);
  EXPECT_GE(waited, 20'000'000u);
  std::thread lcore([&] {
    usleep(5000);
    r.Lcore(0).observed_generation.store(2);
  });
  rc = v.WaitReclaim(2, 2'000'000'000, &waited);
  lcore.join();
  EXPECT_TRUE(rc.ok);
  EXPECT_GE(waited, 4'000'000u);
  EXPECT_LT(waited, 1'000'000'000u);
}

TEST_F(DataplaneViewTest, ReattachesWhenTheDataplaneRecreatesItsRegion) {
  DataplaneView v(path_, 100'000'000);
  {
    StatsRegion r = MakeRegion(1, 1);
    r.Backends(0)[3].packets.store(7);
    EXPECT_EQ(v.SumBackend(3).packets, 7u);
    r.control().writer_pid.store(0);  // clean exit
  }
  std::filesystem::remove(path_);
  EXPECT_EQ(v.CheckReclaim(9).region, ReclaimCheck::Region::kAbsent);
  StatsRegion r2 = MakeRegion(2, 1);
  r2.Backends(0)[3].packets.store(1);
  r2.Backends(1)[3].packets.store(2);
  r2.Backends(1)[3].active_flows.store(4);
  const BackendCountersSum s = v.SumBackend(3);
  EXPECT_EQ(s.packets, 3u);
  EXPECT_EQ(s.active_flows, 4u);            // this process is alive
  EXPECT_EQ(v.SumBackend(0).packets, 0u);   // slot 0 = no backend
  EXPECT_EQ(v.SumBackend(99).packets, 0u);  // outside the region
  v1::Stats st;
  v.ReadLcores(&st);
  EXPECT_TRUE(st.dataplane_running());
  ASSERT_EQ(st.lcores_size(), 2);
  EXPECT_EQ(st.lcores(1).lcore(), 11u);
  EXPECT_TRUE(st.lcores(1).online());
}

}  // namespace
}  // namespace lb
