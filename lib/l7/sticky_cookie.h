// Sticky-session cookies of lb-l7 (docs/L7.md "Sticky sessions") and the
// Cookie request header parser that reads them (and hash_on cookies).
//
// A sticky cookie names the backend a client is pinned to and when the pin
// ends, signed with HMAC-SHA256 (OpenSSL libcrypto) under a key every L7
// node of a deployment shares (a file), so any node honours a cookie any
// other node set, without a shared store:
//
//   value = hex(backend key) "." expiry (unix seconds, decimal) "." hex(mac)
//   mac   = HMAC-SHA256(key, "lb-sticky-v1" 0 pool 0 hex(backend key) 0 expiry)
//
// The pool name is inside the MAC: a cookie of one pool pins nothing in
// another. The backend key is its address text ("10.0.0.1:80"), the same on
// every node whatever the config order. Verification compares in constant
// time (CRYPTO_memcmp).
//
// Failures: VerifyStickyCookie never fails hard; it classifies the bytes
// (the fuzz target fuzz/sticky_cookie_fuzz.cc feeds it and FindCookie
// arbitrary bytes). Threads: any; no state.
#ifndef LB_LIB_L7_STICKY_COOKIE_H_
#define LB_LIB_L7_STICKY_COOKIE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

// Longest backend key a cookie may carry ("[v6]:port" fits).
inline constexpr size_t kMaxCookieBackendKey = 64;
inline constexpr size_t kMinStickyKeyBytes = 32;

// The value of cookie `name` in one Cookie field value ("a=1; b=2"), RFC
// 6265 §4.2.1 / §5.4 leniently: pairs split on ';', optional whitespace
// around them, the name case-sensitive, one pair of DQUOTEs around the value
// removed. The first match wins. nullopt when absent.
std::optional<absl::string_view> FindCookie(absl::string_view header_value, absl::string_view name);
// The same over every Cookie field of a request head.
std::optional<absl::string_view> FindRequestCookie(const MessageHead& head, absl::string_view name);

std::string SignStickyCookie(absl::string_view key, absl::string_view pool,
                             absl::string_view backend, int64_t expiry_s);

enum class CookieVerdict { kValid, kMalformed, kBadSignature, kExpired };

// kValid sets *backend to the key the cookie names. Expired means
// expiry_s <= now_s (checked after the signature: a forged expiry is
// kBadSignature).
// `expiry_s` (optional) receives the cookie's expiry when kValid.
CookieVerdict VerifyStickyCookie(absl::string_view key, absl::string_view pool,
                                 absl::string_view value, int64_t now_s, std::string* backend,
                                 int64_t* expiry_s = nullptr);

}  // namespace lb::l7

#endif  // LB_LIB_L7_STICKY_COOKIE_H_
