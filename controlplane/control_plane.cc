// The public mutations of ControlPlane (control_plane.h). Each builds a
// candidate config from the current one and the request, refuses what is
// wrong with the request itself (NotFound, AlreadyExists, ...), and hands the
// candidate to the transaction (Impl::CommitLocked in
// control_plane_transaction.cc), which validates, persists and publishes.
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/backend_ids.h"
#include "controlplane/clock.h"
#include "controlplane/config_lookup.h"
#include "controlplane/control_plane_impl.h"
#include "google/protobuf/util/message_differencer.h"

namespace lb {

using google::protobuf::util::MessageDifferencer;

ControlPlane::ControlPlane(ControlPlaneOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
ControlPlane::~ControlPlane() {
  // The watch thread calls into this object: stop it before anything goes.
  if (impl_->store != nullptr) impl_->store->StopWatch();
}

// ------------------------------------------------------------- mutations ---

absl::StatusOr<v1::Vip> ControlPlane::CreateVip(const v1::Vip& vip) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::Vip>("CreateVip", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::Vip> {
    v1::Config c = *m.config;
    v1::Vip v = vip;
    if (std::string a = Canonical(v.address()); !a.empty()) v.set_address(a);
    if (v.pool().empty()) v.set_pool(kDefaultPool);
    if (FindPoolIndex(c, v.pool()) < 0) {
      if (v.pool() != kDefaultPool) {
        return absl::NotFoundError(
            absl::StrCat("vip.pool: no pool named \"", QuoteBounded(v.pool()), "\""));
      }
      c.add_pools()->set_name(kDefaultPool);
    }
    const std::string key = VipKeyOf(v);
    std::set<uint32_t> used;
    for (const v1::Vip& o : c.vips()) {
      used.insert(o.id());
      if (!key.empty() && VipKeyOf(o) == key) {
        return absl::AlreadyExistsError(
            absl::StrCat("vip: ", key, " already exists (id ", o.id(), ")"));
      }
    }
    if (v.id() != 0 && used.count(v.id()) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("vip.id: ", v.id(), " is already used"));
    }
    *c.add_vips() = v;  // id 0: assigned by the transaction
    const int k = c.vips_size() - 1;
    const Renames renames = {{absl::StrCat("vips[", k, "]"), "vip"}};
    absl::Status st = m.CommitLocked(std::move(c), t0, renames, Impl::CommitMode::kChanged, ev);
    if (!st.ok()) return st;
    return m.config->vips(k);
  });
}

absl::Status ControlPlane::DeleteVip(uint32_t id) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m
      .Run<bool>("DeleteVip",
                 [&](std::vector<v1::Event>* ev) -> absl::StatusOr<bool> {
                   v1::Config c = *m.config;
                   const int k = FindVipIndex(c, id);
                   if (k < 0) return absl::NotFoundError(absl::StrCat("id: no VIP with id ", id));
                   c.mutable_vips()->DeleteSubrange(k, 1);
                   absl::Status st =
                       m.CommitLocked(std::move(c), t0, {}, Impl::CommitMode::kChanged, ev);
                   if (!st.ok()) return st;
                   return true;
                 })
      .status();
}

absl::StatusOr<v1::Pool> ControlPlane::CreatePool(const v1::Pool& pool) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::Pool>("CreatePool", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::Pool> {
    v1::Config c = *m.config;
    if (pool.name().empty()) return absl::InvalidArgumentError("pool.name: must not be empty");
    if (FindPoolIndex(c, pool.name()) >= 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("pool.name: pool \"", pool.name(), "\" already exists"));
    }
    // Capacity first: a request for more backends than the tables hold is
    // refused before any per-backend work under the mutex.
    const size_t have = NumBackends(c);
    const size_t cap = m.options.publisher.caps.max_backends - 1;
    if (static_cast<size_t>(pool.backends_size()) > cap - std::min(have, cap)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("pool.backends: ", pool.backends_size(), " backends with the ", have,
                       " configured exceed the table capacity of ", cap, " (--max_backends)"));
    }
    v1::Pool p = pool;
    std::set<uint32_t> used = UsedBackendIds(c);
    for (int j = 0; j < p.backends_size(); ++j) {
      v1::Backend* b = p.mutable_backends(j);
      if (b->remove_at_unix_ms() != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "pool.backends[", j, "].remove_at_unix_ms: set by the control plane only"));
      }
      if (std::string a = Canonical(b->address()); !a.empty()) b->set_address(a);
      if (b->id() != 0 && !used.insert(b->id()).second) {
        return absl::AlreadyExistsError(
            absl::StrCat("pool.backends[", j, "].id: ", b->id(), " is already used"));
      }
    }
    // New ids in request order, in one pass (FreeIds).
    FreeIds free_ids(used);
    for (v1::Backend& b : *p.mutable_backends()) {
      if (b.id() == 0) b.set_id(free_ids.Next());
    }
    *c.add_pools() = std::move(p);
    const Renames renames = {{absl::StrCat("pools[", c.pools_size() - 1, "]"), "pool"}};
    absl::Status st = m.CommitLocked(std::move(c), t0, renames, Impl::CommitMode::kChanged, ev);
    if (!st.ok()) return st;
    return m.config->pools(FindPoolIndex(*m.config, pool.name()));
  });
}

