// The listen address of the admin HTTP server ("--http_listen"), parsed.
// Pure function, any thread.
#ifndef LB_CONTROLPLANE_LISTEN_ADDRESS_H_
#define LB_CONTROLPLANE_LISTEN_ADDRESS_H_

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

}  // namespace lb

#endif  // LB_CONTROLPLANE_LISTEN_ADDRESS_H_
