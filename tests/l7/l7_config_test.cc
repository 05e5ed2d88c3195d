// proto/l7_config.h: a good config converts with its defaults; a bad
// one is refused with every offending field named. TLS blocks are carried
// as they are and checked by BuildTlsContexts (dataplane/l7/tls.h), whose
// file-free refusals are listed here (the files: tests/l7/l7_tls_test.py).
#include "proto/l7_config.h"

#include <google/protobuf/text_format.h>

#include "dataplane/l7/tls.h"

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

v1::L7Config Text(const std::string& t) {
  v1::L7Config c;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(t, &c));
  return c;
}

TEST(L7Config, GoodConfigWithDefaults) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "l" port: 8080 default_pool: "web"
      routes { name: "api" hosts: "*.api.test" path { prefix: "/v1/" } pool: "api" } }
    pools { name: "web" backends { address: "10.0.0.1" port: 80 } }
    pools { name: "api" algorithm: ALGORITHM_WEIGHTED_ROUND_ROBIN
      backends { address: "2001:db8::1" port: 8080 weight: 3 } }
  )"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  ASSERT_EQ(rc->listeners.size(), 1u);
  EXPECT_EQ(rc->listeners[0].addr.text, "0.0.0.0:8080");
  EXPECT_EQ(rc->listeners[0].route_names, (std::vector<std::string>{"api", "default"}));
  EXPECT_EQ(rc->pools[1].backends[0].addr.text, "[2001:db8::1]:8080");
  EXPECT_EQ(rc->pools[1].backends[0].weight, 3u);
  EXPECT_EQ(rc->pools[1].algorithm, BalanceAlgorithm::kWeightedRoundRobin);
  EXPECT_EQ(rc->limits.max_header_bytes, 16384u);
  EXPECT_EQ(rc->timeouts.client_header_ns, 10'000'000'000);
  EXPECT_EQ(rc->listeners[0].router.Match("x.api.test", "/v1/a", "GET"), 0);
}

TEST(L7Config, MaglevAndStickyPools) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "l" port: 8080 default_pool: "h" }
    pools { name: "h" algorithm: ALGORITHM_MAGLEV hash_on { cookie: "sid" }
      backends { address: "10.0.0.1" port: 80 } backends { address: "10.0.0.2" port: 80 } }
    pools { name: "p" algorithm: ALGORITHM_MAGLEV hash_on { path: true }
      backends { address: "10.0.0.1" port: 80 } }
    pools { name: "c" sticky_sessions: true sticky_cookie: "srv"
      backends { address: "10.0.0.1" port: 80 } }
    pools { name: "s" sticky_sessions: true sticky_source_ip: true sticky_ttl_seconds: 60
      backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->pools[0].algorithm, BalanceAlgorithm::kMaglev);
  EXPECT_EQ(rc->pools[0].hash_on, HashOn::kCookie);
  EXPECT_EQ(rc->pools[0].hash_name, "sid");
  ASSERT_NE(rc->pools[0].ring, nullptr);
  EXPECT_EQ(rc->pools[0].ring->size(), 65537u);
  EXPECT_EQ(rc->pools[1].hash_on, HashOn::kPath);
  EXPECT_EQ(rc->pools[2].sticky, StickyMode::kCookie);
  EXPECT_EQ(rc->pools[2].sticky_cookie, "srv");
  EXPECT_EQ(rc->pools[2].sticky_ttl_s, 3600);
  EXPECT_EQ(rc->pools[3].sticky, StickyMode::kSourceIp);
  EXPECT_EQ(rc->pools[3].sticky_ttl_s, 60);
  EXPECT_EQ(rc->pools[3].ring, nullptr);
}

TEST(L7Config, HashAndStickyErrorsNameTheField) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "l" port: 8080 default_pool: "a" }
    pools { name: "a" hash_on { header: "X Bad" }
      sticky_sessions: true sticky_ttl_seconds: 9999999 sticky_cookie: "a;b"
      backends { address: "10.0.0.1" port: 80 } }
    pools { name: "b" sticky_source_ip: true backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_FALSE(rc.ok());
  const std::string m(rc.status().message());
  for (const char* want : {
           "pools[0].hash_on.header: not a field name",
           "pools[0].hash_on: only with ALGORITHM_MAGLEV",
           "pools[0].sticky_ttl_seconds: 9999999 out of range",
           "pools[0].sticky_cookie: \"a;b\" is not a cookie name",
           "pools[1].sticky_sessions: sticky_* fields are set",
       }) {
    EXPECT_NE(m.find(want), std::string::npos) << want << " in: " << m;
  }
}

