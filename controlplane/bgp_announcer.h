// Routes that follow health: the VIP announcer for BIRD 2 (docs/OPERATIONS.md
// "ECMP with BGP").
//
// Every poll period the announcer decides which VIP prefixes this node
// should announce: a VIP address (/32 or /128) is announced while
//   - the local dataplane is alive: its process runs, an lcore is online and
//     every online lcore's heartbeat in the stats region is younger than
//     heartbeat_max_age (DataplaneView::Liveness), and
//   - at least one VIP on that address has an active (healthy, not
//     draining) backend in the published table (VipStatus::active_members),
//   - and the node is not drained (the drain file does not exist).
// Otherwise it is withdrawn. When the set changes it rewrites the BIRD
// include file (a `protocol static` per family whose routes are the
// announced prefixes, written to a temporary file and renamed) and asks the
// running BIRD to reload: `birdc -s SOCKET configure`. BIRD withdraws or
// announces over its BGP sessions at once; BFD (in the BIRD configs) covers a
// node that dies with its exception path.
//
// Why an include file and `configure`: it is BIRD's own interface for
// static routes, survives a BIRD restart (BIRD reads the file at start), and
// needs nothing but birdc; BIRD 2 has no RPC to add a route, and learning
// routes from a kernel table would make the announcer edit the node's
// routing table. A reconfigure of a config this small takes a few ms.
//
// A failed `configure` (BIRD not running yet, a refused file) is logged and
// retried every poll period until BIRD takes the file.
#ifndef LB_CONTROLPLANE_BGP_ANNOUNCER_H_
#define LB_CONTROLPLANE_BGP_ANNOUNCER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "controlplane/dataplane_view.h"
#include "lb/v1/admin.pb.h"

namespace lb {

struct BgpAnnouncerOptions {
  std::string routes_file;  // the BIRD include file the announcer owns
  std::string bird_socket;  // birdc -s
  std::string birdc = "birdc";
  std::string drain_file;            // exists = node drained: withdraw everything
  std::string protocol = "lb_vips";  // static protocol names: <p>4, <p>6
  uint64_t heartbeat_max_age_ns = 200'000'000;
  uint64_t poll_ns = 50'000'000;
};

// The prefixes to announce, sorted ("198.51.100.10/32", "2001:db8::1/128").
struct Announcement {
  std::set<std::string> prefixes;
  std::string why_none;  // why nothing is announced ("dataplane: process 12 gone", "drained")
};

// The decision above, from its inputs (pure, for tests).
Announcement DecideAnnouncement(bool dataplane_alive, const std::string& dataplane_why,
                                bool drained, const std::vector<v1::VipStatus>& vips);
// The include file for `a` (both static protocols, always present so that
// the BIRD config that includes it and exports `proto = "<p>4"` stays valid).
std::string RenderBirdRoutes(const std::string& protocol, const std::set<std::string>& prefixes);

class BgpAnnouncer {
 public:
  using VipSource = std::function<std::vector<v1::VipStatus>()>;
  // `view` outlives the announcer.
  BgpAnnouncer(BgpAnnouncerOptions options, VipSource vips, const DataplaneView* view);
  ~BgpAnnouncer();

  // Checks the options (each error names its flag) and starts the thread.
  absl::Status Start();
  // Stops the thread; with `withdraw`, announces nothing before returning
  // (one configure attempt).
  void Stop(bool withdraw);
  // One poll (the thread calls it; tests may too).
  void Step();

 private:
  // Writes the file and reloads BIRD; true when BIRD took it.
  bool Apply(const std::set<std::string>& prefixes);

  const BgpAnnouncerOptions opt_;
  const VipSource vips_;
  const DataplaneView* const view_;
  bool applied_valid_ = false;
  std::set<std::string> applied_;
  std::string last_why_;
  uint64_t change_seen_ns_ = 0;  // when the current desired set first differed
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_BGP_ANNOUNCER_H_
