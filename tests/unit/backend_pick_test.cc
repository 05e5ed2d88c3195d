// Tests for lib/vip_flow.h and lib/backend_pick.h: the flow hash a VIP uses
// and the Maglev / ip_hash pick, with golden values equal to what the Worker
// computed before they moved to lib/ (and what Explain reports).
#include "lib/backend_pick.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lib/vip_flow.h"
#include "tests/unit/fake_slot.h"

#include "tests/unit/flow_keys.h"

namespace lb {
namespace {

constexpr uint32_t kRing = 65537;

TEST(VipFlowTest, GoldenHashes) {
  FakeSlot fs(3, kRing);
  const int plain = fs.AddVip(Algorithm::kMaglev, {1, 2, 3});
  const int frag = fs.AddVip(Algorithm::kMaglev, {1, 2, 3}, kVipInUse | kVipFragmentTolerant);
  const SlotView slot = fs.view();
  EXPECT_FALSE(VipHashesFragments(slot.vips[plain]));
  EXPECT_TRUE(VipHashesFragments(slot.vips[frag]));

  FlowKey k = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  EXPECT_EQ(VipFlowHash(slot.vips[plain], &k), 0x4eb0d11415e867c6ULL);
  EXPECT_EQ(k.sport, 12345);  // the 5-tuple key is left alone
  EXPECT_EQ(k.dport, 80);
  EXPECT_EQ(VipFlowHash(slot.vips[frag], &k), 0xefe16941cc09ec96ULL);
  EXPECT_EQ(k.sport, 0);  // the key the connection table stores: ports zeroed
  EXPECT_EQ(k.dport, 0);
  // A non-first fragment (ports 0 from the parser) lands with its datagram.
  FlowKey fragment = V4Key(0x0a000001, 0xc0a8010a, 0, 0, 6);
  EXPECT_EQ(VipFlowHash(slot.vips[frag], &fragment), 0xefe16941cc09ec96ULL);
}

TEST(BackendPickTest, ConsistentAlgorithms) {
  EXPECT_TRUE(IsConsistentAlgorithm(Algorithm::kMaglev));
  EXPECT_TRUE(IsConsistentAlgorithm(Algorithm::kIpHash));
  for (Algorithm a : {Algorithm::kRoundRobin, Algorithm::kWeightedRoundRobin, Algorithm::kRandom,
                      Algorithm::kLeastConnections, Algorithm::kWeightedLeastConnections}) {
    EXPECT_FALSE(IsConsistentAlgorithm(a)) << static_cast<int>(a);
  }
}

TEST(BackendPickTest, MaglevLooksUpTheFlowHash) {
  FakeSlot fs(5, kRing);
  const int vip = fs.AddVip(Algorithm::kMaglev, {1, 2, 3, 4, 5});
  fs.ring(vip)[20145] = 4;  // the ring entry of the golden flow
  const SlotView slot = fs.view();
  const FlowKey k = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  RingLookup r;
  ASSERT_TRUE(LookupRing(slot, vip, k, 0x4eb0d11415e867c6ULL, &r));
  EXPECT_EQ(r.hash, 0x4eb0d11415e867c6ULL);
  EXPECT_EQ(r.index, 20145u);
  EXPECT_EQ(r.slot, 4u);
  BackendPick pick;
  RingLookup seen;
  ASSERT_TRUE(PickConsistentBackend(slot, vip, k, HashFlow(k), &pick, &seen));
  EXPECT_EQ(pick.slot, 4u);
  EXPECT_EQ(pick.incarnation, 104u);
  EXPECT_EQ(seen.index, 20145u);
}

TEST(BackendPickTest, IpHashLooksUpTheSourceHash) {
  FakeSlot fs(5, kRing);
  const int vip = fs.AddVip(Algorithm::kIpHash, {1, 2, 3, 4, 5});
  fs.ring(vip)[19456] = 2;  // the ring entry of source 10.0.0.1
  const SlotView slot = fs.view();
  // Any port, any destination: the source decides.
  for (uint16_t sport : {1, 12345, 65535}) {
    const FlowKey k = V4Key(0x0a000001, 0xc0a8010a + sport, sport, 80, 6);
    RingLookup r;
    ASSERT_TRUE(LookupRing(slot, vip, k, HashFlow(k), &r));
    EXPECT_EQ(r.hash, 0x4c000d2d78ca8f3bULL);
    EXPECT_EQ(r.index, 19456u);
    BackendPick pick;
    ASSERT_TRUE(PickConsistentBackend(slot, vip, k, HashFlow(k), &pick));
    EXPECT_EQ(pick.slot, 2u);
  }
}

TEST(BackendPickTest, OnlyActiveBackendsTakeNewFlows) {
  FakeSlot fs(3, 7);
  const int vip = fs.AddVip(Algorithm::kMaglev, {1, 2, 3});
  const FlowKey k = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  RingLookup r;
  ASSERT_TRUE(LookupRing(fs.view(), vip, k, HashFlow(k), &r));
  BackendPick pick;
  fs.backend(r.slot).state = static_cast<uint8_t>(BackendState::kDraining);
  EXPECT_FALSE(PickConsistentBackend(fs.view(), vip, k, HashFlow(k), &pick));
  fs.backend(r.slot).state = static_cast<uint8_t>(BackendState::kDown);
  EXPECT_FALSE(PickConsistentBackend(fs.view(), vip, k, HashFlow(k), &pick));
  // An empty ring entry, or one beyond the backends.
  fs.ring(vip)[r.index] = 0;
  EXPECT_FALSE(PickConsistentBackend(fs.view(), vip, k, HashFlow(k), &pick));
  fs.ring(vip)[r.index] = 4;
  EXPECT_FALSE(PickConsistentBackend(fs.view(), vip, k, HashFlow(k), &pick));
}

TEST(BackendPickTest, NoRingNoPick) {
  FakeSlot fs(3, 0);
  const int vip = fs.AddVip(Algorithm::kMaglev, {1, 2, 3});
  const FlowKey k = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  RingLookup r;
  BackendPick pick;
  EXPECT_FALSE(LookupRing(fs.view(), vip, k, HashFlow(k), &r));
  EXPECT_FALSE(PickConsistentBackend(fs.view(), vip, k, HashFlow(k), &pick));
}

TEST(BackendPickTest, StillServesWhileActiveOrDrainingWithTheSameIncarnation) {
  FakeSlot fs(2, 7);
  fs.AddVip(Algorithm::kMaglev, {1, 2});
  EXPECT_TRUE(StillServes(fs.view(), 1, 101));
  EXPECT_FALSE(StillServes(fs.view(), 1, 100));  // the slot went to another backend
  EXPECT_FALSE(StillServes(fs.view(), 0, 0));
  EXPECT_FALSE(StillServes(fs.view(), 3, 103));  // beyond num_backends
  fs.backend(1).state = static_cast<uint8_t>(BackendState::kDraining);
  EXPECT_TRUE(StillServes(fs.view(), 1, 101));
  fs.backend(1).state = static_cast<uint8_t>(BackendState::kDown);
  EXPECT_FALSE(StillServes(fs.view(), 1, 101));
}

// max_connections: the ring entry's backend while the sum of this lcore's
// gauge and the other lcores' copy is below the limit; at the limit the
// next ring entry; unlimited (0) never full.
TEST(BackendPickTest, MaglevSkipsAFullBackend) {
  FakeSlot fs(3, 7);  // ring 1,2,3,1,2,3,1
  const int vip = fs.AddVip(Algorithm::kMaglev, {1, 2, 3});
  const FlowKey k = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  RingLookup r;
  ASSERT_TRUE(LookupRing(fs.view(), vip, k, HashFlow(k), &r));
  const uint32_t next = fs.ring(vip)[(r.index + 1) % 7];
  ASSERT_NE(next, r.slot);
  std::vector<BackendCounters> own(4);
  for (auto& c : own) c.active_flows.store(0);
  std::vector<uint64_t> peers(4, 0);
  const BackendLoad load{own.data(), peers.data()};
  BackendPick pick;
  bool all_full = true;

  own[r.slot].active_flows.store(100);  // no limit yet
  ASSERT_TRUE(PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), load, &pick, &all_full));
  EXPECT_EQ(pick.slot, r.slot);
  EXPECT_FALSE(all_full);

