// The link state of lb-l7's connection to a shared store (Redis,
// dataplane/l7/redis_store.h), without any I/O: when to (re)connect, how
// long to back off, and which transitions are worth one log line.
//
//   kDown --ShouldConnect(now)--> kConnecting --OnUp--> kUp
//     ^                                |                  |
//     +-------- OnFailure(now) --------+------------------+
//
// Backoff: after a failure the next attempt waits min_backoff, doubled by
// every failure in a row up to max_backoff; reaching kUp resets it. The
// returned "log" flags are true only when the state the operator cares about
// (up or down) changes: a store that keeps refusing connections logs once,
// not once per attempt; a first failure at start-up logs once too.
//
// Threads: one owner (a worker thread).
#ifndef LB_LIB_L7_STORE_LINK_H_
#define LB_LIB_L7_STORE_LINK_H_

#include <algorithm>
#include <cstdint>

namespace lb::l7 {

class StoreLink {
 public:
  enum class State { kDown, kConnecting, kUp };

  StoreLink(int64_t min_backoff_ns, int64_t max_backoff_ns)
      : min_(min_backoff_ns), max_(std::max(min_backoff_ns, max_backoff_ns)) {}

  State state() const { return state_; }
  bool up() const { return state_ == State::kUp; }
  // Time of the next connect attempt (meaningful in kDown).
  int64_t next_attempt_ns() const { return next_attempt_; }
  int64_t backoff_ns() const { return backoff_; }

  // kDown and its backoff has passed: start connecting (state kConnecting).
  bool ShouldConnect(int64_t now_ns) {
    if (state_ != State::kDown || now_ns < next_attempt_) return false;
    state_ = State::kConnecting;
    connect_started_ = now_ns;
    return true;
  }
  int64_t connect_started_ns() const { return connect_started_; }

  // Connected. True when this is news (log "up").
  bool OnUp() {
    state_ = State::kUp;
    backoff_ = 0;
    const bool news = reported_ != 1;
    reported_ = 1;
    return news;
  }

  // The connection failed, broke, or was dropped for slowness. True when
  // this is news (log "down").
  bool OnFailure(int64_t now_ns) {
    state_ = State::kDown;
    backoff_ = backoff_ == 0 ? min_ : std::min(max_, backoff_ * 2);
    next_attempt_ = now_ns + backoff_;
    const bool news = reported_ != 0;
    reported_ = 0;
    return news;
  }

 private:
  int64_t min_, max_;
  State state_ = State::kDown;
  int64_t next_attempt_ = 0;  // the first attempt is immediate
  int64_t backoff_ = 0;
  int64_t connect_started_ = 0;
  int reported_ = -1;  // last state logged: -1 none, 0 down, 1 up
};

}  // namespace lb::l7

#endif  // LB_LIB_L7_STORE_LINK_H_
