// Inline certificates and keys (proto/l7_pem.h): the shared validator's
// checks of cert_pem / key_pem, each refusal naming the field (both forms,
// neither, one half, garbage, a key in cert_pem, a marker, a mismatch, no
// name); the TLS contexts built from memory (chain included); the redaction
// markers (format, stability, one per key), their resolution against the
// stored keys, and the refusal of expired new certificates. No message
// ever carries key bytes.
#include "proto/l7_pem.h"

#include <google/protobuf/text_format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "dataplane/l7/tls.h"
#include "gtest/gtest.h"
#include "proto/l7_config.h"
#include "tests/l7/pem_test_util.h"

namespace lb::l7 {
namespace {

using lb::testing::MakeTestPem;
using lb::testing::TestPem;

// One TLS listener whose certificates[0] is `cert`.
v1::L7Config WithCert(const v1::L7Certificate& cert) {
  v1::L7Config c;
  EXPECT_TRUE(
      google::protobuf::TextFormat::ParseFromString(R"pb(
                                                      listeners {
                                                        name: "https"
                                                        port: 8443
                                                        default_pool: "web"
                                                        tls {}
                                                      }
                                                      pools {
                                                        name: "web"
                                                        backends { address: "10.0.0.1" port: 80 }
                                                      }
                                                    )pb",
                                                    &c));
  *c.mutable_listeners(0)->mutable_tls()->add_certificates() = cert;
  return c;
}

v1::L7Certificate Inline(const TestPem& p) {
  v1::L7Certificate c;
  c.set_cert_pem(p.cert);
  c.set_key_pem(p.key);
  return c;
}

// The validator's message for `cert` (empty when accepted).
std::string Refusal(const v1::L7Certificate& cert) {
  auto rc = ValidateL7Config(WithCert(cert));
  return rc.ok() ? "" : std::string(rc.status().message());
}

void ExpectNoKeyBytes(const std::string& text, const TestPem& p) {
  EXPECT_FALSE(absl::StrContains(text, "PRIVATE KEY")) << text;
  // A line of the key's base64 body.
  const size_t nl = p.key.find('\n');
  const std::string line = p.key.substr(nl + 1, 40);
  EXPECT_FALSE(absl::StrContains(text, line)) << text;
}

constexpr char kField[] = "listeners[0].tls.certificates[0]";

TEST(L7Pem, InlinePairValidatesAndBuildsFromMemory) {
  const TestPem a = MakeTestPem({"a.example.com", "*.b.example.com"});
  const TestPem ca = MakeTestPem({"intermediate.example"});
  v1::L7Certificate c = Inline(a);
  c.set_cert_pem(a.cert + ca.cert);  // leaf, then a chain certificate
  auto rc = ValidateL7Config(WithCert(c));
  ASSERT_TRUE(rc.ok()) << rc.status();
  auto tls = BuildTlsContexts(*rc);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_NE((*tls)[0], nullptr);
  ASSERT_EQ((*tls)[0]->certs().size(), 1u);
  EXPECT_EQ((*tls)[0]->certs()[0].file, "inline");
  EXPECT_EQ((*tls)[0]->certs()[0].subject, "*.b.example.com");
  EXPECT_GT((*tls)[0]->certs()[0].not_after, 0);
}

TEST(L7Pem, EcdsaAndRsaInlineForTheSameNames) {
  v1::L7Config cfg = WithCert(Inline(MakeTestPem({"a.example.com"})));
  *cfg.mutable_listeners(0)->mutable_tls()->add_certificates() =
      Inline(MakeTestPem({"a.example.com"}, /*rsa=*/true));
  auto rc = ValidateL7Config(cfg);
  ASSERT_TRUE(rc.ok()) << rc.status();
  auto tls = BuildTlsContexts(*rc);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ((*tls)[0]->certs().size(), 2u);
}

TEST(L7Pem, OneFormPerEntryNamingTheField) {
  const TestPem a = MakeTestPem({"a.example.com"});
  v1::L7Certificate both = Inline(a);
  both.set_cert_file("/etc/a.crt");
  both.set_key_file("/etc/a.key");
  EXPECT_TRUE(absl::StrContains(Refusal(both), std::string(kField) +
                                                   ": cert_file/key_file and cert_pem/key_pem "
                                                   "are both set"))
      << Refusal(both);
  v1::L7Certificate half_both;
  half_both.set_cert_file("/etc/a.crt");
  half_both.set_key_pem(a.key);
  EXPECT_TRUE(absl::StrContains(Refusal(half_both), "are both set")) << Refusal(half_both);
  EXPECT_TRUE(absl::StrContains(
      Refusal(v1::L7Certificate()),
      std::string(kField) + ": neither cert_file/key_file nor cert_pem/key_pem is set"));
  v1::L7Certificate no_key;
  no_key.set_cert_pem(a.cert);
  EXPECT_TRUE(
      absl::StrContains(Refusal(no_key), std::string(kField) + ".key_pem: required with cert_pem"));
  v1::L7Certificate no_cert;
  no_cert.set_key_pem(a.key);
  EXPECT_TRUE(absl::StrContains(Refusal(no_cert),
                                std::string(kField) + ".cert_pem: required with key_pem"));
  ExpectNoKeyBytes(Refusal(no_cert), a);
  // Files alone: not read by the validator (lb-l7 reads them on its node).
  v1::L7Certificate files;
  files.set_cert_file("/nonexistent/a.crt");
  files.set_key_file("/nonexistent/a.key");
  EXPECT_EQ(Refusal(files), "");
}

TEST(L7Pem, BadPemNamesTheFieldWithoutKeyBytes) {
  const TestPem a = MakeTestPem({"a.example.com"});
  const TestPem b = MakeTestPem({"a.example.com"});
  v1::L7Certificate c = Inline(a);
  c.set_cert_pem("-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n");
  EXPECT_TRUE(
      absl::StrContains(Refusal(c), std::string(kField) + ".cert_pem: not a PEM certificate"))
      << Refusal(c);
  c = Inline(a);
  c.set_key_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  EXPECT_TRUE(absl::StrContains(
      Refusal(c), std::string(kField) + ".key_pem: not an unencrypted PEM private key"))
      << Refusal(c);
  c = Inline(a);
  c.set_key_pem(b.key);  // another key
  EXPECT_TRUE(absl::StrContains(
      Refusal(c), std::string(kField) + ".key_pem: does not match the certificate of cert_pem"))
      << Refusal(c);
  ExpectNoKeyBytes(Refusal(c), b);
  // A key inside cert_pem would be returned by the API with the certificate.
  c = Inline(a);
  c.set_cert_pem(a.cert + a.key);
  EXPECT_TRUE(absl::StrContains(Refusal(c), std::string(kField) + ".cert_pem: holds a key block; "
                                                                  "certificates only"))
      << Refusal(c);
  ExpectNoKeyBytes(Refusal(c), a);
  c = Inline(a);
  c.set_cert_pem(a.cert + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  EXPECT_TRUE(absl::StrContains(
      Refusal(c), std::string(kField) + ".cert_pem: certificate 2 of the chain does not parse"))
      << Refusal(c);
  // lb-l7 never resolves markers: only the control plane holds the keys.
  c = Inline(a);
  c.set_key_pem(*RedactedKeyMarker(a.key));
  EXPECT_TRUE(absl::StrContains(Refusal(c), std::string(kField) +
                                                ".key_pem: a redaction marker; only "
                                                "lb-controlplane's SetL7Config"))
      << Refusal(c);
}

TEST(L7Pem, MarkerIsTheSha256OfTheKeyDerStableAndPerKey) {
  const TestPem a = MakeTestPem({"a.example.com"});
  const TestPem b = MakeTestPem({"a.example.com"}, /*rsa=*/true);
  auto ma = RedactedKeyMarker(a.key);
  ASSERT_TRUE(ma.ok()) << ma.status();
  EXPECT_TRUE(absl::StartsWith(*ma, kRedactedKeyPrefix));
  EXPECT_EQ(ma->size(), strlen(kRedactedKeyPrefix) + 64);
  EXPECT_EQ(*ma, *RedactedKeyMarker(a.key));
  // The same key in PKCS#8 or its traditional form: the same DER digest.
  auto key = ParsePrivateKeyPem(a.key);
  ASSERT_TRUE(key.ok());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey_traditional(bio, key->get(), nullptr, nullptr, 0, nullptr, nullptr);
  const std::string traditional = lb::testing::BioString(bio);
  ASSERT_NE(traditional, a.key);
  EXPECT_EQ(*RedactedKeyMarker(traditional), *ma);
  EXPECT_NE(*RedactedKeyMarker(b.key), *ma);
  EXPECT_FALSE(RedactedKeyMarker("garbage").ok());

  v1::L7Config cfg = WithCert(Inline(a));
  *cfg.mutable_listeners(0)->mutable_tls()->add_certificates() = Inline(b);
  RedactPrivateKeys(&cfg);
  const v1::L7Tls& t = cfg.listeners(0).tls();
  EXPECT_EQ(t.certificates(0).key_pem(), *ma);
  EXPECT_EQ(t.certificates(1).key_pem(), *RedactedKeyMarker(b.key));
  EXPECT_EQ(t.certificates(0).cert_pem(), a.cert);  // public: as it is
  std::string text;
  google::protobuf::TextFormat::PrintToString(cfg, &text);
  ExpectNoKeyBytes(text, a);
  ExpectNoKeyBytes(text, b);
}

TEST(L7Pem, MarkersResolveToStoredKeysOrAreRefusedNamingTheField) {
  const TestPem a = MakeTestPem({"a.example.com"});
  const TestPem b = MakeTestPem({"b.example.com"});
  const v1::L7Config stored = WithCert(Inline(a));
  v1::L7Config edited = stored;
  RedactPrivateKeys(&edited);
  edited.mutable_listeners(0)->set_port(9443);  // an edit
  ASSERT_TRUE(ResolveRedactedKeys(stored, "config.", &edited).ok());
  EXPECT_EQ(edited.listeners(0).tls().certificates(0).key_pem(), a.key);
  EXPECT_TRUE(ValidateL7Config(edited).ok());

  v1::L7Config unknown = WithCert(Inline(b));
  unknown.mutable_listeners(0)->mutable_tls()->mutable_certificates(0)->set_key_pem(
      *RedactedKeyMarker(b.key));
  absl::Status st = ResolveRedactedKeys(stored, "config.", &unknown);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(),
                                std::string("config.") + kField + ".key_pem: \"redacted:sha256:"))
      << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "matches no stored key")) << st;
  v1::L7Config made_up = WithCert(Inline(a));
  made_up.mutable_listeners(0)->mutable_tls()->mutable_certificates(0)->set_key_pem(
      "redacted:sha256:00");
  EXPECT_FALSE(ResolveRedactedKeys(stored, "", &made_up).ok());
}

