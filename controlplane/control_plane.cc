#include "controlplane/control_plane.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/message_differencer.h"
#include "lib/flow_hash.h"
#include "lib/maglev.h"

namespace lb {
namespace {

using google::protobuf::util::MessageDifferencer;

uint64_t NowUnixMs() { return RealtimeNs() / 1'000'000; }
double Ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

void SleepNs(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  nanosleep(&ts, nullptr);
}

bool ProcessAlive(uint32_t pid) {
  return pid != 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH);
}

bool HealthChecked(const v1::Pool& p) {
  switch (p.health_check().kind()) {
    case v1::HEALTH_CHECK_KIND_TCP:
    case v1::HEALTH_CHECK_KIND_HTTP:
    case v1::HEALTH_CHECK_KIND_SCRIPT:
      return true;
    default:
      return false;
  }
}

const char* AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kMaglev:
      return "maglev";
    case Algorithm::kIpHash:
      return "ip_hash";
    case Algorithm::kRoundRobin:
      return "round_robin";
    case Algorithm::kWeightedRoundRobin:
      return "weighted_round_robin";
    case Algorithm::kRandom:
      return "random";
    case Algorithm::kLeastConnections:
      return "least_connections";
    case Algorithm::kWeightedLeastConnections:
      return "weighted_least_connections";
  }
  return "unknown";
}

const char* PerLcoreState(Algorithm a) {
  switch (a) {
    case Algorithm::kRoundRobin:
      return "each lcore's rotation position";
    case Algorithm::kWeightedRoundRobin:
      return "each lcore's smooth weighted round-robin state";
    case Algorithm::kRandom:
      return "each lcore's random generator";
    default:
      return "the live flows each lcore holds per backend";
  }
}

std::string Rfc3339(uint64_t unix_ms) {
  if (unix_ms == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixMillis(static_cast<int64_t>(unix_ms)), absl::UTCTimeZone());
}

v1::Event MakeEvent(const std::string& kind, const std::string& message) {
  v1::Event e;
  e.set_unix_ms(NowUnixMs());
  e.set_kind(kind);
  e.set_message(message);
  return e;
}

// Canonical text of an address literal, or "" when it is not one.
std::string Canonical(const std::string& text) {
  auto a = ParseIpAddress(text);
  return a.ok() ? a->text : "";
}

int FindPoolIndex(const v1::Config& c, const std::string& name) {
  for (int i = 0; i < c.pools_size(); ++i) {
    if (c.pools(i).name() == name) return i;
  }
  return -1;
}

struct BackendRef {
  int pool = -1;
  int backend = -1;
  bool found() const { return pool >= 0; }
};

BackendRef FindBackendRef(const v1::Config& c, uint32_t id) {
  if (id == 0) return {};
  for (int i = 0; i < c.pools_size(); ++i) {
    for (int j = 0; j < c.pools(i).backends_size(); ++j) {
      if (c.pools(i).backends(j).id() == id) return {i, j};
    }
  }
  return {};
}

int FindVipIndex(const v1::Config& c, uint32_t id) {
  if (id == 0) return -1;
  for (int i = 0; i < c.vips_size(); ++i) {
    if (c.vips(i).id() == id) return i;
  }
  return -1;
}

std::set<uint32_t> UsedBackendIds(const v1::Config& c) {
  std::set<uint32_t> ids;
  for (const v1::Pool& p : c.pools()) {
    for (const v1::Backend& b : p.backends()) {
      if (b.id() != 0) ids.insert(b.id());
    }
  }
  return ids;
}

// Hands out the ids missing from `used`, lowest first, in one pass over the
// sorted set however many are taken (a scan from 1 per id made a pool of N
// new backends cost N^2 under the transaction mutex).
class FreeIds {
 public:
  explicit FreeIds(const std::set<uint32_t>& used) : it_(used.begin()), end_(used.end()) {}
  uint32_t Next() {
    while (it_ != end_ && *it_ < next_) ++it_;
    while (it_ != end_ && *it_ == next_) {
      ++next_;
      ++it_;
    }
    return next_++;
  }

 private:
  std::set<uint32_t>::const_iterator it_, end_;
  uint32_t next_ = 1;
};

bool IsProxy(const v1::Pool& p) { return p.kind() == v1::POOL_KIND_PROXY; }

// A backend's identity in its pool: the canonical address, with the port in
// a proxy pool (config.proto PoolKind).
std::string BackendIdentity(const v1::Pool& p, const v1::Backend& b) {
  std::string a = Canonical(b.address());
  if (a.empty()) a = b.address();
  return IsProxy(p) ? absl::StrCat(a, "|", b.port()) : a;
}

std::string BackendName(const v1::Backend& b) {
  return absl::StrCat(b.address(), ":", b.port(), " (id ", b.id(), ")");
}

uint8_t ProtoNumber(v1::Protocol p) {
  return p == v1::PROTOCOL_TCP ? IPPROTO_TCP : p == v1::PROTOCOL_UDP ? IPPROTO_UDP : 0;
}

// "address:port/proto" of a configured VIP; "" when its fields are invalid
// (validation reports those).
std::string VipKeyOf(const v1::Vip& v) {
  auto a = ParseIpAddress(v.address());
  const uint8_t proto = ProtoNumber(v.protocol());
  if (!a.ok() || proto == 0 || v.port() > 65535) return "";
  return VipKey(*a, proto, static_cast<uint16_t>(v.port()));
}

