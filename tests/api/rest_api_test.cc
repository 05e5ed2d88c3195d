// The REST layer in one process: RestApi::Handle over a real ControlPlane
// (file store and table region in a temp directory under /dev/shm, no
// dataplane). Complements tests/api/rest_test.py (the real binary over HTTP)
// with what is cheaper to drive directly: the strict JSON check in front of
// protobuf's lenient parser, field naming in errors, routing (404/405/Allow,
// percent-encoding), the status mapping, and fuzzed bodies that must never
// produce a 5xx or change the state.
#include "controlplane/rest_api.h"

#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/control_plane.h"
#include "controlplane/rest_guard.h"
#include "controlplane/store.h"
#include "gtest/gtest.h"

namespace lb {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/dev/shm/lb-rest-api-test-XXXXXX";
    const char* p = mkdtemp(tmpl);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class RestApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    v1::Config boot;
    boot.mutable_node()->set_tunnel_source_ipv4("192.0.2.1");
    boot.mutable_node()->set_tunnel_source_ipv6("2001:db8::1");
    boot.mutable_tables()->set_ring_size(251);
    boot.add_pools()->set_name("default");
    ControlPlaneOptions o;
    o.publisher.table_path = dir_.path() + "/tables";
    o.publisher.stats_path = dir_.path() + "/stats";
    o.publisher.caps.max_vips = 8;
    o.publisher.caps.max_backends = 64;
    o.publisher.caps.max_members = 256;
    o.publisher.caps.max_ring_size = 251;
    o.bootstrap = boot;
    auto store = NewFileStore(dir_.path() + "/state");
    ASSERT_TRUE(store.ok()) << store.status();
    auto cp = ControlPlane::Create(o, *std::move(store));
    ASSERT_TRUE(cp.ok()) << cp.status();
    cp_ = *std::move(cp);
    RestApiOptions ro;
    ro.guard.loopback_listener = true;
    ro.render_metrics = [] { return std::string("lb_test 1\n"); };
    api_ = std::make_unique<RestApi>(cp_.get(), ro);
  }

  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    HttpRequest r;
    r.method = method;
    r.target = target;
    r.path = target.substr(0, target.find('?'));
    r.body = body;
    // As curl sends it to a listener on 127.0.0.1:8080 (rest_guard.h).
    r.local = "127.0.0.1:8080";
    r.headers = {{"host", "127.0.0.1:8080"}, {"content-type", "application/json"}};
    return api_->Handle(r);
  }

  // Status and the RestError field of a refused request; the config and
  // the generation must be unchanged by it.
  void ExpectRefused(const std::string& method, const std::string& target, const std::string& body,
                     int status, const std::string& field) {
    const std::string before = cp_->config().SerializeAsString();
    const uint64_t generation = cp_->generation();
    HttpResponse r = Call(method, target, body);
    EXPECT_EQ(r.status, status) << method << " " << target << " " << body << " -> " << r.body;
    EXPECT_NE(r.body.find(absl::StrCat("\"field\":\"", field, "\"")), std::string::npos)
        << body << " -> " << r.body << " (want field " << field << ")";
    EXPECT_EQ(cp_->config().SerializeAsString(), before) << body;
    EXPECT_EQ(cp_->generation(), generation) << body;
  }

  TempDir dir_;
  std::unique_ptr<ControlPlane> cp_;
  std::unique_ptr<RestApi> api_;
};

TEST_F(RestApiTest, AddBackendGolden) {
  HttpResponse r = Call("POST", "/backends", R"({"address": "10.0.0.1", "port": 80})");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(
      r.body,
      "{\"id\":1,\"address\":\"10.0.0.1\",\"port\":80,\"weight\":1,\"status\":\"unknown\"}\n");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], std::make_pair(std::string("Location"), std::string("/backends/1")));
  EXPECT_EQ(r.content_type, "application/json");
  HttpResponse d = Call("DELETE", "/backends/1");
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.body, "{\"id\":1,\"drained_connections\":0}\n");
}

