// Mapping, validating, publishing and reading the shared-memory regions whose
// layout table_format.h defines.
//
//  * TableWriter  (control plane only): creates or re-attaches the table
//    region, fills the inactive slot, publishes it with one release-store.
//  * TableReader  (dataplane): attaches read-only-in-spirit, validates the
//    header, hands out SlotViews for a generation.
//  * StatsRegion  (dataplane creates; control plane attaches): per-lcore
//    slices, and the reclamation check the control plane runs before it
//    reuses a slot.
//
// Errors: every open/attach returns absl::Status with a message that names the
// file and the field that is wrong (magic, ABI version, a size, the checksum).
// A region is never silently re-initialised when its geometry differs: the
// caller gets FailedPrecondition and decides.
//
// Threads: a TableWriter is used by one control-plane thread. SlotView lookups
// are const and may be called from any lcore. StatsRegion::Lcore(i) is written
// only by lcore i; any thread may read.
#ifndef LB_LIB_SHM_REGION_H_
#define LB_LIB_SHM_REGION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/flow_key.h"
#include "lib/table_format.h"

namespace lb {

class TableGate;  // lib/slot_verify.h

// The directory regions live in when the caller does not name one: the first
// mounted hugetlbfs (so tables sit in hugepages), else /dev/shm (tmpfs). The
// returned string says which, for a start-up log line.
struct RegionDir {
  std::string path;
  bool hugetlbfs;
};
RegionDir DefaultRegionDir();

// A shared file mapping (MAP_SHARED). Move-only; unmaps on destruction.
class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Creates (or truncates to) `size` bytes, rounded up to the filesystem's
  // page size (2 MiB on hugetlbfs), zero-filled.
  static absl::StatusOr<MappedFile> Create(const std::string& path, size_t size);
  // Maps an existing file whole.
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

struct TableCapacities {
  uint32_t max_vips = 64;
  uint32_t max_backends = 4096;  // including reserved slot 0
  uint32_t max_members = 16384;  // sum over VIPs of active members
  uint32_t max_ring_size = 65537;
};

// Fills every size/offset field of a header for `caps` (not the atomics).
// Refuses capacities beyond the kMax*Limit bounds, naming the field.
absl::StatusOr<TableRegionHeader> ComputeTableLayout(const TableCapacities& caps);

// Checks a mapped header against the region size: magic, ABI, sizes, offsets,
// checksum. The message names the first field at fault.
absl::Status ValidateTableHeader(const TableRegionHeader& h, size_t region_size);

// Checksum of the immutable part of a header (bytes before header_checksum).
uint64_t HeaderChecksum(const void* header, size_t len_before_checksum);

// The VIP hash key used by the control plane to build the VIP index and by the
// lcores to probe it. Deterministic.
uint32_t VipHashKey(AddrFamily family, const uint8_t* addr, uint8_t proto, uint16_t port);

// A view of one slot. Cheap to copy; pointers into the mapping.
struct SlotView {
  SlotHeader* header = nullptr;
  VipEntry* vips = nullptr;
  BackendEntry* backends = nullptr;
  uint32_t* members = nullptr;
  uint32_t* vip_hash = nullptr;
  uint32_t* rings = nullptr;
  uint32_t vip_hash_mask = 0;
  uint32_t ring_stride = 0;  // max_ring_size
  uint32_t max_vips = 0;
  uint32_t max_backends = 0;
  uint32_t max_members = 0;

  uint32_t* Ring(uint32_t vip_index) const {
    return rings + static_cast<size_t>(vip_index) * ring_stride;
  }
  // Exact (addr, proto, port) match first, then the all-ports VIP (port 0).
  // Returns the VIP index or -1. Called per packet: no allocation, at most a
  // few probes (the control plane keeps the index at most half full).
  int FindVip(AddrFamily family, const uint8_t* addr, uint8_t proto, uint16_t port) const;
  int FindVipExact(AddrFamily family, const uint8_t* addr, uint8_t proto, uint16_t port) const;
};

// Checksum over the used part of a slot: header fields (not the checksum
// itself), vips[0,num_vips), backends[0,num_backends), members[0,num_members),
// the VIP index and the rings of in-use VIPs (ring_size entries each).
uint64_t SlotChecksum(const SlotView& v);

// Verifies a slot's internal consistency: CheckSlot (lib/slot_verify.h) with
// a message naming the field at fault (DataLoss). Used by the dataplane at
// start-up, by the control plane before it publishes, and by tests. Defined
// in slot_verify.cc.
absl::Status ValidateSlot(const SlotView& v);

class TableWriter {
 public:
  // Opens `path` if it exists with the same capacities (keeping the published
  // generation, so a restarted control plane continues the sequence), or
  // creates it. An existing region with other capacities, a bad magic or ABI
  // is refused (FailedPrecondition) unless `recreate` is set.
  static absl::StatusOr<TableWriter> Open(const std::string& path, const TableCapacities& caps,
                                          bool recreate);

