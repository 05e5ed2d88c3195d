// Backend selection for one lb-l7 pool, in one worker (shared-nothing: each
// worker has its own Balancer per pool, so no lock on the request path).
// The one cross-worker state is the active-request count per backend that
// least_connections, weighted_least_connections and random compare: when
// the workers pass the same ActiveCounts, each request adds and removes
// itself there with a relaxed atomic (a count, it publishes no other memory;
// a pick may see another worker's request a moment late, which only makes
// the choice slightly less exact). Without it the counts are per worker.
//
// Algorithms (the names of the classic API's PUT /config/algorithm):
//   - kRoundRobin: next available backend in order, weights ignored.
//   - kWeightedRoundRobin: smooth weighted round robin (nginx
//     ngx_http_upstream_round_robin.c): each pick adds every weight to its
//     backend's current value, takes the largest, subtracts the total. With
//     weights 5,1,1 the order is a a b a c a a (no burst of five a's).
//   - kLeastConnections: fewest active requests; ties go round robin.
//   - kWeightedLeastConnections: fewest active requests per unit of weight
//     (active_a * weight_b < active_b * weight_a); ties go round robin.
//   - kIpHash: hash of the client address over all backends; an unavailable
//     one falls through to the next available (stable while all are up).
//   - kRandom: power of two choices (Mitzenmacher): two random available
//     backends, the one with fewer active requests.
//   - kMaglev: consistent hashing; `client_hash` is the hash of the
//     request's key (a header, a cookie or the path: HashKey below) and
//     indexes a Maglev ring (lib/maglev.h, built once per pool by
//     BuildMaglevRing and shared read-only by every worker). An
//     unavailable backend falls through to the next entry of the ring that
//     names an available one, so only its own keys move.
// Weight 0 takes a backend out of every algorithm, and so do draining
// (ActiveCounts::SetDraining), the control plane's active checks
// (ActiveCounts::SetDown) and, while it lasts, max_connections.
//
// Passive health (outlier detection, Envoy-like): `consecutive_failures`
// connect failures in a row eject a backend for `eject_ns`; any success
// resets the count. After the ejection one more failure ejects it again.
// The same, counted apart, for `consecutive_5xx` answers >= 500 in a row
// (off unless configured).
//
// Pick() returns -1 when no backend is available (the proxy answers 503).
// Threads: one worker thread per instance.
#ifndef LB_LIB_L7_BALANCER_H_
#define LB_LIB_L7_BALANCER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lb::l7 {

enum class BalanceAlgorithm {
  kRoundRobin,
  kWeightedRoundRobin,
  kLeastConnections,
  kWeightedLeastConnections,
  kIpHash,
  kRandom,
  kMaglev,
};

// The Maglev ring of a pool: entry = backend index + 1 (0 = none; never
// left in a full ring). Backends are keyed by `keys` (their address text,
// the same on every lb-l7 node), so the ring is the same on every node and
// does not depend on the order of the config. Table size: a prime above
// 100 x the backend count (lib/maglev.h); InvalidArgument names the field.
absl::StatusOr<std::vector<uint32_t>> BuildMaglevRing(absl::Span<const std::string> keys,
                                                      absl::Span<const uint32_t> weights,
                                                      uint64_t table_size = 65537);

// A stable 64-bit hash of a request key (lib/maglev's frozen key hash):
// equal on every node and build, unlike absl::Hash.
uint64_t HashKey(absl::string_view key);

// The state of one pool's backends that every worker shares: active
// requests per backend (least_connections, random, max_connections), the
// draining flag per backend, and the number of requests queued for the pool.
// Each backend slot on its own cache line: backends are counted by different
// workers at once. All relaxed: each value is a count or a flag, no other
// memory is published through it; a worker may see another's change a
// moment late, which only makes a pick slightly less exact (TryAdd is a CAS,
// so a limit is never exceeded).
//
// Threads: any worker; SetDraining from the main thread (config reload),
// SetDown from the control plane client's thread (active health).
class ActiveCounts {
 public:
  explicit ActiveCounts(size_t n) : slots_(new Slot[n]) {}
  void Add(int b, int32_t d) { slots_[b].v.fetch_add(d, std::memory_order_relaxed); }
  int32_t Get(int b) const { return slots_[b].v.load(std::memory_order_relaxed); }
  // One more active request on `b` unless it already has `max` (> 0).
  bool TryAdd(int b, int32_t max) {
    int32_t v = slots_[b].v.load(std::memory_order_relaxed);
    do {
      if (v >= max) return false;
    } while (!slots_[b].v.compare_exchange_weak(v, v + 1, std::memory_order_relaxed));
    return true;
  }
  void SetDraining(int b, bool on) { slots_[b].draining.store(on, std::memory_order_relaxed); }
  bool Draining(int b) const { return slots_[b].draining.load(std::memory_order_relaxed); }
  // Down by the control plane's active checks: no new requests (as draining).
  void SetDown(int b, bool on) { slots_[b].down.store(on, std::memory_order_relaxed); }
  bool Down(int b) const { return slots_[b].down.load(std::memory_order_relaxed); }
  // The pool's queue (max_connections): a place unless `max` are queued.
  bool TryQueue(int32_t max) {
    int32_t v = queued_.load(std::memory_order_relaxed);
    do {
      if (v >= max) return false;
    } while (!queued_.compare_exchange_weak(v, v + 1, std::memory_order_relaxed));
    return true;
  }
  void Unqueue() { queued_.fetch_sub(1, std::memory_order_relaxed); }
  int32_t Queued() const { return queued_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) Slot {
    std::atomic<int32_t> v{0};
    std::atomic<bool> draining{false};
    std::atomic<bool> down{false};
  };
  std::unique_ptr<Slot[]> slots_;
  alignas(64) std::atomic<int32_t> queued_{0};
};

