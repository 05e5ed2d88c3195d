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
#include "glog/logging.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

namespace {

constexpr int kTickMs = 50;
constexpr int kMaxEvents = 256;
constexpr size_t kReadChunk = 65536;
// After an error response: read and discard what the client still sends for
// this long (or this much) so that our close does not reset the connection
// before the client has read the answer (lingering close, as nginx does).
constexpr int64_t kLingerNs = 2'000'000'000;
constexpr size_t kLingerBytes = 4 << 20;

// A growable byte queue: appended at the back, consumed from the front.
class Buffer {
 public:
  size_t size() const { return data_.size() - off_; }
  bool empty() const { return size() == 0; }
  const char* data() const { return data_.data() + off_; }
  void Append(const char* p, size_t n) {
    data_.append(p, n);
    appended_ += n;
  }
  void Append(absl::string_view s) { Append(s.data(), s.size()); }
  // Bytes ever appended (the access log's response size).
  uint64_t appended() const { return appended_; }
  void Consume(size_t n) {
    off_ += n;
    if (off_ == data_.size()) {
      data_.clear();
      off_ = 0;
    } else if (off_ >= 65536 && off_ * 2 >= data_.size()) {
      data_.erase(0, off_);
      off_ = 0;
    }
  }
  std::string Take() {
    std::string s = data_.substr(off_);
    Clear();
    return s;
  }
  void Clear() {
    data_.clear();
    off_ = 0;
  }
  // An idle connection keeps no buffer memory.
  void Shrink() {
    if (empty() && data_.capacity() > 0) {
      std::string().swap(data_);
      off_ = 0;
    }
  }

 private:
  std::string data_;
  size_t off_ = 0;
  uint64_t appended_ = 0;
};

uint64_t Fnv1a(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<const unsigned char*>(p)[i];
    h *= 1099511628211ULL;
  }
  return h;
}

bool IsIdempotent(absl::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

void AppendChunk(Buffer* b, const char* data, size_t n) {
  char hex[24];
  const int len = snprintf(hex, sizeof(hex), "%zx\r\n", n);
  b->Append(hex, static_cast<size_t>(len));
  b->Append(data, n);
  b->Append("\r\n", 2);
}

}  // namespace

enum class Kind { kListener, kClient, kUpstream, kWake };

struct Pollable {
  Kind kind;
  int fd = -1;
  uint32_t interest = 0;
  bool dead = false;
  int index = 0;   // listener index (kListener)
  size_t pos = 0;  // slot in the worker's clients_/upstreams_
  virtual ~Pollable() = default;
};

struct ClientSink : Http1Sink {
  Worker* w;
  ClientConn* c;
  void OnHead(const MessageHead&) override;
  void OnBody(const char* data, size_t n) override;
  void OnComplete() override;
};

struct UpstreamSink : Http1Sink {
  Worker* w;
  UpstreamConn* u;
  void OnHead(const MessageHead&) override;
  void OnBody(const char* data, size_t n) override;
  void OnComplete() override;
};

struct ClientConn : Pollable {
  ClientConn(const Http1Limits& limits) : parser(Http1Parser::Kind::kRequest, limits) {}
  enum class State { kWaiting, kActive, kClosing, kLingering };
  State state = State::kWaiting;
  int listener = 0;
  std::string peer_ip;
  bool ipv6 = false;
  uint64_t ip_hash = 0;
  Buffer in, out;
  Http1Parser parser;
  ClientSink sink;
  bool read_eof = false;
  bool in_pump = false;
  bool head_timer = false;  // the header timeout runs for this request
  int64_t deadline = 0;     // timer of the current state
  size_t lingered = 0;

  // The current request (one at a time: pipelined requests wait in `in`,
  // so responses go out in order).
  MessageHead req;
  int route = -1, pool = -1, backend = -1;
  std::vector<int> tried;
  UpstreamConn* up = nullptr;
  std::string up_head;  // kept for a retry while the request has no body
  bool req_done = false;
  bool resp_started = false;
  bool local = false;  // answered by lb-l7 itself; body discarded
  bool keep_alive = false;
  ClientFraming framing = ClientFraming::kNone;
  int status = 0;
  bool tunnel = false;    // after a 101: raw bytes both ways
  int64_t t_start = 0;    // head accepted (monotonic ns)
  uint64_t out_mark = 0;  // out.appended() when the head was accepted
  std::string rid;        // X-Request-ID sent upstream
};

struct UpstreamConn : Pollable {
  UpstreamConn(const Http1Limits& limits) : parser(Http1Parser::Kind::kResponse, limits) {}
  int pool = 0, backend = 0;
  bool connecting = false;
  bool reused = false;  // served a request before this one
  ClientConn* client = nullptr;
  Buffer out;
  Http1Parser parser;
  UpstreamSink sink;
  int64_t deadline = 0;
  bool extra_bytes = false;
  bool response_done = false;
  bool tunnel = false;
  bool bad = false;
};

void ClientSink::OnHead(const MessageHead&) { w->ClientHead(c); }
void ClientSink::OnBody(const char* data, size_t n) { w->ClientBody(c, data, n); }
void ClientSink::OnComplete() { w->ClientRequestDone(c); }
void UpstreamSink::OnHead(const MessageHead&) { w->UpstreamHead(u); }
void UpstreamSink::OnBody(const char* data, size_t n) { w->UpstreamBody(u, data, n); }
void UpstreamSink::OnComplete() { w->UpstreamDone(u); }

