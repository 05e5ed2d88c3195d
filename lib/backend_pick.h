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

}  // namespace lb

#endif  // LB_LIB_BACKEND_PICK_H_
