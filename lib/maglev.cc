#include "lib/maglev.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/numeric/bits.h"
#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"
#include "lib/byte_order.h"

namespace lb {
namespace {

// Seeds of the two independent key hashes that give a backend its offset and
// its skip (§3.4: "offset <- h1(name) mod M, skip <- h2(name) mod (M-1) + 1").
constexpr uint64_t kOffsetSeed = 0;
constexpr uint64_t kSkipSeed = 1;

// MurmurHash64A (Austin Appleby, public domain) constants.
constexpr uint64_t kMurmurMul = 0xc6a4a7935bd1e995ULL;
constexpr int kMurmurShift = 47;

uint64_t MurmurMix(uint64_t k) {
  k *= kMurmurMul;
  k ^= k >> kMurmurShift;
  return k * kMurmurMul;
}

uint64_t MurmurFinish(uint64_t h) {
  h ^= h >> kMurmurShift;
  h *= kMurmurMul;
  return h ^ (h >> kMurmurShift);
}

uint64_t MulMod(uint64_t a, uint64_t b, uint64_t n) {
  return absl::Uint128Low64((absl::uint128(a) * b) % n);
}

uint64_t PowMod(uint64_t base, uint64_t exp, uint64_t n) {
  uint64_t result = 1;
  base %= n;
  while (exp != 0) {
    if (exp & 1) result = MulMod(result, base, n);
    base = MulMod(base, base, n);
    exp >>= 1;
  }
  return result;
}

// a^-1 mod m for 0 < a < m, m prime (extended Euclid).
uint32_t InverseMod(uint32_t a, uint32_t m) {
  int64_t t = 0, next_t = 1;
  int64_t r = m, next_r = a;
  while (next_r != 0) {
    const int64_t q = r / next_r;
    t = std::exchange(next_t, t - q * next_t);
    r = std::exchange(next_r, r - q * next_r);
  }
  return static_cast<uint32_t>(t < 0 ? t + m : t);
}

// (a + b) mod m for a, b < m <= 2^24.
inline uint32_t AddMod(uint32_t a, uint32_t b, uint32_t m) {
  a += b;
  return a >= m ? a - m : a;
}

// Use the round-robin scan scheduler while it wastes at most this many
// eligibility checks per claimed slot; beyond that the heap is cheaper.
constexpr uint64_t kMaxScanChecksPerSlot = 8;

}  // namespace

bool IsPrime(uint64_t n) {
  static constexpr uint64_t kBases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  if (n < 2) return false;
  for (uint64_t p : kBases) {
    if (n % p == 0) return n == p;
  }
  if (n < 41 * 41) return true;
  // Miller-Rabin with the first twelve primes as bases is exact for every n
  // below 3.3e24 (Sorenson and Webster 2015), so for all 64-bit n.
  uint64_t d = n - 1;
  int s = 0;
  while ((d & 1) == 0) {
    d >>= 1;
    ++s;
  }
  for (uint64_t a : kBases) {
    uint64_t x = PowMod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool witness = true;
    for (int i = 1; i < s && witness; ++i) {
      x = MulMod(x, x, n);
      witness = x != n - 1;
    }
    if (witness) return false;
  }
  return true;
}

absl::Status ValidateMaglevTableSize(uint64_t m) {
  if (m > kMaxMaglevTableSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("table_size ", m, " exceeds the maximum ", kMaxMaglevTableSize));
  }
  if (!IsPrime(m)) {
    return absl::InvalidArgumentError(absl::StrCat("table_size ", m, " is not prime"));
  }
  return absl::OkStatus();
}

// MurmurHash64A over the key bytes, read little-endian. Chosen over
// std::hash / absl::Hash because those may differ between builds or are
// salted per process, and every node must derive the same permutation.
uint64_t MaglevKeyHash(absl::string_view key, uint64_t seed) {
  const auto* p = reinterpret_cast<const unsigned char*>(key.data());
  const size_t len = key.size();
  uint64_t h = seed ^ (static_cast<uint64_t>(len) * kMurmurMul);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    h ^= MurmurMix(LoadLe64(p + i));
    h *= kMurmurMul;
  }
  if (i < len) {
    uint64_t tail = 0;
    for (size_t j = len; j > i; --j) tail = (tail << 8) | p[j - 1];
    h ^= tail;
    h *= kMurmurMul;
  }
  return MurmurFinish(h);
}

MaglevPermutation MaglevPermutationFor(absl::string_view key, uint64_t table_size) {
  MaglevPermutation perm;
  perm.offset = static_cast<uint32_t>(MaglevKeyHash(key, kOffsetSeed) % table_size);
  perm.skip = static_cast<uint32_t>(MaglevKeyHash(key, kSkipSeed) % (table_size - 1) + 1);
  return perm;
}

