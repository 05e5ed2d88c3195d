#include "controlplane/l7_health.h"

#include <algorithm>
#include <set>
#include <utility>

namespace lb {

v1::HealthCheck L4CheckOf(const v1::L7HealthCheck& h) {
  v1::HealthCheck c;
  c.set_kind(h.tcp() ? v1::HEALTH_CHECK_KIND_TCP : v1::HEALTH_CHECK_KIND_HTTP);
  c.set_interval_ms(h.interval_ms());
  const uint32_t interval = h.interval_ms() != 0 ? h.interval_ms() : 5000;
  c.set_timeout_ms(h.timeout_ms() != 0 ? h.timeout_ms() : std::min(3000u, interval));
  c.set_healthy_threshold(h.healthy_threshold());
  c.set_unhealthy_threshold(h.unhealthy_threshold());
  c.set_http_path(h.path());
  c.set_http_host(h.host());
  // No damping beyond the thresholds: the interval times them already, and
  // a backend that fails must leave lb-l7's picks within a bounded time.
  c.set_min_state_duration_ms(1);
  return c;
}

std::vector<HealthTarget> L7HealthBook::Targets(const v1::L7Config& config) {
  absl::MutexLock l(&mu_);
  std::vector<HealthTarget> out;
  std::set<Key> keep;
  for (const v1::L7Pool& p : config.pools()) {
    if (!p.has_health_check()) continue;
    const v1::HealthCheck check = L4CheckOf(p.health_check());
    for (const v1::L7Backend& b : p.backends()) {
      Key k{p.name(), b.address(), b.port()};
      auto [it, fresh] = entries_.try_emplace(k);
      if (fresh) {
        it->second.id = next_id_++;
        by_id_[it->second.id] = k;
      }
      keep.insert(k);
      HealthTarget t;
      t.backend_id = it->second.id;
      t.address = b.address();
      t.port = static_cast<uint16_t>(b.port());
      t.check = check;
      out.push_back(std::move(t));
    }
  }
  bool changed = false;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (keep.count(it->first) != 0) {
      ++it;
      continue;
    }
    changed |= it->second.down;
    by_id_.erase(it->second.id);
    it = entries_.erase(it);
  }
  if (changed) ++generation_;
  return out;
}

bool L7HealthBook::Report(const HealthReport& r) {
  absl::MutexLock l(&mu_);
  auto id = by_id_.find(r.backend_id);
  if (id == by_id_.end()) return false;  // forgotten meanwhile
  Entry& e = entries_[id->second];
  (r.consecutive_failures > 0 ? failed_ : ok_)++;
  if (r.consecutive_failures > 0) e.last_error = r.last_error;
  bool down = e.down;
  if (r.status == v1::HEALTH_STATUS_UNHEALTHY) down = true;
  if (r.status == v1::HEALTH_STATUS_HEALTHY) down = false;
  if (down == e.down) return false;
  e.down = down;
  ++transitions_;
  ++generation_;
  return true;
}

v1::L7Health L7HealthBook::Health() const {
  absl::MutexLock l(&mu_);
  v1::L7Health h;
  h.set_generation(generation_);
  for (const auto& [k, e] : entries_) {
    v1::L7BackendHealth* b = h.add_backends();
    b->set_pool(k.pool);
    b->set_address(k.address);
    b->set_port(k.port);
    b->set_down(e.down);
    b->set_last_error(e.last_error);
  }
  return h;
}

L7HealthCounters L7HealthBook::Counters() const {
  absl::MutexLock l(&mu_);
  L7HealthCounters c;
  c.checks_ok = ok_;
  c.checks_failed = failed_;
  c.transitions = transitions_;
  c.generation = generation_;
  c.backends = entries_.size();
  for (const auto& [k, e] : entries_) c.down += e.down;
  return c;
}

}  // namespace lb