  const TableRegionHeader& header() const { return *header_; }
  uint64_t published_generation() const {
    return control_->generation.load(std::memory_order_acquire);
  }
  // The generation the next Publish() writes: published + 1, or published
  // + 2 after SkipRefused() (into the refused generation's own slot).
  uint64_t NextGeneration() const {
    return published_generation() + (skip_refused_ ? kNumTableSlots : 1);
  }
  // The dataplane refused the published generation R (protocol step 4 in
  // table_format.h): its lcores still read the other slot, so the next
  // publish goes into R's slot as R + 2. Cleared by Publish().
  void SkipRefused() { skip_refused_ = true; }
  bool skipping_refused() const { return skip_refused_; }
  // The slot a publish of NextGeneration() would fill.
  // The caller must first make sure no lcore still reads it (StatsRegion).
  SlotView NextSlot();
  // A view of the currently published slot (for re-reading the last state).
  SlotView CurrentSlot() const;
  // Finalises NextSlot(): writes generation, publish time and checksum into
  // the slot header, then release-stores the new generation. Returns it.
  uint64_t Publish();
  // Writes generation, publish time and checksum into NextSlot()'s header
  // (Seal), so the caller can verify the slot exactly as a dataplane will;
  // PublishSealed() then only release-stores the generation. The checksum
  // (a full pass over the rings) is computed once instead of twice.
  void Seal();
  uint64_t PublishSealed();

  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
  TableRegionHeader* header_ = nullptr;
  TableRegionControl* control_ = nullptr;
  bool skip_refused_ = false;
};

class TableReader {
 public:
  // Maps the region and validates its header; the header is copied, so a
  // later foreign write to it cannot move the arrays lcores index.
  static absl::StatusOr<TableReader> Attach(const std::string& path);

  // One acquire-load; lcores call it once per burst.
  uint64_t generation() const { return control_->generation.load(std::memory_order_acquire); }
  SlotView Slot(uint64_t generation) const;
  const TableRegionHeader& header() const { return header_; }
  // The per-process verdict on each generation, shared by every lcore that
  // reads through this reader (lib/slot_verify.h).
  TableGate& gate() const { return *gate_; }

 private:
  MappedFile file_;
  TableRegionHeader header_;
  TableRegionControl* control_ = nullptr;
  std::shared_ptr<TableGate> gate_;
};

SlotView MakeSlotView(uint8_t* region_base, const TableRegionHeader& h, uint32_t slot_index);

struct StatsCapacities {
  uint32_t max_lcores = kMaxLcores;
  uint32_t max_vips = 64;
  uint32_t max_backends = 4096;
  uint32_t max_ports = kMaxStatsPorts;
};

absl::Status ValidateStatsHeader(const StatsRegionHeader& h, size_t region_size);

class StatsRegion {
 public:
  // Dataplane: create (or reinitialise) the stats region for this process.
  // One writer per region: Create takes an exclusive flock on the file,
  // held as long as this object lives, BEFORE it truncates anything. When
  // another process holds it, Create fails with FailedPrecondition naming
  // that owner's pid (from the region's writer_pid), and the region is left
  // exactly as it was.
  static absl::StatusOr<StatsRegion> Create(const std::string& path, const StatsCapacities& caps);
  // Control plane / tools: attach to an existing region and validate it.
  static absl::StatusOr<StatsRegion> Attach(const std::string& path);

  const StatsRegionHeader& header() const { return *header_; }
  StatsRegionControl& control() const { return *control_; }
  LcoreStats& Lcore(uint32_t i) const {
    return *reinterpret_cast<LcoreStats*>(file_.data() + header_->lcores_offset +
                                          static_cast<size_t>(i) * header_->lcore_stride);
  }
  VipCounters* Vips(uint32_t lcore) const {
    return reinterpret_cast<VipCounters*>(reinterpret_cast<uint8_t*>(&Lcore(lcore)) +
                                          header_->vip_counters_offset);
  }
  // Port `i` of the per-port area (i < header().max_ports); written by the
  // dataplane's monitor thread only.
  PortCounters& Port(uint32_t i) const {
    return reinterpret_cast<PortCounters*>(file_.data() + header_->ports_offset)[i];
  }
  BackendCounters* Backends(uint32_t lcore) const {
    return reinterpret_cast<BackendCounters*>(reinterpret_cast<uint8_t*>(&Lcore(lcore)) +
                                              header_->backend_counters_offset);
  }

  // Reclamation check for reusing the slot that held `min_generation - 1`:
  // every live lcore must have observed_generation >= min_generation. Lcores
  // whose heartbeat is older than stuck_after_ns (while the writer process is
  // alive) are reported as stuck. A stats region whose writer pid is gone has
  // no live lcores. `released_refused` != 0: an lcore that reports exactly
  // that generation as refused does not hold it either (protocol step 4:
  // the slot of a refused generation is free once every lcore refused it).
  struct ReclaimStatus {
    bool ok = true;                 // no live lcore can be reading the old slot
    std::vector<uint32_t> waiting;  // lcores not yet past min_generation
    std::vector<uint32_t> stuck;    // subset of waiting whose heartbeat stalled
    // subset of waiting that refused min_generation or newer: they will not
    // observe it, waiting longer is pointless.
    std::vector<uint32_t> refused;
  };
  ReclaimStatus CheckReclaim(uint64_t min_generation, uint64_t now_ns, uint64_t stuck_after_ns,
                             uint64_t released_refused = 0) const;

  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
  StatsRegionHeader* header_ = nullptr;
  StatsRegionControl* control_ = nullptr;
  std::shared_ptr<const int> writer_lock_;  // Create only: the flocked fd
};

// CLOCK_MONOTONIC / CLOCK_REALTIME in nanoseconds.
uint64_t MonotonicNs();
uint64_t RealtimeNs();

}  // namespace lb

#endif  // LB_LIB_SHM_REGION_H_
