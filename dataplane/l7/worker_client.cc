// The client side of a worker: reading, the request pump, local answers,
// the end of a stream (keep-alive, pipelining, lingering close).
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
#include "glog/logging.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"
#include "lib/l7/sticky_cookie.h"

namespace lb::l7 {

// ---------------------------------------------------------------- client ---

void Worker::UpdateClient(ClientConn* c) {
  if (c->dead || c->h2_parent != nullptr) return;  // h2 streams have no socket
  uint32_t ev = 0;
  const size_t in_cap = config_->limits.max_header_bytes + config_->buffer_bytes;
  if (c->passthrough && !c->tunnel && c->up == nullptr) {
    SetInterest(c, EPOLLIN | EPOLLRDHUP);  // until the ClientHello is complete
    return;
  }
  if (c->state == ClientConn::State::kLingering) {
    ev = EPOLLIN;
  } else {
    if (c->state != ClientConn::State::kClosing && !c->read_eof && c->in.size() < in_cap) {
      ev |= EPOLLIN | EPOLLRDHUP;
    }
    if (!c->out.empty()) ev |= EPOLLOUT;
  }
  if (c->ssl != nullptr) {
    if (c->handshaking) {
      ev = c->ssl_read_wants_write ? EPOLLOUT : EPOLLIN;
    } else {
      if (c->ssl_read_wants_write && (ev & EPOLLIN)) ev |= EPOLLOUT;
      if (c->ssl_write_wants_read && !c->out.empty()) ev |= EPOLLIN;
      // Bytes already inside OpenSSL raise no epoll event: when reading
      // stopped for lack of room (not for lack of socket bytes), serve them
      // after the event batch.
      if ((ev & EPOLLIN) && !c->tls_ready && !c->ssl_read_blocked &&
          c->state != ClientConn::State::kLingering && SSL_has_pending(c->ssl)) {
        c->tls_ready = true;
        tls_ready_.push_back(c);
      }
    }
  }
  SetInterest(c, ev);
}

void Worker::OnClient(ClientConn* c, uint32_t ev) {
  if (c->state == ClientConn::State::kLingering) {
    char buf[16384];
    while (true) {
      const ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
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
    if (c->handshaking) CountTlsFailure(c, static_cast<int>(TlsFail::kClosed));
    if (c->passthrough && !c->tunnel) CountPassthroughFailure(c, PassthroughFail::kClosed);
    CloseClient(c);
    return;
  }
  if (c->handshaking) {
    ClientHandshake(c);
    if (c->dead) return;
    if (c->handshaking) {
      UpdateClient(c);
      return;
    }
    ev |= EPOLLIN;  // the request may have come with the client's Finished
  }
  if ((ev & EPOLLOUT) || (c->ssl_write_wants_read && (ev & EPOLLIN))) {
    ClientFlush(c);
    if (c->dead) return;
  }
  if ((ev & (EPOLLIN | EPOLLRDHUP)) || (c->ssl_read_wants_write && (ev & EPOLLOUT))) {
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
  if (c->passthrough) {
    PassthroughRead(c);
    return;
  }
  const size_t in_cap = config_->limits.max_header_bytes + config_->buffer_bytes;
  bool got = false;
  scratch_.resize(kReadChunk);  // once per worker: no zeroing per read
  while (c->in.size() < in_cap && !c->read_eof) {
    const size_t want = std::min(kReadChunk, in_cap - c->in.size());
    const ssize_t r = ClientRecv(c, &scratch_[0], want);
    if (r > 0) {
      c->in.Append(scratch_.data(), static_cast<size_t>(r));
      got = true;
      // A short read emptied the socket (with TLS: nothing more buffered in
      // OpenSSL either); level-triggered epoll reports anything newer.
      if (static_cast<size_t>(r) < want && (c->ssl == nullptr || !SSL_has_pending(c->ssl))) {
        break;
      }
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (r < 0) {  // reset
      CloseClient(c);
      return;
    }
    c->read_eof = true;
  }
  if (got && c->state == ClientConn::State::kActive && !c->req_done && !c->queued) {
    c->deadline = Now() + config_->timeouts.client_body_ns;
  }
  if (got && c->state == ClientConn::State::kWaiting && !c->head_timer) {
    // First byte of the next request: the header timeout starts, and a
    // slow client cannot push it back by dripping bytes (slowloris).
    c->head_timer = true;
    c->deadline = Now() + config_->timeouts.client_header_ns;
  }
  if (c->h2 == nullptr && H2Detect(c)) {  // maybe an h2c preface: wait for more
    ClientFlush(c);
    return;
  }
  if (c->h2 != nullptr) {
    H2Input(c);
    return;
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

namespace {

// kMaglev pools hash the configured key; a request without it, and every
// other algorithm, hashes the client address.
uint64_t PickHash(const PoolConfig& pc, const MessageHead& h, uint64_t ip_hash) {
  if (pc.algorithm != BalanceAlgorithm::kMaglev) return ip_hash;
  switch (pc.hash_on) {
    case HashOn::kHeader:
      if (const absl::string_view* v = h.Find(pc.hash_name)) return HashKey(*v);
      break;
    case HashOn::kCookie:
      if (auto v = FindRequestCookie(h, pc.hash_name)) return HashKey(*v);
      break;
    case HashOn::kPath: {
      const absl::string_view t = h.origin_form;
      return HashKey(t.substr(0, t.find('?')));
    }
    case HashOn::kClientAddress:
      break;
  }
  return ip_hash;
}

}  // namespace

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
    // No backend yet (store lookup, queue): the body waits in the socket.
    if (c->store_wait || c->queued) return;
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
  // c->req is the parser's head: nothing to move.
  counters_->protocol_requests[0].Add();
  RouteRequest(c);
}

void Worker::RouteRequest(ClientConn* c) {
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
  c->pick_hash = PickHash(config_->pools[c->pool], h, c->ip_hash);
  budgets_[c->pool].OnRequest(c->t_start);
  ForwardInfo fi;
  fi.client_ip = c->peer_ip;
  fi.client_ipv6 = c->ipv6;
  fi.listener_port = lc.port;
  if (c->Secure()) fi.proto = "https";
  fi.client_cert_subject = c->client_subject;
  fi.fallback_host = lc.addr.text;
  fi.request_id = NextRequestId();
  std::string head = std::move(up_head_scratch_);  // moves inline, swap is a call
  head.clear();
  const absl::string_view rid = BuildUpstreamRequest(h, fi, &head, lc.router.RulesOf(c->route));
  c->rid.assign(rid.data(), rid.size());
  const bool bodyless = !h.chunked && h.content_length <= 0;
  if (bodyless) c->up_head.assign(head);
  if (StickyLookup(c)) {
    c->pending.assign(head);  // resumed by StoreResults
  } else {
    StartUpstream(c, &head);
  }
  up_head_scratch_ = std::move(head);
}

void Worker::ClientBody(ClientConn* c, const char* data, size_t n) {
  if (!c->local && (c->store_wait || c->queued)) {
    // Parsed with the head while no backend is chosen yet: kept with it.
    if (c->req.chunked) {
      Buffer b;
      AppendChunk(&b, data, n);
      c->pending.append(b.data(), b.size());
    } else {
      c->pending.append(data, n);
    }
    return;
  }
  if (c->local || c->up == nullptr) return;  // answered already: discard
  if (c->req.chunked) {
    AppendChunk(&c->up->out, data, n);
  } else {
    c->up->out.Append(data, n);
  }
}

void Worker::ClientRequestDone(ClientConn* c) {
  c->req_done = true;
  if (!c->queued) c->deadline = 0;  // from now on the upstream timers run (or the queue's)
  if (c->local) {
    // Answered already (by lb-l7, or by a backend before the body ended):
    // the body is consumed, next request.
    if (c->state == ClientConn::State::kActive && c->resp_started) FinishStream(c);
    return;
  }
  if (c->store_wait || c->queued) {
    if (c->req.chunked) c->pending.append("0\r\n\r\n", 5);
    return;
  }
  if (c->up != nullptr) {
    if (c->req.chunked) c->up->out.Append("0\r\n\r\n", 5);
    UpstreamFlush(c->up);
  }
}

void Worker::LocalResponse(ClientConn* c, int status, const char* body, bool close) {
  if (c->up != nullptr) AbandonUpstream(c);
  if (c->queued) Unqueue(c);
  if (c->store_wait) {
    stores_[c->store]->Forget(c);
    c->store_wait = false;
  }
  c->pending.clear();
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
  c->keep_alive = !close && (c->req_done || bodyless) && c->req.keep_alive && !CloseOnDrain(c);
  std::string s;
  BuildErrorResponse(status, body, !c->keep_alive, &s);
  if (c->h2_parent != nullptr) {
    H2Respond(c, s, true);
    FinishStream(c);
    return;
  }
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
  if (c->status != 0 && c->route >= 0 && c->pool >= 0) {
    counters_->request_duration.Observe(c->pool, Now() - c->t_start);
  }
  if (c->status != 0 && c->backend >= 0 && c->pool >= 0 && !c->local) {
    counters_->backend_requests[BackendSlot(c->pool, c->backend) * 5 + StatusClass(c->status)]
        .Add();
  }
  if (c->status != 0 && access_log_ != nullptr) LogRequest(c);
  c->status = 0;  // counted and logged once
  if (c->h2_parent != nullptr) {
    H2StreamDone(c);  // the stream ends when nghttp2 has sent the body
    return;
  }
  if (!c->req_done && c->keep_alive && !c->read_eof && !CloseOnDrain(c)) {
    // Answered before the request body ended (the backend did not want it):
    // read and drop the rest of the body, as nginx does, then go on with the
    // next request. Bounded by max_body_bytes and the body timeout.
    if (c->up != nullptr) AbandonUpstream(c);
    c->local = true;
    ClientFlush(c);
    return;
  }
  const bool keep = c->keep_alive && c->req_done && !c->read_eof && !CloseOnDrain(c);
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
  if (c->in.empty()) {
    // Idle until the client sends again: keep no buffer or head memory.
    c->in.Shrink();
    c->parser.ReleaseIdleMemory();
  }
  if (!c->in_pump) ClientPump(c);  // a pipelined request may be waiting
  if (c->dead) return;
  ClientFlush(c);
}

void Worker::ClientFlush(ClientConn* c) {
  if (c->dead) return;
  if (c->h2_parent != nullptr) {
    // An h2 stream: its body waits in `out` for nghttp2 to pull it.
    H2Resume(c);
    return;
  }
  H2Fill(c);  // h2 connections: frames nghttp2 has ready
  while (!c->out.empty()) {
    const ssize_t n = ClientSend(c, c->out.data(), c->out.size());
    if (n > 0) {
      c->out.Consume(static_cast<size_t>(n));
      if (c->out.empty()) H2Fill(c);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (c->up != nullptr) AbandonUpstream(c);
    CloseClient(c);
    return;
  }
  if (c->out.empty()) c->out.Shrink();
  if (c->h2 != nullptr && c->out.empty() && c->state == ClientConn::State::kActive && !H2Alive(c)) {
    c->state = ClientConn::State::kClosing;  // GOAWAY both ways (or an error), all written
  }
  if (c->up != nullptr && c->out.size() < config_->buffer_bytes) UpdateUpstream(c->up);
  if (c->out.empty() && c->state == ClientConn::State::kClosing) {
    if (c->read_eof) {
      CloseClient(c);
      return;
    }
    TlsCloseNotify(c);
    shutdown(c->fd, SHUT_WR);
    c->state = ClientConn::State::kLingering;
    c->deadline = Now() + kLingerNs;
  }
  UpdateClient(c);
}

void Worker::CloseClient(ClientConn* c) {
  if (c->dead) return;
  if (c->h2_parent != nullptr) {
    H2CloseStream(c);
    return;
  }
  if (c->h2 != nullptr) H2CloseConn(c);
  if (c->h2_dirty) {
    auto it = std::find(h2_dirty_.begin(), h2_dirty_.end(), c);
    if (it != h2_dirty_.end()) h2_dirty_.erase(it);
    c->h2_dirty = false;
  }
  if (c->up != nullptr) AbandonUpstream(c);
  if (c->queued) Unqueue(c);
  if (c->store_wait) {
    stores_[c->store]->Forget(c);
    c->store_wait = false;
  }
  if (c->tls_ready) {
    auto it = std::find(tls_ready_.begin(), tls_ready_.end(), c);
    if (it != tls_ready_.end()) tls_ready_.erase(it);
    c->tls_ready = false;
  }
  if (c->ssl != nullptr) {
    // OpenSSL drops a session from the cache when its connection is freed
    // without close_notify; clients that just close (most do) would never
    // resume by session ID. After a complete handshake the session stays
    // good (nginx does the same).
    if (!c->handshaking) SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c->ssl);  // does not close the fd (socket BIO without BIO_CLOSE)
    c->ssl = nullptr;
  }
  c->tls.reset();
  close(c->fd);
  c->fd = -1;
  clients_[c->pos] = clients_.back();
  clients_[c->pos]->pos = c->pos;
  clients_.pop_back();
  counters_->connections_open.Sub();
  Graveyard(c);
}

}  // namespace lb::l7