// MurmurHash64A's mixing over the values taken two at a time as numbers (not
// bytes), so the result does not depend on the host's byte order.
uint64_t MaglevFingerprint(absl::Span<const uint32_t> table) {
  constexpr uint64_t kSeed = 0x6d61676c6576ULL;  // "maglev"
  const size_t n = table.size();
  uint64_t h = kSeed ^ (static_cast<uint64_t>(n) * kMurmurMul);
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    h ^= MurmurMix(table[i] | (static_cast<uint64_t>(table[i + 1]) << 32));
    h *= kMurmurMul;
  }
  if (i < n) {
    h ^= MurmurMix(table[i]);
    h *= kMurmurMul;
  }
  return MurmurFinish(h);
}

uint64_t MaglevFingerprintAndMap(absl::Span<const uint32_t> table,
                                 absl::Span<const uint32_t> value_of, uint32_t* out) {
  constexpr uint64_t kSeed = 0x6d61676c6576ULL;  // as MaglevFingerprint
  const size_t n = table.size();
  const uint32_t* values = value_of.data();
  auto map = [values](uint32_t pos) { return pos == 0 ? 0u : values[pos - 1]; };
  uint64_t h = kSeed ^ (static_cast<uint64_t>(n) * kMurmurMul);
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const uint32_t a = table[i], b = table[i + 1];
    out[i] = map(a);
    out[i + 1] = map(b);
    h ^= MurmurMix(a | (static_cast<uint64_t>(b) << 32));
    h *= kMurmurMul;
  }
  if (i < n) {
    out[i] = map(table[i]);
    h ^= MurmurMix(table[i]);
    h *= kMurmurMul;
  }
  return MurmurFinish(h);
}

// Claims slots for backends in the order a scheduler asks for them. A claim
// gives the backend the first free slot of its permutation (§3.4, Pseudocode
// 1). The result is exactly that of the paper's loop; only the way of finding
// the slot differs:
//   - Probing: walk the permutation, testing an occupancy bitmap (M / 8
//     bytes, so it stays in L1/L2 where the table would not).
//   - Final phase: once only about sqrt(M) / 2 slots are free,
//     a probe succeeds only once in M / free tries, so instead compute for
//     each free slot e its distance (e - pos) * skip^-1 mod M along the
//     backend's permutation and take the nearest: the slot probing would
//     reach first.
// Together these take a build from about M ln M probes to about
// M ln(2 sqrt(M)) probes plus M / 8 distance evaluations.
class MaglevBuilder::Filler {
 public:
  Filler(MaglevBuilder& b, absl::Span<uint32_t> out)
      : b_(b),
        out_(out),
        m_(static_cast<uint32_t>(out.size())),
        recip_(~uint64_t{0} / m_),
        free_(m_) {
    const auto final_slots = static_cast<uint32_t>(0.5 * std::sqrt(static_cast<double>(m_)));
    probes_left_ = m_ > final_slots ? m_ - final_slots : 0;
    b_.used_.assign((2 * uint64_t{m_} + 63) / 64, 0);  // each slot twice, see Probe
    if (probes_left_ == 0) EnterFinalPhase();
  }

  // The probing phase's state, for the caller to keep in a local: stores
  // into the table cannot alias it, so it stays in registers.
  struct Hot {
    uint64_t* used;
    uint32_t* out;
    uint32_t m;
    uint32_t left;  // claims left to the probing phase
  };
  Hot hot() { return {b_.used_.data(), out_.data(), m_, probes_left_}; }

