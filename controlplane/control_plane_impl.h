// ControlPlane's state and the transaction machinery its rooms share.
// Private to controlplane/control_plane*.cc.
//
// Rooms:
//   control_plane.cc              public mutations: each builds a candidate
//                                 config and hands it to CommitLocked
//   control_plane_transaction.cc  Create, CommitLocked (candidate -> ids ->
//                                 validate -> prepare -> PERSIST -> publish),
//                                 republish, the query snapshot
//   control_plane_tick.cc         ReportHealth (health-driven republish),
//                                 Tick (drain completion, publish retries)
//   control_plane_queries.cc      snapshots, list/get, stats, Explain, events
//   control_plane_sync.cc         SyncLocked / SyncFromStore: adopt a state
//                                 another control plane stored (etcd)
//   dataplane_view, health_merge, backend_ids, query_snapshot, event_log,
//   explain, config_lookup, algorithms: the pieces they use.
//
// Mutex map (acquire left to right, never the reverse):
//   mu            the transaction mutex: everything marked GUARDED_BY(mu);
//                 held for a whole transaction, publish included; readers
//                 (Explain) take it shared to keep the published slot stable.
//   snapshot_mu   the query snapshot pointer only: taken after mu (the
//                 commit swaps it) or alone (queries copy the pointer).
//   leaves        DataplaneView's mutex (the stats-region attachment),
//                 EventLog's and LatencyRing's: taken alone or innermost;
//                 nothing is called while they are held. Events are
//                 delivered after mu is released (subscribers may query).
#ifndef LB_CONTROLPLANE_CONTROL_PLANE_IMPL_H_
#define LB_CONTROLPLANE_CONTROL_PLANE_IMPL_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/clock.h"
#include "controlplane/config_lookup.h"
#include "controlplane/control_plane.h"
#include "controlplane/dataplane_view.h"
#include "controlplane/event_log.h"
#include "controlplane/health_merge.h"
#include "controlplane/query_snapshot.h"

namespace lb {

// A stored shared health document as a HealthMap (by backend id).
HealthMap SharedHealthMap(const v1::SharedHealth& doc);

struct ControlPlane::Impl {
  explicit Impl(ControlPlaneOptions o);

  const ControlPlaneOptions options;
  std::unique_ptr<Store> store;  // set once by Create
  const std::shared_ptr<const DataplaneView> view;
  EventLog events;
  LatencyRing latencies;

  // The table region, for readers that must not wait for a transaction
  // (metrics): set once by Create, before the ControlPlane is shared. Only
  // the published slot is read through it, as an lcore reads it.
  const TableWriter* tables = nullptr;

  // --- transaction state ---
  mutable absl::Mutex mu;
  std::optional<Publisher> publisher ABSL_GUARDED_BY(mu);
  std::shared_ptr<const v1::Config> config ABSL_GUARDED_BY(mu) = std::make_shared<v1::Config>();
  DesiredState desired ABSL_GUARDED_BY(mu);  // config, validated (ids filled)
  HealthMap health ABSL_GUARDED_BY(mu);      // this node's checker (pruned at commit)
  // options.shared_health: the leader's document as stored (not pruned: it
  // may name a backend this node has not adopted yet), its writer and term.
  HealthMap shared_health ABSL_GUARDED_BY(mu);
  std::string shared_leader ABSL_GUARDED_BY(mu);
  int64_t shared_term ABSL_GUARDED_BY(mu) = 0;
  std::function<void()> on_local_health_change ABSL_GUARDED_BY(mu);
  BuildResult last_build ABSL_GUARDED_BY(mu);
  bool republish_pending ABSL_GUARDED_BY(mu) = false;
  std::vector<uint32_t> stuck_lcores ABSL_GUARDED_BY(mu);
  double last_publish_ms ABSL_GUARDED_BY(mu) = 0;
  std::atomic<uint64_t> ticket_key_rotations{0};  // RotateL7TicketKeys stored
  // After a rotation the store refused: no new attempt by Tick before this
  // (SteadyNs), so an unreachable etcd costs one event per 5 s, not per tick.
  std::atomic<int64_t> ticket_key_retry_ns{0};

