// Backend selection for one lb-l7 pool, in one worker (shared-nothing: each
// worker has its own Balancer per pool, so no lock and no atomic on the
// request path; counts such as least_connections are per worker).
//
// Algorithms (the names of the classic API's PUT /config/algorithm):
//   - kRoundRobin: next available backend in order, weights ignored.
//   - kWeightedRoundRobin: smooth weighted round robin (nginx
//     ngx_http_upstream_round_robin.c): each pick adds every weight to its
//     backend's current value, takes the largest, subtracts the total. With
//     weights 5,1,1 the order is a a b a c a a (no burst of five a's).
//   - kLeastConnections: fewest active requests; ties go round robin.
//   - kIpHash: hash of the client address over all backends; an unavailable
//     one falls through to the next available (stable while all are up).
//   - kRandom: power of two choices (Mitzenmacher): two random available
//     backends, the one with fewer active requests.
// Weight 0 takes a backend out of every algorithm.
//
// Passive health (outlier detection, Envoy-like): `consecutive_failures`
// connect failures in a row eject a backend for `eject_ns`; any success
// resets the count. After the ejection one more failure ejects it again.
//
// Pick() returns -1 when no backend is available (the proxy answers 503).
// Threads: one worker thread per instance.
#ifndef LB_LIB_L7_BALANCER_H_
#define LB_LIB_L7_BALANCER_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace lb::l7 {

enum class BalanceAlgorithm {
  kRoundRobin,
  kWeightedRoundRobin,
  kLeastConnections,
  kIpHash,
  kRandom
};

struct PassiveHealth {
  uint32_t consecutive_failures = 3;  // 0 = never eject
  int64_t eject_ns = 10'000'000'000;
};

class Balancer {
 public:
  Balancer(BalanceAlgorithm algorithm, std::vector<uint32_t> weights, PassiveHealth health,
           uint64_t seed);

  // A backend for a new request, avoiding those in `exclude` (already tried
  // by this request). `client_hash` feeds kIpHash.
  int Pick(uint64_t client_hash, int64_t now_ns, absl::Span<const int> exclude = {});

  void OnConnectFailure(int b, int64_t now_ns);
  void OnConnectSuccess(int b);
  // Active request accounting (least_connections, random).
  void Begin(int b) { ++backends_[b].active; }
  void End(int b) { --backends_[b].active; }

  bool Available(int b, int64_t now_ns) const;
  int size() const { return static_cast<int>(backends_.size()); }
  int32_t active(int b) const { return backends_[b].active; }
  bool ejected(int b, int64_t now_ns) const { return backends_[b].ejected_until > now_ns; }

 private:
  struct State {
    uint32_t weight = 1;
    int64_t current = 0;  // smooth WRR
    int32_t active = 0;
    uint32_t failures = 0;
    int64_t ejected_until = 0;
  };
  bool Usable(int b, int64_t now_ns, absl::Span<const int> exclude) const;
  uint64_t NextRandom();

  BalanceAlgorithm algorithm_;
  PassiveHealth health_;
  std::vector<State> backends_;
  uint32_t rr_next_ = 0;
  uint64_t rng_;
};

}  // namespace lb::l7

#endif  // LB_LIB_L7_BALANCER_H_