TEST(L7Pem, ExpiredNewCertificatesRefusedStoredOnesKept) {
  const TestPem old = MakeTestPem({"a.example.com"}, false, /*valid_s=*/-3600);
  const TestPem good = MakeTestPem({"a.example.com"});
  const int64_t now = time(nullptr);
  // The validator does not look at dates (as for files: lb-l7 serves an
  // expired certificate and its expiry gauge goes negative).
  EXPECT_EQ(Refusal(Inline(old)), "");
  const v1::L7Config empty;
  absl::Status st = RefuseExpiredNewCertificates(WithCert(Inline(old)), empty, now, "config.");
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(absl::StrContains(st.message(), std::string("config.") + kField +
                                                  ".cert_pem: the certificate expired (notAfter "))
      << st;
  EXPECT_TRUE(RefuseExpiredNewCertificates(WithCert(Inline(good)), empty, now, "").ok());
  // Already stored (it expired since): the document stays editable.
  v1::L7Config edited = WithCert(Inline(old));
  edited.mutable_listeners(0)->set_port(9443);
  EXPECT_TRUE(RefuseExpiredNewCertificates(edited, WithCert(Inline(old)), now, "").ok());
}

TEST(L7Pem, StandaloneFileWithKeysMustNotBeReadableByOthers) {
  const TestPem a = MakeTestPem({"a.example.com"});
  std::string text;
  google::protobuf::TextFormat::PrintToString(WithCert(Inline(a)), &text);
  char path[] = "/tmp/l7-pem-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  ASSERT_EQ(chmod(path, 0644), 0);
  auto loaded = LoadL7Config(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(absl::StrContains(loaded.status().message(),
                                "holds private keys (key_pem) and is accessible by others"))
      << loaded.status();
  ExpectNoKeyBytes(std::string(loaded.status().message()), a);
  ASSERT_EQ(chmod(path, 0640), 0);
  loaded = LoadL7Config(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->listeners(0).tls().certificates(0).key_pem(), a.key);
  unlink(path);
}

}  // namespace
}  // namespace lb::l7
