// TLS from lb-l7 to a pool's backends (re-encryption; docs/L7.md "TLS to
// backends"): one client SSL_CTX per pool with upstream_tls, its CA file,
// SNI and verified name, and an optional client certificate.
//
// Contract: BuildUpstreamTls reads and checks every file of every pool with
// upstream_tls and reports each problem as "<field path>: <what>" (joined
// by "; "); a missing or unreadable file is named by its field. Key
// material is never put in a message or a log line.
//
// Sessions: NewSsl resumes from *slot when it holds one and stores every
// session the backend issues into *slot (the SSL's app data points at it),
// so the caller keeps one slot per backend; slots belong to one worker and
// are touched only on its thread (OpenSSL calls back inside SSL_read /
// SSL_do_handshake on that thread). FreeSessionSlot releases one.
//
// Threads: build on the main thread before the workers start; a built
// UpstreamTls is immutable and shared by every worker (SSL_new on a shared
// SSL_CTX is thread-safe in OpenSSL 3).
#ifndef LB_DATAPLANE_L7_UPSTREAM_TLS_H_
#define LB_DATAPLANE_L7_UPSTREAM_TLS_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/l7/counters.h"
#include "proto/l7_config.h"

namespace lb::l7 {

// Why a handshake with a backend failed (metrics label).
enum class UpstreamTlsFail { kVerify, kClosed, kTimeout, kOther };
const char* UpstreamTlsFailName(int reason);
// After SSL_do_handshake failed with `ssl_error`, on the thread that called
// it (reads its OpenSSL error queue, then clears it).
UpstreamTlsFail ClassifyUpstreamTlsFailure(const SSL* ssl, int ssl_error);

class UpstreamTls {
 public:
  ~UpstreamTls();
  UpstreamTls(const UpstreamTls&) = delete;
  UpstreamTls& operator=(const UpstreamTls&) = delete;

  // `field`: the path used in messages, e.g. "pools[1].upstream_tls".
  static absl::StatusOr<std::shared_ptr<UpstreamTls>> Build(const v1::L7UpstreamTls& config,
                                                            const std::string& field);
  // A client-side SSL on `fd` (null when OpenSSL is out of memory).
  SSL* NewSsl(int fd, SSL_SESSION** slot) const;
  static void FreeSessionSlot(SSL_SESSION** slot);

 private:
  UpstreamTls() = default;
  static int OnNewSession(SSL* ssl, SSL_SESSION* session);

  SSL_CTX* ctx_ = nullptr;
  std::string server_name_;  // "" = no SNI
  bool verify_host_ = true;
};

// Per pool (index = pool; null = plain HTTP to its backends).
// InvalidArgumentError names every field at fault.
absl::StatusOr<std::vector<std::shared_ptr<UpstreamTls>>> BuildUpstreamTls(
    const RuntimeConfig& config);

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_UPSTREAM_TLS_H_
