// A socket BIO for lb-l7's TLS connections that moves bytes with recv(2) and
// send(2) instead of OpenSSL's socket BIO's read(2) and write(2): the same
// bytes and the same retry and end-of-stream flags, without the VFS layer
// (fdget_pos, rw_verify_area, fsnotify) on each of the ~4 socket calls of an
// HTTPS request (HAProxy's TLS reads and writes are recvfrom/sendto too).
#ifndef LB_DATAPLANE_L7_SOCK_BIO_H_
#define LB_DATAPLANE_L7_SOCK_BIO_H_

#include <openssl/ssl.h>

namespace lb::l7 {

// Binds ssl to fd for both directions (the fd is not closed with the SSL),
// as SSL_set_fd does. false when OpenSSL could not allocate the BIO.
bool SslSetSocket(SSL* ssl, int fd);

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_SOCK_BIO_H_
