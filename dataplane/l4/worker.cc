#include "dataplane/l4/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include <cstring>

#include "lib/encap.h"
#include "lib/flow_hash.h"
#include "lib/icmp.h"

namespace lb::dp {
namespace {

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint64_t kNeighborRefreshNs = 30ull * 1000000000ull;
constexpr uint64_t kNeighborRetryNs = 1000000000ull;

inline bool AddrIsZero(const uint8_t* a, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != 0) return false;
  }
  return true;
}

inline uint16_t EtherTypeFor(AddrFamily f) {
  return rte_cpu_to_be_16(f == AddrFamily::kIPv4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
}

inline bool IsIcmpError(const ParsedPacket& p) {
  if (!p.has_l4) return false;
  if (p.proto == kIpProtoIcmp) return p.icmp_type == 3 || p.icmp_type == 11 || p.icmp_type == 12;
  if (p.proto == kIpProtoIcmpV6) return p.icmp_type >= 1 && p.icmp_type <= 4;
  return false;
}

// Parses an NDP neighbour advertisement's target and target link-layer
// address option (RFC 4861 §4.4). Bounded by the IP packet.
bool ParseNeighborAdvert(const uint8_t* data, const ParsedPacket& p, uint8_t target[16],
                         uint8_t mac[6]) {
  const size_t end = p.l3_offset + p.l3_total_len;
  size_t off = p.l4_offset;
  if (p.proto != kIpProtoIcmpV6 || p.icmp_type != 136 || off + 24 > end) return false;
  std::memcpy(target, data + off + 8, 16);
  for (size_t o = off + 24; o + 8 <= end;) {
    const uint8_t type = data[o];
    const size_t len = static_cast<size_t>(data[o + 1]) * 8;
    if (len == 0 || o + len > end) return false;
    if (type == 2) {  // target link-layer address
      std::memcpy(mac, data + o + 2, 6);
      return true;
    }
    o += len;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& opt,
                                                       const TableReader* tables,
                                                       StatsRegion* stats, NodeState* node,
                                                       rte_mempool* pool) {
  if (opt.index >= stats->header().max_lcores) {
    return absl::InvalidArgumentError("worker index beyond the stats region's max_lcores");
  }
  ConnTableOptions co = opt.conn;
  co.capacity = opt.conn_capacity;
  auto conn = ConnTable::Create(co);
  if (!conn.ok()) return conn.status();
  std::unique_ptr<Worker> w(new Worker());
  w->opt_ = opt;
  w->tables_ = tables;
  w->stats_ = stats;
  w->node_ = node;
  w->pool_ = pool;
  w->conn_ = std::move(*conn);
  w->lstats_ = &stats->Lcore(opt.index);
  w->vstats_ = stats->Vips(opt.index);
  w->bstats_ = stats->Backends(opt.index);
  const TableRegionHeader& th = tables->header();
  w->rr_cursor_.assign(th.max_vips, 0);
  w->swrr_current_.assign(th.max_members, 0);
  w->rng_ ^= (static_cast<uint64_t>(opt.index) + 1) * 0xD6E8FEB86659FD93ull;
  return w;
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
  MaybeSwapTable();
}

void Worker::GoOffline() {
  FlushTx();
  lstats_->state.store(static_cast<uint32_t>(LcoreState::kOffline), std::memory_order_release);
}

void Worker::MaybeSwapTable() {
  const uint64_t g = tables_->generation();  // acquire: pairs with TableWriter::Publish
  if (g == generation_ || g == 0) return;
  SlotView v = tables_->Slot(g);
  // The slot must say it holds g: the writer stamps it before publishing, so
  // anything else means a foreign writer broke the protocol. Keep the old
  // slot rather than forward with a half-written one.
  if (v.header->generation != g) return;
  slot_ = v;
  generation_ = g;
  vip_cache_valid_ = false;
  // Outer sources for this generation: the config's tunnel source, else the
  // node's own address; ttl 0 marks "none" (packets drop as no_next_hop).
  const NodeEntry& ne = v.header->node;
  encap4_ = EncapParams{};
  encap4_.outer_family = AddrFamily::kIPv4;
  encap4_.ttl = 64;
  if (!AddrIsZero(ne.tunnel_src_v4, 4)) {
    std::memcpy(encap4_.src, ne.tunnel_src_v4, 4);
  } else if (node_->has_ipv4) {
    std::memcpy(encap4_.src, node_->ipv4, 4);
  } else {
    encap4_.ttl = 0;
  }
  encap6_ = EncapParams{};
  encap6_.outer_family = AddrFamily::kIPv6;
  encap6_.ttl = 64;
  if (!AddrIsZero(ne.tunnel_src_v6, 16)) {
    std::memcpy(encap6_.src, ne.tunnel_src_v6, 16);
  } else if (node_->has_ipv6) {
    std::memcpy(encap6_.src, node_->ipv6, 16);
  } else {
    encap6_.ttl = 0;
  }
  // Member lists may have changed: per-VIP rotation state restarts.
  std::fill(rr_cursor_.begin(), rr_cursor_.end(), 0);
  std::fill(swrr_current_.begin(), swrr_current_.end(), 0);
  CounterAdd(lstats_->table_swaps, 1);
  // Release: every read of the old slot above happens-before the control
  // plane's load that sees g, after which it may rewrite the old slot.
  lstats_->observed_generation.store(g, std::memory_order_release);
}

void Worker::Drop(rte_mbuf* m, DropReason r) {
  CounterAdd(lstats_->drops[static_cast<int>(r)], 1);
  rte_pktmbuf_free(m);
}

void Worker::DropVip(rte_mbuf* m, DropReason r, int vip) {
  CounterAdd(vstats_[vip].drops, 1);
  Drop(m, r);
}

void Worker::SendPort(uint16_t port) {
  TxBuffer& b = tx_[port];
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < b.count; ++i) bytes += b.pkts[i]->pkt_len;
  const uint16_t sent = rte_eth_tx_burst(port, static_cast<uint16_t>(opt_.index), b.pkts, b.count);
  // What the NIC refused is ours to free (l3fwd send_burst does the same).
  for (uint16_t i = sent; i < b.count; ++i) {
    bytes -= b.pkts[i]->pkt_len;
    Drop(b.pkts[i], DropReason::kTxFull);
  }
  CounterAdd(lstats_->tx_packets, sent);
  CounterAdd(lstats_->tx_bytes, bytes);
  b.count = 0;
}

void Worker::EnqueueTx(uint16_t port, rte_mbuf* m) {
  TxBuffer& b = tx_[port];
  if (b.count == kTxBufferCap) {  // only reachable with capture on
    Drop(m, DropReason::kTxFull);
    return;
  }
  b.pkts[b.count++] = m;
  if (b.count >= kBurst && !capture_tx_) SendPort(port);
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
    CounterAdd(lstats_->tx_packets, 1);
    CounterAdd(lstats_->tx_bytes, b.pkts[i]->pkt_len);
  }
  std::memmove(b.pkts, b.pkts + n, sizeof(rte_mbuf*) * (b.count - n));
  b.count = static_cast<uint16_t>(b.count - n);
  return n;
}