TEST_F(RestApiTest, NotJsonIsRefusedEvenWhereProtobufWouldTakeIt) {
  // Each of these is accepted by protobuf 3.21's JSON parser on its own.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({'address': '10.0.0.1', 'port': 80})", "body"},
      {R"({address: "10.0.0.1", port: 80})", "body"},
      {R"({"address": "10.0.0.1", "port": 80,})", "body"},
      {R"({"address": "10.0.0.1", "port": 80} {})", "body"},
      {"{\"address\": \"10.0.0.1\t\", \"port\": 80}", "body"},    // raw control char
      {"{\"address\": \"10.0.0.1\xff\", \"port\": 80}", "body"},  // invalid UTF-8
      {R"({"address": "10.0.0.1", "port": 080})", "body"},        // leading zero
      {R"({"address": "10.0.0.1", "port": +80})", "body"},
      {R"({"address": "10.0.0.1", "port": .5})", "body"},
      {R"({"address": "10.0.0.1", "port": 80, "port": 81})", "port"},  // duplicate
      {R"({"address": "\x", "port": 80})", "body"},                    // bad escape
      {R"({"address": "\u12", "port": 80})", "body"},
      {R"({"address": "10.0.0.1", "port": NaN})", "body"},
      {R"({"address": "10.0.0.1", "port": 80 // comment
})",
       "body"},
  };
  for (const auto& [body, field] : cases) ExpectRefused("POST", "/backends", body, 400, field);
  // And a bool given as a string, which protobuf reads as true.
  ExpectRefused("PUT", "/config/algorithm", R"({"algorithm": "random", "sticky_sessions": "no"})",
                400, "sticky_sessions");
}

TEST_F(RestApiTest, ValidJsonEdgeCasesAreAccepted) {
  HttpResponse r = Call("POST", "/backends",
                        " \r\n\t{ \"address\" : \"10.0.0.\\u0031\" , \"port\" : 8.0e1 ,"
                        " \"weight\": null, \"health_check_path\": \"/\\u0068\\/x\" } \n");
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_NE(r.body.find("\"weight\":1"), std::string::npos) << r.body;  // null = unset = 1
  EXPECT_EQ(Call("POST", "/backends", R"({"address": "10.0.0.2", "port": "81"})").status, 201);
  // Unicode in a string field, unknown-field check through nested messages.
  HttpResponse p = Call("POST", "/pools",
                        R"({"name": "web", "health_check": {"kind": "HEALTH_CHECK_KIND_TCP",
                            "interval_ms": 1000}, "backends": [{"address": "10.9.0.1",
                            "port": 80}]})");
  EXPECT_EQ(p.status, 201) << p.body;
}

TEST_F(RestApiTest, NestedErrorsNameTheFieldPath) {
  ExpectRefused("POST", "/pools", R"({"name": "web", "backends": [{"port": 1, "bogus": 2}]})", 400,
                "backends[0].bogus");
  ExpectRefused("POST", "/pools", R"({"name": "web", "backends": {"port": 1}})", 400, "backends");
  ExpectRefused("POST", "/pools", R"({"name": "web", "health_check": [1]})", 400, "health_check");
  ExpectRefused("POST", "/pools", R"({"name": "web", "health_check": {"script": "x"}})", 400,
                "health_check.script");
  ExpectRefused("POST", "/pools", R"({"name": "web", "sticky_sessions": 1})", 400,
                "sticky_sessions");
  ExpectRefused("POST", "/vips", R"({"address": "198.51.100.1", "protocol": "PROTOCOL_SCTP"})", 400,
                "protocol");
}

TEST_F(RestApiTest, DeepNestingIsRefusedNotRecursedInto) {
  std::string deep = R"({"address": "10.0.0.1", "port": 80, "x": )";
  deep += std::string(100000, '[') + std::string(100000, ']') + "}";
  ExpectRefused("POST", "/backends", deep, 400, "x");  // unknown field, found first
  std::string deep2 = R"({"health_check_path": )" + std::string(100000, '[');
  ExpectRefused("POST", "/backends", deep2, 400, "body");
}

