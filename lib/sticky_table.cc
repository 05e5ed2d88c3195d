#include "lib/sticky_table.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/flow_hash.h"
#include "lib/sticky_table_shm.h"

namespace lb {
namespace {

constexpr uint64_t kStickySeed = kStickyKeySeed;

inline void CpuRelax() { __builtin_ia32_pause(); }

// Wrap-safe "a is older than b by more than d".
inline bool OlderThan(uint32_t stamp, uint32_t now, uint32_t d) {
  return static_cast<int32_t>(now - stamp) > static_cast<int32_t>(d);
}

}  // namespace

// Two cache lines: a lock word and five entries. An entry is identified by
// the 64-bit hash of (vip, family, client) with the low bit forced to 1 (0 =
// free): two different clients collide with probability 2^-63 per compare,
// and the worst a collision can do is share a backend.
struct alignas(64) StickyTable::Bucket {
  std::atomic<uint32_t> lock;
  uint32_t pad;
  struct Entry {
    std::atomic<uint64_t> key;
    std::atomic<uint32_t> backend_slot;
    std::atomic<uint32_t> incarnation;
    std::atomic<uint32_t> last_seen_ms;
    uint32_t pad;
  } e[kWays];
};
static_assert(sizeof(StickyTable::Bucket) == 128, "two cache lines");

namespace {

class BucketLock {
 public:
  explicit BucketLock(std::atomic<uint32_t>& l) : l_(l) {
    while (l_.exchange(1, std::memory_order_acquire) != 0) {
      while (l_.load(std::memory_order_relaxed) != 0) CpuRelax();
    }
  }
  ~BucketLock() { l_.store(0, std::memory_order_release); }

