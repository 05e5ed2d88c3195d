#include "dataplane/l7/tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dataplane/l7/sock_bio.h"
#include "proto/l7_pem.h"

namespace lb::l7 {

namespace {

// Mozilla "intermediate" for TLS 1.2: forward secrecy (ECDHE) and AEAD only.
constexpr char kDefaultCiphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr char kDefaultSuites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

constexpr const char* kCipherNames[kTlsCipherCount] = {
    "TLS_AES_128_GCM_SHA256",       "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",  "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",  "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",  "other"};

constexpr const char* kFailNames[kTlsFailCount] = {"version", "cipher",  "sni",   "not_tls",
                                                   "closed",  "timeout", "other", "client_cert"};

// ex_data slots: the TlsContext of an SSL_CTX; "SNI refused" on an SSL.
int CtxIndex() {
  static const int i = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}
int SslIndex() {
  static const int i = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return i;
}

int NoPassphrase(char*, int, int, void*) { return 0; }  // never prompt

int OnAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
           unsigned int inlen, void*) {
  // h2 first (server preference), then http/1.1; a client offering neither
  // gets no ALPN answer and speaks HTTP/1.1.
  static const unsigned char kProtos[] = "\x02h2\x08http/1.1";
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, kProtos, sizeof(kProtos) - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

struct Loaded {
  int index = 0;
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
  std::vector<std::string> names;  // lower case, sorted
  ~Loaded() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

// Reads one certificate entry; every problem is appended to `errors`.
bool LoadCert(const v1::L7Certificate& c, const std::string& cp, Loaded* out,
              std::vector<std::string>* errors) {
  const size_t before = errors->size();
  if (!c.cert_pem().empty() || !c.key_pem().empty()) {
    // Inline (from the control plane): parsed from memory, no file, no
    // temporary copy. ValidateL7Config checked the pair; checked again here
    // so that Build stands alone.
    std::vector<std::pair<std::string, std::string>> found;
    CheckCertificateEntry(c, cp, &found);
    for (const auto& [field, what] : found) errors->push_back(absl::StrCat(field, ": ", what));
    if (!found.empty()) return false;
    auto certs = ParseCertificatesPem(c.cert_pem());
    auto key = ParsePrivateKeyPem(c.key_pem());
    if (!certs.ok() || !key.ok()) return false;  // reported above
    out->cert = (*certs)[0].release();
    out->key = key->release();
    out->names = CertificateNames(out->cert);
    return true;
  }
  if (c.cert_file().empty()) errors->push_back(cp + ".cert_file: required");
  if (c.key_file().empty()) errors->push_back(cp + ".key_file: required");
  if (errors->size() != before) return false;
  BIO* b = BIO_new_file(c.cert_file().c_str(), "r");
  if (b != nullptr) out->cert = PEM_read_bio_X509(b, nullptr, NoPassphrase, nullptr);
  BIO_free(b);
  if (out->cert == nullptr) {
    errors->push_back(absl::StrCat(cp, ".cert_file: cannot read a PEM certificate from \"",
                                   c.cert_file(), "\": ", SslError()));
  }
  struct stat st;
  if (stat(c.key_file().c_str(), &st) == 0 && (st.st_mode & 0007) != 0) {
    errors->push_back(absl::StrCat(cp, ".key_file: \"", c.key_file(),
                                   "\" is accessible by others; chmod o-rwx (0600 or 0640)"));
    return false;
  }
  b = BIO_new_file(c.key_file().c_str(), "r");
  if (b != nullptr) out->key = PEM_read_bio_PrivateKey(b, nullptr, NoPassphrase, nullptr);
  BIO_free(b);
  if (out->key == nullptr) {
    errors->push_back(absl::StrCat(cp,
                                   ".key_file: cannot read an unencrypted PEM private key from \"",
                                   c.key_file(), "\": ", SslError()));
  }
  if (errors->size() != before) return false;
  if (X509_check_private_key(out->cert, out->key) != 1) {
    ERR_clear_error();
    errors->push_back(cp + ".key_file: does not match the certificate of cert_file");
    return false;
  }
  out->names = CertificateNames(out->cert);
  if (out->names.empty()) {
    errors->push_back(cp + ".cert_file: the certificate names no DNS name (SAN or CN)");
    return false;
  }
  return true;
}

// The leaf and its chain into the SSL_CTX's slot for the leaf's key type:
// from the file, or from cert_pem in memory.
bool UseCertificateChain(SSL_CTX* ctx, const v1::L7Certificate& c) {
  if (c.cert_pem().empty()) {
    return SSL_CTX_use_certificate_chain_file(ctx, c.cert_file().c_str()) == 1;
  }
  auto certs = ParseCertificatesPem(c.cert_pem());
  if (!certs.ok() || SSL_CTX_use_certificate(ctx, (*certs)[0].get()) != 1) return false;
  // add1: the SSL_CTX takes its own reference; the chain goes with the
  // certificate just set (its key type's slot).
  for (size_t i = 1; i < certs->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, (*certs)[i].get()) != 1) return false;
  }
  return true;
}

bool ReadTicketKeys(const std::string& path, const std::string& field,
                    std::vector<std::string>* errors, std::string* bytes) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    errors->push_back(absl::StrCat(field, ": cannot stat \"", path, "\": ", strerror(errno)));
    return false;
  }
  if ((st.st_mode & 0077) != 0) {
    errors->push_back(absl::StrCat(field, ": \"", path,
                                   "\" is readable or writable by group or others; chmod 0600"));
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  bytes->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    errors->push_back(absl::StrCat(field, ": cannot read \"", path, "\""));
    return false;
  }
  if (bytes->empty() || bytes->size() % 80 != 0) {
    errors->push_back(absl::StrCat(field, ": \"", path, "\" has ", bytes->size(),
                                   " bytes; expected a multiple of 80 (name 16, HMAC 32, AES 32)"));
    return false;
  }
  return true;
}

