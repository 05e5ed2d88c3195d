// The lcore loop, set-up, table swaps and TX plumbing of the Worker.
#include <rte_cycles.h>
#include <rte_ethdev.h>

#include <algorithm>
#include <cstring>

#include "dataplane/l4/worker.h"
#include "glog/logging.h"
#include "lib/slot_verify.h"

namespace lb::dp {

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& opt,
                                                       const TableReader* tables,
                                                       StatsRegion* stats, NodeState* node,
                                                       rte_mempool* pool) {
  if (opt.index >= stats->header().max_lcores) {
    return absl::InvalidArgumentError("worker index beyond the stats region's max_lcores");
  }
  ConnTableOptions co = opt.conn;
  co.capacity = opt.conn_capacity;
  ConnTableAttach attach;
  auto conn = opt.conn_file.empty()
                  ? ConnTable::Create(co)
                  : ConnTable::CreateShared(co, opt.conn_file, opt.index, &attach);
  if (!conn.ok()) return conn.status();
  std::unique_ptr<Worker> w(new Worker());
  w->conn_attach_ = attach;
  w->opt_ = opt;
  w->tables_ = tables;
  w->stats_ = stats;
  w->node_ = node;
  w->pool_ = pool;
  w->conn_owner_ = std::move(*conn);
  w->conn_ = w->conn_owner_.get();
  w->lstats_ = &stats->Lcore(opt.index);
  w->vstats_ = stats->Vips(opt.index);
  w->bstats_ = stats->Backends(opt.index);
  const TableRegionHeader& th = tables->header();
  w->balancer_.Init(th.max_vips, th.max_members, opt.index);
  const uint32_t nb = stats->header().max_backends;
  w->peer_flows_.assign(nb, 0);
  w->counted_incarnation_.assign(nb, 0);
  w->outer_tmpl_store_.assign(th.max_backends, EncapTemplate{});
  w->outer_tmpl_ = w->outer_tmpl_store_.data();
  w->limited_slots_.reserve(nb);
  w->CopyNextHops();
  w->SetNewFlowRateLimit(opt.new_flow_rate_limit);
  if (!opt.conn_file.empty()) w->LogConnAttach();
  return w;
}

// One line per lcore, the counter in the file header (discards). Kept
// entries count again in their backends' active_flows (the stats region was
// re-created empty), so least-connections and the gauges see them.
void Worker::LogConnAttach() {
  const ConnTableAttach& a = conn_attach_;
  if (a.attached) {
    conn_->ForEachLive(
        [](void* ctx, const ConnValue& v) {
          auto* self = static_cast<Worker*>(ctx);
          if (v.backend_slot != 0 && v.backend_slot < self->stats_->header().max_backends) {
            CounterAdd(self->bstats_[v.backend_slot].active_flows, 1);
          }
        },
        this);
    lstats_->conn_entries.store(conn_->size(), std::memory_order_relaxed);
    recount_on_swap_ = true;  // by incarnation, once the first table is known
    LOG(INFO) << "lcore " << opt_.index << ": connection table " << opt_.conn_file << " attached, "
              << a.entries << " entries kept"
              << (a.was_dirty ? " (previous owner did not close it; it validated)" : "");
  } else if (a.discarded) {
    LOG(WARNING) << "lcore " << opt_.index << ": connection table " << opt_.conn_file
                 << " started empty: " << a.reason << " (discard #" << a.discards << ")";
  } else {
    VLOG(1) << "lcore " << opt_.index << ": connection table " << opt_.conn_file << " created";
  }
}

void Worker::SetConnGrace(std::vector<const ConnTable*> tables, uint32_t until_ms) {
  grace_tables_.clear();
  for (const ConnTable* t : tables) {
    if (t != nullptr && t != conn_) grace_tables_.push_back(t);
  }
  grace_until_ms_ = grace_tables_.empty() ? 0 : (until_ms == 0 ? 1 : until_ms);
}