 private:
  std::atomic<uint32_t>& l_;
};

}  // namespace

namespace {

absl::Status CheckCapacity(uint32_t capacity) {
  if (capacity == 0 || capacity > (1u << 26)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sticky table capacity ", capacity, " outside [1, 2^26]"));
  }
  return absl::OkStatus();
}

uint32_t NumBuckets(uint32_t capacity) {
  uint32_t buckets = 1;
  while (static_cast<uint64_t>(buckets) * StickyTable::kWays < capacity) buckets <<= 1;
  return buckets;
}

// The first field of `h` that differs from what this process would create,
// or "" when the file is compatible.
std::string Incompatibility(const StickyTableFileHeader& h, size_t bytes, uint32_t num_buckets,
                            uint64_t file_size) {
  if (h.magic != kStickyTableMagic) return "bad magic (not a sticky table)";
  if (h.abi_version != kStickyTableAbiVersion) {
    return absl::StrFormat("ABI version %u, this binary writes %u", h.abi_version,
                           kStickyTableAbiVersion);
  }
  if (h.header_size != sizeof(StickyTableFileHeader)) {
    return absl::StrFormat("header_size %u, want %u", h.header_size, sizeof(StickyTableFileHeader));
  }
  if (h.num_buckets != num_buckets) {
    return absl::StrFormat("num_buckets %u, --sticky_table_size makes %u", h.num_buckets,
                           num_buckets);
  }
  if (h.ways != StickyTable::kWays || h.bucket_size != sizeof(StickyTable::Bucket)) {
    return absl::StrFormat("bucket layout (%u ways, %u bytes) differs", h.ways, h.bucket_size);
  }
  if (h.key_seed != kStickyKeySeed) return "key seed differs (entries placed by hash)";
  if (h.buckets_offset != kStickyTableHeaderBytes || h.file_size != file_size ||
      bytes != file_size) {
    return absl::StrFormat("offsets or file_size %u (file is %u bytes) inconsistent", h.file_size,
                           bytes);
  }
  if (!SameBoot(h.boot_id)) {
    return "written during another boot (its CLOCK_MONOTONIC stamps mean nothing now)";
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<StickyTable>> StickyTable::Create(uint32_t capacity) {
  if (absl::Status s = CheckCapacity(capacity); !s.ok()) return s;
  const uint32_t buckets = NumBuckets(capacity);
  const size_t bytes = sizeof(Bucket) * buckets;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("sticky table: cannot map ", bytes, " bytes"));
  }
  std::unique_ptr<StickyTable> t(new StickyTable());
  t->buckets_ = static_cast<Bucket*>(p);  // zero-filled: every lock free, every entry empty
  t->mask_ = buckets - 1;
  t->map_base_ = p;
  t->map_bytes_ = bytes;
  return t;
}

absl::StatusOr<std::unique_ptr<StickyTable>> StickyTable::CreateShared(uint32_t capacity,
                                                                       const std::string& path,
                                                                       SharedFileAttach* report) {
  *report = SharedFileAttach();
  if (absl::Status s = CheckCapacity(capacity); !s.ok()) return s;
  const uint32_t buckets = NumBuckets(capacity);
  const uint64_t file_size =
      RoundUpToHugePage(kStickyTableHeaderBytes + uint64_t{sizeof(Bucket)} * buckets);
  SharedFileFormat f;
  f.what = "sticky table";
  f.magic = kStickyTableMagic;
  f.header_bytes = sizeof(StickyTableFileHeader);
  f.file_size = file_size;
  f.life = LifeOfHeader<StickyTableFileHeader>;
  f.check = [&](void* p, size_t bytes) {
    return Incompatibility(*static_cast<const StickyTableFileHeader*>(p), bytes, buckets,
                           file_size);
  };
  f.init = [&](void* p) {
    auto* h = static_cast<StickyTableFileHeader*>(p);
    h->magic = kStickyTableMagic;
    h->abi_version = kStickyTableAbiVersion;
    h->header_size = sizeof(StickyTableFileHeader);
    h->num_buckets = buckets;
    h->ways = kWays;
    h->bucket_size = sizeof(Bucket);
    h->key_seed = kStickyKeySeed;
    h->buckets_offset = kStickyTableHeaderBytes;
    h->file_size = file_size;
    ReadBootId(h->boot_id);
  };
  absl::StatusOr<SharedFileMapping> m = AttachOrCreateSharedFile(path, f, report);
  if (!m.ok()) return m.status();
  if (report->attached) PopulateMapping(m->base, m->bytes);
  std::unique_ptr<StickyTable> t(new StickyTable());
  t->map_base_ = m->base;
  t->map_bytes_ = m->bytes;
  t->buckets_ = reinterpret_cast<Bucket*>(static_cast<char*>(m->base) + kStickyTableHeaderBytes);
  t->mask_ = buckets - 1;
  // A crash may have left a lock held; no other process owns the file now
  // and no lcore runs yet.
  for (uint32_t b = 0; b < buckets; ++b) t->buckets_[b].lock.store(0, std::memory_order_relaxed);
  if (report->attached) report->entries = t->CountEntries();
  auto* h = static_cast<StickyTableFileHeader*>(m->base);
  MarkSharedFileOpen(LifeOfHeader<StickyTableFileHeader>(h), report->attached);
  t->file_header_ = h;
  return t;
}

size_t StickyTable::CountEntries() const {
  size_t n = 0;
  for (uint32_t b = 0; b <= mask_; ++b) {
    for (const auto& e : buckets_[b].e) n += e.key.load(std::memory_order_relaxed) != 0;
  }
  return n;
}

StickyTable::~StickyTable() {
  if (file_header_ != nullptr)
    MarkSharedFileClosed(LifeOfHeader<StickyTableFileHeader>(file_header_));
  if (map_base_ != nullptr) munmap(map_base_, map_bytes_);
}

std::string StickyTableFileName(const std::string& prefix) { return prefix + ".sticky"; }

namespace {

inline uint64_t StickyKey(uint32_t vip, AddrFamily family, const uint8_t* client) {
  uint8_t k[24] = {};
  std::memcpy(k, client, family == AddrFamily::kIPv4 ? 4 : 16);
  std::memcpy(k + 16, &vip, 4);
  k[20] = static_cast<uint8_t>(family);
  return HashBytes(k, sizeof(k), kStickySeed) | 1;
}

}  // namespace

bool StickyTable::Lookup(uint32_t vip, AddrFamily family, const uint8_t* client, uint32_t now_ms,
                         uint32_t ttl_ms, StickyValue* out) {
  const uint64_t key = StickyKey(vip, family, client);
  Bucket& b = buckets_[key >> 32 & mask_];
  BucketLock lock(b.lock);
  for (auto& e : b.e) {
    if (e.key.load(std::memory_order_relaxed) != key) continue;
    if (OlderThan(e.last_seen_ms.load(std::memory_order_relaxed), now_ms, ttl_ms)) return false;
    out->backend_slot = e.backend_slot.load(std::memory_order_relaxed);
    out->incarnation = e.incarnation.load(std::memory_order_relaxed);
    return true;
  }
  return false;
}

void StickyTable::Insert(uint32_t vip, AddrFamily family, const uint8_t* client,
                         const StickyValue& v, uint32_t now_ms) {
  const uint64_t key = StickyKey(vip, family, client);
  Bucket& b = buckets_[key >> 32 & mask_];
  BucketLock lock(b.lock);
  // The same key, else a free way, else the stalest.
  Bucket::Entry* slot = nullptr;
  for (auto& e : b.e) {
    if (e.key.load(std::memory_order_relaxed) == key) {
      slot = &e;
      break;
    }
  }
  if (slot == nullptr) {
    for (auto& e : b.e) {
      if (e.key.load(std::memory_order_relaxed) == 0) {
        slot = &e;
        break;
      }
    }
  }
  if (slot == nullptr) {
    slot = &b.e[0];
    for (auto& e : b.e) {
      if (static_cast<int32_t>(slot->last_seen_ms.load(std::memory_order_relaxed) -
                               e.last_seen_ms.load(std::memory_order_relaxed)) > 0) {
        slot = &e;
      }
    }
  }
  slot->backend_slot.store(v.backend_slot, std::memory_order_relaxed);
  slot->incarnation.store(v.incarnation, std::memory_order_relaxed);
  slot->last_seen_ms.store(now_ms, std::memory_order_relaxed);
  slot->key.store(key, std::memory_order_relaxed);
}

void StickyTable::Refresh(uint32_t vip, AddrFamily family, const uint8_t* client, uint32_t now_ms,
                          uint32_t ttl_ms) {
  const uint64_t key = StickyKey(vip, family, client);
  Bucket& b = buckets_[key >> 32 & mask_];
  for (auto& e : b.e) {
    if (e.key.load(std::memory_order_relaxed) != key) continue;
    // Lock-free read; a racing Insert may replace the entry under us, in
    // which case the stamp we write is at worst one refresh early.
    if (OlderThan(e.last_seen_ms.load(std::memory_order_relaxed), now_ms, ttl_ms / 4)) {
      BucketLock lock(b.lock);
      if (e.key.load(std::memory_order_relaxed) == key) {
        e.last_seen_ms.store(now_ms, std::memory_order_relaxed);
      }
    }
    return;
  }
}

void StickyTable::Erase(uint32_t vip, AddrFamily family, const uint8_t* client) {
  const uint64_t key = StickyKey(vip, family, client);
  Bucket& b = buckets_[key >> 32 & mask_];
  BucketLock lock(b.lock);
  for (auto& e : b.e) {
    if (e.key.load(std::memory_order_relaxed) == key) e.key.store(0, std::memory_order_relaxed);
  }
}

}  // namespace lb
