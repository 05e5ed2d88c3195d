// ConnTable: the per-lcore connection table. It pins a flow (FlowKey) to the
// backend that served its first packet, so that a Maglev table change or a
// backend going down (see Update) does not move established connections.
//
// Shape: a fixed array of 64-byte entries (key, value, seqlock) and, per group
// of 8 entries, a 64-byte bucket header (8 x 16-bit signature, 8 x 32-bit
// last-seen stamp, 8 x class, occupancy bits). All memory is mapped once by
// Create() (2 MiB aligned, transparent hugepages requested, pre-faulted) and
// never grows: insert into a full bucket evicts.
//
// Placement (two-choice, primary first): a flow lives in its primary bucket
// (the low bits of the hash, at most bits 0..23) or, when that is full, in its
// alternate bucket (from bits 24..47); the signature is bits 48..63. A bucket
// header counts how many of its flows overflowed to their alternate, so a
// lookup reads the alternate only when that count is non-zero. A hit costs
// two cache lines (header + entry) when the flow is in its primary bucket,
// three when it overflowed (about 1% of flows at 50% load, 5% at 75%, 10-14%
// when full). The second choice is what keeps a loaded table from evicting
// live flows: capacity-many random inserts leave it ~92% full (one choice:
// ~86%), and at half load almost nothing is evicted (one choice: 0.7% of
// inserts evict a live flow).
//
// Time: the caller passes monotonic milliseconds as uint32_t; it may wrap (every
// 49.7 days). Ages are computed as (int32_t)(now - stamp), so every timeout must
// be below 2^31 ms (checked by Create) and Sweep must visit every bucket within
// 2^31 ms (24 days; a sweep every loop iteration takes seconds at most).
// An entry idle for longer than the timeout of its class is expired: a miss for
// Lookup and Peek, reused first by Insert, freed by Sweep.
//
// Half-open entries (SYN-flood guard): the caller inserts the first packet of
// a TCP flow as kTcpSyn, "unconfirmed" (one packet seen, nothing after). It
// has its own short timeout (tcp_syn_timeout_ms), and the first Lookup/Touch
// with ACK set confirms it to kTcp. When Insert must evict, it takes an
// unconfirmed entry before any other (then the stalest), so a flood of spoofed
// SYNs, which never confirm, displaces itself rather than established flows.
//
// Hashing: the caller passes the 64-bit flow hash (lib/flow_hash.h HashFlow); the
// table never hashes. Keys are compared in full (all 40 bytes).
//
// Entry handles: Lookup and Insert return the entry's index. A handle stays valid
// until the next Insert, Erase or Sweep on this table (those may free or reuse
// slots); Lookup, Touch, Update and Peek never move entries.
//
// Failure: only Create fails (InvalidArgument naming the option at fault,
// ResourceExhausted when the memory cannot be mapped). Nothing on the packet
// path (everything but Create and Validate) fails, allocates, throws, logs or
// makes a syscall; Insert always succeeds (by eviction if it must).
//
// Cost, 1M flows, batches of 32 on a 2.6 GHz EPYC VM (tests/unit
// conn_table_test BatchedLookupCycles): ~110 TSC ticks per hit with Prefetch
// then PrefetchEntry over the batch before the lookups, ~200 with Prefetch
// alone, ~290 with neither.
//
// Restarts (CreateShared, lib/conn_table_shm.cc): the same arrays can live in
// a named shared file (hugetlbfs or tmpfs) behind a ConnTableFileHeader (magic,
// ABI, geometry, boot id, owner lcore, clean/dirty). A new process attaches the
// file when it is compatible and its bookkeeping validates, keeping every
// entry, and starts empty otherwise (the report says why). Stamps need no
// rebase: the dataplane's now_ms is CLOCK_MONOTONIC milliseconds, the same
// clock in every process of one boot, and the header's boot id refuses a file
// from another boot. The packet path is the same code on the same pointers
// whichever way the memory was mapped.
//
// Threads: one owner thread (the lcore that created or was given the table) calls
// everything except Peek. Peek may be called by any thread concurrently with the
// owner; see Peek for what it guarantees. The counters are plain owner-thread
// values: the owner copies them into its stats slice.
#ifndef LB_LIB_CONN_TABLE_H_
#define LB_LIB_CONN_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/status/statusor.h"
#include "lib/flow_key.h"
#include "lib/shared_file.h"

