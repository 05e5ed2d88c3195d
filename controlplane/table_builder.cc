#include "controlplane/table_builder.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string_view>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "controlplane/clock.h"
#include "lib/maglev.h"

namespace lb {
namespace {

// One backend of the desired state with its identity.
struct Identity {
  const std::string* pool;
  const DesiredBackend* backend;
  const std::string& address() const { return backend->address.text; }
};

bool IdentityLess(const Identity& a, const Identity& b) {
  // Members of one pool share the name string: skip comparing it (a third
  // of a 1,000-backend publish's sort went to comparing equal pool names).
  if (a.pool != b.pool) {
    if (const int c = a.pool->compare(*b.pool); c != 0) return c < 0;
  }
  return a.address() < b.address();
}

// Hands out ids: explicit ones are reserved up front; a "0 = assign" entity
// keeps its previous id when still free, else takes the lowest free one.
// A hash set: only membership is asked (the lowest free id comes from the
// cursor), and a tree insert per backend per publish was a quarter of
// AssignSlots at 1,000 backends.
class IdAllocator {
 public:
  void Reserve(uint32_t id) { used_.insert(id); }
  bool TryKeep(uint32_t id) { return id != 0 && used_.insert(id).second; }
  uint32_t Next() {
    while (used_.count(next_) != 0) ++next_;
    used_.insert(next_);
    return next_;
  }

