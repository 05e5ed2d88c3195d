#include "dataplane/l7/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/l7/conn.h"
#include "dataplane/l7/redis_store.h"
#include "dataplane/l7/tls.h"
#include "dataplane/l7/upstream_tls.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

using google::protobuf::util::MessageDifferencer;

namespace {

constexpr int kTickMs = 50;
constexpr int kMaxEvents = 256;

// `v` as 16 lowercase hex digits at out[0, 16), by hand (StrFormat's parse
// of the format showed in the per-request profile).
void Hex16(uint64_t v, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) out[15 - i] = kHex[(v >> (4 * i)) & 15];
}

}  // namespace

void ClientSink::OnHead(const MessageHead&) { w->ClientHead(c); }
void ClientSink::OnBody(const char* data, size_t n) { w->ClientBody(c, data, n); }
void ClientSink::OnComplete() { w->ClientRequestDone(c); }
void UpstreamSink::OnHead(const MessageHead&) { w->UpstreamHead(u); }
void UpstreamSink::OnBody(const char* data, size_t n) { w->UpstreamBody(u, data, n); }
void UpstreamSink::OnComplete() { w->UpstreamDone(u); }

Worker::Worker(int id, const RuntimeConfig* config, WorkerCounters* counters,
               const std::vector<ActiveCounts*>& active)
    : id_(id), config_(config), counters_(counters), active_(active) {
  // Backends are trusted more than clients, but their heads are still bounded.
  upstream_limits_.max_header_bytes = 65536;
  upstream_limits_.max_header_count = 256;
  upstream_limits_.max_body_bytes = 0;
  std::random_device rd;
  id_seed_ = (uint64_t{rd()} << 32) ^ rd() ^ (uint64_t(id) << 56);
  // The seed half of every request id, written once (NextRequestId writes
  // the sequence half).
  Hex16(id_seed_, request_id_);
  int slot = 0;
  for (size_t p = 0; p < config_->pools.size(); ++p) {
    const PoolConfig& pc = config_->pools[p];
    std::vector<uint32_t> weights;
    for (const BackendConfig& b : pc.backends) weights.push_back(b.weight);
    balancers_.emplace_back(pc.algorithm, std::move(weights), pc.health, id_seed_ + p, active[p]);
    balancers_.back().SetRing(pc.ring.get());
    std::vector<int32_t> limits;
    for (const BackendConfig& b : pc.backends) limits.push_back(b.max_connections);
    balancers_.back().SetLimits(std::move(limits));
    budgets_.emplace_back(pc.retry_budget_percent, pc.retry_budget_min);
    idle_.emplace_back(pc.backends.size());
    up_sessions_.emplace_back(pc.backends.size(), nullptr);
    backend_base_.push_back(slot);
    slot += static_cast<int>(pc.backends.size());
  }
  queue_.resize(config_->pools.size());
  int rslot = 0;
  for (const ListenerConfig& l : config_->listeners) {
    route_base_.push_back(rslot);
    rslot += static_cast<int>(l.route_names.size());
  }
}

Worker::~Worker() {
  for (const Handed& h : handed_) {  // handed over after Run() returned
    if (h.ssl != nullptr) SSL_free(h.ssl);
    if (h.h2 != nullptr) DestroyH2Conn(h.h2);
    close(h.fd);
  }
  for (ClientConn* c : clients_) {
    if (c->fd >= 0) close(c->fd);
    if (c->h2 != nullptr) DestroyH2Conn(c->h2);
    delete c;
  }
  for (UpstreamConn* u : upstreams_) {
    if (u->fd >= 0) close(u->fd);
    delete u;
  }
  for (Pollable* p : dead_) delete p;
  for (auto& pool : up_sessions_) {
    for (SSL_SESSION* s : pool) SSL_SESSION_free(s);  // null-safe
  }
  // The wake eventfd sits in listeners_ too: closed once, below. (Workers
  // are destroyed while others run since configurations change live: a
  // second close could hit a descriptor another thread just opened.)
  for (auto& l : listeners_) {
    if (l->kind == Kind::kListener && l->fd >= 0) close(l->fd);
  }
  if (wakefd_ >= 0) close(wakefd_);
  if (epfd_ >= 0) close(epfd_);
}

