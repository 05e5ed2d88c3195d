// TLS termination for lb-l7 listeners (OpenSSL 3; docs/L7.md "TLS").
//
// TlsContext: everything the handshakes of one listener need, for one
// generation of its certificates: one SSL_CTX per set of served names (an
// ECDSA and an RSA certificate with the same names share one SSL_CTX, and
// OpenSSL picks by the client's signature algorithms), the SNI table (exact
// names, then "*.rest" for the first label stripped), the default
// certificate or the refusal of unknown names, the session cache (in the
// default SSL_CTX, the one every SSL_new starts from, so shared by all
// workers under OpenSSL's lock) and the session ticket keys.
//
// Contract: BuildTlsContexts reads and checks every file of every TLS
// listener (inline cert_pem/key_pem are parsed from memory, proto/l7_pem.h) and reports each
// problem as "<field path>: <what>" (joined by
// "; "); nothing is half built. Key material is never put in a message or a
// log line (OpenSSL's reason strings only name what failed).
//
// Threads: build on any thread; a built TlsContext is immutable and shared
// by every worker (SSL_new and the session cache are thread-safe in
// OpenSSL 3). TlsStore publishes the current generation to the workers: the
// main thread Set()s, workers compare generation() once per loop turn and
// Get() only when it moved. A connection keeps the shared_ptr of the
// TlsContext it started with, so a reload never disturbs it.
#ifndef LB_DATAPLANE_L7_TLS_H_
#define LB_DATAPLANE_L7_TLS_H_

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/l7/counters.h"
#include "proto/l7_config.h"

namespace lb::l7 {

// Why a handshake failed (metrics label); kTlsFailCount entries.
enum class TlsFail { kVersion, kCipher, kSni, kNotTls, kClosed, kTimeout, kOther, kClientCert };
const char* TlsFailName(int reason);
// After SSL_do_handshake failed with `ssl_error` (SSL_get_error), on the
// thread that called it (reads its OpenSSL error queue, then clears it).
TlsFail ClassifyTlsFailure(const SSL* ssl, int ssl_error);

// Negotiated ciphers counted by name; index kTlsCipherCount - 1 = "other".
const char* TlsCipherName(int index);
int TlsCipherIndex(const SSL* ssl);

// The verified client certificate's subject (RFC 2253, control bytes
// escaped) after a handshake; "" without one.
std::string ClientCertSubject(const SSL* ssl);

struct TlsCertInfo {
  std::string file;       // cert_file, or "inline" for cert_pem
  std::string subject;    // first served name
  int64_t not_after = 0;  // Unix seconds
};

class TlsContext {
 public:
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // `field`: the path used in messages, e.g. "listeners[1].tls".
  static absl::StatusOr<std::shared_ptr<TlsContext>> Build(const v1::L7Tls& config,
                                                           const std::string& field);

  // A server-side SSL on `fd` (null when OpenSSL is out of memory).
  SSL* NewSsl(int fd) const;
  const std::vector<TlsCertInfo>& certs() const { return certs_; }
  // True when the SNI callback refused this handshake.
  static bool SniRefused(const SSL* ssl);

 private:
  TlsContext() = default;
  SSL_CTX* Find(const char* server_name) const;
  // A configured SSL_CTX appended to ctxs_ (null + errors on failure).
  SSL_CTX* NewCtx(const v1::L7Tls& c, int min_version, const std::string& field,
                  std::vector<std::string>* errors);
  // One SSL_CTX for certificates with the same names (opaque: tls.cc's).
  bool AddGroup(const v1::L7Tls& c, int min_version, const std::string& field,
                const std::vector<const void*>& group, std::vector<std::string>* errors);
  static int OnServerName(SSL* ssl, int* alert, void* arg);
  // OCSP stapling (tls_ocsp.cc): the status callback serves the response of
  // the certificate chosen for the handshake; `arg` is &ocsp_.
  static int OnOcspStatus(SSL* ssl, void* arg);
  static int OnTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                         EVP_MAC_CTX* mac, int enc);

  struct TicketKey {
    unsigned char name[16], hmac[32], aes[32];
  };
  std::vector<SSL_CTX*> ctxs_;  // [i]: one set of names; default_ starts every handshake
  std::vector<std::pair<std::string, int>> exact_, wildcard_;  // sorted name → ctxs_ index
  int default_ = 0;
  bool sni_required_ = false;
  std::vector<TicketKey> ticket_keys_;
  std::vector<TlsCertInfo> certs_;
  // Leaf certificate (owned by its SSL_CTX) → DER OCSP response to staple.
  std::vector<std::pair<const X509*, std::string>> ocsp_;
};

// Reads a DER OCSP response file and checks that it parses as one whose
// status is "successful" (the certificate status inside is the CA's word,
// served as is); problems are appended naming `field`.
bool ReadOcspResponse(const std::string& file, const std::string& field, std::string* der,
                      std::vector<std::string>* errors);

// Per listener (index = listener; null = plain HTTP). InvalidArgumentError
// names every field at fault.
absl::StatusOr<std::vector<std::shared_ptr<TlsContext>>> BuildTlsContexts(
    const RuntimeConfig& config);

class TlsStore {
 public:
  explicit TlsStore(std::vector<std::shared_ptr<TlsContext>> initial)
      : current_(std::move(initial)) {}
  // Main thread: replaces every listener's context (same listener count).
  void Set(std::vector<std::shared_ptr<TlsContext>> next);
  // Release/acquire pair: a worker that sees the new generation and then
  // Get()s under the mutex sees the new contexts (the mutex alone orders
  // that; the atomic only saves workers the lock when nothing changed).
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::vector<std::shared_ptr<TlsContext>> Get() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<TlsContext>> current_;
  std::atomic<uint64_t> generation_{1};
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_TLS_H_