  // --- the query snapshot ---
  mutable absl::Mutex snapshot_mu ABSL_ACQUIRED_AFTER(mu);
  std::shared_ptr<const QuerySnapshot> snapshot ABSL_GUARDED_BY(snapshot_mu) =
      std::make_shared<QuerySnapshot>();
  // ControlPlane::SetL7Health's; with snapshot_mu, so WaitL7Config wakes on it.
  v1::L7Health l7_health ABSL_GUARDED_BY(snapshot_mu);

  std::shared_ptr<const QuerySnapshot> GetSnapshot() const;
  void UpdateSnapshotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- the dataplane, for the publish path ---
  // Can a publish reclaim its slot right now? (false = an lcore still holds
  // it; Tick tries again instead of blocking for reclaim_timeout.)
  bool ReclaimPossibleNow() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Waits (bounded by observe_timeout_ns) until every live lcore observed
  // `generation`; returns when that happened (monotonic ns).
  uint64_t WaitObserved(uint64_t generation) const;

  // The health the tables are built from for config `c` (validated as `d`):
  // `local` (already pruned for c), or with options.shared_health the
  // leader's document pruned for c.
  HealthMap PublishHealth(const HealthMap& local, const v1::Config& c, const DesiredState& d) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- publishing (control_plane_transaction.cc) ---
  absl::StatusOr<PublishReport> PrepareLocked(const DesiredState& effective,
                                              std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::StatusOr<PublishReport> PrepareEffective(const DesiredState& d, const HealthMap& h,
                                                 std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::StatusOr<PublishReport> CommitPublishLocked(PublishReport r, uint64_t t0_ns,
                                                    std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::StatusOr<PublishReport> PublishEffective(const DesiredState& d, const HealthMap& h,
                                                 uint64_t t0_ns, std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // kUnchanged: the caller found the change to be a no-op (nothing to do).
  enum class CommitMode { kChanged, kUnchanged, kAlways };
  // The transaction (control_plane.h): ids -> validate -> effective ->
  // prepare -> save -> publish -> commit.
  absl::Status CommitLocked(v1::Config candidate, uint64_t t0_ns, const Renames& renames,
                            CommitMode mode, std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Publishes the committed state again (health change, retry): no version
  // bump, nothing stored.
  absl::Status RepublishLocked(uint64_t t0_ns, std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Start-up (Create): publishes what the store holds, else the bootstrap,
  // else an empty state.
  absl::Status StartLocked(std::optional<v1::Config> stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Adopts what the store holds when it differs from the committed version
  // (another control plane wrote it): validate, publish, commit in memory;
  // nothing is stored. A stored state that does not validate here is
  // refused (FailedPrecondition) and the running one kept.
  // (control_plane_sync.cc)
  absl::Status SyncLocked(uint64_t t0_ns, std::vector<v1::Event>* evs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // How often a change that lost the store's compare-and-swap to another
  // control plane is retried on the fresh state before Aborted is returned.
  // Each lost race means another writer succeeded (lock-free progress), so
  // only a node that keeps losing to a busy peer ever sees Aborted (409).
  static constexpr int kStoreConflictRetries = 50;

  // Runs `fn` under mu, then delivers its events (and a "refused" event
  // when it failed) without mu. When the store refused the write because
  // another control plane wrote first (Aborted), loads that state and runs
  // `fn` again on it (fn builds its candidate from `config`), up to
  // kStoreConflictRetries times.
  template <typename T>
  absl::StatusOr<T> Run(const char* what,
                        const std::function<absl::StatusOr<T>(std::vector<v1::Event>*)>& fn) {
    std::vector<v1::Event> evs;
    absl::StatusOr<T> r;
    {
      absl::MutexLock l(&mu);
      for (int attempt = 0;; ++attempt) {
        r = fn(&evs);
        if (r.ok() || r.status().code() != absl::StatusCode::kAborted ||
            attempt == kStoreConflictRetries) {
          break;
        }
        if (absl::Status st = SyncLocked(MonotonicNs(), &evs); !st.ok()) {
          r = st;
          break;
        }
      }
    }
    if (!r.ok()) {
      evs.push_back(MakeEvent("refused", absl::StrCat(what, ": ", r.status().ToString())));
    }
    events.Emit(evs);
    return r;
  }
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_CONTROL_PLANE_IMPL_H_