int64_t Worker::Now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

absl::string_view Worker::NextRequestId() {
  ++request_seq_;
  // "%016x%016x" of the seed and the sequence, into the worker's buffer (a
  // std::string of 32 would be allocated per request).
  Hex16(request_seq_, request_id_ + 16);
  return absl::string_view(request_id_, sizeof(request_id_));
}

int Worker::ListenerFd(const std::string& addr_text) const {
  for (const auto& l : listeners_) {
    if (l->kind == Kind::kListener && l->fd >= 0 &&
        config_->listeners[l->index].addr.text == addr_text) {
      return l->fd;
    }
  }
  return -1;
}

absl::Status Worker::Open(const Worker* predecessor) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  auto wake = std::make_unique<Pollable>();
  wake->kind = Kind::kWake;
  wake->fd = wakefd_;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = wake.get();
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
  listeners_.push_back(std::move(wake));  // owned with the listeners; fd closed separately
  for (const StickyStoreConfig& sc : config_->stores) {
    stores_.push_back(std::make_unique<RedisStore>(sc, epfd_, counters_, id_));
  }
  for (size_t i = 0; i < config_->listeners.size(); ++i) {
    const ListenerConfig& lc = config_->listeners[i];
    if (const int inherited = predecessor ? predecessor->ListenerFd(lc.addr.text) : -1;
        inherited >= 0) {
      // The same socket (one open file description): the kernel keeps its
      // place in the SO_REUSEPORT group and its accept queue.
      const int fd = fcntl(inherited, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) return absl::InternalError(absl::StrCat("dup listener: ", strerror(errno)));
      auto l = std::make_unique<Pollable>();
      l->kind = Kind::kListener;
      l->fd = fd;
      l->index = static_cast<int>(i);
      SetInterest(l.get(), EPOLLIN);
      listeners_.push_back(std::move(l));
      continue;
    }
    const int fd = socket(lc.addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    // One socket per worker on the same address: the kernel spreads new
    // connections over them (no shared accept queue, no thundering herd).
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (lc.addr.ss.ss_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<const sockaddr*>(&lc.addr.ss), lc.addr.len) != 0 ||
        listen(fd, 1024) != 0) {
      const int e = errno;
      close(fd);
      return absl::UnavailableError(
          absl::StrCat("listeners[", i, "] (", lc.name, ") ", lc.addr.text, ": ", strerror(e)));
    }
    auto l = std::make_unique<Pollable>();
    l->kind = Kind::kListener;
    l->fd = fd;
    l->index = static_cast<int>(i);
    SetInterest(l.get(), EPOLLIN);
    listeners_.push_back(std::move(l));
  }
  return absl::OkStatus();
}

void Worker::RequestStop(int64_t drain_ms, int64_t idle_grace_ms) {
  idle_grace_ns_.store(idle_grace_ms * 1'000'000, std::memory_order_relaxed);
  stop_deadline_ns_.store(Now() + drain_ms * 1'000'000, std::memory_order_release);
  const uint64_t one = 1;
  // The eventfd write wakes the loop; the deadline store above happens before
  // it, and the worker reads the deadline after it wakes.
  ssize_t r = write(wakefd_, &one, sizeof(one));
  (void)r;
}

void Worker::RequestRetire(Worker* successor, int64_t drain_ms, int64_t idle_grace_ms) {
  // Read by this worker's thread after the wake (RequestStop's release).
  successor_listener_.assign(config_->listeners.size(), -1);
  if (successor != nullptr) {
    for (size_t i = 0; i < config_->listeners.size(); ++i) {
      successor_listener_[i] = successor->SuccessorListenerIndex(config_->listeners[i]);
    }
  }
  successor_.store(successor, std::memory_order_release);  // after successor_listener_
  RequestStop(drain_ms, idle_grace_ms);
}

