// What happened, for whoever listens: the control plane's events (publish,
// health, refused, stuck_lcore, removed) delivered to subscribers (Watch,
// logs, metrics), and the ring of recent publish latencies.
//
// EventLog: Emit delivers each event to every subscriber on the calling
// thread, one event at a time per subscriber; callers must not hold the
// transaction mutex (subscribers may query the ControlPlane). After
// Unsubscribe returns, the callback is not running and is never called
// again. LatencyRing keeps the last `capacity` samples. Both are
// thread-safe; their mutexes are leaves (nothing else is locked under them
// except a subscriber's own delivery mutex).
#ifndef LB_CONTROLPLANE_EVENT_LOG_H_
#define LB_CONTROLPLANE_EVENT_LOG_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "lb/v1/admin.pb.h"

namespace lb {

// An event stamped with the current wall-clock time.
v1::Event MakeEvent(const std::string& kind, const std::string& message);

class EventLog {
 public:
  using EventFn = std::function<void(const v1::Event&)>;

  uint64_t Subscribe(EventFn fn);
  void Unsubscribe(uint64_t token);
  void Emit(const std::vector<v1::Event>& events);

 private:
  struct Subscriber {
    EventFn fn;
    absl::Mutex mu;  // held while fn runs
    bool active = true;
  };
  absl::Mutex mu_;
  std::map<uint64_t, std::shared_ptr<Subscriber>> subs_ ABSL_GUARDED_BY(mu_);
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
};

// Publish latencies, in ms: API call accepted -> generation stored, and
// -> every live lcore observed it.
class LatencyRing {
 public:
  explicit LatencyRing(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  void Record(double publish_ms, double lcores_ms);
  std::vector<double> PublishMs() const;
  std::vector<double> LcoresMs() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<double> publish_ms_ ABSL_GUARDED_BY(mu_);
  std::deque<double> lcores_ms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_EVENT_LOG_H_
