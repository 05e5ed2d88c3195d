// Id assignment for backends and VIPs. Ids are stored with the config, so
// the API can return them and restarts keep them.
//   - FreeIds hands out the ids missing from a sorted set, lowest first, in
//     one pass however many are taken (amortised O(1) per id; a scan from 1
//     per id made a pool of N new backends cost N^2 under the transaction
//     mutex).
//   - AssignMissingIds gives entries configured with id 0 the id their
//     identity has now, else the lowest free one: O(n log n) in the config.
//   - FillAssignedIds copies ids a table build assigned back into the config.
// Pure functions; the caller serialises (the transaction mutex).
#ifndef LB_CONTROLPLANE_BACKEND_IDS_H_
#define LB_CONTROLPLANE_BACKEND_IDS_H_

#include <cstdint>
#include <set>

#include "controlplane/config.h"
#include "controlplane/table_builder.h"
#include "lb/v1/config.pb.h"

namespace lb {

// `used` must outlive the FreeIds (it is walked, not copied).
class FreeIds {
 public:
  explicit FreeIds(const std::set<uint32_t>& used) : it_(used.begin()), end_(used.end()) {}
  uint32_t Next() {
    while (it_ != end_ && *it_ < next_) ++it_;
    while (it_ != end_ && *it_ == next_) {
      ++next_;
      ++it_;
    }
    return next_++;
  }

 private:
  std::set<uint32_t>::const_iterator it_, end_;
  uint32_t next_ = 1;
};

// Every non-zero backend id of `c`.
std::set<uint32_t> UsedBackendIds(const v1::Config& c);

// Gives every backend and VIP of `c` configured with id 0 an id: the one its
// identity (pool + BackendIdentity, resp. VipKeyOf) has in `current` when no
// other entry claims it, else the lowest free one, handed out in identity
// order (two nodes given the same entities in another order number them
// alike). Explicit ids are left to validation (duplicates are refused there,
// naming the field).
void AssignMissingIds(const v1::Config& current, v1::Config* c);

// Writes the ids the build assigned into entries configured with id 0, so
// the stored state carries them (REST returns them; restarts keep them).
void FillAssignedIds(v1::Config* c, DesiredState* d, const SlotAssignment& a);

}  // namespace lb

#endif  // LB_CONTROLPLANE_BACKEND_IDS_H_
