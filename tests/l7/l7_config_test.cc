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

TEST(L7Config, PassthroughListener) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "pt" port: 8443
      passthrough { routes { name: "a" server_names: "A.example.test" pool: "a" }
                    routes { name: "w" server_names: "*.w.test" pool: "b" }
                    default_pool: "b" on_no_sni: DEFAULT_POOL max_client_hello_bytes: 4096 } }
    pools { name: "a" backends { address: "10.0.0.1" port: 443 } }
    pools { name: "b" algorithm: ALGORITHM_IP_HASH backends { address: "10.0.0.2" port: 443 } }
  )"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  const ListenerConfig& l = rc->listeners[0];
  EXPECT_TRUE(l.passthrough);
  EXPECT_FALSE(l.tls);
  EXPECT_EQ(l.route_names, (std::vector<std::string>{"a", "w", "default"}));
  EXPECT_EQ(l.pt.default_pool, 1);
  EXPECT_TRUE(l.pt.no_sni_to_default);
  EXPECT_FALSE(l.pt.invalid_to_default);
  EXPECT_EQ(l.pt.max_client_hello_bytes, 4096u);
  EXPECT_EQ(l.pt.client_hello_ns, 5'000'000'000);
  EXPECT_EQ(l.router.PoolOf(l.router.Match("a.example.test", "/", "")), 0);
  EXPECT_EQ(l.router.PoolOf(l.router.Match("x.y.w.test", "/", "")), 1);
  EXPECT_EQ(l.router.PoolOf(l.router.Match("other.test", "/", "")), 1);  // default
}

