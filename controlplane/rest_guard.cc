#include "controlplane/rest_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace lb {
namespace {

// The host and port of an authority ("name", "name:port", "1.2.3.4:80",
// "[::1]:8080"), the host normalized for comparison: names lower-cased
// without a trailing dot, IP literals as inet_ntop spells them.
struct Authority {
  std::string host;
  int port = -1;  // -1: none given
  bool ip = false;
};

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

std::optional<Authority> ParseAuthority(absl::string_view s) {
  Authority a;
  absl::string_view host;
  absl::string_view port;
  bool has_port = false;
  if (absl::StartsWith(s, "[")) {
    const size_t close = s.find(']');
    if (close == absl::string_view::npos) return std::nullopt;
    host = s.substr(1, close - 1);
    absl::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return std::nullopt;
      port = rest.substr(1);
      has_port = true;
    }
    in6_addr a6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) return std::nullopt;
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
    a.host = buf;
    a.ip = true;
  } else {
    const size_t colon = s.find(':');
    host = s.substr(0, colon);
    if (colon != absl::string_view::npos) {
      port = s.substr(colon + 1);
      has_port = true;
      if (port.find(':') != absl::string_view::npos) return std::nullopt;  // bare IPv6
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(), IsNameChar)) return std::nullopt;
    in_addr a4;
    if (inet_pton(AF_INET, std::string(host).c_str(), &a4) == 1) {
      char buf[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &a4, buf, sizeof(buf));
      a.host = buf;
      a.ip = true;
    } else {
      absl::ConsumeSuffix(&host, ".");  // "lb.example." is "lb.example"
      if (host.empty()) return std::nullopt;
      a.host = absl::AsciiStrToLower(host);
    }
  }
  // RFC 3986 allows an empty port ("host:"): the scheme's default.
  if (has_port && !port.empty()) {
    uint32_t p = 0;
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(port, &p) || p == 0 || p > 65535) {
      return std::nullopt;
    }
    a.port = static_cast<int>(p);
  }
  return a;
}

bool IsLoopbackIp(const std::string& ip) {
  in_addr a4;
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  return inet_pton(AF_INET6, ip.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

// Is host:port (port already defaulted) a name of this server, as reached at
// `local` ("ip:port" / "[v6]:port"; empty for requests not from a socket)?
bool IsOurHost(const std::string& host, int port, absl::string_view local,
               const RestGuardOptions& options) {
  if (std::optional<Authority> l = ParseAuthority(local); l.has_value() && l->port == port) {
    if (host == l->host) return true;
    if (host == "localhost" && IsLoopbackIp(l->host)) return true;
    if (!options.listen_host.empty()) {
      const std::optional<Authority> listen = ParseAuthority(
          absl::StrContains(options.listen_host, ':') ? absl::StrCat("[", options.listen_host, "]")
                                                      : options.listen_host);
      if (listen.has_value() && listen->ip && host == listen->host) return true;
    }
  }
  for (const AllowedHost& a : options.allowed_hosts) {
    if (a.host == host && (a.port < 0 || a.port == port)) return true;
  }
  return false;
}

// Constant-time comparison, so the token cannot be guessed byte by byte.
bool TokenEquals(absl::string_view given, absl::string_view token) {
  unsigned char diff = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i] ^ (i < token.size() ? token[i] : 0));
  }
  return diff == 0;
}

AdminRefusal Refuse(int http_status, const char* field, std::string problem) {
  absl::Status status = http_status == 401
                            ? absl::UnauthenticatedError(absl::StrCat(field, ": ", problem))
                            : absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
  return AdminRefusal{http_status, std::move(status), field};
}

size_t CountHeader(const HttpRequest& r, absl::string_view lower_name) {
  size_t n = 0;
  for (const auto& [name, value] : r.headers) n += name == lower_name ? 1 : 0;
  return n;
}

std::optional<AdminRefusal> CheckHost(const HttpRequest& r, const RestGuardOptions& o) {
  const size_t count = CountHeader(r, "host");
  if (count > 1) return Refuse(400, "host", "given more than once");
  if (count == 0) {
    if (r.version_minor >= 1) return Refuse(400, "host", "an HTTP/1.1 request needs a Host header");
    if (!o.loopback_listener) {
      return Refuse(400, "host", "HTTP/1.0 without Host is served on a loopback listener only");
    }
    return std::nullopt;
  }
  const std::string& value = *r.Header("host");
  std::optional<Authority> a = ParseAuthority(value);
  if (!a.has_value()) return Refuse(400, "host", absl::StrCat("\"", value, "\" is malformed"));
  if (!IsOurHost(a->host, a->port < 0 ? 80 : a->port, r.local, o)) {
    return Refuse(421, "host",
                  absl::StrCat("\"", value,
                               "\" does not name this server (use its address, or add the name "
                               "to --http_allowed_hosts)"));
  }
  return std::nullopt;
}

