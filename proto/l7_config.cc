#include "proto/l7_config.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "lib/findings.h"
#include "proto/l7_pem.h"
#include "proto/text_parse.h"

namespace lb::l7 {
namespace {

constexpr size_t kMaxReportedErrors = 20;
constexpr size_t kMaxConfigBytes = 16 << 20;

bool ParseSockAddr(const std::string& ip, uint32_t port, SockAddr* out) {
  out->ss = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out->ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    out->text = absl::StrCat(ip, ":", port);
    return true;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    out->text = absl::StrCat("[", ip, "]:", port);
    return true;
  }
  return false;
}

void CheckPort(Findings& f, const std::string& path, uint32_t port) {
  if (port == 0 || port > 65535) f.Error(path, "%u is not a port (1..65535)", port);
}

void CheckMax(Findings& f, const std::string& path, uint64_t v, uint64_t lo, uint64_t hi,
              const char* zero_means) {
  if (v != 0 && (v < lo || v > hi)) {
    f.Error(path, "%u out of range [%u, %u] (0 = %s)", v, lo, hi, zero_means);
  }
}

bool IsToken(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!(absl::ascii_isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr) || c == 0) {
      return false;
    }
  }
  return true;
}

bool IsFieldValue(const std::string& s) {
  if (s.size() > 1024) return false;
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

void CheckRuleName(Findings& f, const std::string& path, const std::string& name) {
  if (!IsToken(name)) {
    f.Error(path, "\"%s\" is not a field name", name);
  } else if (IsProtectedHeader(name)) {
    f.Error(path, "\"%s\" is written by lb-l7 itself (Host, framing, hop-by-hop, forwarding)",
            name);
  }
}

void ParseRules(Findings& f, const std::string& rp, const v1::L7Route& r, HeaderRules* out) {
  for (int k = 0; k < r.request_headers_to_add_size(); ++k) {
    const auto& h = r.request_headers_to_add(k);
    const std::string p = absl::StrCat(rp, ".request_headers_to_add[", k, "]");
    CheckRuleName(f, p + ".name", h.name());
    if (!IsFieldValue(h.value())) f.Error(p + ".value", "control characters or over 1024 bytes");
    out->request_add.emplace_back(h.name(), h.value());
  }
  for (int k = 0; k < r.response_headers_to_add_size(); ++k) {
    const auto& h = r.response_headers_to_add(k);
    const std::string p = absl::StrCat(rp, ".response_headers_to_add[", k, "]");
    CheckRuleName(f, p + ".name", h.name());
    if (!IsFieldValue(h.value())) f.Error(p + ".value", "control characters or over 1024 bytes");
    out->response_add.emplace_back(h.name(), h.value());
  }
  for (int k = 0; k < r.request_headers_to_remove_size(); ++k) {
    CheckRuleName(f, absl::StrCat(rp, ".request_headers_to_remove[", k, "]"),
                  r.request_headers_to_remove(k));
    out->request_remove.push_back(r.request_headers_to_remove(k));
  }
  for (int k = 0; k < r.response_headers_to_remove_size(); ++k) {
    CheckRuleName(f, absl::StrCat(rp, ".response_headers_to_remove[", k, "]"),
                  r.response_headers_to_remove(k));
    out->response_remove.push_back(r.response_headers_to_remove(k));
  }
}

template <typename T>
T Or(T v, T def) {
  return v != 0 ? v : def;
}

constexpr int64_t kMs = 1'000'000;

// hash_on, the Maglev ring and the sticky fields of one pool (fields 20+).
void ParseHashAndSticky(Findings& f, const std::string& pp, const v1::L7Pool& p, PoolConfig* pc) {
  switch (p.hash_on().kind_case()) {
    case v1::L7HashOn::kHeader:
      pc->hash_on = HashOn::kHeader;
      pc->hash_name = p.hash_on().header();
      if (!IsToken(pc->hash_name)) f.Error(pp + ".hash_on.header", "not a field name");
      break;
    case v1::L7HashOn::kCookie:
      pc->hash_on = HashOn::kCookie;
      pc->hash_name = p.hash_on().cookie();
      if (!IsToken(pc->hash_name)) f.Error(pp + ".hash_on.cookie", "not a cookie name");
      break;
    case v1::L7HashOn::kPath:
      pc->hash_on = p.hash_on().path() ? HashOn::kPath : HashOn::kClientAddress;
      break;
    case v1::L7HashOn::KIND_NOT_SET:
      break;
  }
  if (p.has_hash_on() && pc->algorithm != BalanceAlgorithm::kMaglev) {
    f.Error(pp + ".hash_on", "only with ALGORITHM_MAGLEV");
  }
  const bool addresses_ok =
      std::all_of(pc->backends.begin(), pc->backends.end(),
                  [](const BackendConfig& b) { return !b.addr.text.empty(); });
  if (pc->algorithm == BalanceAlgorithm::kMaglev && !pc->backends.empty() && addresses_ok) {
    std::vector<std::string> keys;
    std::vector<uint32_t> weights;
    for (const BackendConfig& b : pc->backends) {
      keys.push_back(b.addr.text);
      weights.push_back(b.weight);
    }
    auto ring = BuildMaglevRing(keys, weights);
    if (ring.ok()) {
      pc->ring = std::make_shared<const std::vector<uint32_t>>(*std::move(ring));
    } else {
      f.Error(pp + ".backends", "%s", ring.status().message());
    }
  }
  if (!p.sticky_sessions()) {
    if (p.sticky_ttl_seconds() != 0 || !p.sticky_cookie().empty() || p.sticky_source_ip()) {
      f.Error(pp + ".sticky_sessions", "sticky_* fields are set but sticky_sessions is false");
    }
    return;
  }
  pc->sticky = p.sticky_source_ip() ? StickyMode::kSourceIp : StickyMode::kCookie;
  if (pc->sticky == StickyMode::kSourceIp) {
    pc->affinity = std::make_shared<SourceAffinity>(16, static_cast<int64_t>(time(nullptr)));
  }
  CheckMax(f, pp + ".sticky_ttl_seconds", p.sticky_ttl_seconds(), 1, 30 * 86400, "3600");
  pc->sticky_ttl_s = Or(p.sticky_ttl_seconds(), 3600u);
  if (!p.sticky_cookie().empty()) {
    if (!IsToken(p.sticky_cookie()) || p.sticky_cookie().size() > 64) {
      f.Error(pp + ".sticky_cookie", "\"%s\" is not a cookie name (token, <= 64)",
              p.sticky_cookie());
    }
    if (p.sticky_source_ip()) f.Error(pp + ".sticky_cookie", "set with sticky_source_ip");
    pc->sticky_cookie = p.sticky_cookie();
  }
}

// RFC 6066 server names as routes name them: LDH labels, lowercase or not,
// optionally "*." in front.
bool IsServerName(const std::string& s) {
  absl::string_view n = s;
  if (absl::StartsWith(n, "*.")) n.remove_prefix(2);
  if (n.empty() || n.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(n, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char ch : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(ch)) && ch != '-') return false;
    }
  }
  return true;
}

