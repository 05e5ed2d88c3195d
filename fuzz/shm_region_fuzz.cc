// Fuzz target: what a dataplane accepts from a table region (lib/shm_region.cc).
// The region is the bytes another process wrote; lb-dataplane trusts a slot
// only after ValidateTableHeader and ValidateSlot, then indexes it per packet
// (FindVip, members, rings). This target writes fuzzer bytes over a region of
// small fixed capacities and, whenever the validators accept, does what the
// lcores do and checks that every index they would follow is in range.
//
// Input: byte 0 = flags, then (kHeaderBytes flag) up to sizeof(header) bytes
// over the region header, then bytes over the slot, from its first byte. The
// checksums are recomputed unless a flag says not to, so the fuzzer gets past
// them (a real writer computes them too; they catch tearing, not malice).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace {

constexpr uint8_t kHeaderBytes = 1u << 0;    // fuzz the region header too
constexpr uint8_t kKeepHeaderSum = 1u << 1;  // leave header_checksum as given
constexpr uint8_t kKeepSlotSum = 1u << 2;    // leave the slot checksum as given
constexpr uint8_t kSecondSlot = 1u << 3;     // write and read slot 1, not slot 0

void Check(bool ok) {
  if (!ok) std::abort();  // an accepted slot that points out of range
}

const lb::TableRegionHeader& Layout() {
  static const lb::TableRegionHeader h = [] {
    lb::TableCapacities caps;
    caps.max_vips = 4;
    caps.max_backends = 8;
    caps.max_members = 16;
    caps.max_ring_size = 13;
    auto l = lb::ComputeTableLayout(caps);
    if (!l.ok()) std::abort();
    return *l;
  }();
  return h;
}

// The lcores' walk over an accepted slot, with `probe` as one more VIP key.
void UseSlot(const lb::SlotView& v, const uint8_t* probe, size_t probe_len) {
  const lb::SlotHeader& sh = *v.header;
  for (uint32_t i = 0; i < sh.num_vips; ++i) {
    const lb::VipEntry& e = v.vips[i];
    const int found = v.FindVip(static_cast<lb::AddrFamily>(e.family), e.addr, e.proto, e.port);
    Check(found < static_cast<int>(sh.num_vips));
    if (!(e.flags & lb::kVipInUse)) continue;
    for (uint32_t k = 0; k < e.member_count; ++k) {
      Check(v.members[e.member_begin + k] < sh.num_backends);
    }
    const uint32_t* ring = v.Ring(i);
    // 0 is "no backend" (an empty pool); anything else is a backend slot.
    for (uint32_t k = 0; k < sh.ring_size; ++k) Check(ring[k] == 0 || ring[k] < sh.num_backends);
  }
  uint8_t addr[16] = {};
  std::memcpy(addr, probe, std::min(probe_len, sizeof(addr)));
  for (lb::AddrFamily f : {lb::AddrFamily::kIPv4, lb::AddrFamily::kIPv6}) {
    const int found = v.FindVip(f, addr, addr[0], static_cast<uint16_t>(addr[1] << 8 | addr[2]));
    Check(found < static_cast<int>(sh.num_vips));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  ++data;
  --size;
  const lb::TableRegionHeader& layout = Layout();
  const size_t region_size = layout.region_size;
  // 8-byte aligned, like a mapping; exactly the region's size.
  auto words = std::make_unique<uint64_t[]>(region_size / sizeof(uint64_t));
  uint8_t* base = reinterpret_cast<uint8_t*>(words.get());
  std::memcpy(base, &layout, sizeof(layout));
  auto* h = reinterpret_cast<lb::TableRegionHeader*>(base);
  if (flags & kHeaderBytes) {
    const size_t n = std::min(size, sizeof(lb::TableRegionHeader));
    if (n > 0) std::memcpy(base, data, n);
    data += n;
    size -= n;
    if (!(flags & kKeepHeaderSum)) {
      h->header_checksum = lb::HeaderChecksum(h, offsetof(lb::TableRegionHeader, header_checksum));
    }
  }
  if (!lb::ValidateTableHeader(*h, region_size).ok()) return 0;
  Check(h->region_size <= region_size);

  const lb::SlotView v = lb::MakeSlotView(base, *h, (flags & kSecondSlot) ? 1 : 0);
  const size_t n = std::min<size_t>(size, h->slot_size);
  if (n > 0) std::memcpy(v.header, data, n);
  const lb::SlotHeader& sh = *v.header;
  // SlotChecksum reads num_* entries: only within capacity, as ValidateSlot
  // itself checks before it computes the sum.
  const bool counts_fit = sh.num_vips <= v.max_vips && sh.num_backends <= v.max_backends &&
                          sh.num_members <= v.max_members && sh.ring_size <= v.ring_stride;
  if (counts_fit && !(flags & kKeepSlotSum)) v.header->checksum = lb::SlotChecksum(v);
  if (!lb::ValidateSlot(v).ok()) return 0;
  UseSlot(v, data, n);
  return 0;
}
