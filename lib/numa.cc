#include "lib/numa.h"

#include "absl/strings/str_cat.h"

namespace lb {

std::vector<std::string> CrossSocketPolls(const std::vector<LcorePortPoll>& polls) {
  std::vector<std::string> out;
  for (const LcorePortPoll& p : polls) {
    if (p.lcore_socket < 0 || p.port_socket < 0 || p.lcore_socket == p.port_socket) continue;
    out.push_back(absl::StrCat(
        "worker ", p.worker, " (lcore ", p.lcore, ", socket ", p.lcore_socket, ") polls port ",
        p.port, " on socket ", p.port_socket,
        ": its packets cross sockets (give it an lcore of socket ", p.port_socket, " with -l)"));
  }
  return out;
}

}  // namespace lb
