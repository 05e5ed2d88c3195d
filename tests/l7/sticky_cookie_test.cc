// lib/l7/sticky_cookie.h: the Cookie header parser and the signed sticky
// cookie (sign/verify round trip, tampering, expiry, wrong key, wrong pool).
#include "lib/l7/sticky_cookie.h"

#include <string>

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

const std::string kKey(32, 'k');
const std::string kOtherKey(32, 'o');

TEST(FindCookie, PairsWhitespaceQuotesFirstMatch) {
  EXPECT_EQ(FindCookie("a=1; b=2", "b"), "2");
  EXPECT_EQ(FindCookie("a=1;b=2", "a"), "1");
  EXPECT_EQ(FindCookie("  a = \"x y\" ;b=2", "a"), "x y");
  EXPECT_EQ(FindCookie("a=1; a=2", "a"), "1");
  EXPECT_EQ(FindCookie("ab=1", "a"), std::nullopt);
  EXPECT_EQ(FindCookie("A=1", "a"), std::nullopt);  // names are case-sensitive
  EXPECT_EQ(FindCookie("a", "a"), std::nullopt);
  EXPECT_EQ(FindCookie("a=", "a"), "");
  EXPECT_EQ(FindCookie(";;;=;", "a"), std::nullopt);
  EXPECT_EQ(FindCookie("b=\"", "b"), "\"");  // a lone quote is kept
  EXPECT_EQ(FindCookie("", "a"), std::nullopt);
}

TEST(FindCookie, EveryCookieFieldOfAHead) {
  MessageHead h;
  h.headers = {{"Host", "x"}, {"Cookie", "a=1"}, {"cookie", "lb_sticky=v; z=2"}};
  EXPECT_EQ(FindRequestCookie(h, "lb_sticky"), "v");
  EXPECT_EQ(FindRequestCookie(h, "a"), "1");
  EXPECT_EQ(FindRequestCookie(h, "Host"), std::nullopt);
}

TEST(StickyCookie, RoundTrip) {
  const std::string v = SignStickyCookie(kKey, "web", "10.0.0.1:80", 2000);
  std::string b;
  EXPECT_EQ(VerifyStickyCookie(kKey, "web", v, 1999, &b), CookieVerdict::kValid);
  EXPECT_EQ(b, "10.0.0.1:80");
  const std::string v6 = SignStickyCookie(kKey, "web", "[2001:db8::1]:8080", 2000);
  EXPECT_EQ(VerifyStickyCookie(kKey, "web", v6, 0, &b), CookieVerdict::kValid);
  EXPECT_EQ(b, "[2001:db8::1]:8080");
  // Only cookie-octets (RFC 6265 §4.1.1): hex, digits and dots.
  for (char c : v) EXPECT_TRUE(isxdigit(static_cast<unsigned char>(c)) || c == '.') << v;
}

TEST(StickyCookie, GoldenFormat) {
  // hex("a:1") "." expiry "." 64 hex digits of the MAC.
  const std::string v = SignStickyCookie(kKey, "p", "a:1", 5);
  EXPECT_EQ(v.substr(0, 9), "613a31.5.");
  EXPECT_EQ(v.size(), 9u + 64u);
}

TEST(StickyCookie, ExpiredWrongKeyWrongPool) {
  const std::string v = SignStickyCookie(kKey, "web", "10.0.0.1:80", 2000);
  std::string b;
  EXPECT_EQ(VerifyStickyCookie(kKey, "web", v, 2000, &b), CookieVerdict::kExpired);
  EXPECT_EQ(VerifyStickyCookie(kOtherKey, "web", v, 0, &b), CookieVerdict::kBadSignature);
  EXPECT_EQ(VerifyStickyCookie(kKey, "api", v, 0, &b), CookieVerdict::kBadSignature);
  EXPECT_TRUE(b.empty());
}

TEST(StickyCookie, EveryTamperedByteIsRefused) {
  const std::string v = SignStickyCookie(kKey, "web", "10.0.0.1:80", 2000);
  for (size_t i = 0; i < v.size(); ++i) {
    std::string t = v;
    t[i] = t[i] == '1' ? '2' : '1';
    std::string b;
    const CookieVerdict r = VerifyStickyCookie(kKey, "web", t, 0, &b);
    EXPECT_TRUE(r == CookieVerdict::kBadSignature || r == CookieVerdict::kMalformed) << i;
    EXPECT_TRUE(b.empty());
  }
  // A later expiry with the old MAC: forged, not merely expired.
  std::string later = SignStickyCookie(kKey, "web", "10.0.0.1:80", 9000);
  const std::string forged = v.substr(0, v.find('.')) + ".9000" + v.substr(v.rfind('.'));
  std::string b;
  EXPECT_EQ(VerifyStickyCookie(kKey, "web", forged, 3000, &b), CookieVerdict::kBadSignature);
  EXPECT_EQ(VerifyStickyCookie(kKey, "web", later, 3000, &b), CookieVerdict::kValid);
}

TEST(StickyCookie, GarbleIsMalformed) {
  std::string b;
  for (const char* g : {"", ".", "..", "zz.1.", "61.1.00", "6.1." /* odd hex */,
                        "61..0000000000000000000000000000000000000000000000000000000000000000",
                        "61.-1.0000000000000000000000000000000000000000000000000000000000000000",
                        "61.9999999999999.000000000000000000000000000000000000000000000000000000"
                        "0000000000",
                        "61.1.000000000000000000000000000000000000000000000000000000000000000G"}) {
    EXPECT_EQ(VerifyStickyCookie(kKey, "web", g, 0, &b), CookieVerdict::kMalformed) << g;
  }
  const std::string huge(4096, 'a');
  EXPECT_EQ(VerifyStickyCookie(kKey, "web", huge + ".1." + std::string(64, '0'), 0, &b),
            CookieVerdict::kMalformed);
}

}  // namespace
}  // namespace lb::l7