// A passthrough listener: its SNI routes become a Router (host = name).
void ParsePassthrough(Findings& f, const std::string& lp, const v1::L7Listener& l,
                      const absl::flat_hash_map<std::string, int>& pool_index,
                      const std::vector<PoolConfig>& pools, ListenerConfig* lc) {
  const v1::L7Passthrough& p = l.passthrough();
  const std::string pp = lp + ".passthrough";
  if (l.has_tls()) f.Error(lp + ".tls", "a passthrough listener does not terminate TLS");
  if (l.routes_size() > 0)
    f.Error(lp + ".routes", "use passthrough.routes on a passthrough listener");
  if (!l.default_pool().empty()) {
    f.Error(lp + ".default_pool", "use passthrough.default_pool on a passthrough listener");
  }
  std::set<int> used;
  auto pool_of = [&](const std::string& path, const std::string& name) {
    auto it = pool_index.find(name);
    if (it == pool_index.end()) {
      f.Error(path, "no pool named \"%s\"", name);
      return -1;
    }
    const PoolConfig& pc = pools[it->second];
    if (pc.upstream_tls) {
      f.Error(path, "pool \"%s\" has upstream_tls; passthrough relays the client's own TLS", name);
    }
    if (pc.sticky == StickyMode::kCookie) {
      f.Error(path, "pool \"%s\" has cookie stickiness; passthrough cannot read cookies", name);
    }
    if (pc.algorithm == BalanceAlgorithm::kMaglev && pc.hash_on != HashOn::kClientAddress) {
      f.Error(path,
              "pool \"%s\" hashes a header, cookie or path; passthrough can hash only "
              "the client address",
              name);
    }
    return it->second;
  };
  if (!p.default_pool().empty())
    lc->pt.default_pool = pool_of(pp + ".default_pool", p.default_pool());
  std::vector<RouteSpec> specs;
  std::set<std::string> names;
  for (int j = 0; j < p.routes_size(); ++j) {
    const v1::L7SniRoute& r = p.routes(j);
    const std::string rp = absl::StrCat(pp, ".routes[", j, "]");
    if (r.name().empty()) {
      f.Error(rp + ".name", "required");
    } else if (r.name() == "default" || !names.insert(r.name()).second) {
      f.Error(rp + ".name", "duplicate (or reserved) route name \"%s\"", r.name());
    }
    if (r.server_names().empty()) f.Error(rp + ".server_names", "at least one name is required");
    for (int k = 0; k < r.server_names_size(); ++k) {
      if (!IsServerName(r.server_names(k))) {
        f.Error(absl::StrCat(rp, ".server_names[", k, "]"),
                "\"%s\" is neither a host name nor *.suffix", r.server_names(k));
      }
    }
    RouteSpec s;
    s.name = r.name();
    s.hosts.assign(r.server_names().begin(), r.server_names().end());
    s.pool = pool_of(rp + ".pool", r.pool());
    specs.push_back(std::move(s));
    lc->route_names.push_back(r.name());
  }
  lc->route_names.push_back("default");
  auto check_fallback = [&](const char* field, v1::L7Passthrough::Fallback fb) {
    const bool to_default = fb == v1::L7Passthrough::DEFAULT_POOL;
    if (to_default && p.default_pool().empty()) {
      f.Error(absl::StrCat(pp, ".", field), "DEFAULT_POOL needs passthrough.default_pool");
    }
    return to_default;
  };
  lc->pt.no_sni_to_default = check_fallback("on_no_sni", p.on_no_sni());
  lc->pt.invalid_to_default = check_fallback("on_invalid", p.on_invalid());
  CheckMax(f, pp + ".max_client_hello_bytes", p.max_client_hello_bytes(), 512, 65536, "16384");
  lc->pt.max_client_hello_bytes = Or(p.max_client_hello_bytes(), 16384u);
  CheckMax(f, pp + ".client_hello_timeout_ms", p.client_hello_timeout_ms(), 10, 60000, "5000");
  lc->pt.client_hello_ns = Or<int64_t>(p.client_hello_timeout_ms(), 5000) * kMs;
  if (!f.ok()) return;
  auto router = Router::Build(std::move(specs), lc->pt.default_pool);
  if (!router.ok()) {
    f.Error(pp, "%s", router.status().message());
    return;
  }
  lc->router = *std::move(router);
  lc->passthrough = true;
}

