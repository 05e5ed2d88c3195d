// Flow -> backend for the hash-based ("consistent") algorithms, and the
// checks that say whether a backend slot may take or keep a flow.
//
// Maglev and ip_hash look the flow up in the VIP's Maglev ring (built by the
// control plane, lib/maglev.h): Maglev on the VIP flow hash (lib/vip_flow.h),
// ip_hash on the source-address hash. The answer depends only on the table
// slot and the flow, so the Worker (per new flow) and the control plane's
// Explain compute the same one. The other algorithms keep per-lcore state:
// lib/balance.h.
//
// All functions read a published slot (lib/shm_region.h SlotView) and never
// write it. Thread-safety: pure over the slot; any thread that may read it.
// Per-packet safe: inline, no allocation.
#ifndef LB_LIB_BACKEND_PICK_H_
#define LB_LIB_BACKEND_PICK_H_

#include <atomic>
#include <cstdint>

#include "lib/flow_hash.h"
#include "lib/flow_key.h"
#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace lb {

// A chosen backend: its slot and the incarnation it had when chosen.
struct BackendPick {
  uint32_t slot = 0;
  uint32_t incarnation = 0;
};

// Where a consistent algorithm looked: the hash it used, the ring index and
// the slot found there (0 = empty ring entry).
struct RingLookup {
  uint64_t hash = 0;
  uint32_t index = 0;
  uint32_t slot = 0;
};

// Maglev and ip_hash: the pick is a function of the flow and the slot.
inline bool IsConsistentAlgorithm(Algorithm a) {
  return a == Algorithm::kMaglev || a == Algorithm::kIpHash;
}

// The ring lookup of `vip` (index into slot.vips) for a flow with key `key`
// and VIP flow hash `flow_hash`. False when the slot has no rings
// (ring_size 0). Only meaningful for a consistent algorithm.
inline bool LookupRing(const SlotView& slot, int vip, const FlowKey& key, uint64_t flow_hash,
                       RingLookup* out) {
  const uint32_t size = slot.header->ring_size;
  if (size == 0) return false;
  const bool by_source = slot.vips[vip].algorithm == static_cast<uint8_t>(Algorithm::kIpHash);
  out->hash = by_source ? HashFlowMode(key, HashMode::kSourceIp) : flow_hash;
  out->index = RingIndex(out->hash, size);
  out->slot = slot.Ring(static_cast<uint32_t>(vip))[out->index];
  return true;
}

// A slot may take new flows: it holds a backend and that backend is active.
inline bool ActiveBackend(const SlotView& slot, uint32_t s, BackendPick* out) {
  if (s == 0 || s >= slot.header->num_backends) return false;
  const BackendEntry& b = slot.backends[s];
  if (b.state != static_cast<uint8_t>(BackendState::kActive)) return false;
  out->slot = s;
  out->incarnation = b.incarnation;
  return true;
}

// A pinned (slot, incarnation) still forwards when the slot holds the same
// backend (incarnation) and it keeps its flows: active or draining. Down, or
// a slot given to another backend, means re-pick.
inline bool StillServes(const SlotView& slot, uint32_t s, uint32_t incarnation) {
  if (s == 0 || s >= slot.header->num_backends) return false;
  const BackendEntry& b = slot.backends[s];
  return b.incarnation == incarnation && (b.state == static_cast<uint8_t>(BackendState::kActive) ||
                                          b.state == static_cast<uint8_t>(BackendState::kDraining));
}

// Maglev / ip_hash pick: the active backend at the flow's ring entry. False
// (the packet drops as no_backend) when there is no ring or the entry holds
// no active backend. `ring` (optional) receives where it looked.
inline bool PickConsistentBackend(const SlotView& slot, int vip, const FlowKey& key,
                                  uint64_t flow_hash, BackendPick* out,
                                  RingLookup* ring = nullptr) {
  RingLookup r;
  if (!LookupRing(slot, vip, key, flow_hash, &r)) return false;
  if (ring != nullptr) *ring = r;
  return ActiveBackend(slot, r.slot, out);
}

