// StickyTable: L4 session persistence (IPVS "persistent" services) shared by
// every lcore of one dataplane process.
//
// A client address that picked a backend on a sticky VIP keeps it for
// ttl_ms after its last packet, whichever lcore sees its next connection, so
// the table is shared (unlike the per-lcore connection tables). It is
// consulted only for sticky VIPs: on a connection-table miss (Lookup /
// Insert, under the bucket's spinlock: new flows are rare next to packets)
// and, to keep "after its last packet" true for long connections, on a hit
// via Refresh, which reads the stamp without a lock and writes it only when it
// is older than a quarter of the TTL, so the shared line is written rarely.
//
// Fixed memory sized at creation (5-way buckets, two cache lines each; mmap once),
// no allocation afterwards. A full bucket replaces its stalest entry. Time is
// the caller's monotonic milliseconds (wrap-safe comparisons).
//
// CreateShared keeps the table in a named shared file (sticky_table_shm.h)
// that a restarted dataplane attaches, so a sticky client keeps its backend
// for its next connection across restarts. Time is CLOCK_MONOTONIC
// milliseconds (system-wide, valid across a process restart).
//
// Threads: every method may be called concurrently from any lcore. Create,
// CreateShared and the destructor are start-up / shutdown only.
#ifndef LB_LIB_STICKY_TABLE_H_
#define LB_LIB_STICKY_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lib/flow_key.h"
#include "lib/shared_file.h"

namespace lb {

struct StickyValue {
  uint32_t backend_slot;
  uint32_t incarnation;
};

class StickyTable {
 public:
  static constexpr uint32_t kWays = 5;

  // capacity: entries; rounded up to a power-of-two number of buckets.
  static absl::StatusOr<std::unique_ptr<StickyTable>> Create(uint32_t capacity);
  // The same table in the shared file `path`: attached when compatible (the
  // previous process's entries kept), else created empty; *report says which
  // and why (SharedFileAttach). Fails as AttachOrCreateSharedFile does
  // (e.g. FailedPrecondition when a live process owns the file).
  static absl::StatusOr<std::unique_ptr<StickyTable>> CreateShared(uint32_t capacity,
                                                                   const std::string& path,
                                                                   SharedFileAttach* report);
  // Marks a shared table closed clean, then unmaps.
  ~StickyTable();
  StickyTable(const StickyTable&) = delete;
  StickyTable& operator=(const StickyTable&) = delete;

  // The entry for (vip, family, client) if it was refreshed within ttl_ms.
  bool Lookup(uint32_t vip, AddrFamily family, const uint8_t* client, uint32_t now_ms,
              uint32_t ttl_ms, StickyValue* out);
  // Sets (vip, family, client) -> v, stamped now.
  void Insert(uint32_t vip, AddrFamily family, const uint8_t* client, const StickyValue& v,
              uint32_t now_ms);
  // Stamps an existing entry with now when its stamp is older than ttl_ms / 4
  // (cheap on the per-packet path: a lock-free read, a rare write).
  void Refresh(uint32_t vip, AddrFamily family, const uint8_t* client, uint32_t now_ms,
               uint32_t ttl_ms);
  // Drops the entry (e.g. its backend went down).
  void Erase(uint32_t vip, AddrFamily family, const uint8_t* client);

  size_t capacity() const { return static_cast<size_t>(mask_ + 1) * kWays; }
  bool shared() const { return file_header_ != nullptr; }
  // Entries in use (any age); a walk over every bucket, for start-up reports.
  size_t CountEntries() const;

 public:
  struct Bucket;  // defined in sticky_table.cc

 private:
  StickyTable() = default;

  Bucket* buckets_ = nullptr;
  uint32_t mask_ = 0;
  void* map_base_ = nullptr;
  size_t map_bytes_ = 0;
  void* file_header_ = nullptr;  // StickyTableFileHeader of a CreateShared table
};

}  // namespace lb

#endif  // LB_LIB_STICKY_TABLE_H_
