// Explain: which backend the published table gives a 5-tuple, computed as
// the dataplane computes it (hash-based algorithms), or the candidates and
// the per-lcore state the pick depends on (the other algorithms). The
// dataplane's connection tables and sticky-session state are not
// consulted; the reason says so.
//
// Errors: InvalidArgument naming the request field, NotFound when no VIP
// matches, FailedPrecondition before the first publish.
// Threads: any, while the caller keeps `slot` from being rewritten (the
// ControlPlane holds its transaction mutex as a reader).
#ifndef LB_CONTROLPLANE_EXPLAIN_H_
#define LB_CONTROLPLANE_EXPLAIN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/config.pb.h"
#include "lib/flow_hash.h"
#include "lib/shm_region.h"

namespace lb {

// The ring pick of the dataplane for `key` in VIP `vip` of `slot`: the
// backend slot (0 = none active there, the packet is dropped) and how it was
// found. The one copy of the Worker's hash-and-pick in the control plane;
// it moves to lib/ (one pick for the Worker and for Explain).
struct RingPick {
  uint32_t slot = 0;
  std::string how;  // "maglev ring[12] of 65537 (5-tuple hash 00ab...)"
};
RingPick PickFromRing(const SlotView& slot, int vip, FlowKey key);

// `generation` is the published generation (0 = none yet); `config` the
// committed config (for the VIP's pool settings). `conn_prefix` (the stats
// region's path; "" = none): the dataplane's connection tables
// <conn_prefix>.conn.<lcore> (lib/conn_table_shm.h) are mapped read-only and
// the flow looked up in each (ConnTable::Peek); a pinned flow is answered
// with its lcore and backend, else the pick says what a new flow would get.
absl::StatusOr<v1::ExplainResponse> ExplainFlow(const v1::ExplainRequest& req, const SlotView& slot,
                                                uint64_t generation, const v1::Config& config,
                                                const std::string& conn_prefix = "");

}  // namespace lb

#endif  // LB_CONTROLPLANE_EXPLAIN_H_
