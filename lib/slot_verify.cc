#include "lib/slot_verify.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace lb {
namespace {

bool Fail(SlotFault* f, SlotField field, uint32_t index, uint64_t value, uint64_t limit,
          uint32_t index2 = 0) {
  f->field = field;
  f->index = index;
  f->index2 = index2;
  f->value = value;
  f->limit = limit;
  return false;
}

bool FamilyOk(uint8_t family) { return family == 4 || family == 6; }

// Counts against the capacities: SlotChecksum reads num_* entries, so these
// come first.
bool CheckCounts(const SlotView& v, SlotFault* f) {
  const SlotHeader& sh = *v.header;
  if (sh.num_vips > v.max_vips) return Fail(f, SlotField::kNumVips, 0, sh.num_vips, v.max_vips);
  if (sh.num_backends > v.max_backends) {
    return Fail(f, SlotField::kNumBackends, 0, sh.num_backends, v.max_backends);
  }
  if (sh.num_members > v.max_members) {
    return Fail(f, SlotField::kNumMembers, 0, sh.num_members, v.max_members);
  }
  if (sh.ring_size > v.ring_stride) {
    return Fail(f, SlotField::kRingSize, 0, sh.ring_size, v.ring_stride);
  }
  return true;
}

// The largest ring entry. Only the maximum is kept, so the loop has no
// branch; blocks of a fixed 16 entries are what GCC vectorises at -O2 (its
// "very cheap" cost model). The position of a bad entry is found afterwards.
uint32_t RingMax(const uint32_t* ring, uint32_t n) {
  uint32_t worst = 0;
  uint32_t k = 0;
  for (; k + 16 <= n; k += 16) {
    uint32_t m = 0;
    for (uint32_t j = 0; j < 16; ++j) m = ring[k + j] > m ? ring[k + j] : m;
    worst = m > worst ? m : worst;
  }
  for (; k < n; ++k) worst = ring[k] > worst ? ring[k] : worst;
  return worst;
}

bool CheckVips(const SlotView& v, SlotFault* f) {
  const SlotHeader& sh = *v.header;
  for (uint32_t i = 0; i < sh.num_vips; ++i) {
    const VipEntry& e = v.vips[i];
    if (!(e.flags & kVipInUse)) continue;
    const uint64_t end = static_cast<uint64_t>(e.member_begin) + e.member_count;
    if (end > sh.num_members) return Fail(f, SlotField::kVipMembers, i, end, sh.num_members);
    if (e.algorithm >= kNumAlgorithms) {
      return Fail(f, SlotField::kVipAlgorithm, i, e.algorithm, kNumAlgorithms);
    }
    if (!FamilyOk(e.family)) return Fail(f, SlotField::kVipFamily, i, e.family, 0);
    const uint32_t* ring = v.Ring(i);
    const uint32_t worst = RingMax(ring, sh.ring_size);
    if (worst != 0 && worst >= sh.num_backends) {
      uint32_t k = 0;
      while (ring[k] == 0 || ring[k] < sh.num_backends) ++k;
      return Fail(f, SlotField::kRingEntry, i, ring[k], sh.num_backends, k);
    }
  }
  return true;
}

bool CheckMembersAndBackends(const SlotView& v, SlotFault* f) {
  const SlotHeader& sh = *v.header;
  for (uint32_t m = 0; m < sh.num_members; ++m) {
    if (v.members[m] == 0 || v.members[m] >= sh.num_backends) {
      return Fail(f, SlotField::kMember, m, v.members[m], sh.num_backends);
    }
  }
  for (uint32_t b = 1; b < sh.num_backends; ++b) {
    const BackendEntry& e = v.backends[b];
    if (e.state == static_cast<uint8_t>(BackendState::kUnused)) continue;
    if (!FamilyOk(e.family)) return Fail(f, SlotField::kBackendFamily, b, e.family, 0);
  }
  return true;
}

// FindVip returns cell - 1 as a VIP index, which the lcores use without a
// further check (vips[], per-VIP counters, member ranges): a cell must be 0
// (empty) or name an in-use VIP of vips[0, num_vips). Found by
// fuzz/shm_region_fuzz.cc.
bool CheckVipIndex(const SlotView& v, SlotFault* f) {
  const SlotHeader& sh = *v.header;
  for (uint32_t c = 0; c <= v.vip_hash_mask; ++c) {
    const uint32_t cell = v.vip_hash[c];
    if (cell == 0) continue;
    if (cell > sh.num_vips) return Fail(f, SlotField::kVipIndexCell, c, cell, sh.num_vips);
    if (!(v.vips[cell - 1].flags & kVipInUse)) {
      return Fail(f, SlotField::kVipIndexUnused, c, cell, 0);
    }
  }
  return true;
}

}  // namespace