// Gives every backend and VIP of `c` configured with id 0 an id: the one its
// identity (pool + BackendIdentity, resp. VipKeyOf) has in `current` when no
// other entry claims it, else the lowest free one. O(n log n) in the size of
// the config. Explicit ids are left to validation (duplicates are refused
// there, naming the field).
void AssignMissingIds(const v1::Config& current, v1::Config* c) {
  std::set<uint32_t> used_backends;
  std::map<std::pair<std::string, std::string>, uint32_t> had_backend;
  for (const v1::Pool& p : c->pools()) {
    for (const v1::Backend& b : p.backends()) {
      if (b.id() != 0) used_backends.insert(b.id());
    }
  }
  for (const v1::Pool& p : current.pools()) {
    for (const v1::Backend& b : p.backends())
      had_backend[{p.name(), BackendIdentity(p, b)}] = b.id();
  }
  // New ids go out in (pool, identity) order, not config order, so that two
  // nodes given the same entities in another order number them alike.
  std::vector<std::pair<std::pair<std::string, std::string>, v1::Backend*>> unassigned;
  for (v1::Pool& p : *c->mutable_pools()) {
    for (v1::Backend& b : *p.mutable_backends()) {
      if (b.id() != 0) continue;
      std::pair<std::string, std::string> identity{p.name(), BackendIdentity(p, b)};
      auto it = had_backend.find(identity);
      if (it != had_backend.end() && it->second != 0 && used_backends.insert(it->second).second) {
        b.set_id(it->second);
      } else {
        unassigned.emplace_back(std::move(identity), &b);
      }
    }
  }
  std::sort(unassigned.begin(), unassigned.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  FreeIds free_backends(used_backends);
  for (auto& [identity, b] : unassigned) b->set_id(free_backends.Next());

  std::set<uint32_t> used_vips;
  std::map<std::string, uint32_t> had_vip;
  for (const v1::Vip& v : c->vips()) {
    if (v.id() != 0) used_vips.insert(v.id());
  }
  for (const v1::Vip& v : current.vips()) had_vip[VipKeyOf(v)] = v.id();
  std::vector<std::pair<std::string, v1::Vip*>> unassigned_vips;
  for (v1::Vip& v : *c->mutable_vips()) {
    if (v.id() != 0) continue;
    std::string key = VipKeyOf(v);
    auto it = key.empty() ? had_vip.end() : had_vip.find(key);
    if (it != had_vip.end() && it->second != 0 && used_vips.insert(it->second).second) {
      v.set_id(it->second);
    } else {
      unassigned_vips.emplace_back(std::move(key), &v);
    }
  }
  std::stable_sort(unassigned_vips.begin(), unassigned_vips.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  FreeIds free_vips(used_vips);
  for (auto& [key, v] : unassigned_vips) v->set_id(free_vips.Next());
}

size_t NumBackends(const v1::Config& c) {
  size_t n = 0;
  for (const v1::Pool& p : c.pools()) n += static_cast<size_t>(p.backends_size());
  return n;
}

// Renames config paths of the entity a request edits to the request's own
// field names ("pools[2].backends[5].port" -> "backend.port"). A plain
// substring replace is exact here: "pools[1]" never occurs inside
// "pools[10]" (the character after the digits differs).
using Renames = std::vector<std::pair<std::string, std::string>>;
absl::Status Rename(const absl::Status& st, const Renames& renames) {
  if (st.ok() || renames.empty()) return st;
  std::string msg(st.message());
  for (const auto& [from, to] : renames) msg = absl::StrReplaceAll(msg, {{from, to}});
  return absl::Status(st.code(), msg);
}

std::string BackendPath(int pool, int backend) {
  return absl::StrCat("pools[", pool, "].backends[", backend, "]");
}

struct HealthEntry {
  HealthReport report;
  std::string address;  // canonical address the report was for
};

// What queries read: taken under the mutex at every commit or health change.
struct Snapshot {
  std::shared_ptr<const v1::Config> config = std::make_shared<const v1::Config>();
  uint64_t generation = 0;
  std::vector<VipSummary> vips;          // of the last build, config order
  std::map<uint32_t, uint32_t> slot_of;  // backend id -> table slot
  std::map<uint32_t, HealthEntry> health;
  std::vector<uint32_t> stuck_lcores;
  double last_publish_ms = 0;
};

struct Subscriber {
  ControlPlane::EventFn fn;
  absl::Mutex mu;  // held while fn runs
  bool active = true;
};

struct BackendCountersSum {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t new_flows = 0;
  uint64_t active_flows = 0;  // 0 unless the dataplane process is alive
};

}  // namespace

struct ControlPlane::Impl {
  ControlPlaneOptions options;
  std::unique_ptr<Store> store;

  // --- transaction state (mu) ---
  mutable absl::Mutex mu;
  std::optional<Publisher> publisher;
  std::shared_ptr<const v1::Config> config = std::make_shared<v1::Config>();
  DesiredState desired;  // config, validated (ids filled)
  std::map<uint32_t, HealthEntry> health;
  BuildResult last_build;
  bool republish_pending = false;
  std::vector<uint32_t> stuck_lcores;
  double last_publish_ms = 0;

  // --- snapshot for queries (snap_mu; taken after mu, never before) ---
  mutable absl::Mutex snap_mu;
  std::shared_ptr<const Snapshot> snap = std::make_shared<Snapshot>();

  // --- the dataplane's stats region (stats_mu; innermost) ---
  mutable absl::Mutex stats_mu;
  mutable std::optional<StatsRegion> stats;
  mutable struct {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    uint32_t pid = 0;
    uint64_t start_time_ns = 0;
  } stats_id;

  // --- latencies (lat_mu) ---
  mutable absl::Mutex lat_mu;
  std::deque<double> publish_ms;
  std::deque<double> lcores_ms;

  // --- subscribers (sub_mu) ---
  absl::Mutex sub_mu;
  std::map<uint64_t, std::shared_ptr<Subscriber>> subs;
  uint64_t next_token = 1;

  // ------------------------------------------------------------ stats ---

  // The attached stats region, re-attached when the file or its writer
  // changed (a restarted dataplane re-creates it). nullptr when absent.
  const StatsRegion* Stats() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(stats_mu) {
    const std::string& path = options.publisher.stats_path;
    struct stat st;
    if (path.empty() || stat(path.c_str(), &st) != 0) {
      stats.reset();
      return nullptr;
    }
    if (stats.has_value() && st.st_dev == stats_id.dev && st.st_ino == stats_id.ino &&
        st.st_size == stats_id.size &&
        stats->control().writer_pid.load(std::memory_order_acquire) == stats_id.pid &&
        stats->control().start_time_ns.load(std::memory_order_acquire) == stats_id.start_time_ns) {
      return &*stats;
    }
    stats.reset();
    auto attached = StatsRegion::Attach(path);
    if (!attached.ok()) return nullptr;
    stats = *std::move(attached);
    stats_id.dev = st.st_dev;
    stats_id.ino = st.st_ino;
    stats_id.size = st.st_size;
    stats_id.pid = stats->control().writer_pid.load(std::memory_order_acquire);
    stats_id.start_time_ns = stats->control().start_time_ns.load(std::memory_order_acquire);
    return &*stats;
  }

  static uint32_t NumLcores(const StatsRegion& s) {
    return std::min(s.control().num_lcores.load(std::memory_order_acquire), s.header().max_lcores);
  }

  BackendCountersSum SumBackend(uint32_t slot) const {
    BackendCountersSum sum;
    absl::MutexLock l(&stats_mu);
    const StatsRegion* s = Stats();
    if (s == nullptr || slot == 0 || slot >= s->header().max_backends) return sum;
    // A dead dataplane's connection tables died with it: its gauges are stale.
    const bool alive = ProcessAlive(s->control().writer_pid.load(std::memory_order_acquire));
    for (uint32_t i = 0; i < NumLcores(*s); ++i) {
      const BackendCounters& c = s->Backends(i)[slot];
      sum.packets += c.packets.load(std::memory_order_relaxed);
      sum.bytes += c.bytes.load(std::memory_order_relaxed);
      sum.new_flows += c.new_flows.load(std::memory_order_relaxed);
      if (alive) sum.active_flows += c.active_flows.load(std::memory_order_relaxed);
    }
    return sum;
  }

  // Can a publish reclaim its slot right now? (false = an lcore still holds
  // it; a Tick will try again instead of blocking for reclaim_timeout.)
  bool ReclaimPossibleNow() const {
    const uint64_t g = publisher->published_generation();
    if (g + 1 < kNumTableSlots) return true;
    absl::MutexLock l(&stats_mu);
    const StatsRegion* s = Stats();
    if (s == nullptr) return true;
    return s
        ->CheckReclaim(g + 1 - kNumTableSlots + 1, MonotonicNs(), options.publisher.stuck_after_ns)
        .ok;
  }

  // Polls until every live lcore observed `generation` or the bound passes;
  // returns when that happened (monotonic ns).
  uint64_t WaitObserved(uint64_t generation) const {
    const uint64_t start = MonotonicNs();
    absl::MutexLock l(&stats_mu);
    const StatsRegion* s = Stats();
    if (s == nullptr) return start;
    uint64_t pause = 10'000;
    while (true) {
      const uint64_t now = MonotonicNs();
      if (s->CheckReclaim(generation, now, options.publisher.stuck_after_ns).ok) return now;
      if (now - start >= options.observe_timeout_ns) return now;
      SleepNs(pause);
      pause = std::min<uint64_t>(pause * 2, 200'000);
    }
  }

  // Lcores that hold the slot the next publish needs, with the stuck ones.
  StatsRegion::ReclaimStatus ReclaimNow() const {
    const uint64_t g = publisher->published_generation();
    absl::MutexLock l(&stats_mu);
    const StatsRegion* s = Stats();
    if (s == nullptr || g + 1 < kNumTableSlots) return {};
    StatsRegion::ReclaimStatus rs = s->CheckReclaim(g + 1 - kNumTableSlots + 1, MonotonicNs(),
                                                    options.publisher.stuck_after_ns);
    for (uint32_t& i : rs.waiting) i = s->Lcore(i).lcore_id;
    for (uint32_t& i : rs.stuck) i = s->Lcore(i).lcore_id;
    return rs;
  }

  // ------------------------------------------------------- publishing ---

  // The published view of the desired state: unhealthy backends go DOWN
  // (existing flows re-picked); unknown health = as configured.
  static bool AnyUnhealthy(const std::map<uint32_t, HealthEntry>& h) {
    for (const auto& [id, e] : h) {
      if (e.report.status == v1::HEALTH_STATUS_UNHEALTHY) return true;
    }
    return false;
  }

  // Prepares `d` with health applied; copies the state only when some
  // backend is unhealthy (the common case prepares `d` itself).
  absl::StatusOr<PublishReport> PrepareEffective(const DesiredState& d,
                                                 const std::map<uint32_t, HealthEntry>& h,
                                                 std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!AnyUnhealthy(h)) return PrepareLocked(d, events);
    return PrepareLocked(Effective(d, h), events);
  }

  absl::StatusOr<PublishReport> PublishEffective(const DesiredState& d,
                                                 const std::map<uint32_t, HealthEntry>& h,
                                                 uint64_t t0_ns, std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto r = PrepareEffective(d, h, events);
    if (!r.ok()) return r.status();
    return CommitPublishLocked(*std::move(r), t0_ns, events);
  }

  DesiredState Effective(const DesiredState& d, const std::map<uint32_t, HealthEntry>& h) const {
    DesiredState e = d;
    for (DesiredPool& p : e.pools) {
      for (DesiredBackend& b : p.backends) {
        auto it = h.find(b.id);
        if (b.id != 0 && it != h.end() && it->second.address == b.address.text &&
            it->second.report.status == v1::HEALTH_STATUS_UNHEALTHY) {
          b.state = BackendState::kDown;
        }
      }
    }
    return e;
  }

  // Health entries still meaningful for `c`: the backend exists with the
  // same address and its pool is health-checked.
  std::map<uint32_t, HealthEntry> PrunedHealth(const v1::Config& c, const DesiredState& d) const {
    std::map<uint32_t, HealthEntry> out;
    for (int i = 0; i < c.pools_size(); ++i) {
      if (!HealthChecked(c.pools(i))) continue;
      for (int j = 0; j < c.pools(i).backends_size(); ++j) {
        const uint32_t id = c.pools(i).backends(j).id();
        auto it = health.find(id);
        if (id != 0 && it != health.end() &&
            it->second.address == d.pools[i].backends[j].address.text) {
          out.insert(*it);
        }
      }
    }
    return out;
  }

  void RecordLatency(double publish, double lcores) {
    absl::MutexLock l(&lat_mu);
    publish_ms.push_back(publish);
    lcores_ms.push_back(lcores);
    while (publish_ms.size() > options.latency_samples) publish_ms.pop_front();
    while (lcores_ms.size() > options.latency_samples) lcores_ms.pop_front();
  }

  absl::StatusOr<PublishReport> PublishLocked(const DesiredState& effective, uint64_t t0_ns,
                                              std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto r = PrepareLocked(effective, events);
    if (!r.ok()) return r.status();
    return CommitPublishLocked(*std::move(r), t0_ns, events);
  }

  // Publisher::Prepare (publisher.h): the next slot is filled, nothing is
  // visible yet. Records the lcores that hold the slot when it cannot be.
  absl::StatusOr<PublishReport> PrepareLocked(const DesiredState& effective,
                                              std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto r = publisher->Prepare(effective);
    if (!r.ok()) {
      if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
        StatsRegion::ReclaimStatus rs = ReclaimNow();
        stuck_lcores = rs.stuck;
        if (!rs.stuck.empty()) {
          events->push_back(
              MakeEvent("stuck_lcore", absl::StrCat("lcore(s) ", absl::StrJoin(rs.stuck, ", "),
                                                    " stuck: ", r.status().message())));
        }
      }
      return r.status();
    }
    return r;
  }

  // Publisher::Commit of the prepared slot, then what follows every publish:
  // latencies, the wait for the lcores, the publish event.
  absl::StatusOr<PublishReport> CommitPublishLocked(PublishReport r, uint64_t t0_ns,
                                                    std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (auto g = publisher->Commit(); !g.ok()) return g.status();
    const uint64_t t1 = MonotonicNs();
    stuck_lcores.clear();
    const uint64_t t2 = WaitObserved(r.generation);
    last_publish_ms = Ms(t1 - t0_ns);
    RecordLatency(last_publish_ms, Ms(t2 - t0_ns));
    if (options.on_publish_latency) options.on_publish_latency(last_publish_ms, Ms(t2 - t0_ns));
    last_build = r.build;
    if (options.on_publish) options.on_publish(r);
    v1::Event e = MakeEvent(
        "publish", absl::StrFormat("generation %u published: %u vips, %u backends, build %.3f ms, "
                                   "wait %.3f ms, api to lcores %.3f ms",
                                   r.generation, r.build.vips.size(), r.build.backends_in_use,
                                   r.build_ms, r.wait_ms, Ms(t2 - t0_ns)));
    e.set_generation(r.generation);
    events->push_back(std::move(e));
    return r;
  }

  void UpdateSnapshotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto s = std::make_shared<Snapshot>();
    s->config = config;
    s->generation = publisher->published_generation();
    s->vips = last_build.vips;
    for (uint32_t slot = 1; slot < last_build.assignment.backends.size(); ++slot) {
      const auto& b = last_build.assignment.backends[slot];
      if (b.in_use()) s->slot_of[b.backend_id] = slot;
    }
    s->health = health;
    s->stuck_lcores = stuck_lcores;
    s->last_publish_ms = last_publish_ms;
    absl::MutexLock l(&snap_mu);
    snap = std::move(s);
  }

  std::shared_ptr<const Snapshot> GetSnapshot() const {
    absl::MutexLock l(&snap_mu);
    return snap;
  }

  // Writes the ids the build assigned into entries configured with id 0, so
  // the stored state carries them (REST returns them; restarts keep them).
  static void FillAssignedIds(v1::Config* c, DesiredState* d, const SlotAssignment& a) {
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

  // kUnchanged: the caller found the change to be a no-op (nothing to do).
  enum class CommitMode { kChanged, kUnchanged, kAlways };

  // The transaction: ids -> validate -> effective -> prepare -> save ->
  // publish -> commit. Persist first, publish second: a change the store
  // refuses was only ever written into a slot no generation names, so it
  // never reaches an lcore (publisher.h, Prepare/Commit).
  absl::Status CommitLocked(v1::Config candidate, uint64_t t0_ns, const Renames& renames,
                            CommitMode mode, std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (mode == CommitMode::kUnchanged) return absl::OkStatus();
    AssignMissingIds(*config, &candidate);
    candidate.set_version(config->version());
    std::vector<std::string> warnings;
    auto d = ValidateConfig(candidate, options.publisher.caps, &warnings);
    if (!d.ok()) return Rename(d.status(), renames);
    std::map<uint32_t, HealthEntry> next_health = PrunedHealth(candidate, *d);
    auto prepared = PrepareEffective(*d, next_health, events);
    if (!prepared.ok()) {
      UpdateSnapshotLocked();  // stuck lcores
      return prepared.status();
    }
    candidate.set_version(config->version() + 1);
    if (absl::Status st = store->Save(candidate); !st.ok()) {
      publisher->Abandon();
      return absl::Status(st.code(), absl::StrCat("change not stored in ", store->Describe(), ": ",
                                                  st.message(), "; nothing was published"));
    }
    config = std::make_shared<const v1::Config>(std::move(candidate));
    desired = *std::move(d);
    health = std::move(next_health);
    auto published = CommitPublishLocked(*std::move(prepared), t0_ns, events);
    // Stored but not published cannot happen (the slot is prepared under the
    // same mutex); if it did, Tick publishes the stored state.
    republish_pending = !published.ok();
    UpdateSnapshotLocked();
    return absl::OkStatus();
  }

  // Publishes the committed state again (health change, retry): no version
  // bump, nothing stored.
  absl::Status RepublishLocked(uint64_t t0_ns, std::vector<v1::Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto r = PublishEffective(desired, health, t0_ns, events);
    republish_pending = !r.ok();
    UpdateSnapshotLocked();
    return r.status();
  }

  // ----------------------------------------------------------- events ---

  void Emit(std::vector<v1::Event>& events) {
    if (events.empty()) return;
    std::vector<std::shared_ptr<Subscriber>> to;
    {
      absl::MutexLock l(&sub_mu);
      for (auto& [token, s] : subs) to.push_back(s);
    }
    for (const v1::Event& e : events) {
      for (auto& s : to) {
        absl::MutexLock l(&s->mu);
        if (s->active) s->fn(e);
      }
    }
  }

  // Runs `fn` under the mutex, then delivers its events (and a "refused"
  // event when it failed) without the mutex.
  template <typename T>
  absl::StatusOr<T> Run(const char* what,
                        const std::function<absl::StatusOr<T>(std::vector<v1::Event>*)>& fn) {
    std::vector<v1::Event> events;
    absl::StatusOr<T> r;
    {
      absl::MutexLock l(&mu);
      r = fn(&events);
    }
    if (!r.ok())
      events.push_back(MakeEvent("refused", absl::StrCat(what, ": ", r.status().ToString())));
    Emit(events);
    return r;
  }

  // ---------------------------------------------------------- queries ---

  v1::BackendStatus StatusOf(const Snapshot& s, const std::string& pool,
                             const v1::Backend& b) const {
    v1::BackendStatus out;
    out.set_pool(pool);
    *out.mutable_backend() = b;
    v1::HealthStatus h = v1::HEALTH_STATUS_UNKNOWN;
    auto hit = s.health.find(b.id());
    if (hit != s.health.end()) h = hit->second.report.status;
    if (h == v1::HEALTH_STATUS_UNSPECIFIED) h = v1::HEALTH_STATUS_UNKNOWN;
    out.set_health(h);
    v1::BackendState st =
        b.state() == v1::BACKEND_STATE_UNSPECIFIED ? v1::BACKEND_STATE_ACTIVE : b.state();
    if (st == v1::BACKEND_STATE_ACTIVE && b.has_weight() && b.weight() == 0) {
      st = v1::BACKEND_STATE_DRAINING;
    }
    if (h == v1::HEALTH_STATUS_UNHEALTHY) st = v1::BACKEND_STATE_DOWN;
    out.set_effective_state(st);
    auto sit = s.slot_of.find(b.id());
    if (sit != s.slot_of.end()) {
      BackendCountersSum c = SumBackend(sit->second);
      out.set_active_connections(c.active_flows);
      out.set_packets(c.packets);
      out.set_bytes(c.bytes);
    }
    return out;
  }

  v1::VipStatus VipStatusOf(const Snapshot& s, const v1::Vip& v) const {
    v1::VipStatus out;
    *out.mutable_vip() = v;
    out.set_generation(s.generation);
    for (const VipSummary& sum : s.vips) {
      if (sum.vip_id == v.id()) {
        out.set_fingerprint(absl::StrFormat("%016x", sum.fingerprint));
        out.set_active_members(sum.members);
        break;
      }
    }
    return out;
  }
};

