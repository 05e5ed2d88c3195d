// The shared-memory contract between lb-controlplane and lb-dataplane.
//
// Two regions, each a file on hugetlbfs (tmpfs when no hugepages are mounted),
// each with exactly one writer:
//
//  * The TABLE region is written only by the control plane. It holds
//    kNumTableSlots complete copies ("slots") of the forwarding state: VIPs,
//    backends, per-VIP backend lists and per-VIP Maglev rings. The control
//    plane fills an inactive slot, then release-stores a new generation;
//    slot index = generation % kNumTableSlots.
//  * The STATS region is written only by the dataplane, and each lcore writes
//    only its own LcoreStats slice: counters and the generation it last
//    observed (quiescent-state reclamation, see below).
//
// Layout: every struct here is fixed-size with static_asserts on size and
// offsets. Region sizes are computed from the capacities in the region header
// (max_vips, max_backends, ...) so a deployment can size its tables without an
// ABI change. Both sides refuse a region whose magic, ABI version, sizes or
// header checksum they do not understand (ValidateTableHeader /
// ValidateStatsHeader in shm_region.h).
//
// Reclamation protocol (why a slot can be reused safely):
//  1. Lcore, between bursts: g = generation.load(acquire); if g changed and
//     the slot passes verification (TableGate, lib/slot_verify.h: once per
//     generation per process), point at slot g % kNumTableSlots, then
//     observed_generation.store(g, release). It never touches the old slot
//     after that store.
//  2. Control plane, before writing slot s for generation G (which last held
//     G - kNumTableSlots): wait until every ONLINE lcore has
//     observed_generation >= G - kNumTableSlots + 1. An online lcore with
//     observed_generation == 0 is still attaching: wait for it too.
//  3. Lcore start-up: state.store(kOnline) and observed_generation.store(0)
//     (seq_cst), THEN load generation. Because both sides use seq_cst for the
//     online flag/generation pair, either the control plane sees the lcore
//     online (and waits for it), or the lcore sees the newer generation.
//  4. A refused generation R (a stale checksum, an index out of bounds): the
//     lcores keep the slot they read and their observed_generation, and
//     store refused_generation = R (release). The next publish, R + 1, would
//     overwrite the slot they still read: the control plane fails it at once,
//     naming R (instead of waiting for a reclaim that cannot come), and the
//     publish after that writes generation R + 2 into R's slot, which is free
//     once every online lcore reports refused_generation == R: the verdict
//     is given before any lcore stores it, so nobody reads that slot any
//     more (TableWriter::SkipRefused, StatsRegion::CheckReclaim).
//  5. An online lcore whose heartbeat stops advancing while its process is
//     alive is "stuck": the control plane reports it and refuses to reuse the
//     slot it may be reading; it never overwrites it silently. An lcore of a
//     dead process (stats header pid gone) is not live.
//
// Backends live in stable slots (index into backends[]); slot 0 is reserved
// and means "no backend" so that an all-zero ring is a safe empty state.
// When a slot is given to a different backend its incarnation increases, so a
// connection-table entry (slot, incarnation) can never capture a new
// backend's traffic after a slot is reused.
//
// Thread-safety: the layout is plain data; the atomics below are the only
// fields accessed concurrently by both processes.
#ifndef LB_LIB_TABLE_FORMAT_H_
#define LB_LIB_TABLE_FORMAT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "lib/drop_reasons.h"