TEST_F(RestApiTest, RoutingAndMethods) {
  HttpResponse r = Call("PUT", "/backends");
  EXPECT_EQ(r.status, 405);
  ASSERT_FALSE(r.headers.empty());
  EXPECT_EQ(r.headers.back().first, "Allow");
  EXPECT_EQ(r.headers.back().second, "GET, POST, HEAD");
  EXPECT_EQ(Call("GET", "/backends/").status, 200);            // one trailing slash is tolerated
  ExpectRefused("GET", "/backends//", "", 404, "backend_id");  // an empty id segment
  EXPECT_EQ(Call("GET", "/BACKENDS").status, 404);
  EXPECT_EQ(Call("GET", "/backends?pool=x").status, 200);
  ExpectRefused("GET", "/backends/%zz/health", "", 400, "path");
  ExpectRefused("GET", "/backends/%31%32abc", "", 404, "backend_id");  // names no backend
  EXPECT_EQ(Call("GET", "/backends/%31%32").status, 404);              // "12": a valid id, unknown
  ExpectRefused("GET", "/pools/..%2F..%2Fetc/backends", "", 404, "pool");  // names no pool
  HttpResponse m = Call("GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.body, "lb_test 1\n");
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
}

TEST_F(RestApiTest, StatusMapping) {
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kOutOfRange), 400);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kFailedPrecondition), 412);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kResourceExhausted), 413);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kUnavailable), 503);  // store unreachable
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kAborted), 409);      // lost a store race
  HttpResponse e = ErrorResponse(absl::NotFoundError("pools[2].name: gone"));
  EXPECT_EQ(e.status, 404);
  EXPECT_EQ(e.body, "{\"error\":\"pools[2].name: gone\",\"field\":\"pools[2].name\"}\n");
  HttpResponse u = ErrorResponse(absl::UnauthenticatedError("no"));
  EXPECT_EQ(u.status, 401);
  ASSERT_FALSE(u.headers.empty());
  EXPECT_EQ(u.headers[0].first, "WWW-Authenticate");
}

