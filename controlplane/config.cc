#include "controlplane/config.h"

#include "controlplane/algorithms.h"
#include "controlplane/health_tunnel.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "lib/encap.h"
#include "lib/maglev.h"

namespace lb {
namespace {

// Config files are small; the bound only stops a wrong path (a disk image, a
// device) from being read whole.
constexpr size_t kMaxConfigBytes = 64u << 20;
constexpr size_t kMaxPoolNameLen = 64;

// Collects text-format syntax errors with their position. The tokenizer
// reports 0-based lines and columns; people and editors count from 1.
class TextErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit TextErrorCollector(absl::string_view source) : source_(source) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message));
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    AddError(line, column, message);
  }

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string source_;
  std::vector<std::string> errors_;
};

const char* ProtoName(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    default:
      return "?";
  }
}

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

// Accumulates "<path>: <what>" findings so that one pass reports every
// problem of a config, not just the first.
class Findings {
 public:
  template <typename... Args>
  void Error(absl::string_view path, const absl::FormatSpec<Args...>& fmt, const Args&... args) {
    errors_.push_back(absl::StrCat(path, ": ", absl::StrFormat(fmt, args...)));
  }
  template <typename... Args>
  void Warning(absl::string_view path, const absl::FormatSpec<Args...>& fmt, const Args&... args) {
    warnings_.push_back(absl::StrCat(path, ": ", absl::StrFormat(fmt, args...)));
  }
  bool ok() const { return errors_.empty(); }
  absl::Status ToStatus() const {
    if (errors_.empty()) return absl::OkStatus();
    std::vector<std::string> shown(errors_.begin(),
                                   errors_.begin() + std::min(errors_.size(), kMaxReportedErrors));
    std::string msg = absl::StrJoin(shown, "; ");
    if (errors_.size() > shown.size()) {
      absl::StrAppend(&msg, "; ... and ", errors_.size() - shown.size(), " more");
    }
    return absl::InvalidArgumentError(msg);
  }
  std::vector<std::string>& warnings() { return warnings_; }

 private:
  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
};

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

}  // namespace

// -------------------------------------------------------------- loading ---

absl::StatusOr<v1::Config> ParseConfigText(absl::string_view text, absl::string_view source) {
  v1::Config config;
  google::protobuf::TextFormat::Parser parser;
  TextErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  const bool ok = parser.ParseFromString(std::string(text), &config);
  if (!ok || !errors.errors().empty()) {
    if (errors.errors().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": not a valid lb.v1.Config"));
    }
    return absl::InvalidArgumentError(absl::StrJoin(errors.errors(), "; "));
  }
  return config;
}

absl::StatusOr<v1::Config> ParseConfigJson(absl::string_view json, absl::string_view source) {
  v1::Config config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(std::string(json), &config, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": invalid JSON config: ", std::string(st.message())));
  }
  return config;
}

absl::StatusOr<v1::Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read config ", path));
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", kMaxConfigBytes, " bytes; not a config file?"));
    }
  }
  if (in.bad()) return absl::UnavailableError(absl::StrCat("error reading config ", path));
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".json")) return ParseConfigJson(text, path);
  for (const char* ext : {".textproto", ".txtpb", ".pbtxt", ".textpb"}) {
    if (absl::EndsWith(lower, ext)) return ParseConfigText(text, path);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path,
                   ": unknown config format; name it *.textproto (protobuf text format) "
                   "or *.json (proto3 JSON)"));
}

// ------------------------------------------------------------ addresses ---

bool IsPoolName(absl::string_view s) {
  return !s.empty() && s.size() <= kMaxPoolNameLen && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
           c == '-';
  });
}

bool IsScriptName(absl::string_view s) {
  auto name_char = [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  };
  return !s.empty() && s.size() <= kMaxScriptNameLen && s[0] != '.' && s[0] != '-' &&
         std::all_of(s.begin(), s.end(), name_char);
}