 private:
  absl::flat_hash_set<uint32_t> used_;
  uint32_t next_ = 1;
};

uint32_t NextIncarnation(uint32_t previous) {
  // 0 never names an owner; after 2^32 owners of one slot, wrap to 1.
  return previous + 1 == 0 ? 1 : previous + 1;
}

}  // namespace

// --------------------------------------------------------- assignment ---

namespace {

// Where each backend identity goes: its slot, and whether it keeps the owner
// (and so the incarnation) it had.
struct Placement {
  std::vector<Identity> ids;           // by (pool, address) whenever that order matters
  std::vector<bool> taken;             // by slot; [0] reserved
  std::vector<int64_t> slot_of;        // by ids index; -1 = not placed yet
  std::vector<bool> kept;              // same owner as before
  std::vector<uint32_t> config_index;  // by ids index: its place in config order
};

// Puts pl.ids (with slot_of and kept) in (pool, address) order when the
// order can change the outcome. Pass 1 gives each identity the slot its
// exact identity had, whatever the order (identities are unique, and so are
// their previous slots). Only two steps depend on the order: placing the
// identities pass 1 left without a slot (passes 2-4: which one gets which
// slot), and handing out ids to backends without one (FillBackendSlots).
// When every identity kept its slot and carries an id, as in every publish
// through the control plane that adds no backend (it assigns ids first),
// the N log N string comparisons of the sort are skipped: they were two
// thirds of AssignSlots at 1,000 backends.
void SortIfOrderMatters(Placement& pl) {
  bool order_matters = false;
  for (size_t i = 0; i < pl.ids.size() && !order_matters; ++i) {
    order_matters = pl.slot_of[i] < 0 || pl.ids[i].backend->id == 0;
  }
  if (!order_matters) return;
  std::vector<size_t> perm(pl.ids.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
  std::sort(perm.begin(), perm.end(),
            [&pl](size_t a, size_t b) { return IdentityLess(pl.ids[a], pl.ids[b]); });
  Placement sorted;
  sorted.ids.reserve(perm.size());
  sorted.slot_of.reserve(perm.size());
  sorted.kept.reserve(perm.size());
  sorted.config_index.reserve(perm.size());
  for (size_t i : perm) {
    sorted.ids.push_back(pl.ids[i]);
    sorted.slot_of.push_back(pl.slot_of[i]);
    sorted.kept.push_back(pl.kept[i]);
    sorted.config_index.push_back(pl.config_index[i]);
  }
  pl.ids = std::move(sorted.ids);
  pl.slot_of = std::move(sorted.slot_of);
  pl.kept = std::move(sorted.kept);
  pl.config_index = std::move(sorted.config_index);
}

// Passes 1-3: identities that had a slot in `previous` keep it.
Placement KeepPreviousSlots(const DesiredState& desired, const SlotAssignment& previous) {
  Placement pl;
  // Placement order is (pool, address), not config order: two nodes that
  // start from nothing must number slots identically.
  // Collected in config order; sorted after pass 1, and only if the order
  // can matter (see SortIfOrderMatters).
  std::vector<Identity>& ids = pl.ids;
  ids.reserve(desired.NumBackends());
  for (const DesiredPool& p : desired.pools) {
    if (p.proxy) continue;  // lb-l7's: no slot in the L4 tables
    for (const DesiredBackend& b : p.backends) ids.push_back({&p.name, &b});
  }

  const auto& prev = previous.backends;
  std::vector<bool>& taken = pl.taken;
  taken.assign(std::max<size_t>(prev.size(), 1), false);
  taken[0] = true;  // reserved: "no backend"
  std::vector<int64_t>& slot_of = pl.slot_of;
  slot_of.assign(ids.size(), -1);
  std::vector<bool>& kept = pl.kept;
  kept.assign(ids.size(), false);
  pl.config_index.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) pl.config_index[i] = static_cast<uint32_t>(i);

  // Pass 1: exact identity. First the slot the previous build gave the
  // backend at the same place in the config, when that slot holds this very
  // (pool, address): the common publish changes no membership, and two
  // string compares replace hashing every identity. Identities are unique
  // in `previous` (one slot each), so a confirmed guess is the slot the map
  // below would find; the map serves the rest.
  const std::vector<uint32_t>& guess = previous.config_order_slots;
  bool missed = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    const size_t s = i < guess.size() ? guess[i] : 0;
    if (s != 0 && s < prev.size() && !taken[s] && !prev[s].pool.empty() &&
        prev[s].address == ids[i].address() && prev[s].pool == *ids[i].pool) {
      slot_of[i] = static_cast<int64_t>(s);
      taken[s] = true;
      kept[i] = true;
    } else {
      missed = true;
    }
  }
  if (missed) {
    // Keys are views of `previous` (no string copies: this runs per publish).
    absl::flat_hash_map<std::pair<std::string_view, std::string_view>, size_t> exact;
    exact.reserve(prev.size());
    for (size_t s = 1; s < prev.size(); ++s) {
      if (prev[s].in_use() && !prev[s].pool.empty()) exact[{prev[s].pool, prev[s].address}] = s;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (slot_of[i] >= 0) continue;
      auto it = exact.find({*ids[i].pool, ids[i].address()});
      if (it != exact.end() && !taken[it->second]) {
        slot_of[i] = static_cast<int64_t>(it->second);
        taken[it->second] = true;
        kept[i] = true;
      }
    }
  }
  SortIfOrderMatters(pl);

  // Passes 2 and 3: slots recovered from a table, whose pool is unknown.
  // First those whose VIP memberships point at the identity's pool, then any
  // with the same address; lowest slot first in both.
  std::map<std::string, const std::string*> pool_of_vip;
  for (const DesiredVip& v : desired.vips) pool_of_vip[v.Key()] = &v.pool;
  auto hinted = [&](const SlotAssignment::BackendSlot& s, const std::string& pool) {
    for (const std::string& key : s.member_of) {
      auto it = pool_of_vip.find(key);
      if (it != pool_of_vip.end() && *it->second == pool) return true;
    }
    return false;
  };
  std::map<std::string, std::vector<size_t>> unknown_pool;  // address -> slots, ascending
  for (size_t s = 1; s < prev.size(); ++s) {
    if (prev[s].in_use() && prev[s].pool.empty()) unknown_pool[prev[s].address].push_back(s);
  }
  for (int pass = 0; pass < 2 && !unknown_pool.empty(); ++pass) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (slot_of[i] >= 0) continue;
      auto candidates = unknown_pool.find(ids[i].address());
      if (candidates == unknown_pool.end()) continue;
      for (size_t s : candidates->second) {
        if (taken[s]) continue;
        if (pass == 0 && !hinted(prev[s], *ids[i].pool)) continue;
        slot_of[i] = static_cast<int64_t>(s);
        taken[s] = true;
        kept[i] = true;
        break;
      }
    }
  }
  return pl;
}

