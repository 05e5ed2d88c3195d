#include "dataplane/l7/redis_store.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/epoll.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace lb::l7 {

namespace {
constexpr int64_t kMinBackoffNs = 100'000'000;
// A connect that has not completed by then is given up (a silent address).
constexpr int64_t kConnectTimeoutNs = 1'000'000'000;

RedisStore* Self(const redisAsyncContext* ac) { return static_cast<RedisStore*>(ac->data); }
}  // namespace

RedisStore::RedisStore(const StickyStoreConfig& config, int epfd, WorkerCounters* counters,
                       int worker)
    : config_(config),
      epfd_(epfd),
      counters_(counters),
      worker_(worker),
      link_(kMinBackoffNs, config.max_backoff_ns) {
  kind = Kind::kStore;
}

RedisStore::~RedisStore() {
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;  // callbacks during the free see a store that is going
    redisAsyncFree(ac);
  }
}

// ------------------------------------------------ the epoll adapter hooks ---
// hiredis says what it wants to wait for; the interest is applied at once
// (level-triggered, as the rest of the worker).

void RedisStore::AddRead(void* p) {
  auto* s = static_cast<RedisStore*>(p);
  s->want_read_ = true;
  s->UpdateInterest();
}
void RedisStore::DelRead(void* p) {
  auto* s = static_cast<RedisStore*>(p);
  s->want_read_ = false;
  s->UpdateInterest();
}
void RedisStore::AddWrite(void* p) {
  auto* s = static_cast<RedisStore*>(p);
  s->want_write_ = true;
  s->UpdateInterest();
}
void RedisStore::DelWrite(void* p) {
  auto* s = static_cast<RedisStore*>(p);
  s->want_write_ = false;
  s->UpdateInterest();
}
// Called by hiredis before it closes the socket: leave epoll first.
void RedisStore::Cleanup(void* p) {
  auto* s = static_cast<RedisStore*>(p);
  s->want_read_ = s->want_write_ = false;
  s->UpdateInterest();
  s->fd = -1;
}

void RedisStore::UpdateInterest() {
  if (fd < 0) return;
  const uint32_t ev = (want_read_ ? EPOLLIN : 0u) | (want_write_ ? EPOLLOUT : 0u);
  if (ev == interest) return;
  epoll_event e{};
  e.events = ev;
  e.data.ptr = static_cast<Pollable*>(this);
  if (interest == 0) {
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &e);
  } else if (ev == 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  } else {
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &e);
  }
  interest = ev;
}

// ------------------------------------------------------------ connection ---

void RedisStore::Connect(int64_t now_ns) {
  redisAsyncContext* ac = redisAsyncConnect(config_.host.c_str(), config_.port);
  if (ac == nullptr || ac->err != 0) {
    const std::string err = ac != nullptr ? ac->errstr : "out of memory";
    if (ac != nullptr) redisAsyncFree(ac);
    LinkDown(Outcome::kDown, err.c_str(), now_ns);
    return;
  }
  ac_ = ac;
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = AddRead;
  ac->ev.delRead = DelRead;
  ac->ev.addWrite = AddWrite;
  ac->ev.delWrite = DelWrite;
  ac->ev.cleanup = Cleanup;
  redisAsyncSetConnectCallback(ac, OnConnectCb);
  redisAsyncSetDisconnectCallback(ac, OnDisconnectCb);
  fd = ac->c.fd;
  interest = 0;
  // The connect completes when the socket is writable (hiredis checks
  // SO_ERROR on the first event, as its libevent adapter arranges).
  want_read_ = want_write_ = true;
  UpdateInterest();
}

void RedisStore::OnConnectCb(const redisAsyncContext* ac, int status) {
  RedisStore* s = Self(ac);
  if (s == nullptr || s->ac_ != ac) return;
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback.
    s->ac_ = nullptr;
    s->LinkDown(Outcome::kDown, ac->errstr, 0);
    return;
  }
  if (s->link_.OnUp()) {
    LOG(INFO) << "worker " << s->worker_ << ": sticky store " << s->config_.text << " up";
  }
  s->counters_->sticky_store_connected.Add();
}

void RedisStore::OnDisconnectCb(const redisAsyncContext* ac, int /*status*/) {
  RedisStore* s = Self(ac);
  if (s == nullptr || s->ac_ != ac) return;  // our own Drop/destructor: handled there
  s->ac_ = nullptr;                          // hiredis frees it after this callback
  s->LinkDown(Outcome::kDown, ac->err != 0 ? ac->errstr : "connection closed", 0);
}

void RedisStore::LinkDown(Outcome why, const char* what, int64_t now_ns) {
  if (now_ns == 0) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now_ns = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }
  if (link_.up()) counters_->sticky_store_connected.Sub();
  if (link_.OnFailure(now_ns)) {
    LOG(WARNING) << "worker " << worker_ << ": sticky store " << config_.text << " down (" << what
                 << "); source-IP pins fall back to the pool's pick, "
                 << "reconnecting with backoff";
  }
  for (const Pending& p : pending_) {
    if (p.client != nullptr) results_.push_back({p.client, why, {}});
  }
  pending_.clear();
}

