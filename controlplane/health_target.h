// What the health checker checks: the public HealthTarget (one backend with
// its pool's settings), the settings with their defaults filled in, and the
// address and HTTP request prepared once per target. Plain data and pure
// functions; the loop (health_checker.cc) owns the objects.
//
// Defaults for zero fields are those of lb.v1.HealthCheck: interval 5000,
// timeout 3000, thresholds 2/3, path "/health", Host = the address checked
// (the backend's, or the VIP's through the tunnel; ":port" appended unless
// 80), body limit 4096, damping 2 * interval.
//
// Failure: a target that cannot be checked as configured (an address that is
// not an IP literal, an HTTP path with a space/CR/LF, a script that is not a
// script name with bounded arguments) gets a config_error; every check of it
// fails with that text. Any thread.
#ifndef LB_CONTROLPLANE_HEALTH_TARGET_H_
#define LB_CONTROLPLANE_HEALTH_TARGET_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "controlplane/health_tunnel.h"
#include "lb/v1/config.pb.h"

namespace lb {

// One backend to check, with its pool's settings.
struct HealthTarget {
  uint32_t backend_id = 0;
  std::string address;  // IPv4 or IPv6 literal
  uint16_t port = 0;
  v1::HealthCheck check;           // kind NONE/UNSPECIFIED = not checked
  std::string http_path_override;  // the backend's health_check_path; "" = the pool's
  // check.through_tunnel: connect to tunnel_address:tunnel_port (the pool's
  // VIP of the backend's family, health_tunnel.h) instead; "" = none.
  std::string tunnel_address;
  uint16_t tunnel_port = 0;
};

// Targets for every backend (id != 0) of every pool whose health check kind
// is TCP, HTTP or SCRIPT. Pools with NONE/UNSPECIFIED are not checked.
std::vector<HealthTarget> TargetsFromConfig(const v1::Config& config);

// TCP, HTTP or SCRIPT.
bool IsCheckedHealthKind(v1::HealthCheckKind kind);

// A HealthCheck with every zero replaced by its documented default.
struct HealthSettings {
  v1::HealthCheckKind kind = v1::HEALTH_CHECK_KIND_UNSPECIFIED;
  uint32_t interval_ms = 0;
  uint32_t timeout_ms = 0;
  uint32_t healthy_threshold = 0;
  uint32_t unhealthy_threshold = 0;
  int64_t min_state_ns = 0;
  uint64_t max_body_bytes = 0;
  std::string path;
  std::string host;
  std::vector<std::string> script;
};

HealthSettings ResolveHealthSettings(const HealthTarget& t);

// A target ready to be checked: its settings and, for TCP/HTTP, the socket
// address and the request bytes.
struct PreparedTarget {
  HealthTarget spec;
  HealthSettings cfg;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string request;       // HTTP only
  std::string config_error;  // non-empty: every check fails with this text
  // Through the tunnel: the socket's SO_MARK (0 = a direct check) and the
  // backend the tc program sends marked packets to (addr is the VIP's).
  uint32_t mark = 0;
  TunnelReal tunnel_real;
};

// `tunnel_mark_base`: the SO_MARK of a tunnelled check is base + backend id
// (--health_tunnel_mark_base).
PreparedTarget PrepareTarget(const HealthTarget& spec,
                             uint32_t tunnel_mark_base = kDefaultHealthTunnelMarkBase);

// What a check talks to and how; a target whose identity changes starts over
// (UNKNOWN, counts reset). Timing and thresholds are not part of it.
bool SameCheckIdentity(const PreparedTarget& a, const PreparedTarget& b);

// Text helpers of the health checker's failure messages.
namespace health {
// strerror_r text of `err`.
std::string ErrnoText(int err);
// `s` in double quotes, bounded (QuoteBounded, config.h).
std::string Quote(absl::string_view s);
}  // namespace health

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_TARGET_H_
