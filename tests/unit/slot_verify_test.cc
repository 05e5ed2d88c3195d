// CheckSlot / ValidateSlot, TableGate and the one-writer stats lock: the
// guards that keep a bad table (stale checksum, an index out of bounds) away
// from every packet, and a second lb-dataplane away from a running one's
// stats region.
//
// Each corrupted field is refused and named, with the checksum resealed so
// that the bounds check itself must catch it. The last test measures the
// verification cost of a slot at the default maximum capacities (64 VIPs,
// 65,537-entry rings) and prints it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/shm_region.h"
#include "lib/slot_verify.h"
#include "lib/table_format.h"

namespace lb {
namespace {

// A region of small capacities in ordinary memory, slot 0 holding one in-use
// IPv4 VIP (10.0.0.1:80/tcp) over backend slot 1, and an unused VIP entry 1.
class SlotVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = ComputeTableLayout({4, 8, 16, 13});
    ASSERT_TRUE(h.ok()) << h.status();
    header_ = *h;
    words_ = std::make_unique<uint64_t[]>(header_.region_size / sizeof(uint64_t));
    v_ = MakeSlotView(reinterpret_cast<uint8_t*>(words_.get()), header_, 0);
    v_.header->generation = 1;
    v_.header->num_vips = 2;
    v_.header->num_backends = 2;
    v_.header->num_members = 1;
    v_.header->ring_size = 13;
    v_.backends[1].family = 4;
    v_.backends[1].state = static_cast<uint8_t>(BackendState::kActive);
    v_.backends[1].weight = 1;
    v_.members[0] = 1;
    VipEntry& e = v_.vips[0];
    const uint8_t addr[4] = {10, 0, 0, 1};
    std::memcpy(e.addr, addr, 4);
    e.family = 4;
    e.proto = 6;
    e.port = 80;
    e.flags = kVipInUse;
    e.member_count = 1;
    cell_ = VipHashKey(AddrFamily::kIPv4, e.addr, 6, 80) & v_.vip_hash_mask;
    v_.vip_hash[cell_] = 1;
    for (uint32_t k = 0; k < 13; ++k) v_.Ring(0)[k] = 1;
    Seal();
  }
  void Seal() { v_.header->checksum = SlotChecksum(v_); }

  TableRegionHeader header_;
  std::unique_ptr<uint64_t[]> words_;
  SlotView v_;
  uint32_t cell_ = 0;
};

TEST_F(SlotVerifyTest, AValidSlotIsAccepted) {
  SlotFault f;
  EXPECT_TRUE(CheckSlot(v_, &f)) << DescribeSlotFault(f, 1);
  EXPECT_TRUE(ValidateSlot(v_).ok()) << ValidateSlot(v_);
}

struct Corruption {
  const char* what;
  std::function<void(SlotView&, uint32_t cell)> apply;
  bool reseal;  // recompute the checksum, so that only the bounds check can catch it
  SlotField field;
  const char* message;  // must appear in ValidateSlot's message
};

