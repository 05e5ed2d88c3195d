// The lcore fast path: one Worker per lcore, shared-nothing.
//
// A Worker owns a set of (port, RX queue) pairs, one TX queue per port, its
// connection table, its TX buffers and its slice of the stats region. The
// loop (RunWorker) has the fixed shape of DPDK's l3fwd:
//
//   drain TX on a TSC timer -> acquire-load the table generation (swap the
//   slot pointer if it changed, record the generation we now read) ->
//   rx_burst -> ProcessBurst -> sweep a few connection-table buckets.
//
// ProcessBurst is the function packet fixtures and benchmarks drive directly:
// every mbuf handed to it ends up either queued for TX in the worker's TX
// buffer (forwarded to a backend, or an ARP/ICMP/NDP reply) or freed with
// exactly one drop reason counted. It never allocates from the heap, logs,
// throws or makes a system call.
//
// Threads: a Worker is touched only by its own lcore, except Peek() into its
// connection table by other lcores (ICMP errors, see ConnTable::Peek), the
// stats slice, which the control plane reads, and its two neighbour
// mailboxes (below), each shared with worker 0 only.
//
// Layout (DPDK l3fwd's lcore_conf): the Worker is cache-aligned; the fields
// every packet touches come first and are written by this lcore only; set-up
// and housekeeping state follows. Nothing another lcore writes shares a cache
// line with the hot fields.
//
// Next hops: the node's gateways (NodeState::gw4/gw6) have ONE writer after
// launch, worker 0. Every lcore forwards with its own copy (Worker::nh_mac_).
// An lcore that learns a gateway MAC (an ARP reply or request from it, an NDP
// advertisement or solicitation from it) posts it to worker 0 through its
// SPSC mailbox `to_owner_`; worker 0 applies it to NodeState and posts it to
// every other lcore's `from_owner_` mailbox; each lcore applies what it finds
// there to its own copy in its drain period (Run, every drain_us). A learned
// MAC so reaches every lcore within about two drain periods. Worker 0 learns
// directly. Fixtures without Run call PollNeighbors().
//
// New flows and the SYN-flood guard (worker.cc HandleMiss): a packet that
// misses the connection table is a new flow. A real SYN (SYN without ACK) or
// a non-TCP first packet gets the VIP's algorithm; any other TCP packet (an
// established flow whose entry was lost, or a spoofed ACK) gets the
// consistent pick (the VIP's Maglev ring, lib/backend_pick.h), never round
// robin / random / least connections, so a flow that lost its entry lands
// where the ring put it, the same on every lcore and every time. TCP entries
// start unconfirmed (ConnClass::kTcpSyn, short timeout, evicted first) until
// a packet with ACK hits them. Above WorkerOptions::new_flow_rate_limit new
// flows per second on this lcore (a token bucket on the loop's now_ms, one
// second of burst), new flows are forwarded statelessly by the consistent
// pick without an entry: counted in LcoreStats::syn_guard_stateless, and
// LcoreStats::syn_guard_engaged is 1 until a second passes without one.
//
// Connection limits (BackendEntry::max_connections, lib/backend_pick.h): the
// count is the backends' active_flows gauges every lcore already keeps in
// its own stats slice for least connections (incremented on insert,
// decremented on expiry, eviction and re-pick), counted per slot for the
// slot's current incarnation only: when a table swap shows a slot with a new
// incarnation the lcore zeroes its gauge, and an entry of an older
// incarnation is not decremented when it goes. Each lcore keeps a private
// copy of the other lcores' gauges (peer_flows_) for the slots that have a
// limit, refreshed from their stats slices at most once per millisecond of
// now_ms_ (Sweep, or RefreshPeerFlows): reading, never writing, another
// lcore's cache lines, off the per-packet path. Only a new flow checks the
// limit (own gauge + copy >= limit: skip); hits are never moved. The
// consistent pick of non-SYN TCP misses and of the SYN-flood guard ignores
// limits: those flows must land where the ring puts them.
//
// Outer-header templates (Katran's approach): at each table swap the lcore
// lays out, for every backend slot of the new generation, the outer IP
// header of its tunnel (source from the node entry or the port address,
// destination, TTL) and that header's partial IPv4 checksum
// (lib/encap.h EncapTemplate, one cache line per slot, private to the lcore;
// nothing in the shared region, so no ABI change). Forward then writes only
// what depends on the packet (DSCP/ECN, length, ID/DF, flow label, protocol,
// per-flow source bits, GUE's UDP header) and folds the checksum. The bytes
// are WriteEncapHeader's (tests/unit/encap_test.cc checks it). Cost: 64
// bytes per slot of the region's max_backends per lcore (256 KiB at the
// default 4,096), and a pass over num_backends at each swap, beside the one
// TrackIncarnations already makes (a few dozen instructions per backend).
#ifndef LB_DATAPLANE_L4_WORKER_H_
#define LB_DATAPLANE_L4_WORKER_H_