// Inline keys (L7Tls.session_ticket_keys): the control plane keeps at most
// 2 + 1022 (controlplane/ticket_keys.h); a bound on what a config may carry.
constexpr size_t kMaxInlineTicketKeys = 1024;

// One random key per process when no file is configured: every worker and
// every reload use it, so tickets survive a SIGHUP.
const std::string& ProcessTicketKey() {
  static const std::string* k = [] {
    auto* s = new std::string(80, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(&(*s)[0]), 80);
    return s;
  }();
  return *k;
}

// TLS 1.2 entries of a cipher list must be ECDHE and AEAD.
void CheckCipherPolicy(SSL_CTX* ctx, const std::string& field, std::vector<std::string>* errors) {
  STACK_OF(SSL_CIPHER)* cs = SSL_CTX_get_ciphers(ctx);
  for (int i = 0; i < sk_SSL_CIPHER_num(cs); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(cs, i);
    const int kx = SSL_CIPHER_get_kx_nid(c);
    if (kx == NID_kx_any) continue;  // a TLS 1.3 suite: all AEAD, always (EC)DHE
    if (kx != NID_kx_ecdhe || SSL_CIPHER_is_aead(c) != 1) {
      errors->push_back(absl::StrCat(field, ": selects ", SSL_CIPHER_get_name(c),
                                     ", which is not ECDHE with an AEAD cipher"));
    }
  }
}

// The scalar fields; returns the minimum protocol version.
// Client certificates (mTLS): the CA list, and the verify mode every SSL_CTX
// of the listener carries (SNI may switch the SSL_CTX; each verifies with
// its own store). `report`: the first SSL_CTX only, so a problem is named once.
void SetClientAuth(SSL_CTX* ctx, const v1::L7Tls& c, const std::string& field, bool report,
                   std::vector<std::string>* errors) {
  if (c.client_auth() == v1::L7Tls::NONE) return;
  const std::string f = field + ".client_ca_file";
  const std::string& file = c.client_ca_file();
  std::string why;
  STACK_OF(X509_NAME)* names = nullptr;
  if (file.empty()) {
    why = "required when client_auth is OPTIONAL or REQUIRE";
  } else if (access(file.c_str(), R_OK) != 0) {
    why = absl::StrCat("\"", file, "\" is missing or not readable");
  } else if (SSL_CTX_load_verify_locations(ctx, file.c_str(), nullptr) != 1 ||
             (names = SSL_load_client_CA_file(file.c_str())) == nullptr) {
    why = absl::StrCat("no PEM certificate in \"", file, "\": ", SslError());
  }
  if (!why.empty()) {
    if (report) errors->push_back(f + ": " + why);
    return;
  }
  SSL_CTX_set_client_CA_list(ctx, names);
  int mode = SSL_VERIFY_PEER;
  if (c.client_auth() == v1::L7Tls::REQUIRE) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, mode, nullptr);
}

