// Loading and validating the load balancer's config (lb.v1.Config) into a
// DesiredState: the whole forwarding intent of one node, checked as a whole,
// with addresses parsed and canonicalised and every default applied.
//
// Pipeline: file --LoadConfigFile--> lb::v1::Config --ValidateConfig-->
// DesiredState --BuildTables (table_builder.h)--> slot contents --Publisher.
// The admin API (a later version) will produce a DesiredState the same way,
// from a Config it received instead of a file.
//
// Errors:
//  * LoadConfigFile / ParseConfig*: NotFound when the file cannot be read,
//    InvalidArgument for syntax errors, as "<file>:<line>:<column>: <what>"
//    (1-based) for text format and "<file>: <what>" for JSON.
//  * ValidateConfig: InvalidArgument listing every problem found (up to
//    kMaxReportedErrors, then "... and N more"), separated by "; ", each as
//    "<field path>: <what>", e.g.
//    `vips[2].address: "10.0.0.300" is not an IPv4 or IPv6 address`.
//    Non-fatal findings (a VIP whose pool has no active backend) are returned
//    as warnings in the same form. Pool settings the table does not carry
//    (sticky sessions, health checks, drain timeout) and per-backend
//    health_check_path / remove_at_unix_ms are checked here too, so a config
//    the API or a file hands in is refused as a whole with the field named.
//
// Threads: all functions are reentrant; DesiredState is a plain value.
#ifndef LB_CONTROLPLANE_CONFIG_H_
#define LB_CONTROLPLANE_CONFIG_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lb/v1/config.pb.h"
#include "lib/flow_key.h"
#include "lib/shm_region.h"
#include "lib/table_format.h"

namespace lb {

// TableSettings.ring_size 0 means this (the Maglev paper's table size).
inline constexpr uint32_t kDefaultRingSize = 65537;
// Backend.weight range. Weights are relative; 16 bits are plenty and keep the
// Maglev scheduler's products small.
inline constexpr uint32_t kMaxBackendWeight = 65535;
// Backend.weight when the field is unset.
inline constexpr uint32_t kDefaultBackendWeight = 1;
inline constexpr size_t kMaxReportedErrors = 10;

// Pool and health-check defaults (what a zero field means) and bounds. The
// health checker, the REST API and the control plane read them from here so
// that the config, the API and the behaviour agree.
inline constexpr uint32_t kDefaultStickyTtlSeconds = 3600;
inline constexpr uint32_t kMaxStickyTtlSeconds = 7 * 86400;
inline constexpr uint32_t kDefaultDrainTimeoutSeconds = 30;
inline constexpr uint32_t kMaxDrainTimeoutSeconds = 86400;
inline constexpr uint32_t kDefaultHealthIntervalMs = 5000;
inline constexpr uint32_t kMinHealthIntervalMs = 10;
inline constexpr uint32_t kMaxHealthIntervalMs = 3'600'000;
inline constexpr uint32_t kDefaultHealthTimeoutMs = 3000;
inline constexpr uint32_t kMaxHealthTimeoutMs = 600'000;
inline constexpr uint32_t kDefaultHealthyThreshold = 2;
inline constexpr uint32_t kDefaultUnhealthyThreshold = 3;
inline constexpr uint32_t kMaxHealthThreshold = 100;
inline constexpr char kDefaultHealthCheckPath[] = "/health";
inline constexpr uint32_t kDefaultHealthMaxBodyBytes = 4096;
inline constexpr uint32_t kMaxHealthMaxBodyBytes = 1u << 20;
inline constexpr uint32_t kMaxHealthMinStateMs = 3'600'000;
inline constexpr size_t kMaxHttpPathLen = 1024;
inline constexpr size_t kMaxHttpHostLen = 255;

// Script health checks name a script, they never give a program: script[0]
// is a file name in lb-controlplane's --health_script_dir, the rest are
// bounded arguments. ValidateConfig checks these bounds, and the health
// checker checks them again before it runs anything.
inline constexpr size_t kMaxScriptNameLen = 64;
inline constexpr size_t kMaxScriptArgs = 8;
inline constexpr size_t kMaxScriptArgLen = 256;
// A pool name: [A-Za-z0-9_.:-]{1,kMaxPoolNameLen}.
inline constexpr size_t kMaxPoolNameLen = 64;
bool IsPoolName(absl::string_view s);
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}: no '/', no leading '.' or '-'.
bool IsScriptName(absl::string_view s);
// Visible ASCII and spaces only: no control characters, no NUL.
bool IsScriptArg(absl::string_view s);

// Format by file extension: .textproto/.txtpb/.pbtxt/.textpb -> text
// format, .json -> proto3 JSON. Unknown fields are errors in both.
absl::StatusOr<v1::Config> LoadConfigFile(const std::string& path);
// `source` names the input in error messages (usually the file path).
absl::StatusOr<v1::Config> ParseConfigText(absl::string_view text, absl::string_view source);
absl::StatusOr<v1::Config> ParseConfigJson(absl::string_view json, absl::string_view source);

