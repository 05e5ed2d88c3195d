// Table and stats region format: layout, validation (every corrupted field
// refused, by name), publish/attach round trips and the reclamation check.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace lb {
namespace {

std::string TempPath(const std::string& name) {
  return "/dev/shm/lb-test-" + std::to_string(getpid()) + "-" + name;
}

class RegionTest : public ::testing::Test {
 protected:
  void TearDown() override {
    unlink(TempPath("tables").c_str());
    unlink(TempPath("stats").c_str());
  }
  TableCapacities SmallCaps() { return {8, 16, 32, 13}; }
};

TEST_F(RegionTest, LayoutIsDeterministicAndAligned) {
  auto a = ComputeTableLayout(SmallCaps());
  auto b = ComputeTableLayout(SmallCaps());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(0, std::memcmp(&*a, &*b, sizeof(TableRegionHeader)));
  EXPECT_EQ(a->vip_hash_size, 16u);  // power of two >= 2 * max_vips
  EXPECT_EQ(a->slot_size % 4096, 0u);
  EXPECT_EQ(a->vips_offset % 64, 0u);
  EXPECT_EQ(a->backends_offset % 64, 0u);
  EXPECT_EQ(a->rings_offset % 64, 0u);
  EXPECT_GE(a->slots_offset, kTableControlOffset + sizeof(TableRegionControl));
  EXPECT_EQ(a->region_size, a->slots_offset + 2 * a->slot_size);
}

TEST_F(RegionTest, CapacitiesOutOfRangeAreRefusedByName) {
  TableCapacities c = SmallCaps();
  c.max_vips = 0;
  auto r = ComputeTableLayout(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("max_vips"), std::string::npos);
  c = SmallCaps();
  c.max_ring_size = kMaxRingSizeLimit + 1;
  r = ComputeTableLayout(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("max_ring_size"), std::string::npos);
  c = SmallCaps();
  c.max_backends = 1;
  r = ComputeTableLayout(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("max_backends"), std::string::npos);
}

// Each corruption of the header must be refused with a message naming it.
TEST_F(RegionTest, ValidateRefusesEveryCorruptField) {
  auto good = ComputeTableLayout(SmallCaps());
  ASSERT_TRUE(good.ok());
  const size_t size = good->region_size;
  EXPECT_TRUE(ValidateTableHeader(*good, size).ok());

  struct Case {
    const char* name;
    void (*corrupt)(TableRegionHeader*);
    bool reseal;  // recompute the checksum so the specific check must catch it
    const char* expect;
  };
  const Case cases[] = {
      {"magic", [](TableRegionHeader* h) { h->magic ^= 1; }, true, "magic"},
      {"abi", [](TableRegionHeader* h) { h->abi_version = kTableAbiVersion + 1; }, true,
       "abi_version"},
      {"header_size", [](TableRegionHeader* h) { h->header_size = 100; }, true, "header_size"},
      {"checksum", [](TableRegionHeader* h) { h->max_vips += 1; }, false, "header_checksum"},
      {"offsets", [](TableRegionHeader* h) { h->rings_offset += 64; }, true, "offsets"},
      {"region_size", [](TableRegionHeader* h) { h->region_size += 4096; }, true, "region_size"},
      {"num_slots", [](TableRegionHeader* h) { h->num_slots = 1; }, true, "num_slots"},
      {"capacity", [](TableRegionHeader* h) { h->max_vips = kMaxVipsLimit + 1; }, true, "max_vips"},
  };
  for (const Case& c : cases) {
    TableRegionHeader h = *good;
    c.corrupt(&h);
    if (c.reseal)
      h.header_checksum = HeaderChecksum(&h, offsetof(TableRegionHeader, header_checksum));
    absl::Status st = ValidateTableHeader(h, size);
    EXPECT_FALSE(st.ok()) << c.name;
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << c.name << ": " << st.message();
  }
  // A file shorter than the header claims.
  EXPECT_FALSE(ValidateTableHeader(*good, size - 4096).ok());
}

TEST_F(RegionTest, PublishAttachRoundTrip) {
  auto w = TableWriter::Open(TempPath("tables"), SmallCaps(), false);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->published_generation(), 0u);
  SlotView s = w->NextSlot();
  s.header->num_backends = 2;
  s.header->ring_size = 13;
  s.backends[1].family = 4;
  s.backends[1].state = static_cast<uint8_t>(BackendState::kActive);
  s.backends[1].incarnation = 1;
  const uint8_t vip[16] = {10, 0, 0, 1};
  s.vips[0].family = 4;
  std::memcpy(s.vips[0].addr, vip, 16);
  s.vips[0].proto = 6;
  s.vips[0].port = 80;
  s.vips[0].flags = kVipInUse;
  s.header->num_vips = 1;
  s.vip_hash[VipHashKey(AddrFamily::kIPv4, vip, 6, 80) & s.vip_hash_mask] = 1;
  for (uint32_t i = 0; i < 13; ++i) s.Ring(0)[i] = 1;
  EXPECT_EQ(w->Publish(), 1u);