int CheckOptions(const v1::L7Tls& c, const std::string& field, std::vector<std::string>* errors) {
  int min_version = TLS1_2_VERSION;
  if (c.min_version() == "TLSv1.3") {
    min_version = TLS1_3_VERSION;
  } else if (!c.min_version().empty() && c.min_version() != "TLSv1.2") {
    errors->push_back(
        absl::StrCat(field, ".min_version: \"", c.min_version(),
                     "\" is not TLSv1.2 or TLSv1.3 (older versions are not offered)"));
  }
  if (c.certificates().empty())
    errors->push_back(field + ".certificates: at least one is required");
  if (!c.certificates().empty() && c.default_certificate() >= uint32_t(c.certificates_size())) {
    errors->push_back(absl::StrCat(field, ".default_certificate: ", c.default_certificate(),
                                   " is not an index of certificates (0..",
                                   c.certificates_size() - 1, ")"));
  }
  if (c.session_timeout_s() > 86400) {
    errors->push_back(field + ".session_timeout_s: at most 86400 (0 = 300)");
  }
  if (c.session_cache_size() > 10'000'000) {
    errors->push_back(field + ".session_cache_size: at most 10000000 (0 = 20480)");
  }
  return min_version;
}

}  // namespace

const char* TlsFailName(int reason) { return kFailNames[reason]; }
const char* TlsCipherName(int index) { return kCipherNames[index]; }

int TlsCipherIndex(const SSL* ssl) {
  const char* name = SSL_get_cipher_name(ssl);
  for (int i = 0; i + 1 < kTlsCipherCount; ++i) {
    if (name != nullptr && strcmp(name, kCipherNames[i]) == 0) return i;
  }
  return kTlsCipherCount - 1;
}

TlsFail ClassifyTlsFailure(const SSL* ssl, int ssl_error) {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (TlsContext::SniRefused(ssl)) return TlsFail::kSni;
  if (SSL_get_verify_result(ssl) != X509_V_OK) return TlsFail::kClientCert;
  if (e == 0 && (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN)) {
    return TlsFail::kClosed;
  }
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return TlsFail::kOther;
  switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
      return TlsFail::kVersion;
    case SSL_R_NO_SHARED_CIPHER:
      return TlsFail::kCipher;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      return TlsFail::kNotTls;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return TlsFail::kClosed;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return TlsFail::kClientCert;
    default:
      return TlsFail::kOther;
  }
}

std::string ClientCertSubject(const SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  BIO* b = BIO_new(BIO_s_mem());
  if (b == nullptr) return "";
  // RFC 2253 with control and non-ASCII bytes escaped: safe in a header.
  X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
  char* p = nullptr;
  const long n = BIO_get_mem_data(b, &p);
  std::string s(p, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(b);
  for (char& ch : s) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  }
  return s;
}

bool TlsContext::SniRefused(const SSL* ssl) { return SSL_get_ex_data(ssl, SslIndex()) != nullptr; }

TlsContext::~TlsContext() {
  for (SSL_CTX* c : ctxs_) SSL_CTX_free(c);  // live SSLs hold their own references
  OPENSSL_cleanse(ticket_keys_.data(), ticket_keys_.size() * sizeof(TicketKey));
}

SSL* TlsContext::NewSsl(int fd) const {
  SSL* s = SSL_new(ctxs_[default_]);
  if (s == nullptr) return nullptr;
  if (!SslSetSocket(s, fd)) {
    SSL_free(s);
    return nullptr;
  }
  SSL_set_accept_state(s);
  return s;
}

