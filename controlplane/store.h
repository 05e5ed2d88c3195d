// Persistence of the desired state (a lb.v1.Config with its version).
//
// The interface is what the multi-node work will implement with etcd; the
// file store is the embedded default: one file in a state directory written
// atomically (temp file, fsync, rename, fsync of the directory), so a kill -9
// at any moment leaves either the previous or the new version, never a torn
// one. A file that does not parse is refused loudly, never replaced.
//
// Threads: calls are serialized by the caller (ControlPlane's mutex).
#ifndef LB_CONTROLPLANE_STORE_H_
#define LB_CONTROLPLANE_STORE_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "lb/v1/config.pb.h"

namespace lb {

class Store {
 public:
  virtual ~Store() = default;
  // nullopt when nothing was ever stored.
  virtual absl::StatusOr<std::optional<v1::Config>> Load() = 0;
  // Durable when it returns OK. config.version() is the new version.
  virtual absl::Status Save(const v1::Config& config) = 0;
  // For logs: "file /var/lib/lb/state.textproto".
  virtual std::string Describe() const = 0;
};

// Creates the directory if needed and takes an exclusive lock on
// <dir>/.lock for the store's lifetime, so two servers never share one state
// directory. Fails when it cannot be created/written, or is locked.
absl::StatusOr<std::unique_ptr<Store>> NewFileStore(const std::string& dir);

}  // namespace lb

#endif  // LB_CONTROLPLANE_STORE_H_
