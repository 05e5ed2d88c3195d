// The shared-health room: several control planes on one etcd build their
// tables from one health view, the elected leader's (leader.h,
// docs/ARCHITECTURE.md "Whose health view counts").
//
//   leader's checker -> ReportHealth (local view) -> listener -> leader.cc
//   writes LocalHealthView() to <prefix>/health -> every node's watch ->
//   AdoptSharedHealth -> republish when an effective state flips
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "controlplane/control_plane_impl.h"

namespace lb {
namespace {

// The backends `h` publishes DOWN under config `c` (validated as `d`).
std::set<uint32_t> DownIds(const HealthMap& h, const v1::Config& c, const DesiredState& d) {
  std::set<uint32_t> out;
  for (const auto& [id, e] : PrunedHealth(h, c, d)) {
    if (e.report.status == v1::HEALTH_STATUS_UNHEALTHY) out.insert(id);
  }
  return out;
}

}  // namespace

HealthMap SharedHealthMap(const v1::SharedHealth& doc) {
  HealthMap out;
  for (const v1::SharedBackendHealth& b : doc.backends()) {
    HealthEntry& e = out[b.id()];
    e.report.backend_id = b.id();
    e.report.status = b.status();
    e.address = b.address();
  }
  return out;
}

void ControlPlane::AdoptSharedHealth(const v1::SharedHealth& doc) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  if (!m.options.shared_health) return;
  std::vector<v1::Event> events;
  {
    absl::MutexLock l(&m.mu);
    HealthMap next = SharedHealthMap(doc);
    const std::set<uint32_t> before = DownIds(m.shared_health, *m.config, m.desired);
    const std::set<uint32_t> after = DownIds(next, *m.config, m.desired);
    m.shared_health = std::move(next);
    m.shared_leader = doc.leader();
    m.shared_term = doc.term();
    if (before != after) {
      v1::Event ev =
          MakeEvent("shared_health", absl::StrCat("health of leader ", doc.leader(), " (term ",
                                                  doc.term(), "): ", after.size(),
                                                  " backend(s) down (was ", before.size(), ")"));
      ev.set_generation(m.publisher->published_generation());
      events.push_back(std::move(ev));
      if (m.ReclaimPossibleNow()) {
        absl::Status st = m.RepublishLocked(t0, &events);
        if (!st.ok()) {
          events.push_back(MakeEvent(
              "refused",
              absl::StrCat("shared health republish (retried by Tick): ", st.ToString())));
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
}

v1::SharedHealth ControlPlane::LocalHealthView() const {
  const Impl& m = *impl_;
  v1::SharedHealth doc;
  absl::MutexLock l(&m.mu);
  for (const auto& [id, e] : m.health) {
    v1::SharedBackendHealth* b = doc.add_backends();
    b->set_id(id);
    b->set_address(e.address);
    b->set_status(e.report.status);
  }
  return doc;
}

void ControlPlane::SetLocalHealthListener(std::function<void()> fn) {
  absl::MutexLock l(&impl_->mu);
  impl_->on_local_health_change = std::move(fn);
}

}  // namespace lb
