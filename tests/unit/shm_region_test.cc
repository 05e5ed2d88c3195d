// ValidateSlot as the dataplane's gate over a slot another process wrote:
// every index an lcore follows without a further check must be in range once
// the slot is accepted. The VIP index cases are the regression of the bug
// fuzz/shm_region_fuzz.cc found (fuzz/regressions/shm_region/): a cell
// naming a VIP beyond num_vips was accepted, and FindVip then returned it.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace lb {
namespace {

// A region of small capacities in ordinary memory, slot 0 holding one in-use
// IPv4 VIP (10.0.0.1:80/tcp) over one backend, sealed with its checksum.
class SlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = ComputeTableLayout({4, 8, 16, 13});
    ASSERT_TRUE(h.ok()) << h.status();
    header_ = *h;
    words_ = std::make_unique<uint64_t[]>(header_.region_size / sizeof(uint64_t));
    v_ = MakeSlotView(reinterpret_cast<uint8_t*>(words_.get()), header_, 0);
    v_.header->generation = 1;
    v_.header->num_vips = 1;
    v_.header->num_backends = 2;
    v_.header->num_members = 1;
    v_.header->ring_size = 13;
    v_.backends[1].family = 4;
    v_.backends[1].weight = 1;
    v_.members[0] = 1;
    VipEntry& e = v_.vips[0];
    std::memcpy(e.addr, kVip, 4);
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

  static constexpr uint8_t kVip[16] = {10, 0, 0, 1};
  TableRegionHeader header_;
  std::unique_ptr<uint64_t[]> words_;
  SlotView v_;
  uint32_t cell_ = 0;
};

TEST_F(SlotTest, AValidSlotIsAcceptedAndFindsItsVip) {
  ASSERT_TRUE(ValidateSlot(v_).ok()) << ValidateSlot(v_);
  EXPECT_EQ(v_.FindVip(AddrFamily::kIPv4, kVip, 6, 80), 0);
}

TEST_F(SlotTest, VipIndexCellBeyondNumVipsIsRefused) {
  // Within the capacity (max_vips 4) but past num_vips: an unused entry.
  v_.vip_hash[cell_] = 2;
  Seal();
  absl::Status st = ValidateSlot(v_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("vip index cell"), std::string::npos) << st;
  // Far beyond the region: FindVip would read vips[0x3fffffff].
  v_.vip_hash[cell_] = 1;
  v_.vip_hash[(cell_ + 1) & v_.vip_hash_mask] = 0x40000000;
  Seal();
  st = ValidateSlot(v_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("beyond num_vips 1"), std::string::npos) << st;
}

TEST_F(SlotTest, EveryCellOfAnEmptySlotMustBeEmpty) {
  v_.header->num_vips = 0;
  Seal();
  EXPECT_FALSE(ValidateSlot(v_).ok());
  v_.vip_hash[cell_] = 0;
  Seal();
  EXPECT_TRUE(ValidateSlot(v_).ok()) << ValidateSlot(v_);
}

TEST_F(SlotTest, RingAndMemberEntriesBeyondNumBackendsAreRefused) {
  v_.Ring(0)[4] = 2;
  Seal();
  EXPECT_FALSE(ValidateSlot(v_).ok());
  v_.Ring(0)[4] = 1;
  v_.members[0] = 2;
  Seal();
  EXPECT_FALSE(ValidateSlot(v_).ok());
  v_.members[0] = 1;
  Seal();
  EXPECT_TRUE(ValidateSlot(v_).ok()) << ValidateSlot(v_);
}

TEST_F(SlotTest, CountsBeyondCapacityAreRefusedBeforeTheChecksumIsRead) {
  v_.header->num_vips = 5;  // max_vips 4: SlotChecksum would read past vips[]
  absl::Status st = ValidateSlot(v_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("num_vips"), std::string::npos) << st;
}

}  // namespace
}  // namespace lb
