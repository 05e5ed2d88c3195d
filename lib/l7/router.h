// Request routing of lb-l7: a listener's routes, in order, map (host, path,
// method) to a pool; the first route that matches wins, else the listener's
// default pool.
//
// Matching:
//   - host: exact ("api.example.com") or suffix ("*.example.com" matches
//     "a.example.com" and "a.b.example.com", not "example.com"); compared
//     lowercased, the port of the Host value ignored. No host = any host.
//   - path (query string excluded): exact, prefix, or an RE2 regular
//     expression that must match the whole path (linear time, no
//     backtracking: safe on hostile input). No path = any path.
//   - methods: any of a list (exact, case-sensitive as HTTP says). None = any.
//   - headers: every listed field must be present (and, with a value, have
//     exactly that value; the first field of that name counts). None = any.
//
// Failure: Build() returns InvalidArgumentError naming `routes[i].<field>`
// for a bad regex or an empty matcher. Threads: Build anywhere; Match is const
// and may be called by any number of threads.
#ifndef LB_LIB_L7_ROUTER_H_
#define LB_LIB_L7_ROUTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace re2 {
class RE2;
}

namespace lb::l7 {

enum class PathMatchKind { kAny, kExact, kPrefix, kRegex };

struct HeaderMatch {
  std::string name;
  std::string value;  // exact value when !present_only
  bool present_only = false;
};

struct RouteSpec {
  std::string name;
  std::vector<std::string> hosts;
  PathMatchKind path_kind = PathMatchKind::kAny;
  std::string path;
  std::vector<std::string> methods;
  int pool = -1;  // index into the caller's pools
  std::vector<HeaderMatch> headers;
  HeaderRules rules;  // applied to requests on this route and their answers
};

class Router {
 public:
  static absl::StatusOr<Router> Build(std::vector<RouteSpec> routes, int default_pool);
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;
  ~Router();

  // Index of the matching route, or routes().size() for the default route.
  // `head` supplies the fields for header matchers (routes with header
  // matchers never match when it is null).
  int Match(absl::string_view host, absl::string_view path, absl::string_view method,
            const MessageHead* head = nullptr) const;
  // Rules of route `r` (as returned by Match); null for the default route.
  const HeaderRules* RulesOf(int r) const;
  // Pool of route index `r` (as returned by Match); -1 = none (404).
  int PoolOf(int r) const;
  const std::vector<RouteSpec>& routes() const { return routes_; }

 private:
  Router() = default;
  std::vector<RouteSpec> routes_;
  std::vector<std::unique_ptr<re2::RE2>> regex_;  // one per route (null unless kRegex)
  int default_pool_ = -1;
};

// `host` without its port, lowercased ("[::1]:80" -> "[::1]").
std::string HostWithoutPort(absl::string_view host);

}  // namespace lb::l7

#endif  // LB_LIB_L7_ROUTER_H_
