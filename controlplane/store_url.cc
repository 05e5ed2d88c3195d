#include "controlplane/store_url.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lb {
namespace {

constexpr size_t kMaxUrl = 1024;
constexpr size_t kMaxEndpoints = 16;

bool IsHostChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '-'; }
bool IsSegmentChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }

absl::Status Bad(absl::string_view url, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("\"", absl::CHexEscape(url.substr(0, 80)), "\": ", why));
}

// "host:port" or "[v6]:port" into `out`.
absl::Status ParseAuthority(absl::string_view url, absl::string_view a, StoreUrl::Endpoint* out) {
  absl::string_view host;
  absl::string_view port;
  if (absl::StartsWith(a, "[")) {
    const size_t close = a.find(']');
    if (close == absl::string_view::npos) return Bad(url, "unclosed '[' in the host");
    host = a.substr(1, close - 1);
    if (a.substr(close + 1, 1) != ":") return Bad(url, "want [ipv6]:port");
    port = a.substr(close + 2);
    for (char c : host) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.') {
        return Bad(url, "bad character in the IPv6 address");
      }
    }
  } else {
    const size_t colon = a.rfind(':');
    if (colon == absl::string_view::npos) return Bad(url, "no port: want etcd://host:port/prefix");
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
    for (char c : host) {
      if (!IsHostChar(c)) return Bad(url, "bad character in the host");
    }
  }
  if (host.empty()) return Bad(url, "empty host");
  uint32_t p = 0;
  if (port.empty() || port.size() > 5 || !absl::SimpleAtoi(port, &p) || p == 0 || p > 65535 ||
      !absl::ascii_isdigit(port[0])) {
    return Bad(url, "port must be 1-65535");
  }
  out->host = std::string(host);
  out->port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

absl::Status ParsePrefix(absl::string_view url, absl::string_view path, StoreUrl* out) {
  while (absl::EndsWith(path, "/")) path.remove_suffix(1);
  if (path.empty()) return Bad(url, "no prefix: want etcd://host:port/prefix");
  for (absl::string_view seg : absl::StrSplit(path.substr(1), '/')) {
    if (seg.empty() || seg == "." || seg == "..") {
      return Bad(url, "empty, '.' or '..' segment in the prefix");
    }
    for (char c : seg) {
      if (!IsSegmentChar(c)) return Bad(url, "the prefix allows [A-Za-z0-9._-] and '/' only");
    }
  }
  out->prefix = std::string(path);
  return absl::OkStatus();
}

}  // namespace

std::string StoreUrl::Target(size_t i) const {
  const Endpoint& e = endpoints.at(i);
  if (e.host.find(':') != std::string::npos) return absl::StrCat("[", e.host, "]:", e.port);
  return absl::StrCat(e.host, ":", e.port);
}

std::string StoreUrl::Targets() const {
  std::string out;
  for (size_t i = 0; i < endpoints.size(); ++i) absl::StrAppend(&out, i ? "," : "", Target(i));
  return out;
}

std::string StoreUrl::Describe() const {
  if (kind == Kind::kFile) return absl::StrCat("file://", dir);
  return absl::StrCat(tls ? "etcds://" : "etcd://", Targets(), prefix);
}

std::string StoreUrl::StateKey() const { return absl::StrCat(prefix, "/state"); }

absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view url) {
  if (url.size() > kMaxUrl) return absl::InvalidArgumentError("longer than 1024 characters");
  StoreUrl out;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "file://")) {
    if (rest.empty() || rest[0] != '/') return Bad(url, "want file:///absolute/directory");
    out.kind = StoreUrl::Kind::kFile;
    out.dir = std::string(rest);
    return out;
  }
  if (absl::ConsumePrefix(&rest, "etcds://")) {
    out.tls = true;
  } else if (!absl::ConsumePrefix(&rest, "etcd://")) {
    return Bad(url, "unknown store: want file:///dir, etcd://host:port/prefix or etcds://...");
  }
  out.kind = StoreUrl::Kind::kEtcd;
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) return Bad(url, "no prefix: want etcd://host:port/prefix");
  if (rest.find_first_of("?#@") != absl::string_view::npos) {
    return Bad(url, "no user, query or fragment allowed");
  }
  for (absl::string_view a : absl::StrSplit(rest.substr(0, slash), ',')) {
    if (out.endpoints.size() == kMaxEndpoints) {
      return Bad(url, absl::StrCat("more than ", kMaxEndpoints, " endpoints"));
    }
    StoreUrl::Endpoint e;
    if (absl::Status st = ParseAuthority(url, a, &e); !st.ok()) return st;
    for (const StoreUrl::Endpoint& o : out.endpoints) {
      if (o.host == e.host && o.port == e.port) return Bad(url, "an endpoint appears twice");
    }
    out.endpoints.push_back(std::move(e));
  }
  if (absl::Status st = ParsePrefix(url, rest.substr(slash), &out); !st.ok()) return st;
  return out;
}

}  // namespace lb
