// Verifying a table slot before any packet is forwarded with it, and the one
// verdict per generation that every lcore of a process shares.
//
//  * CheckSlot: the slot's checksum and the bounds of every index the fast
//    path follows without a further check (counts vs capacities, VIP index
//    cells -> in-use VIPs, member ranges and member entries -> backend slots,
//    ring entries -> backend slots, algorithm and address families). It does
//    not allocate, log or make a syscall, so an lcore may run it; a failure
//    is described by a SlotFault (plain data), turned into text off the lcore
//    by DescribeSlotFault. ValidateSlot (shm_region.h) is CheckSlot with the
//    text, for start-up, the control plane and tests.
//  * TableGate: the verdict for each published generation, computed once per
//    process rather than once per lcore; lcores keep their slot until the
//    verdict is there and then only read it. Who verifies: the first lcore
//    that sees a new generation, inline, when the slot is small (at most
//    kInlineVerifyBytes to read, about 60 us: one VIP with a 65,537-entry
//    ring and up to ~3,000 backends); a larger one is left to lb-dataplane's
//    verifier thread (UseVerifierThread). A slot at the default maximum
//    capacities (64 VIPs x 65,537-entry rings, 16 MiB) takes about 2.4 ms,
//    1.1 ms of it the checksum (four-lane hash, shm_region.cc; 3.3-3.8 ms
//    as one serial chain before): on an lcore that would be about 24,000
//    packets at 10 Mpps against 1,024 RX descriptors.
//    Without a verifier thread (in-process harnesses, benchmarks) the first
//    lcore verifies every slot inline. The thread alone would be simpler,
//    but its wake-up on a busy machine costs milliseconds (measured 1-5 ms
//    from publish to lcores on 2 shared vCPUs, 0.1-0.2 ms inline).
//
// Why the claimer may read the slot safely: the control plane rewrites slot
// G % 2 only after every live lcore has observed a newer generation than G
// or has refused G (lib/table_format.h, reclamation protocol); no lcore does
// either before the verdict for G exists.
//
// Threads: CheckSlot is a pure function. TableGate::Resolve may be called by
// every lcore concurrently; LastRefusal by any thread.
#ifndef LB_LIB_SLOT_VERIFY_H_
#define LB_LIB_SLOT_VERIFY_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "lib/shm_region.h"

namespace lb {

// The field at fault in a refused slot. Names are DescribeSlotFault's.
enum class SlotField : uint32_t {
  kNone = 0,
  kGeneration,      // header generation != the published generation
  kNumVips,         // > max_vips
  kNumBackends,     // > max_backends
  kNumMembers,      // > max_members
  kRingSize,        // > max_ring_size
  kChecksum,        // SlotChecksum != header checksum (stale or torn slot)
  kVipMembers,      // vips[i] member_begin + member_count > num_members
  kVipAlgorithm,    // vips[i].algorithm >= kNumAlgorithms
  kVipFamily,       // vips[i].family not 4 or 6
  kRingEntry,       // vips[i] ring[k] >= num_backends
  kMember,          // members[m] == 0 or >= num_backends
  kBackendFamily,   // backends[b] in use, family not 4 or 6
  kVipIndexCell,    // cell > num_vips
  kVipIndexUnused,  // cell names a VIP entry that is not in use
};

struct SlotFault {
  SlotField field = SlotField::kNone;
  uint32_t index = 0;   // vips[index], members[index], cell index, ...
  uint32_t index2 = 0;  // ring position for kRingEntry
  uint64_t value = 0;   // the value found
  uint64_t limit = 0;   // the bound it broke (or the value expected)
};

// "num_vips", "vip index cell", ...
const char* SlotFieldName(SlotField f);
// "vip index cell 5 = 9 beyond num_vips 1", "checksum mismatch for generation 7".
std::string DescribeSlotFault(const SlotFault& f, uint64_t generation);

// True when `v` may be used by an lcore. Counts are checked before the
// checksum is computed (it reads num_* entries). No allocation: lcore-safe.
bool CheckSlot(const SlotView& v, SlotFault* fault);
// CheckSlot without the checksum: what the writer checks of a slot it has
// just built, before it seals it (computing the checksum it would compare
// against is its own work, so comparing proves nothing).
bool CheckSlotIndices(const SlotView& v, SlotFault* fault);

// The most an lcore verifies inline (bytes CheckSlot reads). CheckSlot reads
// about 9 GB/s (0.56 MiB in 62 us, tests/unit/slot_verify_test.cc; 140 us
// with the one-lane checksum, when this limit was set for ~130 us, the time
// a 1,024-descriptor RX ring fills at 8 Mpps), so about 60 us.
inline constexpr uint64_t kInlineVerifyBytes = 512 * 1024;

// What CheckSlot would read for `v` (counts clamped to the capacities).
uint64_t SlotVerifyBytes(const SlotView& v);

class TableGate {
 public:
  enum class Verdict { kPending, kAccepted, kRefused };

  // Lcores: the verdict for generation `g` (> 0) of `tables`. kPending
  // until it exists (ask again after the next burst). The first caller for a
  // new g verifies slot g (generation stamp + CheckSlot) and publishes the
  // verdict, unless a verifier thread is there and the slot is larger than
  // kInlineVerifyBytes. No allocation, no syscall.
  Verdict Resolve(const TableReader& tables, uint64_t g);
  // Before the lcores start: verdicts come from VerifyPublished only.
  void UseVerifierThread() { verifier_thread_.store(true, std::memory_order_relaxed); }
  // Start-up (every slot) and the verifier thread (`only_large`: a slot an
  // lcore verifies inline is left to it, so that a thread woken late never
  // holds up a small table): verifies the published generation if it has no
  // verdict yet. kPending when nothing is published, or left to the lcores.
  Verdict VerifyPublished(const TableReader& tables, bool only_large = false);

  // The last refused generation (0: none) and why; any thread.
  uint64_t LastRefusal(SlotFault* fault) const;

 private:
  Verdict Decide(const TableReader& tables, uint64_t g, bool may_verify);

  std::atomic<bool> verifier_thread_{false};
  std::atomic<uint64_t> claimed_{0};
  std::atomic<uint64_t> deferred_{
      0};  // too large to verify inline: the thread's   // generation being (or last) verified
  std::atomic<uint64_t> accepted_{0};  // last generation verified good
  std::atomic<uint64_t> refused_{0};   // last generation refused
  // The fault of refused_, stored before refused_ (release).
  std::atomic<uint32_t> fault_field_{0};
  std::atomic<uint32_t> fault_index_{0};
  std::atomic<uint32_t> fault_index2_{0};
  std::atomic<uint64_t> fault_value_{0};
  std::atomic<uint64_t> fault_limit_{0};
};

}  // namespace lb

#endif  // LB_LIB_SLOT_VERIFY_H_
