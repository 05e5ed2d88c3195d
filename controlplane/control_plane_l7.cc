// The L7 room: lb-l7's configuration as part of the desired state.
//
//   SetL7Config: ValidateL7Config (lb-l7's own validator) -> generation
//   check -> candidate = committed config + new l7 -> PERSIST -> commit in
//   memory (the query snapshot; WatchL7Config streams wake on it)
//
// Certificates' private keys (L7Certificate.key_pem, proto/l7_pem.h): stored
// in the document as sent; every answer of the admin API (ResponseOf)
// shows a "redacted:sha256:<hex>" marker instead, which SetL7Config
// resolves back to the stored key (get, edit, set keeps the key). Only
// WatchL7Config (NodeResponseOf) carries the keys, to lb-l7.
//
// Session ticket keys (ticket_keys.h): the first SetL7Config draws them,
// RotateL7TicketKeys (every Tick) rotates them when due, both stored like
// any change. GetL7Config never shows them; WatchL7Config (L7ConfigForNodes,
// WaitL7Config) carries them to lb-l7 inside each TLS listener.
//
// The L4 tables do not depend on the L7 document, so nothing is published:
// an L7 change never costs the lcores a table swap. Several control planes
// on one etcd prefix: a lost compare-and-swap is retried on the fresh state
// (Impl::Run), where the generation check runs again, so two concurrent
// "read, edit, set" clients cannot overwrite each other.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "controlplane/control_plane_impl.h"
#include "controlplane/ticket_keys.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/l7_config.h"
#include "proto/l7_pem.h"

