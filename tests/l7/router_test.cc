// lib/l7/router.h: first match wins; host exact / *.suffix, path exact /
// prefix / RE2 full match, methods; default pool; errors name the field.
#include "lib/l7/router.h"

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

Router Make() {
  std::vector<RouteSpec> r(5);
  r[0] = {"health", {}, PathMatchKind::kExact, "/health", {}, 0};
  r[1] = {"api-write", {"api.test"}, PathMatchKind::kPrefix, "/v1/", {"POST", "PUT"}, 1};
  r[2] = {"api", {"api.test"}, PathMatchKind::kPrefix, "/v1/", {}, 2};
  r[3] = {"tenants", {"*.tenant.test"}, PathMatchKind::kAny, "", {}, 3};
  r[4] = {"ids", {}, PathMatchKind::kRegex, "/item/[0-9]+", {"GET"}, 4};
  auto router = Router::Build(std::move(r), 9);
  EXPECT_TRUE(router.ok()) << router.status();
  return *std::move(router);
}

TEST(Router, MatchesInOrder) {
  const Router r = Make();
  struct Case {
    const char *host, *path, *method;
    int route, pool;
  } cases[] = {
      {"any", "/health", "GET", 0, 0},
      {"any", "/health?x=1", "GET", 0, 0},  // query ignored
      {"any", "/healthz", "GET", 5, 9},     // exact is exact
      {"API.test:8080", "/v1/x", "POST", 1, 1},
      {"api.test", "/v1/x", "GET", 2, 2},
      {"api.test", "/v2/x", "GET", 5, 9},
      {"other.test", "/v1/x", "GET", 5, 9},
      {"a.tenant.test", "/", "GET", 3, 3},
      {"a.b.tenant.test", "/", "GET", 3, 3},
      {"tenant.test", "/", "GET", 5, 9},  // *.suffix needs a label
      {"xtenant.test", "/", "GET", 5, 9},
      {"h", "/item/42", "GET", 4, 4},
      {"h", "/item/42x", "GET", 5, 9},  // full match only
      {"h", "/item/42", "DELETE", 5, 9},
      {"[::1]:80", "/item/1", "GET", 4, 4},
  };
  for (const Case& c : cases) {
    const int got = r.Match(c.host, c.path, c.method);
    EXPECT_EQ(got, c.route) << c.host << " " << c.path << " " << c.method;
    EXPECT_EQ(r.PoolOf(got), c.pool) << c.host << " " << c.path;
  }
}

TEST(Router, HeaderMatchers) {
  std::vector<RouteSpec> r(2);
  r[0].name = "canary";
  r[0].headers = {{"X-Canary", "1", false}, {"Cookie", "", true}};
  r[0].pool = 1;
  r[1].name = "beta";
  r[1].headers = {{"x-beta", "", true}};
  r[1].pool = 2;
  auto router = Router::Build(std::move(r), 0);
  ASSERT_TRUE(router.ok());
  MessageHead h;
  h.headers = {{"x-canary", "1"}, {"cookie", "a=b"}};
  EXPECT_EQ(router->Match("a", "/", "GET", &h), 0);
  h.headers = {{"x-canary", "2"}, {"cookie", "a=b"}};
  EXPECT_EQ(router->Match("a", "/", "GET", &h), 2);  // default
  h.headers = {{"x-canary", "1"}};
  EXPECT_EQ(router->Match("a", "/", "GET", &h), 2);  // Cookie missing
  h.headers = {{"X-Beta", ""}};
  EXPECT_EQ(router->Match("a", "/", "GET", &h), 1);
  EXPECT_EQ(router->Match("a", "/", "GET"), 2);  // no head: header routes never match
}

TEST(Router, ErrorsNameTheField) {
  std::vector<RouteSpec> r(2);
  r[0] = {"ok", {}, PathMatchKind::kPrefix, "/", {}, 0};
  r[1] = {"bad", {}, PathMatchKind::kRegex, "(", {}, 0};
  auto got = Router::Build(r, -1);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("routes[1].path.regex"), std::string::npos) << got.status();
  r[1] = {"bad", {"a.*.test"}, PathMatchKind::kAny, "", {}, 0};
  got = Router::Build(r, -1);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("routes[1].hosts[0]"), std::string::npos);
  r[1] = {"bad", {}, PathMatchKind::kPrefix, "api", {}, 0};
  got = Router::Build(r, -1);
  EXPECT_NE(got.status().message().find("routes[1].path"), std::string::npos);
}

TEST(Router, NoDefaultMeansNoPool) {
  auto r = Router::Build({}, -1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->PoolOf(r->Match("a", "/", "GET")), -1);
  EXPECT_EQ(HostWithoutPort("Example.COM:443"), "example.com");
  EXPECT_EQ(HostWithoutPort("[2001:DB8::1]:80"), "[2001:db8::1]");
}

}  // namespace
}  // namespace lb::l7