struct PassiveHealth {
  uint32_t consecutive_failures = 3;  // 0 = never eject
  int64_t eject_ns = 10'000'000'000;
  uint32_t consecutive_5xx = 0;  // answers >= 500 in a row that eject; 0 = never
};

class Balancer {
 public:
  // `shared`: counts shared with the other workers' Balancers of this pool
  // (may be null; must outlive this Balancer).
  Balancer(BalanceAlgorithm algorithm, std::vector<uint32_t> weights, PassiveHealth health,
           uint64_t seed, ActiveCounts* shared = nullptr);

  // Per backend, the most requests in flight (all workers, with shared
  // counts); 0 = unlimited. A backend at its limit is skipped by Pick.
  void SetLimits(std::vector<int32_t> max) { max_ = std::move(max); }

  // kMaglev: the pool's ring (must outlive this Balancer); other
  // algorithms ignore it. Without a ring kMaglev picks nothing.
  void SetRing(const std::vector<uint32_t>* ring) { ring_ = ring; }

  // A backend for a new request, avoiding those in `exclude` (already tried
  // by this request). `client_hash` feeds kIpHash and kMaglev.
  // A backend at its max_connections is skipped; saw_full() then says
  // whether one was (the request should queue rather than fail).
  int Pick(uint64_t client_hash, int64_t now_ns, absl::Span<const int> exclude = {});
  bool saw_full() const { return saw_full_; }

  void OnConnectFailure(int b, int64_t now_ns);
  void OnConnectSuccess(int b);
  // A complete answer from `b`: 5xx runs count towards consecutive_5xx.
  void OnResponse(int b, int status, int64_t now_ns);
  // Active request accounting (least_connections, random).
  void Begin(int b) {
    ++backends_[b].active;
    if (shared_ != nullptr) shared_->Add(b, 1);
  }
  // Begin unless `b` is at its max_connections (then false, nothing
  // counted). Exact across workers with shared counts (a CAS).
  bool TryBegin(int b) {
    const int32_t max = Limit(b);
    if (max <= 0) {
      Begin(b);
      return true;
    }
    if (shared_ != nullptr) {
      if (!shared_->TryAdd(b, max)) return false;
    } else if (backends_[b].active >= max) {
      return false;
    }
    ++backends_[b].active;
    return true;
  }
  int32_t Limit(int b) const { return static_cast<size_t>(b) < max_.size() ? max_[b] : 0; }
  bool Full(int b) const { return Limit(b) > 0 && active(b) >= Limit(b); }
  // Draining (shared counts only): no new requests.
  bool draining(int b) const { return shared_ != nullptr && shared_->Draining(b); }
  // Down by the control plane's active checks (shared counts only).
  bool down(int b) const { return shared_ != nullptr && shared_->Down(b); }
  void End(int b) {
    --backends_[b].active;
    if (shared_ != nullptr) shared_->Add(b, -1);
  }

  // Not weight 0, not ejected, not draining, not down (max_connections aside).
  bool Available(int b, int64_t now_ns) const;
  int size() const { return static_cast<int>(backends_.size()); }
  // Active requests on `b`: across workers when counts are shared.
  int32_t active(int b) const { return shared_ != nullptr ? shared_->Get(b) : backends_[b].active; }
  bool ejected(int b, int64_t now_ns) const { return backends_[b].ejected_until > now_ns; }

 private:
  struct State {
    uint32_t weight = 1;
    int64_t current = 0;  // smooth WRR
    int32_t active = 0;
    uint32_t failures = 0;
    uint32_t errors_5xx = 0;
    int64_t ejected_until = 0;
  };
  bool Usable(int b, int64_t now_ns, absl::Span<const int> exclude);
  uint64_t NextRandom();
  int PickMaglev(uint64_t key_hash, int64_t now_ns, absl::Span<const int> exclude);

  BalanceAlgorithm algorithm_;
  PassiveHealth health_;
  std::vector<State> backends_;
  ActiveCounts* shared_;
  const std::vector<uint32_t>* ring_ = nullptr;
  std::vector<int32_t> max_;
  bool saw_full_ = false;
  uint32_t rr_next_ = 0;
  uint64_t rng_;
};

}  // namespace lb::l7

#endif  // LB_LIB_L7_BALANCER_H_
