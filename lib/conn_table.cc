#include "lib/conn_table.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL
#endif

namespace lb {
namespace {

constexpr size_t kHugePageBytes = size_t{2} << 20;
constexpr size_t kSmallPageBytes = 4096;
constexpr uint32_t kMinBuckets =
    2;  // so that a flow's alternate bucket can differ from its primary

// Cross-thread access to fields the owner writes and Peek reads: the semantics of
// std::atomic_ref (C++20) with the GCC/Clang builtins. Relaxed is enough for
// the header fields: Peek validates what it found through the entry's seqlock.
template <typename T>
T LoadRelaxed(const T& x) {
  return __atomic_load_n(&x, __ATOMIC_RELAXED);
}
template <typename T>
void StoreRelaxed(T& x, T v) {
  __atomic_store_n(&x, v, __ATOMIC_RELAXED);
}

constexpr uint8_t kClassTcp = static_cast<uint8_t>(ConnClass::kTcp);
constexpr uint8_t kClassClosing = static_cast<uint8_t>(ConnClass::kTcpClosing);
constexpr uint8_t kClassSyn = static_cast<uint8_t>(ConnClass::kTcpSyn);
constexpr uint8_t kMaxClass = kNumConnClasses - 1;
static_assert(kClassClosing % 2 == 1 && kClassSyn % 2 == 1 && kClassTcp % 2 == 0 &&
                  static_cast<uint8_t>(ConnClass::kUdp) % 2 == 0 && kMaxClass < 4,
              "Lookup's fast test: only the classes a hit may change are odd");

// The class a hit moves an entry to: FIN or RST closes a TCP entry (opening
// or established), an ACK confirms a half-open one. UDP (flags 0) and
// kTcpClosing stay. On the established path (kTcp, no FIN/RST) this is two
// compares.
inline uint8_t NextClass(uint8_t cls, uint8_t tcp_flags) {
  if ((tcp_flags & ConnTable::kFinOrRst) != 0 && (cls == kClassTcp || cls == kClassSyn)) {
    return kClassClosing;
  }
  if (cls == kClassSyn && (tcp_flags & ConnTable::kAck) != 0) return kClassTcp;
  return cls;
}

void KeyWords(const FlowKey& k, uint64_t* words) { std::memcpy(words, &k, sizeof(FlowKey)); }

uint64_t PackValue(const ConnValue& v) {
  uint64_t w;
  std::memcpy(&w, &v, sizeof(w));
  return w;
}

ConnValue UnpackValue(uint64_t w) {
  ConnValue v;
  std::memcpy(&v, &w, sizeof(v));
  return v;
}

uint32_t RoundUpPow2(uint32_t x) {
  uint32_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

absl::Status CheckTimeout(const char* field, uint32_t ms) {
  if (ms == 0 || ms >= (1u << 31)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("conn table %s %u is out of range: must be in [1, 2^31) ms", field, ms));
  }
  return absl::OkStatus();
}

// Maps `bytes` (a multiple of 2 MiB) of zeroed, pre-faulted memory, 2 MiB
// aligned. Transparent hugepages must be requested before the pages are
// faulted in (MAP_POPULATE would fault 4 KiB pages first), hence mmap, then
// madvise(MADV_HUGEPAGE), then populate.
void* MapTable(size_t bytes, bool try_hugetlb, bool* hugetlb, int* err) {
  *hugetlb = false;
  if (try_hugetlb) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) {
      *hugetlb = true;
      return p;
    }
  }
  const size_t reserve = bytes + kHugePageBytes;
  void* raw = mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    *err = errno;
    return nullptr;
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~(uintptr_t{kHugePageBytes} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const size_t tail = start + reserve - (aligned + bytes);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, bytes, MADV_HUGEPAGE);  // best effort: THP may be disabled
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) {
    if (errno == ENOMEM || errno == EFAULT) {
      *err = errno;
      munmap(p, bytes);
      return nullptr;
    }
    // Older kernel: fault the pages in by hand.
    volatile char* c = static_cast<volatile char*>(p);
    for (size_t off = 0; off < bytes; off += kSmallPageBytes) c[off] = 0;
  }
  return p;
}

}  // namespace

