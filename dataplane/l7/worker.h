// One lb-l7 worker: an epoll event loop on its own thread, its own
// SO_REUSEPORT listening sockets, client connections, upstream keep-alive
// pools (per backend), balancers and counters. Nothing on the request path is
// shared with another worker, so there is no lock on it (nginx/Seastar
// shape; the kernel spreads connections over the workers' sockets).
//
// Life cycle: Open() on the main thread (fails with the socket error naming
// the listener), Run() on the worker thread, RequestStop() from any thread:
// the worker closes its listeners, lets in-flight requests finish (their
// responses say Connection: close), gives idle keep-alive connections a
// grace in which their next request is still answered (with Connection:
// close) and closes those still idle after it, and returns from Run() when
// nothing is left or the drain deadline passes.
//
// A configuration change (Runner) retires a worker with RequestRetire
// instead: the same, except that an HTTP/1.1 keep-alive connection (plain,
// or TLS with its handshake done) is not closed. Once it is between two
// requests (answer written, nothing buffered, no backend attached; for TLS
// also nothing inside OpenSSL either way) it leaves this worker's epoll and
// is handed to the successor (the new configuration's worker with the same
// id, Adopt), which serves its next requests with the new configuration: a
// configuration change drops no such connection and sends no Connection:
// close. A TLS connection moves with its SSL (which keeps the SSL_CTX and
// certificates it was accepted with), and only to a TLS listener with the
// same TLS settings. An HTTP/2 connection moves too, with its nghttp2
// session, once idle (no stream, nothing to write) within the idle grace
// of the retirement's start; one still busy then gets GOAWAY. Tunnels,
// passthrough and connections whose listener the new configuration does
// not have (or has with other TLS settings) end as with RequestStop.
//
// TLS listeners (worker_tls.cc): the handshake and SSL_read/SSL_write run in
// the same loop; a connection starts from the TlsStore generation current
// when it was accepted (checked once per loop turn) and keeps it.
//
// SNI passthrough listeners (worker_passthrough.cc): no TLS and no HTTP on
// the connection; the ClientHello picks the pool and the connection becomes
// a tunnel (the relay of Upgrade, below) to a backend of that pool.
//
// Timers are checked every kTickMs by a scan of the worker's connections
// (O(connections) per tick; a timer wheel is the next step at 10k+).
#ifndef LB_DATAPLANE_L7_WORKER_H_
#define LB_DATAPLANE_L7_WORKER_H_

#include <openssl/ssl.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/l7/access_log.h"
#include "dataplane/l7/counters.h"
#include "lib/l7/balancer.h"
#include "lib/l7/retry_budget.h"
#include "proto/l7_config.h"

