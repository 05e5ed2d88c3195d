#include "controlplane/health_tunnel.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>

#include "absl/strings/str_cat.h"

namespace lb {
namespace {

// Relaxed: written once by main before the control plane validates anything
// (thread creation orders it before every reader).
std::atomic<bool> g_tunnel_available{false};

}  // namespace

void SetHealthTunnelAvailable(bool available) {
  g_tunnel_available.store(available, std::memory_order_relaxed);
}

bool HealthTunnelAvailable() { return g_tunnel_available.load(std::memory_order_relaxed); }

absl::StatusOr<uint32_t> TunnelMark(uint32_t base, uint32_t backend_id) {
  const uint64_t mark = uint64_t{base} + backend_id;
  if (mark > UINT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("mark base ", base, " + backend id ", backend_id,
                                                   " does not fit in 32 bits (SO_MARK)"));
  }
  if (mark == 0) return absl::InvalidArgumentError("mark 0 means unmarked");
  return uint32_t(mark);
}

std::vector<std::pair<std::string, std::string>> ThroughTunnelProblems(const v1::Pool& pool,
                                                                       bool tunnel_available) {
  std::vector<std::pair<std::string, std::string>> out;
  const v1::HealthCheck& hc = pool.health_check();
  if (!hc.through_tunnel()) return out;
  if (!tunnel_available) {
    out.emplace_back(".health_check.through_tunnel",
                     "lb-controlplane was started without --health_tunnel_map (the map of "
                     "lb-hc-encap's tc egress program); tunnelled checks are unavailable");
  }
  if (hc.kind() != v1::HEALTH_CHECK_KIND_TCP && hc.kind() != v1::HEALTH_CHECK_KIND_HTTP) {
    out.emplace_back(".health_check.kind",
                     "through_tunnel needs HEALTH_CHECK_KIND_TCP or HEALTH_CHECK_KIND_HTTP");
  }
  if (pool.kind() == v1::POOL_KIND_PROXY) {
    out.emplace_back(".health_check.through_tunnel",
                     "a POOL_KIND_PROXY pool is not reached through the tunnel");
  }
  return out;
}

std::optional<TunnelReal> TunnelRealFromText(const std::string& address) {
  TunnelReal r;
  if (inet_pton(AF_INET, address.c_str(), r.addr) == 1) {
    r.family = 4;
    return r;
  }
  if (inet_pton(AF_INET6, address.c_str(), r.addr) == 1) {
    r.family = 6;
    return r;
  }
  return std::nullopt;
}

std::optional<TunnelDestination> TunnelDestinationFor(const v1::Config& config,
                                                      const std::string& pool_name,
                                                      const std::string& backend_address,
                                                      uint16_t backend_port) {
  const std::optional<TunnelReal> backend = TunnelRealFromText(backend_address);
  if (!backend) return std::nullopt;
  // Two passes: a VIP of the backend's own family first (the plainest
  // tunnel), then any (IPv4 in IPv6 / IPv6 in IPv4, as the dataplane sends).
  for (const bool same_family : {true, false}) {
    for (const v1::Vip& v : config.vips()) {
      if (v.pool() != pool_name || v.protocol() != v1::PROTOCOL_TCP) continue;
      const std::optional<TunnelReal> vip = TunnelRealFromText(v.address());
      if (!vip || (same_family && vip->family != backend->family)) continue;
      TunnelDestination d;
      d.address = v.address();
      d.port = v.port() != 0 ? uint16_t(v.port()) : backend_port;
      return d;
    }
  }
  return std::nullopt;
}

}  // namespace lb