absl::StatusOr<uint32_t> ConnTable::NumBuckets(const ConnTableOptions& options) {
  if (options.capacity == 0) {
    return absl::InvalidArgumentError("conn table capacity must be at least 1");
  }
  if (options.capacity > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "conn table capacity %u exceeds the maximum %u", options.capacity, kMaxCapacity));
  }
  for (absl::Status s : {CheckTimeout("tcp_timeout_ms", options.tcp_timeout_ms),
                         CheckTimeout("tcp_closing_timeout_ms", options.tcp_closing_timeout_ms),
                         CheckTimeout("udp_timeout_ms", options.udp_timeout_ms),
                         CheckTimeout("tcp_syn_timeout_ms", options.tcp_syn_timeout_ms)}) {
    if (!s.ok()) return s;
  }

  uint32_t num_buckets = RoundUpPow2((options.capacity + kWays - 1) / kWays);
  if (num_buckets < kMinBuckets) num_buckets = kMinBuckets;
  return num_buckets;
}

absl::StatusOr<std::unique_ptr<ConnTable>> ConnTable::Create(const ConnTableOptions& options) {
  absl::StatusOr<uint32_t> nb = NumBuckets(options);
  if (!nb.ok()) return nb.status();
  const uint32_t num_buckets = *nb;
  const size_t capacity = size_t{num_buckets} * kWays;
  const size_t header_bytes = size_t{num_buckets} * sizeof(Bucket);
  const size_t bytes =
      (header_bytes + capacity * sizeof(Entry) + kHugePageBytes - 1) & ~(kHugePageBytes - 1);

  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0 &&
      bytes > static_cast<size_t>(pages) * static_cast<size_t>(page_size)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "conn table capacity %u needs %u MiB, more than this machine's physical memory",
        options.capacity, bytes >> 20));
  }

  bool hugetlb = false;
  int err = 0;
  void* mem = MapTable(bytes, options.try_hugetlb, &hugetlb, &err);
  if (mem == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("conn table capacity %u: mapping %u MiB failed: %s", options.capacity,
                        bytes >> 20, std::strerror(err)));
  }

  std::unique_ptr<ConnTable> t(new (std::nothrow) ConnTable());
  if (t == nullptr) {
    munmap(mem, bytes);
    return absl::ResourceExhaustedError("conn table: out of memory");
  }
  t->map_base_ = mem;
  t->map_bytes_ = bytes;
  t->hugetlb_ = hugetlb;
  // The mapping is zero-filled: every bucket starts empty, every seq even.
  t->buckets_ = static_cast<Bucket*>(mem);
  t->entries_ = reinterpret_cast<Entry*>(static_cast<char*>(mem) + header_bytes);
  t->bucket_mask_ = num_buckets - 1;
  t->capacity_ = static_cast<uint32_t>(capacity);
  t->SetTimeouts(options);
  return t;
}

void ConnTable::SetTimeouts(const ConnTableOptions& options) {
  timeout_ms_[static_cast<int>(ConnClass::kTcp)] = options.tcp_timeout_ms;
  timeout_ms_[static_cast<int>(ConnClass::kTcpClosing)] = options.tcp_closing_timeout_ms;
  timeout_ms_[static_cast<int>(ConnClass::kUdp)] = options.udp_timeout_ms;
  timeout_ms_[static_cast<int>(ConnClass::kTcpSyn)] = options.tcp_syn_timeout_ms;
}

void ConnTable::ForEachLive(RemovedFn fn, void* ctx) const {
  for (uint32_t bucket = 0; bucket <= bucket_mask_; ++bucket) {
    uint32_t live = buckets_[bucket].valid;
    while (live != 0) {
      const uint32_t way = static_cast<uint32_t>(__builtin_ctz(live));
      live &= live - 1;
      fn(ctx, UnpackValue(entries_[bucket * kWays + way].value));
    }
  }
}

// Ages are signed so that a stamp slightly ahead of now_ms (Peek from an lcore
// whose clock read is older) counts as fresh rather than 49 days old.
// Owner only: plain reads are fine, no other thread writes.
int ConnTable::FindWay(uint32_t bucket, uint16_t sig, const uint64_t* kw) const {
  const Bucket& b = buckets_[bucket];
  uint32_t match = MatchWays(b, sig);
  while (match != 0) {
    const int way = __builtin_ctz(match);
    const uint64_t* ek = entries_[bucket * kWays + way].key;
    if (((ek[0] ^ kw[0]) | (ek[1] ^ kw[1]) | (ek[2] ^ kw[2]) | (ek[3] ^ kw[3]) | (ek[4] ^ kw[4])) ==
        0) {
      return way;
    }
    match &= match - 1;
  }
  return -1;
}

