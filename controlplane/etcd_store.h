// The etcd store: the desired state of several control planes in one etcd
// (v3 API over gRPC, proto/etcd/), so every node builds the same tables.
//
// Layout: one key, <prefix>/state, whose value is exactly what the file
// store writes (EncodeStoredState: checksum line + lb.v1.Config wire
// format), so a value not written by lb-controlplane is refused as DataLoss.
//
// Writes: Save is one Txn: "if mod_revision(<prefix>/state) is the revision
// the last Load/Save saw, put the new value". When another control plane
// wrote in between, nothing changes and Save fails with Aborted; the
// ControlPlane reloads and retries its change on the fresh state (store.h).
// So two control planes never lose each other's changes.
//
// etcd unreachable: every call has a deadline (timeout_ms); any failure to
// get an answer is Unavailable naming the endpoint, and nothing was written
// (a Txn is atomic; with "no answer in time" etcd may still apply it later:
// then the next Save's compare fails and the watch brings it in, see
// docs/ARCHITECTURE.md).
//
// Watch: a thread keeps one Watch stream on <prefix>/state and calls on_change
// when the stream is created (again: after etcd came back) and on every
// event. While etcd is away it retries every 200 ms (gRPC reconnect backoff
// capped at 1 s).
//
// Threads: Load and Save from the caller (serialized by it); the watch
// thread calls on_change only.
#ifndef LB_CONTROLPLANE_ETCD_STORE_H_
#define LB_CONTROLPLANE_ETCD_STORE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "controlplane/store.h"
#include "controlplane/store_url.h"

namespace lb {

struct EtcdStoreOptions {
  StoreUrl url;           // kind kEtcd
  int timeout_ms = 2000;  // deadline of each Range / Txn
};

// Connects lazily: creating the store never fails on an unreachable etcd;
// the first Load does.
absl::StatusOr<std::unique_ptr<Store>> NewEtcdStore(const EtcdStoreOptions& options);

}  // namespace lb

#endif  // LB_CONTROLPLANE_ETCD_STORE_H_