TEST_F(SlotVerifyTest, EachCorruptedFieldIsRefusedAndNamed) {
  const Corruption cases[] = {
      {"num_vips beyond capacity", [](SlotView& v, uint32_t) { v.header->num_vips = 5; }, false,
       SlotField::kNumVips, "slot num_vips 5 > max 4"},
      {"num_backends beyond capacity", [](SlotView& v, uint32_t) { v.header->num_backends = 9; },
       false, SlotField::kNumBackends, "slot num_backends 9 > max 8"},
      {"num_members beyond capacity", [](SlotView& v, uint32_t) { v.header->num_members = 17; },
       false, SlotField::kNumMembers, "slot num_members 17 > max 16"},
      {"ring_size beyond capacity", [](SlotView& v, uint32_t) { v.header->ring_size = 14; }, false,
       SlotField::kRingSize, "slot ring_size 14 > max 13"},
      {"stale checksum", [](SlotView& v, uint32_t) { v.backends[1].weight = 9; }, false,
       SlotField::kChecksum, "checksum mismatch for generation 1"},
      {"member range past num_members", [](SlotView& v, uint32_t) { v.vips[0].member_count = 2; },
       true, SlotField::kVipMembers, "vips[0] members out of range"},
      {"algorithm out of range", [](SlotView& v, uint32_t) { v.vips[0].algorithm = 7; }, true,
       SlotField::kVipAlgorithm, "vips[0] algorithm 7"},
      {"VIP family", [](SlotView& v, uint32_t) { v.vips[0].family = 5; }, true,
       SlotField::kVipFamily, "vips[0] family 5"},
      {"ring entry past num_backends", [](SlotView& v, uint32_t) { v.Ring(0)[4] = 2; }, true,
       SlotField::kRingEntry, "vips[0] ring[4] = 2 beyond num_backends 2"},
      {"member names slot 0", [](SlotView& v, uint32_t) { v.members[0] = 0; }, true,
       SlotField::kMember, "members[0] = 0 invalid"},
      {"member past num_backends", [](SlotView& v, uint32_t) { v.members[0] = 3; }, true,
       SlotField::kMember, "members[0] = 3 invalid"},
      {"backend family", [](SlotView& v, uint32_t) { v.backends[1].family = 0; }, true,
       SlotField::kBackendFamily, "backends[1] family 0"},
      {"VIP index cell past num_vips", [](SlotView& v, uint32_t c) { v.vip_hash[c] = 0x40000000; },
       true, SlotField::kVipIndexCell, "beyond num_vips 2"},
      {"VIP index cell naming an unused VIP", [](SlotView& v, uint32_t c) { v.vip_hash[c] = 2; },
       true, SlotField::kVipIndexUnused, "names a VIP entry not in use"},
  };
  for (const Corruption& c : cases) {
    SetUp();
    c.apply(v_, cell_);
    if (c.reseal) Seal();
    SlotFault f;
    EXPECT_FALSE(CheckSlot(v_, &f)) << c.what;
    EXPECT_EQ(f.field, c.field) << c.what << ": " << SlotFieldName(f.field);
    const absl::Status st = ValidateSlot(v_);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << c.what;
    EXPECT_NE(st.message().find(c.message), std::string::npos) << c.what << ": " << st;
    // The writer's own check before sealing: every fault but the checksum.
    SlotFault fi;
    EXPECT_EQ(CheckSlotIndices(v_, &fi), c.field == SlotField::kChecksum) << c.what;
    if (c.field != SlotField::kChecksum) {
      EXPECT_EQ(fi.field, c.field) << c.what;
    }
  }
}

// A table region on /dev/shm written through TableWriter (slots filled by
// hand: one VIP over one backend), read through TableReader.
class GateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat("/dev/shm/lb-slot-verify-", getpid());
    auto w = TableWriter::Open(path_, {4, 8, 16, 13}, /*recreate=*/true);
    ASSERT_TRUE(w.ok()) << w.status();
    writer_.emplace(*std::move(w));
    PublishGood();  // generation 1
    auto r = TableReader::Attach(path_);
    ASSERT_TRUE(r.ok()) << r.status();
    reader_.emplace(*std::move(r));
  }
  void TearDown() override { unlink(path_.c_str()); }

  uint64_t PublishGood() {
    SlotView v = writer_->NextSlot();
    v.header->num_vips = 1;
    v.header->num_backends = 2;
    v.header->num_members = 1;
    v.header->ring_size = 13;
    v.backends[1].family = 4;
    v.backends[1].state = static_cast<uint8_t>(BackendState::kActive);
    v.members[0] = 1;
    v.vips[0].family = 4;
    v.vips[0].flags = kVipInUse;
    v.vips[0].member_count = 1;
    for (uint32_t k = 0; k < 13; ++k) v.Ring(0)[k] = 1;
    return writer_->Publish();
  }

  std::string path_;
  std::optional<TableWriter> writer_;
  std::optional<TableReader> reader_;
};