namespace lb {

// What a flow is pinned to. The incarnation makes a reused backend slot unable
// to capture the flows of the backend that held it before.
struct ConnValue {
  uint32_t backend_slot;
  uint32_t incarnation;
};
static_assert(sizeof(ConnValue) == 8, "ConnValue is stored as one 64-bit word");

// Idle-timeout class of an entry.
enum class ConnClass : uint8_t {
  kTcp = 0,         // established or opening TCP
  kTcpClosing = 1,  // TCP after a FIN or RST was seen (short timeout)
  kUdp = 2,         // UDP and every other protocol
  kTcpSyn = 3,      // TCP, unconfirmed: one packet (a SYN) and no ACK after it (short timeout)
};
inline constexpr int kNumConnClasses = 4;

struct ConnTableOptions {
  // Entries. Rounded up to a power of two, at least 16; see Create.
  uint32_t capacity = 1u << 20;
  // Idle timeouts per class, in ms; each in [1, 2^31).
  uint32_t tcp_timeout_ms = 300000;
  uint32_t tcp_closing_timeout_ms = 10000;
  uint32_t udp_timeout_ms = 30000;
  // Half-open (kTcpSyn) entries: long enough for a SYN retransmission or two
  // and the handshake's ACK, short enough that a flood leaves quickly.
  uint32_t tcp_syn_timeout_ms = 5000;
  // Try explicit hugepages (MAP_HUGETLB) first. Off by default: the hugetlb
  // pool belongs to DPDK's mbuf pools; transparent hugepages are requested in
  // either case.
  bool try_hugetlb = false;
};

// What CreateShared found in the file (lib/shared_file.h): exactly one of
// created / attached / discarded is true; reason names the field at fault.
using ConnTableAttach = SharedFileAttach;

class ConnTable {
 public:
  static constexpr uint32_t kNoEntry = ~0u;
  static constexpr uint32_t kWays = 8;
  // Largest accepted capacity: 2^27 entries, 9 GiB of memory.
  static constexpr uint32_t kMaxCapacity = 1u << 27;
  // TCP header flag bits (FIN 0x01 | RST 0x04) that move kTcp to kTcpClosing.
  static constexpr uint8_t kFinOrRst = 0x05;
  // TCP ACK flag: moves kTcpSyn (unconfirmed) to kTcp.
  static constexpr uint8_t kAck = 0x10;

  // Maps and pre-faults the table. Fails with InvalidArgument for capacity 0,
  // capacity > kMaxCapacity or a timeout outside [1, 2^31) (the message names
  // the field), ResourceExhausted if the table would not fit in physical memory
  // or the mapping fails. Start-up only.
  static absl::StatusOr<std::unique_ptr<ConnTable>> Create(const ConnTableOptions& options);
  // Same table in the shared file `path` (created, or attached as described
  // at the top), owned by lcore `owner_lcore`. The geometry and timeouts come
  // from `options` (try_hugetlb is ignored: the file's filesystem decides).
  // Fails like Create, or with Unavailable when the file cannot be created
  // or mapped; an incompatible or corrupt file is not an error (it is
  // re-created empty and reported in *report). Start-up only.
  static absl::StatusOr<std::unique_ptr<ConnTable>> CreateShared(const ConnTableOptions& options,
                                                                 const std::string& path,
                                                                 uint32_t owner_lcore,
                                                                 ConnTableAttach* report);
  // Maps another process's (or a previous run's) table file for Peek only,
  // with `options`' timeouts (nullptr: those its last owner recorded). Fails
  // (FailedPrecondition naming the field) when the file is not a compatible
  // table. Never writes to the file.
  static absl::StatusOr<std::unique_ptr<const ConnTable>> OpenForPeek(
      const std::string& path, const ConnTableOptions* options);
  // Marks a shared table closed clean (destruction), then unmaps.
  ~ConnTable();
  ConnTable(const ConnTable&) = delete;
  ConnTable& operator=(const ConnTable&) = delete;

  // Starts loading the primary bucket header for `hash` (PrefetchLine below).
  // Call it for a whole burst, back to back, before the lookups: spread
  // between other per-packet work, fewer of the misses overlap
  // (perf/RESULTS.md).
  inline void Prefetch(uint64_t hash) const;
  // Optional second prefetch stage, once Prefetch's line has arrived: reads
  // the header and prefetches the entry line(s) whose signature matches, or
  // the alternate header when the flow may have overflowed. Inline (below):
  // the lcores call it per packet.
  inline void PrefetchEntry(uint64_t hash) const;

