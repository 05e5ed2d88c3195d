// libFuzzer target: inline certificates and keys of lb-l7's TLS listeners
// (proto/l7_pem.h), which any client of SetL7Config sends: the checks of the
// shared validator (CheckCertificateEntry: PEM labels, certificates and
// chain, private key, the pair), the redaction marker and its resolution.
//
// Input: cert_pem, a NUL byte, key_pem (no NUL: all cert_pem, no key).
// Asserts:
//   - no message carries a private key: never "PRIVATE KEY", never the
//     key_pem text itself;
//   - an accepted entry has a marker, shows it (RedactPrivateKeys leaves no
//     key), and the marker resolves back to exactly that key against a
//     stored config that holds it, and to nothing against one that does not.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "proto/l7_pem.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "l7_pem_fuzz: %s\n", what);
    std::abort();
  }
}

void CheckMessage(const std::string& m, const std::string& key_pem) {
  Check(m.find("PRIVATE KEY") == std::string::npos, "PRIVATE KEY in a message");
  if (key_pem.size() >= 16 && !lb::l7::IsRedactedKey(key_pem)) {
    Check(m.find(key_pem) == std::string::npos, "key_pem in a message");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  const std::string cert = in.substr(0, nul);
  const std::string key = nul == std::string::npos ? "" : in.substr(nul + 1);

  lb::v1::L7Config config;
  lb::v1::L7Certificate* c = config.add_listeners()->mutable_tls()->add_certificates();
  c->set_cert_pem(cert);
  c->set_key_pem(key);
  std::vector<std::pair<std::string, std::string>> errors;
  lb::l7::CheckCertificateEntry(*c, "c", &errors);
  for (const auto& [field, what] : errors) {
    CheckMessage(field, key);
    CheckMessage(what, key);
  }
  auto certs = lb::l7::ParseCertificatesPem(cert);
  if (certs.ok()) Check(!certs->empty(), "no certificate accepted");
  if (!certs.ok()) CheckMessage(std::string(certs.status().message()), key);
  auto marker = lb::l7::RedactedKeyMarker(key);
  if (!marker.ok()) CheckMessage(std::string(marker.status().message()), key);

  if (!errors.empty()) return 0;
  Check(marker.ok(), "an accepted key has no marker");
  lb::v1::L7Config shown = config;
  lb::l7::RedactPrivateKeys(&shown);
  Check(shown.listeners(0).tls().certificates(0).key_pem() == *marker, "not redacted");
  lb::v1::L7Config back = shown;
  Check(lb::l7::ResolveRedactedKeys(config, "config.", &back).ok(), "own marker not resolved");
  Check(back.listeners(0).tls().certificates(0).key_pem() == key, "resolved to another key");
  back = shown;
  absl::Status st = lb::l7::ResolveRedactedKeys(lb::v1::L7Config(), "config.", &back);
  Check(!st.ok(), "a marker resolved without a stored key");
  CheckMessage(std::string(st.message()), key);
  return 0;
}