absl::Status PlaceNewBackends(Placement& pl, const TableCapacityLimits& caps) {
  std::vector<bool>& taken = pl.taken;
  const std::vector<Identity>& ids = pl.ids;
  std::vector<int64_t>& slot_of = pl.slot_of;
  // Pass 4: new identities take the lowest free slot.
  size_t cursor = 1;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (slot_of[i] >= 0) continue;
    while (cursor < taken.size() && taken[cursor]) ++cursor;
    if (cursor >= caps.max_backends) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no free backend slot for ", ids[i].address(), " in pool \"", *ids[i].pool,
                       "\": max_backends ", caps.max_backends, " (slot 0 reserved)"));
    }
    if (cursor == taken.size()) taken.push_back(false);
    slot_of[i] = static_cast<int64_t>(cursor);
    taken[cursor] = true;
  }
  return absl::OkStatus();
}

// Slot contents: owner, incarnation (+1 for a new owner), backend id.
void FillBackendSlots(const Placement& pl, const SlotAssignment& previous, SlotAssignment* out_) {
  SlotAssignment& out = *out_;
  const auto& prev = previous.backends;
  const std::vector<Identity>& ids = pl.ids;
  const std::vector<int64_t>& slot_of = pl.slot_of;
  const std::vector<bool>& kept = pl.kept;
  out.backends.resize(pl.taken.size());
  for (size_t s = 1; s < out.backends.size(); ++s) {
    // Free slots keep the last incarnation so that the next owner gets +1.
    if (s < prev.size()) out.backends[s].incarnation = prev[s].incarnation;
  }
  IdAllocator backend_ids;
  for (const Identity& id : ids) {
    if (id.backend->id != 0) backend_ids.Reserve(id.backend->id);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    SlotAssignment::BackendSlot& s = out.backends[static_cast<size_t>(slot_of[i])];
    s.pool = *ids[i].pool;
    s.address = ids[i].address();
    if (!kept[i]) s.incarnation = NextIncarnation(s.incarnation);
    if (ids[i].backend->id != 0) {
      s.backend_id = ids[i].backend->id;
    } else if (kept[i] && backend_ids.TryKeep(prev[static_cast<size_t>(slot_of[i])].backend_id)) {
      s.backend_id = prev[static_cast<size_t>(slot_of[i])].backend_id;
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    SlotAssignment::BackendSlot& s = out.backends[static_cast<size_t>(slot_of[i])];
    if (s.backend_id == 0) s.backend_id = backend_ids.Next();
  }
  // Trailing slots that never had an owner carry no information.
  while (out.backends.size() > 1 && !out.backends.back().in_use() &&
         out.backends.back().incarnation == 0) {
    out.backends.pop_back();
  }
}

absl::Status AssignVipPositions(const DesiredState& desired, const SlotAssignment& previous,
                                const TableCapacityLimits& caps, SlotAssignment* out_) {
  SlotAssignment& out = *out_;
  // VIP positions: same scheme, keyed by (address, protocol, port).
  std::vector<const DesiredVip*> vips;
  for (const DesiredVip& v : desired.vips) vips.push_back(&v);
  std::vector<std::string> keys;
  for (const DesiredVip* v : vips) keys.push_back(v->Key());
  std::vector<size_t> order(vips.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });

  std::map<std::string, size_t> prev_pos;
  for (size_t p = 0; p < previous.vips.size(); ++p) {
    if (!previous.vips[p].key.empty()) prev_pos[previous.vips[p].key] = p;
  }
  std::vector<bool> vtaken(previous.vips.size(), false);
  std::vector<int64_t> pos_of(vips.size(), -1);
  for (size_t i : order) {
    auto it = prev_pos.find(keys[i]);
    if (it != prev_pos.end()) {
      pos_of[i] = static_cast<int64_t>(it->second);
      vtaken[it->second] = true;
    }
  }
  size_t vcursor = 0;
  for (size_t i : order) {
    if (pos_of[i] >= 0) continue;
    while (vcursor < vtaken.size() && vtaken[vcursor]) ++vcursor;
    if (vcursor >= caps.max_vips) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no free VIP position for ", keys[i], ": max_vips ", caps.max_vips));
    }
    if (vcursor == vtaken.size()) vtaken.push_back(false);
    pos_of[i] = static_cast<int64_t>(vcursor);
    vtaken[vcursor] = true;
  }
  out.vips.resize(vtaken.size());
  IdAllocator vip_ids;
  for (const DesiredVip* v : vips) {
    if (v->id != 0) vip_ids.Reserve(v->id);
  }
  for (size_t i : order) {
    SlotAssignment::VipSlot& s = out.vips[static_cast<size_t>(pos_of[i])];
    s.key = keys[i];
    if (vips[i]->id != 0) {
      s.vip_id = vips[i]->id;
    } else {
      auto it = prev_pos.find(keys[i]);
      if (it != prev_pos.end() && vip_ids.TryKeep(previous.vips[it->second].vip_id)) {
        s.vip_id = previous.vips[it->second].vip_id;
      }
    }
  }
  for (size_t i : order) {
    SlotAssignment::VipSlot& s = out.vips[static_cast<size_t>(pos_of[i])];
    if (s.vip_id == 0) s.vip_id = vip_ids.Next();
  }
  while (!out.vips.empty() && out.vips.back().key.empty()) out.vips.pop_back();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SlotAssignment> AssignSlots(const DesiredState& desired,
                                           const SlotAssignment& previous,
                                           const TableCapacityLimits& caps) {
  Placement pl = KeepPreviousSlots(desired, previous);
  if (absl::Status st = PlaceNewBackends(pl, caps); !st.ok()) return st;
  SlotAssignment out;
  FillBackendSlots(pl, previous, &out);
  out.config_order_slots.resize(pl.ids.size());
  for (size_t i = 0; i < pl.ids.size(); ++i) {
    out.config_order_slots[pl.config_index[i]] = static_cast<uint32_t>(pl.slot_of[i]);
  }
  if (absl::Status st = AssignVipPositions(desired, previous, caps, &out); !st.ok()) return st;
  return out;
}

