// What queries read: an immutable snapshot of the committed state, taken
// under the transaction mutex at every commit or health change and swapped
// in as one pointer, so that a query never waits for a transaction in
// progress. Live counters are not in the snapshot: they come from the
// DataplaneView at query time, indexed by the snapshot's table slots.
//
// Snapshots are immutable once published; the functions below are pure
// apart from reading the view, and run on any thread.
#ifndef LB_CONTROLPLANE_QUERY_SNAPSHOT_H_
#define LB_CONTROLPLANE_QUERY_SNAPSHOT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/dataplane_view.h"
#include "controlplane/health_merge.h"
#include "controlplane/table_builder.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/config.pb.h"

namespace lb {

struct QuerySnapshot {
  std::shared_ptr<const v1::Config> config = std::make_shared<const v1::Config>();
  uint64_t generation = 0;
  std::vector<VipSummary> vips;          // of the last build, config order
  std::map<uint32_t, uint32_t> slot_of;  // backend id -> table slot
  HealthMap health;                      // this node's checker (BackendHealthOf)
  HealthMap published_health;            // what the tables apply (BackendStatusOf): the
                                         // same, or the leader's shared document
  std::vector<uint32_t> stuck_lcores;
  double last_publish_ms = 0;
};

// The table slot of every backend in use in `build`, by backend id.
std::map<uint32_t, uint32_t> SlotsOf(const BuildResult& build);

// Live flows of backend `id` (0 when it is not in the tables).
uint64_t LiveFlows(const QuerySnapshot& s, const DataplaneView& view, uint32_t id);

v1::BackendStatus BackendStatusOf(const QuerySnapshot& s, const DataplaneView& view,
                                  const std::string& pool, const v1::Backend& b);
v1::VipStatus VipStatusOf(const QuerySnapshot& s, const v1::Vip& v);
v1::BackendHealth BackendHealthOf(const QuerySnapshot& s, const DataplaneView& view, uint32_t id);

}  // namespace lb

#endif  // LB_CONTROLPLANE_QUERY_SNAPSHOT_H_
