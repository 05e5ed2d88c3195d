// A table slot held in plain vectors, for tests of the lib/ functions that
// read a published slot (backend_pick.h, balance.h) without a region file.
#ifndef LB_TESTS_UNIT_FAKE_SLOT_H_
#define LB_TESTS_UNIT_FAKE_SLOT_H_

#include <cstdint>
#include <cstring>
#include <vector>

#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace lb {

class FakeSlot {
 public:
  // Backend slots 1..n, IPv4 10.0.0.<slot>, active, incarnation 100 + slot.
  FakeSlot(uint32_t num_backends, uint32_t ring_size) : ring_size_(ring_size) {
    std::memset(&header_, 0, sizeof(header_));
    backends_.resize(num_backends + 1);
    std::memset(backends_.data(), 0, sizeof(BackendEntry) * backends_.size());
    for (uint32_t s = 1; s <= num_backends; ++s) {
      BackendEntry& b = backends_[s];
      b.addr[0] = 10;
      b.addr[3] = static_cast<uint8_t>(s);
      b.family = static_cast<uint8_t>(AddrFamily::kIPv4);
      b.state = static_cast<uint8_t>(BackendState::kActive);
      b.incarnation = 100 + s;
      b.weight = 1;
      b.backend_id = s;
    }
  }

  // Adds a VIP over `members` (backend slots); its ring repeats the members
  // in order. Returns its index.
  int AddVip(Algorithm alg, const std::vector<uint32_t>& members, uint8_t flags = kVipInUse) {
    VipEntry v;
    std::memset(&v, 0, sizeof(v));
    v.family = static_cast<uint8_t>(AddrFamily::kIPv4);
    v.proto = 6;
    v.algorithm = static_cast<uint8_t>(alg);
    v.flags = flags;
    v.member_begin = static_cast<uint32_t>(members_.size());
    v.member_count = static_cast<uint32_t>(members.size());
    v.vip_id = static_cast<uint32_t>(vips_.size() + 1);
    vips_.push_back(v);
    members_.insert(members_.end(), members.begin(), members.end());
    for (uint32_t i = 0; i < ring_size_; ++i) {
      rings_.push_back(members.empty() ? 0 : members[i % members.size()]);
    }
    return static_cast<int>(vips_.size() - 1);
  }

  BackendEntry& backend(uint32_t s) { return backends_[s]; }
  uint32_t* ring(int vip) { return rings_.data() + static_cast<size_t>(vip) * ring_size_; }

  // The view; valid until the next AddVip.
  SlotView view() {
    header_.generation = 1;
    header_.num_vips = static_cast<uint32_t>(vips_.size());
    header_.num_backends = static_cast<uint32_t>(backends_.size());
    header_.num_members = static_cast<uint32_t>(members_.size());
    header_.ring_size = ring_size_;
    SlotView v;
    v.header = &header_;
    v.vips = vips_.data();
    v.backends = backends_.data();
    v.members = members_.data();
    v.rings = rings_.data();
    v.ring_stride = ring_size_;
    v.max_vips = static_cast<uint32_t>(vips_.size());
    v.max_backends = static_cast<uint32_t>(backends_.size());
    v.max_members = static_cast<uint32_t>(members_.size());
    return v;
  }

 private:
  uint32_t ring_size_;
  SlotHeader header_;
  std::vector<VipEntry> vips_;
  std::vector<BackendEntry> backends_;
  std::vector<uint32_t> members_;
  std::vector<uint32_t> rings_;
};

}  // namespace lb

#endif  // LB_TESTS_UNIT_FAKE_SLOT_H_