absl::StatusOr<SlotAssignment> SeedAssignmentFromSlot(const SlotView& slot) {
  SlotAssignment a;
  const SlotHeader& h = *slot.header;
  if (h.generation == 0) return a;
  a.backends.resize(std::max<uint32_t>(h.num_backends, 1));
  for (uint32_t s = 1; s < h.num_backends; ++s) {
    const BackendEntry& e = slot.backends[s];
    SlotAssignment::BackendSlot& b = a.backends[s];
    b.incarnation = e.incarnation;
    if (e.state == static_cast<uint8_t>(BackendState::kUnused)) continue;
    if (e.state > static_cast<uint8_t>(BackendState::kDown)) {
      return absl::DataLossError(absl::StrCat("backends[", s, "].state ", e.state, " unknown"));
    }
    if (e.family != static_cast<uint8_t>(AddrFamily::kIPv4) &&
        e.family != static_cast<uint8_t>(AddrFamily::kIPv6)) {
      return absl::DataLossError(absl::StrCat("backends[", s, "].family ", e.family, " unknown"));
    }
    b.address = IpAddressFromBytes(static_cast<AddrFamily>(e.family), e.addr).text;
    b.backend_id = e.backend_id;
  }
  a.vips.resize(h.num_vips);
  for (uint32_t v = 0; v < h.num_vips; ++v) {
    const VipEntry& e = slot.vips[v];
    if (!(e.flags & kVipInUse)) continue;
    if (e.family != static_cast<uint8_t>(AddrFamily::kIPv4) &&
        e.family != static_cast<uint8_t>(AddrFamily::kIPv6)) {
      return absl::DataLossError(absl::StrCat("vips[", v, "].family ", e.family, " unknown"));
    }
    a.vips[v].key =
        VipKey(IpAddressFromBytes(static_cast<AddrFamily>(e.family), e.addr), e.proto, e.port);
    a.vips[v].vip_id = e.vip_id;
    for (uint32_t m = e.member_begin; m < e.member_begin + e.member_count; ++m) {
      const uint32_t s = slot.members[m];
      if (s < a.backends.size()) a.backends[s].member_of.push_back(a.vips[v].key);
    }
  }
  while (!a.vips.empty() && a.vips.back().key.empty()) a.vips.pop_back();
  return a;
}