int Worker::SuccessorListenerIndex(const ListenerConfig& old) const {
  if (old.passthrough) return -1;
  for (size_t i = 0; i < config_->listeners.size(); ++i) {
    const ListenerConfig& l = config_->listeners[i];
    if (l.addr.text != old.addr.text || l.passthrough || l.tls != old.tls) continue;
    // A TLS connection keeps the SSL_CTX it was accepted with: only where
    // the TLS settings (certificates, client authentication, ALPN...) are
    // the same, so a connection never skips a policy the new listener has.
    if (l.tls && !MessageDifferencer::Equals(l.tls_config, old.tls_config)) return -1;
    return static_cast<int>(i);
  }
  return -1;
}

bool Worker::Adopt(Handed h) {
  {
    std::lock_guard<std::mutex> l(handed_mu_);
    if (handed_closed_) return false;
    handed_.push_back(std::move(h));
  }
  const uint64_t one = 1;
  ssize_t r = write(wakefd_, &one, sizeof(one));
  (void)r;
  return true;
}

bool Worker::Handable(const ClientConn* c) const {
  const Worker* s = successor_.load(std::memory_order_acquire);
  return s != nullptr && c->h2_parent == nullptr && !c->passthrough && !c->tunnel &&
         (c->ssl != nullptr ? !c->handshaking : c->h2_checked) &&
         static_cast<size_t>(c->listener) < successor_listener_.size() &&
         successor_listener_[c->listener] >= 0;
}

// A TLS connection moves only where no byte is inside OpenSSL: no
// decrypted plaintext nor unprocessed record in the read buffer
// (SSL_has_pending covers both; the read BIO is the socket, which buffers
// nothing), no SSL_read or SSL_write waiting for the other direction, and
// no record half written (out is empty, so the last SSL_write completed).
// Otherwise it stays and drains as on a stop.
static bool TlsQuiet(const ClientConn* c) {
  if (c->ssl == nullptr) return true;
  return !c->handshaking && !c->ssl_read_wants_write && !c->ssl_write_wants_read &&
         SSL_pending(c->ssl) == 0 && SSL_has_pending(c->ssl) == 0 &&
         BIO_pending(SSL_get_rbio(c->ssl)) == 0 && BIO_wpending(SSL_get_wbio(c->ssl)) == 0;
}

void Worker::HandOverIdle() {
  Worker* s = successor_.load(std::memory_order_relaxed);
  std::vector<ClientConn*> busy_h2;
  const int64_t h2_giveup = drain_started_ns_ + idle_grace_ns_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < clients_.size();) {
    ClientConn* c = clients_[i];
    const bool between =
        c->h2 != nullptr ? c->state == ClientConn::State::kActive && !c->h2_dirty && H2Quiet(c->h2)
                         : c->state == ClientConn::State::kWaiting && !c->parser.started() &&
                               c->up == nullptr && !c->queued && !c->store_wait;
    if (!Handable(c) || c->dead || !between || !c->in.empty() || !c->out.empty() || c->read_eof ||
        c->tls_ready || !TlsQuiet(c)) {
      // HTTP/2 moves once idle within the idle grace; one still busy then
      // gets GOAWAY as on a stop (its client could keep it busy forever).
      if (c->h2 != nullptr && !c->dead && !H2ShuttingDown(c->h2) && Now() >= h2_giveup) {
        busy_h2.push_back(c);
      }
      ++i;
      continue;
    }
    Handed h;
    h.fd = c->fd;
    h.listener = successor_listener_[c->listener];
    h.peer_ip = c->peer_ip;
    h.ipv6 = c->ipv6;
    h.ip_hash = c->ip_hash;
    h.ssl = c->ssl;
    h.tls = c->tls;
    h.client_subject = c->client_subject;
    h.h2 = c->h2;
    SetInterest(c, 0);  // out of this worker's epoll before the successor adds it
    if (!s->Adopt(std::move(h))) {
      // The successor is gone (a later change retired it too): this
      // connection is no longer handable; it closes as on a stop.
      // Idle ones get the stop's grace (BeginDrain).
      successor_.store(nullptr, std::memory_order_relaxed);
      UpdateClient(c);
      const int64_t until = Now() + idle_grace_ns_.load(std::memory_order_relaxed);
      std::vector<ClientConn*> h2;
      for (ClientConn* w : clients_) {
        if (w->h2 != nullptr && !H2ShuttingDown(w->h2)) h2.push_back(w);
        if (w->h2 == nullptr && w->state == ClientConn::State::kWaiting && !w->parser.started() &&
            w->in.empty() && (w->deadline == 0 || w->deadline > until)) {
          w->deadline = until;
        }
      }
      for (ClientConn* w : h2) {
        if (!w->dead) H2Drain(w);
      }
      return;
    }
    c->fd = -1;  // the successor owns it now (and its SSL)
    c->ssl = nullptr;
    c->h2 = nullptr;
    clients_[c->pos] = clients_.back();
    clients_[c->pos]->pos = c->pos;
    clients_.pop_back();
    counters_->connections_open.Sub();
    Graveyard(c);
    // clients_[i] is now another connection: look at it too.
  }
  for (ClientConn* c : busy_h2) {
    if (!c->dead) H2Drain(c);
  }
}

