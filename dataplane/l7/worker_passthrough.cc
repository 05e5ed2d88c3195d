// SNI passthrough listeners (docs/L7.md "SNI passthrough"): the worker reads
// the client's first bytes until lib/l7/client_hello.h sees a complete
// ClientHello (bounded by max_client_hello_bytes, timed by
// client_hello_timeout_ms), routes on its server_name, connects to a backend
// the pool's balancer picks, hands it every byte read so far, and from then
// on the connection is a tunnel (worker_upstream.cc: the same bounded relay
// as Upgrade, back-pressure both ways, idle_ms, no half-close). No byte is
// decrypted and nothing is sent to the client by lb-l7 itself.
#include <errno.h>
#include <sys/socket.h>

#include <algorithm>

#include "dataplane/l7/conn.h"
#include "dataplane/l7/worker.h"
#include "glog/logging.h"
#include "lib/l7/client_hello.h"

namespace lb::l7 {

void Worker::CountPassthroughFailure(ClientConn* c, PassthroughFail reason) {
  counters_->passthrough_failures[c->listener * kPassthroughFailCount + static_cast<int>(reason)]
      .Add();
}

void Worker::PassthroughRead(ClientConn* c) {
  const ListenerConfig& lc = config_->listeners[c->listener];
  const PassthroughConfig& pt = lc.pt;
  // One byte past the limit is enough to know it is exceeded.
  const size_t cap = pt.max_client_hello_bytes + 1;
  scratch_.resize(kReadChunk);
  bool closed = false;
  while (c->in.size() < cap) {
    const size_t want = std::min(kReadChunk, cap - c->in.size());
    const ssize_t r = recv(c->fd, &scratch_[0], want, 0);
    if (r > 0) {
      c->in.Append(scratch_.data(), static_cast<size_t>(r));
      if (static_cast<size_t>(r) < want) break;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
    closed = true;  // EOF or reset
    break;
  }
  const HelloResult h = ParseClientHello(reinterpret_cast<const uint8_t*>(c->in.data()),
                                         c->in.size(), pt.max_client_hello_bytes);
  if (closed || h.status == HelloStatus::kNeedMore) {
    if (closed) {
      CountPassthroughFailure(c, PassthroughFail::kClosed);
      CloseClient(c);
    } else {
      UpdateClient(c);
    }
    return;
  }
  int route = -1;
  if (h.status == HelloStatus::kOk && !h.sni.empty()) {
    route = lc.router.Match(h.sni, "/", "");
    if (lc.router.PoolOf(route) < 0) {
      CountPassthroughFailure(c, PassthroughFail::kNoRoute);
      CloseClient(c);
      return;
    }
  } else {
    bool to_default;
    if (h.status == HelloStatus::kOk) {
      CountPassthroughFailure(c, PassthroughFail::kNoSni);
      to_default = pt.no_sni_to_default;
    } else {
      VLOG(1) << "passthrough listener " << lc.name << ": ClientHello refused: " << h.why;
      CountPassthroughFailure(c, h.status == HelloStatus::kTooLarge ? PassthroughFail::kOversized
                                                                    : PassthroughFail::kMalformed);
      to_default = pt.invalid_to_default;
    }
    if (!to_default) {
      CloseClient(c);
      return;
    }
    route = static_cast<int>(lc.router.routes().size());  // the default route
  }
  c->route = route;
  c->pool = lc.router.PoolOf(route);
  c->state = ClientConn::State::kActive;
  c->head_timer = false;
  c->t_start = Now();
  c->pick_hash = c->ip_hash;  // ip_hash and Maglev pools hash the client address
  counters_->passthrough_conns[c->listener * config_->pools.size() + c->pool].Add();
  PassthroughConnect(c);
}

void Worker::PassthroughConnect(ClientConn* c) {
  const PoolConfig& pc = config_->pools[c->pool];
  Balancer& bal = balancers_[c->pool];
  // Everything read so far is replayed to the backend, in order, first.
  std::string pending = c->in.Take();
  while (true) {
    const int b = bal.Pick(c->pick_hash, Now(), c->tried);
    if (b < 0 || c->tried.size() > pc.connect_retries) break;
    if (Connect(c, b, &pending)) {
      UpstreamConn* u = c->up;
      if (u == nullptr || u->dead) return;  // failed at once (handled there)
      u->tunnel = c->tunnel = true;
      c->deadline = Now() + config_->timeouts.idle_ns;
      UpstreamFlush(u);  // connected at once: relay what the client sent meanwhile
      if (!c->dead) UpdateClient(c);
      return;
    }
    counters_->upstream_retries.Add();
  }
  CountPassthroughFailure(c, PassthroughFail::kNoBackend);
  CloseClient(c);
}

void Worker::PassthroughUpstreamFailed(UpstreamConn* u, bool connect_failure) {
  ClientConn* c = u->client;
  const PoolConfig& pc = config_->pools[c->pool];
  // Nothing reached the backend while it was connecting: what it held is
  // the replay, which goes before anything the client sent since.
  std::string replay = connect_failure ? u->out.Take() : std::string();
  c->tried.push_back(u->backend);
  AbandonUpstream(c);
  if (!connect_failure) {
    CloseClient(c);
    return;
  }
  c->tunnel = false;
  std::string later = c->in.Take();
  c->in.Append(replay);
  c->in.Append(later);
  if (c->tried.size() > pc.connect_retries) {
    CountPassthroughFailure(c, PassthroughFail::kNoBackend);
    CloseClient(c);
    return;
  }
  counters_->upstream_retries.Add();
  PassthroughConnect(c);
}

}  // namespace lb::l7