// -------------------------------------------------------------- build ---

namespace {

// Backend slot by (pool, canonical address); views of the assignment, which
// outlives the build (no string copies: this runs per publish).
using SlotOf = absl::flat_hash_map<std::pair<std::string_view, std::string_view>, uint32_t>;

// One pool's member list, sorted by the Maglev key, and its ring.
struct PoolTables {
  std::vector<uint32_t> member_slots;    // sorted by address
  std::vector<MaglevBackend> maglev;     // value = 1-based position
  size_t ring = 0;                       // its position ring in BuildScratch::rings
  uint64_t fingerprint = 0;              // set by the first WriteVip of the pool
  const uint32_t* first_ring = nullptr;  // that VIP's ring in the slot
  bool built = false;
};
using PoolMap = std::map<std::string, PoolTables>;

// Member lists of every pool a VIP uses; checked against the capacity
// before anything is written.
// `active` (a pool's members in config order) in address order: the order
// the scratch kept for the same address sequence, or a sort. The order
// depends on nothing but that sequence (addresses are unique in a pool), so
// a publish that changed no pool's membership (a weight, a state, a VIP)
// skips the N log N string comparisons.
void SortByAddress(std::vector<const DesiredBackend*>& active, BuildScratch::MemberOrder& cached) {
  bool same = cached.addresses.size() == active.size();
  for (size_t i = 0; i < active.size() && same; ++i) {
    same = cached.addresses[i] == active[i]->address.text;
  }
  if (!same) {
    cached.addresses.resize(active.size());
    for (size_t i = 0; i < active.size(); ++i) cached.addresses[i] = active[i]->address.text;
    cached.sorted.resize(active.size());
    for (size_t i = 0; i < active.size(); ++i) cached.sorted[i] = static_cast<uint32_t>(i);
    std::sort(cached.sorted.begin(), cached.sorted.end(), [&active](uint32_t x, uint32_t y) {
      return active[x]->address.text < active[y]->address.text;
    });
  }
  std::vector<const DesiredBackend*> in_config_order = active;
  for (size_t i = 0; i < active.size(); ++i) active[i] = in_config_order[cached.sorted[i]];
}

absl::Status CollectMembers(const DesiredState& desired, const SlotOf& slot_of,
                            uint32_t max_members, PoolMap* pools, BuildScratch* scratch) {
  uint64_t total_members = 0;
  for (const DesiredVip& v : desired.vips) {
    const DesiredPool* p = desired.FindPool(v.pool);
    if (p == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("VIP ", v.Key(), ": no pool named \"", v.pool, "\""));
    }
    if (p->proxy) {
      return absl::InvalidArgumentError(
          absl::StrCat("VIP ", v.Key(), ": pool \"", v.pool, "\" is a proxy pool"));
    }
    auto [it, fresh] = pools->try_emplace(p->name);
    if (fresh) {
      it->second.ring = pools->size() - 1;
      std::vector<const DesiredBackend*> active;
      for (const DesiredBackend& b : p->backends) {
        if (b.TakesNewFlows()) active.push_back(&b);
      }
      if (scratch->member_orders.size() <= it->second.ring) {
        scratch->member_orders.resize(it->second.ring + 1);
      }
      SortByAddress(active, scratch->member_orders[it->second.ring]);
      for (size_t i = 0; i < active.size(); ++i) {
        it->second.member_slots.push_back(slot_of.at({p->name, active[i]->address.text}));
        it->second.maglev.push_back(
            {active[i]->address.text, active[i]->weight, static_cast<uint32_t>(i + 1)});
      }
    }
    total_members += it->second.member_slots.size();
  }
  if (total_members > max_members) {
    return absl::ResourceExhaustedError(absl::StrCat("VIP member lists total ", total_members,
                                                     " entries; max_members is ", max_members));
  }
  return absl::OkStatus();
}

