// Connection objects of an lb-l7 worker (internal to dataplane/l7): the byte
// queue, the epoll-registered Pollable, the client side (ClientConn: one
// request at a time) and the server side (UpstreamConn: pooled keep-alive).
// Owned and touched by one worker thread only; freed by the worker after the
// event batch in which they were closed (later events may still name them).
#ifndef LB_DATAPLANE_L7_CONN_H_
#define LB_DATAPLANE_L7_CONN_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

class Worker;
class TlsContext;
struct ClientConn;
struct UpstreamConn;
struct H2Conn;  // worker_h2.cc
void DestroyH2Conn(H2Conn* h);
// Whether h may move to another worker (Worker::HandOverIdle), and the move.
bool H2Quiet(const H2Conn* h);
bool H2ShuttingDown(const H2Conn* h);  // GOAWAY sent
void RebindH2(H2Conn* h, Worker* w, ClientConn* c);

inline constexpr size_t kReadChunk = 65536;
// After an error response: read and discard what the client still sends for
// this long (or this much) so that our close does not reset the connection
// before the client has read the answer (lingering close, as nginx does).
inline constexpr int64_t kLingerNs = 2'000'000'000;
inline constexpr size_t kLingerBytes = 4 << 20;

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
  // An idle connection keeps no more than kKeepBytes of buffer memory: a
  // small request or answer's buffer stays for the next one (a malloc and a
  // free fewer per request on keep-alive), a large body's is freed.
  static constexpr size_t kKeepBytes = 1024;
  void Shrink() {
    if (empty() && data_.capacity() > kKeepBytes) {
      std::string().swap(data_);
      off_ = 0;
    }
  }

 private:
  std::string data_;
  size_t off_ = 0;
  uint64_t appended_ = 0;
};

inline uint64_t Fnv1a(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<const unsigned char*>(p)[i];
    h *= 1099511628211ULL;
  }
  return h;
}

inline bool IsIdempotent(absl::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

inline void AppendChunk(Buffer* b, const char* data, size_t n) {
  char hex[24];
  const int len = snprintf(hex, sizeof(hex), "%zx\r\n", n);
  b->Append(hex, static_cast<size_t>(len));
  b->Append(data, n);
  b->Append("\r\n", 2);
}

enum class Kind { kListener, kClient, kUpstream, kWake, kStore };

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
  ~ClientConn() override {
    if (ssl != nullptr) SSL_free(ssl);
  }
  // `req` refers into this connection's own parser: a copy would point at
  // the original's.
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;
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
  // so responses go out in order). HTTP/1: the parser's own head, which it
  // keeps until its Reset() in FinishStream, so the head is neither copied
  // nor swapped per request (a swap of its five strings cost ~500
  // instructions a request). An h2 stream (whose parser is never used) has
  // its head moved in.
  MessageHead& req = *parser.mutable_head();
  int route = -1, pool = -1, backend = -1;
  std::vector<int> tried;
  uint64_t pick_hash = 0;       // what the pool's balancer hashes (ip_hash or the kMaglev key)
  int sticky_backend = -1;      // pinned by a valid cookie or the source-IP table
  int64_t sticky_expiry_s = 0;  // the valid cookie's expiry
  UpstreamConn* up = nullptr;
  // Waiting before a backend is chosen: for the shared sticky store's
  // answer, or in the pool's queue (max_connections). Meanwhile the
  // upstream bytes (head, and any body bytes parsed with it) wait in
  // `pending` and no more of the body is read.
  bool store_wait = false;
  bool queued = false;
  int store = -1;  // the RedisStore waited on
  std::string pending;
  std::string up_head;  // kept for a retry while the request has no body
  bool req_done = false;
  bool resp_started = false;
  bool local = false;  // answered by lb-l7 itself; body discarded
  bool keep_alive = false;
  ClientFraming framing = ClientFraming::kNone;
  int status = 0;
  bool tunnel = false;       // after a 101, or a routed passthrough: raw bytes both ways
  bool passthrough = false;  // accepted on an SNI passthrough listener
  int64_t t_start = 0;       // head accepted (monotonic ns)
  uint64_t out_mark = 0;     // out.appended() when the head was accepted
  std::string rid;           // X-Request-ID sent upstream

  // TLS listeners only (plain HTTP: ssl == null). Reads and writes go
  // through SSL_read/SSL_write (Worker::ClientRecv/ClientSend); `tls` keeps
  // the certificate generation this connection started with alive.
  SSL* ssl = nullptr;
  std::shared_ptr<TlsContext> tls;
  bool handshaking = false;
  bool ssl_read_wants_write = false;  // SSL_read/handshake: WANT_WRITE
  bool ssl_write_wants_read = false;  // SSL_write: WANT_READ
  // The last SSL_read wanted socket bytes: epoll will say when they come.
  // Bytes OpenSSL holds then are an incomplete record, not a reason to
  // call SSL_read again (that would spin).
  bool ssl_read_blocked = false;
  bool tls_ready = false;      // queued in Worker::tls_ready_
  std::string client_subject;  // verified client certificate (mTLS); "" = none

  // HTTP/2 (worker_h2.cc). A connection that speaks h2 owns `h2` (the
  // nghttp2 session; state kActive, req_done, no request of its own). Each
  // of its streams is a ClientConn of its own with `h2_parent` set: no fd,
  // never in epoll, but in clients_ (timers), and the request pipeline
  // (routing, balancing, sticky, header rules, retries, upstream pool)
  // runs on it unchanged; `out` holds the response body, which nghttp2
  // pulls as the client's window allows.
  H2Conn* h2 = nullptr;
  bool h2_checked = false;  // plaintext: the first bytes were not a preface
  bool h2_dirty = false;    // queued in Worker::h2_dirty_
  ClientConn* h2_parent = nullptr;
  int32_t h2_id = 0;
  size_t h2_pos = 0;          // slot in the parent's stream list
  bool h2_out_eof = false;    // the response body is complete in `out`
  bool h2_closed = false;     // nghttp2 closed the stream (no RST to send)
  size_t h2_unconsumed = 0;   // body bytes given to the backend, window not yet returned
  uint64_t h2_body = 0;       // request body bytes received (access log)
  int64_t h2_head_since = 0;  // connection: a header block pending since (ns)
  // HTTPS as the backend and the cookies see it (a stream's parent's TLS).
  bool Secure() const {
    return ssl != nullptr || (h2_parent != nullptr && h2_parent->ssl != nullptr);
  }
};

struct UpstreamConn : Pollable {
  UpstreamConn(const Http1Limits& limits) : parser(Http1Parser::Kind::kResponse, limits) {}
  ~UpstreamConn() override {
    if (ssl != nullptr) SSL_free(ssl);
  }
  int pool = 0, backend = 0;
  bool connecting = false;
  bool reused = false;  // served a request before this one
  ClientConn* client = nullptr;
  Buffer out;
  Http1Parser parser;
  UpstreamSink sink;
  int64_t deadline = 0;
  int64_t t_sent = 0;  // request handed to the backend (monotonic ns); 0 = head seen
  bool extra_bytes = false;
  bool response_done = false;
  bool tunnel = false;
  bool bad = false;

  // Pools with upstream_tls only (worker_upstream_tls.cc). `connecting`
  // stays true until the handshake is done, so nothing is sent before.
  SSL* ssl = nullptr;
  bool handshaking = false;
  bool ssl_read_wants_write = false;  // SSL_read/handshake: WANT_WRITE
  bool ssl_write_wants_read = false;  // SSL_write: WANT_READ
  bool tls_ready = false;             // queued in Worker::up_tls_ready_
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_CONN_H_
