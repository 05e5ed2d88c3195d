#include "controlplane/listen_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lb {

absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text, absl::string_view what) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", text, "\" ", why, " (expected host:port or [v6]:port)"));
  };
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) return bad("has no port");
  absl::string_view host = text.substr(0, colon);
  absl::string_view port_text = text.substr(colon + 1);
  uint32_t port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return bad("has a bad port");
  }
  ListenAddress a;
  a.port = static_cast<uint16_t>(port);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1)
      return bad("has a bad IPv6 address");
    a.ipv6 = true;
    a.loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    a.host = std::string(host);
    return a;
  }
  if (host == "localhost") host = "127.0.0.1";
  in_addr a4;
  if (inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1) return bad("has a bad IPv4 address");
  a.host = std::string(host);
  a.loopback = (ntohl(a4.s_addr) >> 24) == 127;
  return a;
}

std::string SockaddrHost(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof(buf));
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

std::string SockaddrText(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    return absl::StrCat(SockaddrHost(ss), ":",
                        ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    return absl::StrCat("[", SockaddrHost(ss),
                        "]:", ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port));
  }
  return "?";
}

}  // namespace lb
