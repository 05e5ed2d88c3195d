// Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
// Reliable Software Network Load Balancer", NSDI'16, §3.4).
//
// The control plane turns the backend set of one VIP into a lookup table of
// prime size M (the "ring"); the dataplane sends a new flow to
// table[flow_hash % M]. Each entry is the caller-chosen uint32 `value` of one
// backend (its slot index in the shared backend table); 0 means "no backend".
//
// Contract:
//   - Deterministic: the table depends only on M and on the multiset of
//     (key, weight, value). It is byte-identical across processes, machines,
//     compilers and the order in which the config lists the backends. This is
//     what lets many LB nodes behind ECMP send a flow to the same backend
//     whichever node receives it. The key hash (MaglevKeyHash) and the tie
//     order are therefore part of the wire contract: changing either changes
//     every table, so nodes running different versions would disagree.
//     tests/unit/maglev_test.cc freezes both with golden values.
//   - A backend with weight w > 0 receives M * w / sum(weights) slots to
//     within two; with equal weights every backend receives exactly
//     floor(M/N) or ceil(M/N) slots. Weight 0 excludes a backend. Two backends
//     may share a value (their slots then add up); keys must be unique.
//   - Removing or adding one of N backends moves its 1/N of the slots plus a
//     cascade among the others (Maglev is near-minimal, not minimal, §3.4):
//     1.55/N in all for N = 100 at M = 65537, 1.14/N at M = 655373. Larger
//     M / N means less of both imbalance and cascade.
//   - An empty backend list, or one whose weights are all zero, yields an
//     all-zero table: every new flow is a "no backend" drop.
//
// Failure: invalid input returns absl::InvalidArgumentError whose message names
// the field at fault (table_size, key, value); `out` is then left untouched, so
// a bad config never disturbs a table the dataplane may be reading.
//
// Threads: control plane only. All free functions are reentrant and may be
// called from any thread; a MaglevBuilder must be used by one thread at a time.
// A build takes about 1 ms for M = 65537, N = 1000 and 11 ms for M = 655373
// (perf/run.sh maglev); it is not for the packet path, which only ever reads
// the finished table.
#ifndef LB_LIB_MAGLEV_H_
#define LB_LIB_MAGLEV_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lb {

// The paper's small table size. Keep M above 100 * N: the imbalance is
// ceil(M/N) / (M/N), e.g. 1.0071 for N = 1000 here (§3.4, §5.3).
inline constexpr uint64_t kDefaultMaglevTableSize = 65537;
// Largest accepted table size (64 MiB of uint32 entries). Also keeps every
// intermediate product of the build within 64 bits.
inline constexpr uint64_t kMaxMaglevTableSize = uint64_t{1} << 24;

struct MaglevBackend {
  std::string key;      // stable identity, e.g. "10.0.0.7:443"; non-empty, unique
  uint32_t weight = 0;  // relative share of slots; 0 = not in the table
  uint32_t value = 0;   // what the table stores for this backend; never 0
};

// Deterministic primality test for every 64-bit n.
bool IsPrime(uint64_t n);

// OK iff m is a prime in [2, kMaxMaglevTableSize]; otherwise InvalidArgument
// naming table_size, e.g. "table_size 65536 is not prime".
absl::Status ValidateMaglevTableSize(uint64_t m);

// The 64-bit hash of a backend key that seeds its permutation. Frozen: see the
// determinism contract above.
uint64_t MaglevKeyHash(absl::string_view key, uint64_t seed);

// Backend `key` visits the slots offset, offset + skip, offset + 2 * skip, ...
// (mod M) in order of preference. offset is in [0, M), skip in [1, M); since M
// is prime, the sequence is a permutation of all M slots. Requires a valid M.
struct MaglevPermutation {
  uint32_t offset;
  uint32_t skip;
};
MaglevPermutation MaglevPermutationFor(absl::string_view key, uint64_t table_size);

// Builds tables while reusing its scratch memory (O(N + M / 64) words), so that
// repeated builds of the same size allocate nothing. Not thread-safe.
class MaglevBuilder {
 public:
  // Builds the table for `backends` into `out`; M = out.size(). Duplicate or
  // empty keys, a zero value, an invalid M, or fewer slots than backends with
  // a non-zero weight are InvalidArgument.
  absl::Status Build(absl::Span<const MaglevBackend> backends, absl::Span<uint32_t> out);

 private:
  // Probe state of one backend with a non-zero weight.
  struct Entry {
    uint32_t pos;  // next slot of its permutation to try
    uint32_t skip;
    uint32_t value;
    uint32_t inv_skip;  // skip^-1 mod M once it claims in the final phase, else 0
  };
  // Its place in the weight scheme (entries_[i] <-> schedule_[i]).
  struct Schedule {
    uint32_t weight;
    uint32_t picks;   // slots claimed so far (heap scheduler only)
    uint64_t credit;  // weight accumulated and not yet spent on a slot (scan only)
  };
  class Filler;
  struct Weights {
    uint64_t weighted = 0;  // backends with a non-zero weight
    uint64_t max = 0;
    uint64_t sum = 0;
  };
  // order_ = the backends in key order; refuses an empty or duplicated key
  // and the value 0.
  absl::Status SortAndCheck(absl::Span<const MaglevBackend> backends, Weights* w);
  // Claim slots until the table is full, in the order of the weight scheme
  // (Build explains it): a round-robin scan, or a heap for skewed weights.
  void FillByScan(Filler& filler, uint64_t max_weight, bool equal_weights);
  void FillByHeap(Filler& filler, uint64_t max_weight);
  std::vector<uint32_t> order_;     // backend indices sorted by key
  std::vector<Entry> entries_;      // per weighted backend, in key order
  std::vector<Schedule> schedule_;  // same order
  std::vector<uint64_t> used_;      // occupancy bitmap, each slot s at bits s and s + M
  std::vector<uint32_t> empties_;   // free slots in the final phase
  std::vector<uint64_t> heap_;      // scheduler for skewed weights
};

// Same as MaglevBuilder::Build with a builder private to the calling thread.
absl::Status BuildMaglevTable(absl::Span<const MaglevBackend> backends, absl::Span<uint32_t> out);

// A deterministic 64-bit fingerprint of a table (values and length), so that
// two nodes can compare their rings cheaply. Not cryptographic.
uint64_t MaglevFingerprint(absl::Span<const uint32_t> table);

// MaglevFingerprint(table), computed in the same pass that writes
// out[k] = table[k] == 0 ? 0 : value_of[table[k] - 1] for every k (a ring of
// 1-based positions mapped to the values they stand for). Every table[k]
// must be 0 or in [1, value_of.size()]; out holds table.size() entries and
// must not overlap table.
uint64_t MaglevFingerprintAndMap(absl::Span<const uint32_t> table,
                                 absl::Span<const uint32_t> value_of, uint32_t* out);

}  // namespace lb

#endif  // LB_LIB_MAGLEV_H_