// A miss during the grace period: RSS may now send this flow to this lcore
// while the previous run pinned it on another. Peek each table (a few cache
// lines per table, on the new-flow path only); a flow found on a backend that
// still serves is inserted here with that value, so its next packets hit.
bool Worker::AdoptFromGrace(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                            int vip) {
  if (static_cast<int32_t>(now_ms_ - grace_until_ms_) > 0) {
    grace_until_ms_ = 0;  // over: never consulted again
    return false;
  }
  ConnValue cv;
  bool found = false;
  for (const ConnTable* t : grace_tables_) {
    if (t->Peek(p.key, hash, now_ms_, &cv)) {
      found = true;
      break;
    }
  }
  if (!found || !StillServes(slot_, cv.backend_slot, cv.incarnation)) return false;
  const bool tcp = p.key.proto == kIpProtoTcp;
  const uint8_t flags = tcp ? p.tcp_flags : 0;
  constexpr uint8_t kFinOrRst = ConnTable::kFinOrRst;
  const ConnClass cls = !tcp                        ? ConnClass::kUdp
                        : (flags & kFinOrRst)       ? ConnClass::kTcpClosing
                        : (flags & ConnTable::kAck) ? ConnClass::kTcp
                                                    : ConnClass::kTcpSyn;
  bool evicted = false;
  ConnValue old;
  conn_->Insert(p.key, hash, cv, cls, now_ms_, &evicted, &old);
  if (evicted) {
    ReleaseFlow(old);
    lstats_->conn_evictions.store(conn_->evictions(), std::memory_order_relaxed);
  }
  CounterAdd(bstats_[cv.backend_slot].active_flows, 1);
  ++grace_adopted_;
  Forward(port, m, p, vip, cv.backend_slot, hash);
  return true;
}

void Worker::GoOnline() {
  lstats_->lcore_id = opt_.index;
  lstats_->heartbeat_ns.store(MonotonicNs(), std::memory_order_relaxed);
  // Step 3 of the reclamation protocol (lib/table_format.h): announce
  // ourselves with "attaching" (0) before loading the generation, both
  // seq_cst, so the control plane either waits for us or we see its newer
  // generation.
  lstats_->observed_generation.store(0, std::memory_order_seq_cst);
  lstats_->state.store(static_cast<uint32_t>(LcoreState::kOnline), std::memory_order_seq_cst);
  generation_ = 0;
  CopyNextHops();
  MaybeSwapTable();
}

void Worker::GoOffline() {
  FlushTx();
  lstats_->state.store(static_cast<uint32_t>(LcoreState::kOffline), std::memory_order_release);
}

void Worker::MaybeSwapTable() {
  const uint64_t g = tables_->generation();  // acquire: pairs with TableWriter::Publish
  if (g == generation_ || g == 0) return;
  // A generation this lcore refused stays refused: one relaxed load of our
  // own counter (we are its only writer) instead of asking the gate again.
  if (g == lstats_->refused_generation.load(std::memory_order_relaxed)) return;
  // Verified once per process (lib/slot_verify.h): the stamp, the checksum
  // and every index below. Pending: another lcore is verifying it now; keep
  // the old slot for this burst.
  switch (tables_->gate().Resolve(*tables_, g)) {
    case TableGate::Verdict::kPending:
      return;
    case TableGate::Verdict::kRefused:
      // Keep the last good slot and observed_generation (the control plane
      // must not reuse that slot); tell it which generation we refused.
      // Release: the verdict, and so the verifier's last read of the refused
      // slot, happens-before the control plane's acquire-load of this value,
      // after which it may rewrite that slot (protocol step 4).
      CounterAdd(lstats_->tables_refused, 1);
      lstats_->refused_generation.store(g, std::memory_order_release);
      return;
    case TableGate::Verdict::kAccepted:
      break;
  }
  SlotView v = tables_->Slot(g);
  slot_ = v;
  generation_ = g;
  vip_cache_valid_ = false;
  BuildOuterTemplates();
  TrackIncarnations();
  // Member lists may have changed: per-VIP rotation state restarts.
  balancer_.Restart();
  CounterAdd(lstats_->table_swaps, 1);
  // Release: every read of the old slot above happens-before the control
  // plane's load that sees g, after which it may rewrite the old slot.
  lstats_->observed_generation.store(g, std::memory_order_release);
}

