// Test helper: a self-signed certificate and its key, made in memory with
// OpenSSL (ECDSA P-256 or RSA 2048), valid from now-1h to now+valid_s
// (negative: already expired), its names as subjectAltName DNS entries.
#ifndef LB_TESTS_L7_PEM_TEST_UTIL_H_
#define LB_TESTS_L7_PEM_TEST_UTIL_H_

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace lb::testing {

struct TestPem {
  std::string cert, key;
};

inline std::string BioString(BIO* b) {
  char* p = nullptr;
  const long n = BIO_get_mem_data(b, &p);
  std::string s(p, n > 0 ? static_cast<size_t>(n) : 0);
  BIO_free(b);
  return s;
}

inline TestPem MakeTestPem(const std::vector<std::string>& names, bool rsa = false,
                           int64_t valid_s = 86400, int64_t serial = 1) {
  EVP_PKEY* k = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  EXPECT_NE(k, nullptr);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(serial));
  X509_gmtime_adj(X509_getm_notBefore(x), valid_s < 0 ? 2 * valid_s : -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(valid_s));
  X509_NAME* n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(names[0].c_str()), -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509_set_pubkey(x, k);
  std::vector<std::string> dns;
  for (const std::string& s : names) dns.push_back("DNS:" + s);
  const std::string san = absl::StrJoin(dns, ",");
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str());
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  EXPECT_GT(X509_sign(x, k, EVP_sha256()), 0);
  TestPem out;
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  out.cert = BioString(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  out.key = BioString(b);
  X509_free(x);
  EVP_PKEY_free(k);
  return out;
}

}  // namespace lb::testing

#endif  // LB_TESTS_L7_PEM_TEST_UTIL_H_
