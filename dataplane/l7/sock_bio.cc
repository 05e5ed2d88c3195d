#include "dataplane/l7/sock_bio.h"

#include <openssl/bio.h>
#include <sys/socket.h>

#include <cerrno>

namespace lb::l7 {
namespace {

// As OpenSSL 3's sock_read/sock_write (crypto/bio/bss_sock.c), with recv and
// send (MSG_NOSIGNAL; SIGPIPE is ignored anyway).
int SockRead(BIO* b, char* out, int outl) {
  if (out == nullptr) return 0;
  errno = 0;
  const int ret = static_cast<int>(recv(static_cast<int>(BIO_get_fd(b, nullptr)), out, outl, 0));
  BIO_clear_retry_flags(b);
  if (ret <= 0) {
    if (BIO_sock_should_retry(ret)) {
      BIO_set_retry_read(b);
    } else if (ret == 0) {
      BIO_set_flags(b, BIO_FLAGS_IN_EOF);  // BIO_eof: OpenSSL tells EOF from an error by it
    }
  }
  return ret;
}

int SockWrite(BIO* b, const char* in, int inl) {
  errno = 0;
  const int ret =
      static_cast<int>(send(static_cast<int>(BIO_get_fd(b, nullptr)), in, inl, MSG_NOSIGNAL));
  BIO_clear_retry_flags(b);
  if (ret <= 0 && BIO_sock_should_retry(ret)) BIO_set_retry_write(b);
  return ret;
}

// The socket BIO's own create/destroy/ctrl/puts (fd, close flag, EOF,
// pending), with the two calls above; built once, shared by all threads.
const BIO_METHOD* Method() {
  static const BIO_METHOD* const m = [] {
    const BIO_METHOD* s = BIO_s_socket();
    BIO_METHOD* n = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "lb-l7 socket (recv/send)");
    if (n == nullptr) return static_cast<BIO_METHOD*>(nullptr);
    BIO_meth_set_read(n, SockRead);
    BIO_meth_set_write(n, SockWrite);
    BIO_meth_set_puts(n, BIO_meth_get_puts(s));
    BIO_meth_set_ctrl(n, BIO_meth_get_ctrl(s));
    BIO_meth_set_create(n, BIO_meth_get_create(s));
    BIO_meth_set_destroy(n, BIO_meth_get_destroy(s));
    return n;
  }();
  return m;
}

}  // namespace

bool SslSetSocket(SSL* ssl, int fd) {
  const BIO_METHOD* m = Method();
  BIO* b = m == nullptr ? nullptr : BIO_new(m);
  if (b == nullptr) return false;
  BIO_set_fd(b, fd, BIO_NOCLOSE);
  SSL_set_bio(ssl, b, b);  // one reference, for both directions
  return true;
}

}  // namespace lb::l7