// The slot last held generation G - kNumTableSlots: clear what could leak
// from it (entries past the new counts are never read, but stay tidy), then
// the header's node settings.
void ClearSlot(const DesiredState& desired, const SlotView& out) {
  std::memset(static_cast<void*>(out.header), 0, sizeof(SlotHeader));
  std::memset(static_cast<void*>(out.vips), 0, sizeof(VipEntry) * out.max_vips);
  std::memset(static_cast<void*>(out.backends), 0, sizeof(BackendEntry) * out.max_backends);
  std::memset(out.vip_hash, 0, sizeof(uint32_t) * (out.vip_hash_mask + 1));
  SlotHeader& h = *out.header;
  h.ring_size = desired.ring_size;
  if (!desired.tunnel_source_v4.empty()) {
    std::memcpy(h.node.tunnel_src_v4, desired.tunnel_source_v4.bytes.data(), 4);
    h.node.tunnel_src_v4_prefix_len = desired.tunnel_source_v4_prefix_len;
  }
  if (!desired.tunnel_source_v6.empty()) {
    std::memcpy(h.node.tunnel_src_v6, desired.tunnel_source_v6.bytes.data(), 16);
    h.node.tunnel_src_v6_prefix_len = desired.tunnel_source_v6_prefix_len;
  }
}

// Backend entries; returns how many are in use.
uint32_t WriteBackends(const DesiredState& desired, const SlotAssignment& a, const SlotOf& slot_of,
                       const SlotView& out) {
  uint32_t in_use = 0;
  for (const DesiredPool& p : desired.pools) {
    if (p.proxy) continue;
    for (const DesiredBackend& b : p.backends) {
      const uint32_t s = slot_of.at({p.name, b.address.text});
      BackendEntry& e = out.backends[s];
      std::memcpy(e.addr, b.address.bytes.data(), 16);
      e.family = static_cast<uint8_t>(b.address.family);
      e.state = static_cast<uint8_t>(b.PublishedState());
      e.incarnation = a.backends[s].incarnation;
      e.weight = b.weight;
      e.max_connections = b.max_connections;
      e.backend_id = a.backends[s].backend_id;
      ++in_use;
    }
  }
  for (uint32_t s = 1; s < a.backends.size(); ++s) {
    if (!a.backends[s].in_use()) out.backends[s].incarnation = a.backends[s].incarnation;
  }
  out.header->num_backends = static_cast<uint32_t>(a.backends.size());
  return in_use;
}

// True when `in` describes exactly the ring this pool needs.
bool SameRingInputs(const BuildScratch::RingInputs& in, uint32_t ring_size,
                    const std::vector<MaglevBackend>& members) {
  if (!in.valid || in.ring_size != ring_size || in.members.size() != members.size()) return false;
  for (size_t i = 0; i < members.size(); ++i) {
    // Values are the 1-based positions i + 1 on both sides (CollectMembers).
    if (in.members[i].second != members[i].weight || in.members[i].first != members[i].key) {
      return false;
    }
  }
  return true;
}