std::optional<AdminRefusal> CheckBrowser(const HttpRequest& r, const RestGuardOptions& o) {
  if (const std::string* site = r.Header("sec-fetch-site");
      site != nullptr &&
      (absl::EqualsIgnoreCase(*site, "cross-site") || absl::EqualsIgnoreCase(*site, "same-site"))) {
    return Refuse(403, "sec-fetch-site",
                  absl::StrCat("a ", absl::AsciiStrToLower(*site),
                               " browser request is not allowed on the admin API"));
  }
  const size_t count = CountHeader(r, "origin");
  if (count == 0) return std::nullopt;
  if (count > 1) return Refuse(403, "origin", "given more than once");
  const std::string& origin = *r.Header("origin");
  const auto refuse = [&origin] {
    return Refuse(
        403, "origin",
        absl::StrCat("requests from origin \"", origin, "\" are not allowed on the admin API"));
  };
  // serialized-origin = scheme "://" host [ ":" port ]; "null" is refused.
  int default_port = 0;
  absl::string_view authority = origin;
  if (absl::ConsumePrefix(&authority, "http://")) {
    default_port = 80;
  } else if (absl::ConsumePrefix(&authority, "https://")) {
    default_port = 443;
  } else {
    return refuse();
  }
  std::optional<Authority> a = ParseAuthority(authority);
  if (!a.has_value() || !IsOurHost(a->host, a->port < 0 ? default_port : a->port, r.local, o)) {
    return refuse();
  }
  return std::nullopt;
}

std::optional<AdminRefusal> CheckContentType(const HttpRequest& r) {
  const bool has_body =
      r.method == "POST" || r.method == "PUT" || r.method == "PATCH" || !r.body.empty();
  if (!has_body) return std::nullopt;
  const size_t count = CountHeader(r, "content-type");
  if (count > 1) return Refuse(415, "content-type", "given more than once");
  if (count == 0) {
    return Refuse(415, "content-type",
                  "a request with a body must be sent as Content-Type: application/json");
  }
  const std::string& value = *r.Header("content-type");
  const absl::string_view media =
      absl::StripAsciiWhitespace(absl::string_view(value).substr(0, value.find(';')));
  if (!absl::EqualsIgnoreCase(media, "application/json")) {
    return Refuse(415, "content-type",
                  absl::StrCat("\"", value, "\" is not accepted; send application/json"));
  }
  return std::nullopt;
}

std::optional<AdminRefusal> CheckToken(const HttpRequest& r, const RestGuardOptions& o) {
  const bool read = r.method == "GET";  // HEAD arrives as GET
  bool needed;
  if (o.loopback_listener) {
    needed = !read && !o.bearer_token.empty();
  } else {
    needed = !(read && r.path == "/healthz");
  }
  if (!needed) return std::nullopt;
  const std::string* auth = r.Header("authorization");
  if (auth == nullptr) {
    return Refuse(401, "authorization",
                  o.loopback_listener ? "a bearer token is required for changes"
                                      : "a bearer token is required off loopback");
  }
  absl::string_view given = *auth;
  const bool bearer = given.size() > 7 && absl::StartsWithIgnoreCase(given, "bearer ");
  if (!bearer || o.bearer_token.empty() ||
      !TokenEquals(absl::StripAsciiWhitespace(given.substr(7)), o.bearer_token)) {
    return Refuse(401, "authorization", "the bearer token is not valid");
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::vector<AllowedHost>> ParseAllowedHosts(absl::string_view csv) {
  std::vector<AllowedHost> out;
  for (absl::string_view entry : absl::StrSplit(csv, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) continue;
    std::optional<Authority> a = ParseAuthority(entry);
    if (!a.has_value() || absl::EndsWith(entry, ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", entry,
                       "\" is not a host name, IPv4 address or [IPv6] address with an optional "
                       ":port (1..65535)"));
    }
    out.push_back(AllowedHost{a->host, a->port});
  }
  return out;
}

std::optional<AdminRefusal> CheckAdminRequest(const HttpRequest& request,
                                              const RestGuardOptions& options) {
  if (auto r = CheckHost(request, options)) return r;
  if (auto r = CheckBrowser(request, options)) return r;
  if (auto r = CheckContentType(request)) return r;
  return CheckToken(request, options);
}

}  // namespace lb
