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

struct alignas(64) WorkerCounters {
  WorkerCounters(size_t routes, size_t backends)
      : route_requests(routes * 5),
        backend_requests(backends * 5),
        backend_connect_failures(backends),
        backend_ejections(backends) {}
  // [route_slot * 5 + class]; route slots are numbered across listeners.
  std::vector<Counter> route_requests;
  // [backend_slot * 5 + class]; backend slots numbered across pools.
  std::vector<Counter> backend_requests;
  std::vector<Counter> backend_connect_failures;
  std::vector<Counter> backend_ejections;
  Counter connections_accepted;
  Counter connections_open;  // gauge
  Counter upstream_connects;
  Counter upstream_reused;
  Counter upstream_retries;
  Counter refused_requests;  // parser refusals (4xx/5xx before any upstream)
  Counter client_timeouts;
  Counter upstream_timeouts;
  Counter no_backend;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_COUNTERS_H_