void Worker::BuildOuterTemplates() {
  // Outer sources for this generation: the config's tunnel source, else the
  // node's own address; without either, templates of that family stay empty
  // (ip_len 0: packets drop as no_next_hop).
  const NodeEntry& ne = slot_.header->node;
  EncapParams p4{};
  p4.outer_family = AddrFamily::kIPv4;
  p4.ttl = 64;
  if (!AddrIsZero(ne.tunnel_src_v4, 4)) {
    std::memcpy(p4.src, ne.tunnel_src_v4, 4);
    p4.src_prefix_len = ne.tunnel_src_v4_prefix_len < 32 ? ne.tunnel_src_v4_prefix_len : 0;
  } else if (node_->has_ipv4) {
    std::memcpy(p4.src, node_->ipv4, 4);
  } else {
    p4.ttl = 0;
  }
  EncapParams p6{};
  p6.outer_family = AddrFamily::kIPv6;
  p6.ttl = 64;
  if (!AddrIsZero(ne.tunnel_src_v6, 16)) {
    std::memcpy(p6.src, ne.tunnel_src_v6, 16);
    p6.src_prefix_len = ne.tunnel_src_v6_prefix_len < 128 ? ne.tunnel_src_v6_prefix_len : 0;
  } else if (node_->has_ipv6) {
    std::memcpy(p6.src, node_->ipv6, 16);
  } else {
    p6.ttl = 0;
  }
  // Slot verification bounds every slot the fast path follows by
  // num_backends (lib/slot_verify.h), so templates beyond it are never read.
  const uint32_t n = std::min<uint32_t>(slot_.header->num_backends,
                                        static_cast<uint32_t>(outer_tmpl_store_.size()));
  for (uint32_t s = 1; s < n; ++s) {
    const BackendEntry& b = slot_.backends[s];
    EncapParams& p = b.family == static_cast<uint8_t>(AddrFamily::kIPv4) ? p4 : p6;
    EncapTemplate& t = outer_tmpl_store_[s];
    if (b.family != static_cast<uint8_t>(p.outer_family)) {
      t.ip_len = 0;  // not a backend (Forward drops it as no_backend first)
      continue;
    }
    std::memcpy(p.dst, b.addr, 16);
    BuildEncapTemplate(p, &t);
  }
  outer_tmpl_ = outer_tmpl_store_.data();
}

void Worker::TrackIncarnations() {
  const uint32_t n = std::min<uint32_t>(slot_.header->num_backends,
                                        static_cast<uint32_t>(counted_incarnation_.size()));
  limited_slots_.clear();
  for (uint32_t s = 1; s < n; ++s) {
    const BackendEntry& b = slot_.backends[s];
    if (b.incarnation != counted_incarnation_[s]) {
      // A new owner of the slot starts from zero; what the old one still
      // holds here is released without touching the gauge (ReleaseFlow).
      counted_incarnation_[s] = b.incarnation;
      bstats_[s].active_flows.store(0, std::memory_order_relaxed);
      peer_flows_[s] = 0;
    }
    if (b.max_connections != 0) limited_slots_.push_back(s);
  }
  if (recount_on_swap_) {
    // An attached connection table (LogConnAttach) holds entries of any
    // incarnation: count again only those of the slots' current owners.
    recount_on_swap_ = false;
    for (uint32_t s = 0; s < counted_incarnation_.size(); ++s) {
      bstats_[s].active_flows.store(0, std::memory_order_relaxed);
    }
    conn_->ForEachLive(
        [](void* ctx, const ConnValue& v) {
          auto* self = static_cast<Worker*>(ctx);
          if (v.backend_slot != 0 && v.backend_slot < self->counted_incarnation_.size() &&
              v.incarnation == self->counted_incarnation_[v.backend_slot]) {
            CounterAdd(self->bstats_[v.backend_slot].active_flows, 1);
          }
        },
        this);
  }
  RefreshPeerFlows();
}

