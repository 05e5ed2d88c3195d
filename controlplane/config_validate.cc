// ValidateConfig: the one layer that checks a config (REST and gRPC only
// translate into v1::Config). Every finding names its field; one pass
// reports every problem, not just the first (config.h).
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "controlplane/algorithms.h"
#include "controlplane/config.h"
#include "controlplane/health_tunnel.h"
#include "lib/encap.h"
#include "lib/findings.h"
#include "lib/maglev.h"

namespace lb {
namespace {

bool MapBackendState(v1::BackendState s, BackendState* out) {
  switch (s) {
    case v1::BACKEND_STATE_UNSPECIFIED:
    case v1::BACKEND_STATE_ACTIVE:
      *out = BackendState::kActive;
      return true;
    case v1::BACKEND_STATE_DRAINING:
      *out = BackendState::kDraining;
      return true;
    case v1::BACKEND_STATE_DOWN:
      *out = BackendState::kDown;
      return true;
    default:
      return false;
  }
}

// Parses an address field, recording an error naming the field when it is
// bad. `path()` builds the field's path; it is called only for an error, so
// that validating thousands of backends allocates no path strings. Only
// unicast addresses pass (CheckUnicastAddress). Returns
// an empty IpAddress on error.
template <typename PathFn>
IpAddress ParseAddress(Findings& f, const PathFn& path, const std::string& text,
                       AddrFamily required = AddrFamily::kNone) {
  if (text.empty()) {
    f.Error(path(), "required");
    return {};
  }
  auto a = ParseIpAddress(text);
  if (!a.ok()) {
    f.Error(path(), "%s", a.status().message());
    return {};
  }
  if (required != AddrFamily::kNone && a->family != required) {
    f.Error(path(), "\"%s\" is not an %s address", QuoteBounded(text),
            required == AddrFamily::kIPv4 ? "IPv4" : "IPv6");
    return {};
  }
  if (absl::Status st = CheckUnicastAddress(*a); !st.ok()) {
    f.Error(path(), "%s", st.message());
    return {};
  }
  return *std::move(a);
}

IpAddress ParseAddressField(Findings& f, const std::string& path, const std::string& text,
                            AddrFamily required = AddrFamily::kNone) {
  return ParseAddress(
      f, [&path] { return path; }, text, required);
}

// node.tunnel_source_ipv*_prefix ("172.16.0.0/16"): the outer source is per
// flow within it (lib/encap.h). Exclusive with the single address `base`.
void ParseSourcePrefix(Findings& f, const std::string& base, const std::string& text,
                       AddrFamily fam, IpAddress* addr, uint8_t* len) {
  if (text.empty()) return;
  const std::string path = base + "_prefix";
  const bool v4 = fam == AddrFamily::kIPv4;
  const uint32_t lo = v4 ? 8 : 64;
  const uint32_t hi = v4 ? 31 : 127;
  const size_t slash = text.find('/');
  uint32_t n = 0;
  if (slash == std::string::npos || !absl::SimpleAtoi(text.substr(slash + 1), &n)) {
    f.Error(path, "\"%s\" is not ADDRESS/LENGTH", QuoteBounded(text));
    return;
  }
  if (n < lo || n > hi) {
    f.Error(path, "prefix length %u out of range [%u, %u]", n, lo, hi);
    return;
  }
  if (!addr->empty()) {
    f.Error(path, "set either %s or %s_prefix, not both", base, base);
    return;
  }
  IpAddress a = ParseAddressField(f, path, text.substr(0, slash), fam);
  if (a.empty()) return;
  for (uint32_t bit = n; bit < (v4 ? 32u : 128u); ++bit) {
    if (a.bytes[bit / 8] & (0x80u >> (bit % 8))) {
      f.Error(path, "\"%s\" has host bits set beyond /%u", QuoteBounded(text), n);
      return;
    }
  }
  *addr = std::move(a);
  *len = static_cast<uint8_t>(n);
}

// An HTTP request-target or Host value goes into a request line verbatim:
// visible ASCII only, so no field can smuggle spaces, CR or LF into it.
bool IsVisibleAscii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

void CheckHttpPath(Findings& f, const std::string& path, const std::string& value) {
  if (value.empty()) return;
  if (value[0] != '/') {
    f.Error(path, "\"%s\" must start with \"/\"", QuoteBounded(value));
  } else if (value.size() > kMaxHttpPathLen) {
    f.Error(path, "longer than %u characters", kMaxHttpPathLen);
  } else if (!IsVisibleAscii(value)) {
    f.Error(path, "\"%s\" may contain only visible ASCII characters (no spaces or controls)",
            QuoteBounded(value));
  }
}

// `0 = default` fields: zero passes, anything else must be in [lo, hi].
void CheckRange(Findings& f, const std::string& path, uint32_t value, uint32_t lo, uint32_t hi,
                const char* zero_means) {
  if (value != 0 && (value < lo || value > hi)) {
    f.Error(path, "%u out of range [%u, %u] (0 = %s)", value, lo, hi, zero_means);
  }
}

// pools[i].encapsulation / gue_port.
void CheckEncapsulation(Findings& f, const std::string& pp, const v1::Pool& p, DesiredPool* dp) {
  if (!v1::Encapsulation_IsValid(p.encapsulation())) {
    f.Error(pp + ".encapsulation", "unknown encapsulation %d", static_cast<int>(p.encapsulation()));
  }
  dp->gue = p.encapsulation() == v1::ENCAPSULATION_GUE;
  if (!dp->gue && p.gue_port() != 0) {
    f.Error(pp + ".gue_port", "%u set, but encapsulation is not ENCAPSULATION_GUE", p.gue_port());
  }
  CheckRange(f, pp + ".gue_port", p.gue_port(), 1, 65535, "6080");
  dp->gue_port = p.gue_port() == 0 ? kDefaultGuePort : static_cast<uint16_t>(p.gue_port());
}

void CheckScript(Findings& f, const std::string& path, const v1::HealthCheck& hc) {
  if (hc.script().empty()) {
    if (hc.kind() == v1::HEALTH_CHECK_KIND_SCRIPT) {
      f.Error(path,
              "required for HEALTH_CHECK_KIND_SCRIPT: a script name (a file in "
              "--health_script_dir) and its arguments");
    }
    return;
  }
  if (!IsScriptName(hc.script(0))) {
    f.Error(path + "[0]",
            "\"%s\" is not a script name: 1-%u characters of [A-Za-z0-9_.-], not starting with "
            "'.' or '-' (a file in lb-controlplane's --health_script_dir, never a path)",
            QuoteBounded(hc.script(0)), kMaxScriptNameLen);
  }
  if (static_cast<size_t>(hc.script_size()) - 1 > kMaxScriptArgs) {
    f.Error(path, "%d arguments after the script name; at most %u", hc.script_size() - 1,
            kMaxScriptArgs);
    return;
  }
  for (int k = 1; k < hc.script_size(); ++k) {
    const std::string& arg = hc.script(k);
    if (arg.size() > kMaxScriptArgLen) {
      f.Error(absl::StrCat(path, "[", k, "]"), "%u bytes; at most %u", arg.size(),
              kMaxScriptArgLen);
    } else if (!IsScriptArg(arg)) {
      f.Error(absl::StrCat(path, "[", k, "]"),
              "\"%s\" may contain only visible ASCII characters and spaces", QuoteBounded(arg));
    }
  }
}

void CheckHealthCheck(Findings& f, const std::string& path, const v1::HealthCheck& hc) {
  if (!v1::HealthCheckKind_IsValid(hc.kind())) {
    f.Error(path + ".kind", "unknown kind %d", static_cast<int>(hc.kind()));
  }
  CheckRange(f, path + ".interval_ms", hc.interval_ms(), kMinHealthIntervalMs, kMaxHealthIntervalMs,
             "5000");
  CheckRange(f, path + ".timeout_ms", hc.timeout_ms(), 1, kMaxHealthTimeoutMs, "3000");
  CheckRange(f, path + ".healthy_threshold", hc.healthy_threshold(), 1, kMaxHealthThreshold, "2");
  CheckRange(f, path + ".unhealthy_threshold", hc.unhealthy_threshold(), 1, kMaxHealthThreshold,
             "3");
  CheckHttpPath(f, path + ".http_path", hc.http_path());
  if (hc.http_host().size() > kMaxHttpHostLen) {
    f.Error(path + ".http_host", "longer than %u characters", kMaxHttpHostLen);
  } else if (!IsVisibleAscii(hc.http_host())) {
    f.Error(path + ".http_host",
            "\"%s\" may contain only visible ASCII characters (no spaces or controls)",
            absl::CHexEscape(hc.http_host()));
  }
  CheckRange(f, path + ".http_max_body_bytes", hc.http_max_body_bytes(), 1, kMaxHealthMaxBodyBytes,
             "4096");
  CheckRange(f, path + ".min_state_duration_ms", hc.min_state_duration_ms(), 1,
             kMaxHealthMinStateMs, "2 * interval");
  CheckScript(f, path + ".script", hc);
}

void ValidateNode(Findings& f, const v1::Node& node, DesiredState* d) {
  if (!node.tunnel_source_ipv4().empty()) {
    d->tunnel_source_v4 = ParseAddressField(f, "node.tunnel_source_ipv4", node.tunnel_source_ipv4(),
                                            AddrFamily::kIPv4);
  }
  if (!node.tunnel_source_ipv6().empty()) {
    d->tunnel_source_v6 = ParseAddressField(f, "node.tunnel_source_ipv6", node.tunnel_source_ipv6(),
                                            AddrFamily::kIPv6);
  }
  ParseSourcePrefix(f, "node.tunnel_source_ipv4", node.tunnel_source_ipv4_prefix(),
                    AddrFamily::kIPv4, &d->tunnel_source_v4, &d->tunnel_source_v4_prefix_len);
  ParseSourcePrefix(f, "node.tunnel_source_ipv6", node.tunnel_source_ipv6_prefix(),
                    AddrFamily::kIPv6, &d->tunnel_source_v6, &d->tunnel_source_v6_prefix_len);
}

// Returns whether d->ring_size is usable (so that pool checks against it
// report something meaningful).
bool ValidateTables(Findings& f, const v1::TableSettings& tables, const TableCapacities& caps,
                    DesiredState* d) {
  d->ring_size = tables.ring_size() == 0 ? kDefaultRingSize : tables.ring_size();
  if (absl::Status st = ValidateMaglevTableSize(d->ring_size); !st.ok()) {
    f.Error("tables.ring_size", "%u is not a valid Maglev table size (%s)", d->ring_size,
            st.message());
    return false;
  }
  if (d->ring_size > caps.max_ring_size) {
    f.Error("tables.ring_size",
            "%u exceeds the table region's max_ring_size %u (raise --max_ring_size)", d->ring_size,
            caps.max_ring_size);
    return false;
  }
  return true;
}

// State shared by the checks of every pool and backend of one config.
struct PoolScan {
  const TableCapacities& caps;
  std::map<std::string, int> pool_index;  // name -> first index
  // Explicit id -> (pool, backend) index of its first use. Paths are built
  // only for errors: validation runs in every API transaction, over every
  // backend, and must stay cheap at thousands of backends (hence hash maps:
  // no ordered walk is needed, and a tree insert per backend was a third of
  // ValidateConfig at 1,000 backends).
  absl::flat_hash_map<uint32_t, std::pair<int, int>> backend_ids;
  size_t total_backends = 0;
  bool capacity_reported = false;
};

// A backend's identity in its pool: family + address bytes, + port in a
// proxy pool (a DSR packet keeps the VIP's port, so there the address alone
// says where packets go).
using BackendIdentity = std::array<uint8_t, 19>;

BackendIdentity IdentityOf(const IpAddress& a, bool proxy, uint32_t port) {
  BackendIdentity k{};
  k[0] = static_cast<uint8_t>(a.family);
  std::copy(a.bytes.begin(), a.bytes.end(), k.begin() + 1);
  if (proxy) {
    k[17] = static_cast<uint8_t>(port >> 8);
    k[18] = static_cast<uint8_t>(port);
  }
  return k;
}

DesiredBackend ValidateBackend(Findings& f, PoolScan& scan, const v1::Pool& p, int i, int j,
                               const std::string& pp, bool proxy,
                               absl::flat_hash_map<BackendIdentity, int>* identities) {
  const v1::Backend& b = p.backends(j);
  const auto field = [&pp, j](const char* name) {
    return absl::StrCat(pp, ".backends[", j, "]", name);
  };
  DesiredBackend db;
  ++scan.total_backends;
  if (scan.total_backends > scan.caps.max_backends - 1 && !scan.capacity_reported) {
    f.Error(field(""),
            "backend number %u exceeds the table capacity of %u backends (--max_backends %u "
            "includes the reserved slot 0)",
            scan.total_backends, scan.caps.max_backends - 1, scan.caps.max_backends);
    scan.capacity_reported = true;
  }
  db.id = b.id();
  if (b.id() != 0) {
    if (auto [it, fresh] = scan.backend_ids.emplace(b.id(), std::make_pair(i, j)); !fresh) {
      f.Error(field(".id"), "duplicate backend id %u (first at pools[%d].backends[%d])", b.id(),
              it->second.first, it->second.second);
    }
  }
  db.address = ParseAddress(
      f, [&field] { return field(".address"); }, b.address());
  if (b.port() > 65535) {
    f.Error(field(".port"), "%u is not a port (0..65535)", b.port());
  }
  if (!db.address.empty()) {
    if (auto [it, fresh] = identities->emplace(IdentityOf(db.address, proxy, b.port()), j);
        !fresh) {
      if (proxy) {
        f.Error(field(""), "duplicate backend %s:%u in pool \"%s\" (first at %s.backends[%d])",
                db.address.text, b.port(), p.name(), pp, it->second);
      } else {
        f.Error(field(".address"),
                "duplicate address %s in pool \"%s\" (first at %s.backends[%d]); a DSR pool "
                "holds one backend per address: tunnelled packets keep the VIP's port",
                db.address.text, p.name(), pp, it->second);
      }
    }
  }
  db.port = static_cast<uint16_t>(b.port());
  db.weight = b.has_weight() ? b.weight() : kDefaultBackendWeight;
  if (db.weight > kMaxBackendWeight) {
    f.Error(field(".weight"), "%u out of range [0, %u]", db.weight, kMaxBackendWeight);
  }
  db.max_connections = b.max_connections();
  if (!MapBackendState(b.state(), &db.state)) {
    f.Error(field(".state"), "unknown state %d", static_cast<int>(b.state()));
  }
  if (!b.health_check_path().empty()) {
    CheckHttpPath(f, field(".health_check_path"), b.health_check_path());
  }
  if (b.remove_at_unix_ms() != 0 && b.state() != v1::BACKEND_STATE_DRAINING) {
    f.Error(field(".remove_at_unix_ms"),
            "set only on a BACKEND_STATE_DRAINING backend (one being removed)");
  }
  return db;
}

DesiredPool ValidatePool(Findings& f, PoolScan& scan, const v1::Pool& p, int i) {
  const std::string pp = absl::StrCat("pools[", i, "]");
  DesiredPool dp;
  dp.name = p.name();
  if (p.name().empty()) {
    f.Error(pp + ".name", "must not be empty");
  } else if (!IsPoolName(p.name())) {
    f.Error(pp + ".name", "\"%s\" must be 1-%u characters of [A-Za-z0-9_.:-]",
            QuoteBounded(p.name()), kMaxPoolNameLen);
  } else if (auto [it, fresh] = scan.pool_index.emplace(p.name(), i); !fresh) {
    f.Error(pp + ".name", "duplicate pool name \"%s\" (first at pools[%d])", p.name(), it->second);
  }
  if (!v1::PoolKind_IsValid(p.kind())) {
    f.Error(pp + ".kind", "unknown kind %d", static_cast<int>(p.kind()));
  }
  dp.proxy = p.kind() == v1::POOL_KIND_PROXY;
  CheckEncapsulation(f, pp, p, &dp);
  if (std::optional<Algorithm> a = TableAlgorithm(p.algorithm()); a.has_value()) {
    dp.algorithm = *a;
  } else {
    f.Error(pp + ".algorithm", "unknown algorithm %d", static_cast<int>(p.algorithm()));
  }
  CheckRange(f, pp + ".sticky_ttl_seconds", p.sticky_ttl_seconds(), 1, kMaxStickyTtlSeconds,
             "3600");
  dp.sticky_sessions = p.sticky_sessions();
  dp.sticky_ttl_seconds =
      p.sticky_ttl_seconds() == 0 ? kDefaultStickyTtlSeconds : p.sticky_ttl_seconds();
  CheckRange(f, pp + ".drain_timeout_seconds", p.drain_timeout_seconds(), 1,
             kMaxDrainTimeoutSeconds, "30");
  if (p.has_health_check()) CheckHealthCheck(f, pp + ".health_check", p.health_check());
  for (const auto& [where, what] : ThroughTunnelProblems(p, HealthTunnelAvailable())) {
    f.Error(pp + where, "%s", what);
  }
  absl::flat_hash_map<BackendIdentity, int> identities;  // -> first index
  identities.reserve(static_cast<size_t>(p.backends_size()));
  dp.backends.reserve(static_cast<size_t>(p.backends_size()));
  for (int j = 0; j < p.backends_size(); ++j) {
    dp.backends.push_back(ValidateBackend(f, scan, p, i, j, pp, dp.proxy, &identities));
  }
  return dp;
}

// A DSR backend of a family without an outer source of that family: the
// dataplane falls back to its own address (--ipv4 / --ipv6), which may or may
// not be one the backends route back to; say so, refuse nothing.
void WarnMissingTunnelSources(Findings& f, const DesiredState& d) {
  const auto find_backend = [&d](AddrFamily fam) -> std::string {
    for (size_t i = 0; i < d.pools.size(); ++i) {
      if (d.pools[i].proxy) continue;
      for (size_t j = 0; j < d.pools[i].backends.size(); ++j) {
        const DesiredBackend& b = d.pools[i].backends[j];
        if (b.address.family == fam) {
          return absl::StrCat("pools[", i, "].backends[", j, "] (", b.address.text, ")");
        }
      }
    }
    return "";
  };
  const struct {
    const IpAddress& source;
    AddrFamily family;
    const char* field;
    const char* name;
    const char* flag;
  } families[] = {
      {d.tunnel_source_v4, AddrFamily::kIPv4, "node.tunnel_source_ipv4", "IPv4", "--ipv4"},
      {d.tunnel_source_v6, AddrFamily::kIPv6, "node.tunnel_source_ipv6", "IPv6", "--ipv6"},
  };
  for (const auto& fam : families) {
    if (!fam.source.empty()) continue;
    if (std::string who = find_backend(fam.family); !who.empty()) {
      f.Warning(fam.field,
                "unset: %s tunnels to %s leave from lb-dataplane's %s (without it they are "
                "dropped as no_next_hop)",
                fam.name, who, fam.flag);
    }
  }
}

// State shared by the checks of every VIP of one config.
struct VipScan {
  const TableCapacities& caps;
  std::map<std::string, int> keys;
  std::map<uint32_t, int> ids;
  uint64_t members = 0;
  bool members_reported = false;
};

uint8_t ValidateProtocol(Findings& f, const std::string& vp, v1::Protocol proto) {
  switch (proto) {
    case v1::PROTOCOL_TCP:
      return IPPROTO_TCP;
    case v1::PROTOCOL_UDP:
      return IPPROTO_UDP;
    case v1::PROTOCOL_UNSPECIFIED:
      f.Error(vp + ".protocol", "required (PROTOCOL_TCP or PROTOCOL_UDP)");
      return 0;
    default:
      f.Error(vp + ".protocol", "unknown protocol %d", static_cast<int>(proto));
      return 0;
  }
}

// vips[i].pool: names a DSR pool; counts its members against the capacity.
void ValidateVipPool(Findings& f, VipScan& scan, const DesiredState& d, const v1::Vip& v,
                     const std::string& vp, const DesiredVip& dv) {
  const DesiredPool* pool = nullptr;
  if (v.pool().empty()) {
    f.Error(vp + ".pool", "required: the name of a pool");
    return;
  }
  if (pool = d.FindPool(v.pool()); pool == nullptr) {
    f.Error(vp + ".pool", "no pool named \"%s\"", QuoteBounded(v.pool()));
    return;
  }
  if (pool->proxy) {
    f.Error(vp + ".pool",
            "pool \"%s\" is a proxy pool (POOL_KIND_PROXY, reached by lb-l7 at address:port); "
            "an L4 VIP forwards by direct server return and needs a DSR pool",
            pool->name);
    return;
  }
  const uint32_t n = pool->NumTakingNewFlows();
  if (n == 0) {
    f.Warning(vp + ".pool",
              "pool \"%s\" has no active backend with weight > 0; traffic to %s is dropped "
              "(no_backend)",
              pool->name, dv.address.empty() ? v.address() : dv.Key());
  }
  scan.members += n;
  if (scan.members > scan.caps.max_members && !scan.members_reported) {
    f.Error(vp + ".pool",
            "VIP member lists would total %u entries, beyond the table capacity of %u "
            "(--max_members)",
            scan.members, scan.caps.max_members);
    scan.members_reported = true;
  }
}

DesiredVip ValidateVip(Findings& f, VipScan& scan, const DesiredState& d, const v1::Vip& v, int i) {
  const std::string vp = absl::StrCat("vips[", i, "]");
  DesiredVip dv;
  if (static_cast<uint32_t>(i) == scan.caps.max_vips) {
    f.Error(vp, "VIP number %d exceeds the table capacity of %u VIPs (--max_vips)", i + 1,
            scan.caps.max_vips);
  }
  dv.id = v.id();
  if (v.id() != 0) {
    if (auto [it, fresh] = scan.ids.emplace(v.id(), i); !fresh) {
      f.Error(vp + ".id", "duplicate VIP id %u (first at vips[%d])", v.id(), it->second);
    }
  }
  dv.address = ParseAddressField(f, vp + ".address", v.address());
  dv.proto = ValidateProtocol(f, vp, v.protocol());
  if (v.port() > 65535) {
    f.Error(vp + ".port", "%u is not a port (0..65535; 0 = all ports)", v.port());
  }
  dv.port = static_cast<uint16_t>(v.port());
  dv.pool = v.pool();
  dv.fragment_tolerant = v.fragment_tolerant();
  if (!dv.address.empty() && dv.proto != 0 && v.port() <= 65535) {
    if (auto [it, fresh] = scan.keys.emplace(dv.Key(), i); !fresh) {
      f.Error(vp, "duplicate VIP %s (first at vips[%d])", dv.Key(), it->second);
    }
  }
  ValidateVipPool(f, scan, d, v, vp, dv);
  return dv;
}

}  // namespace

absl::StatusOr<DesiredState> ValidateConfig(const v1::Config& config, const TableCapacities& caps,
                                            std::vector<std::string>* warnings) {
  Findings f(kMaxReportedErrors);
  DesiredState d;
  ValidateNode(f, config.node(), &d);
  const bool ring_ok = ValidateTables(f, config.tables(), caps, &d);

  PoolScan pools{caps};
  for (int i = 0; i < config.pools_size(); ++i) {
    DesiredPool dp = ValidatePool(f, pools, config.pools(i), i);
    if (ring_ok && !dp.proxy && dp.NumTakingNewFlows() > d.ring_size) {
      f.Error("tables.ring_size", "%u is smaller than the %u active backends of pool \"%s\"",
              d.ring_size, dp.NumTakingNewFlows(), dp.name);
    }
    d.pools.push_back(std::move(dp));
  }
  WarnMissingTunnelSources(f, d);

  VipScan vips{caps};
  for (int i = 0; i < config.vips_size(); ++i) {
    d.vips.push_back(ValidateVip(f, vips, d, config.vips(i), i));
  }

  if (warnings != nullptr) {
    for (std::string& w : f.warnings()) warnings->push_back(std::move(w));
  }
  if (!f.ok()) return f.ToStatus();
  return d;
}

}  // namespace lb