bool IsScriptArg(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string QuoteBounded(absl::string_view input) {
  if (input.size() <= kMaxQuotedBytes) return absl::CHexEscape(input);
  return absl::StrCat(absl::CHexEscape(input.substr(0, kMaxQuotedBytes)), "...");
}

absl::StatusOr<IpAddress> ParseIpAddress(absl::string_view text) {
  IpAddress a;
  // inet_pton reads a C string: "10.9.0.1\0x" would parse as 10.9.0.1. The
  // longest IPv6 literal with an embedded IPv4 part is 45 characters.
  if (text.find('\0') != absl::string_view::npos || text.size() >= INET6_ADDRSTRLEN) {
    return absl::InvalidArgumentError(
        absl::StrFormat("\"%s\" is not an IPv4 or IPv6 address", QuoteBounded(text)));
  }
  const std::string s(text);
  char buf[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    // glibc's inet_pton accepts only four decimal octets without leading
    // zeros: the input is already the canonical text (inet_ntop would cost a
    // third of validating a 1,000-backend config).
    a.family = AddrFamily::kIPv4;
    a.text = s;
  } else if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AddrFamily::kIPv6;
    inet_ntop(AF_INET6, a.bytes.data(), buf, sizeof(buf));
    a.text = buf;
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("\"%s\" is not an IPv4 or IPv6 address", QuoteBounded(s)));
  }
  bool all_zero = true;
  for (uint8_t b : a.bytes) all_zero &= (b == 0);
  if (all_zero) {
    return absl::InvalidArgumentError(
        absl::StrFormat("\"%s\" is the unspecified address", QuoteBounded(s)));
  }
  return a;
}

absl::Status CheckUnicastAddress(const IpAddress& a) {
  const uint8_t* b = a.bytes.data();
  const char* what = nullptr;
  if (a.family == AddrFamily::kIPv4) {
    if (b[0] == 0) {
      what = "in 0.0.0.0/8 (this network)";
    } else if (b[0] == 127) {
      what = "a loopback address";
    } else if (b[0] == 169 && b[1] == 254) {
      what = "a link-local address";
    } else if (b[0] >= 224 && b[0] < 240) {
      what = "a multicast address";
    } else if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) {
      what = "the broadcast address";
    } else if (b[0] >= 240) {
      what = "in 240.0.0.0/4 (reserved)";
    }
  } else if (a.family == AddrFamily::kIPv6) {
    static constexpr uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(b, b + 16, kLoopback)) {
      what = "a loopback address";
    } else if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) {
      what = "a link-local address";
    } else if (b[0] == 0xff) {
      what = "a multicast address";
    } else if (std::equal(b, b + 12, kMapped)) {
      what = "an IPv4-mapped address (write it as IPv4)";
    }
  }
  if (what == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(a.text, " is ", what, ", not a unicast address"));
}

IpAddress IpAddressFromBytes(AddrFamily family, const uint8_t* bytes) {
  IpAddress a;
  a.family = family;
  const size_t len = family == AddrFamily::kIPv4 ? 4 : 16;
  std::copy(bytes, bytes + len, a.bytes.begin());
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == AddrFamily::kIPv4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof(buf));
  a.text = buf;
  return a;
}

std::string VipKey(const IpAddress& address, uint8_t proto, uint16_t port) {
  if (address.family == AddrFamily::kIPv6) {
    return absl::StrCat("[", address.text, "]:", port, "/", ProtoName(proto));
  }
  return absl::StrCat(address.text, ":", port, "/", ProtoName(proto));
}

std::string DesiredVip::Key() const { return VipKey(address, proto, port); }

uint32_t DesiredPool::NumTakingNewFlows() const {
  uint32_t n = 0;
  for (const DesiredBackend& b : backends) n += b.TakesNewFlows() ? 1 : 0;
  return n;
}

