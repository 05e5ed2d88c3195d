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
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/control_plane.h"
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
  EXPECT_EQ(Call("GET", "/backends/").status, 200);   // one trailing slash is tolerated
  EXPECT_EQ(Call("GET", "/backends//").status, 400);  // an empty id segment
  EXPECT_EQ(Call("GET", "/BACKENDS").status, 404);
  EXPECT_EQ(Call("GET", "/backends?pool=x").status, 200);
  ExpectRefused("GET", "/backends/%zz/health", "", 400, "path");
  ExpectRefused("GET", "/backends/%31%32abc", "", 400, "backend_id");
  EXPECT_EQ(Call("GET", "/backends/%31%32").status, 404);  // "12": a valid id, unknown
  ExpectRefused("GET", "/pools/..%2F..%2Fetc/backends", "", 400, "pool");
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
  EXPECT_EQ(HttpStatusFromCode(absl::StatusCode::kUnavailable), 500);
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

}  // namespace
}  // namespace lb