TEST_F(GateTest, OneVerdictPerGenerationAndTheRefusalIsKept) {
  TableGate& gate = reader_->gate();
  EXPECT_EQ(gate.Resolve(*reader_, 1), TableGate::Verdict::kAccepted);
  // The verdict is per generation, not re-computed per caller: an lcore
  // that asks later gets the same answer without reading the slot again.
  reader_->Slot(1).backends[1].weight = 77;
  EXPECT_EQ(gate.Resolve(*reader_, 1), TableGate::Verdict::kAccepted);
  SlotFault f;
  EXPECT_EQ(gate.LastRefusal(&f), 0u);

  // Generation 2 published, then changed behind the writer's back.
  ASSERT_EQ(PublishGood(), 2u);
  reader_->Slot(2).Ring(0)[3] = 5;
  EXPECT_EQ(gate.Resolve(*reader_, 2), TableGate::Verdict::kRefused);
  ASSERT_EQ(gate.LastRefusal(&f), 2u);
  EXPECT_EQ(f.field, SlotField::kChecksum);
  EXPECT_EQ(DescribeSlotFault(f, 2),
            "slot checksum mismatch for generation 2 (stale or torn slot)");
  reader_->Slot(2).Ring(0)[3] = 1;  // repaired: still refused, the verdict stands
  EXPECT_EQ(gate.Resolve(*reader_, 2), TableGate::Verdict::kRefused);
  // An older generation asked for after a newer claim is not re-verified.
  EXPECT_EQ(gate.Resolve(*reader_, 1), TableGate::Verdict::kAccepted);
}

TEST_F(GateTest, WithAVerifierThreadLcoresVerifyOnlySmallSlots) {
  TableGate& gate = reader_->gate();
  gate.UseVerifierThread();
  // This slot is a few hundred bytes: the lcore verifies it at once.
  EXPECT_LT(SlotVerifyBytes(reader_->Slot(1)), kInlineVerifyBytes);
  EXPECT_EQ(gate.Resolve(*reader_, 1), TableGate::Verdict::kAccepted);
  ASSERT_EQ(PublishGood(), 2u);
  reader_->Slot(2).vip_hash[0] = 9;
  EXPECT_EQ(gate.Resolve(*reader_, 2), TableGate::Verdict::kRefused);
}

