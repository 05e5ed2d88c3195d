// The file format of a connection table kept in shared memory across
// dataplane restarts (ConnTable::CreateShared / OpenForPeek, implemented in
// conn_table_shm.cc).
//
// A file <prefix>.conn.<lcore> holds one lcore's table: this header in the
// first 4 KiB, then the bucket headers, then the entries, exactly as
// ConnTable lays them out in private memory. The immutable part (magic
// through timeouts) is written when the file is created; a process attaches
// only when every geometry field equals what it would create, the flow hash
// seed is the same (entries are placed by hash) and the boot id is this
// boot's (stamps are CLOCK_MONOTONIC milliseconds, which restart at boot).
// Anything else: the file is re-created empty and `discards` counts it.
//
// state: kConnFileOpen while a process owns the table (writer_pid), set to
// kConnFileClosed by a clean shutdown (with size, sweep_cursor, closed_ms).
// A file still marked open whose writer is gone was left by a crash; it is
// attached only if ConnTable::Validate accepts its bookkeeping.
//
// Creation, attachment, the in-use check and the lifecycle fields are the
// shared-file discipline of lib/shared_file.h (the sticky table uses it too).
//
// Threads: the owner lcore writes entries; the header is written at start-up
// and shutdown only. Readers (Explain, a restarted dataplane's grace period)
// map it read-only and use ConnTable::Peek.
#ifndef LB_LIB_CONN_TABLE_SHM_H_
#define LB_LIB_CONN_TABLE_SHM_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "lib/shared_file.h"

namespace lb {

inline constexpr uint64_t kConnTableMagic = 0x31304e4e4f43424cull;  // "LBCONN01" little-endian
inline constexpr uint32_t kConnTableAbiVersion = 1;
inline constexpr size_t kConnTableHeaderBytes = 4096;  // buckets start here

// The lifecycle states (shared_file.h), by their connection-table names.
inline constexpr uint32_t kConnFileNew = kSharedFileNew;
inline constexpr uint32_t kConnFileOpen = kSharedFileOpen;
inline constexpr uint32_t kConnFileClosed = kSharedFileClosed;

struct ConnTableFileHeader {
  // Immutable after creation.
  uint64_t magic;
  uint32_t abi_version;
  uint32_t header_size;  // sizeof(ConnTableFileHeader)
  uint32_t capacity;     // entries (a power of two)
  uint32_t num_buckets;
  uint32_t bucket_size;  // 64
  uint32_t entry_size;   // 64
  uint32_t key_size;     // sizeof(FlowKey)
  uint32_t value_size;   // sizeof(ConnValue)
  uint64_t flow_hash_seed;
  uint64_t buckets_offset;
  uint64_t entries_offset;
  uint64_t file_size;
  char boot_id[40];  // /proc/sys/kernel/random/boot_id, NUL padded
  uint32_t owner_lcore;
  uint32_t timeout_ms[4];  // of the last owner, by ConnClass (informational)
  uint32_t reserved0;
  // Written at attach and at close.
  uint32_t state;       // SharedFileState (atomic access)
  uint32_t writer_pid;  // 0 after a clean close
  uint32_t size;        // live entries at the last close
  uint32_t sweep_cursor;
  uint64_t attaches;   // times a process kept the entries
  uint64_t discards;   // times a process found the file unusable and started empty
  uint64_t closed_ms;  // CLOCK_MONOTONIC ms of the last clean close
  char last_discard_reason[128];
};
static_assert(sizeof(ConnTableFileHeader) == 304, "conn table file header layout");
static_assert(offsetof(ConnTableFileHeader, flow_hash_seed) == 40, "layout");
static_assert(offsetof(ConnTableFileHeader, boot_id) == 72, "layout");
static_assert(offsetof(ConnTableFileHeader, state) == 136, "layout");
static_assert(offsetof(ConnTableFileHeader, attaches) == 152, "layout");
static_assert(offsetof(ConnTableFileHeader, last_discard_reason) == 176, "layout");
static_assert(sizeof(ConnTableFileHeader) <= kConnTableHeaderBytes, "fits its page");

// The file of lcore `lcore` for a prefix (the dataplane uses its stats
// region's path): "<prefix>.conn.<lcore>".
std::string ConnTableFileName(const std::string& prefix, uint32_t lcore);

}  // namespace lb

#endif  // LB_LIB_CONN_TABLE_SHM_H_