Worker::Worker(int id, const RuntimeConfig* config, WorkerCounters* counters,
               const std::vector<ActiveCounts*>& active)
    : id_(id), config_(config), counters_(counters) {
  // Backends are trusted more than clients, but their heads are still bounded.
  upstream_limits_.max_header_bytes = 65536;
  upstream_limits_.max_header_count = 256;
  upstream_limits_.max_body_bytes = 0;
  std::random_device rd;
  id_seed_ = (uint64_t{rd()} << 32) ^ rd() ^ (uint64_t(id) << 56);
  int slot = 0;
  for (size_t p = 0; p < config_->pools.size(); ++p) {
    const PoolConfig& pc = config_->pools[p];
    std::vector<uint32_t> weights;
    for (const BackendConfig& b : pc.backends) weights.push_back(b.weight);
    balancers_.emplace_back(pc.algorithm, std::move(weights), pc.health, id_seed_ + p, active[p]);
    idle_.emplace_back(pc.backends.size());
    backend_base_.push_back(slot);
    slot += static_cast<int>(pc.backends.size());
  }
  int rslot = 0;
  for (const ListenerConfig& l : config_->listeners) {
    route_base_.push_back(rslot);
    rslot += static_cast<int>(l.route_names.size());
  }
}

Worker::~Worker() {
  for (ClientConn* c : clients_) {
    if (c->fd >= 0) close(c->fd);
    delete c;
  }
  for (UpstreamConn* u : upstreams_) {
    if (u->fd >= 0) close(u->fd);
    delete u;
  }
  for (Pollable* p : dead_) delete p;
  for (auto& l : listeners_) {
    if (l->fd >= 0) close(l->fd);
  }
  if (wakefd_ >= 0) close(wakefd_);
  if (epfd_ >= 0) close(epfd_);
}

int64_t Worker::Now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string Worker::NextRequestId() {
  ++request_seq_;
  return absl::StrFormat("%016x%016x", id_seed_, request_seq_);
}

