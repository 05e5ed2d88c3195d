// The L7 room: lb-l7's configuration as part of the desired state.
//
//   SetL7Config: ValidateL7Config (lb-l7's own validator) -> generation
//   check -> candidate = committed config + new l7 -> PERSIST -> commit in
//   memory (the query snapshot; WatchL7Config streams wake on it)
//
// The L4 tables do not depend on the L7 document, so nothing is published:
// an L7 change never costs the lcores a table swap. Several control planes
// on one etcd prefix: a lost compare-and-swap is retried on the fresh state
// (Impl::Run), where the generation check runs again, so two concurrent
// "read, edit, set" clients cannot overwrite each other.
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "controlplane/control_plane_impl.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/l7_config.h"

namespace lb {
namespace {

v1::L7ConfigResponse ResponseOf(const v1::Config& c) {
  v1::L7ConfigResponse r;
  *r.mutable_config() = c.l7();
  r.set_generation(c.l7_generation());
  return r;
}

}  // namespace

absl::StatusOr<v1::L7ConfigResponse> ControlPlane::SetL7Config(const v1::L7Config& l7,
                                                               uint64_t expected_generation) {
  // Pure and possibly slow (regexes, Maglev rings): outside the mutex.
  if (auto rc = l7::ValidateL7Config(l7, "config."); !rc.ok()) return rc.status();
  Impl& m = *impl_;
  return m.Run<v1::L7ConfigResponse>(
      "SetL7Config", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::L7ConfigResponse> {
        const uint64_t current = m.config->l7_generation();
        if (expected_generation != 0 && expected_generation != current) {
          return absl::FailedPreconditionError(absl::StrCat(
              "expected_generation: ", expected_generation, " is not the current L7 generation ",
              current, " (changed meanwhile: get it again, edit, set)"));
        }
        if (current != 0 &&
            google::protobuf::util::MessageDifferencer::Equals(m.config->l7(), l7)) {
          return ResponseOf(*m.config);  // nothing changes: no generation, no store write
        }
        v1::Config candidate = *m.config;
        *candidate.mutable_l7() = l7;
        candidate.set_l7_generation(current + 1);
        candidate.set_version(m.config->version() + 1);
        if (absl::Status st = m.store->Save(candidate); !st.ok()) {
          return absl::Status(st.code(),
                              absl::StrCat("L7 config not stored in ", m.store->Describe(), ": ",
                                           st.message(), "; nothing changed"));
        }
        m.config = std::make_shared<const v1::Config>(std::move(candidate));
        m.UpdateSnapshotLocked();
        v1::Event e =
            MakeEvent("l7_config", absl::StrCat("L7 generation ", current + 1, " stored (version ",
                                                m.config->version(), ")"));
        ev->push_back(std::move(e));
        return ResponseOf(*m.config);
      });
}

v1::L7ConfigResponse ControlPlane::GetL7Config() const {
  Impl& m = *impl_;
  absl::MutexLock l(&m.snapshot_mu);
  v1::L7ConfigResponse r = ResponseOf(*m.snapshot->config);
  *r.mutable_health() = m.l7_health;
  return r;
}

void ControlPlane::SetL7Health(v1::L7Health health) {
  Impl& m = *impl_;
  absl::MutexLock l(&m.snapshot_mu);
  if (health.generation() <= m.l7_health.generation()) return;  // an older one, late
  m.l7_health = std::move(health);
}

v1::L7ConfigResponse ControlPlane::WaitL7Config(uint64_t known, absl::Duration timeout,
                                                uint64_t known_health) const {
  Impl& m = *impl_;
  // The snapshot pointer changes under snapshot_mu (UpdateSnapshotLocked);
  // absl::Mutex re-evaluates the condition whenever the mutex is released.
  struct Arg {
    const Impl* m;
    uint64_t known;
    uint64_t known_health;
  } arg{&m, known, known_health};
  absl::MutexLock l(&m.snapshot_mu);
  m.snapshot_mu.AwaitWithTimeout(absl::Condition(
                                     +[](Arg* a) {
                                       return a->m->snapshot->config->l7_generation() != a->known ||
                                              a->m->l7_health.generation() != a->known_health;
                                     },
                                     &arg),
                                 timeout);
  v1::L7ConfigResponse r = ResponseOf(*m.snapshot->config);
  *r.mutable_health() = m.l7_health;
  return r;
}

}  // namespace lb
