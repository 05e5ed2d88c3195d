#include "lib/l7/router.h"

#include <re2/re2.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace lb::l7 {

std::string HostWithoutPort(absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  if (!h.empty() && h[0] == '[') {
    const size_t close = h.find(']');
    if (close != std::string::npos) h.resize(close + 1);
    return h;
  }
  const size_t colon = h.rfind(':');
  if (colon != std::string::npos) h.resize(colon);
  return h;
}

absl::StatusOr<Router> Router::Build(std::vector<RouteSpec> routes, int default_pool) {
  Router r;
  r.default_pool_ = default_pool;
  for (size_t i = 0; i < routes.size(); ++i) {
    RouteSpec& s = routes[i];
    for (size_t j = 0; j < s.hosts.size(); ++j) {
      s.hosts[j] = absl::AsciiStrToLower(s.hosts[j]);
      const std::string& h = s.hosts[j];
      if (h.empty() || h == "*." || (h[0] == '*' && !absl::StartsWith(h, "*.")) ||
          h.find('*', 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("routes[", i, "].hosts[", j, "]: \"", h,
                                                       "\" is neither a host name nor *.suffix"));
      }
    }
    std::unique_ptr<re2::RE2> re;
    if (s.path_kind == PathMatchKind::kRegex) {
      RE2::Options opt;
      opt.set_log_errors(false);
      re = std::make_unique<re2::RE2>(s.path, opt);
      if (!re->ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("routes[", i, "].path.regex: ", re->error()));
      }
    } else if (s.path_kind != PathMatchKind::kAny && (s.path.empty() || s.path[0] != '/')) {
      return absl::InvalidArgumentError(
          absl::StrCat("routes[", i, "].path: \"", s.path, "\" does not start with /"));
    }
    r.regex_.push_back(std::move(re));
  }
  r.routes_ = std::move(routes);
  return r;
}

Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;
Router::~Router() = default;

int Router::Match(absl::string_view host, absl::string_view path, absl::string_view method,
                  const MessageHead* head) const {
  // Lowercased and without its port only when a route looks at hosts.
  std::string h;
  bool have_h = false;
  const size_t q = path.find('?');
  if (q != absl::string_view::npos) path = path.substr(0, q);
  for (size_t i = 0; i < routes_.size(); ++i) {
    const RouteSpec& s = routes_[i];
    if (!s.hosts.empty()) {
      if (!have_h) {
        h = HostWithoutPort(host);
        have_h = true;
      }
      bool ok = false;
      for (const std::string& want : s.hosts) {
        if (want[0] == '*') {
          // "*.example.com": at least one label before ".example.com".
          const absl::string_view suffix = absl::string_view(want).substr(1);
          ok = h.size() > suffix.size() && absl::EndsWith(h, suffix);
        } else {
          ok = h == want;
        }
        if (ok) break;
      }
      if (!ok) continue;
    }
    switch (s.path_kind) {
      case PathMatchKind::kAny:
        break;
      case PathMatchKind::kExact:
        if (path != s.path) continue;
        break;
      case PathMatchKind::kPrefix:
        if (!absl::StartsWith(path, s.path)) continue;
        break;
      case PathMatchKind::kRegex:
        if (!re2::RE2::FullMatch(re2::StringPiece(path.data(), path.size()), *regex_[i])) continue;
        break;
    }
    if (!s.methods.empty()) {
      bool ok = false;
      for (const std::string& m : s.methods) ok = ok || m == method;
      if (!ok) continue;
    }
    if (!s.headers.empty()) {
      if (head == nullptr) continue;
      bool ok = true;
      for (const HeaderMatch& m : s.headers) {
        const absl::string_view* v = head->Find(m.name);
        ok = ok && v != nullptr && (m.present_only || *v == m.value);
      }
      if (!ok) continue;
    }
    return static_cast<int>(i);
  }
  return static_cast<int>(routes_.size());
}

const HeaderRules* Router::RulesOf(int r) const {
  if (r >= 0 && static_cast<size_t>(r) < routes_.size()) return &routes_[r].rules;
  return nullptr;
}

int Router::PoolOf(int r) const {
  if (r >= 0 && static_cast<size_t>(r) < routes_.size()) return routes_[r].pool;
  return default_pool_;
}

}  // namespace lb::l7