// The pool's ring in 1-based member positions, built once per build, and not
// at all when the scratch ring was built from the same inputs.
absl::Status BuildPositionRing(const DesiredVip& v, uint32_t ring_size, PoolTables& pt,
                               std::vector<uint32_t>& position_ring,
                               BuildScratch::RingInputs& inputs, uint64_t* reused,
                               double* fill_ms) {
  if (pt.built) return absl::OkStatus();
  if (SameRingInputs(inputs, ring_size, pt.maglev) && position_ring.size() == ring_size) {
    pt.built = true;
    ++*reused;
    return absl::OkStatus();
  }
  inputs.valid = false;
  // Keeps its capacity; no clearing: a successful build writes every entry,
  // and a failed one leaves inputs.valid false, so the ring is never reused.
  position_ring.resize(ring_size);
  const uint64_t t0 = MonotonicNs();
  if (absl::Status st = BuildMaglevTable(pt.maglev, absl::MakeSpan(position_ring)); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool \"", v.pool, "\": ring build failed: ", st.message()));
  }
  *fill_ms += NsToMs(MonotonicNs() - t0);
  inputs.ring_size = ring_size;
  inputs.members.resize(pt.maglev.size());
  for (size_t i = 0; i < pt.maglev.size(); ++i) {
    inputs.members[i].first = pt.maglev[i].key;
    inputs.members[i].second = pt.maglev[i].weight;
  }
  inputs.valid = true;
  pt.built = true;
  return absl::OkStatus();
}

// VIP entry `pos`: its fields, members, ring (positions mapped to slots) and
// its cell in the VIP index (the probe sequence SlotView::FindVipExact
// follows). Returns its summary.
VipSummary WriteVip(const DesiredVip& v, uint32_t pos, const DesiredState& desired,
                    const SlotAssignment& a, PoolTables& pt,
                    const std::vector<uint32_t>& position_ring, const SlotView& out,
                    uint32_t* next_member) {
  VipEntry& e = out.vips[pos];
  std::memcpy(e.addr, v.address.bytes.data(), 16);
  e.family = static_cast<uint8_t>(v.address.family);
  e.proto = v.proto;
  e.port = v.port;
  const DesiredPool& vp = *desired.FindPool(v.pool);
  e.algorithm = static_cast<uint8_t>(vp.algorithm);
  e.flags = kVipInUse | (v.fragment_tolerant ? kVipFragmentTolerant : 0) |
            (vp.sticky_sessions ? kVipSticky : 0) | (vp.gue ? kVipGue : 0);
  e.gue_port = vp.gue ? vp.gue_port : 0;
  e.sticky_ttl_s = vp.sticky_sessions ? vp.sticky_ttl_seconds : 0;
  e.member_begin = *next_member;
  e.member_count = static_cast<uint32_t>(pt.member_slots.size());
  e.vip_id = a.vips[pos].vip_id;
  std::copy(pt.member_slots.begin(), pt.member_slots.end(), out.members + *next_member);
  *next_member += e.member_count;
  uint32_t* ring = out.Ring(pos);
  // Positions mapped to slots; the pool's first VIP computes the fingerprint
  // in the same pass, the others copy its mapped ring.
  if (pt.first_ring == nullptr) {
    pt.fingerprint = MaglevFingerprintAndMap(position_ring, pt.member_slots, ring);
    pt.first_ring = ring;
  } else {
    std::memcpy(ring, pt.first_ring, sizeof(uint32_t) * desired.ring_size);
  }
  e.fingerprint = pt.fingerprint;
  uint32_t cell = VipHashKey(v.address.family, e.addr, e.proto, e.port) & out.vip_hash_mask;
  while (out.vip_hash[cell] != 0) cell = (cell + 1) & out.vip_hash_mask;
  out.vip_hash[cell] = pos + 1;

  VipSummary sum;
  sum.key = a.vips[pos].key;
  sum.pool = v.pool;
  sum.vip_id = e.vip_id;
  sum.position = pos;
  sum.members = e.member_count;
  sum.fingerprint = e.fingerprint;
  return sum;
}

}  // namespace

