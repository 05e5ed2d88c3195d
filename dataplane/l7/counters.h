// Per-worker counters of lb-l7. Each counter has one writer (its worker
// thread, relaxed stores: the value is a statistic, no other memory is
// published through it) and any number of readers (the /metrics thread sums
// the workers, relaxed loads: a scrape may see a worker a few increments
// behind, never a torn value).
#ifndef LB_DATAPLANE_L7_COUNTERS_H_
#define LB_DATAPLANE_L7_COUNTERS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "lib/l7/latency_buckets.h"

namespace lb::l7 {

class Counter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Sub(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Status classes 1xx..5xx at index 0..4.
inline int StatusClass(int status) {
  const int k = status / 100 - 1;
  return k < 0 ? 0 : (k > 4 ? 4 : k);
}

// TLS metric dimensions (names in dataplane/l7/tls.cc): failure reasons
// (version, cipher, sni, not_tls, closed, timeout, other, client_cert) and the ciphers
// counted by name (the default policy's nine, then "other").
inline constexpr int kTlsFailCount = 8;
inline constexpr int kTlsCipherCount = 10;
// TLS to backends: failure reasons (verify, closed, timeout, other; names in
// dataplane/l7/upstream_tls.cc).
inline constexpr int kUpstreamTlsFailCount = 4;

// SNI passthrough: why a connection was not relayed as its name asked
// (malformed, oversized and no_sni are counted also when on_invalid /
// on_no_sni send the connection to the default pool).
enum class PassthroughFail {
  kMalformed,  // not TLS, or a ClientHello the parser refuses
  kOversized,  // above max_client_hello_bytes
  kNoSni,      // a ClientHello without server_name
  kTimeout,    // no complete ClientHello within client_hello_timeout_ms
  kClosed,     // the client closed or reset before its ClientHello ended
  kNoRoute,    // a name no route matches and no default pool
  kNoBackend,  // no backend of the pool could be connected
};
inline constexpr int kPassthroughFailCount = 7;
inline constexpr const char* kPassthroughFailNames[kPassthroughFailCount] = {
    "malformed", "oversized", "no_sni", "timeout", "closed", "no_route", "no_backend"};

// A latency histogram per pool, one worker's share: non-cumulative bucket
// counts [pool * kLatencySlots + LatencyBucket(ns)] and the sum in ns per
// pool. The scrape adds the workers and makes the buckets cumulative; its
// _count is the sum of the buckets it read, so _count and the +Inf bucket
// always agree.
struct LatencyHistogram {
  explicit LatencyHistogram(size_t pools) : buckets(pools * kLatencySlots), sum_ns(pools) {}
  void Observe(int pool, int64_t ns) {
    buckets[static_cast<size_t>(pool) * kLatencySlots + LatencyBucket(ns)].Add();
    sum_ns[static_cast<size_t>(pool)].Add(ns > 0 ? static_cast<uint64_t>(ns) : 0);
  }
  std::vector<Counter> buckets;
  std::vector<Counter> sum_ns;
};

struct alignas(64) WorkerCounters {
  WorkerCounters(size_t routes, size_t backends, size_t listeners = 1, size_t pools = 0)
      : request_duration(pools),
        upstream_response(pools),
        route_requests(routes * 5),
        backend_requests(backends * 5),
        backend_connect_failures(backends),
        backend_ejections(backends),
        tls_handshakes(listeners * 2),
        tls_failures(listeners * kTlsFailCount),
        tls_versions(listeners * 2),
        tls_ciphers(listeners * kTlsCipherCount),
        passthrough_conns(listeners * pools),
        passthrough_failures(listeners * kPassthroughFailCount) {}
  // Head accepted -> response queued (the access log's ms=), requests
  // routed to a pool; request written to the backend (after connect and
  // TLS) -> first response head.
  LatencyHistogram request_duration;
  LatencyHistogram upstream_response;
  // [route_slot * 5 + class]; route slots are numbered across listeners.
  std::vector<Counter> route_requests;
  // [backend_slot * 5 + class]; backend slots numbered across pools.
  std::vector<Counter> backend_requests;
  std::vector<Counter> backend_connect_failures;
  std::vector<Counter> backend_ejections;
  // TLS listeners, [listener * n + i]: handshakes (0 full, 1 resumed),
  // failures by reason, versions (0 TLSv1.2, 1 TLSv1.3), ciphers.
  std::vector<Counter> tls_handshakes;
  std::vector<Counter> tls_failures;
  std::vector<Counter> tls_versions;
  std::vector<Counter> tls_ciphers;
  // SNI passthrough listeners: [listener * pools + pool] connections relayed
  // (counted once the backend connect starts), [listener *
  // kPassthroughFailCount + reason] failures.
  std::vector<Counter> passthrough_conns;
  std::vector<Counter> passthrough_failures;
  Counter connections_accepted;
  Counter connections_adopted;  // handed over by the previous configuration's worker
  Counter connections_open;     // gauge
  Counter upstream_connects;
  Counter upstream_reused;
  Counter upstream_retries;
  Counter refused_requests;      // parser refusals (4xx/5xx before any upstream)
  Counter protocol_requests[2];  // request heads accepted: [0] HTTP/1.x, [1] HTTP/2
  Counter h2_connections;        // connections that spoke HTTP/2 (h2c or ALPN h2)
  Counter client_timeouts;
  Counter upstream_timeouts;
  Counter no_backend;
  // Sticky sessions: answers from the pinned backend, answers from another
  // one (pin moved), cookies ignored by reason (kStickyReasons order).
  Counter sticky_hits;
  Counter sticky_repins;
  Counter sticky_invalid[4];
  // Shared sticky store (Redis): lookups sent, lookups that fell back to
  // the pool's pick (index 0: the store was down, 1: it did not answer in
  // timeout_ms, 2: an error reply), pins written, connected workers (gauge).
  Counter sticky_store_lookups;
  Counter sticky_store_fallbacks[3];
  Counter sticky_store_writes;
  Counter sticky_store_connected;
  // max_connections: requests queued now (gauge), refused with the queue
  // full, timed out in the queue (both 503).
  Counter queued_requests;
  Counter queue_overflows;
  Counter queue_timeouts;
  // Retries refused by the pool's retry budget (answered 502).
  Counter retry_budget_exhausted;
  // TLS to backends: handshakes (0 full, 1 resumed from the backend's last
  // session), failures by reason.
  Counter upstream_tls_handshakes[2];
  Counter upstream_tls_failures[kUpstreamTlsFailCount];
};

// sticky_invalid index = CookieVerdict - 1, then a signed cookie naming a
// backend no longer in the pool.
inline constexpr const char* kStickyReasons[4] = {"malformed", "bad_signature", "expired",
                                                  "unknown_backend"};
inline constexpr int kStickyUnknownBackend = 3;
inline constexpr const char* kStoreFallbackReasons[3] = {"down", "timeout", "error"};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_COUNTERS_H_