  fs.backend(r.slot).max_connections = 2;
  own[r.slot].active_flows.store(1);  // 1 of 2: room
  ASSERT_TRUE(PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), load, &pick, &all_full));
  EXPECT_EQ(pick.slot, r.slot);
  peers[r.slot] = 1;  // 1 here + 1 on the other lcores: full
  uint32_t skipped = 0;
  ASSERT_TRUE(
      PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), load, &pick, &all_full, &skipped));
  EXPECT_EQ(pick.slot, next);
  EXPECT_EQ(skipped, r.slot);
  EXPECT_EQ(pick.incarnation, 100 + next);
  EXPECT_FALSE(all_full);
  // Without the limit check (no gauges) the pick is the plain one.
  ASSERT_TRUE(
      PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), BackendLoad{}, &pick, &all_full));
  EXPECT_EQ(pick.slot, r.slot);

  // Every backend full: no pick, and the caller is told why.
  std::fill(peers.begin(), peers.end(), 0);
  for (uint32_t s = 1; s <= 3; ++s) {
    fs.backend(s).max_connections = 1;
    own[s].active_flows.store(1);
  }
  EXPECT_FALSE(PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), load, &pick, &all_full));
  EXPECT_TRUE(all_full);
  // One frees a flow: it takes the new flow wherever it sits in the ring.
  own[3].active_flows.store(0);
  ASSERT_TRUE(PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), load, &pick, &all_full));
  EXPECT_EQ(pick.slot, 3u);
  // An empty ring entry stays no_backend, not "full".
  fs.ring(vip)[r.index] = 0;
  EXPECT_FALSE(PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), load, &pick, &all_full));
  EXPECT_FALSE(all_full);
}

// The ring walk is bounded (kMaxFullRingSkips); past it the member list is
// scanned, so a backend with room is found however the ring is laid out.
TEST(BackendPickTest, FullRingWalkFallsBackToTheMembers) {
  constexpr uint32_t kSmallRing = 67;
  FakeSlot fs(2, kSmallRing);
  const int vip = fs.AddVip(Algorithm::kMaglev, {1, 2});
  for (uint32_t i = 0; i < kSmallRing; ++i) fs.ring(vip)[i] = 1;
  const FlowKey k = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  RingLookup r;
  ASSERT_TRUE(LookupRing(fs.view(), vip, k, HashFlow(k), &r));
  // Slot 2 only further than the walk reaches.
  fs.ring(vip)[(r.index + kMaxFullRingSkips + 1) % kSmallRing] = 2;
  fs.backend(1).max_connections = 1;
  std::vector<BackendCounters> own(3);
  for (auto& c : own) c.active_flows.store(0);
  own[1].active_flows.store(1);
  BackendPick pick;
  bool all_full = true;
  ASSERT_TRUE(PickConsistentWithRoom(fs.view(), vip, k, HashFlow(k), BackendLoad{own.data()}, &pick,
                                     &all_full));
  EXPECT_EQ(pick.slot, 2u);
  EXPECT_FALSE(all_full);
}

}  // namespace
}  // namespace lb