const char* SlotFieldName(SlotField f) {
  switch (f) {
    case SlotField::kNone:
      return "none";
    case SlotField::kGeneration:
      return "generation";
    case SlotField::kNumVips:
      return "num_vips";
    case SlotField::kNumBackends:
      return "num_backends";
    case SlotField::kNumMembers:
      return "num_members";
    case SlotField::kRingSize:
      return "ring_size";
    case SlotField::kChecksum:
      return "checksum";
    case SlotField::kVipMembers:
      return "vip members";
    case SlotField::kVipAlgorithm:
      return "vip algorithm";
    case SlotField::kVipFamily:
      return "vip family";
    case SlotField::kRingEntry:
      return "ring entry";
    case SlotField::kMember:
      return "member";
    case SlotField::kBackendFamily:
      return "backend family";
    case SlotField::kVipIndexCell:
      return "vip index cell";
    case SlotField::kVipIndexUnused:
      return "vip index cell";
  }
  return "unknown";
}

std::string DescribeSlotFault(const SlotFault& f, uint64_t generation) {
  switch (f.field) {
    case SlotField::kNone:
      return "no fault";
    case SlotField::kGeneration:
      return absl::StrCat("slot generation ", f.value, " != published generation ", f.limit,
                          " (written outside the publish protocol)");
    case SlotField::kNumVips:
    case SlotField::kNumBackends:
    case SlotField::kNumMembers:
    case SlotField::kRingSize:
      return absl::StrCat("slot ", SlotFieldName(f.field), " ", f.value, " > max ", f.limit);
    case SlotField::kChecksum:
      return absl::StrCat("slot checksum mismatch for generation ", generation,
                          " (stale or torn slot)");
    case SlotField::kVipMembers:
      return absl::StrCat("vips[", f.index, "] members out of range (end ", f.value,
                          " > num_members ", f.limit, ")");
    case SlotField::kVipAlgorithm:
      return absl::StrCat("vips[", f.index, "] algorithm ", f.value);
    case SlotField::kVipFamily:
      return absl::StrCat("vips[", f.index, "] family ", f.value, " (want 4 or 6)");
    case SlotField::kRingEntry:
      return absl::StrCat("vips[", f.index, "] ring[", f.index2, "] = ", f.value,
                          " beyond num_backends ", f.limit);
    case SlotField::kMember:
      return absl::StrCat("members[", f.index, "] = ", f.value, " invalid (num_backends ", f.limit,
                          ")");
    case SlotField::kBackendFamily:
      return absl::StrCat("backends[", f.index, "] family ", f.value, " (want 4 or 6)");
    case SlotField::kVipIndexCell:
      return absl::StrCat("vip index cell ", f.index, " = ", f.value, " beyond num_vips ", f.limit);
    case SlotField::kVipIndexUnused:
      return absl::StrCat("vip index cell ", f.index, " = ", f.value,
                          " names a VIP entry not in use");
  }
  return "unknown fault";
}

bool CheckSlotIndices(const SlotView& v, SlotFault* f) {
  return CheckCounts(v, f) && CheckVips(v, f) && CheckMembersAndBackends(v, f) &&
         CheckVipIndex(v, f);
}

bool CheckSlot(const SlotView& v, SlotFault* f) {
  if (!CheckCounts(v, f)) return false;
  if (SlotChecksum(v) != v.header->checksum) {
    return Fail(f, SlotField::kChecksum, 0, v.header->checksum, 0);
  }
  return CheckSlotIndices(v, f);
}

absl::Status ValidateSlot(const SlotView& v) {
  SlotFault f;
  if (CheckSlot(v, &f)) return absl::OkStatus();
  return absl::DataLossError(DescribeSlotFault(f, v.header->generation));
}

