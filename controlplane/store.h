// Persistence of the desired state (a lb.v1.Config with its version).
//
// Two stores implement it: the etcd store for several control planes
// (etcd_store.h, --store=etcd://...) and the file store, the embedded
// default: one file in a state directory written
// atomically (temp file, fsync, rename, fsync of the directory), so a kill -9
// at any moment leaves either the previous or the new version, never a torn
// one.
//
// The file, <dir>/state.binpb, is the lb.v1.Config in protobuf wire format
// behind one checksum line:
//   # lb-controlplane state v2 sha256=<64 lowercase hex digits>\n
//   <wire format bytes>
// where the SHA-256 covers every byte after that line. (Format v1, before
// 2026-12-06, was text format in state.textproto: Load reads it when there is
// no state.binpb, and the next Save replaces it. Wire format because printing
// text was a fifth of an API call's time at 1,000 backends.) To read it:
//   tail -n +2 state.binpb | protoc --decode=lb.v1.Config -I proto lb/v1/config.proto
// or ask the API (lbctl, GET /backends, /pools, /vips). Load() trusts only
// what this store wrote: a file without that line (by hand, or by a build
// before checksums), with another digest (edited, corrupted, truncated), that
// is empty, does not parse or has no version fails with DataLoss naming the
// file and the way out (move it aside, seed a new store with --config). The
// message quotes at most a short prefix of the file. A refused file is never
// replaced or touched.
//
// Threads: Load and Save are serialized by the caller (ControlPlane's
// mutex); Watch's callback runs on the store's own thread.
//
// Several writers (the etcd store, etcd_store.h): Save is a compare-and-swap
// on what the last Load or Save saw. When another writer stored a state in
// between, Save changes nothing and fails with Aborted; the caller loads the
// fresh state and retries its change on it (ControlPlane::Impl::Run).
#ifndef LB_CONTROLPLANE_STORE_H_
#define LB_CONTROLPLANE_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "lb/v1/config.pb.h"

namespace lb {

// What /metrics says about the store (any thread may ask).
struct StoreHealth {
  bool up = true;          // the last call succeeded and, with a watch, it runs
  uint64_t conflicts = 0;  // Saves refused because another writer was first
};

class Store {
 public:
  virtual ~Store() = default;
  // nullopt when nothing was ever stored. DataLoss when what is stored is
  // not exactly what Save wrote; Unavailable when it cannot be read.
  virtual absl::StatusOr<std::optional<v1::Config>> Load() = 0;
  // Durable when it returns OK. config.version() is the new version.
  virtual absl::Status Save(const v1::Config& config) = 0;
  // For logs: "file /var/lib/lb/state.binpb".
  virtual std::string Describe() const = 0;
  // Stores with other writers call `on_change` (on their own thread, never
  // while Load or Save runs on it) when the stored state may have changed,
  // and each time their connection is (re)established, so the caller can
  // Load and catch up. The file store has no other writer and never calls
  // it. Call once.
  virtual void Watch(std::function<void()> on_change) { (void)on_change; }
  // Stops the watch: `on_change` is not running and is never called again
  // when it returns. Idempotent; the destructor calls it too.
  virtual void StopWatch() {}
  // Thread-safe; the file store is always up.
  virtual StoreHealth Health() const { return StoreHealth(); }
};

// The stored bytes of `config` (the file store's format, above; the etcd
// store keeps the same bytes as its value).
absl::StatusOr<std::string> EncodeStoredState(const v1::Config& config);
// The inverse: DataLoss naming `where` for anything EncodeStoredState did not
// write (no checksum line, another digest, does not parse, no version).
// `bytes` are untrusted (fuzz/stored_state_fuzz.cc).
absl::StatusOr<v1::Config> DecodeStoredState(const std::string& bytes, const std::string& where);

// Creates the directory if needed and takes an exclusive lock on
// <dir>/.lock for the store's lifetime, so two servers never share one state
// directory. Fails when it cannot be created/written, or is locked.
absl::StatusOr<std::unique_ptr<Store>> NewFileStore(const std::string& dir);

}  // namespace lb

#endif  // LB_CONTROLPLANE_STORE_H_