namespace lb {

// "LBTABLE1" / "LBSTATS1" as little-endian 64-bit words.
inline constexpr uint64_t kTableMagic = 0x31454C4241544C42ull;
inline constexpr uint64_t kStatsMagic = 0x3153544154534C42ull;
// 2: the slot checksum hashes in four lanes (shm_region.cc MixBytesWide): a
// version-1 lcore would refuse every version-2 slot as a checksum mismatch,
// so the header says which one a region holds.
inline constexpr uint32_t kTableAbiVersion = 2;
// 2: the per-port area (StatsRegionHeader::max_ports/ports_offset,
// PortCounters) after the lcore slices. A version-1 reader would accept a
// version-2 region (the new fields live in bytes it ignored) but compute a
// region_size that disagrees; the bump makes the refusal name the cause.
// 3: drop reason backends_full (LcoreStats::drops has one more entry),
// BackendCounters grows to 64 bytes with full_skips, and its active_flows
// counts only the slot's current incarnation.
// 4: the exception path: drop reason exception_full, and LcoreStats grows by
// to_kernel / from_kernel after drops[].
inline constexpr uint32_t kStatsAbiVersion = 4;
inline constexpr uint32_t kNumTableSlots = 2;
inline constexpr uint32_t kMaxLcores = 64;
// Hard upper bounds, so that corrupt headers cannot make a reader compute a
// huge size. Deployments choose capacities at or below these.
inline constexpr uint32_t kMaxVipsLimit = 4096;
inline constexpr uint32_t kMaxBackendsLimit = 1u << 20;
inline constexpr uint32_t kMaxRingSizeLimit = 1u << 24;

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free (address-free)");
static_assert(std::atomic<uint32_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free (address-free)");

// Per-VIP selection algorithm. Values are ABI.
enum class Algorithm : uint8_t {
  kMaglev = 0,                    // Maglev ring on the 5-tuple hash (default)
  kIpHash = 1,                    // Maglev ring on the source-address hash
  kRoundRobin = 2,                // per-lcore rotation over active members
  kWeightedRoundRobin = 3,        // smooth WRR (nginx) over active members
  kRandom = 4,                    // uniform over active members
  kLeastConnections = 5,          // fewest live flows held by this lcore
  kWeightedLeastConnections = 6,  // fewest live flows / weight
};
inline constexpr int kNumAlgorithms = 7;

// Backend state. Values are ABI.
enum class BackendState : uint8_t {
  kUnused = 0,    // slot free
  kActive = 1,    // in the rings and member lists: gets new flows
  kDraining = 2,  // out of the rings; existing flows keep going to it
  kDown = 3,      // out of the rings; existing flows are re-picked
};

// VipEntry::flags
inline constexpr uint8_t kVipInUse = 1u << 0;
inline constexpr uint8_t kVipFragmentTolerant = 1u << 1;  // hash src/dst/proto
inline constexpr uint8_t kVipSticky = 1u << 2;  // client address persistence, sticky_ttl_s
inline constexpr uint8_t kVipGue = 1u << 3;     // encapsulate in GUE (UDP) to gue_port

struct VipEntry {
  uint8_t addr[16];       // network order; IPv4 in bytes [0,4), rest zero
  uint8_t family;         // 4 or 6 (AddrFamily)
  uint8_t proto;          // IPPROTO_TCP or IPPROTO_UDP
  uint16_t port;          // host order; 0 = all ports
  uint8_t algorithm;      // Algorithm
  uint8_t flags;          // kVip*
  uint16_t gue_port;      // host order; with kVipGue the outer UDP destination port (non-zero)
  uint32_t member_begin;  // index into the slot's members[] array
  uint32_t member_count;  // active members (each a backend slot)
  uint32_t vip_id;        // operator-visible id (stable across publishes)
  uint32_t sticky_ttl_s;  // with kVipSticky: persistence after the client's last packet
  uint64_t fingerprint;   // MaglevFingerprint of this VIP's ring
  uint8_t reserved2[16];
};
static_assert(sizeof(VipEntry) == 64, "VipEntry ABI");
static_assert(offsetof(VipEntry, family) == 16, "VipEntry ABI");
static_assert(offsetof(VipEntry, gue_port) == 22, "VipEntry ABI");
static_assert(offsetof(VipEntry, member_begin) == 24, "VipEntry ABI");
static_assert(offsetof(VipEntry, fingerprint) == 40, "VipEntry ABI");

struct BackendEntry {
  uint8_t addr[16];  // network order; IPv4 in bytes [0,4)
  uint8_t family;    // 4 or 6
  uint8_t state;     // BackendState
  uint16_t reserved0;
  uint32_t incarnation;      // bumped whenever the slot changes owner
  uint32_t weight;           // >= 1 for active backends
  uint32_t max_connections;  // 0 = unlimited; new flows skip it at the limit (backend_pick.h)
  uint32_t backend_id;       // operator-visible id
  uint8_t reserved1[28];
};
static_assert(sizeof(BackendEntry) == 64, "BackendEntry ABI");
static_assert(offsetof(BackendEntry, incarnation) == 20, "BackendEntry ABI");
static_assert(offsetof(BackendEntry, backend_id) == 32, "BackendEntry ABI");

// Node-wide settings the control plane publishes with each generation.
struct NodeEntry {
  uint8_t tunnel_src_v4[4];   // outer source for IPv4 outer headers (0 = use port address)
  uint8_t tunnel_src_v6[16];  // outer source for IPv6 outer headers (:: = use port address)
  // Non-zero: tunnel_src_v* is a prefix of this length and the outer source
  // is per flow, the host bits from the flow hash (lib/encap.h). IPv4 in
  // [8, 31], IPv6 in [64, 127]; 0 = tunnel_src_v* is one address.
  uint8_t tunnel_src_v4_prefix_len;
  uint8_t tunnel_src_v6_prefix_len;
  uint8_t reserved[42];
};
static_assert(sizeof(NodeEntry) == 64, "NodeEntry ABI");
static_assert(offsetof(NodeEntry, tunnel_src_v4_prefix_len) == 20, "NodeEntry ABI");
static_assert(offsetof(NodeEntry, tunnel_src_v6_prefix_len) == 21, "NodeEntry ABI");

// The header of one slot. The arrays follow at the offsets given in the
// region header (TableRegionHeader::*_offset, relative to the slot start).
struct SlotHeader {
  uint64_t generation;       // the generation this slot holds (0 = never written)
  uint64_t checksum;         // SlotChecksum() over the used part of this slot
  uint64_t publish_time_ns;  // CLOCK_REALTIME when sealed (just before it is published)
  uint32_t num_vips;         // vips[0, num_vips) are meaningful (some may be unused)
  uint32_t num_backends;     // backends[0, num_backends)
  uint32_t num_members;      // members[0, num_members)
  uint32_t ring_size;        // M, prime, <= max_ring_size
  NodeEntry node;
  uint8_t reserved[64 - 40];
};
static_assert(sizeof(SlotHeader) == 128, "SlotHeader ABI");
static_assert(offsetof(SlotHeader, node) == 40, "SlotHeader ABI");

struct TableRegionHeader {
  uint64_t magic;         // kTableMagic
  uint32_t abi_version;   // kTableAbiVersion
  uint32_t header_size;   // sizeof(TableRegionHeader)
  uint64_t region_size;   // whole file
  uint64_t slot_size;     // bytes per slot (multiple of 4096)
  uint64_t slots_offset;  // offset of slot 0 from region start
  uint32_t num_slots;     // kNumTableSlots
  uint32_t max_vips;
  uint32_t max_backends;  // including reserved slot 0
  uint32_t max_members;
  uint32_t max_ring_size;
  uint32_t vip_hash_size;  // power of two >= 2 * max_vips
  // Offsets inside a slot.
  uint64_t vips_offset;
  uint64_t backends_offset;
  uint64_t members_offset;
  uint64_t vip_hash_offset;
  uint64_t rings_offset;     // rings[v] at rings_offset + v * max_ring_size * 4
  uint64_t header_checksum;  // HeaderChecksum over bytes [0, offsetof(header_checksum))
  uint8_t reserved0[256 - 112];
};
static_assert(sizeof(TableRegionHeader) == 256, "TableRegionHeader ABI");
static_assert(offsetof(TableRegionHeader, header_checksum) == 104, "TableRegionHeader ABI");

// Follows the header at offset kTableControlOffset: the only fields both
// processes access concurrently (not covered by header_checksum).
struct TableRegionControl {
  alignas(64) std::atomic<uint64_t> generation;  // published generation, 0 = none
  std::atomic<uint32_t> writer_pid;              // control plane pid (informational)
  uint8_t reserved1[64 - 12];
};
static_assert(sizeof(TableRegionControl) == 64, "TableRegionControl ABI");
inline constexpr size_t kTableControlOffset = 256;

// VIP lookup index inside a slot: open addressing, linear probing, size a power
// of two, each cell = vip index + 1 (0 = empty). Key: VipHashKey().
// The control plane builds it; lcores probe it per packet.

// ---------------------------------------------------------------- stats ---

enum class LcoreState : uint32_t { kOffline = 0, kOnline = 1 };

struct VipCounters {
  std::atomic<uint64_t> packets;
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> new_flows;
  std::atomic<uint64_t> drops;  // dropped after matching this VIP (no backend, too big, ...)
};
static_assert(sizeof(VipCounters) == 32, "VipCounters ABI");

struct BackendCounters {
  std::atomic<uint64_t> packets;
  std::atomic<uint64_t> bytes;
  std::atomic<uint64_t> new_flows;
  // Gauge: this lcore's connection-table entries pinned to the slot's
  // current incarnation (entries of a previous owner of the slot are not
  // counted). Summed over lcores it is what max_connections limits.
  std::atomic<uint64_t> active_flows;
  // New flows whose pick chose this backend while it was at max_connections
  // (each went to another backend or was dropped as backends_full).
  std::atomic<uint64_t> full_skips;
  uint8_t reserved[64 - 40];  // one cache line per backend; room to grow
};
static_assert(sizeof(BackendCounters) == 64, "BackendCounters ABI");
static_assert(offsetof(BackendCounters, full_skips) == 32, "BackendCounters ABI");

// One lcore's slice. Written only by that lcore (plain relaxed stores; a
// reader may see a counter a burst late, never torn: 64-bit aligned).
struct alignas(64) LcoreStats {
  // --- reclamation (see the protocol above) ---
  std::atomic<uint64_t> observed_generation;
  std::atomic<uint32_t> state;  // LcoreState
  uint32_t lcore_id;
  std::atomic<uint64_t> heartbeat_ns;  // CLOCK_MONOTONIC, refreshed every loop iteration
  uint8_t reserved0[64 - 24];
  // --- counters ---
  std::atomic<uint64_t> rx_packets;
  std::atomic<uint64_t> rx_bytes;
  std::atomic<uint64_t> tx_packets;
  std::atomic<uint64_t> tx_bytes;
  std::atomic<uint64_t> forwarded;  // encapsulated to a backend
  std::atomic<uint64_t> replies;    // ARP/ICMP/NDP answered
  std::atomic<uint64_t> new_flows;
  std::atomic<uint64_t> conn_entries;  // gauge
  std::atomic<uint64_t> conn_evictions;
  std::atomic<uint64_t> conn_repicks;  // flows re-picked because the backend went down
  std::atomic<uint64_t> table_swaps;
  std::atomic<uint64_t> neighbor_learned;  // ARP/NDP answers consumed to learn a next hop
  // SYN-flood guard (dataplane/l4/worker.h): new flows above the lcore's
  // --new_flow_rate_limit, forwarded by the consistent pick without a
  // connection-table entry; and 1 while that happened within the last second.
  std::atomic<uint64_t> syn_guard_stateless;
  std::atomic<uint64_t> syn_guard_engaged;  // gauge, 0 or 1
  // Table generations this lcore refused (lib/slot_verify.h: a stale
  // checksum or an index out of bounds), and the last one it refused. It
  // keeps forwarding with observed_generation, whose slot the control plane
  // must not reuse; it never reads the refused slot again (see the
  // reclamation protocol above, step 4).
  std::atomic<uint64_t> tables_refused;
  std::atomic<uint64_t> refused_generation;
  std::atomic<uint64_t> drops[kNumDropReasons];
  // ABI 4: the exception path (dataplane/l4/exception_path.h): packets this
  // lcore handed to the kernel, and (worker 0) kernel frames it queued for TX.
  std::atomic<uint64_t> to_kernel;
  std::atomic<uint64_t> from_kernel;
  // VipCounters[max_vips] and BackendCounters[max_backends] follow at
  // StatsRegionHeader::vip_counters_offset / backend_counters_offset,
  // relative to the start of this slice.
};
static_assert(offsetof(LcoreStats, rx_packets) == 64, "LcoreStats ABI");
static_assert(offsetof(LcoreStats, syn_guard_stateless) == 160, "LcoreStats ABI");
static_assert(offsetof(LcoreStats, tables_refused) == 176, "LcoreStats ABI");
static_assert(offsetof(LcoreStats, drops) == 192, "LcoreStats ABI");
static_assert(offsetof(LcoreStats, to_kernel) == 192 + 8 * kNumDropReasons, "LcoreStats ABI");

struct StatsRegionHeader {
  uint64_t magic;        // kStatsMagic
  uint32_t abi_version;  // kStatsAbiVersion
  uint32_t header_size;
  uint64_t region_size;
  uint32_t max_lcores;
  uint32_t max_vips;
  uint32_t max_backends;
  uint32_t num_drop_reasons;         // kNumDropReasons
  uint64_t lcore_stride;             // bytes per lcore slice (multiple of 64)
  uint64_t lcores_offset;            // offset of slice 0 from region start
  uint64_t vip_counters_offset;      // inside a slice
  uint64_t backend_counters_offset;  // inside a slice
  uint64_t header_checksum;          // over bytes [0, offsetof(header_checksum))
  // ABI 2. Outside the checksum (it keeps its version-1 range); readers
  // validate them against the layout recomputed from the capacities.
  uint32_t max_ports;     // PortCounters entries (<= kMaxStatsPorts)
  uint32_t reserved_pad;  // 0
  uint64_t ports_offset;  // PortCounters[max_ports] from region start
  uint8_t reserved0[128 - 96];
};
static_assert(sizeof(StatsRegionHeader) == 128, "StatsRegionHeader ABI");
static_assert(offsetof(StatsRegionHeader, header_checksum) == 72, "StatsRegionHeader ABI");
static_assert(offsetof(StatsRegionHeader, max_ports) == 80, "StatsRegionHeader ABI");
static_assert(offsetof(StatsRegionHeader, ports_offset) == 88, "StatsRegionHeader ABI");

// One NIC port's counters as the device reports them (rte_eth_stats_get),
// copied by the dataplane's monitor thread (the only writer) every poll
// period, after the lcore slices. Device totals since the port started:
// they include what no lcore saw (imissed: dropped by the NIC for lack of RX
// descriptors; rx_nombuf: no mbuf to refill the ring).
inline constexpr uint32_t kMaxStatsPorts = 8;
inline constexpr uint32_t kPortStatQueues = 8;  // per-queue counters of queues 0..7
struct alignas(64) PortCounters {
  std::atomic<uint32_t> in_use;      // 1 once the dataplane wrote this entry
  uint32_t port_id;                  // the DPDK port id
  std::atomic<uint64_t> updated_ns;  // CLOCK_MONOTONIC of the last copy
  std::atomic<uint64_t> rx_packets;  // ipackets
  std::atomic<uint64_t> tx_packets;  // opackets
  std::atomic<uint64_t> rx_bytes;    // ibytes
  std::atomic<uint64_t> tx_bytes;    // obytes
  std::atomic<uint64_t> rx_missed;   // imissed
  std::atomic<uint64_t> rx_errors;   // ierrors
  std::atomic<uint64_t> tx_errors;   // oerrors
  std::atomic<uint64_t> rx_nombuf;
  std::atomic<uint64_t> queue_rx_packets[kPortStatQueues];  // q_ipackets
  std::atomic<uint64_t> queue_tx_packets[kPortStatQueues];  // q_opackets
  uint8_t reserved[256 - 208];
};
static_assert(sizeof(PortCounters) == 256, "PortCounters ABI");
static_assert(offsetof(PortCounters, rx_packets) == 16, "PortCounters ABI");
static_assert(offsetof(PortCounters, rx_nombuf) == 72, "PortCounters ABI");
static_assert(offsetof(PortCounters, queue_rx_packets) == 80, "PortCounters ABI");
static_assert(offsetof(PortCounters, queue_tx_packets) == 144, "PortCounters ABI");

// Follows the stats header at kStatsControlOffset; concurrently accessed.
struct StatsRegionControl {
  alignas(64) std::atomic<uint32_t> writer_pid;  // dataplane pid, 0 = stopped cleanly
  std::atomic<uint32_t> num_lcores;              // slices in use
  std::atomic<uint64_t> start_time_ns;           // CLOCK_REALTIME at dataplane start
  uint8_t reserved1[64 - 16];
};
static_assert(sizeof(StatsRegionControl) == 64, "StatsRegionControl ABI");
inline constexpr size_t kStatsControlOffset = 128;

// The ring index for a flow hash: Lemire's multiply-shift reduction of the
// full 64-bit hash onto [0, ring_size). Deterministic, so every node (and the
// control plane's "explain") maps a flow to the same ring entry; cheaper than
// a 64-bit modulo on the per-packet path. Part of the table ABI.
inline uint32_t RingIndex(uint64_t hash, uint32_t ring_size) {
  return static_cast<uint32_t>((static_cast<unsigned __int128>(hash) * ring_size) >> 64);
}

// Single-writer counter bump: a relaxed load and store compile to plain
// moves (no lock prefix); only the owning lcore ever writes the counter.
inline void CounterAdd(std::atomic<uint64_t>& c, uint64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace lb

#endif  // LB_LIB_TABLE_FORMAT_H_