SSL_CTX* TlsContext::Find(const char* server_name) const {
  char lower[256];
  const size_t n = strnlen(server_name, sizeof(lower));
  if (n == 0 || n == sizeof(lower)) return nullptr;
  for (size_t i = 0; i < n; ++i) lower[i] = absl::ascii_tolower(server_name[i]);
  const absl::string_view name(lower, n);
  auto less = [](const std::pair<std::string, int>& e, absl::string_view k) { return e.first < k; };
  auto it = std::lower_bound(exact_.begin(), exact_.end(), name, less);
  if (it != exact_.end() && it->first == name) return ctxs_[it->second];
  // "*.example.com" (stored as ".example.com") covers exactly one label.
  const size_t dot = name.find('.');
  if (dot == 0 || dot == absl::string_view::npos) return nullptr;
  const absl::string_view rest = name.substr(dot);
  it = std::lower_bound(wildcard_.begin(), wildcard_.end(), rest, less);
  if (it != wildcard_.end() && it->first == rest) return ctxs_[it->second];
  return nullptr;
}

int TlsContext::OnServerName(SSL* ssl, int* alert, void* arg) {
  const auto* t = static_cast<const TlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  SSL_CTX* ctx = name != nullptr ? t->Find(name) : nullptr;
  if (ctx == nullptr) {
    if (!t->sni_required_) return SSL_TLSEXT_ERR_OK;  // stays on the default certificate
    SSL_set_ex_data(ssl, SslIndex(), const_cast<TlsContext*>(t));
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  // Certificates (both key types) come with the SSL_CTX; the session cache
  // and ticket callback stay those of the default one (session_ctx).
  if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

namespace {
// AES-256-CBC fetched from the provider once: EVP_aes_256_cbc() is a legacy
// object that EVP_CipherInit_ex looks up by name at every call (about 3,000
// instructions per ticket, on every full and every resumed handshake).
const EVP_CIPHER* TicketCipher() {
  static const EVP_CIPHER* c = [] {
    EVP_CIPHER* f = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
    return f != nullptr ? static_cast<const EVP_CIPHER*>(f) : EVP_aes_256_cbc();
  }();
  return c;
}
}  // namespace

int TlsContext::OnTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv,
                            EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  const auto* t =
      static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), CtxIndex()));
  if (t == nullptr || t->ticket_keys_.empty()) return -1;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (enc) {
    const TicketKey& k = t->ticket_keys_[0];
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(TicketCipher())) != 1) return -1;
    memcpy(name, k.name, sizeof(k.name));
    if (EVP_EncryptInit_ex(cipher, TicketCipher(), nullptr, k.aes, iv) != 1) return -1;
    if (EVP_MAC_init(mac, k.hmac, sizeof(k.hmac), params) != 1) return -1;
    return 1;
  }
  for (size_t i = 0; i < t->ticket_keys_.size(); ++i) {
    const TicketKey& k = t->ticket_keys_[i];
    if (memcmp(name, k.name, sizeof(k.name)) != 0) continue;
    if (EVP_MAC_init(mac, k.hmac, sizeof(k.hmac), params) != 1) return -1;
    if (EVP_DecryptInit_ex(cipher, TicketCipher(), nullptr, k.aes, iv) != 1) return -1;
    return i == 0 ? 1 : 2;  // 2: an older key; the client gets a new ticket
  }
  return 0;  // unknown key: full handshake
}

