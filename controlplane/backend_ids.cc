#include "controlplane/backend_ids.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/config_lookup.h"

namespace lb {

std::set<uint32_t> UsedBackendIds(const v1::Config& c) {
  std::set<uint32_t> ids;
  for (const v1::Pool& p : c.pools()) {
    for (const v1::Backend& b : p.backends()) {
      if (b.id() != 0) ids.insert(b.id());
    }
  }
  return ids;
}

namespace {

void AssignBackendIds(const v1::Config& current, v1::Config* c) {
  std::set<uint32_t> used = UsedBackendIds(*c);
  std::map<std::pair<std::string, std::string>, uint32_t> had;
  for (const v1::Pool& p : current.pools()) {
    for (const v1::Backend& b : p.backends()) had[{p.name(), BackendIdentity(p, b)}] = b.id();
  }
  std::vector<std::pair<std::pair<std::string, std::string>, v1::Backend*>> unassigned;
  for (v1::Pool& p : *c->mutable_pools()) {
    for (v1::Backend& b : *p.mutable_backends()) {
      if (b.id() != 0) continue;
      std::pair<std::string, std::string> identity{p.name(), BackendIdentity(p, b)};
      auto it = had.find(identity);
      if (it != had.end() && it->second != 0 && used.insert(it->second).second) {
        b.set_id(it->second);
      } else {
        unassigned.emplace_back(std::move(identity), &b);
      }
    }
  }
  std::sort(unassigned.begin(), unassigned.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  FreeIds free_ids(used);
  for (auto& [identity, b] : unassigned) b->set_id(free_ids.Next());
}

void AssignVipIds(const v1::Config& current, v1::Config* c) {
  std::set<uint32_t> used;
  std::map<std::string, uint32_t> had;
  for (const v1::Vip& v : c->vips()) {
    if (v.id() != 0) used.insert(v.id());
  }
  for (const v1::Vip& v : current.vips()) had[VipKeyOf(v)] = v.id();
  std::vector<std::pair<std::string, v1::Vip*>> unassigned;
  for (v1::Vip& v : *c->mutable_vips()) {
    if (v.id() != 0) continue;
    std::string key = VipKeyOf(v);
    auto it = key.empty() ? had.end() : had.find(key);
    if (it != had.end() && it->second != 0 && used.insert(it->second).second) {
      v.set_id(it->second);
    } else {
      unassigned.emplace_back(std::move(key), &v);
    }
  }
  std::stable_sort(unassigned.begin(), unassigned.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  FreeIds free_ids(used);
  for (auto& [key, v] : unassigned) v->set_id(free_ids.Next());
}

bool AnyBackendWithoutId(const v1::Config& c) {
  for (const v1::Pool& p : c.pools()) {
    for (const v1::Backend& b : p.backends()) {
      if (b.id() == 0) return true;
    }
  }
  return false;
}

bool AnyVipWithoutId(const v1::Config& c) {
  for (const v1::Vip& v : c.vips()) {
    if (v.id() == 0) return true;
  }
  return false;
}

}  // namespace

void AssignMissingIds(const v1::Config& current, v1::Config* c) {
  // Most changes carry every id already (an update, a drain): then the maps
  // of identities, which parse every address, are not built at all.
  if (AnyBackendWithoutId(*c)) AssignBackendIds(current, c);
  if (AnyVipWithoutId(*c)) AssignVipIds(current, c);
}

void FillAssignedIds(v1::Config* c, DesiredState* d, const SlotAssignment& a) {
  bool missing = false;
  for (const DesiredPool& p : d->pools) {
    for (const DesiredBackend& b : p.backends) missing |= b.id == 0;
  }
  for (const DesiredVip& v : d->vips) missing |= v.id == 0;
  if (!missing) return;
  std::map<std::pair<std::string, std::string>, uint32_t> backend_id;
  for (const auto& b : a.backends) {
    if (b.in_use()) backend_id[{b.pool, b.address}] = b.backend_id;
  }
  for (int i = 0; i < c->pools_size(); ++i) {
    for (int j = 0; j < c->pools(i).backends_size(); ++j) {
      DesiredBackend& db = d->pools[i].backends[j];
      if (db.id != 0) continue;
      auto it = backend_id.find({d->pools[i].name, db.address.text});
      if (it == backend_id.end()) continue;
      db.id = it->second;
      c->mutable_pools(i)->mutable_backends(j)->set_id(it->second);
    }
  }
  std::map<std::string, uint32_t> vip_id;
  for (const auto& v : a.vips) {
    if (!v.key.empty()) vip_id[v.key] = v.vip_id;
  }
  for (int k = 0; k < c->vips_size(); ++k) {
    if (d->vips[k].id != 0) continue;
    auto it = vip_id.find(d->vips[k].Key());
    if (it == vip_id.end()) continue;
    d->vips[k].id = it->second;
    c->mutable_vips(k)->set_id(it->second);
  }
}

}  // namespace lb
