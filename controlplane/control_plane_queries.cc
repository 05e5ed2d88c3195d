// The query room: everything that reads. Queries read the snapshot taken at
// the last commit (query_snapshot.h) and never wait for a transaction in
// progress; live counters come from the DataplaneView. Explain reads the
// published table slot under the transaction mutex held shared (only a
// transaction, holding it exclusively, publishes); Traffic reads it as an
// lcore does, without waiting.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/config_lookup.h"
#include "controlplane/control_plane_impl.h"
#include "controlplane/explain.h"

namespace lb {

v1::Config ControlPlane::config() const { return *impl_->GetSnapshot()->config; }

uint64_t ControlPlane::version() const { return impl_->GetSnapshot()->config->version(); }

uint64_t ControlPlane::generation() const { return impl_->GetSnapshot()->generation; }

absl::StatusOr<v1::BackendStatus> ControlPlane::GetBackend(uint32_t id) const {
  auto s = impl_->GetSnapshot();
  const BackendRef ref = FindBackendRef(*s->config, id);
  if (!ref.found()) return absl::NotFoundError(absl::StrCat("id: no backend with id ", id));
  return BackendStatusOf(*s, *impl_->view, s->config->pools(ref.pool).name(),
                         s->config->pools(ref.pool).backends(ref.backend));
}

std::vector<v1::BackendStatus> ControlPlane::ListBackends(const std::string& pool) const {
  auto s = impl_->GetSnapshot();
  std::vector<v1::BackendStatus> out;
  for (const v1::Pool& p : s->config->pools()) {
    if (!pool.empty() && p.name() != pool) continue;
    for (const v1::Backend& b : p.backends()) {
      out.push_back(BackendStatusOf(*s, *impl_->view, p.name(), b));
    }
  }
  return out;
}

std::vector<v1::VipStatus> ControlPlane::ListVips() const {
  auto s = impl_->GetSnapshot();
  std::vector<v1::VipStatus> out;
  for (const v1::Vip& v : s->config->vips()) out.push_back(VipStatusOf(*s, v));
  return out;
}

absl::StatusOr<v1::BackendHealth> ControlPlane::GetBackendHealth(uint32_t id) const {
  auto s = impl_->GetSnapshot();
  const BackendRef ref = FindBackendRef(*s->config, id);
  if (!ref.found()) return absl::NotFoundError(absl::StrCat("id: no backend with id ", id));
  return BackendHealthOf(*s, *impl_->view, id);
}

v1::Stats ControlPlane::GetStats() const {
  v1::Stats out;
  out.set_generation(impl_->GetSnapshot()->generation);
  impl_->view->ReadLcores(&out);
  return out;
}

v1::TablesInfo ControlPlane::GetTables() const {
  auto s = impl_->GetSnapshot();
  v1::TablesInfo t;
  t.set_generation(s->generation);
  t.set_config_version(s->config->version());
  for (const v1::Vip& v : s->config->vips()) *t.add_vips() = VipStatusOf(*s, v);
  for (uint32_t l : s->stuck_lcores) t.add_stuck_lcores(l);
  t.set_last_publish_ms(s->last_publish_ms);
  return t;
}

TrafficSnapshot ControlPlane::Traffic() const {
  // Without the transaction mutex, as the scrape read the regions before:
  // /metrics never waits for a publish (which can wait reclaim_timeout for a
  // stuck lcore). The published slot is rewritten only two publishes later.
  const TableWriter& tables = *impl_->tables;
  if (tables.published_generation() == 0) return {};
  return impl_->view->SumTraffic(tables.CurrentSlot());
}

absl::StatusOr<v1::ExplainResponse> ControlPlane::Explain(const v1::ExplainRequest& req) const {
  Impl& m = *impl_;
  // The reader lock keeps the published slot from being rewritten while we
  // read it (only a transaction, holding the writer lock, publishes).
  absl::ReaderMutexLock l(&m.mu);
  return ExplainFlow(req, m.publisher->writer().CurrentSlot(), m.publisher->published_generation(),
                     *m.config, m.view != nullptr ? m.view->stats_path() : std::string());
}

uint64_t ControlPlane::Subscribe(EventFn fn) { return impl_->events.Subscribe(std::move(fn)); }

void ControlPlane::Unsubscribe(uint64_t token) { impl_->events.Unsubscribe(token); }

std::vector<double> ControlPlane::PublishLatenciesMs() const {
  return impl_->latencies.PublishMs();
}

std::vector<double> ControlPlane::ApiToLcoresLatenciesMs() const {
  return impl_->latencies.LcoresMs();
}

}  // namespace lb