void Worker::ReleaseFlow(const ConnValue& v) {
  if (v.backend_slot == 0 || v.backend_slot >= stats_->header().max_backends) return;
  std::atomic<uint64_t>& g = bstats_[v.backend_slot].active_flows;
  uint64_t cur = g.load(std::memory_order_relaxed);
  if (cur > 0) g.store(cur - 1, std::memory_order_relaxed);
}

void Worker::ReleaseFlowThunk(void* ctx, const ConnValue& v) {
  static_cast<Worker*>(ctx)->ReleaseFlow(v);
}

void Worker::Sweep(uint32_t buckets) {
  conn_->Sweep(now_ms_, buckets, &Worker::ReleaseFlowThunk, this);
  lstats_->conn_entries.store(conn_->size(), std::memory_order_relaxed);
}

// Non-first fragments carry no ports: they can only belong to a
// fragment-tolerant VIP on their destination address and protocol. Fragments
// are rare, so a scan of the VIP array is acceptable here.
// Traffic comes in runs of one VIP: remember the last match (reset on every
// table swap) and skip the hash probe when the next packet has the same
// destination, protocol and port.
int Worker::FindVipCached(const FlowKey& key) {
  if (vip_cache_valid_ && key.dport == vip_cache_key_.dport && key.proto == vip_cache_key_.proto &&
      key.family == vip_cache_key_.family && std::memcmp(key.dst, vip_cache_key_.dst, 16) == 0) {
    return vip_cache_;
  }
  const int vip = slot_.FindVip(key.family, key.dst, key.proto, key.dport);
  std::memcpy(vip_cache_key_.dst, key.dst, 16);
  vip_cache_key_.dport = key.dport;
  vip_cache_key_.proto = key.proto;
  vip_cache_key_.family = key.family;
  vip_cache_ = vip;
  vip_cache_valid_ = true;
  return vip;
}