void Worker::AdoptHanded() {
  std::vector<Handed> handed;
  {
    std::lock_guard<std::mutex> l(handed_mu_);
    handed.swap(handed_);
  }
  for (Handed& h : handed) {
    auto* c = new ClientConn(config_->limits);
    c->kind = Kind::kClient;
    c->fd = h.fd;
    c->listener = h.listener;
    c->sink.w = this;
    c->sink.c = c;
    c->peer_ip = std::move(h.peer_ip);
    c->ipv6 = h.ipv6;
    c->ip_hash = h.ip_hash;
    c->h2_checked = true;  // HTTP/1.1 or HTTP/2 already
    c->ssl = h.ssl;        // handshake done; SSL_read will say when bytes come
    c->tls = std::move(h.tls);
    c->client_subject = std::move(h.client_subject);
    c->ssl_read_blocked = c->ssl != nullptr;  // nothing inside OpenSSL (TlsQuiet)
    c->state = ClientConn::State::kWaiting;
    if (h.h2 != nullptr) {
      // The session keeps the settings it announced (concurrent streams,
      // windows, limits) until the connection ends.
      c->h2 = h.h2;
      RebindH2(c->h2, this, c);
      c->state = ClientConn::State::kActive;
      c->req_done = true;  // the connection itself carries no request
    }
    c->head_timer = false;
    c->deadline = Now() + config_->timeouts.idle_ns;
    if (draining_ && successor_.load(std::memory_order_relaxed) == nullptr) {
      // Stopping too (SIGTERM while a change retires): the stop's grace.
      c->deadline = std::min(c->deadline, Now() + idle_grace_ns_.load(std::memory_order_relaxed));
    }
    c->pos = clients_.size();
    clients_.push_back(c);
    counters_->connections_adopted.Add();
    counters_->connections_open.Add();
    UpdateClient(c);
    // Bytes that came while it moved raise an event now (level-triggered).
  }
}

void Worker::SetInterest(Pollable* p, uint32_t events) {
  if (p->dead || p->fd < 0) return;
  if (p->interest == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = p;
  if (p->interest == 0 && events != 0) {
    epoll_ctl(epfd_, EPOLL_CTL_ADD, p->fd, &ev);
  } else if (events == 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, p->fd, nullptr);
  } else {
    epoll_ctl(epfd_, EPOLL_CTL_MOD, p->fd, &ev);
  }
  p->interest = events;
}

void Worker::Graveyard(Pollable* p) {
  p->dead = true;
  dead_.push_back(p);
}