// A sticky_store block; `path` names it in errors.
void ParseStore(Findings& f, const std::string& path, const v1::L7StickyStore& s,
                StickyStoreConfig* out) {
  const std::string& a = s.redis_address();
  out->text = a;
  std::string host, port;
  if (!a.empty() && a[0] == '[') {
    const size_t close = a.find(']');
    if (close != std::string::npos && close + 1 < a.size() && a[close + 1] == ':') {
      host = a.substr(1, close - 1);
      port = a.substr(close + 2);
    }
  } else if (const size_t colon = a.rfind(':'); colon != std::string::npos) {
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
  }
  SockAddr probe;
  int portnum = 0;
  const bool port_ok = !port.empty() && port.size() <= 5 &&
                       std::all_of(port.begin(), port.end(), absl::ascii_isdigit) &&
                       (portnum = std::stoi(port)) >= 1 && portnum <= 65535;
  if (a.empty()) {
    f.Error(path + ".redis_address", "required (\"127.0.0.1:6379\" or \"[::1]:6379\")");
  } else if (!port_ok || !ParseSockAddr(host, static_cast<uint32_t>(portnum), &probe)) {
    f.Error(path + ".redis_address", "\"%s\" is not IPv4:port or [IPv6]:port", a);
  }
  out->host = host;
  out->port = portnum;
  CheckMax(f, path + ".timeout_ms", s.timeout_ms(), 1, 5000, "50");
  out->timeout_ns = Or<int64_t>(s.timeout_ms(), 50) * kMs;
  CheckMax(f, path + ".max_backoff_ms", s.max_backoff_ms(), 100, 600'000, "5000");
  out->max_backoff_ns = Or<int64_t>(s.max_backoff_ms(), 5000) * kMs;
  if (!s.key_prefix().empty()) {
    const bool ok =
        s.key_prefix().size() <= 64 && std::all_of(s.key_prefix().begin(), s.key_prefix().end(),
                                                   [](char c) { return c > 0x20 && c < 0x7f; });
    if (!ok) f.Error(path + ".key_prefix", "visible ASCII without spaces, at most 64 bytes");
    out->key_prefix = s.key_prefix();
  }
}

// Backend limits, draining, the queue and the retry budget (fields 30+).
// The control plane's active check of a pool (field 40): lb-l7 does not run
// it, but both sides validate it with this code.
void CheckHealthCheck(Findings& f, const std::string& pp, const v1::L7Pool& p) {
  if (!p.has_health_check()) return;
  const v1::L7HealthCheck& h = p.health_check();
  const std::string hp = pp + ".health_check";
  CheckMax(f, hp + ".interval_ms", h.interval_ms(), 100, 3'600'000, "5000");
  CheckMax(f, hp + ".timeout_ms", h.timeout_ms(), 1, 3'600'000, "3000");
  const uint32_t interval = Or(h.interval_ms(), 5000u);
  const uint32_t timeout = Or(h.timeout_ms(), std::min(3000u, interval));
  if (timeout > interval) {
    f.Error(hp + ".timeout_ms", "%u is longer than interval_ms %u", timeout, interval);
  }
  CheckMax(f, hp + ".healthy_threshold", h.healthy_threshold(), 1, 100, "2");
  CheckMax(f, hp + ".unhealthy_threshold", h.unhealthy_threshold(), 1, 100, "3");
  if (!h.path().empty()) {
    bool ok = h.path()[0] == '/' && h.path().size() <= 1024;
    for (unsigned char ch : h.path()) ok = ok && ch > 0x20 && ch < 0x7f;
    if (!ok) {
      f.Error(hp + ".path", "\"%s\" is not an absolute path of visible ASCII (<= 1024 bytes)",
              absl::CHexEscape(h.path().substr(0, 64)));
    }
  }
  bool host_ok = h.host().size() <= 255;
  for (unsigned char ch : h.host()) host_ok = host_ok && ch > 0x20 && ch < 0x7f;
  if (!host_ok) {
    f.Error(hp + ".host", "\"%s\" is not a host of visible ASCII (<= 255 bytes)",
            absl::CHexEscape(h.host().substr(0, 64)));
  }
}

void ParseLimits(Findings& f, const std::string& pp, const v1::L7Pool& p, PoolConfig* pc) {
  CheckMax(f, pp + ".max_connections_per_backend", p.max_connections_per_backend(), 1, 1'000'000,
           "unlimited");
  bool limited = false;
  for (int j = 0; j < p.backends_size() && j < static_cast<int>(pc->backends.size()); ++j) {
    const v1::L7Backend& b = p.backends(j);
    CheckMax(f, absl::StrCat(pp, ".backends[", j, "].max_connections"), b.max_connections(), 1,
             1'000'000, "the pool's max_connections_per_backend");
    BackendConfig& bc = pc->backends[j];
    bc.drain = b.drain();
    bc.max_connections =
        static_cast<int32_t>(Or(b.max_connections(), p.max_connections_per_backend()));
    limited |= bc.max_connections > 0;
  }
  CheckMax(f, pp + ".max_queue", p.max_queue(), 1, 1'000'000, "100");
  pc->max_queue = static_cast<int32_t>(Or(p.max_queue(), 100u));
  CheckMax(f, pp + ".queue_timeout_ms", p.queue_timeout_ms(), 1, 3'600'000, "1000");
  pc->queue_timeout_ns = Or<int64_t>(p.queue_timeout_ms(), 1000) * kMs;
  if (!limited && (p.max_queue() != 0 || p.queue_timeout_ms() != 0)) {
    f.Error(pp + ".max_queue",
            "max_queue/queue_timeout_ms set but no backend has a max_connections");
  }
  if (p.has_retry_budget()) {
    CheckMax(f, pp + ".retry_budget.budget_percent", p.retry_budget().budget_percent(), 1, 100,
             "20");
    CheckMax(f, pp + ".retry_budget.min_retries", p.retry_budget().min_retries(), 1, 100'000, "10");
    pc->retry_budget_percent = Or(p.retry_budget().budget_percent(), 20u);
    pc->retry_budget_min = Or(p.retry_budget().min_retries(), 10u);
  }
}

}  // namespace

absl::StatusOr<v1::L7Config> LoadL7Config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kMaxConfigBytes, " bytes"));
  }
  v1::L7Config config;
  if (absl::Status st = ParseTextProto(text, path, &config); !st.ok()) return st;
  // A file that holds private keys (inline key_pem) is held to the rule of
  // key_file: not accessible by others.
  bool keys = false;
  for (const v1::L7Listener& l : config.listeners()) {
    for (const v1::L7Certificate& c : l.tls().certificates()) keys = keys || !c.key_pem().empty();
  }
  struct stat st;
  if (keys && stat(path.c_str(), &st) == 0 && (st.st_mode & 0007) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": holds private keys (key_pem) and is accessible by others; chmod "
                     "o-rwx (0600 or 0640)"));
  }
  return config;
}