int Worker::FindFragmentVip(const FlowKey& key) const {
  const size_t alen = key.family == AddrFamily::kIPv4 ? 4 : 16;
  int plain = -1;
  for (uint32_t i = 0; i < slot_.header->num_vips; ++i) {
    const VipEntry& v = slot_.vips[i];
    if (!(v.flags & kVipInUse) || v.family != static_cast<uint8_t>(key.family) ||
        v.proto != key.proto || std::memcmp(v.addr, key.dst, alen) != 0) {
      continue;
    }
    if (v.flags & kVipFragmentTolerant) return static_cast<int>(i);
    plain = static_cast<int>(i);
  }
  return plain;
}

bool Worker::PickBackend(int vip, const FlowKey& key, uint64_t flow_hash, Pick* out) {
  const VipEntry& v = slot_.vips[vip];
  const uint32_t* members = slot_.members + v.member_begin;
  const uint32_t count = v.member_count;
  uint32_t s = 0;
  switch (static_cast<Algorithm>(v.algorithm)) {
    case Algorithm::kMaglev:
      if (slot_.header->ring_size == 0) return false;
      s = slot_.Ring(vip)[RingIndex(flow_hash, slot_.header->ring_size)];
      break;
    case Algorithm::kIpHash:
      if (slot_.header->ring_size == 0) return false;
      s = slot_.Ring(
          vip)[RingIndex(HashFlowMode(key, HashMode::kSourceIp), slot_.header->ring_size)];
      break;
    case Algorithm::kRoundRobin:
      if (count == 0) return false;
      s = members[rr_cursor_[vip]++ % count];
      break;
    case Algorithm::kRandom: {
      if (count == 0) return false;
      rng_ ^= rng_ >> 12;
      rng_ ^= rng_ << 25;
      rng_ ^= rng_ >> 27;
      uint64_t r = rng_ * 0x2545F4914F6CDD1Dull;
      s = members[RingIndex(r, count)];
      break;
    }
    case Algorithm::kWeightedRoundRobin: {
      // Smooth weighted round robin (nginx): every member gains its weight,
      // the richest is picked and pays the total. Over any window the picks
      // interleave instead of bursting on the heaviest backend.
      if (count == 0) return false;
      int64_t total = 0;
      int64_t best_w = INT64_MIN;
      uint32_t best = 0;
      int64_t* cur = swrr_current_.data() + v.member_begin;
      for (uint32_t i = 0; i < count; ++i) {
        const int64_t w = slot_.backends[members[i]].weight;
        cur[i] += w;
        total += w;
        if (cur[i] > best_w) {
          best_w = cur[i];
          best = i;
        }
      }
      cur[best] -= total;
      s = members[best];
      break;
    }
    case Algorithm::kLeastConnections:
    case Algorithm::kWeightedLeastConnections: {
      // Live flows this lcore holds per backend (the connection-table gauge).
      // Weighted: compare flows_a / w_a < flows_b / w_b without division.
      if (count == 0) return false;
      const bool weighted =
          v.algorithm == static_cast<uint8_t>(Algorithm::kWeightedLeastConnections);
      uint32_t best = 0;
      uint64_t best_f = 0, best_w = 1;
      for (uint32_t i = 0; i < count; ++i) {
        const uint64_t f = bstats_[members[i]].active_flows.load(std::memory_order_relaxed);
        const uint64_t w = weighted ? slot_.backends[members[i]].weight : 1;
        if (i == 0 || f * best_w < best_f * w) {
          best = i;
          best_f = f;
          best_w = w;
        }
      }
      s = members[best];
      break;
    }
  }
  if (s == 0 || s >= slot_.header->num_backends) return false;
  const BackendEntry& b = slot_.backends[s];
  if (b.state != static_cast<uint8_t>(BackendState::kActive)) return false;
  out->slot = s;
  out->incarnation = b.incarnation;
  return true;
}

