// ConnTable in a shared file: CreateShared, OpenForPeek, the destructor
// (clean-close marker). File format in conn_table_shm.h.
#include "lib/conn_table_shm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/conn_table.h"
#include "lib/flow_hash.h"
#include "lib/shm_region.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace lb {
namespace {

constexpr size_t kHugePageBytes = size_t{2} << 20;  // also hugetlbfs' page: sizes are multiples

struct Layout {
  uint32_t num_buckets;
  uint32_t capacity;
  uint64_t buckets_offset;
  uint64_t entries_offset;
  uint64_t file_size;
};

void ReadBootId(char out[40]) {
  std::memset(out, 0, 40);
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (std::getline(f, id)) std::memcpy(out, id.data(), id.size() < 39 ? id.size() : 39);
}

std::string Errno(const std::string& what, const std::string& path) {
  return absl::StrCat("conn table ", what, " ", path, ": ", std::strerror(errno));
}

// The first field of `h` that differs from what this process would create,
// or "" when the file is compatible. `owner` < 0: any owner (OpenForPeek).
std::string Incompatibility(const ConnTableFileHeader& h, size_t file_size, const Layout& want,
                            int64_t owner, bool any_capacity) {
  if (h.magic != kConnTableMagic) return "bad magic (not a connection table)";
  if (h.abi_version != kConnTableAbiVersion) {
    return absl::StrFormat("ABI version %u, this binary writes %u", h.abi_version,
                           kConnTableAbiVersion);
  }
  if (h.header_size != sizeof(ConnTableFileHeader)) {
    return absl::StrFormat("header_size %u, want %u", h.header_size, sizeof(ConnTableFileHeader));
  }
  if (!any_capacity && h.capacity != want.capacity) {
    return absl::StrFormat("capacity %u entries, --conn_table_size makes %u", h.capacity,
                           want.capacity);
  }
  if (h.capacity == 0 || (h.capacity & (h.capacity - 1)) != 0 ||
      h.num_buckets * uint64_t{ConnTable::kWays} != h.capacity) {
    return absl::StrFormat("num_buckets %u does not match capacity %u", h.num_buckets, h.capacity);
  }
  if (h.bucket_size != 64 || h.entry_size != 64 || h.key_size != sizeof(FlowKey) ||
      h.value_size != sizeof(ConnValue)) {
    return absl::StrFormat("entry layout (bucket %u, entry %u, key %u, value %u bytes) differs",
                           h.bucket_size, h.entry_size, h.key_size, h.value_size);
  }
  if (h.flow_hash_seed != kFlowHashSeed) return "flow hash seed differs (entries placed by hash)";
  const uint64_t entries_end = h.entries_offset + uint64_t{h.capacity} * 64;
  if (h.buckets_offset != kConnTableHeaderBytes ||
      h.entries_offset != h.buckets_offset + uint64_t{h.num_buckets} * 64 ||
      entries_end > h.file_size || h.file_size != file_size) {
    return absl::StrFormat("offsets or file_size %u (file is %u bytes) inconsistent", h.file_size,
                           file_size);
  }
  char boot[40];
  ReadBootId(boot);
  if (std::memcmp(boot, h.boot_id, sizeof(boot)) != 0) {
    return "written during another boot (its CLOCK_MONOTONIC stamps mean nothing now)";
  }
  if (owner >= 0 && h.owner_lcore != static_cast<uint64_t>(owner)) {
    return absl::StrFormat("owner lcore %u, want %d", h.owner_lcore, owner);
  }
  return "";
}

// Faults the mapping in (THP requested first: tmpfs honours it with
// shmem_enabled=advise; hugetlbfs pages are huge anyway). Reading, not
// writing, on old kernels: the file may hold entries.
void Populate(void* p, size_t bytes) {
  madvise(p, bytes, MADV_HUGEPAGE);
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
    volatile const char* c = static_cast<volatile const char*>(p);
    for (size_t off = 0; off < bytes; off += 4096) (void)c[off];
  }
}

}  // namespace