// ================================================================ public ===

ControlPlane::ControlPlane() : impl_(std::make_unique<Impl>()) {}
ControlPlane::~ControlPlane() = default;

absl::StatusOr<std::unique_ptr<ControlPlane>> ControlPlane::Create(ControlPlaneOptions options,
                                                                   std::unique_ptr<Store> store) {
  if (store == nullptr) return absl::InvalidArgumentError("ControlPlane::Create: no store");
  std::unique_ptr<ControlPlane> cp(new ControlPlane());
  Impl& m = *cp->impl_;
  m.options = std::move(options);
  if (m.options.latency_samples == 0) m.options.latency_samples = 1;
  m.store = std::move(store);

  auto loaded = m.store->Load();
  if (!loaded.ok()) return loaded.status();
  auto publisher = Publisher::Open(m.options.publisher);
  if (!publisher.ok()) return publisher.status();

  std::vector<v1::Event> events;  // nobody subscribed yet
  absl::MutexLock l(&m.mu);
  m.publisher.emplace(*std::move(publisher));
  const uint64_t t0 = MonotonicNs();
  if (loaded->has_value()) {
    // The stored state was accepted once; it must still validate (the
    // capacities may have changed) or we refuse to forward it.
    auto config = std::make_shared<v1::Config>(**loaded);
    auto d = ValidateConfig(*config, m.options.publisher.caps, nullptr);
    if (!d.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("stored state (", m.store->Describe(), ", version ", config->version(),
                       ") no longer validates: ", d.status().message()));
    }
    m.config = config;
    m.desired = *std::move(d);
    auto r = m.PublishEffective(m.desired, m.health, t0, &events);
    if (!r.ok()) {
      if (r.status().code() != absl::StatusCode::kFailedPrecondition) return r.status();
      // An lcore holds the slot: keep the tables as they are (they hold
      // what the previous run published) and let Tick retry.
      m.republish_pending = true;
    } else {
      // Entries the stored state carried with id 0 (none, normally).
      v1::Config filled = *m.config;
      Impl::FillAssignedIds(&filled, &m.desired, r->build.assignment);
      m.config = std::make_shared<const v1::Config>(std::move(filled));
    }
    m.UpdateSnapshotLocked();
    return cp;
  }
  if (m.options.bootstrap.has_value()) {
    v1::Config boot = *m.options.bootstrap;
    boot.clear_version();
    absl::Status st = m.CommitLocked(std::move(boot), t0, {}, Impl::CommitMode::kAlways, &events);
    if (!st.ok()) return st;
    return cp;
  }
  // Nothing stored, no bootstrap: an empty state (no VIPs), not stored
  // until the first change. Its ring size is moot (no VIP has a ring); pick
  // one the region holds so that a small --max_ring_size can start empty.
  m.desired.ring_size = kDefaultRingSize;
  while (m.desired.ring_size > m.options.publisher.caps.max_ring_size ||
         !ValidateMaglevTableSize(m.desired.ring_size).ok()) {
    if (--m.desired.ring_size < 2) return absl::InvalidArgumentError("max_ring_size too small");
  }
  auto r = m.PublishLocked(m.desired, t0, &events);
  if (!r.ok()) return r.status();
  m.UpdateSnapshotLocked();
  return cp;
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
const char* HealthStatusName(v1::HealthStatus h) {
  switch (h) {
    case v1::HEALTH_STATUS_HEALTHY:
      return "healthy";
    case v1::HEALTH_STATUS_UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

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
        return m.StatusOf(*m.GetSnapshot(), name, m.config->pools(i).backends(j));
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
        return m.StatusOf(*m.GetSnapshot(), m.config->pools(ref.pool).name(),
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
        return m.StatusOf(*m.GetSnapshot(), m.config->pools(ref.pool).name(),
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
        uint64_t live = 0;
        auto snap = m.GetSnapshot();
        if (auto it = snap->slot_of.find(id); it != snap->slot_of.end()) {
          live = m.SumBackend(it->second).active_flows;
        }
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
                   // Ids: explicit ones win; the rest keep the id their identity
                   // has now when free (AssignMissingIds, in the transaction).
                   absl::Status st =
                       m.CommitLocked(std::move(c), t0, {}, Impl::CommitMode::kAlways, ev);
                   if (!st.ok()) return st;
                   return true;
                 })
      .status();
}

void ControlPlane::ReportHealth(const HealthReport& report) {
  const uint64_t t0 = MonotonicNs();
  Impl& m = *impl_;
  std::vector<v1::Event> events;
  {
    absl::MutexLock l(&m.mu);
    const BackendRef ref = FindBackendRef(*m.config, report.backend_id);
    if (!ref.found() || !HealthChecked(m.config->pools(ref.pool))) return;
    const std::string address = m.desired.pools[ref.pool].backends[ref.backend].address.text;
    HealthEntry& e = m.health[report.backend_id];
    const bool same_backend = e.address == address;
    const v1::HealthStatus before = same_backend ? e.report.status : v1::HEALTH_STATUS_UNKNOWN;
    e.report = report;
    e.address = address;
    if (e.report.status == v1::HEALTH_STATUS_UNSPECIFIED) {
      e.report.status = v1::HEALTH_STATUS_UNKNOWN;
    }
    const v1::HealthStatus after = e.report.status;
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
    }
    const bool flips =
        (before == v1::HEALTH_STATUS_UNHEALTHY) != (after == v1::HEALTH_STATUS_UNHEALTHY);
    if (flips) {
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
  m.Emit(events);
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
        uint64_t live = 0;
        if (auto it = snap->slot_of.find(b.id()); it != snap->slot_of.end()) {
          live = m.SumBackend(it->second).active_flows;
        }
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
  m.Emit(events);
}

// --------------------------------------------------------------- queries ---

v1::Config ControlPlane::config() const { return *impl_->GetSnapshot()->config; }

uint64_t ControlPlane::version() const { return impl_->GetSnapshot()->config->version(); }

uint64_t ControlPlane::generation() const { return impl_->GetSnapshot()->generation; }

absl::StatusOr<v1::BackendStatus> ControlPlane::GetBackend(uint32_t id) const {
  auto s = impl_->GetSnapshot();
  const BackendRef ref = FindBackendRef(*s->config, id);
  if (!ref.found()) return absl::NotFoundError(absl::StrCat("id: no backend with id ", id));
  return impl_->StatusOf(*s, s->config->pools(ref.pool).name(),
                         s->config->pools(ref.pool).backends(ref.backend));
}

std::vector<v1::BackendStatus> ControlPlane::ListBackends(const std::string& pool) const {
  auto s = impl_->GetSnapshot();
  std::vector<v1::BackendStatus> out;
  for (const v1::Pool& p : s->config->pools()) {
    if (!pool.empty() && p.name() != pool) continue;
    for (const v1::Backend& b : p.backends()) out.push_back(impl_->StatusOf(*s, p.name(), b));
  }
  return out;
}

std::vector<v1::VipStatus> ControlPlane::ListVips() const {
  auto s = impl_->GetSnapshot();
  std::vector<v1::VipStatus> out;
  for (const v1::Vip& v : s->config->vips()) out.push_back(impl_->VipStatusOf(*s, v));
  return out;
}

absl::StatusOr<v1::BackendHealth> ControlPlane::GetBackendHealth(uint32_t id) const {
  auto s = impl_->GetSnapshot();
  const BackendRef ref = FindBackendRef(*s->config, id);
  if (!ref.found()) return absl::NotFoundError(absl::StrCat("id: no backend with id ", id));
  v1::BackendHealth h;
  h.set_id(id);
  h.set_status("unknown");
  if (auto it = s->health.find(id); it != s->health.end()) {
    const HealthReport& r = it->second.report;
    h.set_status(HealthStatusName(r.status));
    h.set_last_check(Rfc3339(r.check_unix_ms));
    h.set_last_latency_ms(r.latency_ms);
    h.set_consecutive_successes(r.consecutive_successes);
    h.set_consecutive_failures(r.consecutive_failures);
    h.set_failed_checks(r.failed_checks);
    h.set_last_error(r.last_error);
  }
  if (auto it = s->slot_of.find(id); it != s->slot_of.end()) {
    BackendCountersSum c = impl_->SumBackend(it->second);
    h.set_active_connections(c.active_flows);
    h.set_total_requests(c.new_flows);
  }
  return h;
}

v1::Stats ControlPlane::GetStats() const {
  v1::Stats out;
  out.set_generation(impl_->GetSnapshot()->generation);
  absl::MutexLock l(&impl_->stats_mu);
  const StatsRegion* s = impl_->Stats();
  if (s == nullptr) return out;
  const bool alive = ProcessAlive(s->control().writer_pid.load(std::memory_order_acquire));
  out.set_dataplane_running(alive);
  const uint32_t reasons = std::min<uint32_t>(s->header().num_drop_reasons, kNumDropReasons);
  for (uint32_t i = 0; i < Impl::NumLcores(*s); ++i) {
    const LcoreStats& l = s->Lcore(i);
    v1::LcoreCounters* c = out.add_lcores();
    c->set_lcore(l.lcore_id);
    c->set_online(alive && l.state.load(std::memory_order_acquire) ==
                               static_cast<uint32_t>(LcoreState::kOnline));
    c->set_observed_generation(l.observed_generation.load(std::memory_order_acquire));
    c->set_rx_packets(l.rx_packets.load(std::memory_order_relaxed));
    c->set_rx_bytes(l.rx_bytes.load(std::memory_order_relaxed));
    c->set_tx_packets(l.tx_packets.load(std::memory_order_relaxed));
    c->set_tx_bytes(l.tx_bytes.load(std::memory_order_relaxed));
    c->set_forwarded(l.forwarded.load(std::memory_order_relaxed));
    c->set_new_flows(l.new_flows.load(std::memory_order_relaxed));
    c->set_conn_entries(l.conn_entries.load(std::memory_order_relaxed));
    c->set_conn_evictions(l.conn_evictions.load(std::memory_order_relaxed));
    auto* drops = c->mutable_drops();
    for (uint32_t r = 0; r < reasons; ++r) {
      (*drops)[DropReasonName(static_cast<DropReason>(r))] =
          l.drops[r].load(std::memory_order_relaxed);
    }
  }
  return out;
}

v1::TablesInfo ControlPlane::GetTables() const {
  auto s = impl_->GetSnapshot();
  v1::TablesInfo t;
  t.set_generation(s->generation);
  t.set_config_version(s->config->version());
  for (const v1::Vip& v : s->config->vips()) *t.add_vips() = impl_->VipStatusOf(*s, v);
  for (uint32_t l : s->stuck_lcores) t.add_stuck_lcores(l);
  t.set_last_publish_ms(s->last_publish_ms);
  return t;
}

absl::StatusOr<v1::ExplainResponse> ControlPlane::Explain(const v1::ExplainRequest& req) const {
  auto src = ParseIpAddress(req.src());
  if (!src.ok()) return absl::InvalidArgumentError(absl::StrCat("src: ", src.status().message()));
  auto dst = ParseIpAddress(req.dst());
  if (!dst.ok()) return absl::InvalidArgumentError(absl::StrCat("dst: ", dst.status().message()));
  if (src->family != dst->family) {
    return absl::InvalidArgumentError("dst: address family differs from src");
  }
  const uint8_t proto = ProtoNumber(req.protocol());
  if (proto == 0) {
    return absl::InvalidArgumentError("protocol: required (PROTOCOL_TCP or PROTOCOL_UDP)");
  }
  if (req.src_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("src_port: ", req.src_port(), " is not a port"));
  }
  if (req.dst_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("dst_port: ", req.dst_port(), " is not a port"));
  }
  FlowKey key;
  std::memset(&key, 0, sizeof(key));
  std::memcpy(key.src, src->bytes.data(), 16);
  std::memcpy(key.dst, dst->bytes.data(), 16);
  key.sport = static_cast<uint16_t>(req.src_port());
  key.dport = static_cast<uint16_t>(req.dst_port());
  key.proto = proto;
  key.family = src->family;

  Impl& m = *impl_;
  // The reader lock keeps the published slot from being rewritten while we
  // read it (only a transaction, holding the writer lock, publishes).
  absl::ReaderMutexLock l(&m.mu);
  const SlotView slot = m.publisher->writer().CurrentSlot();
  const uint64_t g = m.publisher->published_generation();
  if (g == 0 || slot.header->generation != g) {
    return absl::FailedPreconditionError("no table generation is published yet");
  }
  const int vip = slot.FindVip(key.family, key.dst, proto, key.dport);
  if (vip < 0) {
    return absl::NotFoundError(absl::StrCat("dst: no VIP matches ", VipKey(*dst, proto, key.dport),
                                            " in generation ", g,
                                            " (the dataplane drops such packets as not_for_us)"));
  }
  const VipEntry& v = slot.vips[vip];
  const Algorithm alg = static_cast<Algorithm>(v.algorithm);
  v1::ExplainResponse resp;
  resp.set_vip_id(v.vip_id);
  resp.set_vip(
      VipKey(IpAddressFromBytes(static_cast<AddrFamily>(v.family), v.addr), v.proto, v.port));
  resp.set_generation(g);
  resp.set_algorithm(AlgorithmName(alg));

  // Exactly the dataplane's hash (Worker::ProcessBurst / PickBackend).
  uint64_t hash;
  std::string hashed;
  if (v.flags & kVipFragmentTolerant) {
    key.sport = key.dport = 0;
    hash = HashFlowMode(key, HashMode::kSrcDstProto);
    hashed = "src/dst/proto hash (fragment-tolerant VIP)";
  } else {
    hash = HashFlow(key);
    hashed = "5-tuple hash";
  }
  std::string reason;
  uint32_t s = 0;
  const uint32_t m_size = slot.header->ring_size;
  if (alg == Algorithm::kMaglev || alg == Algorithm::kIpHash) {
    if (alg == Algorithm::kIpHash) {
      hash = HashFlowMode(key, HashMode::kSourceIp);
      hashed = "source-address hash";
    }
    const uint32_t idx = m_size == 0 ? 0 : RingIndex(hash, m_size);
    s = m_size == 0 ? 0 : slot.Ring(vip)[idx];
    reason = absl::StrFormat("%s ring[%u] of %u (%s %016x)", AlgorithmName(alg), idx, m_size,
                             hashed, hash);
    if (s == 0 || s >= slot.header->num_backends ||
        slot.backends[s].state != static_cast<uint8_t>(BackendState::kActive)) {
      absl::StrAppend(&reason, "; no active backend there: the packet is dropped (no_backend)");
      s = 0;
    }
  } else {
    std::vector<std::string> candidates;
    for (uint32_t i = 0; i < v.member_count; ++i) {
      const uint32_t ms = slot.members[v.member_begin + i];
      if (ms == 0 || ms >= slot.header->num_backends) continue;
      const BackendEntry& b = slot.backends[ms];
      candidates.push_back(absl::StrCat(
          "id ", b.backend_id, " ",
          IpAddressFromBytes(static_cast<AddrFamily>(b.family), b.addr).text, " w", b.weight));
    }
    reason = absl::StrCat(AlgorithmName(alg), ": the pick depends on ", PerLcoreState(alg),
                          ", not on the flow; candidates: ",
                          candidates.empty() ? "none (the packet is dropped, no_backend)"
                                             : absl::StrJoin(candidates, ", "));
  }
  if (s != 0) {
    const BackendEntry& b = slot.backends[s];
    resp.set_backend_id(b.backend_id);
    resp.set_backend(IpAddressFromBytes(static_cast<AddrFamily>(b.family), b.addr).text);
  }
  // Sticky sessions are per-node state in the dataplane, like the
  // connection table.
  for (const v1::Vip& cv : m.config->vips()) {
    if (cv.id() != v.vip_id) continue;
    const int pi = FindPoolIndex(*m.config, cv.pool());
    if (pi >= 0 && m.config->pools(pi).sticky_sessions()) {
      absl::StrAppend(&reason,
                      "; sticky sessions: a client address seen within the TTL keeps the backend "
                      "it had");
    }
  }
  absl::StrAppend(&reason,
                  "; connection table not consulted (it lives in the dataplane): a flow already "
                  "pinned keeps its backend while that backend is active or draining");
  resp.set_reason(reason);
  return resp;
}

// ---------------------------------------------------------------- events ---

uint64_t ControlPlane::Subscribe(EventFn fn) {
  auto s = std::make_shared<Subscriber>();
  s->fn = std::move(fn);
  absl::MutexLock l(&impl_->sub_mu);
  const uint64_t token = impl_->next_token++;
  impl_->subs[token] = std::move(s);
  return token;
}

void ControlPlane::Unsubscribe(uint64_t token) {
  std::shared_ptr<Subscriber> s;
  {
    absl::MutexLock l(&impl_->sub_mu);
    auto it = impl_->subs.find(token);
    if (it == impl_->subs.end()) return;
    s = std::move(it->second);
    impl_->subs.erase(it);
  }
  absl::MutexLock l(&s->mu);  // waits for a delivery in progress
  s->active = false;
}

std::vector<double> ControlPlane::PublishLatenciesMs() const {
  absl::MutexLock l(&impl_->lat_mu);
  return {impl_->publish_ms.begin(), impl_->publish_ms.end()};
}

std::vector<double> ControlPlane::ApiToLcoresLatenciesMs() const {
  absl::MutexLock l(&impl_->lat_mu);
  return {impl_->lcores_ms.begin(), impl_->lcores_ms.end()};
}

}  // namespace lb
