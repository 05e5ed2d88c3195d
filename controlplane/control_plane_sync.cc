// The store-sync room: a state written by another control plane (several
// control planes on one etcd prefix, etcd_store.h) becomes this one's
// committed and published state.
//
//   store watch fires -> SyncFromStore -> Load -> validate -> prepare ->
//   publish -> commit in memory (nothing stored: it is the stored state)
//
// Also the retry path of a change that lost the store's compare-and-swap
// (Impl::Run): the fresh state is adopted first, then the change is rebuilt
// on it.
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "controlplane/control_plane_impl.h"
#include "glog/logging.h"

namespace lb {

absl::Status ControlPlane::Impl::SyncLocked(uint64_t t0_ns, std::vector<v1::Event>* evs) {
  auto loaded = store->Load();
  if (!loaded.ok()) return loaded.status();
  if (!loaded->has_value() || (*loaded)->version() == config->version()) {
    return absl::OkStatus();
  }
  v1::Config stored = **std::move(loaded);
  auto d = ValidateConfig(stored, options.publisher.caps, nullptr);
  if (!d.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("stored state (", store->Describe(), ", version ", stored.version(),
                     ") does not validate on this node: ", d.status().message(),
                     "; keeping version ", config->version()));
  }
  const uint64_t from = config->version();
  HealthMap next_health = PrunedHealth(health, stored, *d);
  auto prepared = PrepareEffective(*d, PublishHealth(next_health, stored, *d), evs);
  config = std::make_shared<const v1::Config>(std::move(stored));
  desired = *std::move(d);
  health = std::move(next_health);
  if (prepared.ok()) {
    auto published = CommitPublishLocked(*std::move(prepared), t0_ns, evs);
    republish_pending = !published.ok();
  } else {
    // An lcore holds the slot: the state is adopted, Tick publishes it.
    republish_pending = true;
  }
  UpdateSnapshotLocked();
  v1::Event e = MakeEvent("store_sync", absl::StrCat("adopted version ", config->version(),
                                                     " (was ", from, ") from ", store->Describe()));
  e.set_generation(publisher->published_generation());
  evs->push_back(std::move(e));
  return absl::OkStatus();
}

absl::Status ControlPlane::SyncFromStore() {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  absl::StatusOr<bool> r =
      m.Run<bool>("store sync", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<bool> {
        absl::Status st = m.SyncLocked(t0, ev);
        if (!st.ok()) return st;
        return true;
      });
  if (!r.ok()) {
    LOG(WARNING) << "store sync: " << r.status().message() << "; serving version " << version()
                 << " at generation " << generation();
  }
  return r.status();
}

std::string ControlPlane::StoreName() const { return impl_->store->Describe(); }

StoreHealth ControlPlane::StoreStatus() const { return impl_->store->Health(); }

void ControlPlane::WatchStore() {
  impl_->store->Watch([this] { (void)SyncFromStore(); });
}

}  // namespace lb