void RedisStore::Drop(Outcome why, const char* what, int64_t now_ns) {
  redisAsyncContext* ac = ac_;
  ac_ = nullptr;  // the callbacks of the free below ignore a context not ours
  LinkDown(why, what, now_ns);
  if (ac != nullptr) redisAsyncFree(ac);
}

// --------------------------------------------------------------- requests ---

bool RedisStore::Lookup(const std::string& key, int64_t ttl_s, ClientConn* c, int64_t now_ns) {
  if (ac_ == nullptr || !link_.up()) return false;
  const std::string ttl = absl::StrCat(ttl_s);
  const char* argv[] = {"GETEX", key.data(), "EX", ttl.data()};
  const size_t lens[] = {5, key.size(), 2, ttl.size()};
  const uint64_t seq = ++seq_;
  if (redisAsyncCommandArgv(ac_, OnReplyCb, reinterpret_cast<void*>(static_cast<uintptr_t>(seq)), 4,
                            argv, lens) != REDIS_OK) {
    return false;
  }
  pending_.push_back({seq, c, now_ns + config_.timeout_ns});
  counters_->sticky_store_lookups.Add();
  // Written now (non-blocking) rather than on the next EPOLLOUT: one loop
  // turn less of latency. A failure surfaces as a result, never re-entrantly.
  redisAsyncHandleWrite(ac_);
  return true;
}

void RedisStore::Pin(const std::string& key, const std::string& value, int64_t ttl_s) {
  if (ac_ == nullptr || !link_.up()) return;
  const std::string ttl = absl::StrCat(ttl_s);
  const char* argv[] = {"SET", key.data(), value.data(), "EX", ttl.data()};
  const size_t lens[] = {3, key.size(), value.size(), 2, ttl.size()};
  if (redisAsyncCommandArgv(ac_, nullptr, nullptr, 5, argv, lens) == REDIS_OK) {
    counters_->sticky_store_writes.Add();
    // Into Redis's socket before the answer goes to the client (the worker
    // pins while it builds the response head): a client that goes straight
    // to another L7 node finds its pin.
    redisAsyncHandleWrite(ac_);
  }
}

void RedisStore::OnReplyCb(redisAsyncContext* ac, void* reply, void* privdata) {
  RedisStore* s = Self(ac);
  if (s == nullptr) return;
  const uint64_t seq = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(privdata));
  // Redis answers in order: entries before this one were dropped already.
  while (!s->pending_.empty() && s->pending_.front().seq < seq) s->pending_.pop_front();
  if (s->pending_.empty() || s->pending_.front().seq != seq) return;  // timed out or dropped
  const Pending p = s->pending_.front();
  s->pending_.pop_front();
  if (p.client == nullptr) return;
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr) {
    s->results_.push_back({p.client, Outcome::kDown, {}});
  } else if (r->type == REDIS_REPLY_STRING) {
    s->results_.push_back({p.client, Outcome::kFound, std::string(r->str, r->len)});
  } else if (r->type == REDIS_REPLY_NIL) {
    s->results_.push_back({p.client, Outcome::kMiss, {}});
  } else {
    s->results_.push_back({p.client, Outcome::kError, {}});
  }
}

void RedisStore::Forget(ClientConn* c) {
  for (Pending& p : pending_) {
    if (p.client == c) p.client = nullptr;
  }
  for (size_t i = 0; i < results_.size();) {
    if (results_[i].client == c) {
      results_.erase(results_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

void RedisStore::OnEvent(uint32_t events) {
  if (ac_ == nullptr) return;
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) redisAsyncHandleRead(ac_);
  if (ac_ != nullptr && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) redisAsyncHandleWrite(ac_);
}

void RedisStore::OnTimer(int64_t now_ns) {
  if (!pending_.empty() && pending_.front().deadline <= now_ns) {
    // Slow (or silently gone): drop the connection rather than let every
    // request wait for it; the reconnect backs off.
    Drop(Outcome::kTimeout, "no answer within timeout_ms", now_ns);
  }
  if (link_.state() == StoreLink::State::kConnecting && ac_ != nullptr &&
      now_ns - link_.connect_started_ns() > kConnectTimeoutNs) {
    Drop(Outcome::kDown, "connect timeout", now_ns);
  }
  if (link_.ShouldConnect(now_ns)) Connect(now_ns);
}

int64_t RedisStore::NextDeadline() const {
  if (!pending_.empty()) return pending_.front().deadline;
  if (link_.state() == StoreLink::State::kDown) return link_.next_attempt_ns();
  return 0;
}

}  // namespace lb::l7