absl::StatusOr<RuntimeConfig> ValidateL7Config(const v1::L7Config& c,
                                               const std::string& path_prefix) {
  Findings f(kMaxReportedErrors, path_prefix);
  RuntimeConfig rc;
  absl::flat_hash_map<std::string, int> pool_index;

  if (c.pools().empty()) f.Error("pools", "at least one pool is required");
  StickyStoreConfig global_store;
  if (c.has_sticky_store()) ParseStore(f, "sticky_store", c.sticky_store(), &global_store);
  for (int i = 0; i < c.pools_size(); ++i) {
    const v1::L7Pool& p = c.pools(i);
    const std::string pp = absl::StrCat("pools[", i, "]");
    PoolConfig pc;
    pc.name = p.name();
    if (p.name().empty()) {
      f.Error(pp + ".name", "required");
    } else if (!pool_index.emplace(p.name(), i).second) {
      f.Error(pp + ".name", "duplicate pool \"%s\" (first at pools[%d])", p.name(),
              pool_index[p.name()]);
    }
    switch (p.algorithm()) {
      case v1::ALGORITHM_UNSPECIFIED:
      case v1::ALGORITHM_ROUND_ROBIN:
        pc.algorithm = BalanceAlgorithm::kRoundRobin;
        break;
      case v1::ALGORITHM_WEIGHTED_ROUND_ROBIN:
        pc.algorithm = BalanceAlgorithm::kWeightedRoundRobin;
        break;
      case v1::ALGORITHM_LEAST_CONNECTIONS:
        pc.algorithm = BalanceAlgorithm::kLeastConnections;
        break;
      case v1::ALGORITHM_WEIGHTED_LEAST_CONNECTIONS:
        pc.algorithm = BalanceAlgorithm::kWeightedLeastConnections;
        break;
      case v1::ALGORITHM_IP_HASH:
        pc.algorithm = BalanceAlgorithm::kIpHash;
        break;
      case v1::ALGORITHM_RANDOM:
        pc.algorithm = BalanceAlgorithm::kRandom;
        break;
      case v1::ALGORITHM_MAGLEV:
        pc.algorithm = BalanceAlgorithm::kMaglev;
        break;
      default:
        f.Error(pp + ".algorithm", "%s is not supported by lb-l7 yet",
                v1::Algorithm_Name(p.algorithm()));
    }
    if (p.backends().empty()) f.Error(pp + ".backends", "at least one backend is required");
    if (p.backends_size() > 64) f.Error(pp + ".backends", "at most 64 backends per pool");
    std::set<std::string> seen;
    for (int j = 0; j < p.backends_size(); ++j) {
      const v1::L7Backend& b = p.backends(j);
      const std::string bp = absl::StrCat(pp, ".backends[", j, "]");
      BackendConfig bc;
      CheckPort(f, bp + ".port", b.port());
      if (!ParseSockAddr(b.address(), b.port(), &bc.addr)) {
        f.Error(bp + ".address", "\"%s\" is not an IPv4 or IPv6 address", b.address());
      } else if (!seen.insert(bc.addr.text).second) {
        f.Error(bp, "duplicate backend %s in pool \"%s\"", bc.addr.text, p.name());
      }
      CheckMax(f, bp + ".weight", b.weight(), 1, 1000, "1");
      bc.weight = Or(b.weight(), 1u);
      pc.backends.push_back(std::move(bc));
    }
    pc.upstream_tls = p.has_upstream_tls();
    if (pc.upstream_tls) pc.upstream_tls_config = p.upstream_tls();
    CheckMax(f, pp + ".max_idle_per_backend", p.max_idle_per_backend(), 1, 10000, "32");
    pc.max_idle_per_backend = Or(p.max_idle_per_backend(), 32u);
    CheckMax(f, pp + ".eject_after_failures", p.eject_after_failures(), 1, 1000, "3");
    pc.health.consecutive_failures = Or(p.eject_after_failures(), 3u);
    CheckMax(f, pp + ".eject_after_5xx", p.eject_after_5xx(), 1, 1000, "never");
    pc.health.consecutive_5xx = p.eject_after_5xx();
    CheckMax(f, pp + ".eject_ms", p.eject_ms(), 100, 3'600'000, "10000");
    pc.health.eject_ns = Or<int64_t>(p.eject_ms(), 10000) * kMs;
    CheckMax(f, pp + ".connect_retries", p.connect_retries(), 1, 10, "2");
    pc.connect_retries = Or(p.connect_retries(), 2u);
    ParseHashAndSticky(f, pp, p, &pc);
    ParseLimits(f, pp, p, &pc);
    CheckHealthCheck(f, pp, p);
    // The shared sticky store: the pool's own, else the global one; only
    // source-IP pins use it (cookies carry their pin themselves).
    const bool own = p.has_sticky_store();
    if (own || c.has_sticky_store()) {
      StickyStoreConfig sc = global_store;
      if (own) {
        const std::string sp = pp + ".sticky_store";
        if (pc.sticky != StickyMode::kSourceIp) {
          f.Error(sp, "only for pools with sticky_sessions and sticky_source_ip");
        }
        ParseStore(f, sp, p.sticky_store(), &sc);
      }
      if (pc.sticky == StickyMode::kSourceIp) {
        for (size_t k = 0; k < rc.stores.size() && pc.store < 0; ++k) {
          const StickyStoreConfig& o = rc.stores[k];
          if (o.host == sc.host && o.port == sc.port && o.key_prefix == sc.key_prefix &&
              o.timeout_ns == sc.timeout_ns && o.max_backoff_ns == sc.max_backoff_ns) {
            pc.store = static_cast<int>(k);
          }
        }
        if (pc.store < 0) {
          pc.store = static_cast<int>(rc.stores.size());
          rc.stores.push_back(std::move(sc));
        }
      }
    }
    rc.pools.push_back(std::move(pc));
  }

  if (c.listeners().empty()) f.Error("listeners", "at least one listener is required");
  std::set<std::string> listener_names, listener_addrs;
  for (int i = 0; i < c.listeners_size(); ++i) {
    const v1::L7Listener& l = c.listeners(i);
    const std::string lp = absl::StrCat("listeners[", i, "]");
    if (l.name().empty()) {
      f.Error(lp + ".name", "required");
    } else if (!listener_names.insert(l.name()).second) {
      f.Error(lp + ".name", "duplicate listener \"%s\"", l.name());
    }
    CheckPort(f, lp + ".port", l.port());
    SockAddr addr;
    const std::string ip = l.address().empty() ? "0.0.0.0" : l.address();
    if (!ParseSockAddr(ip, l.port(), &addr)) {
      f.Error(lp + ".address", "\"%s\" is not an IPv4 or IPv6 address", l.address());
    } else if (!listener_addrs.insert(addr.text).second) {
      f.Error(lp + ".address", "%s is already used by another listener", addr.text);
    }
    if (l.has_passthrough()) {
      auto none = Router::Build({}, -1);
      ListenerConfig lc{l.name(), addr, static_cast<uint16_t>(l.port()), *std::move(none), {}};
      ParsePassthrough(f, lp, l, pool_index, rc.pools, &lc);
      rc.listeners.push_back(std::move(lc));
      continue;
    }
    int default_pool = -1;
    if (!l.default_pool().empty()) {
      auto it = pool_index.find(l.default_pool());
      if (it == pool_index.end()) {
        f.Error(lp + ".default_pool", "no pool named \"%s\"", l.default_pool());
      } else {
        default_pool = it->second;
      }
    }
    std::vector<RouteSpec> specs;
    std::vector<std::string> names;
    std::set<std::string> route_names;
    for (int j = 0; j < l.routes_size(); ++j) {
      const v1::L7Route& r = l.routes(j);
      const std::string rp = absl::StrCat(lp, ".routes[", j, "]");
      RouteSpec s;
      s.name = r.name();
      if (r.name().empty()) {
        f.Error(rp + ".name", "required");
      } else if (r.name() == "default" || !route_names.insert(r.name()).second) {
        f.Error(rp + ".name", "duplicate (or reserved) route name \"%s\"", r.name());
      }
      s.hosts.assign(r.hosts().begin(), r.hosts().end());
      s.methods.assign(r.methods().begin(), r.methods().end());
      for (int k = 0; k < r.methods_size(); ++k) {
        const std::string& m = r.methods(k);
        const bool token = !m.empty() && std::all_of(m.begin(), m.end(), [](char ch) {
          return ch >= 'A' && ch <= 'Z';
        });
        if (!token) f.Error(absl::StrCat(rp, ".methods[", k, "]"), "\"%s\" is not a method", m);
      }
      switch (r.path().kind_case()) {
        case v1::L7PathMatch::kExact:
          s.path_kind = PathMatchKind::kExact;
          s.path = r.path().exact();
          break;
        case v1::L7PathMatch::kPrefix:
          s.path_kind = PathMatchKind::kPrefix;
          s.path = r.path().prefix();
          break;
        case v1::L7PathMatch::kRegex:
          s.path_kind = PathMatchKind::kRegex;
          s.path = r.path().regex();
          break;
        case v1::L7PathMatch::KIND_NOT_SET:
          break;
      }
      for (int k = 0; k < r.headers_size(); ++k) {
        const v1::L7HeaderMatch& m = r.headers(k);
        const std::string hp = absl::StrCat(rp, ".headers[", k, "]");
        if (!IsToken(m.name())) f.Error(hp + ".name", "\"%s\" is not a field name", m.name());
        HeaderMatch hm;
        hm.name = m.name();
        if (m.kind_case() == v1::L7HeaderMatch::kExact) {
          if (!IsFieldValue(m.exact())) f.Error(hp + ".exact", "control characters or too long");
          hm.value = m.exact();
        } else if (m.kind_case() == v1::L7HeaderMatch::kPresent && m.present()) {
          hm.present_only = true;
        } else {
          f.Error(hp, "set exact or present: true");
        }
        s.headers.push_back(std::move(hm));
      }
      ParseRules(f, rp, r, &s.rules);
      auto it = pool_index.find(r.pool());
      if (it == pool_index.end()) {
        f.Error(rp + ".pool", "no pool named \"%s\"", r.pool());
      } else {
        s.pool = it->second;
      }
      specs.push_back(std::move(s));
      names.push_back(r.name());
    }
    names.push_back("default");
    auto router = Router::Build(std::move(specs), default_pool);
    if (!router.ok()) {
      // Router names routes[i].<field>; prefix the listener.
      f.Error(lp, "%s", router.status().message());
      continue;
    }
    ListenerConfig lc{l.name(), addr, static_cast<uint16_t>(l.port()), *std::move(router),
                      std::move(names)};
    lc.tls = l.has_tls();
    if (lc.tls) {
      // Inline PEM is checked here (no I/O); files by lb-l7 (tls.h).
      std::vector<std::pair<std::string, std::string>> cert_errors;
      for (int k = 0; k < l.tls().certificates_size(); ++k) {
        CheckCertificateEntry(l.tls().certificates(k),
                              absl::StrCat(lp, ".tls.certificates[", k, "]"), &cert_errors);
      }
      for (const auto& [path, what] : cert_errors) f.Error(path, "%s", what);
      lc.tls_config = l.tls();
    }
    rc.listeners.push_back(std::move(lc));
  }

  const v1::L7Limits& lim = c.limits();
  CheckMax(f, "limits.max_header_bytes", lim.max_header_bytes(), 256, 1 << 20, "16384");
  rc.limits.max_header_bytes = Or(lim.max_header_bytes(), 16384u);
  CheckMax(f, "limits.max_header_count", lim.max_header_count(), 1, 10000, "100");
  rc.limits.max_header_count = Or(lim.max_header_count(), 100u);
  CheckMax(f, "limits.max_uri_bytes", lim.max_uri_bytes(), 16, 1 << 20, "8192");
  rc.limits.max_uri_bytes = Or(lim.max_uri_bytes(), 8192u);
  rc.limits.max_body_bytes = Or<uint64_t>(lim.max_body_bytes(), uint64_t{1} << 30);
  CheckMax(f, "limits.buffer_bytes", lim.buffer_bytes(), 4096, 16 << 20, "65536");
  rc.buffer_bytes = Or(lim.buffer_bytes(), 65536u);
  CheckMax(f, "limits.max_connections", lim.max_connections(), 1, 1'000'000, "10000");
  rc.max_connections = Or(lim.max_connections(), 10000u);
  CheckMax(f, "limits.h2_max_concurrent_streams", lim.h2_max_concurrent_streams(), 1, 10000, "100");
  rc.h2_max_concurrent_streams = Or(lim.h2_max_concurrent_streams(), 100u);

  const v1::L7Timeouts& t = c.timeouts();
  const uint64_t kHour = 3'600'000;
  CheckMax(f, "timeouts.client_header_ms", t.client_header_ms(), 10, kHour, "10000");
  CheckMax(f, "timeouts.idle_ms", t.idle_ms(), 10, kHour, "60000");
  CheckMax(f, "timeouts.upstream_connect_ms", t.upstream_connect_ms(), 10, kHour, "2000");
  CheckMax(f, "timeouts.upstream_response_ms", t.upstream_response_ms(), 10, kHour, "30000");
  CheckMax(f, "timeouts.client_body_ms", t.client_body_ms(), 10, kHour, "30000");
  rc.timeouts.client_header_ns = Or<int64_t>(t.client_header_ms(), 10000) * kMs;
  rc.timeouts.idle_ns = Or<int64_t>(t.idle_ms(), 60000) * kMs;
  rc.timeouts.upstream_connect_ns = Or<int64_t>(t.upstream_connect_ms(), 2000) * kMs;
  rc.timeouts.upstream_response_ns = Or<int64_t>(t.upstream_response_ms(), 30000) * kMs;
  rc.timeouts.client_body_ns = Or<int64_t>(t.client_body_ms(), 30000) * kMs;

  rc.sticky_secret_file = c.sticky_secret_file();
  if (c.has_sticky_store() && c.pools_size() > 0 &&
      std::none_of(c.pools().begin(), c.pools().end(), [](const v1::L7Pool& p) {
        return p.sticky_sessions() && p.sticky_source_ip() && !p.has_sticky_store();
      })) {
    // A global store no pool uses is a mistake worth saying.
    f.Error("sticky_store", "no pool with sticky_source_ip uses it");
  }
  if (!f.ok()) return f.ToStatus();
  return rc;
}

}  // namespace lb::l7