  auto r = TableReader::Attach(TempPath("tables"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->generation(), 1u);
  SlotView rv = r->Slot(1);
  EXPECT_TRUE(ValidateSlot(rv).ok()) << ValidateSlot(rv);
  EXPECT_EQ(rv.FindVip(AddrFamily::kIPv4, vip, 6, 80), 0);
  EXPECT_EQ(rv.FindVip(AddrFamily::kIPv4, vip, 6, 81), -1);
  EXPECT_EQ(rv.FindVip(AddrFamily::kIPv4, vip, 17, 80), -1);
  EXPECT_EQ(rv.Ring(0)[5], 1u);

  // A ring entry that points past num_backends is refused by ValidateSlot,
  // and so is any byte changed after the checksum was taken.
  rv.Ring(0)[3] = 7;
  EXPECT_FALSE(ValidateSlot(rv).ok());
  rv.Ring(0)[3] = 1;
  EXPECT_TRUE(ValidateSlot(rv).ok());
  rv.backends[1].weight = 99;
  absl::Status st = ValidateSlot(rv);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("checksum"), std::string::npos);
}

TEST_F(RegionTest, ReopenKeepsGenerationAndRefusesOtherCapacities) {
  {
    auto w = TableWriter::Open(TempPath("tables"), SmallCaps(), false);
    ASSERT_TRUE(w.ok());
    w->Publish();
    w->Publish();
  }
  auto w = TableWriter::Open(TempPath("tables"), SmallCaps(), false);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->published_generation(), 2u);

  TableCapacities other = SmallCaps();
  other.max_vips = 9;
  auto bad = TableWriter::Open(TempPath("tables"), other, false);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("capacities"), std::string::npos);

  auto re = TableWriter::Open(TempPath("tables"), other, true);
  ASSERT_TRUE(re.ok()) << re.status();
  EXPECT_EQ(re->published_generation(), 0u);
}