void Worker::Run() {
  epoll_event events[kMaxEvents];
  int64_t next_tick = Now() + kTickMs * 1'000'000LL;
  while (true) {
    RefreshTls();  // one acquire load per turn; new connections get the new generation
    int wait_ms = tls_ready_.empty() && up_tls_ready_.empty() && h2_dirty_.empty() ? kTickMs : 0;
    for (const auto& s : stores_) {
      // A store lookup's timeout is finer than the tick.
      const int64_t d = s->NextDeadline();
      if (d != 0 && wait_ms > 0) {
        const int64_t ms = (d - Now()) / 1'000'000 + 1;
        wait_ms = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(wait_ms, ms)));
      }
    }
    const int n = epoll_wait(epfd_, events, kMaxEvents, wait_ms);
    for (int i = 0; i < n; ++i) {
      auto* p = static_cast<Pollable*>(events[i].data.ptr);
      if (p->dead) continue;  // closed by an earlier event of this batch
      switch (p->kind) {
        case Kind::kListener:
          OnListener(p);
          break;
        case Kind::kClient:
          OnClient(static_cast<ClientConn*>(p), events[i].events);
          break;
        case Kind::kUpstream:
          OnUpstream(static_cast<UpstreamConn*>(p), events[i].events);
          break;
        case Kind::kStore: {
          auto* st = static_cast<RedisStore*>(p);
          st->OnEvent(events[i].events);
          StoreResults(st);
          break;
        }
        case Kind::kWake: {
          uint64_t v;
          ssize_t r = read(wakefd_, &v, sizeof(v));
          (void)r;
          break;
        }
      }
    }
    AdoptHanded();
    RunTlsReady();
    for (auto& st : stores_) {
      st->OnTimer(Now());
      StoreResults(st.get());
    }
    if (queued_total_ > 0) ServeQueues();
    RunH2Dirty();
    // Freed only now: later events of the batch may still point at them.
    for (Pollable* p : dead_) delete p;
    dead_.clear();
    const int64_t now = Now();
    if (!draining_ && stop_deadline_ns_.load(std::memory_order_acquire) != 0) BeginDrain();
    if (draining_ && successor_.load(std::memory_order_relaxed) != nullptr) HandOverIdle();
    if (now >= next_tick) {
      next_tick = now + kTickMs * 1'000'000LL;
      OnTick(now);
      RunH2Dirty();
      FlushAccessLog();
      for (Pollable* p : dead_) delete p;
      dead_.clear();
    }
    if (draining_) {
      if (clients_.empty()) break;
      if (now >= stop_deadline_ns_.load(std::memory_order_acquire)) {
        LOG(WARNING) << "worker " << id_ << ": drain deadline passed with " << clients_.size()
                     << " client connection(s) open; closing them";
        while (!clients_.empty()) CloseClient(clients_.back());
        break;
      }
    }
  }
  while (!upstreams_.empty()) CloseUpstream(upstreams_.back());
  FlushAccessLog();
  for (Pollable* p : dead_) delete p;
  dead_.clear();
  // Connections handed over from now on stay with their predecessor, and
  // those that came in the last turn close with this worker (~Worker).
  std::lock_guard<std::mutex> l(handed_mu_);
  handed_closed_ = true;
}

void Worker::BeginDrain() {
  draining_ = true;
  drain_started_ns_ = Now();
  for (auto& l : listeners_) {
    if (l->kind != Kind::kListener || l->fd < 0) continue;
    SetInterest(l.get(), 0);
    close(l->fd);
    l->fd = -1;
  }
  // Busy connections close after their response (which then carries
  // Connection: close). Connections between requests get the idle grace:
  // their timer fires at the latest when it ends (OnTick closes a waiting
  // connection that has not started a request); a request that arrives
  // before is answered with Connection: close. Without a grace they close
  // now.
  const int64_t grace = idle_grace_ns_.load(std::memory_order_relaxed);
  const int64_t until = Now() + grace;
  std::vector<ClientConn*> idle;
  for (ClientConn* c : clients_) {
    if (c->h2 != nullptr) {
      // Handed over in this turn if idle, else GOAWAY (HandOverIdle).
      if (!Handable(c)) H2Drain(c);
      continue;
    }
    if (Handable(c)) continue;  // handed over once between requests (HandOverIdle)
    if (c->state != ClientConn::State::kWaiting || c->parser.started() || !c->in.empty()) continue;
    if (grace <= 0) {
      idle.push_back(c);
    } else if (c->deadline == 0 || c->deadline > until) {
      c->deadline = until;
    }
  }
  for (ClientConn* c : idle) CloseClient(c);
}