namespace lb::l7 {

struct ClientConn;
struct H2Conn;
struct UpstreamConn;
struct Pollable;
class TlsContext;
class TlsStore;
class UpstreamTls;
class RedisStore;

class Worker {
 public:
  // `active[p]`: pool p's active-request counts, shared by all workers
  // (least_connections and random compare across workers); outlives Run().
  Worker(int id, const RuntimeConfig* config, WorkerCounters* counters,
         const std::vector<ActiveCounts*>& active);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens the listeners. `predecessor`: the worker with the same id of the
  // configuration this one replaces (null = none): for every listener
  // address both configurations have, this worker takes a duplicate of the
  // predecessor's listening socket instead of binding a new one, so the
  // socket (and the connections waiting in its accept queue) lives on when
  // the predecessor drains and closes its copy. Main thread, before the
  // predecessor is asked to stop.
  absl::Status Open(const Worker* predecessor = nullptr);
  // Before Run(): where answered requests are logged (null = nowhere).
  void SetAccessLog(AccessLog* log) { access_log_ = log; }
  // Before Run(): the TLS contexts of the listeners (null = no TLS
  // listener). The worker picks up a new generation between event batches.
  void SetTls(TlsStore* store) { tls_store_ = store; }
  // Before Run(): per pool, TLS to its backends (null entry = plain); fixed
  // for the process (pools do not change on reload). Outlives Run().
  void SetUpstreamTls(const std::vector<std::shared_ptr<UpstreamTls>>* tls) { up_tls_ = tls; }
  void Run();
  // Same rules as Open(): the listening socket bound to `addr_text` (as in
  // ListenerConfig::addr.text), or -1.
  int ListenerFd(const std::string& addr_text) const;
  // Thread-safe. Stop accepting; finish in-flight work until `drain_ms`.
  // idle_grace_ms: how long a keep-alive connection idle at the stop may
  // still send one request (a client cannot tell a close from a server
  // that is about to answer; closing at once loses a request sent then).
  void RequestStop(int64_t drain_ms, int64_t idle_grace_ms);
  // Thread-safe. RequestStop, handing idle HTTP/1.1 keep-alive
  // connections to `successor` (see above). `successor` must outlive this
  // worker's Run() (the Runner retires generations oldest first).
  void RequestRetire(Worker* successor, int64_t drain_ms, int64_t idle_grace_ms);
  // Thread-safe: a client connection from a retiring predecessor, on this
  // worker's listener `listener` (an index of its configuration). False
  // when this worker has left Run() (the caller keeps the connection).
  struct Handed {
    int fd = -1;
    int listener = 0;
    std::string peer_ip;
    bool ipv6 = false;
    uint64_t ip_hash = 0;
    // TLS: the connection's SSL (owned by the receiver once Adopt returned
    // true), the certificate generation it started with, its mTLS subject.
    SSL* ssl = nullptr;
    std::shared_ptr<TlsContext> tls;
    std::string client_subject;
    // HTTP/2: the connection's nghttp2 session, idle (no stream), owned by
    // the receiver once Adopt returned true.
    H2Conn* h2 = nullptr;
  };
  bool Adopt(Handed h);
  // The index of this worker's listener on `l`'s address that may take
  // `l`'s connections (plain HTTP/1 for plain; TLS with the same TLS
  // settings for TLS), or -1.
  int SuccessorListenerIndex(const ListenerConfig& l) const;

 private:
  friend struct ClientSink;
  friend struct UpstreamSink;
  friend struct H2Adapter;

  // Event handlers.
  void OnListener(Pollable* p);
  void OnClient(ClientConn* c, uint32_t ev);
  void OnUpstream(UpstreamConn* u, uint32_t ev);
  void OnTick(int64_t now);
  void BeginDrain();
  // Retiring: hands the connections that are between requests to the
  // successor; AdoptHanded takes what a predecessor handed over.
  void HandOverIdle();
  void AdoptHanded();
  // Whether c may be handed over (HTTP/1 over plain TCP or a completed
  // TLS handshake, its listener in the successor): then draining does not
  // close it.
  bool Handable(const ClientConn* c) const;
  // Draining closes c after its current answer.
  bool CloseOnDrain(const ClientConn* c) const { return draining_ && !Handable(c); }

  // Client side.
  void ClientRead(ClientConn* c);
  void ClientPump(ClientConn* c);
  void PumpLoop(ClientConn* c);
  void ClientFlush(ClientConn* c);
  void ClientHead(ClientConn* c);
  void RouteRequest(ClientConn* c);  // c->req is the new request head (HTTP/1 or h2)
  void ClientBody(ClientConn* c, const char* data, size_t n);
  void ClientRequestDone(ClientConn* c);
  void LocalResponse(ClientConn* c, int status, const char* body, bool close);
  void FinishStream(ClientConn* c);
  void LogRequest(ClientConn* c);
  void FlushAccessLog();
  void CloseClient(ClientConn* c);
  void UpdateClient(ClientConn* c);

  // TLS (worker_tls.cc).
  void RefreshTls();
  bool StartTls(ClientConn* c);
  void ClientHandshake(ClientConn* c);
  ssize_t ClientRecv(ClientConn* c, char* buf, size_t n);
  ssize_t ClientSend(ClientConn* c, const char* buf, size_t n);
  void TlsCloseNotify(ClientConn* c);
  void RunTlsReady();
  void CountTlsFailure(ClientConn* c, int reason);

