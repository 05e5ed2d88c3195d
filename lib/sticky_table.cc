#include "lib/sticky_table.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "lib/flow_hash.h"

namespace lb {
namespace {

constexpr uint64_t kStickySeed = 0x6c6273746b793031ull;  // "lbstky01"

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

absl::StatusOr<std::unique_ptr<StickyTable>> StickyTable::Create(uint32_t capacity) {
  if (capacity == 0 || capacity > (1u << 26)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sticky table capacity ", capacity, " outside [1, 2^26]"));
  }
  uint32_t buckets = 1;
  while (static_cast<uint64_t>(buckets) * kWays < capacity) buckets <<= 1;
  const size_t bytes = sizeof(Bucket) * buckets;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("sticky table: cannot map ", bytes, " bytes"));
  }
  std::unique_ptr<StickyTable> t(new StickyTable());
  t->buckets_ = static_cast<Bucket*>(p);  // zero-filled: every lock free, every entry empty
  t->mask_ = buckets - 1;
  t->map_bytes_ = bytes;
  return t;
}

StickyTable::~StickyTable() {
  if (buckets_ != nullptr) munmap(buckets_, map_bytes_);
}

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
