// ConnTable in a shared file: CreateShared, OpenForPeek, the destructor
// (clean-close marker). File format in conn_table_shm.h.
#include "lib/conn_table_shm.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/conn_table.h"
#include "lib/flow_hash.h"
#include "lib/shm_region.h"

namespace lb {
namespace {

struct Layout {
  uint32_t num_buckets;
  uint32_t capacity;
  uint64_t buckets_offset;
  uint64_t entries_offset;
  uint64_t file_size;
};

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
  if (!SameBoot(h.boot_id)) {
    return "written during another boot (its CLOCK_MONOTONIC stamps mean nothing now)";
  }
  if (owner >= 0 && h.owner_lcore != static_cast<uint64_t>(owner)) {
    return absl::StrFormat("owner lcore %u, want %d", h.owner_lcore, owner);
  }
  return "";
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
  want.file_size = RoundUpToHugePage(want.entries_offset + uint64_t{want.capacity} * sizeof(Entry));

  std::unique_ptr<ConnTable> t(new ConnTable());
  t->SetTimeouts(options);
  SharedFileFormat f;
  f.what = "conn table";
  f.magic = kConnTableMagic;
  f.header_bytes = sizeof(ConnTableFileHeader);
  f.file_size = want.file_size;
  f.life = LifeOfHeader<ConnTableFileHeader>;
  f.check = [&](void* p, size_t bytes) -> std::string {
    const auto* h = static_cast<const ConnTableFileHeader*>(p);
    std::string why = Incompatibility(*h, bytes, want, owner_lcore, false);
    if (!why.empty()) return why;
    PopulateMapping(p, bytes);
    t->AdoptFile(p, bytes, want.capacity);
    t->sweep_cursor_ = h->sweep_cursor & t->bucket_mask_;
    if (absl::Status v = t->Validate(); !v.ok()) {
      t->map_base_ = nullptr;  // AttachOrCreateSharedFile unmaps it
      return absl::StrCat("bookkeeping does not validate: ", v.message());
    }
    return "";
  };
  f.init = [&](void* p) {
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
  };
  absl::StatusOr<SharedFileMapping> m = AttachOrCreateSharedFile(path, f, report);
  if (!m.ok()) return m.status();
  if (!report->attached) t->AdoptFile(m->base, m->bytes, want.capacity);
  report->entries = report->attached ? t->size_ : 0;

  auto* h = static_cast<ConnTableFileHeader*>(t->map_base_);
  for (int c = 0; c < kNumConnClasses; ++c) h->timeout_ms[c] = t->timeout_ms_[c];
  // Published last: from here a crash leaves the file marked open (dirty).
  MarkSharedFileOpen(LifeOfHeader<ConnTableFileHeader>(h), report->attached);
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
    MarkSharedFileClosed(LifeOfHeader<ConnTableFileHeader>(h));
  }
  if (map_base_ != nullptr) munmap(map_base_, map_bytes_);
}

}  // namespace lb