  // SNI passthrough (worker_passthrough.cc): read until the ClientHello is
  // complete, route on its server_name, connect, replay, then the tunnel.
  void PassthroughRead(ClientConn* c);
  void CountPassthroughFailure(ClientConn* c, PassthroughFail reason);
  void PassthroughConnect(ClientConn* c);
  // A passthrough connection's backend failed: the next backend while the
  // connect had not succeeded (nothing was relayed yet), else close both.
  void PassthroughUpstreamFailed(UpstreamConn* u, bool connect_failure);
  // HTTP/2 (worker_h2.cc): the connection's session and its streams.
  // H2Detect: plaintext first bytes; true while they may still become a
  // preface (the HTTP/1 parser must not see them yet).
  bool H2Detect(ClientConn* c);
  void StartH2(ClientConn* c);
  void H2Input(ClientConn* c);
  bool H2Fill(ClientConn* c);  // frames into c->out; true if any
  void H2Kick(ClientConn* stream);
  void H2Resume(ClientConn* s);  // s's body has new bytes (or ended)
  void H2Interim(ClientConn* s, int status);
  bool H2Alive(ClientConn* c);  // false: the session is over, close once written
  void RunH2Dirty();
  ClientConn* H2NewStream(ClientConn* conn, int32_t id);
  void H2Respond(ClientConn* s, const std::string& h1, bool with_body);
  void H2StreamDone(ClientConn* s);
  void H2BodyDrained(ClientConn* s);
  void H2CloseStream(ClientConn* s);
  void H2CloseConn(ClientConn* c);
  void H2Tick(ClientConn* c, int64_t now);
  void H2Drain(ClientConn* c);
  ssize_t H2ReadBody(ClientConn* s, uint8_t* buf, size_t n, bool* eof);

  // Sticky sessions (worker_sticky.cc): the request's pin, the pinned
  // backend if it is available, and the Set-Cookie / table refresh.
  // StickyLookup returns true when the pin is being asked of the shared
  // store: the request resumes in StoreResults.
  bool StickyLookup(ClientConn* c);
  void StoreResults(RedisStore* s);
  // Continues a request that waited (store answer, queue) with its pending bytes.
  void Resume(ClientConn* c);
  int StickyBackend(ClientConn* c);
  void StickyRespond(ClientConn* c, std::string* head);

  // max_connections queue (worker_upstream.cc): a request waits for a
  // backend below its limit, at most queue_timeout_ms (then 503).
  void Enqueue(ClientConn* c, std::string pending);
  void Unqueue(ClientConn* c);
  void ServeQueues();
  // The pool's retry budget allows one more retry (else counted).
  bool RetryAllowed(int pool);
  // Draining backends: their idle pooled connections close (each tick).
  void CloseDrainingIdle();
  // OnTick's verdicts for a connection whose deadline passed: a queued
  // request's 503, an HTTP/2 connection's own timers, 408 or a close by
  // state; an upstream's connect or response timeout (502/504 or a close).
  void ClientTimedOut(ClientConn* c, int64_t now);
  void UpstreamTimedOut(UpstreamConn* u);

  // Upstream side.
  // Sends `pending` (the upstream head and any body bytes parsed with it)
  // to a backend; may take its contents (queue), else leaves it empty.
  void StartUpstream(ClientConn* c, std::string* pending);
  void Attach(ClientConn* c, UpstreamConn* u, int backend);
  void CompleteResponse(UpstreamConn* u, bool no_extra);
  bool Connect(ClientConn* c, int backend, std::string* pending);
  void UpstreamConnected(UpstreamConn* u);
  void UpstreamFailed(UpstreamConn* u, bool connect_failure, const char* why);
  void UpstreamRead(UpstreamConn* u);
  void UpstreamFlush(UpstreamConn* u);
  void UpstreamHead(UpstreamConn* u);
  void UpstreamBody(UpstreamConn* u, const char* data, size_t n);
  void UpstreamDone(UpstreamConn* u);
  void ReleaseUpstream(UpstreamConn* u, bool reusable);
  void CloseUpstream(UpstreamConn* u);
  // Ends c's exchange with its backend mid-way: the request stops counting
  // as active on the backend, the two are detached, and the backend
  // connection is closed (its framing state is unknown). Requires c->up.
  void AbandonUpstream(ClientConn* c);
  void StartTunnel(UpstreamConn* u, const char* data, size_t n);
  void TunnelFromClient(ClientConn* c);
  void TunnelFromUpstream(UpstreamConn* u);
  void UpdateUpstream(UpstreamConn* u);

