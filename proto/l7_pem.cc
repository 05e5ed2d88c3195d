#include "proto/l7_pem.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lb::l7 {
namespace {

int NoPassphrase(char*, int, int, void*) { return 0; }  // never prompt

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::unique_ptr<BIO, BioFree> MemBio(absl::string_view pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The labels of the "-----BEGIN <label>-----" lines of a PEM text.
std::vector<std::string> PemLabels(absl::string_view pem) {
  std::vector<std::string> out;
  constexpr absl::string_view kBegin = "-----BEGIN ";
  for (size_t at = pem.find(kBegin); at != absl::string_view::npos; at = pem.find(kBegin, at + 1)) {
    const size_t from = at + kBegin.size();
    const size_t end = pem.find("-----", from);
    if (end == absl::string_view::npos || end - from > 64) {
      out.push_back("?");
      continue;
    }
    out.emplace_back(pem.substr(from, end - from));
  }
  return out;
}

template <typename Fn>
void ForEachCertificate(const v1::L7Config& c, Fn fn) {
  for (int i = 0; i < c.listeners_size(); ++i) {
    const v1::L7Tls& t = c.listeners(i).tls();
    for (int k = 0; k < t.certificates_size(); ++k) {
      fn(absl::StrCat("listeners[", i, "].tls.certificates[", k, "]"), t.certificates(k));
    }
  }
}

}  // namespace

std::string SslError() {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<std::vector<X509Ptr>> ParseCertificatesPem(absl::string_view pem) {
  if (pem.size() > kMaxInlinePemBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(pem.size(), " bytes; at most ", kMaxInlinePemBytes));
  }
  // Certificates only: OpenSSL would skip any other block, and what is in
  // cert_pem is returned by the API as it is (a key there would leak).
  for (const std::string& label : PemLabels(pem)) {
    if (label == "CERTIFICATE") continue;
    // A key's label is not repeated: "PRIVATE KEY" in an answer or a log
    // would read as a leak to whoever greps for it.
    const std::string what = absl::StrContains(label, "KEY")
                                 ? std::string("a key")
                                 : absl::StrCat("a \"", absl::CEscape(label), "\"");
    return absl::InvalidArgumentError(absl::StrCat(
        "holds ", what, " block; certificates only (the private key goes in key_pem)"));
  }
  auto bio = MemBio(pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf failed");
  ERR_clear_error();
  std::vector<X509Ptr> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    out.emplace_back(x);
  }
  const unsigned long e = ERR_peek_last_error();
  if (!out.empty() && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
    ERR_clear_error();  // the end of the text
    return out;
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM certificate (", SslError(), ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "certificate ", out.size() + 1, " of the chain does not parse (", SslError(), ")"));
}

absl::StatusOr<PkeyPtr> ParsePrivateKeyPem(absl::string_view pem) {
  if (pem.size() > kMaxInlinePemBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(pem.size(), " bytes; at most ", kMaxInlinePemBytes));
  }
  auto bio = MemBio(pem);
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf failed");
  ERR_clear_error();
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr);
  if (k == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an unencrypted PEM private key (", SslError(), ")"));
  }
  return PkeyPtr(k);
}

std::vector<std::string> CertificateNames(X509* x) {
  std::vector<std::string> out;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS) continue;
      const auto* d = reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName));
      out.push_back(absl::AsciiStrToLower(std::string(d, ASN1_STRING_length(g->d.dNSName))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (out.empty()) {
    X509_NAME* subj = X509_get_subject_name(x);
    const int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i >= 0) {
      ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
      const auto* d = reinterpret_cast<const char*>(ASN1_STRING_get0_data(s));
      out.push_back(absl::AsciiStrToLower(std::string(d, ASN1_STRING_length(s))));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool IsRedactedKey(absl::string_view key_pem) { return absl::StartsWith(key_pem, "redacted:"); }

absl::StatusOr<std::string> RedactedKeyMarker(absl::string_view key_pem) {
  auto key = ParsePrivateKeyPem(key_pem);
  if (!key.ok()) return key.status();
  unsigned char* der = nullptr;
  const int n = i2d_PrivateKey(key->get(), &der);
  if (n <= 0) return absl::InternalError("i2d_PrivateKey: " + SslError());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  const int ok = EVP_Digest(der, static_cast<size_t>(n), md, &md_len, EVP_sha256(), nullptr);
  OPENSSL_clear_free(der, static_cast<size_t>(n));
  if (ok != 1) return absl::InternalError("SHA-256: " + SslError());
  return absl::StrCat(kRedactedKeyPrefix, absl::BytesToHexString(absl::string_view(
                                              reinterpret_cast<const char*>(md), md_len)));
}

void RedactPrivateKeys(v1::L7Config* config) {
  for (v1::L7Listener& l : *config->mutable_listeners()) {
    if (!l.has_tls()) continue;
    for (v1::L7Certificate& c : *l.mutable_tls()->mutable_certificates()) {
      if (c.key_pem().empty() || IsRedactedKey(c.key_pem())) continue;
      auto marker = RedactedKeyMarker(c.key_pem());
      c.set_key_pem(marker.ok() ? *marker : "redacted:unparsable");
    }
  }
}

absl::Status ResolveRedactedKeys(const v1::L7Config& stored, const std::string& path_prefix,
                                 v1::L7Config* config) {
  std::map<std::string, const std::string*> by_marker;
  bool any = false;
  for (const v1::L7Listener& l : config->listeners()) {
    for (const v1::L7Certificate& c : l.tls().certificates())
      any = any || IsRedactedKey(c.key_pem());
  }
  if (!any) return absl::OkStatus();
  ForEachCertificate(stored, [&](const std::string&, const v1::L7Certificate& c) {
    if (c.key_pem().empty() || IsRedactedKey(c.key_pem())) return;
    auto marker = RedactedKeyMarker(c.key_pem());
    if (marker.ok()) by_marker.emplace(*marker, &c.key_pem());
  });
  std::vector<std::string> errors;
  for (int i = 0; i < config->listeners_size(); ++i) {
    v1::L7Listener& l = *config->mutable_listeners(i);
    if (!l.has_tls()) continue;
    for (int k = 0; k < l.tls().certificates_size(); ++k) {
      v1::L7Certificate& c = *l.mutable_tls()->mutable_certificates(k);
      if (!IsRedactedKey(c.key_pem())) continue;
      auto it = by_marker.find(c.key_pem());
      if (it == by_marker.end()) {
        // The marker is a digest, safe to repeat (bounded: it came from a client).
        errors.push_back(absl::StrCat(
            path_prefix, "listeners[", i, "].tls.certificates[", k, "].key_pem: \"",
            absl::CEscape(c.key_pem().substr(0, 80)),
            "\" matches no stored key (a marker stands for a key the control plane holds; "
            "upload the key itself: lbctl l7 set-cert --key FILE)"));
        continue;
      }
      c.set_key_pem(*it->second);
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return absl::OkStatus();
}

void CheckCertificateEntry(const v1::L7Certificate& c, const std::string& field,
                           std::vector<std::pair<std::string, std::string>>* errors) {
  const bool files = !c.cert_file().empty() || !c.key_file().empty();
  const bool pem = !c.cert_pem().empty() || !c.key_pem().empty();
  if (files && pem) {
    errors->emplace_back(field,
                         "cert_file/key_file and cert_pem/key_pem are both set; one form "
                         "per certificate (files on the L7 node, or inline PEM)");
    return;
  }
  if (!files && !pem) {
    errors->emplace_back(field, "neither cert_file/key_file nor cert_pem/key_pem is set");
    return;
  }
  if (files) return;  // read and checked by lb-l7 on its node (dataplane/l7/tls.h)
  if (c.cert_pem().empty()) errors->emplace_back(field + ".cert_pem", "required with key_pem");
  if (c.key_pem().empty()) errors->emplace_back(field + ".key_pem", "required with cert_pem");
  if (c.cert_pem().empty() || c.key_pem().empty()) return;
  auto certs = ParseCertificatesPem(c.cert_pem());
  if (!certs.ok()) errors->emplace_back(field + ".cert_pem", std::string(certs.status().message()));
  absl::StatusOr<PkeyPtr> key = absl::InvalidArgumentError("");
  if (IsRedactedKey(c.key_pem())) {
    errors->emplace_back(field + ".key_pem",
                         "a redaction marker; only lb-controlplane's SetL7Config replaces it by "
                         "the stored key it names");
  } else {
    key = ParsePrivateKeyPem(c.key_pem());
    if (!key.ok()) errors->emplace_back(field + ".key_pem", std::string(key.status().message()));
  }
  if (!certs.ok() || !key.ok()) return;
  X509* leaf = (*certs)[0].get();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    ERR_clear_error();
    errors->emplace_back(field + ".key_pem", "does not match the certificate of cert_pem");
    return;
  }
  if (CertificateNames(leaf).empty()) {
    errors->emplace_back(field + ".cert_pem", "the certificate names no DNS name (SAN or CN)");
  }
}

absl::Status RefuseExpiredNewCertificates(const v1::L7Config& next, const v1::L7Config& stored,
                                          int64_t now_unix_s, const std::string& path_prefix) {
  std::set<std::string> known;
  ForEachCertificate(stored, [&](const std::string&, const v1::L7Certificate& c) {
    if (!c.cert_pem().empty()) known.insert(c.cert_pem());
  });
  std::vector<std::string> errors;
  ForEachCertificate(next, [&](const std::string& field, const v1::L7Certificate& c) {
    if (c.cert_pem().empty() || known.count(c.cert_pem()) != 0) return;
    auto certs = ParseCertificatesPem(c.cert_pem());
    if (!certs.ok()) return;  // the validator names it
    const ASN1_TIME* not_after = X509_get0_notAfter((*certs)[0].get());
    time_t now = static_cast<time_t>(now_unix_s);
    if (X509_cmp_time(not_after, &now) >= 0) return;
    std::string when = "?";
    if (auto b = std::unique_ptr<BIO, BioFree>(BIO_new(BIO_s_mem())); b != nullptr) {
      ASN1_TIME_print(b.get(), not_after);
      char* p = nullptr;
      const long n = BIO_get_mem_data(b.get(), &p);
      if (n > 0) when.assign(p, static_cast<size_t>(n));
    }
    errors.push_back(absl::StrCat(path_prefix, field,
                                  ".cert_pem: the certificate expired (notAfter ", when,
                                  "); upload a valid one"));
  });
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return absl::OkStatus();
}

}  // namespace lb::l7
