#include "controlplane/cli/arguments.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"

namespace lb::cli {

absl::StatusOr<uint32_t> ParseU32(const std::string& what, const std::string& text) {
  uint32_t v = 0;
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0])) ||
      !absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", text, "\" is not a number (0..4294967295)"));
  }
  return v;
}

absl::StatusOr<HostPort> ParseHostPort(const std::string& what, const std::string& text) {
  HostPort hp;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"", text, "\" is not [ADDRESS]:PORT"));
    }
    hp.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": \"", text, "\" is not ADDRESS:PORT"));
    }
    hp.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"", text, "\": write IPv6 addresses as [ADDRESS]:PORT"));
    }
  }
  auto p = ParseU32(absl::StrCat(what, " port"), port);
  if (!p.ok()) return p.status();
  hp.port = *p;
  return hp;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace lb::cli
