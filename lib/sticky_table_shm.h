// The file format of the sticky (session-persistence) table kept in shared
// memory across dataplane restarts (StickyTable::CreateShared, implemented in
// sticky_table.cc; the attach-or-create discipline is lib/shared_file.h).
//
// A file <prefix>.sticky holds the table shared by every lcore: this header
// in the first 4 KiB, then the buckets exactly as StickyTable lays them out
// in private memory. A process attaches only when the magic, ABI version,
// header size, number of buckets (--sticky_table_size), ways, bucket size,
// key seed (entries are placed by hash) and file size are what it would
// create, and the boot id is this boot's: stamps are CLOCK_MONOTONIC
// milliseconds, a system-wide clock, so they stay valid across a process
// restart but not across a reboot. Anything else: the file is re-created
// empty and `discards` counts it.
//
// A crash can leave a bucket lock held: an attaching process (the only owner,
// before any lcore runs) clears every lock word. An entry half-written by the
// crash holds at worst a (slot, incarnation) pair that StillServes refuses,
// and the client picks afresh.
//
// Threads: the header is written at start-up and shutdown only.
#ifndef LB_LIB_STICKY_TABLE_SHM_H_
#define LB_LIB_STICKY_TABLE_SHM_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace lb {

inline constexpr uint64_t kStickyTableMagic = 0x31305954534c424cull;  // "LBLSTY01" little-endian
inline constexpr uint32_t kStickyTableAbiVersion = 1;
inline constexpr size_t kStickyTableHeaderBytes = 4096;            // buckets start here
inline constexpr uint64_t kStickyKeySeed = 0x6c6273746b793031ull;  // "lbstky01"

struct StickyTableFileHeader {
  // Immutable after creation.
  uint64_t magic;
  uint32_t abi_version;
  uint32_t header_size;  // sizeof(StickyTableFileHeader)
  uint32_t num_buckets;  // a power of two
  uint32_t ways;         // StickyTable::kWays
  uint32_t bucket_size;  // 128
  uint32_t reserved0;
  uint64_t key_seed;        // kStickyKeySeed
  uint64_t buckets_offset;  // kStickyTableHeaderBytes
  uint64_t file_size;
  char boot_id[40];
  // Written at attach and at close (lib/shared_file.h SharedFileLife).
  uint32_t state;       // SharedFileState (atomic access)
  uint32_t writer_pid;  // 0 after a clean close
  uint64_t attaches;
  uint64_t discards;
  uint64_t closed_ms;  // CLOCK_MONOTONIC ms of the last clean close
  char last_discard_reason[128];
};
static_assert(sizeof(StickyTableFileHeader) == 256, "sticky table file header layout");
static_assert(offsetof(StickyTableFileHeader, key_seed) == 32, "layout");
static_assert(offsetof(StickyTableFileHeader, boot_id) == 56, "layout");
static_assert(offsetof(StickyTableFileHeader, state) == 96, "layout");
static_assert(offsetof(StickyTableFileHeader, attaches) == 104, "layout");
static_assert(offsetof(StickyTableFileHeader, last_discard_reason) == 128, "layout");
static_assert(sizeof(StickyTableFileHeader) <= kStickyTableHeaderBytes, "fits its page");

// "<prefix>.sticky" (the dataplane uses the connection tables' prefix).
std::string StickyTableFileName(const std::string& prefix);

}  // namespace lb

#endif  // LB_LIB_STICKY_TABLE_SHM_H_