SSL_CTX* TlsContext::NewCtx(const v1::L7Tls& c, int min_version, const std::string& field,
                            std::vector<std::string>* errors) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    errors->push_back(field + ": SSL_CTX_new: " + SslError());
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  uint64_t opts = SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                  SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF;
  if (c.disable_session_tickets()) opts |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(ctx, opts);
  // Partial writes and a moving buffer: the worker's output queue may grow
  // (and reallocate) between a WANT_WRITE and the retry.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  // One read(2) per batch of records instead of two per record (header,
  // then body); what is read ahead is seen by SSL_has_pending, which the
  // worker checks before it waits for epoll.
  SSL_CTX_set_read_ahead(ctx, 1);
  const std::string ciphers = c.ciphers().empty() ? kDefaultCiphers : c.ciphers();
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    errors->push_back(absl::StrCat(field, ".ciphers: \"", ciphers,
                                   "\" selects no cipher OpenSSL knows: ", SslError()));
  }
  const std::string suites = c.ciphersuites().empty() ? kDefaultSuites : c.ciphersuites();
  if (SSL_CTX_set_ciphersuites(ctx, suites.c_str()) != 1) {
    errors->push_back(absl::StrCat(field, ".ciphersuites: \"", suites,
                                   "\" is not a TLS 1.3 suite list: ", SslError()));
  }
  static const unsigned char kSidCtx[] = "lb-l7";
  SSL_CTX_set_session_id_context(ctx, kSidCtx, sizeof(kSidCtx) - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, c.session_cache_size() == 0 ? 20480 : c.session_cache_size());
  SSL_CTX_set_timeout(ctx, c.session_timeout_s() == 0 ? 300 : c.session_timeout_s());
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, OnTicketKey);
  SSL_CTX_set_tlsext_servername_callback(ctx, OnServerName);
  SSL_CTX_set_tlsext_servername_arg(ctx, this);
  SSL_CTX_set_alpn_select_cb(ctx, OnAlpn, nullptr);
  SSL_CTX_set_tlsext_status_cb(ctx, OnOcspStatus);
  SSL_CTX_set_tlsext_status_arg(ctx, &ocsp_);
  SSL_CTX_set_ex_data(ctx, CtxIndex(), this);
  SetClientAuth(ctx, c, field, ctxs_.empty(), errors);
  ctxs_.push_back(ctx);
  return ctx;
}