TEST(L7Config, PassthroughErrorsNameTheField) {
  auto rc = ValidateL7Config(Text(R"(
    listeners { name: "pt" port: 8443 default_pool: "a"
      routes { name: "h" pool: "a" }
      tls { certificates { cert_file: "/c" key_file: "/k" } }
      passthrough { routes { name: "a" server_names: "bad name" server_names: "*" pool: "nope" }
                    routes { name: "a" pool: "t" }
                    routes { name: "c" server_names: "c.test" pool: "s" }
                    on_invalid: DEFAULT_POOL max_client_hello_bytes: 100
                    client_hello_timeout_ms: 70000 } }
    pools { name: "a" backends { address: "10.0.0.1" port: 443 } }
    pools { name: "t" upstream_tls { verify: false } backends { address: "10.0.0.1" port: 443 } }
    pools { name: "s" sticky_sessions: true backends { address: "10.0.0.1" port: 443 } }
  )"));
  ASSERT_FALSE(rc.ok());
  const std::string m(rc.status().message());
  for (const char* want : {
           "listeners[0].tls: a passthrough listener does not terminate TLS",
           "listeners[0].routes: use passthrough.routes",
           "listeners[0].default_pool: use passthrough.default_pool",
           "listeners[0].passthrough.routes[0].server_names[0]: \"bad name\" is neither",
           "listeners[0].passthrough.routes[0].server_names[1]: \"*\" is neither",
           "listeners[0].passthrough.routes[0].pool: no pool named \"nope\"",
           "listeners[0].passthrough.routes[1].name: duplicate",
           "listeners[0].passthrough.routes[1].server_names: at least one",
           "listeners[0].passthrough.routes[1].pool: pool \"t\" has upstream_tls",
           "listeners[0].passthrough.routes[2].pool: pool \"s\" has cookie stickiness",
           "listeners[0].passthrough.on_invalid: DEFAULT_POOL needs passthrough.default_pool",
           "listeners[0].passthrough.max_client_hello_bytes: 100 out of range",
           "listeners[0].passthrough.client_hello_timeout_ms: 70000 out of range",
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

namespace lb::l7 {
namespace {

TEST(L7Config, StickyStoreLimitsQueueAndBudget) {
  auto rc = ValidateL7Config(Text(R"(
    sticky_store { redis_address: "127.0.0.1:6379" }
    listeners { name: "l" port: 8080 default_pool: "s" }
    pools { name: "s" sticky_sessions: true sticky_source_ip: true
      backends { address: "10.0.0.1" port: 80 drain: true }
      backends { address: "10.0.0.2" port: 80 max_connections: 7 }
      max_connections_per_backend: 3 max_queue: 5 queue_timeout_ms: 200
      retry_budget { budget_percent: 10 min_retries: 4 } }
    pools { name: "own" sticky_sessions: true sticky_source_ip: true
      sticky_store { redis_address: "[::1]:7000" timeout_ms: 20 key_prefix: "x:" }
      backends { address: "10.0.0.1" port: 80 } }
    pools { name: "same" sticky_sessions: true sticky_source_ip: true
      backends { address: "10.0.0.1" port: 80 } }
    pools { name: "cookie" sticky_sessions: true backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  ASSERT_EQ(rc->stores.size(), 2u);  // the global one (shared by two pools) and "own"
  EXPECT_EQ(rc->stores[0].host, "127.0.0.1");
  EXPECT_EQ(rc->stores[0].port, 6379);
  EXPECT_EQ(rc->stores[0].timeout_ns, 50'000'000);
  EXPECT_EQ(rc->stores[0].key_prefix, "lb:sticky:");
  EXPECT_EQ(rc->stores[1].host, "::1");
  EXPECT_EQ(rc->stores[1].port, 7000);
  EXPECT_EQ(rc->stores[1].timeout_ns, 20'000'000);
  EXPECT_EQ(rc->pools[0].store, 0);
  EXPECT_EQ(rc->pools[1].store, 1);
  EXPECT_EQ(rc->pools[2].store, 0);
  EXPECT_EQ(rc->pools[3].store, -1);  // cookies carry their pin
  EXPECT_TRUE(rc->pools[0].backends[0].drain);
  EXPECT_EQ(rc->pools[0].backends[0].max_connections, 3);  // the pool's default
  EXPECT_EQ(rc->pools[0].backends[1].max_connections, 7);
  EXPECT_EQ(rc->pools[0].max_queue, 5);
  EXPECT_EQ(rc->pools[0].queue_timeout_ns, 200'000'000);
  EXPECT_EQ(rc->pools[0].retry_budget_percent, 10u);
  EXPECT_EQ(rc->pools[0].retry_budget_min, 4u);
  EXPECT_EQ(rc->pools[1].backends[0].max_connections, 0);  // unlimited
  EXPECT_EQ(rc->pools[1].retry_budget_percent, 20u);       // default budget
  EXPECT_EQ(rc->pools[1].retry_budget_min, 10u);
}

TEST(L7Config, StoreLimitAndBudgetErrorsNameTheField) {
  auto rc = ValidateL7Config(Text(R"(
    sticky_store { redis_address: "localhost:6379" }
    listeners { name: "l" port: 8080 default_pool: "a" }
    pools { name: "a" sticky_sessions: true sticky_source_ip: true
      backends { address: "10.0.0.1" port: 80 max_connections: 2000000 }
      max_queue: 0 queue_timeout_ms: 0 retry_budget { budget_percent: 101 } }
    pools { name: "b" sticky_sessions: true
      sticky_store { redis_address: "10.0.0.1:0" timeout_ms: 9000 key_prefix: "a b" }
      backends { address: "10.0.0.1" port: 80 } }
    pools { name: "c" max_queue: 3 backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_FALSE(rc.ok());
  const std::string m(rc.status().message());
  for (const char* want : {
           "sticky_store.redis_address: \"localhost:6379\" is not IPv4:port or [IPv6]:port",
           "pools[0].backends[0].max_connections: 2000000 out of range",
           "pools[0].retry_budget.budget_percent: 101 out of range",
           "pools[1].sticky_store: only for pools with sticky_sessions and sticky_source_ip",
           "pools[1].sticky_store.redis_address: \"10.0.0.1:0\" is not",
           "pools[1].sticky_store.timeout_ms: 9000 out of range",
           "pools[1].sticky_store.key_prefix: visible ASCII",
           "pools[2].max_queue: max_queue/queue_timeout_ms set but no backend has a "
           "max_connections",
       }) {
    EXPECT_NE(m.find(want), std::string::npos) << want << "\nin: " << m;
  }
  auto unused = ValidateL7Config(Text(R"(
    sticky_store { redis_address: "127.0.0.1:6379" }
    listeners { name: "l" port: 8080 default_pool: "a" }
    pools { name: "a" backends { address: "10.0.0.1" port: 80 } }
  )"));
  ASSERT_FALSE(unused.ok());
  EXPECT_NE(unused.status().message().find("sticky_store: no pool with sticky_source_ip uses it"),
            std::string::npos)
      << unused.status();
}

}  // namespace
}  // namespace lb::l7
