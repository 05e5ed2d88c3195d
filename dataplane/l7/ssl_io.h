// SslRecv / SslSend: read(2) / send(2) semantics over a non-blocking SSL
// connection, shared by the client side (worker_tls.cc) and the backend side
// (worker_upstream_tls.cc) of lb-l7's epoll loop.
#ifndef LB_DATAPLANE_L7_SSL_IO_H_
#define LB_DATAPLANE_L7_SSL_IO_H_

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>

namespace lb::l7 {

// >0 bytes, 0 at the end of the stream (close_notify, or EOF with
// SSL_OP_IGNORE_UNEXPECTED_EOF), -1 with errno: EAGAIN when OpenSSL waits
// for the socket (*wants_write: it must become writable; else readable, and
// *blocked, when given, is set), ECONNRESET on any other error.
inline ssize_t SslRecv(SSL* ssl, char* buf, size_t n, bool* wants_write, bool* blocked) {
  *wants_write = false;
  if (blocked != nullptr) *blocked = false;
  const int r = SSL_read(ssl, buf, static_cast<int>(std::min<size_t>(n, INT_MAX)));
  if (r > 0) return r;
  switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
      if (blocked != nullptr) *blocked = true;
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_WANT_WRITE:
      *wants_write = true;
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    default:
      ERR_clear_error();
      errno = ECONNRESET;
      return -1;
  }
}

// >0 bytes taken, -1 with errno: EAGAIN when OpenSSL waits for the socket
// (*wants_read: it must become readable; else writable), EPIPE on any other
// error. Partial writes are on (one record at a time); a retry after EAGAIN
// passes the same bytes again, possibly from a moved buffer
// (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
inline ssize_t SslSend(SSL* ssl, const char* buf, size_t n, bool* wants_read) {
  *wants_read = false;
  const int r = SSL_write(ssl, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
  if (r > 0) return r;
  switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_WANT_READ:
      *wants_read = true;
      errno = EAGAIN;
      return -1;
    default:
      ERR_clear_error();
      errno = EPIPE;
      return -1;
  }
}

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_SSL_IO_H_
