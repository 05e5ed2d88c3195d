// Inline certificates and private keys of lb-l7's TLS listeners
// (L7Certificate.cert_pem / key_pem; docs/L7.md "Certificates from the
// control plane"): parsing from memory, the checks the shared validator
// runs on them, and the redaction of keys in what the admin API returns.
//
// Redaction: a key_pem is shown as "redacted:sha256:<hex>", the SHA-256 of
// the key's DER (i2d_PrivateKey: the same key gives the same marker
// whatever its PEM flavour). A marker sent back to SetL7Config stands for
// the stored key with that digest (ResolveRedactedKeys). The digest of a
// private key reveals nothing usable about it; the key itself never goes
// into a message, a log line or an API answer (only WatchL7Config carries
// it to lb-l7).
//
// Threads: any; no state.
#ifndef LB_PROTO_L7_PEM_H_
#define LB_PROTO_L7_PEM_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lb/v1/l7.pb.h"

namespace lb::l7 {

inline constexpr char kRedactedKeyPrefix[] = "redacted:sha256:";
// Bound on each of cert_pem and key_pem (a certificate chain is a few KiB).
inline constexpr size_t kMaxInlinePemBytes = 256 * 1024;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The last OpenSSL error of this thread as text, the queue cleared: reason
// strings only, never key bytes.
std::string SslError();

// Every certificate of a PEM text in order (the leaf, then its chain); at
// least one. The error says what failed (OpenSSL's reason, never the bytes).
absl::StatusOr<std::vector<X509Ptr>> ParseCertificatesPem(absl::string_view pem);
// One unencrypted PEM private key (never prompts for a passphrase).
absl::StatusOr<PkeyPtr> ParsePrivateKeyPem(absl::string_view pem);
// The DNS names a certificate serves: its subjectAltName DNS entries, else
// its CN; lower case, sorted, unique.
std::vector<std::string> CertificateNames(X509* x);

bool IsRedactedKey(absl::string_view key_pem);
// "redacted:sha256:<64 hex>" of a PEM private key; error when it does not parse.
absl::StatusOr<std::string> RedactedKeyMarker(absl::string_view key_pem);
// Replaces every non-empty key_pem of `config` by its marker (one that
// does not parse, which a validated config never holds, by
// "redacted:unparsable").
void RedactPrivateKeys(v1::L7Config* config);
// Replaces every marker in `config` by the key of `stored` that has that
// digest. InvalidArgumentError naming each field (after `path_prefix`)
// whose marker no stored key matches; `config` is then unspecified.
absl::Status ResolveRedactedKeys(const v1::L7Config& stored, const std::string& path_prefix,
                                 v1::L7Config* config);

// The shared validator's checks of one certificate entry (`field` is its
// path, e.g. "listeners[0].tls.certificates[1]"): exactly one form (files,
// or inline PEM); inline: both PEM fields set, each parses, the key is not
// a marker, the key matches the certificate, the certificate names a DNS
// name. Files are not read here (lb-l7 does, tls.h). Problems are appended
// as "<field>.<name>: <what>".
void CheckCertificateEntry(const v1::L7Certificate& c, const std::string& field,
                           std::vector<std::pair<std::string, std::string>>* errors);

// SetL7Config's check of certificates uploaded now: every cert_pem of
// `next` that `stored` does not already hold must not be expired at
// `now_unix_s` (notAfter in the past). A stored certificate that expired
// since stays accepted (the rest of the document remains editable; the
// lb_l7_tls_certificate_expiry_seconds gauge shows it), as a file-based
// one is served by lb-l7 until replaced.
absl::Status RefuseExpiredNewCertificates(const v1::L7Config& next, const v1::L7Config& stored,
                                          int64_t now_unix_s, const std::string& path_prefix);

}  // namespace lb::l7

#endif  // LB_PROTO_L7_PEM_H_