void Worker::OnListener(Pollable* l) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    const int fd =
        accept4(l->fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or an error of that connection only
    if (clients_.size() - h2_streams_ >= config_->max_connections) {
      close(fd);
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto* c = new ClientConn(config_->limits);
    c->kind = Kind::kClient;
    c->fd = fd;
    c->listener = l->index;
    c->sink.w = this;
    c->sink.c = c;
    char buf[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
        inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof(buf));
        c->ip_hash = Fnv1a(&a->sin6_addr.s6_addr[12], 4);
      } else {
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
        c->ipv6 = true;
        c->ip_hash = Fnv1a(&a->sin6_addr, 16);
      }
    } else {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
      c->ip_hash = Fnv1a(&a->sin_addr, 4);
    }
    c->peer_ip = buf;
    c->passthrough = config_->listeners[l->index].passthrough;
    c->deadline = Now() + (c->passthrough ? config_->listeners[l->index].pt.client_hello_ns
                                          : config_->timeouts.client_header_ns);
    c->head_timer = true;
    if (!StartTls(c)) {
      close(fd);
      delete c;
      continue;
    }
    c->pos = clients_.size();
    clients_.push_back(c);
    counters_->connections_accepted.Add();
    counters_->connections_open.Add();
    UpdateClient(c);
    // The ClientHello usually came with the connection (the client sends it
    // as soon as connect returns): start the handshake now rather than after
    // another epoll_wait round, as HAProxy does. If it is not there yet this
    // costs one read that answers EAGAIN.
    if (c->ssl != nullptr) OnClient(c, EPOLLIN);
  }
}

// ------------------------------------------------------------- access log ---

void Worker::LogRequest(ClientConn* c) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char when[96];
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
           t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1'000'000);
  const ListenerConfig& lc = config_->listeners[c->listener];
  std::string& o = log_buf_;
  absl::StrAppend(&o, "ts=", when, " rid=", c->rid.empty() ? "-" : c->rid, " client=", c->peer_ip,
                  " listener=", lc.name, " route=");
  const bool routed = c->route >= 0 && static_cast<size_t>(c->route) < lc.route_names.size();
  o += routed ? lc.route_names[c->route] : "-";
  absl::StrAppend(&o, " pool=", c->pool >= 0 ? config_->pools[c->pool].name : "-", " backend=",
                  c->backend >= 0 && c->pool >= 0
                      ? config_->pools[c->pool].backends[c->backend].addr.text
                      : "-",
                  " method=");
  if (c->req.method.empty()) o += "-";
  AppendEscaped(c->req.method, &o);
  o += " path=";
  if (c->req.origin_form.empty()) o += "-";
  AppendEscaped(c->req.origin_form, &o);
  absl::StrAppend(&o, " status=", c->status,
                  " req_body=", c->h2_parent != nullptr ? c->h2_body : c->parser.body_bytes(),
                  " resp_bytes=", c->out.appended() - c->out_mark, " ms=",
                  absl::StrFormat("%.3f", c->t_start == 0 ? 0.0 : (Now() - c->t_start) / 1e6),
                  " attempts=", c->tried.size() + (c->local ? 0 : 1),
                  c->h2_parent != nullptr ? " proto=h2\n" : " proto=http/1.1\n");
  ++log_lines_;
  if (log_buf_.size() >= 256 * 1024) FlushAccessLog();
}