namespace lb {
namespace {

v1::L7ConfigResponse BaseResponseOf(const v1::Config& c) {
  v1::L7ConfigResponse r;
  *r.mutable_config() = c.l7();
  r.set_generation(c.l7_generation());
  r.set_ticket_key_generation(c.l7_ticket_keys().generation());
  return r;
}

// What the admin API answers: private keys as their redaction markers
// (l7_pem.h), never the key.
v1::L7ConfigResponse ResponseOf(const v1::Config& c) {
  v1::L7ConfigResponse r = BaseResponseOf(c);
  l7::RedactPrivateKeys(r.mutable_config());
  return r;
}

// What lb-l7 gets (WatchL7Config only): the keys and the ticket keys.
v1::L7ConfigResponse NodeResponseOf(const v1::Config& c) {
  v1::L7ConfigResponse r = BaseResponseOf(c);
  InjectTicketKeys(c.l7_ticket_keys(), r.mutable_config());
  return r;
}

int64_t NowUnixS() { return static_cast<int64_t>(NowUnixMs() / 1000); }

// The operator's document must not carry key bytes: the control plane
// draws them (and GetL7Config would otherwise return them).
absl::Status RefuseInlineTicketKeys(const v1::L7Config& l7) {
  for (int i = 0; i < l7.listeners_size(); ++i) {
    if (!l7.listeners(i).tls().session_ticket_keys().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.listeners[", i,
          "].tls.session_ticket_keys: set by the control plane (it generates and rotates the "
          "keys of every node); leave it empty, or name a session_ticket_key_file"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::L7ConfigResponse> ControlPlane::SetL7Config(const v1::L7Config& l7,
                                                               uint64_t expected_generation) {
  // Pure and possibly slow (regexes, Maglev rings): outside the mutex, on
  // the document with its key markers resolved against the snapshot.
  if (absl::Status st = RefuseInlineTicketKeys(l7); !st.ok()) return st;
  Impl& m = *impl_;
  v1::L7Config checked = l7;
  if (absl::Status st = l7::ResolveRedactedKeys(m.GetSnapshot()->config->l7(), "config.", &checked);
      !st.ok()) {
    return st;
  }
  if (auto rc = l7::ValidateL7Config(checked, "config."); !rc.ok()) return rc.status();
  return m.Run<v1::L7ConfigResponse>(
      "SetL7Config", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::L7ConfigResponse> {
        const uint64_t current = m.config->l7_generation();
        if (expected_generation != 0 && expected_generation != current) {
          return absl::FailedPreconditionError(absl::StrCat(
              "expected_generation: ", expected_generation, " is not the current L7 generation ",
              current, " (changed meanwhile: get it again, edit, set)"));
        }
        // Markers again on the state in hand (another control plane on the
        // same store may have changed the keys since the snapshot).
        v1::L7Config next = l7;
        if (absl::Status st = l7::ResolveRedactedKeys(m.config->l7(), "config.", &next); !st.ok()) {
          return st;
        }
        if (!google::protobuf::util::MessageDifferencer::Equals(next, checked)) {
          if (auto rc = l7::ValidateL7Config(next, "config."); !rc.ok()) return rc.status();
        }
        if (absl::Status st =
                l7::RefuseExpiredNewCertificates(next, m.config->l7(), NowUnixS(), "config.");
            !st.ok()) {
          return st;
        }
        if (current != 0 &&
            google::protobuf::util::MessageDifferencer::Equals(m.config->l7(), next)) {
          return ResponseOf(*m.config);  // nothing changes: no generation, no store write
        }
        v1::Config candidate = *m.config;
        *candidate.mutable_l7() = std::move(next);
        candidate.set_l7_generation(current + 1);
        candidate.set_version(m.config->version() + 1);
        const bool first_keys = candidate.l7_ticket_keys().keys_size() < 2;
        if (first_keys) {
          // The first document comes with the first keys: lb-l7 never runs
          // it on per-process keys.
          auto keys = RotateTicketKeys(candidate.l7_ticket_keys(), NowUnixS(), 1);
          if (!keys.ok()) return keys.status();
          *candidate.mutable_l7_ticket_keys() = *std::move(keys);
        }
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
        if (first_keys) {
          m.ticket_key_rotations.fetch_add(1);
          ev->push_back(MakeEvent(
              "l7_ticket_keys", absl::StrCat("session ticket keys generation ",
                                             m.config->l7_ticket_keys().generation(), " stored")));
        }
        return ResponseOf(*m.config);
      });
}

absl::StatusOr<uint64_t> ControlPlane::RotateL7TicketKeys(bool only_if_due, bool drop_previous) {
  Impl& m = *impl_;
  const uint32_t period = std::max<uint32_t>(1, m.options.l7_ticket_key_rotate_s);
  if (only_if_due) {
    // Every Tick: decide on the snapshot, without the transaction mutex.
    auto snap = m.GetSnapshot();
    const v1::Config& c = *snap->config;
    if (c.l7_generation() == 0 || SteadyNs() < m.ticket_key_retry_ns.load() ||
        !TicketKeyRotationDue(c.l7_ticket_keys(), NowUnixS(), period)) {
      return c.l7_ticket_keys().generation();
    }
  }
  auto r = m.Run<uint64_t>(
      "RotateL7TicketKeys", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<uint64_t> {
        // Decided again on the state in hand: another control plane on the
        // same store may have rotated first (then its keys are the ones).
        const int64_t now = NowUnixS();
        if (m.config->l7_generation() == 0 && !only_if_due) {
          return absl::FailedPreconditionError(
              "no L7 configuration yet: the first 'lbctl l7 set' draws the first ticket keys");
        }
        if (m.config->l7_generation() == 0 ||
            (only_if_due && !TicketKeyRotationDue(m.config->l7_ticket_keys(), now, period))) {
          return m.config->l7_ticket_keys().generation();
        }
        const size_t keep = PreviousTicketKeysToKeep(MaxTicketLifetimeS(m.config->l7()), period);
        v1::L7TicketKeys from = m.config->l7_ticket_keys();
        if (drop_previous) from.clear_keys();  // two fresh keys, the generation goes on
        auto keys = RotateTicketKeys(from, now, keep);
        if (!keys.ok()) return keys.status();
        v1::Config candidate = *m.config;
        *candidate.mutable_l7_ticket_keys() = *std::move(keys);
        candidate.set_version(m.config->version() + 1);
        if (absl::Status st = m.store->Save(candidate); !st.ok()) {
          return absl::Status(st.code(),
                              absl::StrCat("ticket keys not stored in ", m.store->Describe(), ": ",
                                           st.message(), "; the current keys stay"));
        }
        m.config = std::make_shared<const v1::Config>(std::move(candidate));
        m.UpdateSnapshotLocked();
        m.ticket_key_rotations.fetch_add(1);
        const v1::L7TicketKeys& k = m.config->l7_ticket_keys();
        ev->push_back(MakeEvent(
            "l7_ticket_keys",
            absl::StrCat("session ticket keys generation ", k.generation(), " stored (",
                         k.keys_size(), " keys: next, current, ", k.keys_size() - 2, " previous",
                         drop_previous ? "; every older key dropped" : "", ")")));
        return k.generation();
      });
  if (!r.ok() && only_if_due) m.ticket_key_retry_ns.store(SteadyNs() + 5'000'000'000);
  return r;
}

uint64_t ControlPlane::l7_ticket_key_rotations() const {
  return impl_->ticket_key_rotations.load();
}

v1::L7ConfigResponse ControlPlane::GetL7Config() const {
  Impl& m = *impl_;
  v1::L7ConfigResponse r;
  {
    absl::MutexLock l(&m.snapshot_mu);
    r = BaseResponseOf(*m.snapshot->config);
    *r.mutable_health() = m.l7_health;
  }
  l7::RedactPrivateKeys(r.mutable_config());  // parses keys: outside the lock
  return r;
}

void ControlPlane::SetL7Health(v1::L7Health health) {
  Impl& m = *impl_;
  absl::MutexLock l(&m.snapshot_mu);
  if (health.generation() <= m.l7_health.generation()) return;  // an older one, late
  m.l7_health = std::move(health);
}

v1::L7ConfigResponse ControlPlane::L7ConfigForNodes() const {
  Impl& m = *impl_;
  absl::MutexLock l(&m.snapshot_mu);
  v1::L7ConfigResponse r = NodeResponseOf(*m.snapshot->config);
  *r.mutable_health() = m.l7_health;
  return r;
}

v1::L7ConfigResponse ControlPlane::WaitL7Config(uint64_t known, uint64_t known_keys,
                                                absl::Duration timeout,
                                                uint64_t known_health) const {
  Impl& m = *impl_;
  // The snapshot pointer changes under snapshot_mu (UpdateSnapshotLocked);
  // absl::Mutex re-evaluates the condition whenever the mutex is released.
  struct Arg {
    const Impl* m;
    uint64_t known, known_keys, known_health;
  } arg{&m, known, known_keys, known_health};
  std::shared_ptr<const QuerySnapshot> snap;
  v1::L7Health health;
  {
    absl::MutexLock l(&m.snapshot_mu);
    m.snapshot_mu.AwaitWithTimeout(absl::Condition(
                                       +[](Arg* a) {
                                         const v1::Config& c = *a->m->snapshot->config;
                                         return c.l7_generation() != a->known ||
                                                c.l7_ticket_keys().generation() != a->known_keys ||
                                                a->m->l7_health.generation() != a->known_health;
                                       },
                                       &arg),
                                   timeout);
    snap = m.snapshot;
    health = m.l7_health;
  }
  v1::L7ConfigResponse r = NodeResponseOf(*snap->config);
  *r.mutable_health() = std::move(health);
  return r;
}

}  // namespace lb