  // Finds the unexpired entry for k. On a hit: fills *out, refreshes the
  // stamp to now_ms, moves kTcp or kTcpSyn to kTcpClosing if tcp_flags has
  // FIN or RST, else kTcpSyn to kTcp if it has ACK (pass 0 for non-TCP), and
  // returns the handle. Otherwise kNoEntry; an
  // expired entry stays in place until Insert reuses it or Sweep frees it.
  // Inline (below) for the common hit: a live entry in its primary bucket
  // and no FIN/RST (the stamp changes, and an ACK confirms kTcpSyn);
  // everything else goes to LookupSlow, which is the whole of the above.
  inline uint32_t Lookup(const FlowKey& k, uint64_t hash, uint32_t now_ms, uint8_t tcp_flags,
                         ConnValue* out);

  // Pins a new flow (the caller has just missed). Takes, in order: the slot
  // already holding k (expired, or live if the caller did not look up first),
  // a free way of the primary bucket, a free way of the alternate bucket, the
  // stalest way of the two buckets (expired ones first, then unconfirmed
  // kTcpSyn ones, then any). Whenever an existing
  // entry is overwritten, *evicted is true and *evicted_value is its value, so
  // the caller can release what it counted for it; otherwise *evicted is false.
  // Only the removal of an unexpired entry of another flow counts in
  // evictions() (and, if it was unconfirmed, in half_open_evictions()); a
  // reused expired entry counts in expirations(). Never fails.
  uint32_t Insert(const FlowKey& k, uint64_t hash, const ConnValue& v, ConnClass c, uint32_t now_ms,
                  bool* evicted, ConnValue* evicted_value);

  // Refreshes a live entry as a Lookup hit does (Lookup already does this).
  void Touch(uint32_t entry, uint32_t now_ms, uint8_t tcp_flags);
  // Re-pins a live entry, e.g. when its backend went down. Keeps its stamp.
  void Update(uint32_t entry, const ConnValue& v);
  // Frees an entry. No-op for a handle that is out of range or already free.
  // The caller reads ValueOf first if it needs the value.
  void Erase(uint32_t entry);

  ConnValue ValueOf(uint32_t entry) const;
  ConnClass ClassOf(uint32_t entry) const;  // kTcpClosing == FIN or RST seen, kTcpSyn == no ACK yet

  // Expiry sweep: visits the next min(max_buckets, number of buckets) buckets
  // after a persistent cursor, frees every expired entry there and calls
  // removed(ctx, value) once for each (removed may be null). Returns the
  // number freed. Meant to be called once per loop iteration with a small
  // budget (e.g. 4 buckets: 4 header lines, plus one entry line per freed
  // entry).
  using RemovedFn = void (*)(void* ctx, const ConnValue& value);
  size_t Sweep(uint32_t now_ms, uint32_t max_buckets, RemovedFn removed, void* ctx);

  // Read-only lookup that any thread may call while the owner writes (e.g. an
  // lcore that received an ICMP error for a flow another lcore owns). Memory
  // safe: it reads only the fixed arrays. Each entry carries a seqlock (odd
  // while the owner rewrites key or value), so a true result always pairs k
  // with a value that was written for k; a torn key/value is rejected. A
  // racing owner write may still make it miss (the flow is being inserted,
  // moved to its alternate or erased) or return the value it held just
  // before an Update/Erase. Does not refresh the stamp.
  bool Peek(const FlowKey& k, uint64_t hash, uint32_t now_ms, ConnValue* out) const;

  // Walks the whole table and checks its bookkeeping (size, occupancy bits,
  // signatures, primary/alternate placement, overflow counts). Slow: for
  // tests and debugging only, owner thread.
  absl::Status Validate() const;

  // Calls fn(ctx, value) for every live entry, expired or not. Slow (walks
  // every bucket): start-up only, owner thread, e.g. to recount per-backend
  // gauges after CreateShared attached a table.
  void ForEachLive(RemovedFn fn, void* ctx) const;

  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  size_t memory_bytes() const { return map_bytes_; }
  bool hugetlb() const { return hugetlb_; }
  bool shared() const { return file_header_ != nullptr; }
  // Unexpired entries of other flows removed by Insert because both buckets
  // were full. A steady rise means the table is too small.
  uint64_t evictions() const { return evictions_; }
  // The part of evictions() that removed unconfirmed (kTcpSyn) entries. While
  // it is the whole of evictions(), no established flow lost its entry.
  uint64_t half_open_evictions() const { return half_open_evictions_; }
  // Expired entries freed by Sweep or reused by Insert.
  uint64_t expirations() const { return expirations_; }

