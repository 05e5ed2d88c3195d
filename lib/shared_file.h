// A fixed-size table kept in a named shared file so that a restarted process
// finds it again: the attach-or-create discipline shared by the per-lcore
// connection tables (conn_table_shm.h) and the sticky table
// (sticky_table_shm.h).
//
// A table file starts with a header whose first 8 bytes are its magic; the
// rest of the layout is the table's own (it hands AttachOrCreateSharedFile
// its compatibility check and its header initialiser). Every header carries
// the same lifecycle fields, reached through SharedFileLife:
//   state       kSharedFileOpen while a process owns the file (writer_pid),
//               kSharedFileClosed after a clean close. A file still open whose
//               writer is gone was left by a crash; the table's check decides
//               whether it is kept.
//   attaches    times a process kept the entries.
//   discards    times a process found the file unusable and started empty
//               (the counter an operator reads; kept across discards when the
//               magic still matches).
//   last_discard_reason  why, naming the field at fault.
//
// Files live on hugetlbfs when the directory is a hugetlbfs mount, else on
// tmpfs (/dev/shm): sizes are multiples of 2 MiB so either works. Pages are
// faulted in by the thread that creates or attaches the file (first touch:
// on a NUMA machine that thread's node gets them, docs/ARCHITECTURE.md).
//
// Failures: Unavailable (open/stat/map of an existing file), FailedPrecondition
// (a live process owns the file: "<what> <path> is in use by pid N"),
// ResourceExhausted (cannot size or map a new file). An incompatible file is
// not an error: it is re-created empty and reported in SharedFileAttach.
//
// Threads: start-up and shutdown only.
#ifndef LB_LIB_SHARED_FILE_H_
#define LB_LIB_SHARED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace lb {

enum SharedFileState : uint32_t {
  kSharedFileNew = 0,     // never owned (being created)
  kSharedFileOpen = 1,    // owned by writer_pid, or left by a crash
  kSharedFileClosed = 2,  // closed clean
};

// What AttachOrCreateSharedFile found. Exactly one of created / attached /
// discarded is true.
struct SharedFileAttach {
  bool created = false;    // no file (or an empty one): a new, empty table
  bool attached = false;   // the previous process's entries were kept
  bool discarded = false;  // a file was there but incompatible or corrupt: started empty
  bool was_dirty = false;  // attached: the previous owner did not close it (crash)
  size_t entries = 0;      // live entries kept (attached; filled in by the table)
  uint64_t discards = 0;   // discards of this file so far, this one included (the counter)
  std::string reason;      // discarded: why, naming the field at fault
};

// Pointers to the lifecycle fields inside one mapped header.
struct SharedFileLife {
  uint32_t* state = nullptr;  // SharedFileState, atomic access
  uint32_t* writer_pid = nullptr;
  uint64_t* attaches = nullptr;
  uint64_t* discards = nullptr;
  uint64_t* closed_ms = nullptr;  // CLOCK_MONOTONIC ms of the last clean close
  char* last_discard_reason = nullptr;
  size_t reason_bytes = 0;
};

// The lifecycle fields of a file header type that names them as every table
// header does (state, writer_pid, attaches, discards, closed_ms,
// last_discard_reason[]).
template <typename Header>
SharedFileLife LifeOfHeader(void* base) {
  auto* h = static_cast<Header*>(base);
  SharedFileLife l;
  l.state = &h->state;
  l.writer_pid = &h->writer_pid;
  l.attaches = &h->attaches;
  l.discards = &h->discards;
  l.closed_ms = &h->closed_ms;
  l.last_discard_reason = h->last_discard_reason;
  l.reason_bytes = sizeof(h->last_discard_reason);
  return l;
}

// How one kind of table file looks. The magic is the header's first 8 bytes.
struct SharedFileFormat {
  const char* what = "";  // "conn table", "sticky table": starts every message
  uint64_t magic = 0;
  size_t header_bytes = 0;  // a shorter file is not a table
  uint64_t file_size = 0;   // the size this process creates (a multiple of 2 MiB)
  std::function<SharedFileLife(void* base)> life;
  // "" when the existing mapping is a table this process keeps, else why not
  // (naming the field). May adopt the mapping: it is not unmapped when "".
  std::function<std::string(void* base, size_t bytes)> check;
  // Writes the immutable header fields into a new, zero-filled file.
  std::function<void(void* base)> init;
};

struct SharedFileMapping {
  void* base = nullptr;
  size_t bytes = 0;
};

// Maps `path` read-write: keeps it when `format.check` accepts it, else
// truncates and re-creates it at format.file_size (zero-filled, header from
// format.init, discards and reason recorded). The lifecycle is left as it
// was: call MarkSharedFileOpen once the table has written what it wants.
absl::StatusOr<SharedFileMapping> AttachOrCreateSharedFile(const std::string& path,
                                                           const SharedFileFormat& format,
                                                           SharedFileAttach* report);

// Owned by this process from here (writer_pid, attaches, then a release-store
// of state = open: a crash after it leaves the file marked open).
void MarkSharedFileOpen(const SharedFileLife& life, bool attached);
// A clean close: closed_ms, writer_pid = 0, release-store of state = closed.
void MarkSharedFileClosed(const SharedFileLife& life);

// /proc/sys/kernel/random/boot_id, NUL padded. CLOCK_MONOTONIC restarts at
// boot, so stamps in a file are meaningful only within the boot that wrote it.
void ReadBootId(char out[40]);
bool SameBoot(const char boot_id[40]);

// Rounds up to the 2 MiB hugetlbfs page (file sizes must be multiples of it).
uint64_t RoundUpToHugePage(uint64_t bytes);

// Faults a mapping in (THP requested first: tmpfs honours it with
// shmem_enabled=advise; hugetlbfs pages are huge anyway) from the calling
// thread.
void PopulateMapping(void* p, size_t bytes);

}  // namespace lb

#endif  // LB_LIB_SHARED_FILE_H_