  // TLS to backends (worker_upstream_tls.cc).
  void UpstreamReady(UpstreamConn* u);
  void StartUpstreamTls(UpstreamConn* u, const UpstreamTls& tls);
  void UpstreamHandshake(UpstreamConn* u);
  ssize_t UpstreamRecv(UpstreamConn* u, char* buf, size_t n);
  ssize_t UpstreamSend(UpstreamConn* u, const char* buf, size_t n);
  bool UpstreamIdleRead(UpstreamConn* u);
  void UpstreamTlsPending(UpstreamConn* u, uint32_t ev);
  void UpstreamTlsClose(UpstreamConn* u);

  void SetInterest(Pollable* p, uint32_t events);
  void Graveyard(Pollable* p);
  int64_t Now() const;
  // A new generated X-Request-ID (32 hex), valid until the next call.
  absl::string_view NextRequestId();
  int BackendSlot(int pool, int backend) const { return backend_base_[pool] + backend; }

  const int id_;
  const RuntimeConfig* const config_;
  Http1Limits upstream_limits_;
  WorkerCounters* const counters_;
  int epfd_ = -1;
  int wakefd_ = -1;
  std::vector<std::unique_ptr<Pollable>> listeners_;
  std::vector<Balancer> balancers_;    // per pool
  std::vector<ActiveCounts*> active_;  // per pool, shared with the other workers
  std::vector<RetryBudget> budgets_;   // per pool
  // Requests waiting for a backend under max_connections, per pool (FIFO).
  std::vector<std::deque<ClientConn*>> queue_;
  bool requeue_front_ = false;  // ServeQueues: a request that still cannot go keeps its place
  size_t queued_total_ = 0;
  std::vector<std::unique_ptr<RedisStore>> stores_;  // per RuntimeConfig::stores
  // idle_[pool][backend]: pooled keep-alive upstream connections (LIFO).
  std::vector<std::vector<std::vector<UpstreamConn*>>> idle_;
  std::vector<int> backend_base_;  // first backend slot of each pool
  std::vector<int> route_base_;    // first route slot of each listener
  std::vector<ClientConn*> clients_;
  std::vector<UpstreamConn*> upstreams_;
  std::vector<Pollable*> dead_;
  std::string scratch_;
  // Heads built per request (upstream request, client response): their
  // capacity stays with the worker, no allocation per request. Moved out
  // while in use, so a nested use (it should not happen) would only
  // allocate.
  std::string up_head_scratch_;
  std::string resp_head_scratch_;
  char request_id_[32] = {};
  uint64_t request_seq_ = 0;
  uint64_t id_seed_ = 0;
  std::atomic<int64_t> stop_deadline_ns_{0};  // 0 = running
  std::atomic<int64_t> idle_grace_ns_{0};     // set with stop_deadline_ns_
  bool draining_ = false;
  int64_t drain_started_ns_ = 0;             // BeginDrain's Now()
  std::atomic<Worker*> successor_{nullptr};  // set by RequestRetire
  std::vector<int> successor_listener_;      // per listener: its index there, or -1
  std::mutex handed_mu_;
  std::vector<Handed> handed_;  // guarded by handed_mu_
  bool handed_closed_ = false;  // guarded by handed_mu_: Run() has returned
  AccessLog* access_log_ = nullptr;
  std::string log_buf_;  // lines not yet handed to the writer thread
  uint64_t log_lines_ = 0;
  TlsStore* tls_store_ = nullptr;
  uint64_t tls_gen_ = 0;
  std::vector<std::shared_ptr<TlsContext>> tls_;  // per listener; null = plain
  // TLS connections with decrypted bytes buffered inside OpenSSL that epoll
  // cannot report (the socket may be empty): served after the event batch.
  std::vector<ClientConn*> tls_ready_;
  const std::vector<std::shared_ptr<UpstreamTls>>* up_tls_ = nullptr;
  // up_sessions_[pool][backend]: the last TLS session that backend issued
  // (resumed by the next connection to it; owned, freed in ~Worker).
  std::vector<std::vector<SSL_SESSION*>> up_sessions_;
  std::vector<UpstreamConn*> up_tls_ready_;  // as tls_ready_, upstream side
  // HTTP/2 connections with frames to write, served after the event batch
  // (nghttp2 cannot write from inside its own callbacks).
  std::vector<ClientConn*> h2_dirty_;
  size_t h2_streams_ = 0;  // streams in clients_ (not connections)
  std::string h2_scratch_;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_WORKER_H_
