// The TLS transport of a worker's client connections: the non-blocking
// handshake driven by epoll, SSL_read/SSL_write with WANT_READ/WANT_WRITE
// mapped onto the loop's interest, and the generation of certificates new
// connections start with (docs/L7.md "TLS").
#include <errno.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "dataplane/l7/conn.h"
#include "dataplane/l7/ssl_io.h"
#include "dataplane/l7/tls.h"
#include "dataplane/l7/worker.h"
#include "glog/logging.h"

namespace lb::l7 {

void Worker::RefreshTls() {
  if (tls_store_ == nullptr) return;
  const uint64_t g = tls_store_->generation();
  if (g == tls_gen_) return;
  tls_ = tls_store_->Get();
  tls_gen_ = g;
}

bool Worker::StartTls(ClientConn* c) {
  if (static_cast<size_t>(c->listener) >= tls_.size() || tls_[c->listener] == nullptr) return true;
  c->ssl = tls_[c->listener]->NewSsl(c->fd);
  if (c->ssl == nullptr) {
    ERR_clear_error();
    CountTlsFailure(c, static_cast<int>(TlsFail::kOther));
    return false;
  }
  c->tls = tls_[c->listener];
  c->handshaking = true;
  return true;
}

void Worker::CountTlsFailure(ClientConn* c, int reason) {
  counters_->tls_failures[c->listener * kTlsFailCount + reason].Add();
}

void Worker::ClientHandshake(ClientConn* c) {
  c->ssl_read_wants_write = false;
  const int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->handshaking = false;
    const int l = c->listener;
    counters_->tls_handshakes[l * 2 + (SSL_session_reused(c->ssl) ? 1 : 0)].Add();
    counters_->tls_versions[l * 2 + (SSL_version(c->ssl) == TLS1_3_VERSION ? 1 : 0)].Add();
    counters_->tls_ciphers[l * kTlsCipherCount + TlsCipherIndex(c->ssl)].Add();
    c->client_subject = ClientCertSubject(c->ssl);
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0) StartH2(c);
    return;
  }
  const int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) return;
  if (e == SSL_ERROR_WANT_WRITE) {
    c->ssl_read_wants_write = true;
    return;
  }
  const TlsFail why = ClassifyTlsFailure(c->ssl, e);
  CountTlsFailure(c, static_cast<int>(why));
  VLOG(1) << "TLS handshake from " << c->peer_ip << " failed: " << TlsFailName(int(why));
  CloseClient(c);
}

// read(2) semantics: >0 bytes, 0 end of stream, -1 with errno (EAGAIN: try
// again when epoll says so; the WANT_* flags tell UpdateClient which way).
// recv(2) rather than read(2) on the socket: the same bytes without the VFS
// layer of read (fdget_pos, rw_verify_area, fsnotify), as HAProxy does.
ssize_t Worker::ClientRecv(ClientConn* c, char* buf, size_t n) {
  if (c->ssl == nullptr) return recv(c->fd, buf, n, 0);
  return SslRecv(c->ssl, buf, n, &c->ssl_read_wants_write, &c->ssl_read_blocked);
}

ssize_t Worker::ClientSend(ClientConn* c, const char* buf, size_t n) {
  if (c->ssl == nullptr) return send(c->fd, buf, n, MSG_NOSIGNAL);
  return SslSend(c->ssl, buf, n, &c->ssl_write_wants_read);
}

void Worker::TlsCloseNotify(ClientConn* c) {
  if (c->ssl == nullptr || c->handshaking) return;
  // One attempt, never waited for: the client's close_notify is not needed
  // (it is an HTTP/1.1 response with its own framing).
  SSL_shutdown(c->ssl);
  ERR_clear_error();
}

void Worker::RunTlsReady() {
  std::vector<ClientConn*> ready;
  ready.swap(tls_ready_);
  // All flags first: serving one may queue another again (or close it).
  for (ClientConn* c : ready) c->tls_ready = false;
  for (ClientConn* c : ready) {
    if (!c->dead) OnClient(c, EPOLLIN);
  }
  std::vector<UpstreamConn*> up;
  up.swap(up_tls_ready_);
  for (UpstreamConn* u : up) u->tls_ready = false;
  for (UpstreamConn* u : up) {
    if (!u->dead) OnUpstream(u, EPOLLIN);
  }
}

}  // namespace lb::l7
