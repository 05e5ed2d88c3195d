// The mark -> backend map of lb-hc-encap (hc_encap.bpf.c `hc_reals`), pinned
// on a bpffs, as lb-controlplane fills it for health checks through the
// tunnel. Talks to the kernel with the bpf(2) syscall only (no libbpf).
//
// Contract: Open takes the pin path (--health_tunnel_map) and checks that
// the map has the layout of hc_reals (hash, u32 key, TunnelReal value). Sync
// makes the map hold exactly `entries` (mark -> backend):
// missing ones are added or updated first, then stale ones deleted, so a
// check in flight never loses its entry to a concurrent resync of others.
// The control plane owns the map's contents; lb-hc-encap only creates it.
//
// Failure: Open returns NotFound / FailedPrecondition naming the path;
// Sync returns Internal with the first bpf(2) error (the map may then hold a
// mix of old and new entries; the next Sync repairs it).
//
// Threads: one object per map; Sync is not reentrant (the health checker
// calls it under its own lock).
#ifndef LB_CONTROLPLANE_HEALTH_TUNNEL_MAP_H_
#define LB_CONTROLPLANE_HEALTH_TUNNEL_MAP_H_

#include <netinet/in.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/health_tunnel.h"

namespace lb {

class HealthTunnelMap {
 public:
  static absl::StatusOr<std::unique_ptr<HealthTunnelMap>> Open(const std::string& pin_path);
  ~HealthTunnelMap();
  HealthTunnelMap(const HealthTunnelMap&) = delete;
  HealthTunnelMap& operator=(const HealthTunnelMap&) = delete;

  absl::Status Sync(const std::map<uint32_t, TunnelReal>& entries);

  const std::string& path() const { return path_; }

 private:
  HealthTunnelMap(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_TUNNEL_MAP_H_
