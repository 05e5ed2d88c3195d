// Source-IP stickiness of lb-l7 (docs/L7.md "Sticky sessions"): which
// backend a client address was last sent to, until a TTL, shared by every
// worker of the process without a lock.
//
// A direct-mapped table of 2^k slots; each slot is one 64-bit atomic word
// packing (tag: 32 bits of the key hash, backend + 1: 8 bits, expiry in
// seconds since the table's epoch: 24 bits). Find and Put are one relaxed
// load or store: a word is never torn, and nothing else is published
// through it, so any interleaving of workers leaves some client's complete
// entry (last writer wins). Bounded: a new address whose slot is taken by
// another one replaces it (the most recent client wins, as an LRU of one
// way would); a 32-bit tag mismatch reads as a miss. Expiry granularity is
// one second; the epoch covers 194 days, after which entries read as
// expired (a re-pin, never a wrong answer). Backends: at most 255.
//
// Threads: any number of workers at once.
#ifndef LB_LIB_L7_SOURCE_AFFINITY_H_
#define LB_LIB_L7_SOURCE_AFFINITY_H_

#include <atomic>
#include <cstdint>
#include <memory>

namespace lb::l7 {

class SourceAffinity {
 public:
  // `slots_log2`: table of 2^slots_log2 words (16 = 64k clients, 512 KiB).
  // `epoch_s`: the caller's clock at creation (seconds).
  SourceAffinity(int slots_log2, int64_t epoch_s)
      : mask_((uint64_t{1} << slots_log2) - 1),
        slots_(new std::atomic<uint64_t>[mask_ + 1]),
        epoch_s_(epoch_s) {
    for (uint64_t i = 0; i <= mask_; ++i) slots_[i].store(0, std::memory_order_relaxed);
  }

  // The backend `key_hash` was pinned to, or -1 (none, expired, evicted).
  int Find(uint64_t key_hash, int64_t now_s) const {
    const uint64_t w = slots_[key_hash & mask_].load(std::memory_order_relaxed);
    if (w == 0 || (w >> 32) != Tag(key_hash)) return -1;
    if (static_cast<int64_t>(w & kExpiryMask) <= Rel(now_s)) return -1;
    return static_cast<int>((w >> 24) & 0xff) - 1;
  }

  // Pins `key_hash` to `backend` (0..254) until now_s + ttl_s.
  void Put(uint64_t key_hash, int backend, int64_t now_s, int64_t ttl_s) {
    int64_t exp = Rel(now_s) + ttl_s;
    if (exp > static_cast<int64_t>(kExpiryMask)) exp = kExpiryMask;
    const uint64_t w =
        (Tag(key_hash) << 32) | (uint64_t(backend + 1) & 0xff) << 24 | static_cast<uint64_t>(exp);
    slots_[key_hash & mask_].store(w, std::memory_order_relaxed);
  }

 private:
  static constexpr uint64_t kExpiryMask = (1u << 24) - 1;
  // The tag uses the hash's high half; the index its low bits.
  static uint64_t Tag(uint64_t h) { return h >> 32; }
  int64_t Rel(int64_t now_s) const { return now_s - epoch_s_; }

  const uint64_t mask_;
  std::unique_ptr<std::atomic<uint64_t>[]> slots_;
  const int64_t epoch_s_;
};

}  // namespace lb::l7

#endif  // LB_LIB_L7_SOURCE_AFFINITY_H_
