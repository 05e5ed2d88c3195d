// The hash a flow to a VIP is pinned and picked by (fragment hashing).
//
// A fragment-tolerant VIP hashes every packet of a flow, fragment or not, on
// src/dst/proto (ports zeroed in the key) so that all fragments of a datagram
// reach the same backend; any other VIP hashes the full 5-tuple and drops
// fragments (kFragment). The Worker (dataplane/l4) and the control plane's
// Explain call this one function, so both name the same backend.
//
// Thread-safety: pure; any thread. Per-packet safe: inline, no allocation.
#ifndef LB_LIB_VIP_FLOW_H_
#define LB_LIB_VIP_FLOW_H_

#include <cstdint>

#include "lib/flow_hash.h"
#include "lib/flow_key.h"
#include "lib/table_format.h"

namespace lb {

// True when the VIP hashes on src/dst/proto and accepts fragments.
inline bool VipHashesFragments(const VipEntry& v) { return (v.flags & kVipFragmentTolerant) != 0; }

// The flow hash for `*key` under `v`. For a fragment-tolerant VIP the ports of
// *key are zeroed first (the key the connection table stores is the hashed
// one), so callers must pass the key they will look up with.
inline uint64_t VipFlowHash(const VipEntry& v, FlowKey* key) {
  if (VipHashesFragments(v)) {
    key->sport = key->dport = 0;
    return HashFlowMode(*key, HashMode::kSrcDstProto);
  }
  return HashFlow(*key);
}

}  // namespace lb

#endif  // LB_LIB_VIP_FLOW_H_