uint64_t SlotVerifyBytes(const SlotView& v) {
  const SlotHeader& sh = *v.header;
  const uint32_t vips = std::min(sh.num_vips, v.max_vips);
  uint64_t in_use = 0;
  for (uint32_t i = 0; i < vips; ++i) in_use += (v.vips[i].flags & kVipInUse) != 0;
  return sizeof(SlotHeader) + uint64_t{vips} * sizeof(VipEntry) +
         uint64_t{std::min(sh.num_backends, v.max_backends)} * sizeof(BackendEntry) +
         uint64_t{std::min(sh.num_members, v.max_members)} * sizeof(uint32_t) +
         (uint64_t{v.vip_hash_mask} + 1) * sizeof(uint32_t) +
         in_use * std::min(sh.ring_size, v.ring_stride) * sizeof(uint32_t);
}

TableGate::Verdict TableGate::Resolve(const TableReader& tables, uint64_t g) {
  if (verifier_thread_.load(std::memory_order_relaxed)) {
    // Sized once per generation (deferred_ remembers a large one): reading
    // the VIP flags is bounded (max_vips entries) and safe, the slot cannot
    // be rewritten before its verdict.
    if (deferred_.load(std::memory_order_relaxed) == g) return Decide(tables, g, false);
    if (accepted_.load(std::memory_order_acquire) != g &&
        refused_.load(std::memory_order_acquire) != g &&
        SlotVerifyBytes(tables.Slot(g)) > kInlineVerifyBytes) {
      deferred_.store(g, std::memory_order_relaxed);
      return Decide(tables, g, false);
    }
  }
  return Decide(tables, g, true);
}

TableGate::Verdict TableGate::VerifyPublished(const TableReader& tables, bool only_large) {
  const uint64_t g = tables.generation();
  if (g == 0) return Verdict::kPending;
  if (only_large && deferred_.load(std::memory_order_relaxed) != g &&
      claimed_.load(std::memory_order_relaxed) < g &&
      SlotVerifyBytes(tables.Slot(g)) <= kInlineVerifyBytes) {
    return Verdict::kPending;
  }
  return Decide(tables, g, true);
}

TableGate::Verdict TableGate::Decide(const TableReader& tables, uint64_t g, bool may_verify) {
  // Acquire: the verdict's stores (fault fields) happen-before our reads.
  if (accepted_.load(std::memory_order_acquire) == g) return Verdict::kAccepted;
  if (refused_.load(std::memory_order_acquire) == g) return Verdict::kRefused;
  uint64_t c = claimed_.load(std::memory_order_relaxed);
  // c == g: another lcore verifies it now. c > g: this caller read an older
  // generation; it reloads the generation after its next burst.
  if (c >= g || !may_verify) return Verdict::kPending;
  if (!claimed_.compare_exchange_strong(c, g, std::memory_order_acq_rel)) {
    return Verdict::kPending;
  }
  const SlotView v = tables.Slot(g);
  SlotFault f;
  bool ok;
  if (v.header->generation != g) {
    // The writer stamps the slot before publishing, so anything else means a
    // foreign writer broke the protocol.
    ok = Fail(&f, SlotField::kGeneration, 0, v.header->generation, g);
  } else {
    ok = CheckSlot(v, &f);
  }
  if (ok) {
    accepted_.store(g, std::memory_order_release);
    return Verdict::kAccepted;
  }
  fault_field_.store(static_cast<uint32_t>(f.field), std::memory_order_relaxed);
  fault_index_.store(f.index, std::memory_order_relaxed);
  fault_index2_.store(f.index2, std::memory_order_relaxed);
  fault_value_.store(f.value, std::memory_order_relaxed);
  fault_limit_.store(f.limit, std::memory_order_relaxed);
  refused_.store(g, std::memory_order_release);
  return Verdict::kRefused;
}

uint64_t TableGate::LastRefusal(SlotFault* fault) const {
  const uint64_t g = refused_.load(std::memory_order_acquire);
  fault->field = static_cast<SlotField>(fault_field_.load(std::memory_order_relaxed));
  fault->index = fault_index_.load(std::memory_order_relaxed);
  fault->index2 = fault_index2_.load(std::memory_order_relaxed);
  fault->value = fault_value_.load(std::memory_order_relaxed);
  fault->limit = fault_limit_.load(std::memory_order_relaxed);
  return g;
}

}  // namespace lb
