// Downstream HTTP/2 of a worker (docs/L7.md "HTTP/2"): h2c with prior
// knowledge on plaintext listeners (the client preface on the first bytes)
// and ALPN h2 on TLS listeners. lib/l7/h2_server.h (nghttp2) does the
// framing and checks the requests; here each stream becomes a ClientConn
// without a socket, and the HTTP/1 request pipeline of worker_client.cc /
// worker_upstream.cc (routing, balancing, sticky, header rules, retries,
// upstream keep-alive pools, timers, access log, counters) runs on it as
// it is. What differs is at the edges:
//   - the head comes from nghttp2 (RouteRequest), body DATA goes to the
//     backend through the same bounded buffer, and the stream window is
//     returned only once the backend took the bytes (H2BodyDrained);
//   - the response head the pipeline writes (an HTTP/1.1 head) is
//     submitted as HEADERS (H2Respond), the body waits in the stream's
//     `out` and nghttp2 pulls it (H2ReadBody) as the client's window
//     allows, which re-opens reading from the backend;
//   - frames are written after the event batch (H2Kick / RunH2Dirty):
//     nghttp2 cannot write from inside its callbacks.
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "dataplane/l7/conn.h"
#include "dataplane/l7/worker.h"
#include "glog/logging.h"
#include "lib/l7/h2_server.h"
#include "lib/l7/headers.h"

namespace lb::l7 {

struct H2Adapter : H2Sink {
  Worker* w = nullptr;
  ClientConn* conn = nullptr;
  H2Server* server = nullptr;

  ClientConn* Stream(int32_t id) { return static_cast<ClientConn*>(server->User(id)); }

  void OnRequest(int32_t id, MessageHead* head, bool) override {
    ClientConn* s = w->H2NewStream(conn, id);
    s->req = std::move(*head);
    w->counters_->protocol_requests[1].Add();
    w->RouteRequest(s);
  }

  void OnRefused(int32_t id, int status, absl::string_view why) override {
    w->counters_->refused_requests.Add();
    VLOG(1) << "refused h2 request from " << conn->peer_ip << ": " << why;
    ClientConn* s = Stream(id);
    const std::string body(ReasonPhrase(status));
    if (s == nullptr) {
      s = w->H2NewStream(conn, id);
      w->LocalResponse(s, status, body.c_str(), true);
      return;
    }
    // The body grew above the limit after the head was routed.
    if (s->state != ClientConn::State::kActive) return;  // answered already
    if (s->resp_started) {
      w->CloseClient(s);  // the answer is under way: only a reset can say so
      return;
    }
    w->LocalResponse(s, status, body.c_str(), true);
  }

  void OnData(int32_t id, const char* data, size_t n) override {
    ClientConn* s = Stream(id);
    if (s == nullptr) {
      server->Consume(id, n);
      return;
    }
    s->h2_body += n;
    if (s->local || s->up == nullptr || s->state != ClientConn::State::kActive) {
      server->Consume(id, n);  // answered already: dropped, window back at once
      return;
    }
    s->deadline = w->Now() + w->config_->timeouts.client_body_ns;
    w->ClientBody(s, data, n);
    s->h2_unconsumed += n;
    w->UpstreamFlush(s->up);  // returns the window once the backend has room
  }

  void OnRequestEnd(int32_t id) override {
    ClientConn* s = Stream(id);
    if (s == nullptr || s->dead) return;
    if (s->state == ClientConn::State::kActive) {
      w->ClientRequestDone(s);
    } else {
      s->req_done = true;
    }
  }

  void OnStreamClose(int32_t id, uint32_t) override {
    ClientConn* s = Stream(id);
    if (s == nullptr) return;
    s->h2_closed = true;
    w->CloseClient(s);
  }