#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/l4/exception_path.h"
#include "lib/balance.h"
#include "lib/conn_table.h"
#include "lib/encap.h"
#include "lib/packet.h"
#include "lib/shm_region.h"
#include "lib/spsc_mailbox.h"
#include "lib/sticky_table.h"
#include "lib/table_format.h"

namespace lb::dp {

inline constexpr uint16_t kBurst = 32;
inline constexpr uint16_t kMaxPorts = 8;

// A MAC packed into one 64-bit word: byte i in bits 8i..8i+7 (on a
// little-endian CPU, the first six bytes of the word in order), bit 48 set
// when valid. One word, so a reader never sees half of an update.
inline constexpr uint64_t kMacValid = 1ull << 48;
inline uint64_t PackMac(const uint8_t mac[6]) {
  uint64_t w = kMacValid;
  for (int i = 0; i < 6; ++i) w |= static_cast<uint64_t>(mac[i]) << (8 * i);
  return w;
}
inline bool UnpackMac(uint64_t w, rte_ether_addr* out) {
  if (!(w & kMacValid)) return false;
  static_assert(RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN, "PackMac is little-endian");
  std::memcpy(out->addr_bytes, &w, 6);
  return true;
}

// A next hop resolved by ARP/NDP (or set statically). Written before launch
// by main and after launch only by worker 0 (see "Next hops" above); lcores
// forward with their own copy of mac_word.
struct NextHop {
  uint8_t ip[16] = {};
  bool configured = false;
  bool is_static = false;
  std::atomic<uint64_t> mac_word{0};
  std::atomic<uint64_t> resolved_ns{0};