// A pinned (slot, incarnation) still forwards when the slot holds the same
// backend (incarnation) and it keeps its flows: active or draining. Down, or
// a slot given to another backend, means re-pick.
bool Worker::StillServes(uint32_t slot, uint32_t incarnation) const {
  if (slot == 0 || slot >= slot_.header->num_backends) return false;
  const BackendEntry& b = slot_.backends[slot];
  return b.incarnation == incarnation && (b.state == static_cast<uint8_t>(BackendState::kActive) ||
                                          b.state == static_cast<uint8_t>(BackendState::kDraining));
}

bool Worker::PickForNewFlow(int vip, const FlowKey& key, uint64_t flow_hash, Pick* out) {
  const VipEntry& v = slot_.vips[vip];
  if (!(v.flags & kVipSticky) || node_->sticky == nullptr) {
    return PickBackend(vip, key, flow_hash, out);
  }
  const uint32_t ttl_ms = v.sticky_ttl_s * 1000;
  StickyValue sv;
  // A persistent client follows its backend while it is not down, even when
  // draining (IPVS persistence does the same).
  if (node_->sticky->Lookup(static_cast<uint32_t>(vip), key.family, key.src, now_ms_, ttl_ms,
                            &sv) &&
      StillServes(sv.backend_slot, sv.incarnation)) {
    out->slot = sv.backend_slot;
    out->incarnation = sv.incarnation;
    return true;
  }
  if (!PickBackend(vip, key, flow_hash, out)) return false;
  node_->sticky->Insert(static_cast<uint32_t>(vip), key.family, key.src,
                        StickyValue{out->slot, out->incarnation}, now_ms_);
  return true;
}

void Worker::SendTooBig(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint32_t mtu) {
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const auto* eth = reinterpret_cast<const rte_ether_hdr*>(data);
  rte_mbuf* r = rte_pktmbuf_alloc(pool_);
  if (r == nullptr) {
    CounterAdd(lstats_->drops[static_cast<int>(DropReason::kNoBuffer)], 1);
    return;
  }
  uint8_t* out = rte_pktmbuf_mtod(r, uint8_t*);
  const size_t cap = rte_pktmbuf_tailroom(r);
  size_t n = 0;
  const uint8_t* orig = data + p.l3_offset;
  const size_t orig_len = rte_pktmbuf_data_len(m) - p.l3_offset;
  if (p.key.family == AddrFamily::kIPv4 && node_->has_ipv4) {
    n = WriteIcmpFragNeeded(out, cap, node_->port_mac[port].addr_bytes, eth->src_addr.addr_bytes,
                            node_->ipv4, orig, orig_len, static_cast<uint16_t>(mtu));
  } else if (p.key.family == AddrFamily::kIPv6 && node_->has_ipv6) {
    n = WriteIcmpv6PacketTooBig(out, cap, node_->port_mac[port].addr_bytes,
                                eth->src_addr.addr_bytes, node_->ipv6, orig, orig_len, mtu);
  }
  if (n == 0) {
    rte_pktmbuf_free(r);
    return;
  }
  r->data_len = static_cast<uint16_t>(n);
  r->pkt_len = static_cast<uint32_t>(n);
  CounterAdd(lstats_->replies, 1);
  EnqueueTx(port, r);
}