std::string ConnTableFileName(const std::string& prefix, uint32_t lcore) {
  return absl::StrCat(prefix, ".conn.", lcore);
}

void ConnTable::AdoptFile(void* base, size_t bytes, uint32_t capacity) {
  map_base_ = base;
  map_bytes_ = bytes;
  buckets_ = reinterpret_cast<Bucket*>(static_cast<char*>(base) + kConnTableHeaderBytes);
  entries_ = reinterpret_cast<Entry*>(reinterpret_cast<char*>(buckets_) +
                                      size_t{capacity / kWays} * sizeof(Bucket));
  capacity_ = capacity;
  bucket_mask_ = capacity / kWays - 1;
  size_ = 0;
  for (uint32_t b = 0; b <= bucket_mask_; ++b) size_ += __builtin_popcount(buckets_[b].valid);
}

absl::StatusOr<std::unique_ptr<ConnTable>> ConnTable::CreateShared(const ConnTableOptions& options,
                                                                   const std::string& path,
                                                                   uint32_t owner_lcore,
                                                                   ConnTableAttach* report) {
  *report = ConnTableAttach();
  absl::StatusOr<uint32_t> nb = NumBuckets(options);
  if (!nb.ok()) return nb.status();
  Layout want;
  want.num_buckets = *nb;
  want.capacity = *nb * kWays;
  want.buckets_offset = kConnTableHeaderBytes;
  want.entries_offset = want.buckets_offset + uint64_t{want.num_buckets} * sizeof(Bucket);
  want.file_size =
      (want.entries_offset + uint64_t{want.capacity} * sizeof(Entry) + kHugePageBytes - 1) &
      ~(uint64_t{kHugePageBytes} - 1);

  const int fd = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0) return absl::UnavailableError(Errno("cannot create", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const std::string err = Errno("cannot stat", path);
    close(fd);
    return absl::UnavailableError(err);
  }
  std::unique_ptr<ConnTable> t(new ConnTable());
  t->SetTimeouts(options);
  uint64_t prior_discards = 0;
  const size_t old_size = static_cast<size_t>(st.st_size);
  if (old_size == 0) {
    report->created = true;
  } else if (old_size < sizeof(ConnTableFileHeader)) {
    report->reason = absl::StrFormat("file of %u bytes is shorter than a header", old_size);
  } else {
    void* p = mmap(nullptr, old_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const std::string err = Errno("cannot map", path);
      close(fd);
      return absl::UnavailableError(err);
    }
    auto* h = static_cast<ConnTableFileHeader*>(p);
    const uint32_t state = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
    if (h->magic == kConnTableMagic) prior_discards = h->discards;
    if (state == kConnFileOpen && h->writer_pid != 0 &&
        static_cast<pid_t>(h->writer_pid) != getpid() && kill(h->writer_pid, 0) == 0) {
      const uint32_t pid = h->writer_pid;
      munmap(p, old_size);
      close(fd);
      return absl::FailedPreconditionError(
          absl::StrFormat("conn table %s is in use by pid %u", path, pid));
    }
    report->reason = Incompatibility(*h, old_size, want, owner_lcore, false);
    if (report->reason.empty()) {
      Populate(p, old_size);
      t->AdoptFile(p, old_size, want.capacity);
      t->sweep_cursor_ = h->sweep_cursor & t->bucket_mask_;
      if (absl::Status v = t->Validate(); !v.ok()) {
        report->reason = absl::StrCat("bookkeeping does not validate: ", v.message());
        t->map_base_ = nullptr;  // unmapped below, before re-creation
      } else {
        report->attached = true;
        report->was_dirty = state != kConnFileClosed;
        report->entries = t->size_;
      }
    }
    if (!report->attached) munmap(p, old_size);
  }

  if (!report->attached) {
    if (!report->created) {
      report->discarded = true;
      report->discards = prior_discards + 1;
    }
    // Truncate to zero first: the re-created table starts zero-filled.
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, static_cast<off_t>(want.file_size)) != 0) {
      const std::string err = Errno("cannot size", path);
      close(fd);
      return absl::ResourceExhaustedError(err);
    }
    void* p = mmap(nullptr, want.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const std::string err = Errno("cannot map", path) + " (hugepages or /dev/shm exhausted?)";
      close(fd);
      return absl::ResourceExhaustedError(err);
    }
    Populate(p, want.file_size);
    auto* h = static_cast<ConnTableFileHeader*>(p);
    h->magic = kConnTableMagic;
    h->abi_version = kConnTableAbiVersion;
    h->header_size = sizeof(ConnTableFileHeader);
    h->capacity = want.capacity;
    h->num_buckets = want.num_buckets;
    h->bucket_size = sizeof(Bucket);
    h->entry_size = sizeof(Entry);
    h->key_size = sizeof(FlowKey);
    h->value_size = sizeof(ConnValue);
    h->flow_hash_seed = kFlowHashSeed;
    h->buckets_offset = want.buckets_offset;
    h->entries_offset = want.entries_offset;
    h->file_size = want.file_size;
    ReadBootId(h->boot_id);
    h->owner_lcore = owner_lcore;
    h->discards = report->discards;
    std::snprintf(h->last_discard_reason, sizeof(h->last_discard_reason), "%s",
                  report->reason.c_str());
    t->AdoptFile(p, want.file_size, want.capacity);
  }
  close(fd);

  auto* h = static_cast<ConnTableFileHeader*>(t->map_base_);
  for (int c = 0; c < kNumConnClasses; ++c) h->timeout_ms[c] = t->timeout_ms_[c];
  h->writer_pid = static_cast<uint32_t>(getpid());
  if (report->attached) ++h->attaches;
  // Published last: from here a crash leaves the file marked open (dirty).
  __atomic_store_n(&h->state, static_cast<uint32_t>(kConnFileOpen), __ATOMIC_RELEASE);
  t->file_header_ = h;
  return t;
}