void Worker::FlushAccessLog() {
  if (access_log_ == nullptr || log_buf_.empty()) return;
  access_log_->Submit(&log_buf_, log_lines_);
  log_lines_ = 0;
}

// ----------------------------------------------------------------- timers ---

void Worker::OnTick(int64_t now) {
  CloseDrainingIdle();
  for (size_t i = 0; i < clients_.size();) {
    ClientConn* c = clients_[i];
    if (c->deadline != 0 && now >= c->deadline && !c->store_wait) ClientTimedOut(c, now);
    // CloseClient moved the last connection into slot i: look at it next.
    if (i < clients_.size() && clients_[i] == c) ++i;
  }
  for (size_t i = 0; i < upstreams_.size();) {
    UpstreamConn* u = upstreams_[i];
    ClientConn* c = u->client;
    // Not the backend's turn: the client is slow to read the answer, the
    // client is still sending a body the backend keeps up with, or a tunnel
    // (idle timer on the client side).
    const bool paused =
        c != nullptr && (c->out.size() >= config_->buffer_bytes || (u->tunnel && !u->connecting) ||
                         (!c->req_done && u->out.size() < config_->buffer_bytes));
    if (now >= u->deadline && !paused) UpstreamTimedOut(u);
    if (i < upstreams_.size() && upstreams_[i] == u) ++i;
  }
}

void Worker::ClientTimedOut(ClientConn* c, int64_t now) {
  c->deadline = 0;
  if (c->queued) {
    Unqueue(c);
    counters_->queue_timeouts.Add();
    LocalResponse(c, 503, "backend queue timeout", !c->req_done);
    ClientFlush(c);
    return;
  }
  if (c->h2 != nullptr && c->state == ClientConn::State::kActive) {
    H2Tick(c, now);
    return;
  }
  switch (c->state) {
    case ClientConn::State::kWaiting:
      if (c->passthrough) {
        // No complete ClientHello in time (nothing is sent: not HTTP).
        CountPassthroughFailure(c, PassthroughFail::kTimeout);
        CloseClient(c);
      } else if (c->parser.started() || !c->in.empty()) {
        counters_->client_timeouts.Add();
        LocalResponse(c, 408, "request header timeout", true);
      } else {
        if (c->handshaking) CountTlsFailure(c, static_cast<int>(TlsFail::kTimeout));
        CloseClient(c);
      }
      break;
    case ClientConn::State::kActive:
      if (c->tunnel) {
        CloseClient(c);  // idle tunnel (closes the upstream side too)
        break;
      }
      if (!c->req_done && c->up != nullptr && c->up->out.size() >= config_->buffer_bytes) {
        // The backend is not taking the body: its timer runs, not ours.
        c->deadline = now + config_->timeouts.client_body_ns;
        break;
      }
      if (!c->req_done) {
        counters_->client_timeouts.Add();
        if (!c->resp_started) {
          LocalResponse(c, 408, "request body timeout", true);
        } else {
          CloseClient(c);
        }
      }
      break;
    case ClientConn::State::kClosing:
    case ClientConn::State::kLingering:
      CloseClient(c);
      break;
  }
}

void Worker::UpstreamTimedOut(UpstreamConn* u) {
  ClientConn* c = u->client;
  if (u->connecting) {
    if (u->handshaking) {
      counters_->upstream_tls_failures[static_cast<int>(UpstreamTlsFail::kTimeout)].Add();
    }
    UpstreamFailed(u, true, "backend connect timeout");
  } else if (c == nullptr) {
    CloseUpstream(u);
  } else {
    counters_->upstream_timeouts.Add();
    if (!c->resp_started) {
      AbandonUpstream(c);
      LocalResponse(c, 504, "backend response timeout", !c->req_done);
      ClientFlush(c);
    } else {
      CloseClient(c);
    }
  }
}

}  // namespace lb::l7