  bool Get(rte_ether_addr* out) const {
    return UnpackMac(mac_word.load(std::memory_order_relaxed), out);
  }
  void Set(const uint8_t mac[6], uint64_t now_ns) { SetWord(PackMac(mac), now_ns); }
  void SetWord(uint64_t w, uint64_t now_ns) {
    mac_word.store(w, std::memory_order_relaxed);
    resolved_ns.store(now_ns, std::memory_order_relaxed);
  }
};

// A learned next hop on its way between lcores (Worker mailboxes).
struct NeighborUpdate {
  uint64_t mac_word = 0;  // PackMac
  uint64_t learned_ns = 0;
  uint8_t gw = 0;  // 0 = NodeState::gw4, 1 = gw6
};
inline constexpr uint32_t kNeighborMailboxSize = 16;
using NeighborMailbox = SpscMailbox<NeighborUpdate, kNeighborMailboxSize>;

// Node-wide, read-mostly settings shared by all workers (set before launch).
struct NodeState {
  bool has_ipv4 = false;
  bool has_ipv6 = false;
  uint8_t ipv4[4] = {};  // the node's address on its ports (ARP, ICMP, tunnel source)
  uint8_t ipv6[16] = {};
  uint16_t mtu = 1500;  // egress IP MTU of the ports
  uint16_t num_ports = 0;
  rte_ether_addr port_mac[kMaxPorts] = {};
  NextHop gw4;  // IPv4 next hop for encapsulated traffic
  NextHop gw6;  // IPv6 next hop
  uint64_t tsc_hz = 0;
  StickyTable* sticky = nullptr;  // shared by all workers; sticky VIPs need it
};

struct WorkerOptions {
  uint32_t index = 0;  // worker index = stats slice = TX queue
  uint32_t conn_capacity = 1u << 20;
  ConnTableOptions conn;       // timeouts (capacity taken from conn_capacity)
  uint32_t sweep_buckets = 8;  // connection-table buckets swept per loop iteration
  uint64_t drain_us = 100;     // TX drain period
  // New flows per second this lcore admits into its connection table; above
  // it they are forwarded statelessly (see "New flows" above). 0 = no limit.
  uint32_t new_flow_rate_limit = 0;
  // Non-empty: the connection table lives in this shared file and survives
  // a restart (ConnTable::CreateShared, lib/conn_table_shm.h); the worker
  // logs what it found and recounts its backends' active_flows from the
  // entries it kept. Empty: private memory (fixtures, benchmarks).
  std::string conn_file;
};

struct RxQueue {
  uint16_t port;
  uint16_t queue;
};

// True when the n bytes at a are all zero (an unset address).
inline bool AddrIsZero(const uint8_t* a, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != 0) return false;
  }
  return true;
}

inline constexpr uint16_t kTxBufferCap = kBurst * 2;

struct TxBuffer {
  uint16_t count = 0;
  // 1 for a packet Forward() queued: `forwarded` is counted when the NIC
  // (or a capturing fixture, TakeTx) accepts it, not when it is queued.
  uint8_t forwarded[kTxBufferCap];
  rte_mbuf* pkts[kTxBufferCap];
};