absl::Status ControlPlane::DeletePool(const std::string& name) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m
      .Run<bool>("DeletePool",
                 [&](std::vector<v1::Event>* ev) -> absl::StatusOr<bool> {
                   v1::Config c = *m.config;
                   const int i = FindPoolIndex(c, name);
                   if (i < 0) {
                     return absl::NotFoundError(
                         absl::StrCat("name: no pool named \"", QuoteBounded(name), "\""));
                   }
                   for (const v1::Vip& v : c.vips()) {
                     if (v.pool() == name) {
                       return absl::FailedPreconditionError(absl::StrCat(
                           "name: pool \"", name, "\" is used by VIP ", v.id(), " (", VipKeyOf(v),
                           "); delete the VIP or point it at another pool first"));
                     }
                   }
                   c.mutable_pools()->DeleteSubrange(i, 1);
                   absl::Status st =
                       m.CommitLocked(std::move(c), t0, {}, Impl::CommitMode::kChanged, ev);
                   if (!st.ok()) return st;
                   return true;
                 })
      .status();
}

namespace {

// The pool a settings call edits: "" = the default pool, created on use.
absl::StatusOr<int> PoolForSettings(v1::Config& c, const std::string& name) {
  const std::string n = name.empty() ? kDefaultPool : name;
  int i = FindPoolIndex(c, n);
  if (i >= 0) return i;
  if (n != kDefaultPool)
    return absl::NotFoundError(absl::StrCat("pool: no pool named \"", QuoteBounded(n), "\""));
  c.add_pools()->set_name(kDefaultPool);
  return c.pools_size() - 1;
}

}  // namespace

// One transaction for the per-pool settings calls: `apply` edits the pool
// (of `pool`, or the default pool, created on first use) and says whether
// anything changed; an unchanged call commits without a publish or version.
absl::StatusOr<v1::Pool> ControlPlane::UpdatePoolSettings(
    const char* what, const std::string& pool, const std::function<bool(v1::Pool*)>& apply) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::Pool>(what, [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::Pool> {
    v1::Config c = *m.config;
    auto i = PoolForSettings(c, pool);
    if (!i.ok()) return i.status();
    v1::Pool* p = c.mutable_pools(*i);
    const bool created = c.pools_size() != m.config->pools_size();
    const bool changed = apply(p) || created;
    const std::string name = p->name();
    const Renames renames = {{absl::StrCat("pools[", *i, "]"), "pool"}};
    absl::Status st =
        m.CommitLocked(std::move(c), t0, renames,
                       changed ? Impl::CommitMode::kChanged : Impl::CommitMode::kUnchanged, ev);
    if (!st.ok()) return st;
    return m.config->pools(FindPoolIndex(*m.config, name));
  });
}

absl::StatusOr<v1::Pool> ControlPlane::SetPoolAlgorithm(const std::string& pool,
                                                        v1::Algorithm algorithm, bool sticky,
                                                        uint32_t sticky_ttl_seconds) {
  return UpdatePoolSettings("SetPoolAlgorithm", pool, [&](v1::Pool* p) {
    const bool same = p->algorithm() == algorithm && p->sticky_sessions() == sticky &&
                      p->sticky_ttl_seconds() == sticky_ttl_seconds;
    p->set_algorithm(algorithm);
    p->set_sticky_sessions(sticky);
    p->set_sticky_ttl_seconds(sticky_ttl_seconds);
    return !same;
  });
}

absl::StatusOr<v1::Pool> ControlPlane::SetHealthCheck(const std::string& pool,
                                                      const v1::HealthCheck& hc) {
  return UpdatePoolSettings("SetHealthCheck", pool, [&](v1::Pool* p) {
    const bool same = p->has_health_check() && MessageDifferencer::Equals(p->health_check(), hc);
    *p->mutable_health_check() = hc;
    return !same;
  });
}

