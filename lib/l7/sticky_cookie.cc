#include "lib/l7/sticky_cookie.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lb::l7 {
namespace {

constexpr absl::string_view kTag = "lb-sticky-v1";
constexpr size_t kMacHex = 64;
constexpr size_t kMaxExpiryDigits = 12;

absl::string_view TrimOws(absl::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Lowercase hex of HMAC-SHA256(key, tag 0 pool 0 backend_hex 0 expiry).
std::string Mac(absl::string_view key, absl::string_view pool, absl::string_view backend_hex,
                absl::string_view expiry) {
  std::string msg;
  msg.reserve(kTag.size() + pool.size() + backend_hex.size() + expiry.size() + 3);
  absl::StrAppend(&msg, kTag, absl::string_view("\0", 1), pool, absl::string_view("\0", 1),
                  backend_hex, absl::string_view("\0", 1), expiry);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &len) == nullptr) {
    return std::string();  // never matches a cookie (Verify checks the length)
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), len));
}

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::optional<absl::string_view> FindCookie(absl::string_view header_value,
                                            absl::string_view name) {
  while (!header_value.empty()) {
    const size_t semi = header_value.find(';');
    absl::string_view pair = TrimOws(header_value.substr(0, semi));
    header_value =
        semi == absl::string_view::npos ? absl::string_view() : header_value.substr(semi + 1);
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos) continue;
    if (TrimOws(pair.substr(0, eq)) != name) continue;
    absl::string_view value = TrimOws(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return std::nullopt;
}

std::optional<absl::string_view> FindRequestCookie(const MessageHead& head,
                                                   absl::string_view name) {
  for (const HeaderField& f : head.headers) {
    if (!absl::EqualsIgnoreCase(f.name, "cookie")) continue;
    if (auto v = FindCookie(f.value, name)) return v;
  }
  return std::nullopt;
}

std::string SignStickyCookie(absl::string_view key, absl::string_view pool,
                             absl::string_view backend, int64_t expiry_s) {
  const std::string hex = absl::BytesToHexString(backend);
  const std::string expiry = absl::StrCat(expiry_s);
  return absl::StrCat(hex, ".", expiry, ".", Mac(key, pool, hex, expiry));
}

CookieVerdict VerifyStickyCookie(absl::string_view key, absl::string_view pool,
                                 absl::string_view value, int64_t now_s, std::string* backend,
                                 int64_t* expiry_out) {
  const size_t d1 = value.find('.');
  if (d1 == absl::string_view::npos) return CookieVerdict::kMalformed;
  const size_t d2 = value.find('.', d1 + 1);
  if (d2 == absl::string_view::npos) return CookieVerdict::kMalformed;
  const absl::string_view hex = value.substr(0, d1);
  const absl::string_view expiry = value.substr(d1 + 1, d2 - d1 - 1);
  const absl::string_view mac = value.substr(d2 + 1);
  if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 2 * kMaxCookieBackendKey ||
      !IsLowerHex(hex)) {
    return CookieVerdict::kMalformed;
  }
  int64_t expiry_s = 0;
  if (expiry.empty() || expiry.size() > kMaxExpiryDigits ||
      !absl::c_all_of(expiry, absl::ascii_isdigit) || !absl::SimpleAtoi(expiry, &expiry_s)) {
    return CookieVerdict::kMalformed;
  }
  if (mac.size() != kMacHex || !IsLowerHex(mac)) return CookieVerdict::kMalformed;
  const std::string want = Mac(key, pool, hex, expiry);
  if (want.size() != kMacHex || CRYPTO_memcmp(want.data(), mac.data(), kMacHex) != 0) {
    return CookieVerdict::kBadSignature;
  }
  if (expiry_s <= now_s) return CookieVerdict::kExpired;
  *backend = absl::HexStringToBytes(hex);
  if (expiry_out != nullptr) *expiry_out = expiry_s;
  return CookieVerdict::kValid;
}

}  // namespace lb::l7