const DesiredPool* DesiredState::FindPool(absl::string_view name) const {
  for (const DesiredPool& p : pools) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

size_t DesiredState::NumBackends() const {
  size_t n = 0;
  for (const DesiredPool& p : pools) n += p.backends.size();
  return n;
}

// ----------------------------------------------------------- validation ---

absl::StatusOr<DesiredState> ValidateConfig(const v1::Config& config, const TableCapacities& caps,
                                            std::vector<std::string>* warnings) {
  Findings f;
  DesiredState d;

  // node
  if (!config.node().tunnel_source_ipv4().empty()) {
    d.tunnel_source_v4 = ParseAddressField(f, "node.tunnel_source_ipv4",
                                           config.node().tunnel_source_ipv4(), AddrFamily::kIPv4);
  }
  if (!config.node().tunnel_source_ipv6().empty()) {
    d.tunnel_source_v6 = ParseAddressField(f, "node.tunnel_source_ipv6",
                                           config.node().tunnel_source_ipv6(), AddrFamily::kIPv6);
  }
  ParseSourcePrefix(f, "node.tunnel_source_ipv4", config.node().tunnel_source_ipv4_prefix(),
                    AddrFamily::kIPv4, &d.tunnel_source_v4, &d.tunnel_source_v4_prefix_len);
  ParseSourcePrefix(f, "node.tunnel_source_ipv6", config.node().tunnel_source_ipv6_prefix(),
                    AddrFamily::kIPv6, &d.tunnel_source_v6, &d.tunnel_source_v6_prefix_len);

  // tables
  d.ring_size = config.tables().ring_size() == 0 ? kDefaultRingSize : config.tables().ring_size();
  bool ring_ok = true;
  if (absl::Status st = ValidateMaglevTableSize(d.ring_size); !st.ok()) {
    f.Error("tables.ring_size", "%u is not a valid Maglev table size (%s)", d.ring_size,
            st.message());
    ring_ok = false;
  } else if (d.ring_size > caps.max_ring_size) {
    f.Error("tables.ring_size",
            "%u exceeds the table region's max_ring_size %u (raise --max_ring_size)", d.ring_size,
            caps.max_ring_size);
    ring_ok = false;
  }

  // pools
  std::map<std::string, int> pool_index;  // name -> first index
  // Explicit id -> (pool, backend) index of its first use. Paths are built
  // only for errors: validation runs in every API transaction, over every
  // backend, and must stay cheap at thousands of backends.
  std::map<uint32_t, std::pair<int, int>> backend_ids;
  size_t total_backends = 0;
  bool capacity_reported = false;
  for (int i = 0; i < config.pools_size(); ++i) {
    const v1::Pool& p = config.pools(i);
    const std::string pp = absl::StrCat("pools[", i, "]");
    DesiredPool dp;
    dp.name = p.name();
    if (p.name().empty()) {
      f.Error(pp + ".name", "must not be empty");
    } else if (!IsPoolName(p.name())) {
      f.Error(pp + ".name", "\"%s\" must be 1-%u characters of [A-Za-z0-9_.:-]",
              QuoteBounded(p.name()), kMaxPoolNameLen);
    } else if (auto [it, fresh] = pool_index.emplace(p.name(), i); !fresh) {
      f.Error(pp + ".name", "duplicate pool name \"%s\" (first at pools[%d])", p.name(),
              it->second);
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
    // A backend's identity in its pool: family + address bytes, + port in a
    // proxy pool (a DSR packet keeps the VIP's port, so there the address
    // alone says where packets go).
    std::map<std::array<uint8_t, 19>, int> identities;  // -> first index
    dp.backends.reserve(static_cast<size_t>(p.backends_size()));
    for (int j = 0; j < p.backends_size(); ++j) {
      const v1::Backend& b = p.backends(j);
      const auto field = [&pp, j](const char* name) {
        return absl::StrCat(pp, ".backends[", j, "]", name);
      };
      DesiredBackend db;
      ++total_backends;
      if (total_backends > caps.max_backends - 1 && !capacity_reported) {
        f.Error(field(""),
                "backend number %u exceeds the table capacity of %u backends (--max_backends %u "
                "includes the reserved slot 0)",
                total_backends, caps.max_backends - 1, caps.max_backends);
        capacity_reported = true;
      }
      db.id = b.id();
      if (b.id() != 0) {
        if (auto [it, fresh] = backend_ids.emplace(b.id(), std::make_pair(i, j)); !fresh) {
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
        std::array<uint8_t, 19> k{};
        k[0] = static_cast<uint8_t>(db.address.family);
        std::copy(db.address.bytes.begin(), db.address.bytes.end(), k.begin() + 1);
        if (dp.proxy) {
          k[17] = static_cast<uint8_t>(b.port() >> 8);
          k[18] = static_cast<uint8_t>(b.port());
        }
        if (auto [it, fresh] = identities.emplace(k, j); !fresh) {
          if (dp.proxy) {
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
      dp.backends.push_back(std::move(db));
    }
    if (ring_ok && !dp.proxy && dp.NumTakingNewFlows() > d.ring_size) {
      f.Error("tables.ring_size", "%u is smaller than the %u active backends of pool \"%s\"",
              d.ring_size, dp.NumTakingNewFlows(), dp.name);
    }
    d.pools.push_back(std::move(dp));
  }
  // A DSR backend of a family without an outer source of that family: the
  // dataplane falls back to its own address (--ipv4 / --ipv6), which may or
  // may not be one the backends route back to; say so, refuse nothing.
  auto find_backend = [&](AddrFamily fam) -> std::string {
    for (int i = 0; i < config.pools_size(); ++i) {
      if (d.pools[i].proxy) continue;
      for (int j = 0; j < config.pools(i).backends_size(); ++j) {
        const DesiredBackend& b = d.pools[i].backends[j];
        if (b.address.family == fam) {
          return absl::StrCat("pools[", i, "].backends[", j, "] (", b.address.text, ")");
        }
      }
    }
    return "";
  };
  if (d.tunnel_source_v4.empty()) {
    if (std::string who = find_backend(AddrFamily::kIPv4); !who.empty()) {
      f.Warning("node.tunnel_source_ipv4",
                "unset: IPv4 tunnels to %s leave from lb-dataplane's --ipv4 (without it they are "
                "dropped as no_next_hop)",
                who);
    }
  }
  if (d.tunnel_source_v6.empty()) {
    if (std::string who = find_backend(AddrFamily::kIPv6); !who.empty()) {
      f.Warning("node.tunnel_source_ipv6",
                "unset: IPv6 tunnels to %s leave from lb-dataplane's --ipv6 (without it they are "
                "dropped as no_next_hop)",
                who);
    }
  }

  // vips
  std::map<std::string, int> vip_keys;
  std::map<uint32_t, int> vip_ids;
  uint64_t members = 0;
  bool members_reported = false;
  for (int i = 0; i < config.vips_size(); ++i) {
    const v1::Vip& v = config.vips(i);
    const std::string vp = absl::StrCat("vips[", i, "]");
    DesiredVip dv;
    if (static_cast<uint32_t>(i) == caps.max_vips) {
      f.Error(vp, "VIP number %d exceeds the table capacity of %u VIPs (--max_vips)", i + 1,
              caps.max_vips);
    }
    dv.id = v.id();
    if (v.id() != 0) {
      if (auto [it, fresh] = vip_ids.emplace(v.id(), i); !fresh) {
        f.Error(vp + ".id", "duplicate VIP id %u (first at vips[%d])", v.id(), it->second);
      }
    }
    dv.address = ParseAddressField(f, vp + ".address", v.address());
    switch (v.protocol()) {
      case v1::PROTOCOL_TCP:
        dv.proto = IPPROTO_TCP;
        break;
      case v1::PROTOCOL_UDP:
        dv.proto = IPPROTO_UDP;
        break;
      case v1::PROTOCOL_UNSPECIFIED:
        f.Error(vp + ".protocol", "required (PROTOCOL_TCP or PROTOCOL_UDP)");
        break;
      default:
        f.Error(vp + ".protocol", "unknown protocol %d", static_cast<int>(v.protocol()));
        break;
    }
    if (v.port() > 65535) {
      f.Error(vp + ".port", "%u is not a port (0..65535; 0 = all ports)", v.port());
    }
    dv.port = static_cast<uint16_t>(v.port());
    dv.pool = v.pool();
    dv.fragment_tolerant = v.fragment_tolerant();
    if (!dv.address.empty() && dv.proto != 0 && v.port() <= 65535) {
      if (auto [it, fresh] = vip_keys.emplace(dv.Key(), i); !fresh) {
        f.Error(vp, "duplicate VIP %s (first at vips[%d])", dv.Key(), it->second);
      }
    }
    const DesiredPool* pool = nullptr;
    if (v.pool().empty()) {
      f.Error(vp + ".pool", "required: the name of a pool");
    } else if (pool = d.FindPool(v.pool()); pool == nullptr) {
      f.Error(vp + ".pool", "no pool named \"%s\"", QuoteBounded(v.pool()));
    } else if (pool->proxy) {
      f.Error(vp + ".pool",
              "pool \"%s\" is a proxy pool (POOL_KIND_PROXY, reached by lb-l7 at address:port); "
              "an L4 VIP forwards by direct server return and needs a DSR pool",
              pool->name);
    } else {
      const uint32_t n = pool->NumTakingNewFlows();
      if (n == 0) {
        f.Warning(vp + ".pool",
                  "pool \"%s\" has no active backend with weight > 0; traffic to %s is dropped "
                  "(no_backend)",
                  pool->name, dv.address.empty() ? v.address() : dv.Key());
      }
      members += n;
      if (members > caps.max_members && !members_reported) {
        f.Error(vp + ".pool",
                "VIP member lists would total %u entries, beyond the table capacity of %u "
                "(--max_members)",
                members, caps.max_members);
        members_reported = true;
      }
    }
    d.vips.push_back(std::move(dv));
  }

  if (warnings != nullptr) {
    for (std::string& w : f.warnings()) warnings->push_back(std::move(w));
  }
  if (!f.ok()) return f.ToStatus();
  return d;
}

}  // namespace lb