TEST_F(RegionTest, ForeignFileIsRefused) {
  FILE* f = fopen(TempPath("tables").c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::string junk(8192, 'x');
  fwrite(junk.data(), 1, junk.size(), f);
  fclose(f);
  auto r = TableReader::Attach(TempPath("tables"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("magic"), std::string::npos);
  auto w = TableWriter::Open(TempPath("tables"), SmallCaps(), false);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("magic"), std::string::npos);
  auto s = StatsRegion::Attach(TempPath("tables"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("magic"), std::string::npos);
}

TEST_F(RegionTest, StatsRegionValidation) {
  auto s = StatsRegion::Create(TempPath("stats"), {4, 8, 16});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->header().max_lcores, 4u);
  // Slices are cache-line aligned and do not overlap.
  auto a = reinterpret_cast<uintptr_t>(&s->Lcore(0));
  auto b = reinterpret_cast<uintptr_t>(&s->Lcore(1));
  EXPECT_EQ(a % 64, 0u);
  EXPECT_GE(b - a, sizeof(LcoreStats) + 8 * sizeof(VipCounters) + 16 * sizeof(BackendCounters));
  auto att = StatsRegion::Attach(TempPath("stats"));
  ASSERT_TRUE(att.ok()) << att.status();

  // Corrupt the drop-reason count (resealing the checksum): refused by name.
  auto* h = const_cast<StatsRegionHeader*>(&s->header());
  h->num_drop_reasons += 1;
  h->header_checksum = HeaderChecksum(h, offsetof(StatsRegionHeader, header_checksum));
  auto bad = StatsRegion::Attach(TempPath("stats"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("num_drop_reasons"), std::string::npos);
}

// ABI 2: the per-port area follows the last lcore slice, cache-line aligned,
// and is part of the layout a reader recomputes from the capacities.
TEST_F(RegionTest, StatsRegionPortArea) {
  auto s = StatsRegion::Create(TempPath("stats"), {4, 8, 16, 3});
  ASSERT_TRUE(s.ok()) << s.status();
  const StatsRegionHeader& h = s->header();
  EXPECT_EQ(h.abi_version, 4u);  // 3: drop reason backends_full; 4: exception path counters
  EXPECT_EQ(h.max_ports, 3u);
  EXPECT_EQ(h.ports_offset, h.lcores_offset + 4 * h.lcore_stride);
  EXPECT_EQ(h.ports_offset % 64, 0u);
  EXPECT_EQ(h.region_size, h.ports_offset + 3 * sizeof(PortCounters));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(&s->Port(1)) - reinterpret_cast<uintptr_t>(&s->Port(0)),
            256u);
  EXPECT_EQ(s->Port(2).in_use.load(), 0u);  // a fresh region reports no port
  s->Port(2).port_id = 7;
  s->Port(2).rx_missed.store(42);
  s->Port(2).in_use.store(1);
  auto att = StatsRegion::Attach(TempPath("stats"));
  ASSERT_TRUE(att.ok()) << att.status();
  EXPECT_EQ(att->Port(2).port_id, 7u);
  EXPECT_EQ(att->Port(2).rx_missed.load(), 42u);
  // The last lcore slice's last backend counter ends before the port area.
  EXPECT_LE(reinterpret_cast<uintptr_t>(s->Backends(3) + 16),
            reinterpret_cast<uintptr_t>(&s->Port(0)));

  EXPECT_FALSE(StatsRegion::Create(TempPath("stats2"), {4, 8, 16, kMaxStatsPorts + 1}).ok());
  // A ports_offset that disagrees with the capacities is refused.
  auto* hw = const_cast<StatsRegionHeader*>(&h);
  hw->ports_offset += 64;
  auto bad = StatsRegion::Attach(TempPath("stats"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("layout"), std::string::npos);
}

TEST_F(RegionTest, ReclaimWaitsForOnlineLcoresAndReportsStuck) {
  auto s = StatsRegion::Create(TempPath("stats"), {4, 8, 16});
  ASSERT_TRUE(s.ok());
  s->control().num_lcores.store(3);
  const uint64_t now = MonotonicNs();
  for (uint32_t i = 0; i < 3; ++i) {
    s->Lcore(i).state.store(static_cast<uint32_t>(LcoreState::kOnline));
    s->Lcore(i).observed_generation.store(5);
    s->Lcore(i).heartbeat_ns.store(now);
  }
  EXPECT_TRUE(s->CheckReclaim(5, now, 1000000).ok);

  s->Lcore(1).observed_generation.store(4);             // alive, just behind
  s->Lcore(2).observed_generation.store(0);             // attaching: must be waited for
  s->Lcore(2).heartbeat_ns.store(now - 2000000000ull);  // and stalled: stuck
  auto rs = s->CheckReclaim(5, now, 1000000000ull);
  EXPECT_FALSE(rs.ok);
  EXPECT_EQ(rs.waiting, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(rs.stuck, (std::vector<uint32_t>{2}));

  // An offline lcore is never waited for.
  s->Lcore(1).state.store(static_cast<uint32_t>(LcoreState::kOffline));
  s->Lcore(2).state.store(static_cast<uint32_t>(LcoreState::kOffline));
  EXPECT_TRUE(s->CheckReclaim(5, now, 1000000).ok);

  // A dataplane that stopped cleanly (pid 0) has no live lcores.
  s->Lcore(1).state.store(static_cast<uint32_t>(LcoreState::kOnline));
  s->control().writer_pid.store(0);
  EXPECT_TRUE(s->CheckReclaim(5, now, 1000000).ok);
}

}  // namespace
}  // namespace lb
