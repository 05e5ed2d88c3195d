// Tests for lib/vip_flow.h and lib/backend_pick.h: the flow hash a VIP uses
// and the Maglev / ip_hash pick, with golden values equal to what the Worker
// computed before they moved to lib/ (and what Explain reports).
#include "lib/backend_pick.h"

#include <gtest/gtest.h>

#include <cstdint>

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

}  // namespace
}  // namespace lb