  ssize_t ReadBody(int32_t id, uint8_t* buf, size_t n, bool* eof) override {
    ClientConn* s = Stream(id);
    if (s == nullptr) {
      *eof = true;  // closed by us: a reset is queued before this
      return 0;
    }
    return w->H2ReadBody(s, buf, n, eof);
  }
};

struct H2Conn {
  H2Conn(const H2Settings& settings, Worker* w, ClientConn* c) : server(settings, &adapter) {
    adapter.w = w;
    adapter.conn = c;
    adapter.server = &server;
  }
  H2Adapter adapter;
  H2Server server;
  std::vector<ClientConn*> streams;
};

void DestroyH2Conn(H2Conn* h) { delete h; }

bool H2Quiet(const H2Conn* h) {
  // No stream, no header block half received, nothing nghttp2 wants to
  // send (SETTINGS ack, PING reply, WINDOW_UPDATE), no GOAWAY sent: the
  // session is between requests and references nothing of its worker.
  return h->streams.empty() && h->server.open_streams() == 0 && !h->server.head_pending() &&
         !h->server.WantsWrite() && !h->server.shutting_down() && h->server.Alive();
}

bool H2ShuttingDown(const H2Conn* h) { return h->server.shutting_down(); }

void RebindH2(H2Conn* h, Worker* w, ClientConn* c) {
  h->adapter.w = w;
  h->adapter.conn = c;
}

bool Worker::H2Detect(ClientConn* c) {
  if (c->h2_checked || c->ssl != nullptr) return false;
  if (c->state != ClientConn::State::kWaiting || c->parser.started()) {
    c->h2_checked = true;
    return false;
  }
  switch (MatchH2Preface(absl::string_view(c->in.data(), c->in.size()))) {
    case PrefaceMatch::kYes:
      StartH2(c);
      return false;
    case PrefaceMatch::kPartial:
      if (!c->read_eof) return true;
      c->h2_checked = true;
      return false;
    case PrefaceMatch::kNo:
      c->h2_checked = true;
      return false;
  }
  return false;
}

void Worker::StartH2(ClientConn* c) {
  H2Settings s;
  s.max_concurrent_streams = config_->h2_max_concurrent_streams;
  s.stream_window = std::max<uint32_t>(65535, config_->buffer_bytes);
  s.limits = config_->limits;
  c->h2 = new H2Conn(s, this, c);
  c->h2_checked = true;
  c->state = ClientConn::State::kActive;
  c->req_done = true;  // the connection itself carries no request
  c->head_timer = false;
  c->deadline = Now() + config_->timeouts.idle_ns;
  counters_->h2_connections.Add();
}

void Worker::H2Input(ClientConn* c) {
  bool ok = true;
  if (!c->in.empty()) {
    ok = c->h2->server.Recv(c->in.data(), c->in.size());
    c->in.Consume(c->in.size());
    const int64_t now = Now();
    c->deadline = now + config_->timeouts.idle_ns;
    if (c->h2->server.head_pending()) {
      // Slowloris: a header block must end within client_header_ms of its
      // start; more bytes (CONTINUATION drips, PINGs) do not extend it.
      if (c->h2_head_since == 0) c->h2_head_since = now;
      c->deadline = std::min(c->deadline, c->h2_head_since + config_->timeouts.client_header_ns);
    } else {
      c->h2_head_since = 0;
    }
  }
  if (c->dead) return;
  if (!ok) {
    // A connection error (bad preface, protocol violation): nghttp2 has
    // queued a GOAWAY; in-flight streams end with the connection.
    VLOG(1) << "h2 connection error from " << c->peer_ip;
    while (!c->h2->streams.empty()) {
      ClientConn* s = c->h2->streams.back();
      s->h2_closed = true;
      CloseClient(s);
    }
    c->state = ClientConn::State::kClosing;
  } else if (c->read_eof) {
    CloseClient(c);  // the client is gone: nobody to answer
    return;
  }
  ClientFlush(c);
}

bool Worker::H2Fill(ClientConn* c) {
  if (c->h2 == nullptr || c->out.size() >= config_->buffer_bytes) return false;
  if (c->h2->server.in_callback()) {
    H2Kick(c);
    return false;
  }
  h2_scratch_.clear();
  c->h2->server.Send(&h2_scratch_, config_->buffer_bytes - c->out.size());
  if (h2_scratch_.empty()) return false;
  c->out.Append(h2_scratch_);
  return true;
}

void Worker::H2Kick(ClientConn* x) {
  ClientConn* c = x->h2_parent != nullptr ? x->h2_parent : x;
  if (c->dead || c->h2_dirty) return;
  c->h2_dirty = true;
  h2_dirty_.push_back(c);
}

void Worker::H2Resume(ClientConn* s) {
  if (s->h2_parent->h2 != nullptr) s->h2_parent->h2->server.ResumeData(s->h2_id);
  H2Kick(s);
}

void Worker::H2Interim(ClientConn* s, int status) {
  if (s->h2_parent->h2 == nullptr) return;
  s->h2_parent->h2->server.SubmitInterim(s->h2_id, status);
  H2Kick(s);
}

bool Worker::H2Alive(ClientConn* c) { return c->h2->server.Alive(); }

void Worker::RunH2Dirty() {
  std::vector<ClientConn*> dirty;
  dirty.swap(h2_dirty_);
  for (ClientConn* c : dirty) c->h2_dirty = false;
  for (ClientConn* c : dirty) {
    if (!c->dead) ClientFlush(c);
  }
}

ClientConn* Worker::H2NewStream(ClientConn* conn, int32_t id) {
  auto* s = new ClientConn(config_->limits);
  s->kind = Kind::kClient;
  s->fd = -1;
  s->listener = conn->listener;
  s->peer_ip = conn->peer_ip;
  s->ipv6 = conn->ipv6;
  s->ip_hash = conn->ip_hash;
  s->client_subject = conn->client_subject;
  s->sink.w = this;
  s->sink.c = s;
  s->h2_parent = conn;
  s->h2_id = id;
  s->h2_checked = true;
  s->pos = clients_.size();
  clients_.push_back(s);
  ++h2_streams_;
  s->h2_pos = conn->h2->streams.size();
  conn->h2->streams.push_back(s);
  conn->h2->server.SetUser(id, s);
  return s;
}

void Worker::H2Respond(ClientConn* s, const std::string& h1, bool with_body) {
  ClientConn* conn = s->h2_parent;
  const size_t end = h1.find("\r\n\r\n");
  if (end == std::string::npos || conn->h2 == nullptr) return;
  if (end + 4 < h1.size()) {
    s->out.Append(h1.data() + end + 4, h1.size() - end - 4);
    with_body = true;
  }
  if (!conn->h2->server.SubmitResponse(s->h2_id, absl::string_view(h1.data(), end + 4),
                                       with_body)) {
    VLOG(1) << "h2: response for a stream that is gone";
  }
  H2Kick(s);
}

void Worker::H2StreamDone(ClientConn* s) {
  if (s->up != nullptr) AbandonUpstream(s);
  if (s->h2_unconsumed > 0) H2BodyDrained(s);
  s->local = true;  // body DATA still coming is dropped
  s->state = ClientConn::State::kClosing;
  s->deadline =
      Now() + (s->req_done ? config_->timeouts.idle_ns : config_->timeouts.client_body_ns);
  s->h2_out_eof = true;
  s->up_head.clear();
  ClientFlush(s);
}

void Worker::H2BodyDrained(ClientConn* s) {
  ClientConn* conn = s->h2_parent;
  if (conn->h2 != nullptr) conn->h2->server.Consume(s->h2_id, s->h2_unconsumed);
  s->h2_unconsumed = 0;
  H2Kick(s);
}

ssize_t Worker::H2ReadBody(ClientConn* s, uint8_t* buf, size_t n, bool* eof) {
  const size_t k = std::min(n, s->out.size());
  if (k > 0) {
    memcpy(buf, s->out.data(), k);
    s->out.Consume(k);
    if (s->state == ClientConn::State::kClosing && s->req_done) {
      s->deadline = Now() + config_->timeouts.idle_ns;
    }
  }
  if (s->out.empty()) s->out.Shrink();
  if (s->out.empty() && s->h2_out_eof) *eof = true;
  // Room again: read on from the backend (back-pressure through the window).
  if (s->up != nullptr && s->out.size() < config_->buffer_bytes) UpdateUpstream(s->up);
  if (k == 0 && !*eof) return -1;
  return static_cast<ssize_t>(k);
}

void Worker::H2CloseStream(ClientConn* s) {
  if (s->up != nullptr) AbandonUpstream(s);
  ClientConn* conn = s->h2_parent;
  if (conn->h2 != nullptr) {
    H2Server& server = conn->h2->server;
    if (s->h2_unconsumed > 0) server.Consume(s->h2_id, s->h2_unconsumed);
    s->h2_unconsumed = 0;
    if (!s->h2_closed) {
      server.SetUser(s->h2_id, nullptr);
      server.ResetStream(s->h2_id, NGHTTP2_INTERNAL_ERROR);
      H2Kick(conn);
    }
    auto& v = conn->h2->streams;
    v[s->h2_pos] = v.back();
    v[s->h2_pos]->h2_pos = s->h2_pos;
    v.pop_back();
  }
  clients_[s->pos] = clients_.back();
  clients_[s->pos]->pos = s->pos;
  clients_.pop_back();
  --h2_streams_;
  Graveyard(s);
}

void Worker::H2CloseConn(ClientConn* c) {
  H2Conn* h = c->h2;
  while (!h->streams.empty()) {
    ClientConn* s = h->streams.back();
    s->h2_closed = true;
    CloseClient(s);
  }
  c->h2 = nullptr;
  delete h;
}

void Worker::H2Tick(ClientConn* c, int64_t now) {
  H2Conn* h = c->h2;
  if (c->h2_head_since != 0 && h->server.head_pending()) {
    const int64_t head_deadline = c->h2_head_since + config_->timeouts.client_header_ns;
    if (now >= head_deadline) {
      counters_->client_timeouts.Add();
      VLOG(1) << "h2 header block from " << c->peer_ip << " not ended in time";
      CloseClient(c);
      return;
    }
    if (!h->streams.empty()) {
      c->deadline = head_deadline;
      return;
    }
  }
  if (!h->streams.empty()) {
    c->deadline = now + config_->timeouts.idle_ns;  // the streams have their own timers
    return;
  }
  if (h->server.shutting_down()) {
    CloseClient(c);  // the GOAWAY had its second
    return;
  }
  // Idle: GOAWAY, then close once it is written (or after a second).
  h->server.Shutdown();
  c->deadline = now + 1'000'000'000;
  ClientFlush(c);
}

void Worker::H2Drain(ClientConn* c) {
  // SIGTERM: GOAWAY with the last stream seen; those streams finish, and the
  // connection closes once nghttp2 has nothing left to read or write.
  c->h2->server.Shutdown();
  H2Kick(c);
}

}  // namespace lb::l7