bool TlsContext::AddGroup(const v1::L7Tls& c, int min_version, const std::string& field,
                          const std::vector<const void*>& group, std::vector<std::string>* errors) {
  SSL_CTX* ctx = NewCtx(c, min_version, field, errors);
  if (ctx == nullptr) return false;
  const int slot = static_cast<int>(ctxs_.size()) - 1;
  for (const void* p : group) {
    const auto* l = static_cast<const Loaded*>(p);
    const std::string cp = absl::StrCat(field, ".certificates[", l->index, "]");
    const v1::L7Certificate& cc = c.certificates(l->index);
    // The chain again: its intermediates go with this key type's slot.
    if (!UseCertificateChain(ctx, cc) || SSL_CTX_use_PrivateKey(ctx, l->key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      errors->push_back(absl::StrCat(cp, ": OpenSSL refused the pair: ", SslError()));
      return false;
    }
    if (!cc.ocsp_response_file().empty()) {
      std::string der;
      if (!ReadOcspResponse(cc.ocsp_response_file(), cp + ".ocsp_response_file", &der, errors)) {
        return false;
      }
      ocsp_.emplace_back(SSL_CTX_get0_certificate(ctx), std::move(der));
    }
    if (l->index == static_cast<int>(c.default_certificate())) default_ = slot;
    int64_t not_after = 0;
    tm t{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(l->cert), &t) == 1) not_after = timegm(&t);
    certs_.push_back({cc.cert_pem().empty() ? cc.cert_file() : "inline", l->names[0], not_after});
  }
  for (const std::string& n : static_cast<const Loaded*>(group[0])->names) {
    if (n.size() > 2 && n[0] == '*' && n[1] == '.') {
      wildcard_.emplace_back(n.substr(1), slot);
    } else {
      exact_.emplace_back(n, slot);
    }
  }
  return true;
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Build(const v1::L7Tls& c,
                                                              const std::string& field) {
  std::vector<std::string> errors;
  std::shared_ptr<TlsContext> t(new TlsContext());
  t->sni_required_ = c.sni_required();
  const int min_version = CheckOptions(c, field, &errors);
  std::string keys;
  if (!c.session_ticket_keys().empty()) {
    // From the control plane (L7TicketKeys): the same on every node.
    if (!c.session_ticket_key_file().empty()) {
      errors.push_back(field +
                       ".session_ticket_keys: set together with session_ticket_key_file; "
                       "one source of ticket keys");
    } else if (c.session_ticket_keys().size() % 80 != 0 ||
               c.session_ticket_keys().size() > kMaxInlineTicketKeys * 80) {
      errors.push_back(
          absl::StrCat(field, ".session_ticket_keys: ", c.session_ticket_keys().size(),
                       " bytes; expected a multiple of 80 (name 16, HMAC 32, AES 32), at most ",
                       kMaxInlineTicketKeys, " keys"));
    } else {
      keys = c.session_ticket_keys();
    }
  } else if (!c.session_ticket_key_file().empty()) {
    ReadTicketKeys(c.session_ticket_key_file(), field + ".session_ticket_key_file", &errors, &keys);
  } else {
    keys = ProcessTicketKey();
  }
  std::vector<std::unique_ptr<Loaded>> loaded;
  for (int i = 0; i < c.certificates_size(); ++i) {
    auto l = std::make_unique<Loaded>();
    l->index = i;
    if (LoadCert(c.certificates(i), absl::StrCat(field, ".certificates[", i, "]"), l.get(),
                 &errors)) {
      loaded.push_back(std::move(l));
    }
  }
  // Same names = one SSL_CTX; a key type twice in it, or a name in two
  // groups, would leave the choice to chance: refused.
  std::map<std::vector<std::string>, std::vector<const void*>> groups;
  std::map<std::string, int> owner;
  for (const auto& l : loaded) {
    auto& g = groups[l->names];
    for (const void* p : g) {
      const auto* o = static_cast<const Loaded*>(p);
      if (EVP_PKEY_get_base_id(o->key) == EVP_PKEY_get_base_id(l->key)) {
        errors.push_back(absl::StrCat(field, ".certificates[", l->index,
                                      "]: same names and key type as certificates[", o->index,
                                      "]"));
      }
    }
    if (g.empty()) {
      for (const std::string& n : l->names) {
        auto [it, fresh] = owner.emplace(n, l->index);
        if (!fresh) {
          errors.push_back(absl::StrCat(field, ".certificates[", l->index, "]: name \"", n,
                                        "\" is also served by certificates[", it->second,
                                        "] with other names"));
        }
      }
    }
    g.push_back(l.get());
  }
  if (errors.empty()) {
    for (const auto& [names, g] : groups) {
      if (!t->AddGroup(c, min_version, field, g, &errors)) break;
    }
  }
  if (errors.empty()) {
    for (const SSL_CTX* ctx : t->ctxs_)
      CheckCipherPolicy(const_cast<SSL_CTX*>(ctx), field + ".ciphers", &errors);
  }
  if (!errors.empty()) {
    // One line per field, duplicates (the same policy error per SSL_CTX) once.
    std::sort(errors.begin(), errors.end());
    errors.erase(std::unique(errors.begin(), errors.end()), errors.end());
    return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  }
  std::sort(t->exact_.begin(), t->exact_.end());
  std::sort(t->wildcard_.begin(), t->wildcard_.end());
  t->ticket_keys_.resize(keys.size() / 80);
  for (size_t i = 0; i < t->ticket_keys_.size(); ++i) {
    TicketKey& k = t->ticket_keys_[i];
    memcpy(k.name, &keys[i * 80], 16);
    memcpy(k.hmac, &keys[i * 80 + 16], 32);
    memcpy(k.aes, &keys[i * 80 + 48], 32);
  }
  OPENSSL_cleanse(&keys[0], keys.size());
  return t;
}

absl::StatusOr<std::vector<std::shared_ptr<TlsContext>>> BuildTlsContexts(
    const RuntimeConfig& config) {
  std::vector<std::shared_ptr<TlsContext>> out(config.listeners.size());
  std::vector<std::string> errors;
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenerConfig& l = config.listeners[i];
    if (!l.tls) continue;
    auto t = TlsContext::Build(l.tls_config, absl::StrCat("listeners[", i, "].tls"));
    if (!t.ok()) {
      errors.push_back(std::string(t.status().message()));
    } else {
      out[i] = *std::move(t);
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return out;
}

void TlsStore::Set(std::vector<std::shared_ptr<TlsContext>> next) {
  std::vector<std::shared_ptr<TlsContext>> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old.swap(current_);
    current_ = std::move(next);
  }
  generation_.fetch_add(1, std::memory_order_release);
  // `old` is released here; connections that use it hold their own references.
}

std::vector<std::shared_ptr<TlsContext>> TlsStore::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

}  // namespace lb::l7