 private:
  // One cache line per 8 ways. The owner reads these fields plainly (it is
  // the only writer) and writes them with relaxed atomic stores, so that
  // Peek's relaxed atomic loads from other threads are race-free.
  struct alignas(64) Bucket {
    uint16_t sig[kWays];    // hash bits 48..63 of the entry in each way
    uint32_t stamp[kWays];  // last-seen now_ms
    uint8_t cls[kWays];     // ConnClass
    uint8_t valid;          // bit w: way w holds an entry
    uint8_t in_alt;         // bit w: way w's entry has this as its alternate bucket
    uint16_t reserved;
    uint32_t overflow;  // entries whose primary is this bucket that live in their alternate
  };
  // One cache line per entry, so a hit reads exactly one line of it.
  struct alignas(64) Entry {
    uint64_t key[5];  // the FlowKey bytes
    uint64_t value;   // the ConnValue bytes
    uint64_t hash;    // the caller's flow hash: finds the primary bucket when this entry is freed
    uint32_t seq;     // seqlock for Peek: odd while key/value are being rewritten
    uint32_t reserved;
  };
  static_assert(sizeof(Bucket) == 64 && sizeof(Entry) == 64, "one cache line each");

  ConnTable() = default;
  uint32_t LookupSlow(const FlowKey& k, uint64_t hash, uint32_t now_ms, uint8_t tcp_flags,
                      ConnValue* out);
  int FindWay(uint32_t bucket, uint16_t sig, const uint64_t* key_words) const;
  static inline uint32_t MatchWays(const Bucket& b, uint16_t sig);
  static uint16_t Signature(uint64_t hash) { return static_cast<uint16_t>(hash >> 48); }
  bool Expired(uint32_t stamp, uint8_t cls, uint32_t now_ms) const {
    return static_cast<int32_t>(now_ms - stamp) > static_cast<int32_t>(timeout_ms_[cls]);
  }
  void Free(uint32_t bucket, uint32_t way);
  void Write(uint32_t bucket, uint32_t way, const uint64_t* key_words, uint64_t hash,
             const ConnValue& v, ConnClass c, uint32_t now_ms);
  uint32_t Alternate(uint64_t hash) const {
    const uint32_t primary = static_cast<uint32_t>(hash) & bucket_mask_;
    uint32_t alt = static_cast<uint32_t>(hash >> 24) & bucket_mask_;
    if (alt == primary) alt ^= 1;  // there are at least two buckets
    return alt;
  }
  void SetTimeouts(const ConnTableOptions& options);
  // Checks capacity and timeouts; returns the number of buckets.
  static absl::StatusOr<uint32_t> NumBuckets(const ConnTableOptions& options);
  // conn_table_shm.cc: points the arrays into a mapped file and recounts size_.
  void AdoptFile(void* base, size_t bytes, uint32_t capacity);

