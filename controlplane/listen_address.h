// The listen address of the admin HTTP server ("--http_listen"), parsed, and
// the text of the socket addresses it meets (peers, its own side).
// Pure functions, any thread.
#ifndef LB_CONTROLPLANE_LISTEN_ADDRESS_H_
#define LB_CONTROLPLANE_LISTEN_ADDRESS_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lb {

// A parsed listen address. ParseListenAddress takes "host:port" with an
// IPv4 literal or "localhost", or "[v6]:port"; InvalidArgument names `what`.
// main.cc uses `loopback` to require a bearer token off loopback.
struct ListenAddress {
  std::string host;  // numeric address
  uint16_t port = 0;
  bool ipv6 = false;
  bool loopback = false;
};
absl::StatusOr<ListenAddress> ParseListenAddress(absl::string_view text, absl::string_view what);

// "192.0.2.1:80", "[2001:db8::1]:80"; "?" for another family.
std::string SockaddrText(const sockaddr_storage& ss);
// The address without the port ("" for another family): the HTTP server's
// per-client key.
std::string SockaddrHost(const sockaddr_storage& ss);

}  // namespace lb

#endif  // LB_CONTROLPLANE_LISTEN_ADDRESS_H_
