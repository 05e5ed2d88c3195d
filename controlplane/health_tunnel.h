// Health checks through the tunnel: the pure pieces (no sockets, no BPF).
//
// A pool whose HealthCheck has through_tunnel checks each backend by
// connecting to the pool's VIP with SO_MARK = mark base + backend id; the
// lb-hc-encap tc egress program on the checker's host looks the mark up in
// its pinned map (health_tunnel_map.h fills it) and tunnels the packets
// (outer header of the backend's family) to that backend. This file decides:
//  * whether tunnelled checks can run at all (lb-controlplane was started
//    with --health_tunnel_map): set once at start, read by ValidateConfig;
//  * which problems of a pool make through_tunnel impossible (the config
//    is refused with the field named);
//  * the VIP a backend's tunnelled checks connect to;
//  * the mark of a backend, and the map value that says where it goes.
//
// Failure: TunnelMark returns InvalidArgument when base + id does not fit in
// 32 bits. Threads: any; the availability flag is an atomic set before the
// first config is validated.
#ifndef LB_CONTROLPLANE_HEALTH_TUNNEL_H_
#define LB_CONTROLPLANE_HEALTH_TUNNEL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "lb/v1/config.pb.h"

namespace lb {

// Default of --health_tunnel_mark_base ("LB" in the high half): marks are
// base + backend id, so ids up to 65535 stay below 0x4c430000.
inline constexpr uint32_t kDefaultHealthTunnelMarkBase = 0x4c420000;

void SetHealthTunnelAvailable(bool available);
bool HealthTunnelAvailable();

// The SO_MARK of backend `backend_id`'s tunnelled checks: base + id.
// InvalidArgument when it overflows 32 bits or is 0 (0 = unmarked).
absl::StatusOr<uint32_t> TunnelMark(uint32_t base, uint32_t backend_id);

// What forbids through_tunnel on `pool` (empty when allowed or not set):
// pairs of (field path relative to the pool, e.g. ".health_check.kind",
// message). `tunnel_available` is HealthTunnelAvailable() in production.
std::vector<std::pair<std::string, std::string>> ThroughTunnelProblems(const v1::Pool& pool,
                                                                       bool tunnel_available);

// Where a backend's tunnelled checks connect: the first TCP VIP of `config`
// (in config order) whose pool is `pool_name`, preferring the backend's
// family (then IPv4 in IPv4 / IPv6 in IPv6; else a mixed tunnel). The port is
// the VIP's, or `backend_port` for an all-ports VIP (port 0). nullopt when no
// such VIP exists (every check of the backend then fails, saying so).
struct TunnelDestination {
  std::string address;
  uint16_t port = 0;
};
std::optional<TunnelDestination> TunnelDestinationFor(const v1::Config& config,
                                                      const std::string& pool_name,
                                                      const std::string& backend_address,
                                                      uint16_t backend_port);

// A value of lb-hc-encap's hc_reals map (struct hc_real in hc_encap.bpf.c):
// where the packets of one mark are tunnelled.
struct TunnelReal {
  uint32_t family = 0;    // 4 or 6
  uint8_t addr[16] = {};  // network order; IPv4 in the first 4 bytes
};
static_assert(sizeof(TunnelReal) == 20, "struct hc_real in hc_encap.bpf.c");

// The TunnelReal of an IPv4/IPv6 literal; nullopt when it is neither.
std::optional<TunnelReal> TunnelRealFromText(const std::string& address);

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_TUNNEL_H_