TEST(GateSizeTest, LargeSlotsAreLeftToTheVerifierThread) {
  const std::string path = absl::StrCat("/dev/shm/lb-slot-verify-large-", getpid());
  const TableCapacities caps;  // 64 VIPs x 65,537-entry rings
  auto w = TableWriter::Open(path, caps, /*recreate=*/true);
  ASSERT_TRUE(w.ok()) << w.status();
  SlotView v = w->NextSlot();
  v.header->num_vips = 8;  // 8 in-use VIPs x 256 KiB of ring: 2 MiB to read
  v.header->num_backends = 2;
  v.header->num_members = 1;
  v.header->ring_size = caps.max_ring_size;
  v.backends[1].family = 4;
  v.members[0] = 1;
  for (uint32_t i = 0; i < 8; ++i) {
    v.vips[i].family = 4;
    v.vips[i].flags = kVipInUse;
    v.vips[i].member_count = 1;
  }
  ASSERT_EQ(w->Publish(), 1u);
  auto r = TableReader::Attach(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(SlotVerifyBytes(r->Slot(1)), kInlineVerifyBytes);
  TableGate& gate = r->gate();
  gate.UseVerifierThread();
  EXPECT_EQ(gate.Resolve(*r, 1), TableGate::Verdict::kPending);
  EXPECT_EQ(gate.Resolve(*r, 1), TableGate::Verdict::kPending);
  EXPECT_EQ(gate.VerifyPublished(*r), TableGate::Verdict::kAccepted);
  EXPECT_EQ(gate.Resolve(*r, 1), TableGate::Verdict::kAccepted);
  unlink(path.c_str());
}

TEST_F(GateTest, ASlotStampedWithAnotherGenerationIsRefused) {
  ASSERT_EQ(PublishGood(), 2u);
  reader_->Slot(2).header->generation = 7;
  EXPECT_EQ(reader_->gate().Resolve(*reader_, 2), TableGate::Verdict::kRefused);
  SlotFault f;
  reader_->gate().LastRefusal(&f);
  EXPECT_EQ(f.field, SlotField::kGeneration);
  EXPECT_NE(DescribeSlotFault(f, 2).find("slot generation 7 != published generation 2"),
            std::string::npos);
}

TEST_F(GateTest, TheRefusedSlotIsReusedAsGenerationPlusTwo) {
  ASSERT_EQ(PublishGood(), 2u);
  writer_->SkipRefused();
  EXPECT_EQ(writer_->NextGeneration(), 4u);
  EXPECT_EQ(writer_->NextSlot().header, writer_->CurrentSlot().header);  // the refused one's
  EXPECT_EQ(PublishGood(), 4u);
  EXPECT_EQ(writer_->NextGeneration(), 5u);  // one skip per refusal
  EXPECT_EQ(reader_->gate().Resolve(*reader_, 4), TableGate::Verdict::kAccepted);
}

// ---------------------------------------------------------------- stats ---

class StatsGuardTest : public ::testing::Test {
 protected:
  void SetUp() { path_ = absl::StrCat("/dev/shm/lb-slot-verify-stats-", getpid()); }
  void TearDown() override { unlink(path_.c_str()); }
  std::string path_;
};

TEST_F(StatsGuardTest, ARefusingLcoreFailsTheWaitAndFreesOnlyTheRefusedSlot) {
  auto s = StatsRegion::Create(path_, {4, 8, 16});
  ASSERT_TRUE(s.ok()) << s.status();
  s->control().num_lcores.store(2);
  for (uint32_t i = 0; i < 2; ++i) {
    LcoreStats& l = s->Lcore(i);
    l.heartbeat_ns.store(MonotonicNs());
    l.state.store(static_cast<uint32_t>(LcoreState::kOnline));
    l.observed_generation.store(4);  // reads generation 4's slot
  }
  s->Lcore(0).refused_generation.store(5);
  const uint64_t now = MonotonicNs();
  // Generation 6 would overwrite generation 4's slot: lcore 0 refused 5, so
  // it will never observe it.
  auto rs = s->CheckReclaim(5, now, 1'000'000'000);
  EXPECT_FALSE(rs.ok);
  ASSERT_EQ(rs.refused.size(), 1u);
  EXPECT_EQ(rs.refused[0], 0u);
  // Generation 7 into 5's slot: free for lcore 0 (refused 5), not yet for
  // lcore 1, which has no verdict yet.
  rs = s->CheckReclaim(6, now, 1'000'000'000, /*released_refused=*/5);
  EXPECT_FALSE(rs.ok);
  ASSERT_EQ(rs.waiting.size(), 1u);
  EXPECT_EQ(rs.waiting[0], 1u);
  EXPECT_TRUE(rs.refused.empty());
  s->Lcore(1).refused_generation.store(5);
  EXPECT_TRUE(s->CheckReclaim(6, now, 1'000'000'000, 5).ok);
  // Without the release, generation 4's slot stays held.
  EXPECT_FALSE(s->CheckReclaim(6, now, 1'000'000'000).ok);
}

TEST_F(StatsGuardTest, ASecondWriterIsRefusedNamingTheOwnerAndTouchesNothing) {
  auto first = StatsRegion::Create(path_, {4, 8, 16});
  ASSERT_TRUE(first.ok()) << first.status();
  first->Lcore(0).rx_packets.store(42);
  const uint64_t started = first->control().start_time_ns.load();
  auto second = StatsRegion::Create(path_, {4, 8, 16});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(absl::StrCat("pid ", getpid())), std::string::npos)
      << second.status();
  EXPECT_EQ(first->Lcore(0).rx_packets.load(), 42u);
  EXPECT_EQ(first->control().writer_pid.load(), static_cast<uint32_t>(getpid()));
  EXPECT_EQ(first->control().start_time_ns.load(), started);
  // The lock goes with its owner.
  first = absl::UnavailableError("gone");
  EXPECT_TRUE(StatsRegion::Create(path_, {4, 8, 16}).ok());
}

// ---------------------------------------------------------------- cost ---

// CheckSlot's cost with `vips` in-use VIPs of a region at the default
// maximum capacities (4,096 backends, 16,384 members, 65,537-entry rings).
void MeasureCheckSlot(uint32_t vips) {
  const TableCapacities caps;
  auto h = ComputeTableLayout(caps);
  ASSERT_TRUE(h.ok()) << h.status();
  auto words = std::make_unique<uint64_t[]>(h->region_size / sizeof(uint64_t));
  SlotView v = MakeSlotView(reinterpret_cast<uint8_t*>(words.get()), *h, 0);
  v.header->generation = 1;
  v.header->num_vips = vips;
  v.header->num_backends = caps.max_backends;
  v.header->num_members = caps.max_members;
  v.header->ring_size = caps.max_ring_size;
  for (uint32_t b = 1; b < caps.max_backends; ++b) {
    v.backends[b].family = 4;
    v.backends[b].state = static_cast<uint8_t>(BackendState::kActive);
  }
  for (uint32_t m = 0; m < caps.max_members; ++m) v.members[m] = 1 + m % (caps.max_backends - 1);
  const uint32_t per_vip = caps.max_members / caps.max_vips;
  for (uint32_t i = 0; i < vips; ++i) {
    v.vips[i].family = 4;
    v.vips[i].flags = kVipInUse;
    v.vips[i].member_begin = i * per_vip;
    v.vips[i].member_count = per_vip;
    v.vip_hash[i * 2] = i + 1;
    for (uint32_t k = 0; k < caps.max_ring_size; ++k) {
      v.Ring(i)[k] = 1 + (k * 7 + i) % (caps.max_backends - 1);
    }
  }
  v.header->checksum = SlotChecksum(v);
  SlotFault f;
  ASSERT_TRUE(CheckSlot(v, &f)) << DescribeSlotFault(f, 1);
  constexpr int kRuns = 20;
  double best_us = 1e18, sum_us = 0, checksum_us = 1e18;
  for (int r = 0; r < kRuns; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    const bool ok = CheckSlot(v, &f);
    auto t1 = std::chrono::steady_clock::now();
    volatile uint64_t sink = SlotChecksum(v);
    (void)sink;
    auto t2 = std::chrono::steady_clock::now();
    ASSERT_TRUE(ok);
    const double us = std::chrono::duration<double, std::micro>(t1 - t0).count();
    best_us = std::min(best_us, us);
    sum_us += us;
    checksum_us = std::min(checksum_us, std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  std::printf(
      "CheckSlot, %u VIPs x 65,537-entry rings (%.2f MiB to read, %s), 4,096 backends, 16,384 "
      "members: best %.0f us, mean %.0f us over %d runs (checksum alone: best %.0f us)\n",
      vips, SlotVerifyBytes(v) / double(1 << 20),
      SlotVerifyBytes(v) <= kInlineVerifyBytes ? "verified inline" : "verifier thread", best_us,
      sum_us / kRuns, kRuns, checksum_us);
}

TEST(SlotVerifyCost, OneVipAndMaxCapacity) {
  MeasureCheckSlot(1);
  MeasureCheckSlot(64);
}

}  // namespace
}  // namespace lb
