// The server side of a worker: picking and connecting a backend, pooled
// keep-alive connections, the response path, retries, and Upgrade tunnels.
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
#include "dataplane/l7/upstream_tls.h"
#include "glog/logging.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

// -------------------------------------------------------------- upstream ---

void Worker::Attach(ClientConn* c, UpstreamConn* u, int backend) {
  u->client = c;
  u->response_done = false;
  u->extra_bytes = false;
  u->parser.Reset();
  u->parser.SetRequestWasHead(c->req.method == "HEAD");
  u->t_sent = Now();  // a new connection sets it again once connected
  u->deadline = u->t_sent + (u->connecting ? config_->timeouts.upstream_connect_ns
                                           : config_->timeouts.upstream_response_ns);
  c->up = u;
  c->backend = backend;  // counted active by StartUpstream (TryBegin)
}

void Worker::StartUpstream(ClientConn* c, std::string* pending) {
  const PoolConfig& pc = config_->pools[c->pool];
  Balancer& bal = balancers_[c->pool];
  while (true) {
    int b = StickyBackend(c);
    if (b < 0) b = bal.Pick(c->pick_hash, Now(), c->tried);
    // A backend at its max_connections (another worker may have taken the
    // last place since the pick): wait in the queue.
    if (b >= 0 && !bal.TryBegin(b)) {
      Enqueue(c, std::move(*pending));
      return;
    }
    if (b < 0) {
      if (bal.saw_full()) {
        Enqueue(c, std::move(*pending));
      } else if (c->tried.empty()) {
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
      u->out.Append(*pending);
      pending->clear();
      UpstreamFlush(u);
      return;
    }
    if (Connect(c, b, pending)) return;
    bal.End(b);
    if (!IsIdempotent(c->req.method) || c->tried.size() > pc.connect_retries ||
        !RetryAllowed(c->pool)) {
      LocalResponse(c, 502, "cannot connect to a backend", false);
      return;
    }
    counters_->upstream_retries.Add();
  }
}

bool Worker::RetryAllowed(int pool) {
  if (budgets_[pool].TryRetry(Now())) return true;
  counters_->retry_budget_exhausted.Add();
  return false;
}

void Worker::Enqueue(ClientConn* c, std::string pending) {
  const PoolConfig& pc = config_->pools[c->pool];
  if (requeue_front_) {
    // Served from the queue and still no room: back to the front, same
    // place and deadline (its place in the shared count was kept).
    c->queued = true;
    c->pending = std::move(pending);
    queue_[c->pool].push_front(c);
    ++queued_total_;
    counters_->queued_requests.Add();
    return;
  }
  if (!active_[c->pool]->TryQueue(pc.max_queue)) {
    counters_->queue_overflows.Add();
    LocalResponse(c, 503, "backend queue full", !c->req_done);
    return;
  }
  c->queued = true;
  c->pending = std::move(pending);
  c->deadline = Now() + pc.queue_timeout_ns;
  queue_[c->pool].push_back(c);
  ++queued_total_;
  counters_->queued_requests.Add();
}

void Worker::Unqueue(ClientConn* c) {
  auto& q = queue_[c->pool];
  auto it = std::find(q.begin(), q.end(), c);
  if (it != q.end()) q.erase(it);
  c->queued = false;
  --queued_total_;
  counters_->queued_requests.Sub();
  active_[c->pool]->Unqueue();
}

void Worker::ServeQueues() {
  for (size_t p = 0; p < queue_.size(); ++p) {
    auto& q = queue_[p];
    while (!q.empty()) {
      ClientConn* c = q.front();
      q.pop_front();
      c->queued = false;
      --queued_total_;
      counters_->queued_requests.Sub();
      requeue_front_ = true;
      const int64_t deadline = c->deadline;
      std::string pending = std::move(c->pending);
      c->pending.clear();
      StartUpstream(c, &pending);
      requeue_front_ = false;
      if (c->queued) {
        c->deadline = deadline;
        break;  // still no room in this pool
      }
      active_[p]->Unqueue();
      if (!c->dead) {
        c->deadline = c->req_done ? 0 : Now() + config_->timeouts.client_body_ns;
        if (!c->in_pump) ClientPump(c);
      }
      if (!c->dead) ClientFlush(c);
    }
  }
}

void Worker::CloseDrainingIdle() {
  for (size_t p = 0; p < idle_.size(); ++p) {
    for (size_t b = 0; b < idle_[p].size(); ++b) {
      const int bi = static_cast<int>(b);
      if (idle_[p][b].empty() || !(balancers_[p].draining(bi) || balancers_[p].down(bi))) continue;
      while (!idle_[p][b].empty()) CloseUpstream(idle_[p][b].back());
    }
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
  const UpstreamTls* tls = up_tls_ != nullptr ? (*up_tls_)[u->pool].get() : nullptr;
  if (tls != nullptr) {
    StartUpstreamTls(u, *tls);  // UpstreamReady once the handshake is done
    return;
  }
  UpstreamReady(u);
}

void Worker::UpstreamReady(UpstreamConn* u) {
  u->connecting = false;
  balancers_[u->pool].OnConnectSuccess(u->backend);
  u->t_sent = Now();
  u->deadline = u->t_sent + config_->timeouts.upstream_response_ns;
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
  if (c->passthrough) {
    PassthroughUpstreamFailed(u, connect_failure);
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
                     c->tried.size() < pc.connect_retries + 1 && resend_ok && RetryAllowed(c->pool);
  std::string pending = connect_failure ? u->out.Take() : c->up_head;
  c->tried.push_back(u->backend);
  u->client = nullptr;
  c->up = nullptr;
  CloseUpstream(u);
  if (retry) {
    counters_->upstream_retries.Add();
    StartUpstream(c, &pending);
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
    ev = u->handshaking && !u->ssl_read_wants_write ? EPOLLIN : EPOLLOUT;
  } else if (u->client == nullptr) {
    ev = EPOLLIN | EPOLLRDHUP;  // idle: notice the backend closing it
  } else {
    ev = 0;
    if (!u->out.empty()) ev |= EPOLLOUT;
    if (u->client->out.size() < config_->buffer_bytes) ev |= EPOLLIN | EPOLLRDHUP;
    if (u->ssl_read_wants_write) ev |= EPOLLOUT;
    if (u->ssl_write_wants_read) ev |= EPOLLIN;
  }
  SetInterest(u, ev);
  if (u->ssl != nullptr) UpstreamTlsPending(u, ev);
}

void Worker::OnUpstream(UpstreamConn* u, uint32_t ev) {
  if (u->handshaking) {
    UpstreamHandshake(u);  // socket errors surface as a failed handshake
    return;
  }
  if (u->connecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
      UpstreamFailed(u, true, "cannot connect to a backend");
      return;
    }
    UpstreamConnected(u);
    if (u->dead || u->connecting) return;
  }
  if (u->client == nullptr) {
    // Idle and readable: the backend closed it (or sent garbage), unless
    // TLS consumed only records of its own (a late session ticket).
    if (!UpstreamIdleRead(u)) CloseUpstream(u);
    return;
  }
  if (u->tunnel) {
    if (ev & EPOLLOUT) UpstreamFlush(u);
    if (!u->dead && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) TunnelFromUpstream(u);
    if (!u->dead) UpdateUpstream(u);
    return;
  }
  const bool tls_in = u->ssl_read_wants_write && (ev & EPOLLOUT);
  const bool tls_out = u->ssl_write_wants_read && (ev & EPOLLIN);
  if ((ev & EPOLLOUT) || tls_out) {
    UpstreamFlush(u);
    if (u->dead) return;
  }
  if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || tls_in) {
    UpstreamRead(u);
    if (u->dead) return;
  }
  UpdateUpstream(u);
}

void Worker::UpstreamFlush(UpstreamConn* u) {
  if (u->client != nullptr && u->client->in_pump) return;  // ClientPump flushes at its end
  for (int round = 0; round < 4 && !u->dead && !u->connecting; ++round) {
    while (!u->out.empty()) {
      const ssize_t n = UpstreamSend(u, u->out.data(), u->out.size());
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
  ClientConn* c = u->client;
  if (c != nullptr && c->h2_unconsumed > 0 && u->out.size() < config_->buffer_bytes) {
    H2BodyDrained(c);  // the backend took the bytes: the client may send more
  }
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
    const ssize_t n = UpstreamRecv(u, &scratch_[0], want);
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
          AbandonUpstream(c);
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
        const bool held = u->ssl != nullptr && SSL_pending(u->ssl) > 0;
        CompleteResponse(u, off == static_cast<size_t>(n) && !held);
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
  if (u->t_sent != 0) {  // the first head (a 100 Continue counts), once
    counters_->upstream_response.Observe(u->pool, Now() - u->t_sent);
    u->t_sent = 0;
  }
  if (r.status < 200) {
    // Interim answers (100 Continue) go to HTTP/2 clients as a :status.
    if (c->h2_parent != nullptr && r.status != 101) {
      H2Interim(c, r.status);
      return;
    }
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
  if (c->h2_parent != nullptr && c->framing != ClientFraming::kNone) {
    c->framing = ClientFraming::kLength;  // h2 DATA frames: the body as it comes
  }
  c->keep_alive = c->req.keep_alive && !CloseOnDrain(c) && c->framing != ClientFraming::kClose;
  std::string s = std::move(resp_head_scratch_);  // moves inline, swap is a call
  s.clear();
  BuildClientResponse(r, c->req, c->keep_alive, c->framing, &s,
                      config_->listeners[c->listener].router.RulesOf(c->route));
  StickyRespond(c, &s);
  if (c->h2_parent != nullptr) {
    H2Respond(c, s, c->framing != ClientFraming::kNone);
  } else {
    c->out.Append(s);
  }
  resp_head_scratch_ = std::move(s);
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
  if (!reusable || idle.size() >= config_->pools[u->pool].max_idle_per_backend ||
      balancers_[u->pool].draining(u->backend) || balancers_[u->pool].down(u->backend)) {
    CloseUpstream(u);
    return;
  }
  u->out.Shrink();
  u->parser.Reset();
  u->deadline = Now() + config_->timeouts.idle_ns;
  idle.push_back(u);
  UpdateUpstream(u);
}

void Worker::AbandonUpstream(ClientConn* c) {
  UpstreamConn* u = c->up;
  DCHECK(u != nullptr && u->client == c);
  balancers_[u->pool].End(u->backend);
  u->client = nullptr;
  c->up = nullptr;
  CloseUpstream(u);
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
  if (u->ssl != nullptr) UpstreamTlsClose(u);
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
  counters_->request_duration.Observe(c->pool, Now() - c->t_start);
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
    const ssize_t r = ClientRecv(c, &scratch_[0], std::min(kReadChunk, in_cap - c->in.size()));
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
      ssize_t r = UpstreamSend(u, u->out.data(), u->out.size());
      (void)r;
    }
    AbandonUpstream(c);
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
    const ssize_t r = UpstreamRecv(u, &scratch_[0], want);
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
    AbandonUpstream(c);
    c->state = ClientConn::State::kClosing;
  }
  ClientFlush(c);
}

}  // namespace lb::l7