  // Gives e its next slot; true when that filled the table. Requires a table
  // not yet full.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Claim(Entry& e, Hot& h) {
    if (ABSL_PREDICT_TRUE(h.left != 0)) {
      const uint32_t slot = Probe(e, h.used, h.m);
      e.pos = AddMod(slot, e.skip, h.m);
      h.out[slot] = e.value;
      if (ABSL_PREDICT_FALSE(--h.left == 0)) {
        probes_left_ = 0;
        EnterFinalPhase();
        return free_ == 0;  // when M is so small that no slot is left for it
      }
      return false;
    }
    return ClaimNearest(e);
  }

 private:
  // Marks and returns the first free slot of e's permutation from e.pos. While
  // the first try fails, it tests the next four slots per iteration, computing
  // each from the same base: that keeps the loop-carried chain at one modular
  // add per four probes, where the table's late filling would otherwise be
  // bound by it. The bitmap holds every slot twice (bit s and bit s + M), so
  // base + step (both < M) is tested without reducing it mod M: a probe is
  // an add, a load and a bit test (callgrind: 13 instructions per probe
  // before, when each of the four was reduced first).
  static uint32_t Probe(const Entry& e, uint64_t* const used, const uint32_t m) {
    auto is_used = [used](uint32_t slot) { return (used[slot >> 6] >> (slot & 63)) & 1; };
    uint32_t pos = e.pos;
    if (is_used(pos)) {
      const uint32_t s1 = e.skip, s2 = AddMod(s1, s1, m), s3 = AddMod(s2, s1, m),
                     s4 = AddMod(s2, s2, m);
      for (;;) {
        // pos < M and s_i < M: every p_i < 2M, inside the doubled bitmap.
        if (!is_used(pos + s1)) {
          pos += s1;
          break;
        }
        if (!is_used(pos + s2)) {
          pos += s2;
          break;
        }
        if (!is_used(pos + s3)) {
          pos += s3;
          break;
        }
        if (!is_used(pos + s4)) {
          pos += s4;
          break;
        }
        pos = AddMod(pos, s4, m);
      }
      if (pos >= m) pos -= m;
    }
    // Opaque to the optimiser: otherwise it keeps each probe's word address
    // and bit index alive for the mark below, three more instructions per
    // probe.
    asm("" : "+r"(pos));
    used[pos >> 6] |= uint64_t{1} << (pos & 63);
    const uint32_t twin = pos + m;
    used[twin >> 6] |= uint64_t{1} << (twin & 63);
    return pos;
  }

  // Cold: runs once per build. Kept out of line so it does not disturb the
  // register allocation of the probe loop.
  ABSL_ATTRIBUTE_NOINLINE void EnterFinalPhase() {
    std::vector<uint32_t>& empties = b_.empties_;
    empties.clear();
    for (uint32_t w = 0; w < (m_ + 63) / 64; ++w) {
      for (uint64_t free_bits = ~b_.used_[w]; free_bits != 0; free_bits &= free_bits - 1) {
        const uint32_t slot = w * 64 + static_cast<uint32_t>(absl::countr_zero(free_bits));
        if (slot >= m_) break;
        empties.push_back(slot);
      }
    }
    free_ = static_cast<uint32_t>(empties.size());
  }

  // The final phase's claim: only the backends that claim in it (at most
  // the few free slots' worth) need skip^-1, so it is computed here.
  ABSL_ATTRIBUTE_NOINLINE bool ClaimNearest(Entry& e) {
    if (e.inv_skip == 0) e.inv_skip = InverseMod(e.skip, m_);
    const uint32_t slot = NearestFree(e);
    e.pos = AddMod(slot, e.skip, m_);
    out_[slot] = e.value;
    return --free_ == 0;
  }

  uint32_t NearestFree(const Entry& e) {
    std::vector<uint32_t>& empties = b_.empties_;
    const uint64_t m = m_, recip = recip_, pos = e.pos, inv_skip = e.inv_skip;
    uint64_t best = ~uint64_t{0};
    size_t best_i = 0;
    for (size_t i = 0; i < empties.size(); ++i) {
      const uint64_t slot = empties[i];
      const uint64_t x = (slot >= pos ? slot - pos : slot + m - pos) * inv_skip;  // < 2^48
      // x mod M by a precomputed reciprocal: q is floor(x / M) or one less.
      const uint64_t q = absl::Uint128High64(absl::uint128(x) * recip);
      uint64_t steps = x - q * m;
      if (steps >= m) steps -= m;
      if (steps < best) {
        best = steps;
        best_i = i;
      }
    }
    const uint32_t slot = empties[best_i];
    empties[best_i] = empties.back();
    empties.pop_back();
    return slot;
  }

  MaglevBuilder& b_;
  absl::Span<uint32_t> out_;
  const uint32_t m_;
  const uint64_t recip_;  // floor((2^64 - 1) / M)
  uint32_t free_;         // free slots, kept from the final phase on
  // Claims left to the probing phase: it stops with about sqrt(M) / 2 slots
  // free, where probing would take M / free tries per claim.
  uint32_t probes_left_;
};

absl::Status MaglevBuilder::SortAndCheck(absl::Span<const MaglevBackend> backends, Weights* w) {
  // Backends are taken in key order, never in the order the config lists
  // them: which backend claims a contested slot first depends on this order,
  // so it must be the same on every node and for every permutation of the
  // same config. Byte-wise key comparison is the same on every platform.
  order_.resize(backends.size());
  std::iota(order_.begin(), order_.end(), 0);
  auto key_less = [&](uint32_t a, uint32_t b) {
    return absl::string_view(backends[a].key) < absl::string_view(backends[b].key);
  };
  // The control plane passes members already in key order: check, O(N).
  if (!std::is_sorted(order_.begin(), order_.end(), key_less)) {
    std::sort(order_.begin(), order_.end(), key_less);
  }
  for (size_t i = 0; i < order_.size(); ++i) {
    const MaglevBackend& be = backends[order_[i]];
    if (be.key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("backend key is empty (backend with value ", be.value, ")"));
    }
    if (i > 0 && be.key == backends[order_[i - 1]].key) {
      return absl::InvalidArgumentError(absl::StrCat("backend key '", be.key, "' is duplicated"));
    }
    if (be.value == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("backend '", be.key, "' has value 0, which is reserved for 'no backend'"));
    }
    if (be.weight > 0) {
      ++w->weighted;
      w->max = std::max<uint64_t>(w->max, be.weight);
      w->sum += be.weight;
    }
  }
  return absl::OkStatus();
}

