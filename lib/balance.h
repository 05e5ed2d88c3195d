// Per-lcore backend selection: the algorithms whose pick is not a function of
// the flow (round robin, smooth weighted round robin, random, least
// connections), and Balancer::Pick, the one entry point the Worker calls for
// a new flow whatever the VIP's algorithm.
//
// Maglev and ip_hash are delegated to lib/backend_pick.h (inline, so the
// default algorithm costs no call); the stateful ones live in balance.cc.
// Every pick returns a member of the VIP's member list (slot.members
// [member_begin, member_begin + member_count)) and then applies the same
// "active backend" check as the consistent algorithms.
//
// Thread-safety: a Balancer belongs to one lcore (its rotation state is that
// lcore's; lcores do not coordinate, as in IPVS). Least connections reads the
// lcore's own BackendCounters::active_flows gauges. Per-packet safe: no
// allocation after Init.
#ifndef LB_LIB_BALANCE_H_
#define LB_LIB_BALANCE_H_

#include <cstdint>
#include <vector>

#include "lib/backend_pick.h"
#include "lib/flow_key.h"
#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace lb {

class Balancer {
 public:
  // Sizes the rotation state for a table region's capacities. `lcore`
  // decorrelates the random streams of different lcores.
  void Init(uint32_t max_vips, uint32_t max_members, uint32_t lcore);
  // Member lists may have changed (a new table generation): every rotation
  // restarts from the first member, every smooth-WRR credit from zero.
  void Restart();

  // The backend for a new flow to `vip` (index into slot.vips), any
  // algorithm. `counters` are this lcore's BackendCounters (least
  // connections). False when the VIP has no members or the chosen slot holds
  // no active backend (the packet drops as no_backend).
  bool Pick(const SlotView& slot, int vip, const FlowKey& key, uint64_t flow_hash,
            const BackendCounters* counters, BackendPick* out) {
    if (IsConsistentAlgorithm(static_cast<Algorithm>(slot.vips[vip].algorithm))) {
      return PickConsistentBackend(slot, vip, key, flow_hash, out);
    }
    return ActiveBackend(slot, PickMember(slot, vip, counters), out);
  }

  // Pick for a new flow that honours max_connections (lib/backend_pick.h
  // BackendLoad): the algorithm's choice when it has room, else (Maglev,
  // ip_hash) the next ring entries, else the next member with room. False
  // with *all_full true when every active member is full (the caller drops
  // the flow as backends_full); false with *all_full false as Pick.
  // `skipped` (optional) receives the full backend the algorithm chose.
  bool PickWithRoom(const SlotView& slot, int vip, const FlowKey& key, uint64_t flow_hash,
                    const BackendLoad& load, BackendPick* out, bool* all_full,
                    uint32_t* skipped = nullptr) {
    if (IsConsistentAlgorithm(static_cast<Algorithm>(slot.vips[vip].algorithm))) {
      return PickConsistentWithRoom(slot, vip, key, flow_hash, load, out, all_full, skipped);
    }
    *all_full = false;
    if (!ActiveBackend(slot, PickMember(slot, vip, load.own), out)) return false;
    if (!BackendFull(slot, out->slot, load)) return true;
    if (skipped != nullptr) *skipped = out->slot;
    if (FirstMemberWithRoom(slot, vip, flow_hash, load, out)) return true;
    *all_full = true;
    return false;
  }

  // The member slot each stateful algorithm chooses (0 when the VIP has no
  // members). They advance this lcore's state for `vip`.
  uint32_t RoundRobin(const SlotView& slot, int vip);
  // nginx's smooth weighted round robin: every member gains its weight, the
  // richest is picked and pays the total; picks interleave over any window.
  uint32_t SmoothWeighted(const SlotView& slot, int vip);
  // Uniform over the members (xorshift64*, per-lcore stream).
  uint32_t Random(const SlotView& slot, int vip);
  // Fewest live flows on this lcore (`counters[slot].active_flows`);
  // weighted: fewest flows / weight, compared without division. Ties go to
  // the earlier member.
  static uint32_t LeastConnections(const SlotView& slot, int vip, const BackendCounters* counters,
                                   bool weighted);

 private:
  uint32_t PickMember(const SlotView& slot, int vip, const BackendCounters* counters);

  std::vector<uint32_t> rr_cursor_;    // [max_vips]
  std::vector<int64_t> swrr_current_;  // [max_members], smooth WRR credits
  uint64_t rng_ = 0;                   // xorshift64* state
};

}  // namespace lb

#endif  // LB_LIB_BALANCE_H_
