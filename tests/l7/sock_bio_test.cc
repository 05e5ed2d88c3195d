// lb-l7's socket BIO (dataplane/l7/sock_bio.cc: recv/send in place of
// OpenSSL's read/write): a TLS server and client over a socketpair, each
// bound with SslSetSocket, checked for what OpenSSL's own socket BIO gives:
// the handshake and data both ways, WANT_READ on an empty socket, the fd
// and no pending bytes through the BIO's ctrl, and the end of stream flagged
// so that a peer's FIN without close_notify is a clean end (0,
// SSL_ERROR_ZERO_RETURN) under SSL_OP_IGNORE_UNEXPECTED_EOF, as lb-l7's
// listeners set, and SSL_R_UNEXPECTED_EOF_WHILE_READING without it.
#include "dataplane/l7/sock_bio.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

// A self-signed P-256 certificate for "bio.test", made in memory.
struct Cert {
  EVP_PKEY* key = nullptr;
  X509* x509 = nullptr;
  Cert() {
    key = EVP_EC_gen("P-256");
    x509 = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x509), 1);
    X509_gmtime_adj(X509_getm_notBefore(x509), 0);
    X509_gmtime_adj(X509_getm_notAfter(x509), 3600);
    X509_set_pubkey(x509, key);
    X509_NAME* name = X509_get_subject_name(x509);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("bio.test"), -1, -1, 0);
    X509_set_issuer_name(x509, name);
    X509_sign(x509, key, EVP_sha256());
  }
  ~Cert() {
    X509_free(x509);
    EVP_PKEY_free(key);
  }
};

class SockBioTest : public ::testing::Test {
 protected:
  void Connect(bool ignore_unexpected_eof) {
    ASSERT_NE(cert_.key, nullptr);
    sctx_ = SSL_CTX_new(TLS_server_method());
    cctx_ = SSL_CTX_new(TLS_client_method());
    ASSERT_EQ(SSL_CTX_use_certificate(sctx_, cert_.x509), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(sctx_, cert_.key), 1);
    if (ignore_unexpected_eof) SSL_CTX_set_options(sctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(cctx_, SSL_VERIFY_NONE, nullptr);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds_), 0);
    server_ = SSL_new(sctx_);
    client_ = SSL_new(cctx_);
    ASSERT_TRUE(SslSetSocket(server_, fds_[0]));
    ASSERT_TRUE(SslSetSocket(client_, fds_[1]));
    SSL_set_accept_state(server_);
    SSL_set_connect_state(client_);
    bool s_done = false, c_done = false;
    for (int i = 0; i < 50 && !(s_done && c_done); ++i) {
      if (!c_done) {
        const int r = SSL_do_handshake(client_);
        c_done = r == 1;
        if (!c_done) {
          ASSERT_EQ(SSL_get_error(client_, r), SSL_ERROR_WANT_READ);
        }
      }
      if (!s_done) {
        const int r = SSL_do_handshake(server_);
        s_done = r == 1;
        if (!s_done) {
          ASSERT_EQ(SSL_get_error(server_, r), SSL_ERROR_WANT_READ);
        }
      }
    }
    ASSERT_TRUE(s_done && c_done);
  }

  // Reads what the server can get now (TLS 1.3 tickets on the client side
  // are consumed by the client's reads).
  std::string ServerRead(int* ret, int* err) {
    char buf[256];
    *ret = SSL_read(server_, buf, sizeof(buf));
    *err = *ret > 0 ? SSL_ERROR_NONE : SSL_get_error(server_, *ret);
    return *ret > 0 ? std::string(buf, static_cast<size_t>(*ret)) : std::string();
  }

  void TearDown() override {
    SSL_free(server_);
    SSL_free(client_);
    SSL_CTX_free(sctx_);
    SSL_CTX_free(cctx_);
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
    ERR_clear_error();
  }

  Cert cert_;
  SSL_CTX* sctx_ = nullptr;
  SSL_CTX* cctx_ = nullptr;
  SSL* server_ = nullptr;
  SSL* client_ = nullptr;
  int fds_[2] = {-1, -1};
};

TEST_F(SockBioTest, DataBothWaysWantReadFdAndPending) {
  Connect(true);
  int ret, err;
  EXPECT_EQ(ServerRead(&ret, &err), "");
  EXPECT_EQ(err, SSL_ERROR_WANT_READ);  // EAGAIN set the retry flag
  EXPECT_EQ(SSL_get_fd(server_), fds_[0]);
  EXPECT_EQ(BIO_pending(SSL_get_rbio(server_)), 0);
  EXPECT_EQ(BIO_wpending(SSL_get_wbio(server_)), 0);
  ASSERT_EQ(SSL_write(client_, "hello", 5), 5);
  EXPECT_EQ(ServerRead(&ret, &err), "hello");
  ASSERT_EQ(SSL_write(server_, "world", 5), 5);
  char buf[16];
  int n = 0;
  for (int i = 0; i < 5 && n <= 0; ++i) n = SSL_read(client_, buf, sizeof(buf));
  ASSERT_EQ(n, 5);
  EXPECT_EQ(std::string(buf, 5), "world");
}

TEST_F(SockBioTest, FinWithoutCloseNotifyIsACleanEndWhenIgnored) {
  Connect(true);
  ASSERT_EQ(SSL_write(client_, "req", 3), 3);
  ASSERT_EQ(shutdown(fds_[1], SHUT_WR), 0);  // a FIN, no close_notify
  int ret, err;
  EXPECT_EQ(ServerRead(&ret, &err), "req");
  EXPECT_EQ(ServerRead(&ret, &err), "");
  EXPECT_EQ(ret, 0);
  EXPECT_EQ(err, SSL_ERROR_ZERO_RETURN);  // needs BIO_eof: else SSL_ERROR_SYSCALL
  EXPECT_EQ(BIO_eof(SSL_get_rbio(server_)), 1);
}

TEST_F(SockBioTest, FinWithoutCloseNotifyIsUnexpectedEofOtherwise) {
  Connect(false);
  ASSERT_EQ(shutdown(fds_[1], SHUT_WR), 0);
  int ret, err;
  EXPECT_EQ(ServerRead(&ret, &err), "");
  EXPECT_EQ(err, SSL_ERROR_SSL);
  EXPECT_EQ(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_UNEXPECTED_EOF_WHILE_READING);
}

}  // namespace
}  // namespace lb::l7
