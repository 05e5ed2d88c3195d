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
#include "google/protobuf/util/json_util.h"
#include "lib/encap.h"
#include "lib/maglev.h"
#include "proto/text_parse.h"

namespace lb {
namespace {

// Config files are small; the bound only stops a wrong path (a disk image, a
// device) from being read whole.
constexpr size_t kMaxConfigBytes = 64u << 20;

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

}  // namespace

// -------------------------------------------------------------- loading ---

absl::StatusOr<v1::Config> ParseConfigText(absl::string_view text, absl::string_view source) {
  v1::Config config;
  if (absl::Status st = ParseTextProto(text, source, &config); !st.ok()) return st;
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

}  // namespace lb