// How error messages quote what a client sent: C-escaped, at most
// kMaxQuotedBytes of it, then "..." when cut, so that a megabyte of input
// never comes back in a message or a log line.
inline constexpr size_t kMaxQuotedBytes = 64;
std::string QuoteBounded(absl::string_view input);

// An IP address literal, parsed. `text` is the canonical form (inet_ntop), so
// "10.0.0.01"-style and "2001:DB8::0:1"-style spellings of one address agree.
struct IpAddress {
  AddrFamily family = AddrFamily::kNone;  // kNone = unset
  std::array<uint8_t, 16> bytes{};        // network order; IPv4 in [0, 4), rest zero
  std::string text;

  bool empty() const { return family == AddrFamily::kNone; }
  bool operator==(const IpAddress& o) const { return family == o.family && bytes == o.bytes; }
};
// InvalidArgument (without a field path) unless `text` is an IPv4 or IPv6
// literal other than the unspecified address. The whole of `text` must be
// the literal: an embedded NUL ("10.9.0.1\0x") is refused, not cut.
absl::StatusOr<IpAddress> ParseIpAddress(absl::string_view text);
// InvalidArgument (without a field path) for an address that cannot be a
// VIP, a backend or a tunnel source: loopback, link-local, multicast,
// broadcast and the other IPv4 addresses that are not unicast (0/8, 240/4),
// and IPv4-mapped IPv6 (the IPv4 form names the same host unambiguously).
absl::Status CheckUnicastAddress(const IpAddress& a);
// The address from table bytes; family must be 4 or 6.
IpAddress IpAddressFromBytes(AddrFamily family, const uint8_t* bytes);

struct DesiredBackend {
  uint32_t id = 0;  // 0 = assign (table_builder keeps it stable)
  IpAddress address;
  uint16_t port = 0;
  uint32_t weight = kDefaultBackendWeight;  // 0 = takes no new flows
  uint32_t max_connections = 0;
  BackendState state = BackendState::kActive;  // as configured

  // In the rings and member lists.
  bool TakesNewFlows() const { return state == BackendState::kActive && weight > 0; }
  // What the table says: an ACTIVE backend of weight 0 is published as
  // DRAINING (the table format reserves ACTIVE for weight >= 1).
  BackendState PublishedState() const {
    return state == BackendState::kActive && weight == 0 ? BackendState::kDraining : state;
  }
};

struct DesiredPool {
  std::string name;
  // kProxy pools are reached by lb-l7 at address:port; the L4 tables do not
  // carry them (no slots, no rings) and no VIP of this config may use them.
  bool proxy = false;
  Algorithm algorithm = Algorithm::kMaglev;
  std::vector<DesiredBackend> backends;  // config order
  // Session persistence for every VIP of the pool (published as kVipSticky).
  bool sticky_sessions = false;
  uint32_t sticky_ttl_seconds = kDefaultStickyTtlSeconds;
  // GUE (UDP) instead of IP-in-IP, to gue_port (published as kVipGue).
  bool gue = false;
  uint16_t gue_port = 6080;

  uint32_t NumTakingNewFlows() const;
};

struct DesiredVip {
  uint32_t id = 0;  // 0 = assign
  IpAddress address;
  uint8_t proto = 0;  // IPPROTO_TCP or IPPROTO_UDP
  uint16_t port = 0;  // 0 = all ports
  std::string pool;
  bool fragment_tolerant = false;

  // "10.0.0.1:80/tcp", "[2001:db8::1]:0/udp": the VIP's identity, unique
  // within a DesiredState, and how logs name it.
  std::string Key() const;
};
std::string VipKey(const IpAddress& address, uint8_t proto, uint16_t port);

struct DesiredState {
  IpAddress tunnel_source_v4;  // empty() when not configured
  IpAddress tunnel_source_v6;
  // Non-zero: tunnel_source_v* is a prefix of this length (per-flow source).
  uint8_t tunnel_source_v4_prefix_len = 0;
  uint8_t tunnel_source_v6_prefix_len = 0;
  uint32_t ring_size = kDefaultRingSize;
  std::vector<DesiredPool> pools;  // config order, unique names
  std::vector<DesiredVip> vips;    // config order, unique keys

  // nullptr when absent.
  const DesiredPool* FindPool(absl::string_view name) const;
  size_t NumBackends() const;
};

// Validates `config` as a whole against the table capacities `caps` and
// converts it. `warnings` (may be null) receives non-fatal findings.
absl::StatusOr<DesiredState> ValidateConfig(const v1::Config& config, const TableCapacities& caps,
                                            std::vector<std::string>* warnings);

}  // namespace lb

#endif  // LB_CONTROLPLANE_CONFIG_H_
