// OCSP stapling for lb-l7 TLS listeners (docs/L7.md "TLS"): responses are
// read from files when a TlsContext is built (start-up and every SIGHUP, so
// a cron job that refreshes the file and sends SIGHUP keeps them fresh) and
// served from memory to clients that send status_request.
#include <openssl/ocsp.h>

#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "dataplane/l7/tls.h"

namespace lb::l7 {

bool ReadOcspResponse(const std::string& file, const std::string& field, std::string* der,
                      std::vector<std::string>* errors) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    errors->push_back(absl::StrCat(field, ": \"", file, "\" is missing or not readable"));
    return false;
  }
  der->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  const auto* p = reinterpret_cast<const unsigned char*>(der->data());
  OCSP_RESPONSE* r = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der->size()));
  const bool ok = r != nullptr && OCSP_response_status(r) == OCSP_RESPONSE_STATUS_SUCCESSFUL;
  OCSP_RESPONSE_free(r);
  if (!ok) {
    errors->push_back(
        absl::StrCat(field, ": \"", file, "\" is not a successful DER OCSP response"));
    return false;
  }
  return true;
}

int TlsContext::OnOcspStatus(SSL* ssl, void* arg) {
  const auto* staples = static_cast<const std::vector<std::pair<const X509*, std::string>>*>(arg);
  const X509* leaf = SSL_get_certificate(ssl);
  for (const auto& [cert, der] : *staples) {
    if (cert != leaf) continue;
    // OpenSSL takes ownership of the copy and frees it with the SSL.
    auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(der.data(), der.size()));
    if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(der.size()));
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no response for this certificate: no staple
}

}  // namespace lb::l7
