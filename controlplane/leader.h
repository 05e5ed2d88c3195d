// Leader election among the control planes on one etcd prefix, and the
// shared health document (docs/ARCHITECTURE.md, "Whose health view counts").
//
// Keys (beside the store's <prefix>/state, etcd_store.h):
//   <prefix>/leader  value = the leader's node name, attached to its lease:
//                    it disappears when the lease expires (the leader died
//                    or lost etcd for TTL) or is revoked (clean stop)
//   <prefix>/health  lb.v1.SharedHealth (shared_health.h): the leader's
//                    health verdicts, its name and term
//
// Election: each node holds a lease (LeaseGrant with --etcd_lease_ttl_s,
// renewed every TTL/3) and campaigns with one Txn: "if CreateRevision(
// leader) == 0, put leader = my name with my lease". The winner's term is
// the key's create revision. Everyone watches the key; a DELETE makes every
// node campaign again, so a new leader follows the old lease's expiry by
// one round trip.
//
// Fencing: the health document is written by a Txn "if Lease(leader) == my
// lease, put health". A node that lost its lease (or a newer leader took
// the key) cannot write, whatever it believes. It also stops believing:
// a leader steps down locally once TTL has passed since the send time of
// its last answered keep-alive, which is no later than etcd's own expiry,
// so two nodes never both report lb_cp_leader 1 (the old one steps down
// before etcd can elect another).
//
// Health: the leader writes its own checker's view (hooks.local_view) when
// it is elected and whenever LocalHealthChanged() is called; every node,
// the leader included, hands each stored document to hooks.on_shared_health
// (from a Range at watch start, then from watch events), so all nodes build
// their tables from the same bytes. A document Decode refuses is ignored
// (the last one stays) and counted.
//
// Several members (etcd_client.h): a call that got no answer from a member
// is retried (after 200 ms) on the next one; the watcher takes the next
// member for each new stream. The lease lives in the cluster, so a
// keep-alive through another member renews it.
//
// etcd unreachable: calls fail after timeout_ms; the lease is renewed again
// once etcd answers (or a new one granted if it expired), the watch retries
// every 200 ms; the last adopted document stays in force meanwhile.
//
// Threads: two of its own (the elector: lease, campaign, writes; the
// watcher). The hooks run on them, never concurrently with each other for
// the same hook. Public methods: any thread.
#ifndef LB_CONTROLPLANE_LEADER_H_
#define LB_CONTROLPLANE_LEADER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/etcd_client.h"
#include "controlplane/store_url.h"
#include "lb/v1/cluster.pb.h"

namespace lb {

struct LeaderOptions {
  StoreUrl url;           // kind kEtcd
  EtcdTls tls;            // etcds:// (LoadEtcdTls)
  int timeout_ms = 2000;  // deadline of each etcd call
  int ttl_s = 3;          // lease TTL (etcd raises it to its minimum, 2 s by default)
  std::string node_name;  // stored as the leader key's value, shown in metrics and logs
};

struct LeaderHooks {
  // The leader's own verdicts (backends only; leader, term and time are
  // filled in here).
  std::function<v1::SharedHealth()> local_view;
  // A stored document (on every node, the writer included).
  std::function<void(const v1::SharedHealth&)> on_shared_health;
};

struct LeaderStatus {
  bool leader = false;                 // this node holds <prefix>/leader with its live lease
  std::string leader_name;             // who holds it, as last seen ("" = nobody)
  int64_t term = 0;                    // that holder's term (create revision)
  uint64_t leader_changes = 0;         // new terms this node has seen
  uint64_t health_writes = 0;          // documents this node stored as leader
  uint64_t health_write_failures = 0;  // no answer, or the fence refused
  uint64_t health_refused = 0;         // stored documents that did not decode
};

class LeaderElection {
 public:
  virtual ~LeaderElection() = default;
  // Wakes the elector: when leader, the local view is written (coalesced).
  virtual void LocalHealthChanged() = 0;
  virtual LeaderStatus Status() const = 0;
  // Stops both threads and revokes the lease (the leader key goes at once,
  // so another node takes over without waiting for the TTL). Idempotent.
  virtual void Stop() = 0;
};

// The document stored under <prefix>/health now (nullopt: none yet), for
// the first publish of a starting control plane. Unavailable when etcd does
// not answer within timeout_ms; DataLoss for bytes DecodeSharedHealth
// refuses.
absl::StatusOr<std::optional<v1::SharedHealth>> LoadSharedHealth(const StoreUrl& url,
                                                                 const EtcdTls& tls,
                                                                 int timeout_ms);

// Starts the threads; InvalidArgument for a bad option (never fails on an
// unreachable etcd: it keeps trying).
absl::StatusOr<std::unique_ptr<LeaderElection>> StartLeaderElection(const LeaderOptions& options,
                                                                    LeaderHooks hooks);

}  // namespace lb

#endif  // LB_CONTROLPLANE_LEADER_H_