// Lookup's every case (the inline Lookup in the header takes the common
// hit and comes here for the rest, having changed nothing).
uint32_t ConnTable::LookupSlow(const FlowKey& k, uint64_t hash, uint32_t now_ms, uint8_t tcp_flags,
                               ConnValue* out) {
  uint64_t kw[5];
  KeyWords(k, kw);
  const uint16_t sig = Signature(hash);
  uint32_t bucket = static_cast<uint32_t>(hash) & bucket_mask_;
  int way = FindWay(bucket, sig, kw);
  if (way < 0) {
    if (buckets_[bucket].overflow == 0) return kNoEntry;
    bucket = Alternate(hash);
    way = FindWay(bucket, sig, kw);
    if (way < 0) return kNoEntry;
  }
  Bucket& b = buckets_[bucket];
  const uint8_t cls = b.cls[way];
  if (Expired(b.stamp[way], cls, now_ms)) return kNoEntry;
  StoreRelaxed(b.stamp[way], now_ms);
  // One test on the established path: kTcpClosing and kTcpSyn are the odd
  // classes, and FIN/RST are flag bits 0 and 2 (class bit 2 is never set).
  if (__builtin_expect(((tcp_flags | cls) & kFinOrRst) != 0, 0)) {
    const uint8_t next = NextClass(cls, tcp_flags);
    if (next != cls) StoreRelaxed(b.cls[way], next);
  }
  const uint32_t entry = bucket * kWays + static_cast<uint32_t>(way);
  *out = UnpackValue(entries_[entry].value);
  return entry;
}

void ConnTable::Touch(uint32_t entry, uint32_t now_ms, uint8_t tcp_flags) {
  Bucket& b = buckets_[entry / kWays];
  const uint32_t way = entry % kWays;
  StoreRelaxed(b.stamp[way], now_ms);
  const uint8_t cls = b.cls[way];
  const uint8_t next = NextClass(cls, tcp_flags);
  if (next != cls) StoreRelaxed(b.cls[way], next);
}

// Seqlock writer (Boehm, "Can seqlocks get along with programming language
// memory models?", MSPC'12): the odd store, then a release fence, orders the
// odd sequence number before every data store, and the final release store
// orders the data before the even number. On x86 both are compiler barriers
// only, so the owner pays two plain stores per insert or update.
void ConnTable::Write(uint32_t bucket, uint32_t way, const uint64_t* kw, uint64_t hash,
                      const ConnValue& v, ConnClass c, uint32_t now_ms) {
  Entry& e = entries_[bucket * kWays + way];
  Bucket& b = buckets_[bucket];
  const uint32_t seq = e.seq;
  StoreRelaxed(e.seq, seq + 1);
  std::atomic_thread_fence(std::memory_order_release);
  for (int i = 0; i < 5; ++i) StoreRelaxed(e.key[i], kw[i]);
  StoreRelaxed(e.value, PackValue(v));
  e.hash = hash;  // never read by Peek
  StoreRelaxed(b.sig[way], Signature(hash));
  StoreRelaxed(b.stamp[way], now_ms);
  StoreRelaxed(b.cls[way], static_cast<uint8_t>(c));
  StoreRelaxed(b.valid, static_cast<uint8_t>(b.valid | (1u << way)));
  __atomic_store_n(&e.seq, seq + 2, __ATOMIC_RELEASE);
}

void ConnTable::Free(uint32_t bucket, uint32_t way) {
  Bucket& b = buckets_[bucket];
  const uint8_t bit = static_cast<uint8_t>(1u << way);
  if ((b.in_alt & bit) != 0) {
    Bucket& primary =
        buckets_[static_cast<uint32_t>(entries_[bucket * kWays + way].hash) & bucket_mask_];
    StoreRelaxed(primary.overflow, primary.overflow - 1);
    StoreRelaxed(b.in_alt, static_cast<uint8_t>(b.in_alt & ~bit));
  }
  StoreRelaxed(b.valid, static_cast<uint8_t>(b.valid & ~bit));
  --size_;
}

