// The periodic room: what the control plane does without an API call.
//   ReportHealth  the health checker's input; republishes when a backend's
//                 effective state flips (healthy/unknown <-> unhealthy),
//                 without a version bump, or leaves it to Tick when an
//                 lcore still holds the slot (it never blocks on one).
//   Tick          completes drains whose flows ended or whose deadline
//                 passed (a transaction), and retries a publish that an
//                 lcore held up (reclaim polling, one look per tick), and
//                 rotates lb-l7's session ticket keys when due.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "controlplane/config_lookup.h"
#include "controlplane/control_plane_impl.h"

namespace lb {

void ControlPlane::ReportHealth(const HealthReport& report) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  std::vector<v1::Event> events;
  std::function<void()> listener;  // called without mu
  {
    absl::MutexLock l(&m.mu);
    const BackendRef ref = FindBackendRef(*m.config, report.backend_id);
    if (!ref.found() || !HealthChecked(m.config->pools(ref.pool))) return;
    const std::string address = m.desired.pools[ref.pool].backends[ref.backend].address.text;
    const HealthChange change = ApplyReport(&m.health, report, address);
    const v1::HealthStatus before = change.before;
    const v1::HealthStatus after = change.after;
    if (before != after) {
      v1::Event ev = MakeEvent(
          "health", absl::StrCat("backend ", report.backend_id, " (", address, ":",
                                 m.config->pools(ref.pool).backends(ref.backend).port(), ") ",
                                 HealthStatusName(before), " -> ", HealthStatusName(after),
                                 report.last_error.empty() ? "" : ": " + report.last_error));
      ev.set_backend_id(report.backend_id);
      ev.set_health(after);
      ev.set_generation(m.publisher->published_generation());
      events.push_back(std::move(ev));
      listener = m.on_local_health_change;
    }
    if (m.options.shared_health) {
      // The tables follow the leader's document (AdoptSharedHealth); this
      // node's verdict reaches them only through it.
      m.UpdateSnapshotLocked();
    } else if (change.flips()) {
      if (m.ReclaimPossibleNow()) {
        absl::Status st = m.RepublishLocked(t0, &events);
        if (!st.ok()) {
          events.push_back(MakeEvent(
              "refused", absl::StrCat("health republish (retried by Tick): ", st.ToString())));
        }
      } else {
        m.republish_pending = true;
        m.UpdateSnapshotLocked();
      }
    } else {
      m.UpdateSnapshotLocked();
    }
  }
  m.events.Emit(events);
  if (listener) listener();
}

void ControlPlane::Tick() {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  std::vector<v1::Event> events;
  {
    absl::MutexLock l(&m.mu);
    const uint64_t now = NowUnixMs();
    auto snap = m.GetSnapshot();
    v1::Config c = *m.config;
    std::vector<std::pair<uint32_t, std::string>> leaving;  // id, why
    for (v1::Pool& p : *c.mutable_pools()) {
      auto* bs = p.mutable_backends();
      for (int j = 0; j < bs->size();) {
        const v1::Backend& b = bs->Get(j);
        if (b.remove_at_unix_ms() == 0) {
          ++j;
          continue;
        }
        const uint64_t live = LiveFlows(*snap, *m.view, b.id());
        if (live == 0 || now >= b.remove_at_unix_ms()) {
          leaving.emplace_back(
              b.id(),
              absl::StrCat("backend ", BackendName(b), " left pool \"", p.name(), "\"",
                           live == 0 ? ": no flows left"
                                     : absl::StrCat(": drain timeout with ", live, " flows left")));
          bs->DeleteSubrange(j, 1);
        } else {
          ++j;
        }
      }
    }
    const bool can_publish = (!leaving.empty() || m.republish_pending) && m.ReclaimPossibleNow();
    if (can_publish && !leaving.empty()) {
      absl::Status st = m.CommitLocked(std::move(c), t0, {}, Impl::CommitMode::kAlways, &events);
      if (st.ok()) {
        for (const auto& [id, why] : leaving) {
          v1::Event e = MakeEvent("removed", why);
          e.set_backend_id(id);
          e.set_generation(m.publisher->published_generation());
          events.push_back(std::move(e));
        }
      } else {
        events.push_back(MakeEvent("refused", absl::StrCat("drain completion: ", st.ToString())));
      }
    } else if (can_publish && m.republish_pending) {
      absl::Status st = m.RepublishLocked(t0, &events);
      if (!st.ok()) {
        events.push_back(MakeEvent("refused", absl::StrCat("republish: ", st.ToString())));
      }
    }
  }
  m.events.Emit(events);
  // lb-l7's session ticket keys, when their period is over (its own
  // transaction; a failure is a "refused" event and the next Tick retries).
  (void)RotateL7TicketKeys(/*only_if_due=*/true);
}

}  // namespace lb
