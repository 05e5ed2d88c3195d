#include "controlplane/health_target.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/config.h"
#include "controlplane/health_script.h"

namespace lb {
namespace health {

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r: returns a pointer to the message (maybe not into buf).
  return strerror_r(err, buf, sizeof(buf));
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", QuoteBounded(s), "\""); }

}  // namespace health

namespace {

bool HasCrLf(absl::string_view s) {
  return s.find('\r') != absl::string_view::npos || s.find('\n') != absl::string_view::npos;
}

// "" when `address` is an IP literal (filled into `t`), else why not.
std::string FillSockaddr(PreparedTarget& t, const std::string& address, uint16_t port) {
  auto* in4 = reinterpret_cast<sockaddr_in*>(&t.addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&t.addr);
  if (inet_pton(AF_INET, address.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    t.addr_len = sizeof(sockaddr_in);
    return "";
  }
  if (inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    t.addr_len = sizeof(sockaddr_in6);
    return "";
  }
  return absl::StrCat("address: \"", address, "\" is not an IPv4 or IPv6 literal");
}

// Direct: the backend's address:port. Through the tunnel: the VIP, with the
// backend's mark and IPv4 address for the tc program.
std::string FillAddress(PreparedTarget& t, uint32_t mark_base) {
  if (!t.spec.check.through_tunnel()) return FillSockaddr(t, t.spec.address, t.spec.port);
  const std::optional<TunnelReal> real = TunnelRealFromText(t.spec.address);
  if (!real) {
    return absl::StrCat("address: \"", t.spec.address, "\" is not an IPv4 or IPv6 literal");
  }
  if (t.spec.tunnel_address.empty()) {
    return "through_tunnel: no TCP VIP uses this backend's pool";
  }
  t.tunnel_real = *real;
  absl::StatusOr<uint32_t> mark = TunnelMark(mark_base, t.spec.backend_id);
  if (!mark.ok()) return absl::StrCat("through_tunnel: ", mark.status().message());
  t.mark = *mark;
  std::string err = FillSockaddr(t, t.spec.tunnel_address, t.spec.tunnel_port);
  return err.empty() ? "" : absl::StrCat("through_tunnel: VIP ", err);
}

// "" when the path and host are safe to put in a request (then built), else why not.
std::string BuildRequest(PreparedTarget& t) {
  const std::string& path = t.cfg.path;
  if (path.empty() || path[0] != '/' || HasCrLf(path) || absl::StrContains(path, ' ')) {
    return absl::StrCat("http_path: \"", absl::CEscape(path),
                        "\" must start with '/' and contain no space, CR or LF");
  }
  if (HasCrLf(t.cfg.host)) return "http_host: must not contain CR or LF";
  t.request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", t.cfg.host,
                           "\r\nUser-Agent: lb-healthcheck/1\r\nAccept: */*\r\n"
                           "Connection: close\r\n\r\n");
  return "";
}

}  // namespace

bool IsCheckedHealthKind(v1::HealthCheckKind kind) {
  return kind == v1::HEALTH_CHECK_KIND_TCP || kind == v1::HEALTH_CHECK_KIND_HTTP ||
         kind == v1::HEALTH_CHECK_KIND_SCRIPT;
}

HealthSettings ResolveHealthSettings(const HealthTarget& t) {
  const v1::HealthCheck& c = t.check;
  HealthSettings s;
  s.kind = c.kind();
  s.interval_ms = c.interval_ms() ? c.interval_ms() : 5000;
  s.timeout_ms = c.timeout_ms() ? c.timeout_ms() : 3000;
  s.healthy_threshold = c.healthy_threshold() ? c.healthy_threshold() : 2;
  s.unhealthy_threshold = c.unhealthy_threshold() ? c.unhealthy_threshold() : 3;
  const uint64_t min_state_ms =
      c.min_state_duration_ms() ? c.min_state_duration_ms() : 2 * uint64_t{s.interval_ms};
  s.min_state_ns = int64_t(min_state_ms) * 1'000'000;
  s.max_body_bytes = c.http_max_body_bytes() ? c.http_max_body_bytes() : 4096;
  s.path = !t.http_path_override.empty() ? t.http_path_override
           : !c.http_path().empty()      ? c.http_path()
                                         : "/health";
  if (!c.http_host().empty()) {
    s.host = c.http_host();
  } else {
    // The address checked: the VIP's through the tunnel.
    const bool tunnel = c.through_tunnel() && !t.tunnel_address.empty();
    const std::string& address = tunnel ? t.tunnel_address : t.address;
    const uint16_t port = tunnel ? t.tunnel_port : t.port;
    s.host = absl::StrContains(address, ':') ? absl::StrCat("[", address, "]") : address;
    if (port != 80) absl::StrAppend(&s.host, ":", port);
  }
  s.script.assign(c.script().begin(), c.script().end());
  return s;
}

PreparedTarget PrepareTarget(const HealthTarget& spec, uint32_t tunnel_mark_base) {
  PreparedTarget t;
  t.spec = spec;
  t.cfg = ResolveHealthSettings(spec);
  switch (t.cfg.kind) {
    case v1::HEALTH_CHECK_KIND_SCRIPT:
      t.config_error = ScriptArgvError(t.cfg.script);
      break;
    case v1::HEALTH_CHECK_KIND_HTTP:
      t.config_error = FillAddress(t, tunnel_mark_base);
      if (t.config_error.empty()) t.config_error = BuildRequest(t);
      break;
    default:
      t.config_error = FillAddress(t, tunnel_mark_base);
      break;
  }
  return t;
}

bool SameCheckIdentity(const PreparedTarget& a, const PreparedTarget& b) {
  return a.spec.address == b.spec.address && a.spec.port == b.spec.port &&
         a.cfg.kind == b.cfg.kind && a.cfg.path == b.cfg.path && a.cfg.host == b.cfg.host &&
         a.cfg.script == b.cfg.script && a.mark == b.mark &&
         a.spec.tunnel_address == b.spec.tunnel_address && a.spec.tunnel_port == b.spec.tunnel_port;
}

std::vector<HealthTarget> TargetsFromConfig(const v1::Config& config) {
  std::vector<HealthTarget> out;
  for (const v1::Pool& pool : config.pools()) {
    if (!IsCheckedHealthKind(pool.health_check().kind())) continue;
    for (const v1::Backend& b : pool.backends()) {
      if (b.id() == 0) continue;
      HealthTarget t;
      t.backend_id = b.id();
      t.address = b.address();
      t.port = uint16_t(b.port());
      t.check = pool.health_check();
      t.http_path_override = b.health_check_path();
      if (t.check.through_tunnel()) {
        if (auto d = TunnelDestinationFor(config, pool.name(), t.address, t.port)) {
          t.tunnel_address = d->address;
          t.tunnel_port = d->port;
        }
      }
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace lb