uint32_t ConnTable::Insert(const FlowKey& k, uint64_t hash, const ConnValue& v, ConnClass c,
                           uint32_t now_ms, bool* evicted, ConnValue* evicted_value) {
  *evicted = false;
  uint64_t kw[5];
  KeyWords(k, kw);
  const uint16_t sig = Signature(hash);
  const uint32_t primary = static_cast<uint32_t>(hash) & bucket_mask_;
  const uint32_t alt = Alternate(hash);

  // The flow's own slot (an expired entry Lookup declined): overwrite in place,
  // which keeps its primary/alternate bookkeeping, and never duplicate a key.
  uint32_t bucket = primary;
  int way = FindWay(primary, sig, kw);
  if (way < 0 && buckets_[primary].overflow != 0) {
    bucket = alt;
    way = FindWay(alt, sig, kw);
  }
  if (way >= 0) {
    const uint32_t entry = bucket * kWays + static_cast<uint32_t>(way);
    *evicted = true;
    *evicted_value = UnpackValue(entries_[entry].value);
    if (Expired(buckets_[bucket].stamp[way], buckets_[bucket].cls[way], now_ms)) ++expirations_;
    Write(bucket, static_cast<uint32_t>(way), kw, hash, v, c, now_ms);
    return entry;
  }

  uint32_t free_ways = ~buckets_[primary].valid & 0xffu;
  bucket = primary;
  if (free_ways == 0) {
    free_ways = ~buckets_[alt].valid & 0xffu;
    bucket = alt;
  }
  if (free_ways == 0) {
    // Both buckets full: evict the stalest of their 16 entries, an expired one
    // first, then an unconfirmed (half-open) one: a flood of SYNs that never
    // complete then evicts its own entries, not established flows. Scores
    // are (expired, unconfirmed, age); unsigned age, clamped at 0 for stamps
    // ahead of now.
    uint64_t best_score = 0;
    way = -1;
    for (const uint32_t cand : {primary, alt}) {
      const Bucket& b = buckets_[cand];
      for (uint32_t w = 0; w < kWays; ++w) {
        const int32_t age = static_cast<int32_t>(now_ms - b.stamp[w]);
        const uint64_t expired = age > static_cast<int32_t>(timeout_ms_[b.cls[w]]);
        const uint64_t unconfirmed = b.cls[w] == kClassSyn;
        const uint64_t score =
            (expired << 33) | (unconfirmed << 32) | static_cast<uint32_t>(age < 0 ? 0 : age);
        if (way < 0 || score > best_score) {
          best_score = score;
          bucket = cand;
          way = static_cast<int>(w);
        }
      }
    }
    *evicted = true;
    *evicted_value = UnpackValue(entries_[bucket * kWays + way].value);
    if ((best_score >> 33) != 0) {
      ++expirations_;
    } else {
      ++evictions_;
      if ((best_score >> 32) != 0) ++half_open_evictions_;
    }
    Free(bucket, static_cast<uint32_t>(way));
  } else {
    way = __builtin_ctz(free_ways);
  }

  if (bucket != primary) {
    Bucket& p = buckets_[primary];
    StoreRelaxed(p.overflow, p.overflow + 1);
    Bucket& a = buckets_[bucket];
    StoreRelaxed(a.in_alt, static_cast<uint8_t>(a.in_alt | (1u << way)));
  }
  Write(bucket, static_cast<uint32_t>(way), kw, hash, v, c, now_ms);
  ++size_;
  return bucket * kWays + static_cast<uint32_t>(way);
}

void ConnTable::Update(uint32_t entry, const ConnValue& v) {
  Entry& e = entries_[entry];
  const uint32_t seq = e.seq;
  StoreRelaxed(e.seq, seq + 1);
  std::atomic_thread_fence(std::memory_order_release);
  StoreRelaxed(e.value, PackValue(v));
  __atomic_store_n(&e.seq, seq + 2, __ATOMIC_RELEASE);
}

void ConnTable::Erase(uint32_t entry) {
  if (entry >= capacity_) return;
  const uint32_t bucket = entry / kWays;
  const uint32_t way = entry % kWays;
  if ((buckets_[bucket].valid & (1u << way)) == 0) return;
  Free(bucket, way);
}

ConnValue ConnTable::ValueOf(uint32_t entry) const { return UnpackValue(entries_[entry].value); }

ConnClass ConnTable::ClassOf(uint32_t entry) const {
  return static_cast<ConnClass>(buckets_[entry / kWays].cls[entry % kWays]);
}

