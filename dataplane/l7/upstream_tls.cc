#include "dataplane/l7/upstream_tls.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dataplane/l7/sock_bio.h"

namespace lb::l7 {

namespace {

constexpr const char* kFailNames[kUpstreamTlsFailCount] = {"verify", "closed", "timeout", "other"};

std::string SslError() {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  const char* r = ERR_reason_error_string(e);
  return r != nullptr ? r : "unknown error";
}

// A readable regular file, or an error naming `field`.
bool Readable(const std::string& path, const std::string& field, std::vector<std::string>* errors) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || access(path.c_str(), R_OK) != 0) {
    errors->push_back(absl::StrCat(field, ": \"", path, "\" is missing or not a readable file"));
    return false;
  }
  return true;
}

void LoadClientCert(SSL_CTX* ctx, const v1::L7UpstreamTls& c, const std::string& field,
                    std::vector<std::string>* errors) {
  if (c.cert_file().empty() != c.key_file().empty()) {
    errors->push_back(field + ": cert_file and key_file go together");
    return;
  }
  if (c.cert_file().empty()) return;
  const bool cert_ok = Readable(c.cert_file(), field + ".cert_file", errors);
  const bool key_ok = Readable(c.key_file(), field + ".key_file", errors);
  if (!cert_ok || !key_ok) return;
  struct stat st;
  if (stat(c.key_file().c_str(), &st) == 0 && (st.st_mode & S_IRWXO) != 0) {
    errors->push_back(absl::StrCat(field, ".key_file: \"", c.key_file(),
                                   "\" is accessible by others; chmod o-rwx"));
    return;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, c.cert_file().c_str()) != 1) {
    errors->push_back(
        absl::StrCat(field, ".cert_file: cannot load \"", c.cert_file(), "\": ", SslError()));
    return;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, c.key_file().c_str(), SSL_FILETYPE_PEM) != 1) {
    errors->push_back(absl::StrCat(field, ".key_file: cannot read an unencrypted PEM key from \"",
                                   c.key_file(), "\": ", SslError()));
    return;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    errors->push_back(field + ".key_file: does not match the certificate of cert_file");
  }
}

int NoPassphrase(char*, int, int, void*) { return 0; }  // never prompt

}  // namespace

const char* UpstreamTlsFailName(int reason) { return kFailNames[reason]; }

UpstreamTlsFail ClassifyUpstreamTlsFailure(const SSL* ssl, int ssl_error) {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (SSL_get_verify_result(ssl) != X509_V_OK) return UpstreamTlsFail::kVerify;
  if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    return UpstreamTlsFail::kVerify;
  }
  if (e == 0 && (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN)) {
    return UpstreamTlsFail::kClosed;
  }
  if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    return UpstreamTlsFail::kClosed;
  }
  return UpstreamTlsFail::kOther;
}

UpstreamTls::~UpstreamTls() { SSL_CTX_free(ctx_); }

absl::StatusOr<std::shared_ptr<UpstreamTls>> UpstreamTls::Build(const v1::L7UpstreamTls& c,
                                                                const std::string& field) {
  std::vector<std::string> errors;
  std::shared_ptr<UpstreamTls> t(new UpstreamTls());
  const bool verify = !c.has_verify() || c.verify();
  t->verify_host_ = verify && (!c.has_verify_hostname() || c.verify_hostname());
  t->server_name_ = c.server_name();
  // A backend is an address, not a name: the name to verify must be given
  // (or hostname checking turned off on purpose).
  if (t->verify_host_ && c.server_name().empty()) {
    errors.push_back(field +
                     ".server_name: required to verify the backends' certificates "
                     "(or set verify_hostname: false)");
  }
  if (verify && c.ca_file().empty()) {
    errors.push_back(field + ".ca_file: required when verify is on (the default)");
  }
  t->ctx_ = SSL_CTX_new(TLS_client_method());
  if (t->ctx_ == nullptr) {
    errors.push_back(field + ": SSL_CTX_new: " + SslError());
    return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  }
  SSL_CTX* ctx = t->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_default_passwd_cb(ctx, NoPassphrase);
  if (!c.ca_file().empty() && Readable(c.ca_file(), field + ".ca_file", &errors) &&
      SSL_CTX_load_verify_locations(ctx, c.ca_file().c_str(), nullptr) != 1) {
    errors.push_back(
        absl::StrCat(field, ".ca_file: no PEM certificate in \"", c.ca_file(), "\": ", SslError()));
  }
  SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  LoadClientCert(ctx, c, field, &errors);
  // Sessions live in the worker's per-backend slot, not in a shared cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, OnNewSession);
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return t;
}

int UpstreamTls::OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto** slot = static_cast<SSL_SESSION**>(SSL_get_app_data(ssl));
  if (slot == nullptr) return 0;
  if (*slot != nullptr) SSL_SESSION_free(*slot);
  *slot = session;
  return 1;  // we keep the reference
}

void UpstreamTls::FreeSessionSlot(SSL_SESSION** slot) {
  if (*slot != nullptr) SSL_SESSION_free(*slot);
  *slot = nullptr;
}

SSL* UpstreamTls::NewSsl(int fd, SSL_SESSION** slot) const {
  SSL* s = SSL_new(ctx_);
  if (s == nullptr) return nullptr;
  bool ok = SslSetSocket(s, fd);
  if (ok && !server_name_.empty()) ok = SSL_set_tlsext_host_name(s, server_name_.c_str()) == 1;
  if (ok && verify_host_) ok = SSL_set1_host(s, server_name_.c_str()) == 1;
  if (!ok) {
    SSL_free(s);
    return nullptr;
  }
  SSL_set_app_data(s, slot);
  if (*slot != nullptr) SSL_set_session(s, *slot);
  SSL_set_connect_state(s);
  return s;
}

absl::StatusOr<std::vector<std::shared_ptr<UpstreamTls>>> BuildUpstreamTls(
    const RuntimeConfig& config) {
  std::vector<std::shared_ptr<UpstreamTls>> out(config.pools.size());
  std::vector<std::string> errors;
  for (size_t i = 0; i < config.pools.size(); ++i) {
    const PoolConfig& p = config.pools[i];
    if (!p.upstream_tls) continue;
    auto t = UpstreamTls::Build(p.upstream_tls_config, absl::StrCat("pools[", i, "].upstream_tls"));
    if (!t.ok()) {
      errors.push_back(std::string(t.status().message()));
      continue;
    }
    out[i] = *std::move(t);
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return out;
}

}  // namespace lb::l7