  Bucket* buckets_ = nullptr;  // num_buckets_ headers
  Entry* entries_ = nullptr;   // capacity_ entries; entry i is way i % 8 of bucket i / 8
  uint32_t bucket_mask_ = 0;   // num_buckets_ - 1 (a power of two, >= 2)
  uint32_t capacity_ = 0;
  uint32_t size_ = 0;
  uint32_t sweep_cursor_ = 0;
  uint32_t timeout_ms_[kNumConnClasses] = {};  // indexed by ConnClass
  uint64_t evictions_ = 0;
  uint64_t half_open_evictions_ = 0;
  uint64_t expirations_ = 0;
  void* map_base_ = nullptr;
  size_t map_bytes_ = 0;
  bool hugetlb_ = false;
  void* file_header_ = nullptr;  // ConnTableFileHeader of a CreateShared table
};

// ---- inline implementation (the per-packet calls) ----

// A prefetch the compiler must keep. GCC treats __builtin_prefetch as free of
// side effects: moved into a function of its own (a loop of PrefetchEntry
// over a burst, tried on 2026-12-07, perf/RESULTS.md), every prefetch of the
// loop was deleted and the function compiled to a bare `ret`; 1M-flow
// lookups then cost 2-5x. An asm volatile statement is never removed.
__attribute__((always_inline)) inline void PrefetchLine(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#elif defined(__aarch64__)
  asm volatile("prfm pldl1keep, %0" : : "Q"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

// Bit w set when way w of the bucket is valid and carries signature sig.
__attribute__((always_inline)) inline uint32_t ConnTable::MatchWays(const Bucket& b, uint16_t sig) {
#if defined(__SSE2__)
  const __m128i sigs = _mm_load_si128(reinterpret_cast<const __m128i*>(b.sig));
  const __m128i eq = _mm_cmpeq_epi16(sigs, _mm_set1_epi16(static_cast<int16_t>(sig)));
  return static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(eq, _mm_setzero_si128()))) &
         b.valid;
#else
  uint32_t match = 0;
  for (uint32_t w = 0; w < kWays; ++w) match |= static_cast<uint32_t>(b.sig[w] == sig) << w;
  return match & b.valid;
#endif
}

inline void ConnTable::Prefetch(uint64_t hash) const {
  PrefetchLine(&buckets_[hash & bucket_mask_]);
}

inline void ConnTable::PrefetchEntry(uint64_t hash) const {
  const uint32_t bucket = static_cast<uint32_t>(hash) & bucket_mask_;
  const Bucket& b = buckets_[bucket];
  // The same SSE2 compare as the lookups (a scalar loop cost ~50 more
  // instructions per packet, callgrind on perf/l4_bench).
  uint32_t match = MatchWays(b, Signature(hash));
  if (match != 0) {
    do {
      PrefetchLine(&entries_[bucket * kWays + __builtin_ctz(match)]);
      match &= match - 1;
    } while (match != 0);
  } else {
    // Probably a new flow: Insert will write the first free way of this
    // bucket, so start loading that line for writing now; without it every
    // new flow pays a serialized DRAM access in Write.
    const uint32_t free_ways = ~static_cast<uint32_t>(b.valid) & ((1u << kWays) - 1);
    if (free_ways != 0) {
      PrefetchLine(&entries_[bucket * kWays + __builtin_ctz(free_ways)]);
    }
    if (b.overflow != 0) PrefetchLine(&buckets_[Alternate(hash)]);
  }
}

// The hit of an established flow, without a call: one pass over the primary
// bucket's matching ways. The owner is the only writer, so plain reads; the
// stamp is stored as LookupSlow stores it (relaxed, for Peek).
inline uint32_t ConnTable::Lookup(const FlowKey& k, uint64_t hash, uint32_t now_ms,
                                  uint8_t tcp_flags, ConnValue* out) {
  const uint32_t bucket = static_cast<uint32_t>(hash) & bucket_mask_;
  Bucket& b = buckets_[bucket];
  uint32_t match = MatchWays(b, Signature(hash));
  uint64_t kw[5];
  std::memcpy(kw, &k, sizeof(kw));
  while (match != 0) {
    const uint32_t way = static_cast<uint32_t>(__builtin_ctz(match));
    const Entry& e = entries_[bucket * kWays + way];
    if (((e.key[0] ^ kw[0]) | (e.key[1] ^ kw[1]) | (e.key[2] ^ kw[2]) | (e.key[3] ^ kw[3]) |
         (e.key[4] ^ kw[4])) == 0) {
      const uint8_t cls = b.cls[way];
      // FIN or RST may close the entry: LookupSlow's. Without them the only
      // change is the ACK that confirms a half-open entry (the first ACK of
      // every flow comes here).
      if (__builtin_expect((tcp_flags & kFinOrRst) != 0, 0) || Expired(b.stamp[way], cls, now_ms)) {
        break;
      }
      __atomic_store_n(&b.stamp[way], now_ms, __ATOMIC_RELAXED);
      if (cls == static_cast<uint8_t>(ConnClass::kTcpSyn) && (tcp_flags & kAck) != 0) {
        __atomic_store_n(&b.cls[way], static_cast<uint8_t>(ConnClass::kTcp), __ATOMIC_RELAXED);
      }
      std::memcpy(out, &e.value, sizeof(*out));
      return bucket * kWays + way;
    }
    match &= match - 1;
  }
  return LookupSlow(k, hash, now_ms, tcp_flags, out);
}

}  // namespace lb

#endif  // LB_LIB_CONN_TABLE_H_