void Worker::Forward(uint16_t port, rte_mbuf* m, const ParsedPacket& p, int vip, uint32_t slot,
                     uint64_t flow_hash) {
  const BackendEntry& be = slot_.backends[slot];
  const auto outer = static_cast<AddrFamily>(be.family);
  const size_t overhead = EncapOverhead(outer);
  const uint32_t inner_len = p.l3_total_len;
  if (overhead == 0) {  // slot not (or no longer) holding a backend
    DropVip(m, DropReason::kNoBackend, vip);
    return;
  }
  if (inner_len + overhead > node_->mtu) {
    // Tell the client the MTU the tunnel leaves it (DF set, or IPv6), so its
    // next try fits; without DF the packet is only dropped.
    if (p.df) SendTooBig(port, m, p, static_cast<uint32_t>(node_->mtu - overhead));
    DropVip(m, DropReason::kTooBig, vip);
    return;
  }
  NextHop& nh = outer == AddrFamily::kIPv4 ? node_->gw4 : node_->gw6;
  rte_ether_addr nh_mac;
  if (!nh.Get(&nh_mac)) {
    DropVip(m, DropReason::kNoNextHop, vip);
    return;
  }
  // Outer source chosen once per table generation (MaybeSwapTable).
  EncapParams& ep = outer == AddrFamily::kIPv4 ? encap4_ : encap6_;
  if (ep.ttl == 0) {  // no tunnel source for this family
    DropVip(m, DropReason::kNoNextHop, vip);
    return;
  }
  std::memcpy(ep.dst, be.addr, 16);

  // Trim Ethernet padding so the inner packet is exactly what its header says.
  const uint32_t frame_len = p.l3_offset + inner_len;
  if (m->pkt_len > frame_len) rte_pktmbuf_trim(m, static_cast<uint16_t>(m->pkt_len - frame_len));

  // Move the L2 header `overhead` bytes forward. Fixed-size copies for the
  // untagged case keep this a few register moves instead of a memcpy call.
  uint8_t l2[32];
  const uint16_t l2_len = p.l2_len;
  const uint8_t* old_l2 = rte_pktmbuf_mtod(m, const uint8_t*);
  if (l2_len == RTE_ETHER_HDR_LEN) {
    std::memcpy(l2, old_l2, RTE_ETHER_HDR_LEN);
  } else {
    std::memcpy(l2, old_l2, l2_len);
  }
  uint8_t* data =
      reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, static_cast<uint16_t>(overhead)));
  if (data == nullptr) {
    DropVip(m, DropReason::kNoBuffer, vip);
    return;
  }
  if (l2_len == RTE_ETHER_HDR_LEN) {
    std::memcpy(data, l2, RTE_ETHER_HDR_LEN);
  } else {
    std::memcpy(data, l2, l2_len);
  }
  const size_t w = WriteEncapHeader(data + l2_len, data + l2_len + overhead, inner_len,
                                    p.key.family, ep, static_cast<uint32_t>(flow_hash));
  if (w != overhead) {
    DropVip(m, DropReason::kBadLength, vip);
    return;
  }
  auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
  eth->dst_addr = nh_mac;
  eth->src_addr = node_->port_mac[port];
  // The EtherType is the last 2 bytes of the L2 header (after any VLAN tags).
  const uint16_t et = EtherTypeFor(outer);
  std::memcpy(data + l2_len - 2, &et, 2);
  m->ol_flags = 0;

  ++burst_forwarded_;
  CounterAdd(vstats_[vip].packets, 1);
  CounterAdd(vstats_[vip].bytes, inner_len);
  CounterAdd(bstats_[slot].packets, 1);
  CounterAdd(bstats_[slot].bytes, inner_len);
  EnqueueTx(port, m);
}

void Worker::HandleOne(uint16_t port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash, int vip) {
  const FlowKey& key = p.key;
  const uint8_t flags = key.proto == kIpProtoTcp ? p.tcp_flags : 0;
  ConnValue cv;
  uint32_t e = conn_->Lookup(key, hash, now_ms_, flags, &cv);
  if (e != ConnTable::kNoEntry) {
    if (StillServes(cv.backend_slot, cv.incarnation)) {
      const VipEntry& v = slot_.vips[vip];
      if ((v.flags & kVipSticky) && node_->sticky != nullptr) {
        node_->sticky->Refresh(static_cast<uint32_t>(vip), key.family, key.src, now_ms_,
                               v.sticky_ttl_s * 1000);
      }
      Forward(port, m, p, vip, cv.backend_slot, hash);
      return;
    }
    Pick pick;
    ReleaseFlow(cv);
    if (!PickForNewFlow(vip, key, hash, &pick)) {
      conn_->Erase(e);
      DropVip(m, DropReason::kNoBackend, vip);
      return;
    }
    conn_->Update(e, ConnValue{pick.slot, pick.incarnation});
    CounterAdd(bstats_[pick.slot].active_flows, 1);
    CounterAdd(lstats_->conn_repicks, 1);
    Forward(port, m, p, vip, pick.slot, hash);
    return;
  }
  Pick pick;
  if (!PickForNewFlow(vip, key, hash, &pick)) {
    DropVip(m, DropReason::kNoBackend, vip);
    return;
  }
  const ConnClass cls =
      key.proto == kIpProtoTcp
          ? ((flags & (kTcpFin | kTcpRst)) ? ConnClass::kTcpClosing : ConnClass::kTcp)
          : ConnClass::kUdp;
  bool evicted = false;
  ConnValue old;
  conn_->Insert(key, hash, ConnValue{pick.slot, pick.incarnation}, cls, now_ms_, &evicted, &old);
  if (evicted) {
    ReleaseFlow(old);
    // Only an unexpired victim is an eviction; the table counts which.
    lstats_->conn_evictions.store(conn_->evictions(), std::memory_order_relaxed);
  }
  CounterAdd(bstats_[pick.slot].active_flows, 1);
  CounterAdd(bstats_[pick.slot].new_flows, 1);
  CounterAdd(vstats_[vip].new_flows, 1);
  CounterAdd(lstats_->new_flows, 1);
  Forward(port, m, p, vip, pick.slot, hash);
}