// ---- connection limits (BackendEntry::max_connections) ----
//
// A backend is full when the live flows pinned to its slot's current
// incarnation, summed over every lcore, reach max_connections (0 = no
// limit). An lcore knows its own count exactly (its BackendCounters
// ::active_flows gauge, which only it writes) and the other lcores' counts
// as a private copy it refreshes every millisecond or so from their stats
// slices (dataplane/l4/worker.h, "Connection limits"), so nothing shared is
// written by the check and the limit can be overshot by what the other
// lcores admit within one refresh period.
struct BackendLoad {
  const BackendCounters* own = nullptr;  // this lcore's gauges, [max_backends]; null = no limits
  const uint64_t* peers = nullptr;       // the other lcores' sum, [max_backends]; may be null
};

inline bool BackendFull(const SlotView& slot, uint32_t s, const BackendLoad& load) {
  const uint32_t limit = slot.backends[s].max_connections;
  if (limit == 0 || load.own == nullptr) return false;
  const uint64_t n = load.own[s].active_flows.load(std::memory_order_relaxed) +
                     (load.peers != nullptr ? load.peers[s] : 0);
  return n >= limit;
}

// The first active backend with room among the VIP's members, starting at a
// position chosen by `hash` (so flows spread over the members that have
// room rather than all landing on the first). False when none has room.
inline bool FirstMemberWithRoom(const SlotView& slot, int vip, uint64_t hash,
                                const BackendLoad& load, BackendPick* out) {
  const VipEntry& v = slot.vips[vip];
  if (v.member_count == 0) return false;
  const uint32_t* members = slot.members + v.member_begin;
  uint32_t i = RingIndex(hash, v.member_count);
  for (uint32_t k = 0; k < v.member_count; ++k) {
    if (ActiveBackend(slot, members[i], out) && !BackendFull(slot, out->slot, load)) return true;
    if (++i == v.member_count) i = 0;
  }
  return false;
}

// How far a new flow walks the Maglev ring past a full backend before it
// falls back to scanning the member list: bounds the cost of a new flow
// when most backends are full (a SYN flood then costs this many loads per
// packet, not a walk of the whole ring).
inline constexpr uint32_t kMaxFullRingSkips = 32;

// Maglev / ip_hash with limits: the ring entry's backend if it has room;
// else the next ring entries (Maglev's table interleaves every backend's
// preference list, so the next entries are the other backends in
// proportion to their weight), then the members. False with *all_full
// false when the ring entry holds no active backend (no_backend, as
// PickConsistentBackend); false with *all_full true when every active
// member is full. `skipped` (optional) receives the full backend the ring
// chose, untouched when it had room. A flow never moves once picked: only
// new flows call this.
inline bool PickConsistentWithRoom(const SlotView& slot, int vip, const FlowKey& key,
                                   uint64_t flow_hash, const BackendLoad& load, BackendPick* out,
                                   bool* all_full, uint32_t* skipped = nullptr) {
  *all_full = false;
  RingLookup r;
  if (!LookupRing(slot, vip, key, flow_hash, &r)) return false;
  if (!ActiveBackend(slot, r.slot, out)) return false;
  if (!BackendFull(slot, out->slot, load)) return true;
  if (skipped != nullptr) *skipped = out->slot;
  const uint32_t size = slot.header->ring_size;
  const uint32_t* ring = slot.Ring(static_cast<uint32_t>(vip));
  const uint32_t steps = size - 1 < kMaxFullRingSkips ? size - 1 : kMaxFullRingSkips;
  uint32_t i = r.index;
  for (uint32_t k = 0; k < steps; ++k) {
    if (++i == size) i = 0;
    if (ActiveBackend(slot, ring[i], out) && !BackendFull(slot, out->slot, load)) return true;
  }
  if (FirstMemberWithRoom(slot, vip, r.hash, load, out)) return true;
  *all_full = true;
  return false;
}

}  // namespace lb

#endif  // LB_LIB_BACKEND_PICK_H_
