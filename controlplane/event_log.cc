#include "controlplane/event_log.h"

#include <utility>

#include "controlplane/clock.h"

namespace lb {

v1::Event MakeEvent(const std::string& kind, const std::string& message) {
  v1::Event e;
  e.set_unix_ms(NowUnixMs());
  e.set_kind(kind);
  e.set_message(message);
  return e;
}

uint64_t EventLog::Subscribe(EventFn fn) {
  auto s = std::make_shared<Subscriber>();
  s->fn = std::move(fn);
  absl::MutexLock l(&mu_);
  const uint64_t token = next_token_++;
  subs_[token] = std::move(s);
  return token;
}

void EventLog::Unsubscribe(uint64_t token) {
  std::shared_ptr<Subscriber> s;
  {
    absl::MutexLock l(&mu_);
    auto it = subs_.find(token);
    if (it == subs_.end()) return;
    s = std::move(it->second);
    subs_.erase(it);
  }
  absl::MutexLock l(&s->mu);  // waits for a delivery in progress
  s->active = false;
}

void EventLog::Emit(const std::vector<v1::Event>& events) {
  if (events.empty()) return;
  std::vector<std::shared_ptr<Subscriber>> to;
  {
    absl::MutexLock l(&mu_);
    for (auto& [token, s] : subs_) to.push_back(s);
  }
  for (const v1::Event& e : events) {
    for (auto& s : to) {
      absl::MutexLock l(&s->mu);
      if (s->active) s->fn(e);
    }
  }
}

void LatencyRing::Record(double publish_ms, double lcores_ms) {
  absl::MutexLock l(&mu_);
  publish_ms_.push_back(publish_ms);
  lcores_ms_.push_back(lcores_ms);
  while (publish_ms_.size() > capacity_) publish_ms_.pop_front();
  while (lcores_ms_.size() > capacity_) lcores_ms_.pop_front();
}

std::vector<double> LatencyRing::PublishMs() const {
  absl::MutexLock l(&mu_);
  return {publish_ms_.begin(), publish_ms_.end()};
}

std::vector<double> LatencyRing::LcoresMs() const {
  absl::MutexLock l(&mu_);
  return {lcores_ms_.begin(), lcores_ms_.end()};
}

}  // namespace lb