bool Worker::PeekPeers(const FlowKey& key, uint64_t hash, ConnValue* out) const {
  for (const Worker* w : peers_) {
    if (w != this && w->conn_->Peek(key, hash, now_ms_, out)) return true;
  }
  return false;
}

// An ICMP error about a VIP flow (frag-needed / packet-too-big, unreachable)
// arrives addressed to the VIP: the backend answered the client from the VIP
// and a router on the way could not deliver it. The embedded packet is
// VIP -> client; reversed, it is the client's flow, and the error belongs to
// the backend that owns that flow, whichever lcore holds it.
void Worker::HandleIcmpError(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
  FlowKey inner;
  uint32_t mtu = 0;
  if (!ParseIcmpError(data, rte_pktmbuf_data_len(m), p, &inner, &mtu)) {
    Drop(m, DropReason::kIcmpUnmatched);
    return;
  }
  FlowKey key = inner;
  std::memcpy(key.src, inner.dst, 16);
  std::memcpy(key.dst, inner.src, 16);
  key.sport = inner.dport;
  key.dport = inner.sport;
  const int vip = slot_.FindVip(key.family, key.dst, key.proto, key.dport);
  if (vip < 0) {
    Drop(m, DropReason::kIcmpUnmatched);
    return;
  }
  uint64_t hash;
  if (slot_.vips[vip].flags & kVipFragmentTolerant) {
    key.sport = key.dport = 0;
    hash = HashFlowMode(key, HashMode::kSrcDstProto);
  } else {
    hash = HashFlow(key);
  }
  ConnValue cv;
  uint32_t slot = 0;
  if (conn_->Peek(key, hash, now_ms_, &cv) || PeekPeers(key, hash, &cv)) {
    if (StillServes(cv.backend_slot, cv.incarnation)) slot = cv.backend_slot;
  }
  if (slot == 0) {
    // No lcore holds the flow (e.g. it expired): hash-based algorithms still
    // map it to the backend that served it.
    Pick pick;
    if (!PickBackend(vip, key, hash, &pick)) {
      DropVip(m, DropReason::kNoBackend, vip);
      return;
    }
    slot = pick.slot;
  }
  Forward(port, m, p, vip, slot, hash);
}