void Worker::RefreshPeerFlows() {
  peer_refresh_ms_ = now_ms_;
  if (limited_slots_.empty()) return;
  uint32_t lcores = stats_->control().num_lcores.load(std::memory_order_relaxed);
  if (lcores == 0 || lcores > stats_->header().max_lcores) lcores = stats_->header().max_lcores;
  for (uint32_t s : limited_slots_) peer_flows_[s] = 0;
  for (uint32_t l = 0; l < lcores; ++l) {
    if (l == opt_.index) continue;
    // Relaxed: each gauge has one writer and may be a burst late; a stale
    // value only lets a limit be overshot by that lcore's last few flows.
    const BackendCounters* peer = stats_->Backends(l);
    for (uint32_t s : limited_slots_) {
      peer_flows_[s] += peer[s].active_flows.load(std::memory_order_relaxed);
    }
  }
}

void Worker::FlushTx() {
  if (capture_tx_) return;
  for (uint16_t port = 0; port < kMaxPorts; ++port) {
    if (tx_[port].count != 0) SendPort(port);
  }
}

uint16_t Worker::TakeTx(uint16_t port, rte_mbuf** out, uint16_t cap) {
  TxBuffer& b = tx_[port];
  uint16_t n = b.count < cap ? b.count : cap;
  for (uint16_t i = 0; i < n; ++i) {
    out[i] = b.pkts[i];
    CounterAdd(lstats_->forwarded, b.forwarded[i]);
    CounterAdd(lstats_->tx_packets, 1);
    CounterAdd(lstats_->tx_bytes, b.pkts[i]->pkt_len);
  }
  std::memmove(b.pkts, b.pkts + n, sizeof(rte_mbuf*) * (b.count - n));
  std::memmove(b.forwarded, b.forwarded + n, b.count - n);
  b.count = static_cast<uint16_t>(b.count - n);
  return n;
}

void Worker::ReleaseFlowThunk(void* ctx, const ConnValue& v) {
  static_cast<Worker*>(ctx)->ReleaseFlow(v);
}

void Worker::Sweep(uint32_t buckets) {
  conn_->Sweep(now_ms_, buckets, &Worker::ReleaseFlowThunk, this);
  lstats_->conn_entries.store(conn_->size(), std::memory_order_relaxed);
  UpdateGuardGauge();
  if (now_ms_ != peer_refresh_ms_) RefreshPeerFlows();
}

void Worker::Run(const std::atomic<bool>* quit) {
  GoOnline();
  const uint64_t hz = rte_get_tsc_hz();
  const uint64_t drain_tsc = (hz + 999999) / 1000000 * opt_.drain_us;
  uint64_t prev_tsc = rte_rdtsc();
  uint64_t now_ns = MonotonicNs();
  now_ms_ = static_cast<uint32_t>(now_ns / 1000000);
  rte_mbuf* pkts[kBurst];
  while (!quit->load(std::memory_order_relaxed)) {
    const uint64_t cur = rte_rdtsc();
    if (cur - prev_tsc > drain_tsc) {
      if (opt_.index == 0 && exc_ != nullptr) PollFromKernel();
      FlushTx();
      prev_tsc = cur;
      now_ns = MonotonicNs();
      now_ms_ = static_cast<uint32_t>(now_ns / 1000000);
      lstats_->heartbeat_ns.store(now_ns, std::memory_order_relaxed);
      PollNeighbors();
      if (opt_.index == 0) ResolveNextHops(now_ns);
      Sweep(opt_.sweep_buckets);
    }
    MaybeSwapTable();
    for (const RxQueue& q : rx_) {
      const uint16_t n = rte_eth_rx_burst(q.port, q.queue, pkts, kBurst);
      if (n != 0) ProcessBurst(q.port, pkts, n);
    }
  }
  GoOffline();
}

}  // namespace lb::dp