class alignas(64) Worker {
 public:
  // `stats` and `node` outlive the worker. `peers` (all workers, including
  // this one) is filled before launch, for cross-lcore ICMP lookups and the
  // next-hop mailboxes.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(const WorkerOptions& opt,
                                                        const TableReader* tables,
                                                        StatsRegion* stats, NodeState* node,
                                                        rte_mempool* pool);

  void AddRxQueue(uint16_t port, uint16_t queue) { rx_.push_back({port, queue}); }
  void SetPeers(const std::vector<Worker*>& peers) { peers_ = peers; }
  // The exception path (exception_path.h), before launch; null = off: what
  // is not for a VIP and not answered here is dropped by reason, as always.
  // On: those packets go to the kernel (up to pps_per_lcore a second), and
  // worker 0 sends what the kernel emits in its drain period.
  void SetExceptionPath(const ExceptionQueues* q) { exc_ = q; }

  // Marks this lcore online and attaches to the current generation (protocol
  // step 3 in lib/table_format.h); copies the node's next hops. Call on the
  // lcore before the first burst.
  void GoOnline();
  // Marks it offline (clean shutdown); frees what is still buffered.
  void GoOffline();

  // Between bursts: one acquire-load of the generation; swaps the slot view
  // when it changed and records the generation this lcore now reads.
  void MaybeSwapTable();

  // The fast path. `port` is where the burst came from (replies go back out
  // of it; forwarded packets leave by it too: a one-armed load balancer).
  void ProcessBurst(uint16_t port, rte_mbuf** pkts, uint16_t n);

  // Sends every buffered packet (rte_eth_tx_burst); frees what the NIC
  // refuses, counted as kTxFull.
  void FlushTx();
  // For fixtures and benchmarks: hands over the buffered packets of `port`
  // instead of sending them. Returns how many were written to out (<= cap).
  // With capture on, buffered packets stay buffered (up to 2 bursts per
  // port; a fixture or benchmark must take them between bursts).
  uint16_t TakeTx(uint16_t port, rte_mbuf** out, uint16_t cap);
  void SetCaptureTx(bool on) { capture_tx_ = on; }

  // Housekeeping run by worker 0 only: (re)resolve next hops by ARP/NDP.
  void ResolveNextHops(uint64_t now_ns);
  // Drain-period step of the next-hop protocol ("Next hops" above): worker 0
  // takes what the other lcores learned and fans it out; every worker
  // applies what worker 0 sent it. Run calls it; fixtures call it directly.
  void PollNeighbors();

  // Runs until *quit becomes true.
  void Run(const std::atomic<bool>* quit);

  // Advances the connection-table clock (milliseconds); Run does this from
  // the TSC, fixtures set it explicitly.
  void SetNowMs(uint32_t now_ms) { now_ms_ = now_ms; }
  // Also clears syn_guard_engaged once a second has passed without a
  // stateless forward, and refreshes peer_flows_ when now_ms_ moved.
  void Sweep(uint32_t buckets);
  // Re-reads the other lcores' active_flows for the slots with a limit
  // ("Connection limits" above). Owner thread; Sweep calls it once per ms.
  void RefreshPeerFlows();
  // Changes the new-flow rate limit (0 = off) and refills the bucket to one
  // second's worth. Owner thread (fixtures, benchmarks).
  void SetNewFlowRateLimit(uint32_t flows_per_s);

  LcoreStats& stats() const { return *lstats_; }
  ConnTable& conn() const { return *conn_; }
  // What CreateShared found at start-up (all false for a private table).
  const ConnTableAttach& conn_attach() const { return conn_attach_; }
  // Restart with another lcore count (docs/OPERATIONS.md 2.10): until
  // until_ms (now_ms clock, wrap-safe), a connection-table miss first looks
  // the flow up in `tables` (the other lcores' tables and those of lcores of
  // the previous run that no longer exist; read-only, ConnTable::Peek) and,
  // when found on a backend that still serves, adopts it into this lcore's
  // table and forwards there, as a hit would. The tables must outlive the
  // grace period. Start-up only, before Run. Costs nothing on a hit.
  void SetConnGrace(std::vector<const ConnTable*> tables, uint32_t until_ms);
  // Flows adopted from another table during the grace period.
  uint64_t grace_adopted() const { return grace_adopted_; }
  uint64_t generation() const { return generation_; }
  uint32_t index() const { return opt_.index; }

 private:
  Worker() = default;

  // worker.cc: the per-packet path.
  // A hit ProcessBurst's established fast path does not finish, and a miss.
  void HandleHit(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash, int vip,
                 uint32_t e, const ConnValue& cv, uint8_t flags);
  void HandleMiss(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash, int vip);
  void HandleIcmpError(uint16_t port, rte_mbuf* m, const ParsedPacket& p);
  // Balancer::Pick behind the VIP's session persistence, if it has one.
  // `consistent`: the ring pick whatever the algorithm (lib/backend_pick.h).
  // `remember`: record a sticky VIP's new choice in the sticky table.
  // False with *all_full when every usable backend is at its limit.
  bool PickForNewFlow(int vip, const FlowKey& key, uint64_t flow_hash, bool consistent,
                      bool remember, BackendPick* out, bool* all_full);
  void HandleNewFlow(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash, int vip);
  // A SYN on the entry `e` (value `cv`) of a flow that saw FIN or RST: the
  // entry goes and the packet is a new flow. Out of line: rare.
  void ReuseClosedEntry(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash, int vip,
                        uint32_t e, const ConnValue& cv);
  // Token bucket of the SYN-flood guard: true when this new flow may take an
  // entry. Only the new-flow path calls it; without a limit it is one test.
  bool AdmitNewFlow() { return guard_rate_ == 0 || TakeGuardToken(); }
  bool TakeGuardToken();
  // Worker::Sweep: clears syn_guard_engaged after a quiet second.
  void UpdateGuardGauge();
  void Forward(uint16_t port, rte_mbuf* m, const ParsedPacket& p, int vip, uint32_t slot,
               uint64_t flow_hash);
  // ForwardFast's VIP packets/bytes over a run of packets of one VIP (traffic
  // comes in such runs), added to vstats_ when the VIP changes and at the end
  // of the burst: the totals are the same, counted once per run.
  struct VipRun {
    int vip = -1;
    uint64_t packets = 0;
    uint64_t bytes = 0;
  };
  void FlushVipRun(VipRun* run) {
    if (run->packets == 0) return;
    CounterAdd(vstats_[run->vip].packets, run->packets);
    CounterAdd(vstats_[run->vip].bytes, run->bytes);
    run->packets = 0;
    run->bytes = 0;
  }
  // Forward's common form, inline (worker.cc); the rest goes to Forward.
  void ForwardFast(uint16_t port, rte_mbuf* m, const ParsedPacket& p, int vip, uint32_t slot,
                   uint64_t flow_hash, VipRun* run);
  void Drop(rte_mbuf* m, DropReason r);
  // Not for a VIP nor answered here: to the kernel when the exception path
  // is on (counted in to_kernel, or dropped as kExceptionFull over budget),
  // else dropped as `otherwise`.
  void ToKernel(rte_mbuf* m, DropReason otherwise);
  // Worker 0, drain period: one burst of kernel frames onto the egress port.
  void PollFromKernel();
  void DropVip(rte_mbuf* m, DropReason r, int vip);
  void EnqueueTx(uint16_t port, rte_mbuf* m, bool forwarded = false);
  void SendPort(uint16_t port);
  void ReleaseFlow(const ConnValue& v);
  // MaybeSwapTable: zero the gauges of slots whose incarnation changed and
  // list the slots with a limit.
  void TrackIncarnations();
  // MaybeSwapTable: the outer-header templates of the new slot.
  void BuildOuterTemplates();
  static void ReleaseFlowThunk(void* ctx, const ConnValue& v);
  // The VIP a non-first fragment belongs to, -1 for none, or
  // kAmbiguousFragment when its address and protocol carry several VIPs.
  static constexpr int kAmbiguousFragment = -2;
  int FindFragmentVip(const FlowKey& key) const;
  int FindVipCached(const FlowKey& key);
  int FindVipMiss(const FlowKey& key);  // FindVipCached's miss: probe, remember
  bool PeekPeers(const FlowKey& key, uint64_t hash, ConnValue* out) const;
  // Start-up (worker_loop.cc): logs CreateShared's outcome, recounts gauges.
  void LogConnAttach();
  // The grace-period lookup of SetConnGrace (worker_loop.cc): true when the
  // flow was found elsewhere, adopted and forwarded.
  bool AdoptFromGrace(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash, int vip);

  // Packets for the node itself: HandleLocal (worker.cc) dispatches to the
  // rest, in worker_local.cc with next-hop learning.
  bool HandleLocal(uint16_t port, rte_mbuf* m, const ParsedPacket& p);
  void HandleArp(uint16_t port, rte_mbuf* m, const ParsedPacket& p);
  void HandleNeighborSolicitation(uint16_t port, rte_mbuf* m, const ParsedPacket& p);
  void HandleNeighborAdvertisement(rte_mbuf* m, const ParsedPacket& p);
  void HandleToNode(uint16_t port, rte_mbuf* m, const ParsedPacket& p);
  // An ICMP/ICMPv6 echo request to an address that carries a VIP (any port
  // or protocol) is answered in place, as Katran does, at most
  // kEchoRepliesPerBurst per burst (a ping flood costs the VIP scan and the
  // reply only that often); the excess is dropped as kIcmpIgnored.
  void HandleVipEcho(uint16_t port, rte_mbuf* m, const ParsedPacket& p);
  bool AddressHasVip(const FlowKey& key) const;
  void SendTooBig(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint32_t mtu);
  // This lcore heard gateway `gw` (0 = v4, 1 = v6) answer with `mac`.
  void LearnNeighbor(uint8_t gw, const uint8_t mac[6]);
  // Worker 0: records an update in NodeState and sends it to every lcore.
  void OwnNeighbor(const NeighborUpdate& u);
  void CopyNextHops();

  // ---- hot: read or written per packet, by this lcore only ----
  // Current table generation and its slot (valid when generation_ != 0).
  SlotView slot_;
  uint64_t generation_ = 0;
  ConnTable* conn_ = nullptr;  // owned by conn_owner_
  LcoreStats* lstats_ = nullptr;
  VipCounters* vstats_ = nullptr;
  BackendCounters* bstats_ = nullptr;
  NodeState* node_ = nullptr;  // read-only on the hot path
  uint32_t now_ms_ = 0;
  bool capture_tx_ = false;
  // One-entry VIP cache (FindVipCached).
  bool vip_cache_valid_ = false;
  int vip_cache_ = -1;
  FlowKey vip_cache_key_{};
  static constexpr uint16_t kEchoRepliesPerBurst = 8;
  uint16_t echo_budget_ = 0;
  // This lcore's copy of the next hops' MACs (PackMac words; [0] = gw4).
  uint64_t nh_mac_[2] = {0, 0};
  // Outer-header templates of the current generation, [table max_backends],
  // valid for slots [1, num_backends) (see "Outer-header templates").
  const EncapTemplate* outer_tmpl_ = nullptr;
  TxBuffer tx_[kMaxPorts];
  // Per-VIP selection state for new flows, restarted on every table swap.
  Balancer balancer_;
  // SYN-flood guard (new-flow path only): tokens in thousandths of a flow,
  // refilled by guard_rate_ per ms of now_ms_, at most one second's worth.
  uint64_t guard_rate_ = 0;  // flows per second; 0 = off
  uint64_t guard_tokens_ = 0;
  uint32_t guard_refill_ms_ = 0;     // now_ms_ of the last refill
  uint32_t guard_stateless_ms_ = 0;  // now_ms_ of the last stateless forward
  bool guard_engaged_ = false;       // mirrors lstats_->syn_guard_engaged
  // Restart grace period (SetConnGrace); 0 = none or over.
  uint32_t grace_until_ms_ = 0;
  // Connection limits (see above): the other lcores' gauges (private copy,
  // [max_backends]) and the incarnation this lcore's gauge counts per slot.
  std::vector<uint64_t> peer_flows_;
  std::vector<uint32_t> counted_incarnation_;
  std::vector<uint32_t> limited_slots_;  // slots with max_connections != 0
  uint32_t peer_refresh_ms_ = 0;
  bool recount_on_swap_ = false;  // LogConnAttach kept entries

  // ---- cold: set-up, housekeeping ----
  WorkerOptions opt_;
  const TableReader* tables_ = nullptr;
  StatsRegion* stats_ = nullptr;
  rte_mempool* pool_ = nullptr;
  std::unique_ptr<ConnTable> conn_owner_;
  std::vector<EncapTemplate> outer_tmpl_store_;  // outer_tmpl_ points here
  ConnTableAttach conn_attach_;
  std::vector<const ConnTable*> grace_tables_;
  uint64_t grace_adopted_ = 0;
  std::vector<RxQueue> rx_;
  std::vector<Worker*> peers_;
  uint64_t last_try_[2] = {0, 0};         // last ARP / NDP resolution attempt (worker 0)
  const ExceptionQueues* exc_ = nullptr;  // exception path; null = off
  uint32_t exc_sec_ = 0;                  // now_ms_ / 1000 of exc_count_
  uint32_t exc_count_ = 0;                // handed to the kernel in that second

  // ---- shared with worker 0 only (each mailbox on its own cache lines) ----
  NeighborMailbox to_owner_;    // this lcore -> worker 0: learned here
  NeighborMailbox from_owner_;  // worker 0 -> this lcore: apply to nh_mac_
};

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_WORKER_H_