absl::StatusOr<BuildResult> BuildTables(const DesiredState& desired, const SlotAssignment& previous,
                                        const SlotView& out, BuildScratch* scratch) {
  BuildScratch local;
  if (scratch == nullptr) scratch = &local;
  if (absl::Status st = ValidateMaglevTableSize(desired.ring_size); !st.ok()) return st;
  if (desired.ring_size > out.ring_stride) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring_size ", desired.ring_size, " > the region's max_ring_size ", out.ring_stride));
  }
  auto assigned = AssignSlots(desired, previous, {out.max_vips, out.max_backends});
  if (!assigned.ok()) return assigned.status();

  BuildResult r;
  r.assignment = *std::move(assigned);
  const SlotAssignment& a = r.assignment;
  SlotOf slot_of;
  slot_of.reserve(a.backends.size());
  for (uint32_t s = 1; s < a.backends.size(); ++s) {
    if (a.backends[s].in_use()) slot_of[{a.backends[s].pool, a.backends[s].address}] = s;
  }
  std::map<std::string, uint32_t> pos_of;
  for (uint32_t p = 0; p < a.vips.size(); ++p) {
    if (!a.vips[p].key.empty()) pos_of[a.vips[p].key] = p;
  }
  PoolMap pools;
  if (absl::Status st = CollectMembers(desired, slot_of, out.max_members, &pools, scratch);
      !st.ok()) {
    return st;
  }
  if (scratch->rings.size() < pools.size()) {
    scratch->rings.resize(pools.size());
    scratch->ring_inputs.resize(pools.size());
  }

  ClearSlot(desired, out);
  r.backends_in_use = WriteBackends(desired, a, slot_of, out);

  // VIPs, in position order so that the member array's layout does not
  // depend on the order of the config.
  std::vector<const DesiredVip*> by_pos(a.vips.size(), nullptr);
  for (const DesiredVip& v : desired.vips) by_pos[pos_of.at(v.Key())] = &v;
  std::vector<VipSummary> summaries(a.vips.size());
  uint32_t next_member = 0;
  for (uint32_t pos = 0; pos < by_pos.size(); ++pos) {
    if (by_pos[pos] == nullptr) continue;
    const DesiredVip& v = *by_pos[pos];
    PoolTables& pt = pools.at(v.pool);
    std::vector<uint32_t>& position_ring = scratch->rings[pt.ring];
    if (absl::Status st =
            BuildPositionRing(v, desired.ring_size, pt, position_ring,
                              scratch->ring_inputs[pt.ring], &scratch->rings_reused, &r.fill_ms);
        !st.ok()) {
      return st;
    }
    summaries[pos] = WriteVip(v, pos, desired, a, pt, position_ring, out, &next_member);
  }
  SlotHeader& h = *out.header;
  h.num_vips = static_cast<uint32_t>(a.vips.size());
  h.num_members = next_member;

  for (const DesiredVip& v : desired.vips) r.vips.push_back(summaries[pos_of.at(v.Key())]);
  r.num_vips = h.num_vips;
  r.num_backends = h.num_backends;
  r.num_members = h.num_members;
  return r;
}

uint64_t ComputeVipFingerprint(const SlotView& slot, uint32_t vip_index) {
  const VipEntry& e = slot.vips[vip_index];
  const uint32_t m = slot.header->ring_size;
  std::map<uint32_t, uint32_t> position;  // slot -> 1-based member position
  for (uint32_t i = 0; i < e.member_count; ++i) position[slot.members[e.member_begin + i]] = i + 1;
  std::vector<uint32_t> ring(m);
  const uint32_t* r = slot.Ring(vip_index);
  for (uint32_t k = 0; k < m; ++k) {
    auto it = position.find(r[k]);
    ring[k] = it == position.end() ? 0 : it->second;
  }
  return MaglevFingerprint(ring);
}

}  // namespace lb