// Round-robin scan; `credit` holds r * weight - picks * max_weight. Equal
// weights claim for every backend every round, without the credit.
void MaglevBuilder::FillByScan(Filler& filler, uint64_t max_weight, bool equal_weights) {
  Filler::Hot h = filler.hot();
  if (equal_weights) {
    for (;;) {
      for (Entry& e : entries_) {
        if (filler.Claim(e, h)) return;
      }
    }
  }
  const size_t n = entries_.size();
  for (;;) {
    for (size_t i = 0; i < n; ++i) {
      Schedule& s = schedule_[i];
      s.credit += s.weight;
      if (s.credit < max_weight) continue;
      s.credit -= max_weight;
      if (filler.Claim(entries_[i], h)) return;
    }
  }
}

// Skewed weights: most backends sit out most rounds, so instead pop the
// backends in (round they become eligible, key order) order — the exact
// sequence the scan would produce, at O(log N) per slot. Rounds never
// exceed M (the heaviest backend claims a slot every round), so a round
// number clamped to 2^32 - 1 is simply never reached.
void MaglevBuilder::FillByHeap(Filler& filler, uint64_t max_weight) {
  auto next_round = [max_weight](const Schedule& s) {
    const uint64_t r = ((s.picks + uint64_t{1}) * max_weight + s.weight - 1) / s.weight;
    return std::min<uint64_t>(r, 0xffffffffu);
  };
  heap_.clear();
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    heap_.push_back(next_round(schedule_[i]) << 32 | i);
  }
  std::make_heap(heap_.begin(), heap_.end(), std::greater<>());
  Filler::Hot h = filler.hot();
  for (;;) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    const auto i = static_cast<uint32_t>(heap_.back());
    if (filler.Claim(entries_[i], h)) return;
    ++schedule_[i].picks;
    heap_.back() = next_round(schedule_[i]) << 32 | i;
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  }
}

absl::Status MaglevBuilder::Build(absl::Span<const MaglevBackend> backends,
                                  absl::Span<uint32_t> out) {
  const uint64_t m = out.size();
  if (absl::Status s = ValidateMaglevTableSize(m); !s.ok()) return s;
  Weights w;
  if (absl::Status s = SortAndCheck(backends, &w); !s.ok()) return s;
  if (w.weighted > m) {
    return absl::InvalidArgumentError(absl::StrCat("table_size ", m,
                                                   " is smaller than the number of backends "
                                                   "with a non-zero weight (",
                                                   w.weighted, ")"));
  }
  if (w.weighted == 0) {
    std::fill(out.begin(), out.end(), 0);
    return absl::OkStatus();
  }

  entries_.clear();
  schedule_.clear();
  for (uint32_t idx : order_) {
    const MaglevBackend& be = backends[idx];
    if (be.weight == 0) continue;
    const MaglevPermutation perm = MaglevPermutationFor(be.key, m);
    entries_.push_back(Entry{perm.offset, perm.skip, be.value, 0});
    schedule_.push_back(Schedule{be.weight, 0, 0});
  }

  // Weights (the Envoy scheme, in integers so that it is exact everywhere):
  // rounds r = 1, 2, ... each visit the backends in key order; a backend
  // claims a slot in round r iff (picks + 1) * max_weight <= r * weight, i.e.
  // whenever its accumulated share of rounds pays for one more slot. Equal
  // weights thus degenerate to the paper's round robin, and a backend's slot
  // count is floor(rounds * weight / max_weight) give or take the last round.
  Filler filler(*this, out);
  if (w.weighted * w.max <= kMaxScanChecksPerSlot * w.sum) {
    FillByScan(filler, w.max, w.max * w.weighted == w.sum);
  } else {
    FillByHeap(filler, w.max);
  }
  return absl::OkStatus();
}

absl::Status BuildMaglevTable(absl::Span<const MaglevBackend> backends, absl::Span<uint32_t> out) {
  thread_local MaglevBuilder builder;
  return builder.Build(backends, out);
}

}  // namespace lb