size_t ConnTable::Sweep(uint32_t now_ms, uint32_t max_buckets, RemovedFn removed, void* ctx) {
  uint32_t budget = max_buckets;
  if (budget > bucket_mask_ + 1) budget = bucket_mask_ + 1;
  size_t freed = 0;
  for (; budget > 0; --budget) {
    const uint32_t bucket = sweep_cursor_;
    sweep_cursor_ = (sweep_cursor_ + 1) & bucket_mask_;
    const Bucket& b = buckets_[bucket];
    uint32_t live = b.valid;
    while (live != 0) {
      const uint32_t way = static_cast<uint32_t>(__builtin_ctz(live));
      live &= live - 1;
      if (!Expired(b.stamp[way], b.cls[way], now_ms)) continue;
      const ConnValue v = UnpackValue(entries_[bucket * kWays + way].value);
      Free(bucket, way);
      ++freed;
      if (removed != nullptr) removed(ctx, v);
    }
  }
  expirations_ += freed;
  return freed;
}

absl::Status ConnTable::Validate() const {
  const uint32_t num_buckets = bucket_mask_ + 1;
  std::vector<uint32_t> overflow(num_buckets, 0);
  size_t live = 0;
  for (uint32_t bucket = 0; bucket < num_buckets; ++bucket) {
    const Bucket& b = buckets_[bucket];
    if ((b.in_alt & ~b.valid) != 0) {
      return absl::InternalError(absl::StrFormat("bucket %u: in_alt bit on a free way", bucket));
    }
    for (uint32_t way = 0; way < kWays; ++way) {
      if ((b.valid & (1u << way)) == 0) continue;
      ++live;
      const Entry& e = entries_[bucket * kWays + way];
      const uint32_t primary = static_cast<uint32_t>(e.hash) & bucket_mask_;
      const bool in_alt = (b.in_alt & (1u << way)) != 0;
      if (b.sig[way] != Signature(e.hash) || (e.seq & 1) != 0 || b.cls[way] > kMaxClass) {
        return absl::InternalError(
            absl::StrFormat("entry %u: signature, seq or class corrupt", bucket * kWays + way));
      }
      if (in_alt ? Alternate(e.hash) != bucket : primary != bucket) {
        return absl::InternalError(
            absl::StrFormat("entry %u: in neither of its buckets", bucket * kWays + way));
      }
      if (in_alt) ++overflow[primary];
    }
  }
  if (live != size_) {
    return absl::InternalError(absl::StrFormat("size %u but %u live entries", size_, live));
  }
  for (uint32_t bucket = 0; bucket < num_buckets; ++bucket) {
    if (overflow[bucket] != buckets_[bucket].overflow) {
      return absl::InternalError(absl::StrFormat("bucket %u: overflow count %u, actual %u", bucket,
                                                 buckets_[bucket].overflow, overflow[bucket]));
    }
  }
  return absl::OkStatus();
}

// Seqlock reader (Boehm, as above): acquire-load seq, relaxed-load the data,
// acquire fence, reload seq. Equal even numbers mean no write overlapped the
// data loads, so key and value belong together. The stamp and class are read
// inside the same window: Insert rewrites them inside its odd window, and
// Touch only moves the stamp forward, so they are this entry's (or a newer
// state of it).
bool ConnTable::Peek(const FlowKey& k, uint64_t hash, uint32_t now_ms, ConnValue* out) const {
  uint64_t kw[5];
  KeyWords(k, kw);
  const uint16_t sig = Signature(hash);
  const uint32_t primary = static_cast<uint32_t>(hash) & bucket_mask_;
  const uint32_t candidates[2] = {primary, Alternate(hash)};
  const int probes = LoadRelaxed(buckets_[primary].overflow) != 0 ? 2 : 1;
  for (int p = 0; p < probes; ++p) {
    const uint32_t bucket = candidates[p];
    const Bucket& b = buckets_[bucket];
    const uint32_t valid = LoadRelaxed(b.valid);
    for (uint32_t way = 0; way < kWays; ++way) {
      if ((valid & (1u << way)) == 0 || LoadRelaxed(b.sig[way]) != sig) continue;
      const Entry& e = entries_[bucket * kWays + way];
      const uint32_t seq0 = __atomic_load_n(&e.seq, __ATOMIC_ACQUIRE);
      if ((seq0 & 1) != 0) continue;
      uint64_t diff = 0;
      for (int i = 0; i < 5; ++i) diff |= LoadRelaxed(e.key[i]) ^ kw[i];
      const uint64_t value = LoadRelaxed(e.value);
      const uint32_t stamp = LoadRelaxed(b.stamp[way]);
      const uint8_t cls = LoadRelaxed(b.cls[way]);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (LoadRelaxed(e.seq) != seq0 || diff != 0) continue;
      if (cls > kMaxClass || Expired(stamp, cls, now_ms)) return false;
      *out = UnpackValue(value);
      return true;
    }
  }
  return false;
}

}  // namespace lb