// Random bodies and random mutations of valid ones: never a 5xx, and a
// refused body never changes anything.
TEST_F(RestApiTest, FuzzedBodiesNever500) {
  std::mt19937 rng(12345);
  const std::vector<std::string> seeds = {
      R"({"address": "10.0.0.1", "port": 80, "weight": 2, "health_check_path": "/h"})",
      R"({"algorithm": "ip_hash", "sticky_sessions": true, "sticky_ttl_seconds": 60})",
      R"({"name": "p", "backends": [{"address": "10.1.0.1", "port": 1}], "health_check": {}})",
      R"({"address": "198.51.100.1", "protocol": "PROTOCOL_TCP", "port": 80, "pool": "default"})",
  };
  const std::vector<std::pair<std::string, std::string>> targets = {
      {"POST", "/backends"}, {"PUT", "/config/algorithm"}, {"POST", "/pools"}, {"POST", "/vips"}};
  const std::string alphabet = "{}[]:,\"\\ 0123456789.-+eEtruefalsn\x01\xff\xc3";
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    const size_t k = i % seeds.size();
    std::string body = seeds[k];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t pos = rng() % body.size();
      switch (rng() % 3) {
        case 0:
          body[pos] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          body.erase(pos, 1 + rng() % 3);
          break;
        default:
          body.insert(pos, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    const std::string before = cp_->config().SerializeAsString();
    HttpResponse r = Call(targets[k].first, targets[k].second, body);
    ASSERT_LT(r.status, 500) << body << " -> " << r.body;
    if (r.status >= 400) {
      ASSERT_EQ(cp_->config().SerializeAsString(), before) << body;
      ASSERT_NE(r.body.find("\"error\":"), std::string::npos) << r.body;
    } else {
      ++accepted;
    }
  }
  // The mutations are small enough that some bodies stay valid.
  EXPECT_GT(accepted, 0);
}

// --- Admission (rest_guard.h): browsers, DNS rebinding, bearer tokens ---

// A request as it reaches RestApi::Handle from a socket on `local`.
HttpRequest GuardRequest(const std::string& method, const std::string& path,
                         std::vector<std::pair<std::string, std::string>> headers,
                         const std::string& body = "", const std::string& local = "127.0.0.1:8080",
                         int version_minor = 1) {
  HttpRequest r;
  r.method = method;
  r.target = path;
  r.path = path;
  r.body = body;
  r.local = local;
  r.version_minor = version_minor;
  r.headers = std::move(headers);
  return r;
}

RestGuardOptions LoopbackGuard(const std::string& token = "",
                               const std::string& allowed_hosts = "") {
  RestGuardOptions o;
  o.loopback_listener = true;
  o.bearer_token = token;
  o.allowed_hosts = *ParseAllowedHosts(allowed_hosts);
  return o;
}

RestGuardOptions OffLoopbackGuard(const std::string& token) {
  RestGuardOptions o = LoopbackGuard(token);
  o.loopback_listener = false;
  return o;
}

// Listening on 0.0.0.0: off loopback, whichever address a client reaches.
RestGuardOptions WildcardGuard(const std::string& token) {
  RestGuardOptions o = OffLoopbackGuard(token);
  o.listen_host = "0.0.0.0";
  return o;
}

struct GuardCase {
  const char* what;
  HttpRequest request;
  RestGuardOptions options;
  int status;         // 0: admitted
  const char* field;  // the RestError field when refused
};

TEST(RestGuard, GoldenAdmissionTable) {
  const std::string kJson = R"({"address": "10.0.0.1", "port": 80})";
  using H = std::vector<std::pair<std::string, std::string>>;
  const H host = {{"host", "127.0.0.1:8080"}};
  const H json = {{"host", "127.0.0.1:8080"}, {"content-type", "application/json"}};
  auto with = [](H h, const std::string& name, const std::string& value) {
    h.emplace_back(name, value);
    return h;
  };
  const std::vector<GuardCase> cases = {
      // Host: the address the client reached, localhost on loopback, configured names.
      {"Host is the listen address", GuardRequest("GET", "/backends", host), LoopbackGuard(), 0,
       ""},
      {"localhost on a loopback listener",
       GuardRequest("GET", "/backends", {{"host", "localhost:8080"}}), LoopbackGuard(), 0, ""},
      {"host names are case-insensitive",
       GuardRequest("GET", "/backends", {{"host", "LocalHost:8080"}}), LoopbackGuard(), 0, ""},
      {"IPv6 listen address, spelled differently",
       GuardRequest("GET", "/backends", {{"host", "[0:0::1]:8080"}}, "", "[::1]:8080"),
       LoopbackGuard(), 0, ""},
      {"DNS rebinding: a foreign name",
       GuardRequest("GET", "/backends", {{"host", "evil.example:8080"}}), LoopbackGuard(), 421,
       "host"},
      {"a foreign name without a port",
       GuardRequest("GET", "/backends", {{"host", "evil.example"}}), LoopbackGuard(), 421, "host"},
      {"no port means 80", GuardRequest("GET", "/backends", {{"host", "127.0.0.1"}}),
       LoopbackGuard(), 421, "host"},
      {"another port", GuardRequest("GET", "/backends", {{"host", "localhost:8081"}}),
       LoopbackGuard(), 421, "host"},
      {"another loopback address than the one reached",
       GuardRequest("GET", "/backends", {{"host", "127.0.0.2:8080"}}), LoopbackGuard(), 421,
       "host"},
      {"localhost when the address reached is not loopback",
       GuardRequest("GET", "/backends", {{"host", "localhost:8080"}, {"authorization", "Bearer t"}},
                    "", "10.0.0.5:8080"),
       OffLoopbackGuard("t"), 421, "host"},
      {"the address reached off loopback",
       GuardRequest("GET", "/backends", {{"host", "10.0.0.5:8080"}, {"authorization", "Bearer t"}},
                    "", "10.0.0.5:8080"),
       OffLoopbackGuard("t"), 0, ""},
      {"the wildcard listen address as configured",
       GuardRequest("GET", "/backends", {{"host", "0.0.0.0:8080"}, {"authorization", "Bearer t"}},
                    "", "127.0.0.1:8080"),
       WildcardGuard("t"), 0, ""},
      {"the wildcard listen address on another port",
       GuardRequest("GET", "/backends", {{"host", "0.0.0.0:9090"}, {"authorization", "Bearer t"}},
                    "", "127.0.0.1:8080"),
       WildcardGuard("t"), 421, "host"},
      {"a configured name, any port",
       GuardRequest("GET", "/backends", {{"host", "LB.example.:9000"}}),
       LoopbackGuard("", "lb.example, lb2.example:8443"), 0, ""},
      {"a configured name:port", GuardRequest("GET", "/backends", {{"host", "lb2.example:8443"}}),
       LoopbackGuard("", "lb.example,lb2.example:8443"), 0, ""},
      {"a configured name on another port",
       GuardRequest("GET", "/backends", {{"host", "lb2.example:8080"}}),
       LoopbackGuard("", "lb.example,lb2.example:8443"), 421, "host"},
      {"HTTP/1.1 without Host", GuardRequest("GET", "/backends", {}), LoopbackGuard(), 400, "host"},
      {"HTTP/1.0 without Host on loopback",
       GuardRequest("GET", "/backends", {}, "", "127.0.0.1:8080", 0), LoopbackGuard(), 0, ""},
      {"HTTP/1.0 without Host off loopback",
       GuardRequest("GET", "/backends", {{"authorization", "Bearer t"}}, "", "10.0.0.5:8080", 0),
       OffLoopbackGuard("t"), 400, "host"},
      {"bare IPv6 in Host",
       GuardRequest("GET", "/backends", {{"host", "::1:8080"}}, "", "[::1]:8080"), LoopbackGuard(),
       400, "host"},
      {"garbage in Host", GuardRequest("GET", "/backends", {{"host", "a b/c"}}), LoopbackGuard(),
       400, "host"},
      {"two Host headers",
       GuardRequest("GET", "/backends", {{"host", "127.0.0.1:8080"}, {"host", "evil.example"}}),
       LoopbackGuard(), 400, "host"},

      // Browsers: Origin and Sec-Fetch-Site.
      {"cross-origin page",
       GuardRequest("POST", "/backends", with(json, "origin", "http://evil.example"), kJson),
       LoopbackGuard(), 403, "origin"},
      {"Origin: null (sandboxed iframe, file://)",
       GuardRequest("POST", "/backends", with(json, "origin", "null"), kJson), LoopbackGuard(), 403,
       "origin"},
      {"a page on another local port",
       GuardRequest("GET", "/backends", with(host, "origin", "http://localhost:3000")),
       LoopbackGuard(), 403, "origin"},
      {"a page of another scheme",
       GuardRequest("GET", "/backends", with(host, "origin", "file://")), LoopbackGuard(), 403,
       "origin"},
      {"same origin",
       GuardRequest("POST", "/backends", with(json, "origin", "http://127.0.0.1:8080"), kJson),
       LoopbackGuard(), 0, ""},
      {"same origin by name",
       GuardRequest("GET", "/backends", with(host, "origin", "http://localhost:8080")),
       LoopbackGuard(), 0, ""},
      {"https origin of a configured name",
       GuardRequest("GET", "/backends", with(host, "origin", "https://lb.example")),
       LoopbackGuard("", "lb.example"), 0, ""},
      {"Sec-Fetch-Site: cross-site",
       GuardRequest("GET", "/backends", with(host, "sec-fetch-site", "cross-site")),
       LoopbackGuard(), 403, "sec-fetch-site"},
      {"Sec-Fetch-Site: same-site",
       GuardRequest("GET", "/backends", with(host, "sec-fetch-site", "same-site")), LoopbackGuard(),
       403, "sec-fetch-site"},
      {"Sec-Fetch-Site: none (typed in the address bar)",
       GuardRequest("GET", "/metrics", with(host, "sec-fetch-site", "none")), LoopbackGuard(), 0,
       ""},

      // Bodies are JSON.
      {"simple request: text/plain",
       GuardRequest("POST", "/backends", with(host, "content-type", "text/plain"), kJson),
       LoopbackGuard(), 415, "content-type"},
      {"simple request: form",
       GuardRequest("POST", "/backends",
                    with(host, "content-type", "application/x-www-form-urlencoded"), kJson),
       LoopbackGuard(), 415, "content-type"},
      {"simple request: multipart",
       GuardRequest("POST", "/backends",
                    with(host, "content-type", "multipart/form-data; boundary=x"), kJson),
       LoopbackGuard(), 415, "content-type"},
      {"no Content-Type", GuardRequest("POST", "/backends", host, kJson), LoopbackGuard(), 415,
       "content-type"},
      {"no Content-Type, empty POST", GuardRequest("POST", "/backends", host), LoopbackGuard(), 415,
       "content-type"},
      {"a look-alike type",
       GuardRequest("PUT", "/config/algorithm", with(host, "content-type", "application/jsonp"),
                    kJson),
       LoopbackGuard(), 415, "content-type"},
      {"a body on a GET",
       GuardRequest("GET", "/backends", with(host, "content-type", "text/plain"), "x"),
       LoopbackGuard(), 415, "content-type"},
      {"two Content-Types",
       GuardRequest(
           "POST", "/backends",
           with(with(host, "content-type", "application/json"), "content-type", "text/plain"),
           kJson),
       LoopbackGuard(), 415, "content-type"},
      {"JSON with parameters, any case",
       GuardRequest("POST", "/backends",
                    with(host, "content-type", "Application/JSON ; charset=UTF-8"), kJson),
       LoopbackGuard(), 0, ""},
      {"DELETE without a body needs no type", GuardRequest("DELETE", "/backends/1", host),
       LoopbackGuard(), 0, ""},

      // Tokens: changes on loopback, everything but GET /healthz off loopback.
      {"loopback, token set: a read", GuardRequest("GET", "/backends", host), LoopbackGuard("t0k"),
       0, ""},
      {"loopback, token set: a change without it", GuardRequest("POST", "/backends", json, kJson),
       LoopbackGuard("t0k"), 401, "authorization"},
      {"loopback, token set: a change with it",
       GuardRequest("POST", "/backends", with(json, "authorization", "bearer t0k"), kJson),
       LoopbackGuard("t0k"), 0, ""},
      {"a token that only starts right",
       GuardRequest("DELETE", "/backends/1", with(host, "authorization", "Bearer t0k2")),
       LoopbackGuard("t0k"), 401, "authorization"},
      {"off loopback: a read without the token",
       GuardRequest("GET", "/backends", {{"host", "10.0.0.5:8080"}}, "", "10.0.0.5:8080"),
       OffLoopbackGuard("t0k"), 401, "authorization"},
      {"off loopback: /metrics without the token",
       GuardRequest("GET", "/metrics", {{"host", "10.0.0.5:8080"}}, "", "10.0.0.5:8080"),
       OffLoopbackGuard("t0k"), 401, "authorization"},
      {"off loopback: /metrics with the token",
       GuardRequest("GET", "/metrics", {{"host", "10.0.0.5:8080"}, {"authorization", "Bearer t0k"}},
                    "", "10.0.0.5:8080"),
       OffLoopbackGuard("t0k"), 0, ""},
      {"off loopback: /healthz needs no token",
       GuardRequest("GET", "/healthz", {{"host", "10.0.0.5:8080"}}, "", "10.0.0.5:8080"),
       OffLoopbackGuard("t0k"), 0, ""},
      {"off loopback without a configured token: closed",
       GuardRequest("GET", "/backends", {{"host", "10.0.0.5:8080"}, {"authorization", "Bearer "}},
                    "", "10.0.0.5:8080"),
       OffLoopbackGuard(""), 401, "authorization"},
      {"the default options fail closed", GuardRequest("GET", "/backends", host),
       RestGuardOptions(), 401, "authorization"},

      // Order: a rebinding page learns nothing from the other checks.
      {"rebinding with a text/plain body",
       GuardRequest("POST", "/backends",
                    {{"host", "evil.example:8080"},
                     {"origin", "http://evil.example:8080"},
                     {"content-type", "text/plain"}},
                    kJson),
       LoopbackGuard("t0k"), 421, "host"},
  };
  for (const GuardCase& c : cases) {
    std::optional<AdminRefusal> r = CheckAdminRequest(c.request, c.options);
    if (c.status == 0) {
      EXPECT_FALSE(r.has_value()) << c.what << ": refused " << r->http_status << " " << r->status;
      continue;
    }
    ASSERT_TRUE(r.has_value()) << c.what << ": admitted, want " << c.status;
    EXPECT_EQ(r->http_status, c.status) << c.what << ": " << r->status;
    EXPECT_EQ(r->field, c.field) << c.what;
    EXPECT_TRUE(absl::StartsWith(r->status.message(), absl::StrCat(c.field, ": ")))
        << c.what << ": " << r->status;
    EXPECT_EQ(r->status.code() == absl::StatusCode::kUnauthenticated, c.status == 401) << c.what;
  }
}

TEST(RestGuard, ParseAllowedHosts) {
  auto ok = ParseAllowedHosts(" lb.example , LB2.Example.:8443,,10.0.0.7,[2001:DB8::1]:80 ");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 4u);
  EXPECT_EQ((*ok)[0].host, "lb.example");
  EXPECT_EQ((*ok)[0].port, -1);
  EXPECT_EQ((*ok)[1].host, "lb2.example");
  EXPECT_EQ((*ok)[1].port, 8443);
  EXPECT_EQ((*ok)[2].host, "10.0.0.7");
  EXPECT_EQ((*ok)[3].host, "2001:db8::1");
  EXPECT_EQ((*ok)[3].port, 80);
  EXPECT_TRUE(ParseAllowedHosts("")->empty());
  for (const char* bad : {"a b", "lb.example:0", "lb.example:65536", "lb.example:", "::1", "[::1",
                          "http://lb.example", "lb.example/x", "*.example", "."}) {
    auto r = ParseAllowedHosts(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
  }
}

// The attacks of DESIGN.md "Trust boundaries" through RestApi::Handle over
// the real ControlPlane: each refused with its status and field, the
// config and the generation untouched, the listing identical.
TEST_F(RestApiTest, BrowserAndRebindingAttacksChangeNothing) {
  ASSERT_EQ(Call("POST", "/backends", R"({"address": "10.0.0.1", "port": 80})").status, 201);
  const std::string kJson = R"({"address": "10.6.6.6", "port": 80})";
  struct Attack {
    const char* what;
    HttpRequest request;
    int status;
    const char* field;
  };
  const std::vector<Attack> attacks = {
      {"a web page's simple POST",
       GuardRequest("POST", "/backends",
                    {{"host", "127.0.0.1:8080"},
                     {"origin", "http://evil.example"},
                     {"content-type", "text/plain"}},
                    kJson),
       403, "origin"},
      {"a simple POST without Origin (old browser, or redirect)",
       GuardRequest("POST", "/backends",
                    {{"host", "127.0.0.1:8080"}, {"content-type", "text/plain;charset=UTF-8"}},
                    kJson),
       415, "content-type"},
      {"DNS rebinding",
       GuardRequest("POST", "/backends",
                    {{"host", "evil.example:8080"}, {"content-type", "application/json"}}, kJson),
       421, "host"},
      {"DNS rebinding, a read", GuardRequest("GET", "/backends", {{"host", "evil.example:8080"}}),
       421, "host"},
      {"Origin: null",
       GuardRequest(
           "PUT", "/config/algorithm",
           {{"host", "127.0.0.1:8080"}, {"origin", "null"}, {"content-type", "application/json"}},
           R"({"algorithm": "random"})"),
       403, "origin"},
      {"cross-site DELETE",
       GuardRequest("DELETE", "/backends/1",
                    {{"host", "127.0.0.1:8080"}, {"sec-fetch-site", "cross-site"}}),
       403, "sec-fetch-site"},
  };
  const std::string listing = Call("GET", "/backends").body;
  for (const Attack& a : attacks) {
    const std::string before = cp_->config().SerializeAsString();
    const uint64_t generation = cp_->generation();
    HttpResponse r = api_->Handle(a.request);
    EXPECT_EQ(r.status, a.status) << a.what << " -> " << r.body;
    EXPECT_NE(r.body.find(absl::StrCat("\"field\":\"", a.field, "\"")), std::string::npos)
        << a.what << " -> " << r.body;
    EXPECT_EQ(cp_->config().SerializeAsString(), before) << a.what;
    EXPECT_EQ(cp_->generation(), generation) << a.what;
  }
  EXPECT_EQ(Call("GET", "/backends").body, listing);
  // A JSON POST from a non-browser client (curl: no Origin) still works.
  HttpResponse ok = api_->Handle(
      GuardRequest("POST", "/backends",
                   {{"host", "localhost:8080"}, {"content-type", "application/json"}}, kJson));
  EXPECT_EQ(ok.status, 201) << ok.body;
}

TEST_F(RestApiTest, OffLoopbackReadsNeedTheToken) {
  RestApiOptions o;
  o.guard = OffLoopbackGuard("s3cret");
  o.render_metrics = [] { return std::string("lb_test 1\n"); };
  RestApi off(cp_.get(), o);
  const std::string local = "192.0.2.10:8080";
  for (const char* path : {"/backends", "/metrics", "/vips", "/config/algorithm"}) {
    HttpResponse r = off.Handle(GuardRequest("GET", path, {{"host", local}}, "", local));
    EXPECT_EQ(r.status, 401) << path << " -> " << r.body;
    ASSERT_FALSE(r.headers.empty()) << path;
    EXPECT_EQ(r.headers[0].first, "WWW-Authenticate") << path;
    HttpResponse authed = off.Handle(GuardRequest(
        "GET", path, {{"host", local}, {"authorization", "Bearer s3cret"}}, "", local));
    EXPECT_EQ(authed.status, 200) << path << " -> " << authed.body;
  }
  HttpResponse health = off.Handle(GuardRequest("GET", "/healthz", {{"host", local}}, "", local));
  EXPECT_EQ(health.status, 200) << health.body;
}

}  // namespace
}  // namespace lb
