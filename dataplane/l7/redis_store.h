// The shared sticky store of one lb-l7 worker: a non-blocking hiredis
// connection to Redis driven by the worker's own epoll loop (docs/L7.md
// "Shared sticky store"). Source-IP pins live there so every L7 node sees
// the same ones: a lookup is `GETEX key EX ttl` (read and refresh), a new
// pin `SET key backend EX ttl`.
//
// Never blocks the loop: hiredis's async API with an adapter of our own
// (its addRead/addWrite hooks set this Pollable's epoll interest; the
// worker calls OnEvent with the events). A lookup is answered within
// `timeout_ns`: if Redis has not replied by then it is treated as slow, the
// connection is dropped, and every waiting request is resumed with a
// fallback (the pool's own pick). While the link is down Lookup returns
// false at once. Reconnects back off (lib/l7/store_link.h); one log line
// per up/down change.
//
// Results: replies, fallbacks and timeouts are not acted on inside hiredis
// callbacks; they are queued in results() and the worker takes them right
// after OnEvent/OnTimer (so no request work runs re-entrantly inside
// hiredis). A client that closes while it waits calls Forget.
//
// Threads: one worker thread per instance.
#ifndef LB_DATAPLANE_L7_REDIS_STORE_H_
#define LB_DATAPLANE_L7_REDIS_STORE_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "dataplane/l7/conn.h"
#include "dataplane/l7/counters.h"
#include "lib/l7/store_link.h"
#include "proto/l7_config.h"

struct redisAsyncContext;

namespace lb::l7 {

class RedisStore : public Pollable {
 public:
  enum class Outcome { kFound, kMiss, kDown, kTimeout, kError };
  struct Result {
    ClientConn* client;
    Outcome outcome;
    std::string value;  // kFound: the backend "address:port"
  };

  RedisStore(const StickyStoreConfig& config, int epfd, WorkerCounters* counters, int worker);
  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  bool up() const { return link_.up(); }
  const StickyStoreConfig& config() const { return config_; }

  // Sends GETEX key EX ttl_s on behalf of `c`; its Result comes later. False
  // (nothing sent) when the link is not up.
  bool Lookup(const std::string& key, int64_t ttl_s, ClientConn* c, int64_t now_ns);
  // SET key value EX ttl_s, fire and forget (written to the socket at once,
  // before the caller answers its client); nothing when the link is down.
  void Pin(const std::string& key, const std::string& value, int64_t ttl_s);
  // `c` no longer waits (closed): its pending lookup's answer is dropped.
  void Forget(ClientConn* c);

  void OnEvent(uint32_t events);
  // Lookup timeouts, the connect timeout and reconnects; call every loop turn.
  void OnTimer(int64_t now_ns);
  // When OnTimer next has something to do (0 = nothing pending).
  int64_t NextDeadline() const;

  std::vector<Result>& results() { return results_; }

 private:
  static void OnConnectCb(const redisAsyncContext* ac, int status);
  static void OnDisconnectCb(const redisAsyncContext* ac, int status);
  static void OnReplyCb(redisAsyncContext* ac, void* reply, void* privdata);
  static void AddRead(void* p);
  static void DelRead(void* p);
  static void AddWrite(void* p);
  static void DelWrite(void* p);
  static void Cleanup(void* p);

  void Connect(int64_t now_ns);
  void UpdateInterest();
  // The link is gone (`ac_` already freed or being freed by hiredis):
  // waiting requests fall back with `why`.
  void LinkDown(Outcome why, const char* what, int64_t now_ns);
  // We drop the link ourselves (slow Redis, connect timeout).
  void Drop(Outcome why, const char* what, int64_t now_ns);

  struct Pending {
    uint64_t seq;
    ClientConn* client;  // null once forgotten
    int64_t deadline;
  };

  const StickyStoreConfig config_;
  const int epfd_;
  WorkerCounters* const counters_;
  const int worker_;
  redisAsyncContext* ac_ = nullptr;
  bool want_read_ = false, want_write_ = false;
  StoreLink link_;
  std::deque<Pending> pending_;  // in request order (Redis answers in order)
  uint64_t seq_ = 0;
  std::vector<Result> results_;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_REDIS_STORE_H_
