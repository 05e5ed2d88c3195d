// The transaction room: start-up, CommitLocked and the publish steps.
//
//   candidate -> ids -> validate -> effective (health) -> prepare the slot
//   -> PERSIST -> publish (commit the slot) -> wait for the lcores
//
// Persist first, publish second: a change the store refuses was only ever
// written into a slot no generation names, so it never reaches an lcore
// (publisher.h, Prepare/Commit). A refused change leaves the published
// generation, the stored bytes and the committed config as they were.
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "controlplane/backend_ids.h"
#include "controlplane/clock.h"
#include "controlplane/control_plane_impl.h"
#include "lib/maglev.h"

namespace lb {

ControlPlane::Impl::Impl(ControlPlaneOptions o)
    : options(std::move(o)),
      view(std::make_shared<const DataplaneView>(options.publisher.stats_path,
                                                 options.publisher.stuck_after_ns)),
      latencies(options.latency_samples) {}

std::shared_ptr<const QuerySnapshot> ControlPlane::Impl::GetSnapshot() const {
  absl::MutexLock l(&snapshot_mu);
  return snapshot;
}

void ControlPlane::Impl::UpdateSnapshotLocked() {
  auto s = std::make_shared<QuerySnapshot>();
  s->config = config;
  s->generation = publisher->published_generation();
  s->vips = last_build.vips;
  s->slot_of = SlotsOf(last_build);
  s->health = health;
  s->published_health = PublishHealth(health, *config, desired);
  s->stuck_lcores = stuck_lcores;
  s->last_publish_ms = last_publish_ms;
  absl::MutexLock l(&snapshot_mu);
  snapshot = std::move(s);
}

HealthMap ControlPlane::Impl::PublishHealth(const HealthMap& local, const v1::Config& c,
                                            const DesiredState& d) const {
  if (!options.shared_health) return local;
  return PrunedHealth(shared_health, c, d);
}

bool ControlPlane::Impl::ReclaimPossibleNow() const {
  // The publisher knows the refused-generation recovery (a refusal makes the
  // next Prepare fail at once and arm it), so a deferred publish is retried.
  return publisher->SlotFreeNow();
}

uint64_t ControlPlane::Impl::WaitObserved(uint64_t generation) const {
  const uint64_t start = MonotonicNs();
  uint64_t waited = 0;
  view->WaitReclaim(generation, options.observe_timeout_ns, &waited);
  return start + waited;
}

absl::StatusOr<PublishReport> ControlPlane::Impl::PrepareLocked(const DesiredState& effective,
                                                                std::vector<v1::Event>* evs) {
  auto r = publisher->Prepare(effective);
  if (r.ok() || r.status().code() != absl::StatusCode::kFailedPrecondition) return r;
  // The lcores that hold the slot the next publish needs, with the stuck ones.
  const uint64_t g = publisher->published_generation();
  stuck_lcores.clear();
  if (g + 1 >= kNumTableSlots) {
    stuck_lcores = view->CheckReclaim(g + 1 - kNumTableSlots + 1).StuckLcores();
  }
  if (!stuck_lcores.empty()) {
    evs->push_back(
        MakeEvent("stuck_lcore", absl::StrCat("lcore(s) ", absl::StrJoin(stuck_lcores, ", "),
                                              " stuck: ", r.status().message())));
  }
  return r.status();
}

// Prepares `d` with health applied; copies the state only when some backend
// is unhealthy (the common case prepares `d` itself).
absl::StatusOr<PublishReport> ControlPlane::Impl::PrepareEffective(const DesiredState& d,
                                                                   const HealthMap& h,
                                                                   std::vector<v1::Event>* evs) {
  if (!AnyUnhealthy(h)) return PrepareLocked(d, evs);
  return PrepareLocked(Effective(d, h), evs);
}

// Publisher::Commit of the prepared slot, then what follows every publish:
// latencies, the wait for the lcores, the publish event.
absl::StatusOr<PublishReport> ControlPlane::Impl::CommitPublishLocked(PublishReport r,
                                                                      uint64_t t0_ns,
                                                                      std::vector<v1::Event>* evs) {
  if (auto g = publisher->Commit(); !g.ok()) return g.status();
  const uint64_t t1 = MonotonicNs();
  stuck_lcores.clear();
  const uint64_t t2 = WaitObserved(r.generation);
  last_publish_ms = NsToMs(t1 - t0_ns);
  r.observe_ms = NsToMs(t2 - t1);
  const double lcores_ms = NsToMs(t2 - t0_ns);
  latencies.Record(last_publish_ms, lcores_ms);
  if (options.on_publish_latency) options.on_publish_latency(last_publish_ms, lcores_ms);
  last_build = r.build;
  if (options.on_publish) options.on_publish(r);
  v1::Event e = MakeEvent(
      "publish", absl::StrFormat("generation %u published: %u vips, %u backends, build %.3f ms, "
                                 "wait %.3f ms, api to lcores %.3f ms",
                                 r.generation, r.build.vips.size(), r.build.backends_in_use,
                                 r.build_ms, r.wait_ms, lcores_ms));
  e.set_generation(r.generation);
  evs->push_back(std::move(e));
  return r;
}

absl::StatusOr<PublishReport> ControlPlane::Impl::PublishEffective(const DesiredState& d,
                                                                   const HealthMap& h,
                                                                   uint64_t t0_ns,
                                                                   std::vector<v1::Event>* evs) {
  auto r = PrepareEffective(d, h, evs);
  if (!r.ok()) return r.status();
  return CommitPublishLocked(*std::move(r), t0_ns, evs);
}

absl::Status ControlPlane::Impl::CommitLocked(v1::Config candidate, uint64_t t0_ns,
                                              const Renames& renames, CommitMode mode,
                                              std::vector<v1::Event>* evs) {
  if (mode == CommitMode::kUnchanged) return absl::OkStatus();
  AssignMissingIds(*config, &candidate);
  candidate.set_version(config->version());
  std::vector<std::string> warnings;
  const uint64_t t_validate = MonotonicNs();
  auto d = ValidateConfig(candidate, options.publisher.caps, &warnings);
  if (!d.ok()) return Rename(d.status(), renames);
  const uint64_t t_validated = MonotonicNs();
  HealthMap next_health = PrunedHealth(health, candidate, *d);
  auto prepared = PrepareEffective(*d, PublishHealth(next_health, candidate, *d), evs);
  if (!prepared.ok()) {
    UpdateSnapshotLocked();  // stuck lcores
    return prepared.status();
  }
  prepared->before_validate_ms = NsToMs(t_validate - t0_ns);
  prepared->validate_ms = NsToMs(t_validated - t_validate);
  candidate.set_version(config->version() + 1);
  const uint64_t t_save = MonotonicNs();
  absl::Status saved = store->Save(candidate);
  prepared->save_ms = NsToMs(MonotonicNs() - t_save);
  if (absl::Status st = std::move(saved); !st.ok()) {
    publisher->Abandon();
    return absl::Status(st.code(), absl::StrCat("change not stored in ", store->Describe(), ": ",
                                                st.message(), "; nothing was published"));
  }
  config = std::make_shared<const v1::Config>(std::move(candidate));
  desired = *std::move(d);
  health = std::move(next_health);
  auto published = CommitPublishLocked(*std::move(prepared), t0_ns, evs);
  // Stored but not published cannot happen (the slot is prepared under the
  // same mutex); if it did, Tick publishes the stored state.
  republish_pending = !published.ok();
  UpdateSnapshotLocked();
  return absl::OkStatus();
}

absl::Status ControlPlane::Impl::RepublishLocked(uint64_t t0_ns, std::vector<v1::Event>* evs) {
  auto r = PublishEffective(desired, PublishHealth(health, *config, desired), t0_ns, evs);
  republish_pending = !r.ok();
  UpdateSnapshotLocked();
  return r.status();
}

absl::Status ControlPlane::Impl::StartLocked(std::optional<v1::Config> stored) {
  std::vector<v1::Event> evs;  // nobody subscribed yet
  const uint64_t t0 = MonotonicNs();
  if (stored.has_value()) {
    // The stored state was accepted once; it must still validate (the
    // capacities may have changed) or we refuse to forward it.
    auto d = ValidateConfig(*stored, options.publisher.caps, nullptr);
    if (!d.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("stored state (", store->Describe(), ", version ", stored->version(),
                       ") no longer validates: ", d.status().message()));
    }
    config = std::make_shared<const v1::Config>(*stored);
    desired = *std::move(d);
    auto r = PublishEffective(desired, PublishHealth(health, *config, desired), t0, &evs);
    if (!r.ok()) {
      if (r.status().code() != absl::StatusCode::kFailedPrecondition) return r.status();
      // An lcore holds the slot: keep the tables as they are (they hold
      // what the previous run published) and let Tick retry.
      republish_pending = true;
    } else {
      // Entries the stored state carried with id 0 (none, normally).
      v1::Config filled = *config;
      FillAssignedIds(&filled, &desired, r->build.assignment);
      config = std::make_shared<const v1::Config>(std::move(filled));
    }
    UpdateSnapshotLocked();
    return absl::OkStatus();
  }
  if (options.bootstrap.has_value()) {
    v1::Config boot = *options.bootstrap;
    boot.clear_version();
    boot.clear_l7();  // managed by SetL7Config only (control_plane.h)
    boot.clear_l7_generation();
    boot.clear_l7_ticket_keys();
    return CommitLocked(std::move(boot), t0, {}, CommitMode::kAlways, &evs);
  }
  // Nothing stored, no bootstrap: an empty state (no VIPs), not stored
  // until the first change. Its ring size is moot (no VIP has a ring); pick
  // one the region holds so that a small --max_ring_size can start empty.
  desired.ring_size = kDefaultRingSize;
  while (desired.ring_size > options.publisher.caps.max_ring_size ||
         !ValidateMaglevTableSize(desired.ring_size).ok()) {
    if (--desired.ring_size < 2) return absl::InvalidArgumentError("max_ring_size too small");
  }
  auto r = PublishEffective(desired, health, t0, &evs);
  if (!r.ok()) return r.status();
  UpdateSnapshotLocked();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ControlPlane>> ControlPlane::Create(ControlPlaneOptions options,
                                                                   std::unique_ptr<Store> store) {
  if (store == nullptr) return absl::InvalidArgumentError("ControlPlane::Create: no store");
  std::unique_ptr<ControlPlane> cp(new ControlPlane(std::move(options)));
  Impl& m = *cp->impl_;
  m.store = std::move(store);
  auto loaded = m.store->Load();
  if (!loaded.ok()) return loaded.status();
  auto publisher = Publisher::Open(m.options.publisher, m.view);
  if (!publisher.ok()) return publisher.status();
  absl::MutexLock l(&m.mu);
  if (m.options.shared_health && m.options.initial_shared_health.has_value()) {
    // The first generation already applies the leader's verdicts.
    m.shared_health = SharedHealthMap(*m.options.initial_shared_health);
    m.shared_leader = m.options.initial_shared_health->leader();
    m.shared_term = m.options.initial_shared_health->term();
  }
  m.publisher.emplace(*std::move(publisher));
  m.tables = &m.publisher->writer();
  absl::Status st = m.StartLocked(*std::move(loaded));
  if (st.code() == absl::StatusCode::kAborted) {
    // Another control plane stored its bootstrap first: start from that.
    loaded = m.store->Load();
    if (!loaded.ok()) return loaded.status();
    st = m.StartLocked(*std::move(loaded));
  }
  if (!st.ok()) return st;
  return cp;
}

}  // namespace lb