absl::Status Worker::Open() {
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
  for (size_t i = 0; i < config_->listeners.size(); ++i) {
    const ListenerConfig& lc = config_->listeners[i];
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

void Worker::RequestStop(int64_t drain_ms) {
  stop_deadline_ns_.store(Now() + drain_ms * 1'000'000, std::memory_order_release);
  const uint64_t one = 1;
  // The eventfd write wakes the loop; the deadline store above happens before
  // it, and the worker reads the deadline after it wakes.
  ssize_t r = write(wakefd_, &one, sizeof(one));
  (void)r;
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
    const int n = epoll_wait(epfd_, events, kMaxEvents, kTickMs);
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
        case Kind::kWake: {
          uint64_t v;
          ssize_t r = read(wakefd_, &v, sizeof(v));
          (void)r;
          break;
        }
      }
    }
    // Freed only now: later events of the batch may still point at them.
    for (Pollable* p : dead_) delete p;
    dead_.clear();
    const int64_t now = Now();
    if (!draining_ && stop_deadline_ns_.load(std::memory_order_acquire) != 0) BeginDrain();
    if (now >= next_tick) {
      next_tick = now + kTickMs * 1'000'000LL;
      OnTick(now);
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
}

void Worker::BeginDrain() {
  draining_ = true;
  for (auto& l : listeners_) {
    if (l->kind != Kind::kListener || l->fd < 0) continue;
    SetInterest(l.get(), 0);
    close(l->fd);
    l->fd = -1;
  }
  // Connections between requests close now; the others after their response
  // (which then carries Connection: close).
  std::vector<ClientConn*> idle;
  for (ClientConn* c : clients_) {
    if (c->state == ClientConn::State::kWaiting && !c->parser.started() && c->in.empty()) {
      idle.push_back(c);
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
    if (clients_.size() >= config_->max_connections) {
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
    c->deadline = Now() + config_->timeouts.client_header_ns;
    c->head_timer = true;
    c->pos = clients_.size();
    clients_.push_back(c);
    counters_->connections_accepted.Add();
    counters_->connections_open.Add();
    UpdateClient(c);
  }
}

// ---------------------------------------------------------------- client ---

void Worker::UpdateClient(ClientConn* c) {
  if (c->dead) return;
  uint32_t ev = 0;
  const size_t in_cap = config_->limits.max_header_bytes + config_->buffer_bytes;
  if (c->state == ClientConn::State::kLingering) {
    ev = EPOLLIN;
  } else {
    if (c->state != ClientConn::State::kClosing && !c->read_eof && c->in.size() < in_cap) {
      ev |= EPOLLIN | EPOLLRDHUP;
    }
    if (!c->out.empty()) ev |= EPOLLOUT;
  }
  SetInterest(c, ev);
}

void Worker::OnClient(ClientConn* c, uint32_t ev) {
  if (c->state == ClientConn::State::kLingering) {
    char buf[16384];
    while (true) {
      const ssize_t r = read(c->fd, buf, sizeof(buf));
      if (r > 0) {
        c->lingered += static_cast<size_t>(r);
        if (c->lingered > kLingerBytes) break;
        continue;
      }
      if (r < 0 && errno == EAGAIN) return;
      break;
    }
    CloseClient(c);
    return;
  }
  if (ev & (EPOLLHUP | EPOLLERR)) {
    // Reset, or shut down both ways: nobody is left to answer.
    CloseClient(c);
    return;
  }
  if (ev & EPOLLOUT) {
    ClientFlush(c);
    if (c->dead) return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP)) {
    ClientRead(c);
    if (c->dead) return;
  }
  UpdateClient(c);
}

void Worker::ClientRead(ClientConn* c) {
  if (c->tunnel) {
    TunnelFromClient(c);
    return;
  }
  const size_t in_cap = config_->limits.max_header_bytes + config_->buffer_bytes;
  bool got = false;
  scratch_.resize(kReadChunk);  // once per worker: no zeroing per read
  while (c->in.size() < in_cap && !c->read_eof) {
    const size_t want = std::min(kReadChunk, in_cap - c->in.size());
    const ssize_t r = read(c->fd, &scratch_[0], want);
    if (r > 0) {
      c->in.Append(scratch_.data(), static_cast<size_t>(r));
      got = true;
      if (static_cast<size_t>(r) < want) break;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (r < 0) {  // reset
      CloseClient(c);
      return;
    }
    c->read_eof = true;
  }
  if (got && c->state == ClientConn::State::kActive && !c->req_done) {
    c->deadline = Now() + config_->timeouts.client_body_ns;
  }
  if (got && c->state == ClientConn::State::kWaiting && !c->head_timer) {
    // First byte of the next request: the header timeout starts, and a
    // slow client cannot push it back by dripping bytes (slowloris).
    c->head_timer = true;
    c->deadline = Now() + config_->timeouts.client_header_ns;
  }
  ClientPump(c);
  if (c->dead) return;
  if (c->read_eof) {
    if (c->state == ClientConn::State::kWaiting) {
      // Closed between requests (or mid-head): nothing to answer.
      CloseClient(c);
      return;
    }
    if (c->state == ClientConn::State::kActive && !c->req_done) {
      // The client gave up in the middle of its request body.
      if (c->up != nullptr) CloseUpstream(c->up);
      CloseClient(c);
      return;
    }
  }
  ClientFlush(c);
}

// Feeds buffered client bytes to the parser as far as back-pressure allows.
void Worker::ClientPump(ClientConn* c) {
  c->in_pump = true;
  PumpLoop(c);
  if (c->dead) return;
  c->in_pump = false;
  // Sent only now: a refusal found in the same read as the head (a bad chunk
  // size, a body over the limit) closes the upstream before any byte left.
  if (c->up != nullptr) UpstreamFlush(c->up);
}

void Worker::PumpLoop(ClientConn* c) {
  while (!c->dead && !c->in.empty()) {
    if (c->state == ClientConn::State::kClosing || c->state == ClientConn::State::kLingering) {
      return;
    }
    if (c->state == ClientConn::State::kActive && c->req_done) return;  // pipelined: wait
    size_t allowed = c->in.size();
    if (c->state == ClientConn::State::kActive && !c->local) {
      // Body: no more than the upstream buffer can take (back-pressure).
      const size_t have = c->up != nullptr ? c->up->out.size() : 0;
      if (have >= config_->buffer_bytes) return;
      allowed = std::min(allowed, config_->buffer_bytes - have);
    }
    const size_t used = c->parser.Feed(c->in.data(), allowed, &c->sink);
    if (c->dead) return;
    c->in.Consume(used);
    if (c->parser.error() != Http1Error::kNone) {
      if (c->state == ClientConn::State::kClosing || c->state == ClientConn::State::kLingering) {
        return;
      }
      counters_->refused_requests.Add();
      VLOG(1) << "refused request from " << c->peer_ip << ": " << c->parser.error_detail();
      if (c->state == ClientConn::State::kActive) {
        // Mid-body (bad chunk size, body too large): the upstream got an
        // unfinished body that no server takes as a request; drop it.
        if (c->up != nullptr) CloseUpstream(c->up);
        if (c->resp_started) {
          CloseClient(c);
          return;
        }
      }
      const int st = c->parser.status();
      LocalResponse(c, st, std::string(ReasonPhrase(st)).c_str(), true);
      return;
    }
    if (used == 0) return;
  }
}

void Worker::ClientHead(ClientConn* c) {
  // The head moves to the connection (swapped: no copy, capacities kept).
  std::swap(c->req, *c->parser.mutable_head());
  const MessageHead& h = c->req;
  c->state = ClientConn::State::kActive;
  c->req_done = false;
  c->resp_started = false;
  c->local = false;
  c->status = 0;
  c->tried.clear();
  c->up = nullptr;
  c->deadline = Now() + config_->timeouts.client_body_ns;
  c->backend = -1;
  c->t_start = Now();
  c->out_mark = c->out.appended();
  c->rid.clear();
  const ListenerConfig& lc = config_->listeners[c->listener];
  c->route = lc.router.Match(h.host, h.origin_form, h.method, &h);
  c->pool = lc.router.PoolOf(c->route);
  if (c->pool < 0) {
    LocalResponse(c, 404, "no route", false);
    return;
  }
  ForwardInfo fi;
  fi.client_ip = c->peer_ip;
  fi.client_ipv6 = c->ipv6;
  fi.listener_port = lc.port;
  fi.fallback_host = lc.addr.text;
  const std::string rid = NextRequestId();
  fi.request_id = rid;
  std::string head;
  c->rid = BuildUpstreamRequest(h, fi, &head, lc.router.RulesOf(c->route));
  const bool bodyless = !h.chunked && h.content_length <= 0;
  if (bodyless) c->up_head = head;
  StartUpstream(c, std::move(head));
}

void Worker::ClientBody(ClientConn* c, const char* data, size_t n) {
  if (c->local || c->up == nullptr) return;  // answered already: discard
  if (c->req.chunked) {
    AppendChunk(&c->up->out, data, n);
  } else {
    c->up->out.Append(data, n);
  }
}

void Worker::ClientRequestDone(ClientConn* c) {
  c->req_done = true;
  c->deadline = 0;  // from now on the upstream timers run
  if (c->local) {
    // Answered already (by lb-l7, or by a backend before the body ended):
    // the body is consumed, next request.
    if (c->state == ClientConn::State::kActive && c->resp_started) FinishStream(c);
    return;
  }
  if (c->up != nullptr) {
    if (c->req.chunked) c->up->out.Append("0\r\n\r\n", 5);
    UpstreamFlush(c->up);
  }
}

void Worker::LocalResponse(ClientConn* c, int status, const char* body, bool close) {
  if (c->up != nullptr) {
    UpstreamConn* u = c->up;
    balancers_[u->pool].End(u->backend);
    u->client = nullptr;
    c->up = nullptr;
    CloseUpstream(u);
  }
  if (c->state != ClientConn::State::kActive) {
    // Refused before a head was accepted: no route, no request to count.
    c->req.Clear();
    c->route = -1;
    c->state = ClientConn::State::kActive;
    close = true;
  }
  c->local = true;
  c->status = status;
  c->resp_started = true;
  const bool bodyless = !c->req.chunked && c->req.content_length <= 0;
  // After a request whose body is still coming we cannot find the next
  // request: close. A bodyless one ends right after its head.
  c->keep_alive = !close && (c->req_done || bodyless) && c->req.keep_alive && !draining_;
  std::string s;
  BuildErrorResponse(status, body, !c->keep_alive, &s);
  c->out.Append(s);
  if (c->req_done || !c->keep_alive) FinishStream(c);
  // else ClientRequestDone (right after this head) finishes the stream.
}

void Worker::FinishStream(ClientConn* c) {
  if (c->dead) return;
  const ListenerConfig& lc = config_->listeners[c->listener];
  if (c->status != 0 && c->route >= 0 && static_cast<size_t>(c->route) < lc.route_names.size()) {
    counters_->route_requests[(route_base_[c->listener] + c->route) * 5 + StatusClass(c->status)]
        .Add();
  }
  if (c->status != 0 && c->backend >= 0 && c->pool >= 0 && !c->local) {
    counters_->backend_requests[BackendSlot(c->pool, c->backend) * 5 + StatusClass(c->status)]
        .Add();
  }
  if (c->status != 0 && access_log_ != nullptr) LogRequest(c);
  c->status = 0;  // counted and logged once
  if (!c->req_done && c->keep_alive && !c->read_eof && !draining_) {
    // Answered before the request body ended (the backend did not want it):
    // read and drop the rest of the body, as nginx does, then go on with the
    // next request. Bounded by max_body_bytes and the body timeout.
    if (c->up != nullptr) {
      UpstreamConn* u = c->up;
      balancers_[u->pool].End(u->backend);
      u->client = nullptr;
      c->up = nullptr;
      CloseUpstream(u);
    }
    c->local = true;
    ClientFlush(c);
    return;
  }
  const bool keep = c->keep_alive && c->req_done && !c->read_eof && !draining_;
  c->up = nullptr;
  c->up_head.clear();
  c->backend = -1;
  if (!keep) {
    c->state = ClientConn::State::kClosing;
    ClientFlush(c);
    return;
  }
  c->state = ClientConn::State::kWaiting;
  c->parser.Reset();
  c->head_timer = false;
  c->deadline = Now() + config_->timeouts.idle_ns;
  if (c->in.empty()) c->in.Shrink();
  if (!c->in_pump) ClientPump(c);  // a pipelined request may be waiting
  if (c->dead) return;
  ClientFlush(c);
}

void Worker::ClientFlush(ClientConn* c) {
  if (c->dead) return;
  while (!c->out.empty()) {
    const ssize_t n = send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c->out.Consume(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (c->up != nullptr) {
      UpstreamConn* u = c->up;
      balancers_[u->pool].End(u->backend);
      u->client = nullptr;
      c->up = nullptr;
      CloseUpstream(u);
    }
    CloseClient(c);
    return;
  }
  if (c->out.empty()) c->out.Shrink();
  if (c->up != nullptr && c->out.size() < config_->buffer_bytes) UpdateUpstream(c->up);
  if (c->out.empty() && c->state == ClientConn::State::kClosing) {
    if (c->read_eof) {
      CloseClient(c);
      return;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = ClientConn::State::kLingering;
    c->deadline = Now() + kLingerNs;
  }
  UpdateClient(c);
}

void Worker::CloseClient(ClientConn* c) {
  if (c->dead) return;
  if (c->up != nullptr) {
    UpstreamConn* u = c->up;
    balancers_[u->pool].End(u->backend);
    u->client = nullptr;
    c->up = nullptr;
    CloseUpstream(u);
  }
  close(c->fd);
  c->fd = -1;
  clients_[c->pos] = clients_.back();
  clients_[c->pos]->pos = c->pos;
  clients_.pop_back();
  counters_->connections_open.Sub();
  Graveyard(c);
}

// -------------------------------------------------------------- upstream ---

void Worker::Attach(ClientConn* c, UpstreamConn* u, int backend) {
  u->client = c;
  u->response_done = false;
  u->extra_bytes = false;
  u->parser.Reset();
  u->parser.SetRequestWasHead(c->req.method == "HEAD");
  u->deadline = Now() + (u->connecting ? config_->timeouts.upstream_connect_ns
                                       : config_->timeouts.upstream_response_ns);
  c->up = u;
  c->backend = backend;
  balancers_[u->pool].Begin(backend);
}

void Worker::StartUpstream(ClientConn* c, std::string pending) {
  const PoolConfig& pc = config_->pools[c->pool];
  Balancer& bal = balancers_[c->pool];
  while (true) {
    const int b = bal.Pick(c->ip_hash, Now(), c->tried);
    if (b < 0) {
      if (c->tried.empty()) {
        counters_->no_backend.Add();
        LocalResponse(c, 503, "no backend available", false);
      } else {
        LocalResponse(c, 502, "cannot connect to a backend", false);
      }
      return;
    }
    auto& idle = idle_[c->pool][b];
    if (!idle.empty()) {
      UpstreamConn* u = idle.back();
      idle.pop_back();
      u->reused = true;
      counters_->upstream_reused.Add();
      Attach(c, u, b);
      u->out.Append(pending);
      UpstreamFlush(u);
      return;
    }
    if (Connect(c, b, &pending)) return;
    if (!IsIdempotent(c->req.method) || c->tried.size() > pc.connect_retries) {
      LocalResponse(c, 502, "cannot connect to a backend", false);
      return;
    }
    counters_->upstream_retries.Add();
  }
}

bool Worker::Connect(ClientConn* c, int b, std::string* pending) {
  const BackendConfig& bc = config_->pools[c->pool].backends[b];
  const int fd = socket(bc.addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int r = -1;
  if (fd >= 0) r = connect(fd, reinterpret_cast<const sockaddr*>(&bc.addr.ss), bc.addr.len);
  if (fd < 0 || (r != 0 && errno != EINPROGRESS)) {
    if (fd >= 0) close(fd);
    const int64_t now = Now();
    const bool was = balancers_[c->pool].ejected(b, now);
    balancers_[c->pool].OnConnectFailure(b, now);
    counters_->backend_connect_failures[BackendSlot(c->pool, b)].Add();
    if (!was && balancers_[c->pool].ejected(b, now)) {
      counters_->backend_ejections[BackendSlot(c->pool, b)].Add();
      LOG(WARNING) << "worker " << id_ << ": backend " << bc.addr.text << " of pool "
                   << config_->pools[c->pool].name << " ejected after connect failures";
    }
    c->tried.push_back(b);
    return false;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto* u = new UpstreamConn(upstream_limits_);
  u->kind = Kind::kUpstream;
  u->fd = fd;
  u->pool = c->pool;
  u->backend = b;
  u->sink.w = this;
  u->sink.u = u;
  u->connecting = r != 0;
  u->pos = upstreams_.size();
  upstreams_.push_back(u);
  counters_->upstream_connects.Add();
  Attach(c, u, b);
  u->out.Append(*pending);
  pending->clear();
  if (u->connecting) {
    UpdateUpstream(u);
  } else {
    UpstreamConnected(u);
  }
  return true;
}

void Worker::UpstreamConnected(UpstreamConn* u) {
  u->connecting = false;
  balancers_[u->pool].OnConnectSuccess(u->backend);
  u->deadline = Now() + config_->timeouts.upstream_response_ns;
  UpstreamFlush(u);
}

void Worker::UpstreamFailed(UpstreamConn* u, bool connect_failure, const char* why) {
  ClientConn* c = u->client;
  if (connect_failure) {
    const int64_t now = Now();
    Balancer& bal = balancers_[u->pool];
    const bool was = bal.ejected(u->backend, now);
    bal.OnConnectFailure(u->backend, now);
    counters_->backend_connect_failures[BackendSlot(u->pool, u->backend)].Add();
    if (!was && bal.ejected(u->backend, now)) {
      counters_->backend_ejections[BackendSlot(u->pool, u->backend)].Add();
      LOG(WARNING) << "worker " << id_ << ": backend "
                   << config_->pools[u->pool].backends[u->backend].addr.text
                   << " ejected after connect failures";
    }
  }
  if (c == nullptr) {
    CloseUpstream(u);
    return;
  }
  balancers_[u->pool].End(u->backend);
  const PoolConfig& pc = config_->pools[c->pool];
  // Safe to send again: nothing reached the backend (connect failed), or
  // the connection broke before any byte of an answer to a bodyless
  // idempotent request (RFC 9110 §9.2.2), e.g. a pooled connection the
  // backend had closed, or a backend killed while it held the request.
  const bool resend_ok =
      connect_failure || (c->req_done && !c->up_head.empty() && !u->parser.started());
  const bool retry = !c->resp_started && IsIdempotent(c->req.method) &&
                     c->tried.size() < pc.connect_retries + 1 && resend_ok;
  std::string pending = connect_failure ? u->out.Take() : c->up_head;
  c->tried.push_back(u->backend);
  u->client = nullptr;
  c->up = nullptr;
  CloseUpstream(u);
  if (retry) {
    counters_->upstream_retries.Add();
    StartUpstream(c, std::move(pending));
    // A request body that was waiting for room can flow again.
    if (!c->dead && !c->req_done && !c->in_pump) ClientPump(c);
  } else if (!c->resp_started) {
    LocalResponse(c, 502, why, !c->req_done);
  } else {
    CloseClient(c);  // the response is cut short: only a close can say so
  }
  if (!c->dead) ClientFlush(c);
}

void Worker::UpdateUpstream(UpstreamConn* u) {
  if (u->dead) return;
  uint32_t ev;
  if (u->connecting) {
    ev = EPOLLOUT;
  } else if (u->client == nullptr) {
    ev = EPOLLIN | EPOLLRDHUP;  // idle: notice the backend closing it
  } else {
    ev = 0;
    if (!u->out.empty()) ev |= EPOLLOUT;
    if (u->client->out.size() < config_->buffer_bytes) ev |= EPOLLIN | EPOLLRDHUP;
  }
  SetInterest(u, ev);
}

void Worker::OnUpstream(UpstreamConn* u, uint32_t ev) {
  if (u->connecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
      UpstreamFailed(u, true, "cannot connect to a backend");
      return;
    }
    UpstreamConnected(u);
    if (u->dead) return;
  }
  if (u->client == nullptr) {
    // Idle and readable: the backend closed it (or sent garbage).
    CloseUpstream(u);
    return;
  }
  if (u->tunnel) {
    if (ev & EPOLLOUT) UpstreamFlush(u);
    if (!u->dead && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) TunnelFromUpstream(u);
    if (!u->dead) UpdateUpstream(u);
    return;
  }
  if (ev & EPOLLOUT) {
    UpstreamFlush(u);
    if (u->dead) return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    UpstreamRead(u);
    if (u->dead) return;
  }
  UpdateUpstream(u);
}

void Worker::UpstreamFlush(UpstreamConn* u) {
  if (u->client != nullptr && u->client->in_pump) return;  // ClientPump flushes at its end
  for (int round = 0; round < 4 && !u->dead && !u->connecting; ++round) {
    while (!u->out.empty()) {
      const ssize_t n = send(u->fd, u->out.data(), u->out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        u->out.Consume(static_cast<size_t>(n));
        u->deadline = Now() + config_->timeouts.upstream_response_ns;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      UpstreamFailed(u, false, "backend closed the connection");
      return;
    }
    ClientConn* c = u->client;
    if (u->tunnel && c != nullptr && !c->in.empty() && u->out.size() < config_->buffer_bytes) {
      const size_t k = std::min(c->in.size(), config_->buffer_bytes - u->out.size());
      u->out.Append(c->in.data(), k);
      c->in.Consume(k);
      continue;
    }
    if (c == nullptr || c->req_done || c->in.empty() || c->in_pump ||
        u->out.size() >= config_->buffer_bytes) {
      break;
    }
    // Room again: let more of the request body through.
    const size_t before = c->in.size();
    ClientPump(c);
    if (c->dead || u->dead || c->in.size() == before) break;
  }
  if (u->dead) return;
  UpdateUpstream(u);
  if (u->client != nullptr) UpdateClient(u->client);
}

void Worker::UpstreamRead(UpstreamConn* u) {
  ClientConn* c = u->client;
  scratch_.resize(kReadChunk);
  while (!u->dead && u->client == c && !u->response_done) {
    const size_t queued = c->out.size();
    if (queued >= config_->buffer_bytes) break;  // back-pressure: the client is slow
    const size_t want = std::min(kReadChunk, config_->buffer_bytes - queued);
    const ssize_t n = read(u->fd, &scratch_[0], want);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n <= 0) {
      if (n == 0 && u->parser.FeedEof(&u->sink) && u->response_done) {
        CompleteResponse(u, false);
        return;
      }
      if (!c->resp_started) {
        UpstreamFailed(u, false, "backend closed the connection");
      } else {
        CloseClient(c);  // truncated response
      }
      return;
    }
    u->deadline = Now() + config_->timeouts.upstream_response_ns;
    size_t off = 0;
    while (off < static_cast<size_t>(n) && !u->response_done) {
      const size_t used = u->parser.Feed(&scratch_[off], n - off, &u->sink);
      if (u->dead || c->dead) return;
      off += used;
      if (u->parser.error() != Http1Error::kNone || u->bad) {
        VLOG(1) << "bad response from backend: " << u->parser.error_detail();
        if (!c->resp_started) {
          balancers_[u->pool].End(u->backend);
          u->client = nullptr;
          c->up = nullptr;
          CloseUpstream(u);
          LocalResponse(c, 502, "bad response from backend", !c->req_done);
          ClientFlush(c);
        } else {
          CloseClient(c);
        }
        return;
      }
      if (used == 0) break;
    }
    if (u->response_done) {
      if (u->parser.head().status == 101) {
        StartTunnel(u, &scratch_[off], static_cast<size_t>(n) - off);
      } else {
        CompleteResponse(u, off == static_cast<size_t>(n));
      }
      return;
    }
    ClientFlush(c);
    if (c->dead) return;
  }
}

void Worker::UpstreamHead(UpstreamConn* u) {
  ClientConn* c = u->client;
  const MessageHead& r = u->parser.head();
  if (r.status < 200) {
    if (r.status == 101) {
      if (!c->req.upgrade) {
        u->bad = true;  // an upgrade nobody asked for
        return;
      }
      c->resp_started = true;
      c->status = 101;
      c->keep_alive = false;
      std::string s;
      BuildClientResponse(r, c->req, true, ClientFraming::kNone, &s);
      c->out.Append(s);
      return;
    }
    // An interim response (100 Continue): to HTTP/1.1 clients only.
    if (c->req.minor >= 1) {
      std::string s;
      BuildClientResponse(r, c->req, true, ClientFraming::kNone, &s);
      c->out.Append(s);
    }
    return;
  }
  c->resp_started = true;
  c->status = r.status;
  c->framing = ChooseClientFraming(r, c->req);
  c->keep_alive = c->req.keep_alive && !draining_ && c->framing != ClientFraming::kClose;
  std::string s;
  BuildClientResponse(r, c->req, c->keep_alive, c->framing, &s,
                      config_->listeners[c->listener].router.RulesOf(c->route));
  c->out.Append(s);
}

void Worker::UpstreamBody(UpstreamConn* u, const char* data, size_t n) {
  ClientConn* c = u->client;
  switch (c->framing) {
    case ClientFraming::kNone:
      break;
    case ClientFraming::kChunked:
      AppendChunk(&c->out, data, n);
      break;
    case ClientFraming::kLength:
    case ClientFraming::kClose:
      c->out.Append(data, n);
      break;
  }
}

void Worker::UpstreamDone(UpstreamConn* u) {
  if (u->parser.head().status == 101) {
    u->response_done = true;  // the tunnel starts after these bytes
    return;
  }
  if (u->parser.head().status < 200) {
    // After an interim response the final one follows on the same bytes.
    const bool head = u->client->req.method == "HEAD";
    u->parser.Reset();
    u->parser.SetRequestWasHead(head);
    return;
  }
  u->response_done = true;
}

void Worker::CompleteResponse(UpstreamConn* u, bool no_extra) {
  ClientConn* c = u->client;
  if (c->framing == ClientFraming::kChunked) c->out.Append("0\r\n\r\n", 5);
  {
    const int64_t now = Now();
    Balancer& bal = balancers_[u->pool];
    const bool was = bal.ejected(u->backend, now);
    bal.OnResponse(u->backend, u->parser.head().status, now);
    if (!was && bal.ejected(u->backend, now)) {
      counters_->backend_ejections[BackendSlot(u->pool, u->backend)].Add();
      LOG(WARNING) << "worker " << id_ << ": backend "
                   << config_->pools[u->pool].backends[u->backend].addr.text
                   << " ejected after consecutive 5xx answers";
    }
  }
  const bool reusable =
      no_extra && u->parser.head().keep_alive && c->req_done && u->out.empty() && !draining_;
  balancers_[u->pool].End(u->backend);
  u->client = nullptr;
  c->up = nullptr;
  ReleaseUpstream(u, reusable);
  FinishStream(c);
}

void Worker::ReleaseUpstream(UpstreamConn* u, bool reusable) {
  auto& idle = idle_[u->pool][u->backend];
  if (!reusable || idle.size() >= config_->pools[u->pool].max_idle_per_backend) {
    CloseUpstream(u);
    return;
  }
  u->out.Shrink();
  u->parser.Reset();
  u->deadline = Now() + config_->timeouts.idle_ns;
  idle.push_back(u);
  UpdateUpstream(u);
}

void Worker::CloseUpstream(UpstreamConn* u) {
  if (u->dead) return;
  if (u->client == nullptr) {
    auto& idle = idle_[u->pool][u->backend];
    auto it = std::find(idle.begin(), idle.end(), u);
    if (it != idle.end()) idle.erase(it);
  } else {
    // Still serving a request (the client went away mid-body, or its body
    // was refused): that request no longer counts as active on the backend.
    balancers_[u->pool].End(u->backend);
    u->client->up = nullptr;
    u->client = nullptr;
  }
  close(u->fd);
  u->fd = -1;
  upstreams_[u->pos] = upstreams_.back();
  upstreams_[u->pos]->pos = u->pos;
  upstreams_.pop_back();
  Graveyard(u);
}

// ----------------------------------------------------------------- tunnel ---
// After a 101 the two connections carry raw bytes (WebSocket), each way
// through the other side's bounded output buffer, so the back-pressure is the
// same as for bodies. Either side closing ends both once what it sent is
// passed on (no half-close).

void Worker::StartTunnel(UpstreamConn* u, const char* data, size_t n) {
  ClientConn* c = u->client;
  u->tunnel = c->tunnel = true;
  c->out.Append(data, n);
  const int64_t idle = Now() + config_->timeouts.idle_ns;
  u->deadline = idle;
  c->deadline = idle;
  if (access_log_ != nullptr) LogRequest(c);
  const ListenerConfig& lc = config_->listeners[c->listener];
  counters_->route_requests[(route_base_[c->listener] + c->route) * 5 + StatusClass(101)].Add();
  counters_->backend_requests[BackendSlot(c->pool, c->backend) * 5 + StatusClass(101)].Add();
  (void)lc;
  UpstreamFlush(u);  // also moves bytes the client sent after its request
  if (!c->dead) ClientFlush(c);
}

void Worker::TunnelFromClient(ClientConn* c) {
  UpstreamConn* u = c->up;
  const size_t in_cap = config_->limits.max_header_bytes + config_->buffer_bytes;
  scratch_.resize(kReadChunk);
  bool eof = false;
  while (c->in.size() < in_cap) {
    const ssize_t r = read(c->fd, &scratch_[0], std::min(kReadChunk, in_cap - c->in.size()));
    if (r > 0) {
      c->in.Append(scratch_.data(), static_cast<size_t>(r));
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
    eof = true;
    break;
  }
  c->deadline = u->deadline = Now() + config_->timeouts.idle_ns;
  UpstreamFlush(u);
  if (u->dead || c->dead) return;
  if (eof) {
    // Pass on what is left (best effort, without waiting), then end both.
    if (!c->in.empty()) u->out.Append(c->in.data(), c->in.size());
    if (!u->out.empty()) {
      ssize_t r = send(u->fd, u->out.data(), u->out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)r;
    }
    balancers_[u->pool].End(u->backend);
    u->client = nullptr;
    c->up = nullptr;
    CloseUpstream(u);
    CloseClient(c);
    return;
  }
  UpdateClient(c);
}

void Worker::TunnelFromUpstream(UpstreamConn* u) {
  ClientConn* c = u->client;
  scratch_.resize(kReadChunk);
  bool eof = false;
  while (c->out.size() < config_->buffer_bytes) {
    const size_t want = std::min(kReadChunk, config_->buffer_bytes - c->out.size());
    const ssize_t r = read(u->fd, &scratch_[0], want);
    if (r > 0) {
      c->out.Append(scratch_.data(), static_cast<size_t>(r));
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
    eof = true;
    break;
  }
  c->deadline = u->deadline = Now() + config_->timeouts.idle_ns;
  if (eof) {
    // The backend ended it: the client gets what is buffered, then a close.
    balancers_[u->pool].End(u->backend);
    u->client = nullptr;
    c->up = nullptr;
    CloseUpstream(u);
    c->state = ClientConn::State::kClosing;
  }
  ClientFlush(c);
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
  absl::StrAppend(&o, " status=", c->status, " req_body=", c->parser.body_bytes(),
                  " resp_bytes=", c->out.appended() - c->out_mark, " ms=",
                  absl::StrFormat("%.3f", c->t_start == 0 ? 0.0 : (Now() - c->t_start) / 1e6),
                  " attempts=", c->tried.size() + (c->local ? 0 : 1), "\n");
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
  for (size_t i = 0; i < clients_.size();) {
    ClientConn* c = clients_[i];
    if (c->deadline == 0 || now < c->deadline) {
      ++i;
      continue;
    }
    c->deadline = 0;
    switch (c->state) {
      case ClientConn::State::kWaiting:
        if (c->parser.started() || !c->in.empty()) {
          counters_->client_timeouts.Add();
          LocalResponse(c, 408, "request header timeout", true);
        } else {
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
    // CloseClient moved the last connection into slot i: look at it next.
    if (i < clients_.size() && clients_[i] == c) ++i;
  }
  for (size_t i = 0; i < upstreams_.size();) {
    UpstreamConn* u = upstreams_[i];
    ClientConn* c = u->client;
    // Not the backend's turn: the client is slow to read the answer, the
    // client is still sending a body the backend keeps up with, or a tunnel
    // (idle timer on the client side).
    const bool paused = c != nullptr && (c->out.size() >= config_->buffer_bytes || u->tunnel ||
                                         (!c->req_done && u->out.size() < config_->buffer_bytes));
    if (now < u->deadline || paused) {
      ++i;
      continue;
    }
    if (u->connecting) {
      UpstreamFailed(u, true, "backend connect timeout");
    } else if (c == nullptr) {
      CloseUpstream(u);
    } else {
      counters_->upstream_timeouts.Add();
      if (!c->resp_started) {
        balancers_[u->pool].End(u->backend);
        u->client = nullptr;
        c->up = nullptr;
        CloseUpstream(u);
        LocalResponse(c, 504, "backend response timeout", !c->req_done);
        ClientFlush(c);
      } else {
        CloseClient(c);
      }
    }
    if (i < upstreams_.size() && upstreams_[i] == u) ++i;
  }
}

}  // namespace lb::l7