bool Worker::HandleLocal(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = rte_pktmbuf_data_len(m);
  const rte_ether_addr& my_mac = node_->port_mac[port];

  if (p.l3 == L3Kind::kArp) {
    ArpInfo a;
    if (!node_->has_ipv4 || !ParseArp(data, len, p, &a)) {
      Drop(m, DropReason::kArpIgnored);
      return true;
    }
    NextHop& gw = node_->gw4;
    const bool from_gw = gw.configured && !gw.is_static && std::memcmp(a.spa, gw.ip, 4) == 0;
    if (from_gw) gw.Set(a.sha, MonotonicNs());
    if (a.op == 1 && std::memcmp(a.tpa, node_->ipv4, 4) == 0 &&
        MakeArpReply(data, len, p.l2_len, my_mac.addr_bytes)) {
      CounterAdd(lstats_->replies, 1);
      EnqueueTx(port, m);
      return true;
    }
    if (from_gw) {
      CounterAdd(lstats_->neighbor_learned, 1);
      rte_pktmbuf_free(m);
      return true;
    }
    Drop(m, DropReason::kArpIgnored);
    return true;
  }

  if (p.key.family == AddrFamily::kIPv6 && p.proto == kIpProtoIcmpV6 && p.has_l4) {
    // Neighbour discovery is addressed to multicast groups, not to us.
    if (p.icmp_type == 135) {
      uint8_t target[16], src_mac[6];
      bool has_mac = false;
      if (node_->has_ipv6 && ParseNeighborSolicitation(data, len, p, target, src_mac, &has_mac) &&
          std::memcmp(target, node_->ipv6, 16) == 0) {
        const auto* eth = reinterpret_cast<const rte_ether_hdr*>(data);
        uint8_t dst_mac[6], dst_ip[16];
        std::memcpy(dst_mac, has_mac ? src_mac : eth->src_addr.addr_bytes, 6);
        std::memcpy(dst_ip, p.key.src, 16);
        NextHop& gw = node_->gw6;
        if (has_mac && gw.configured && !gw.is_static && std::memcmp(p.key.src, gw.ip, 16) == 0) {
          gw.Set(src_mac, MonotonicNs());
        }
        const bool unspecified = AddrIsZero(dst_ip, 16);
        if (unspecified) {
          static const uint8_t kAllNodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                                                0,    0,    0, 0, 0, 0, 0, 1};
          static const uint8_t kAllNodesMac[6] = {0x33, 0x33, 0, 0, 0, 1};
          std::memcpy(dst_ip, kAllNodes, 16);
          std::memcpy(dst_mac, kAllNodesMac, 6);
        }
        // The advertisement is written over the solicitation; every input
        // it needs was copied out above.
        if (m->nb_segs == 1) {
          const size_t cap = rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m);
          const size_t n = WriteNeighborAdvertisement(data, cap, my_mac.addr_bytes, node_->ipv6,
                                                      dst_mac, dst_ip, target, !unspecified);
          if (n != 0) {
            m->data_len = static_cast<uint16_t>(n);
            m->pkt_len = static_cast<uint32_t>(n);
            CounterAdd(lstats_->replies, 1);
            EnqueueTx(port, m);
            return true;
          }
        }
        Drop(m, DropReason::kNoBuffer);
        return true;
      }
      Drop(m, DropReason::kIcmpIgnored);
      return true;
    }
    if (p.icmp_type == 136) {
      uint8_t target[16], mac[6];
      NextHop& gw = node_->gw6;
      if (gw.configured && !gw.is_static && ParseNeighborAdvert(data, p, target, mac) &&
          std::memcmp(target, gw.ip, 16) == 0) {
        gw.Set(mac, MonotonicNs());
        CounterAdd(lstats_->neighbor_learned, 1);
        rte_pktmbuf_free(m);
        return true;
      }
      Drop(m, DropReason::kIcmpIgnored);
      return true;
    }
  }

  const bool to_me4 = p.key.family == AddrFamily::kIPv4 && node_->has_ipv4 &&
                      std::memcmp(p.key.dst, node_->ipv4, 4) == 0;
  const bool to_me6 = p.key.family == AddrFamily::kIPv6 && node_->has_ipv6 &&
                      std::memcmp(p.key.dst, node_->ipv6, 16) == 0;
  if (!to_me4 && !to_me6) return false;
  if (to_me4 && p.proto == kIpProtoIcmp && p.has_l4 && p.icmp_type == 8 &&
      MakeIcmpEchoReply(data, len, p.l3_offset)) {
    CounterAdd(lstats_->replies, 1);
    EnqueueTx(port, m);
    return true;
  }
  if (to_me6 && p.proto == kIpProtoIcmpV6 && p.has_l4 && p.icmp_type == 128 &&
      MakeIcmpv6EchoReply(data, len, p.l3_offset)) {
    CounterAdd(lstats_->replies, 1);
    EnqueueTx(port, m);
    return true;
  }
  const bool icmp = p.proto == kIpProtoIcmp || p.proto == kIpProtoIcmpV6;
  Drop(m, icmp ? DropReason::kIcmpIgnored : DropReason::kNotForUs);
  return true;
}