TEST(L7Config, ErrorsNameEveryField) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "l" port: 0 address: "nope" default_pool: "missing"
      routes { name: "r" path { regex: "(" } pool: "web" }
      routes { name: "r2" pool: "ghost" methods: "get" }
      routes { name: "r3" pool: "web" headers { name: "X Bad" present: true } headers { name: "a" }
               request_headers_to_add { name: "Content-Length" value: "1" }
               response_headers_to_add { name: "X-Ok" value: "a\nb" }
               request_headers_to_remove: "x-forwarded-for" } }
    pools { name: "web"
      backends { address: "10.0.0.1" port: 70000 weight: 5000 }
      backends { address: "10.0.0.1.2" port: 80 } }
    pools { name: "web" }
    limits { max_header_bytes: 10 }
    timeouts { idle_ms: 1 }
  )"));
  ASSERT_FALSE(rc.ok());
  const std::string m(rc.status().message());
  for (const char* want : {
           "listeners[0].port: 0 is not a port",
           "listeners[0].address: \"nope\"",
           "listeners[0].default_pool: no pool named \"missing\"",
           "listeners[0].routes[1].pool: no pool named \"ghost\"",
           "listeners[0].routes[1].methods[0]",
           "pools[0].backends[0].port: 70000 is not a port",
           "pools[0].backends[0].weight: 5000 out of range",
           "pools[0].backends[1].address",
           "pools[1].name: duplicate pool \"web\"",
           "pools[1].backends: at least one backend",
           "limits.max_header_bytes: 10 out of range",
           "timeouts.idle_ms: 1 out of range",
           "listeners[0].routes[2].headers[0].name: \"X Bad\" is not a field name",
           "listeners[0].routes[2].headers[1]: set exact or present: true",
           "listeners[0].routes[2].request_headers_to_add[0].name: \"Content-Length\" is written "
           "by lb-l7",
           "listeners[0].routes[2].response_headers_to_add[0].value: control characters",
           "listeners[0].routes[2].request_headers_to_remove[0]: \"x-forwarded-for\" is written",
       }) {
    EXPECT_NE(m.find(want), std::string::npos) << "missing \"" << want << "\" in: " << m;
  }
}

TEST(L7Config, RegexErrorNamesListenerAndRoute) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "l" port: 80 routes { name: "r" path { regex: "(" } pool: "p" } }
    pools { name: "p" backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_FALSE(rc.ok());
  EXPECT_NE(rc.status().message().find("listeners[0]: routes[0].path.regex"), std::string::npos)
      << rc.status();
}

TEST(L7Config, TlsBlockCarriedAndCheckedWithoutFiles) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "plain" port: 8080 default_pool: "web" }
    listeners { name: "tls" port: 8443 default_pool: "web"
      tls { min_version: "TLSv1.0" default_certificate: 3 session_timeout_s: 90000
            certificates { cert_file: "/nonexistent/a.crt" key_file: "" } } }
    pools { name: "web" backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_FALSE(rc->listeners[0].tls);
  ASSERT_TRUE(rc->listeners[1].tls);
  EXPECT_EQ(rc->listeners[1].tls_config.min_version(), "TLSv1.0");
  auto tls = BuildTlsContexts(*rc);
  ASSERT_FALSE(tls.ok());
  const std::string m(tls.status().message());
  for (const char* want : {
           "listeners[1].tls.min_version: \"TLSv1.0\" is not TLSv1.2 or TLSv1.3",
           "listeners[1].tls.default_certificate: 3 is not an index of certificates (0..0)",
           "listeners[1].tls.session_timeout_s: at most 86400",
           "listeners[1].tls.certificates[0].key_file: required",
       }) {
    EXPECT_NE(m.find(want), std::string::npos) << want << "\n in: " << m;
  }
  EXPECT_EQ(m.find("listeners[0]"), std::string::npos) << m;

  rc->listeners[1].tls_config.clear_certificates();
  rc->listeners[1].tls_config.clear_min_version();
  rc->listeners[1].tls_config.clear_default_certificate();
  rc->listeners[1].tls_config.clear_session_timeout_s();
  tls = BuildTlsContexts(*rc);
  ASSERT_FALSE(tls.ok());
  EXPECT_EQ(tls.status().message(), "listeners[1].tls.certificates: at least one is required");
}

TEST(L7Config, NoTlsListenerNoContext) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "plain" port: 8080 default_pool: "web" }
    pools { name: "web" backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  auto tls = BuildTlsContexts(*rc);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_EQ(tls->size(), 1u);
  EXPECT_EQ((*tls)[0], nullptr);
}

}  // namespace
}  // namespace lb::l7
