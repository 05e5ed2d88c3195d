// The TLS transport of a worker's upstream connections (pools with
// upstream_tls): the non-blocking client handshake after the TCP connect,
// SSL_read/SSL_write with WANT_READ/WANT_WRITE mapped onto the connection's
// interest (as worker_tls.cc does for clients), session resumption from the
// backend's last session, and close_notify (docs/L7.md "TLS to backends").
#include <errno.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "dataplane/l7/conn.h"
#include "dataplane/l7/ssl_io.h"
#include "dataplane/l7/upstream_tls.h"
#include "dataplane/l7/worker.h"
#include "glog/logging.h"

namespace lb::l7 {

void Worker::StartUpstreamTls(UpstreamConn* u, const UpstreamTls& tls) {
  u->ssl = tls.NewSsl(u->fd, &up_sessions_[u->pool][u->backend]);
  if (u->ssl == nullptr) {
    ERR_clear_error();
    counters_->upstream_tls_failures[static_cast<int>(UpstreamTlsFail::kOther)].Add();
    UpstreamFailed(u, true, "TLS to the backend failed");
    return;
  }
  u->handshaking = true;
  UpstreamHandshake(u);
}

void Worker::UpstreamHandshake(UpstreamConn* u) {
  u->ssl_read_wants_write = false;
  const int r = SSL_do_handshake(u->ssl);
  if (r == 1) {
    u->handshaking = false;
    counters_->upstream_tls_handshakes[SSL_session_reused(u->ssl) ? 1 : 0].Add();
    UpstreamReady(u);
    return;
  }
  const int e = SSL_get_error(u->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    u->ssl_read_wants_write = e == SSL_ERROR_WANT_WRITE;
    UpdateUpstream(u);
    return;
  }
  const UpstreamTlsFail why = ClassifyUpstreamTlsFailure(u->ssl, e);
  counters_->upstream_tls_failures[static_cast<int>(why)].Add();
  VLOG(1) << "TLS handshake with backend " << config_->pools[u->pool].backends[u->backend].addr.text
          << " failed: " << UpstreamTlsFailName(static_cast<int>(why));
  // A connect failure: ejection accounting, and a retry on another backend
  // for an idempotent request, exactly as for a refused connect.
  UpstreamFailed(u, true, "TLS handshake with the backend failed");
}

// read(2) semantics, as Worker::ClientRecv.
ssize_t Worker::UpstreamRecv(UpstreamConn* u, char* buf, size_t n) {
  if (u->ssl == nullptr) return recv(u->fd, buf, n, 0);
  return SslRecv(u->ssl, buf, n, &u->ssl_read_wants_write, nullptr);
}

ssize_t Worker::UpstreamSend(UpstreamConn* u, const char* buf, size_t n) {
  if (u->ssl == nullptr) return send(u->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  return SslSend(u->ssl, buf, n, &u->ssl_write_wants_read);
}

// An idle pooled connection became readable: true = keep it (TLS records
// that carry no data, e.g. a TLS 1.3 session ticket sent late, which
// OnNewSession stores), false = the backend closed it or sent bytes nobody
// asked for.
bool Worker::UpstreamIdleRead(UpstreamConn* u) {
  if (u->ssl == nullptr) return false;
  char b[256];
  const int r = SSL_read(u->ssl, b, sizeof(b));
  if (r > 0) return false;
  if (SSL_get_error(u->ssl, r) != SSL_ERROR_WANT_READ) {
    ERR_clear_error();
    return false;
  }
  return true;
}

// Decrypted bytes OpenSSL holds are invisible to epoll: when the loop wants
// to read, serve the connection after the event batch.
void Worker::UpstreamTlsPending(UpstreamConn* u, uint32_t ev) {
  if (!(ev & EPOLLIN) || u->tls_ready || u->connecting || u->client == nullptr) return;
  if (SSL_pending(u->ssl) <= 0) return;
  u->tls_ready = true;
  up_tls_ready_.push_back(u);
}

void Worker::UpstreamTlsClose(UpstreamConn* u) {
  if (u->tls_ready) {
    auto it = std::find(up_tls_ready_.begin(), up_tls_ready_.end(), u);
    if (it != up_tls_ready_.end()) up_tls_ready_.erase(it);
    u->tls_ready = false;
  }
  if (u->handshaking) return;
  SSL_shutdown(u->ssl);  // one close_notify, never waited for
  ERR_clear_error();
}

}  // namespace lb::l7
