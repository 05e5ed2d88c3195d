// The table builder: a pure function from a validated DesiredState (and the
// previous slot assignment) to the contents of one table slot (table_format.h).
//
// Proxy pools (DesiredPool::proxy, lb-l7's) are not part of the L4 tables:
// their backends get no slot and no VIP may use them.
//
// What it guarantees:
//  * Stable backend slots. A backend's identity is (pool name, canonical
//    address). An identity present in `previous` keeps its slot and
//    incarnation whatever else changes (state, weight, other backends). A new
//    identity takes the lowest free slot >= 1 (slot 0 is "no backend") with
//    incarnation = that slot's previous incarnation + 1; a removed identity's
//    slot becomes kUnused but keeps its incarnation in the table, so the next
//    owner still gets +1 after a restart. New identities are placed in
//    (pool, address) order, so two nodes starting from nothing with the same
//    config number their slots identically, whatever order the config lists
//    them in.
//  * Stable VIP positions, likewise keyed by (address, protocol, port); the
//    stats region's per-VIP counters are indexed by position.
//  * Stable ids: a backend or VIP configured with id 0 keeps the id it was
//    given before; new ones get the lowest id unused by the config.
//  * Members of a VIP: the slots of its pool's backends that take new flows
//    (ACTIVE, weight > 0), sorted by canonical address (the Maglev key).
//  * Rings: per VIP, the Maglev table (lib/maglev.h) over those members, with
//    key = canonical address, weight = configured weight, value = slot. The
//    ring is built for every VIP whatever its algorithm (IP_HASH uses it
//    directly; the per-lcore algorithms may fall back to it). Maglev output
//    depends only on the (key, weight) multiset, so every node with the same
//    config sends a given hash to the same backend address.
//  * Fingerprint: MaglevFingerprint of the ring with every entry replaced by
//    the member's 1-based position in the sorted member list (0 stays 0). It
//    is therefore equal on two nodes with the same config even when their
//    slot numbering differs (different histories), and is what operators
//    compare across nodes.
//  * VIP index: open addressing with linear probing exactly as
//    SlotView::FindVipExact probes it.
//
// Failure: InvalidArgument/ResourceExhausted when the state does not fit the
// slot (ValidateConfig with the same capacities rules that out). On error the
// slot may be partly written; it is never published (Publisher).
//
// Threads: reentrant; the caller owns `out` (the inactive slot) exclusively.
#ifndef LB_CONTROLPLANE_TABLE_BUILDER_H_
#define LB_CONTROLPLANE_TABLE_BUILDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "lib/shm_region.h"

namespace lb {

// Who owns which backend slot and VIP position: what one build hands to the
// next, and what a restarted control plane recovers from the published slot.
struct SlotAssignment {
  struct BackendSlot {
    std::string pool;          // "" when unknown (recovered from a table, see below)
    std::string address;       // canonical; "" = slot free
    uint32_t incarnation = 0;  // of the current owner, or of the last one when free
    uint32_t backend_id = 0;
    // Recovered assignments only: keys of the VIPs whose member list held
    // this slot; used to tell apart one address that sits in several pools.
    std::vector<std::string> member_of;

    bool in_use() const { return !address.empty(); }
  };
  struct VipSlot {
    std::string key;  // DesiredVip::Key(); "" = position free
    uint32_t vip_id = 0;
  };
  std::vector<BackendSlot> backends;  // index = slot; [0] is reserved
  std::vector<VipSlot> vips;          // index = VIP position
  // The slot of each backend of the desired state this was built from, in
  // config order (non-proxy pools): the next AssignSlots checks these guesses
  // before it hashes every identity. Empty when recovered from a table.
  std::vector<uint32_t> config_order_slots;
};

// Recovers the assignment from a published slot (TableWriter::CurrentSlot()),
// so that a restarted control plane with the same config reproduces the same
// slots, incarnations, ids and rings: no flow moves. The table does not store
// pool names; a recovered backend matches by address, and when one address
// is in several pools, by the pools of the VIPs it was a member of (then by
// lowest slot; such twins forward to the same address either way). An
// unpublished slot (generation 0) yields an empty assignment. The caller
// validates the slot first (ValidateSlot); DataLoss on an entry this build
// cannot interpret.
absl::StatusOr<SlotAssignment> SeedAssignmentFromSlot(const SlotView& slot);

struct TableCapacityLimits {
  uint32_t max_vips;
  uint32_t max_backends;
};

// Decides slots, positions and ids for `desired` given `previous`. Pure.
absl::StatusOr<SlotAssignment> AssignSlots(const DesiredState& desired,
                                           const SlotAssignment& previous,
                                           const TableCapacityLimits& caps);

struct VipSummary {
  std::string key;  // "10.0.0.1:80/tcp"
  std::string pool;
  uint32_t vip_id = 0;
  uint32_t position = 0;  // index in vips[]
  uint32_t members = 0;
  uint64_t fingerprint = 0;
};

struct BuildResult {
  SlotAssignment assignment;     // hand to the next build
  std::vector<VipSummary> vips;  // in config order
  uint32_t num_vips = 0;         // SlotHeader counts as written
  uint32_t num_backends = 0;
  uint32_t num_members = 0;
  uint32_t backends_in_use = 0;
  double fill_ms = 0;  // wall time of the Maglev fills (0 when every ring was reused)
};

// Buffers a build needs and a caller may keep between builds (the
// Publisher does): one ring of ring_size entries per pool a VIP uses, 256 KiB
// each at the default size, allocated and faulted in once instead of per
// publish. A ring carries over only as a cache: next to it is what it was
// built from (ring size and the pool's sorted (key, weight) member list); a
// build whose pool at the same index has exactly those inputs reuses the
// ring instead of filling it again (Maglev's output depends on nothing else).
struct BuildScratch {
  struct RingInputs {
    bool valid = false;
    uint32_t ring_size = 0;
    std::vector<std::pair<std::string, uint32_t>> members;  // (key, weight), position order
  };
  // A pool's active members in config order, and that list's address order
  // (indices into it), so that an unchanged membership is not sorted again.
  struct MemberOrder {
    std::vector<std::string> addresses;
    std::vector<uint32_t> sorted;
  };
  std::vector<std::vector<uint32_t>> rings;
  std::vector<RingInputs> ring_inputs;     // parallel to rings
  std::vector<MemberOrder> member_orders;  // by ring index, as rings
  uint64_t rings_reused = 0;               // builds that skipped a fill (tests)
};

// Fills every field of `out` except generation, publish_time_ns and checksum,
// which TableWriter::Publish() writes. `out` must be a slot nobody reads.
// `scratch` (optional) is reused for the rings; nullptr = local buffers.
absl::StatusOr<BuildResult> BuildTables(const DesiredState& desired, const SlotAssignment& previous,
                                        const SlotView& out, BuildScratch* scratch = nullptr);

// Recomputes the fingerprint defined above from a built slot (members of
// VIP `vip_index` are sorted, so a member's position is its index + 1). Tools
// use it to check a node's table; tests, that the stored value is right.
uint64_t ComputeVipFingerprint(const SlotView& slot, uint32_t vip_index);

}  // namespace lb

#endif  // LB_CONTROLPLANE_TABLE_BUILDER_H_