absl::StatusOr<std::unique_ptr<const ConnTable>> ConnTable::OpenForPeek(
    const std::string& path, const ConnTableOptions* options) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(Errno("cannot open", path));
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < sizeof(ConnTableFileHeader)) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat("conn table ", path, ": not a table"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return absl::UnavailableError(Errno("cannot map", path));
  const auto* h = static_cast<const ConnTableFileHeader*>(p);
  Layout any{};
  const std::string why = Incompatibility(*h, size, any, -1, /*any_capacity=*/true);
  if (!why.empty()) {
    munmap(p, size);
    return absl::FailedPreconditionError(absl::StrCat("conn table ", path, ": ", why));
  }
  std::unique_ptr<ConnTable> t(new ConnTable());
  if (options != nullptr) {
    t->SetTimeouts(*options);
  } else {
    for (int c = 0; c < kNumConnClasses; ++c) t->timeout_ms_[c] = h->timeout_ms[c];
  }
  // Peek only reads; AdoptFile's size count reads too. The const_cast is
  // confined here: the mapping is PROT_READ, a write would fault.
  t->AdoptFile(p, size, h->capacity);
  return std::unique_ptr<const ConnTable>(std::move(t));
}

ConnTable::~ConnTable() {
  if (file_header_ != nullptr) {
    auto* h = static_cast<ConnTableFileHeader*>(file_header_);
    h->size = size_;
    h->sweep_cursor = sweep_cursor_;
    h->closed_ms = MonotonicNs() / 1000000;
    h->writer_pid = 0;
    __atomic_store_n(&h->state, static_cast<uint32_t>(kConnFileClosed), __ATOMIC_RELEASE);
  }
  if (map_base_ != nullptr) munmap(map_base_, map_bytes_);
}

}  // namespace lb