void Worker::ProcessBurst(uint16_t port, rte_mbuf** pkts, uint16_t n) {
  while (n > kBurst) {
    ProcessBurst(port, pkts, kBurst);
    pkts += kBurst;
    n = static_cast<uint16_t>(n - kBurst);
  }
  ParsedPacket parsed[kBurst];
  uint64_t hashes[kBurst];
  int vips[kBurst];
  uint16_t pending[kBurst];
  uint16_t np = 0;

  if (n > 0) rte_prefetch0(rte_pktmbuf_mtod(pkts[0], void*));
  // Counters of the whole burst are added once, at the end.
  uint64_t rx_bytes = 0;
  burst_forwarded_ = 0;
  // Pass 1: parse, classify, match the VIP, hash, prefetch the connection
  // table bucket. Everything that is not VIP traffic is finished here.
  for (uint16_t i = 0; i < n; ++i) {
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    rte_mbuf* m = pkts[i];
    rx_bytes += m->pkt_len;
    ParsedPacket& p = parsed[i];
    DropReason why;
    if (ParsePacket(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), &p, &why) !=
        ParseStatus::kOk) {
      Drop(m, why);
      continue;
    }
    if (p.l2_len > 22) {  // more tags than our L2 copy holds; ParsePacket allows two
      Drop(m, DropReason::kUnsupportedL3);
      continue;
    }
    if (HandleLocal(port, m, p)) continue;
    if (generation_ == 0) {
      Drop(m, DropReason::kNoTable);
      continue;
    }
    int vip;
    if (p.is_fragment && !p.is_first_fragment) {
      vip = FindFragmentVip(p.key);
    } else if (IsIcmpError(p)) {
      HandleIcmpError(port, m, p);
      continue;
    } else {
      vip = FindVipCached(p.key);
    }
    if (vip < 0) {
      Drop(m, DropReason::kNotForUs);
      continue;
    }
    uint64_t h;
    if (slot_.vips[vip].flags & kVipFragmentTolerant) {
      // Every packet of the flow, fragment or not, hashes on src/dst/proto so
      // that all fragments of a datagram reach the same backend.
      p.key.sport = p.key.dport = 0;
      h = HashFlowMode(p.key, HashMode::kSrcDstProto);
    } else if (p.is_fragment) {
      DropVip(m, DropReason::kFragment, vip);
      continue;
    } else {
      h = HashFlow(p.key);
    }
    conn_->Prefetch(h);
    hashes[i] = h;
    vips[i] = vip;
    pending[np++] = i;
  }
  // Stage 2 of the prefetch: with the bucket headers arriving, start loading
  // the entry lines whose signatures match.
  for (uint16_t k = 0; k < np; ++k) conn_->PrefetchEntry(hashes[pending[k]]);
  // Pass 2: connection-table lookups with their lines already in flight.
  for (uint16_t k = 0; k < np; ++k) {
    const uint16_t i = pending[k];
    HandleOne(port, pkts[i], parsed[i], hashes[i], vips[i]);
  }
  CounterAdd(lstats_->rx_packets, n);
  CounterAdd(lstats_->rx_bytes, rx_bytes);
  CounterAdd(lstats_->forwarded, burst_forwarded_);
}

void Worker::ResolveNextHops(uint64_t now_ns) {
  struct Target {
    NextHop* nh;
    bool v6;
  } targets[2] = {{&node_->gw4, false}, {&node_->gw6, true}};
  for (int t = 0; t < 2; ++t) {
    NextHop& nh = *targets[t].nh;
    if (!nh.configured || nh.is_static) continue;
    if (targets[t].v6 ? !node_->has_ipv6 : !node_->has_ipv4) continue;
    const uint64_t resolved = nh.resolved_ns.load(std::memory_order_relaxed);
    const bool fresh = resolved != 0 && now_ns - resolved < kNeighborRefreshNs;
    if (fresh || now_ns - last_try_[t] < kNeighborRetryNs) continue;
    last_try_[t] = now_ns;
    for (uint16_t port = 0; port < node_->num_ports; ++port) {
      rte_mbuf* r = rte_pktmbuf_alloc(pool_);
      if (r == nullptr) {
        CounterAdd(lstats_->drops[static_cast<int>(DropReason::kNoBuffer)], 1);
        continue;
      }
      uint8_t* out = rte_pktmbuf_mtod(r, uint8_t*);
      const size_t cap = rte_pktmbuf_tailroom(r);
      const size_t n =
          targets[t].v6
              ? WriteNeighborSolicitation(out, cap, node_->port_mac[port].addr_bytes, node_->ipv6,
                                          nh.ip)
              : WriteArpRequest(out, cap, node_->port_mac[port].addr_bytes, node_->ipv4, nh.ip);
      if (n == 0) {
        rte_pktmbuf_free(r);
        continue;
      }
      r->data_len = static_cast<uint16_t>(n);
      r->pkt_len = static_cast<uint32_t>(n);
      EnqueueTx(port, r);
    }
  }
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
      FlushTx();
      prev_tsc = cur;
      now_ns = MonotonicNs();
      now_ms_ = static_cast<uint32_t>(now_ns / 1000000);
      lstats_->heartbeat_ns.store(now_ns, std::memory_order_relaxed);
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