absl::StatusOr<v1::BackendStatus> ControlPlane::AddBackend(const std::string& pool,
                                                           const v1::Backend& backend) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::BackendStatus>(
      "AddBackend", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::BackendStatus> {
        v1::Config c = *m.config;
        const std::string name = pool.empty() ? kDefaultPool : pool;
        int i = FindPoolIndex(c, name);
        if (i < 0) {
          if (name != kDefaultPool) {
            return absl::NotFoundError(
                absl::StrCat("pool: no pool named \"", QuoteBounded(name), "\""));
          }
          c.add_pools()->set_name(kDefaultPool);
          i = c.pools_size() - 1;
        }
        const bool proxy = IsProxy(c.pools(i));
        v1::Backend b = backend;
        if (b.remove_at_unix_ms() != 0) {
          return absl::InvalidArgumentError(
              "backend.remove_at_unix_ms: set by the control plane only (use RemoveBackend)");
        }
        const std::string canonical = Canonical(b.address());
        if (!canonical.empty()) {
          b.set_address(canonical);
          for (const v1::Backend& o : c.pools(i).backends()) {
            if (Canonical(o.address()) != canonical) continue;
            if (o.port() == b.port()) {
              return absl::AlreadyExistsError(absl::StrCat("backend: ", canonical, ":", b.port(),
                                                           " already exists in pool \"", name,
                                                           "\" (id ", o.id(), ")"));
            }
            if (proxy) continue;  // address:port is the identity there
            return absl::AlreadyExistsError(absl::StrCat(
                "backend.address: ", canonical, " is already in pool \"", name, "\" as ",
                BackendName(o),
                "; a DSR pool holds one backend per address: tunnelled packets keep the VIP's "
                "destination port, so the backend's port cannot tell two backends apart (use a "
                "proxy pool, POOL_KIND_PROXY, for address:port backends)"));
          }
        }
        std::set<uint32_t> used = UsedBackendIds(c);
        if (b.id() != 0 && used.count(b.id()) != 0) {
          const BackendRef ref = FindBackendRef(c, b.id());
          return absl::AlreadyExistsError(
              absl::StrCat("backend.id: ", b.id(), " is already used by ",
                           BackendName(c.pools(ref.pool).backends(ref.backend)), " in pool \"",
                           c.pools(ref.pool).name(), "\""));
        }
        *c.mutable_pools(i)->add_backends() = b;  // id 0: assigned by the transaction
        const int j = c.pools(i).backends_size() - 1;
        const Renames renames = {{BackendPath(i, j), "backend"}};
        absl::Status st = m.CommitLocked(std::move(c), t0, renames, Impl::CommitMode::kChanged, ev);
        if (!st.ok()) return st;
        return BackendStatusOf(*m.GetSnapshot(), *m.view, name, m.config->pools(i).backends(j));
      });
}

absl::StatusOr<v1::Node> ControlPlane::SetNode(const v1::Node& node) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::Node>("SetNode", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::Node> {
    v1::Config c = *m.config;
    v1::Node n = node;
    if (std::string a = Canonical(n.tunnel_source_ipv4()); !a.empty()) n.set_tunnel_source_ipv4(a);
    if (std::string a = Canonical(n.tunnel_source_ipv6()); !a.empty()) n.set_tunnel_source_ipv6(a);
    const bool same = MessageDifferencer::Equals(c.node(), n);
    *c.mutable_node() = n;
    absl::Status st = m.CommitLocked(
        std::move(c), t0, {}, same ? Impl::CommitMode::kUnchanged : Impl::CommitMode::kChanged, ev);
    if (!st.ok()) return st;
    return m.config->node();
  });
}

