// The etcd store: the desired state of several control planes in one etcd
// (v3 API over gRPC, proto/etcd/; one or more members of one cluster, plain
// or TLS: etcd_client.h), so every node builds the same tables.
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
// Several members (etcd://h1:2379,h2:2379,h3:2379/prefix): Load and Save
// use one member and, when it gives no answer, retry on the next ones
// (etcd_client.h), each attempt with its own deadline (timeout_ms). A Txn
// whose member died before answering may have been applied: when the retry
// on the next member finds its compare failed and the stored value is
// byte-for-byte the one it wrote, Save reports success (the write was
// applied once) instead of a conflict.
//
// etcd unreachable: when no member answers, the call is Unavailable listing
// each member's failure, and nothing was written (a Txn is atomic; with "no
// answer in time" etcd may still apply it later: then the next Save's
// compare fails and the watch brings it in, see docs/ARCHITECTURE.md).
//
// Watch: a thread keeps one Watch stream on <prefix>/state and calls
// on_change when the first stream is created and on every event. A stream
// that breaks is re-created on the next member 200 ms later from the
// revision after the last one delivered (start_revision), so etcd replays
// whatever changed meanwhile; when that revision was compacted away, the
// watch starts afresh and on_change reloads. Streams carry etcd's
// "hasleader" metadata: a member cut off from its cluster ends the stream.
//
// Threads: Load and Save from the caller (serialized by it); the watch
// thread calls on_change only.
#ifndef LB_CONTROLPLANE_ETCD_STORE_H_
#define LB_CONTROLPLANE_ETCD_STORE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "controlplane/etcd_client.h"
#include "controlplane/store.h"
#include "controlplane/store_url.h"

namespace lb {

struct EtcdStoreOptions {
  StoreUrl url;           // kind kEtcd
  EtcdTls tls;            // etcds:// (LoadEtcdTls)
  int timeout_ms = 2000;  // deadline of each Range / Txn
};

// Connects lazily: creating the store never fails on an unreachable etcd;
// the first Load does.
absl::StatusOr<std::unique_ptr<Store>> NewEtcdStore(const EtcdStoreOptions& options);

}  // namespace lb

#endif  // LB_CONTROLPLANE_ETCD_STORE_H_