absl::StatusOr<v1::BackendStatus> ControlPlane::UpdateBackend(const v1::UpdateBackendRequest& req) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::BackendStatus>(
      "UpdateBackend", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::BackendStatus> {
        v1::Config c = *m.config;
        const BackendRef ref = FindBackendRef(c, req.id());
        if (!ref.found())
          return absl::NotFoundError(absl::StrCat("id: no backend with id ", req.id()));
        v1::Backend* b = c.mutable_pools(ref.pool)->mutable_backends(ref.backend);
        if (req.has_weight()) b->set_weight(req.weight());
        if (req.has_max_connections()) b->set_max_connections(req.max_connections());
        if (req.has_state()) {
          if (b->remove_at_unix_ms() != 0 && req.state() != b->state()) {
            return absl::FailedPreconditionError(absl::StrCat(
                "state: backend ", req.id(), " is being removed (it leaves at ",
                Rfc3339(b->remove_at_unix_ms()), " or when its flows end); its state is fixed"));
          }
          b->set_state(req.state());
        }
        const bool same =
            MessageDifferencer::Equals(*b, m.config->pools(ref.pool).backends(ref.backend));
        const Renames renames = {{BackendPath(ref.pool, ref.backend) + ".", ""},
                                 {BackendPath(ref.pool, ref.backend), "backend"}};
        absl::Status st =
            m.CommitLocked(std::move(c), t0, renames,
                           same ? Impl::CommitMode::kUnchanged : Impl::CommitMode::kChanged, ev);
        if (!st.ok()) return st;
        return BackendStatusOf(*m.GetSnapshot(), *m.view, m.config->pools(ref.pool).name(),
                               m.config->pools(ref.pool).backends(ref.backend));
      });
}

absl::StatusOr<v1::BackendStatus> ControlPlane::DrainBackend(uint32_t id) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::BackendStatus>(
      "DrainBackend", [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::BackendStatus> {
        v1::Config c = *m.config;
        const BackendRef ref = FindBackendRef(c, id);
        if (!ref.found()) return absl::NotFoundError(absl::StrCat("id: no backend with id ", id));
        v1::Backend* b = c.mutable_pools(ref.pool)->mutable_backends(ref.backend);
        const bool same = b->state() == v1::BACKEND_STATE_DRAINING;
        b->set_state(v1::BACKEND_STATE_DRAINING);
        absl::Status st =
            m.CommitLocked(std::move(c), t0, {},
                           same ? Impl::CommitMode::kUnchanged : Impl::CommitMode::kChanged, ev);
        if (!st.ok()) return st;
        return BackendStatusOf(*m.GetSnapshot(), *m.view, m.config->pools(ref.pool).name(),
                               m.config->pools(ref.pool).backends(ref.backend));
      });
}

absl::StatusOr<v1::RemoveBackendResponse> ControlPlane::RemoveBackend(uint32_t id) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m.Run<v1::RemoveBackendResponse>(
      "RemoveBackend",
      [&](std::vector<v1::Event>* ev) -> absl::StatusOr<v1::RemoveBackendResponse> {
        v1::Config c = *m.config;
        const BackendRef ref = FindBackendRef(c, id);
        if (!ref.found()) return absl::NotFoundError(absl::StrCat("id: no backend with id ", id));
        const uint64_t live = LiveFlows(*m.GetSnapshot(), *m.view, id);
        v1::RemoveBackendResponse resp;
        resp.set_id(id);
        resp.set_drained_connections(live);
        const v1::Pool& p = c.pools(ref.pool);
        v1::Backend* b = c.mutable_pools(ref.pool)->mutable_backends(ref.backend);
        if (b->remove_at_unix_ms() != 0) return resp;  // already leaving
        const uint64_t timeout_s = p.drain_timeout_seconds() == 0 ? kDefaultDrainTimeoutSeconds
                                                                  : p.drain_timeout_seconds();
        b->set_state(v1::BACKEND_STATE_DRAINING);
        b->set_remove_at_unix_ms(NowUnixMs() + timeout_s * 1000);
        absl::Status st = m.CommitLocked(std::move(c), t0, {}, Impl::CommitMode::kChanged, ev);
        if (!st.ok()) return st;
        return resp;
      });
}

absl::Status ControlPlane::ReplaceConfig(const v1::Config& config) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  return m
      .Run<bool>("ReplaceConfig",
                 [&](std::vector<v1::Event>* ev) -> absl::StatusOr<bool> {
                   v1::Config c = config;
                   c.clear_version();
                   // lb-l7's configuration is managed by SetL7Config only.
                   *c.mutable_l7() = m.config->l7();
                   c.set_l7_generation(m.config->l7_generation());
                   *c.mutable_l7_ticket_keys() = m.config->l7_ticket_keys();
                   // Ids: explicit ones win; the rest keep the id their identity
                   // has now when free (AssignMissingIds, in the transaction).
                   absl::Status st =
                       m.CommitLocked(std::move(c), t0, {}, Impl::CommitMode::kAlways, ev);
                   if (!st.ok()) return st;
                   return true;
                 })
      .status();
}

}  // namespace lb
