// The per-packet path: ProcessBurst and what it calls for VIP traffic.
// Packets for the node itself are in worker_local.cc, the loop, set-up and
// TX plumbing in worker_loop.cc.
#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <cstring>

#include "dataplane/l4/worker.h"
#include "lib/backend_pick.h"
#include "lib/byte_order.h"
#include "lib/encap.h"
#include "lib/flow_hash.h"
#include "lib/icmp.h"
#include "lib/packet_fast.h"
#include "lib/vip_flow.h"

namespace lb::dp {
namespace {

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSynFlag = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;
// Stateless forwards keep syn_guard_engaged at 1 for this long.
constexpr uint32_t kGuardHoldMs = 1000;

inline uint16_t EtherTypeFor(AddrFamily f) {
  return rte_cpu_to_be_16(f == AddrFamily::kIPv4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
}

inline bool IsIcmpError(const ParsedPacket& p) {
  if (!p.has_l4) return false;
  if (p.proto == kIpProtoIcmp) return p.icmp_type == 3 || p.icmp_type == 11 || p.icmp_type == 12;
  if (p.proto == kIpProtoIcmpV6) return p.icmp_type >= 1 && p.icmp_type <= 4;
  return false;
}

inline bool IsIcmpEchoRequest(const ParsedPacket& p) {
  if (!p.has_l4) return false;
  return (p.proto == kIpProtoIcmp && p.icmp_type == 8) ||
         (p.proto == kIpProtoIcmpV6 && p.icmp_type == 128);
}

}  // namespace

void Worker::Drop(rte_mbuf* m, DropReason r) {
  CounterAdd(lstats_->drops[static_cast<int>(r)], 1);
  rte_pktmbuf_free(m);
}

void Worker::ToKernel(rte_mbuf* m, DropReason otherwise) {
  if (exc_ == nullptr) {
    Drop(m, otherwise);
    return;
  }
  const uint32_t sec = now_ms_ / 1000;
  if (sec != exc_sec_) {
    exc_sec_ = sec;
    exc_count_ = 0;
  }
  if ((exc_->pps_per_lcore != 0 && exc_count_ >= exc_->pps_per_lcore) ||
      rte_ring_mp_enqueue(exc_->to_kernel, m) != 0) {
    Drop(m, DropReason::kExceptionFull);
    return;
  }
  ++exc_count_;
  CounterAdd(lstats_->to_kernel, 1);
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
  // `forwarded` counts what the NIC accepted: a packet refused here is a
  // kTxFull drop only, never both.
  uint64_t forwarded = 0;
  for (uint16_t i = 0; i < sent; ++i) forwarded += b.forwarded[i];
  // What the NIC refused is ours to free (l3fwd send_burst does the same).
  for (uint16_t i = sent; i < b.count; ++i) {
    bytes -= b.pkts[i]->pkt_len;
    Drop(b.pkts[i], DropReason::kTxFull);
  }
  CounterAdd(lstats_->forwarded, forwarded);
  CounterAdd(lstats_->tx_packets, sent);
  CounterAdd(lstats_->tx_bytes, bytes);
  b.count = 0;
}

void Worker::EnqueueTx(uint16_t port, rte_mbuf* m, bool forwarded) {
  TxBuffer& b = tx_[port];
  if (b.count == kTxBufferCap) {  // only reachable with capture on
    Drop(m, DropReason::kTxFull);
    return;
  }
  b.forwarded[b.count] = forwarded;
  b.pkts[b.count++] = m;
  if (b.count >= kBurst && !capture_tx_) SendPort(port);
}

void Worker::ReleaseFlow(const ConnValue& v) {
  if (v.backend_slot == 0 || v.backend_slot >= counted_incarnation_.size()) return;
  // An entry of the slot's previous owner was never counted in this gauge.
  if (v.incarnation != counted_incarnation_[v.backend_slot]) return;
  std::atomic<uint64_t>& g = bstats_[v.backend_slot].active_flows;
  uint64_t cur = g.load(std::memory_order_relaxed);
  if (cur > 0) g.store(cur - 1, std::memory_order_relaxed);
}

// Traffic comes in runs of one VIP: remember the last match (reset on every
// table swap) and skip the hash probe when the next packet has the same
// destination, protocol and port.
__attribute__((always_inline)) inline int Worker::FindVipCached(const FlowKey& key) {
  if (vip_cache_valid_ && key.dport == vip_cache_key_.dport && key.proto == vip_cache_key_.proto &&
      key.family == vip_cache_key_.family && std::memcmp(key.dst, vip_cache_key_.dst, 16) == 0) {
    return vip_cache_;
  }
  return FindVipMiss(key);
}

__attribute__((noinline)) int Worker::FindVipMiss(const FlowKey& key) {
  const int vip = slot_.FindVip(key.family, key.dst, key.proto, key.dport);
  std::memcpy(vip_cache_key_.dst, key.dst, 16);
  vip_cache_key_.dport = key.dport;
  vip_cache_key_.proto = key.proto;
  vip_cache_key_.family = key.family;
  vip_cache_ = vip;
  vip_cache_valid_ = true;
  return vip;
}

// Non-first fragments carry no ports: they can only belong to a
// fragment-tolerant VIP on their destination address and protocol, and only
// when it is the one VIP (of any port, all-ports included) there; a plain
// VIP found alone drops them as kFragment per VIP. Fragments are rare, so a
// scan of the VIP array is acceptable here.
int Worker::FindFragmentVip(const FlowKey& key) const {
  const size_t alen = key.family == AddrFamily::kIPv4 ? 4 : 16;
  int found = -1;
  for (uint32_t i = 0; i < slot_.header->num_vips; ++i) {
    const VipEntry& v = slot_.vips[i];
    if (!(v.flags & kVipInUse) || v.family != static_cast<uint8_t>(key.family) ||
        v.proto != key.proto || std::memcmp(v.addr, key.dst, alen) != 0) {
      continue;
    }
    // A second VIP (another port, or the all-ports VIP beside a port) on the
    // same address and protocol: the fragment could belong to either, and
    // nothing here remembers its first fragment's port.
    if (found >= 0) return kAmbiguousFragment;
    found = static_cast<int>(i);
  }
  return found;
}

bool Worker::PickForNewFlow(int vip, const FlowKey& key, uint64_t flow_hash, bool consistent,
                            bool remember, BackendPick* out, bool* all_full) {
  const VipEntry& v = slot_.vips[vip];
  *all_full = false;
  // Limits apply to the stateful pick only ("Connection limits", worker.h).
  const BackendLoad load{bstats_, peer_flows_.data()};
  auto pick = [&] {
    if (consistent) return PickConsistentBackend(slot_, vip, key, flow_hash, out);
    uint32_t skipped = 0;
    const bool ok =
        balancer_.PickWithRoom(slot_, vip, key, flow_hash, load, out, all_full, &skipped);
    if (__builtin_expect(skipped != 0, 0)) CounterAdd(bstats_[skipped].full_skips, 1);
    return ok;
  };
  if (!(v.flags & kVipSticky) || node_->sticky == nullptr) return pick();
  const uint32_t ttl_ms = v.sticky_ttl_s * 1000;
  StickyValue sv;
  // A persistent client follows its backend while it is not down, even when
  // draining (IPVS persistence does the same), and while it has room: a
  // full one sends this flow elsewhere but keeps the client's record, so
  // the client returns once there is room.
  bool sticky_full = false;
  if (node_->sticky->Lookup(static_cast<uint32_t>(vip), key.family, key.src, now_ms_, ttl_ms,
                            &sv) &&
      StillServes(slot_, sv.backend_slot, sv.incarnation)) {
    sticky_full = !consistent && BackendFull(slot_, sv.backend_slot, load);
    if (sticky_full) CounterAdd(bstats_[sv.backend_slot].full_skips, 1);
    if (!sticky_full) {
      out->slot = sv.backend_slot;
      out->incarnation = sv.incarnation;
      return true;
    }
  }
  if (!pick()) return false;
  if (remember && !sticky_full) {
    node_->sticky->Insert(static_cast<uint32_t>(vip), key.family, key.src,
                          StickyValue{out->slot, out->incarnation}, now_ms_);
  }
  return true;
}

void Worker::SetNewFlowRateLimit(uint32_t flows_per_s) {
  guard_rate_ = flows_per_s;
  guard_tokens_ = guard_rate_ * 1000;
  guard_refill_ms_ = now_ms_;
}

bool Worker::TakeGuardToken() {
  const uint32_t elapsed = now_ms_ - guard_refill_ms_;
  if (elapsed != 0) {
    guard_refill_ms_ = now_ms_;
    const uint64_t full = guard_rate_ * 1000;
    // elapsed >= 1000 also covers a clock that went backwards (wrapped).
    guard_tokens_ =
        elapsed >= 1000 ? full : std::min(full, guard_tokens_ + uint64_t{elapsed} * guard_rate_);
  }
  if (guard_tokens_ < 1000) return false;
  guard_tokens_ -= 1000;
  return true;
}

void Worker::UpdateGuardGauge() {
  if (guard_engaged_ && now_ms_ - guard_stateless_ms_ > kGuardHoldMs) {
    guard_engaged_ = false;
    lstats_->syn_guard_engaged.store(0, std::memory_order_relaxed);
  }
}

void Worker::Forward(uint16_t port, rte_mbuf* m, const ParsedPacket& p, int vip, uint32_t slot,
                     uint64_t flow_hash) {
  const BackendEntry& be = slot_.backends[slot];
  const VipEntry& ve = slot_.vips[vip];
  const auto outer = static_cast<AddrFamily>(be.family);
  const EncapKind kind = (ve.flags & kVipGue) ? EncapKind::kGue : EncapKind::kIpip;
  const size_t overhead = EncapOverhead(outer, kind);
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
  // This lcore's copy of the next hop (worker.h, "Next hops").
  rte_ether_addr nh_mac;
  if (!UnpackMac(nh_mac_[outer == AddrFamily::kIPv4 ? 0 : 1], &nh_mac)) {
    DropVip(m, DropReason::kNoNextHop, vip);
    return;
  }
  // This backend's outer header, laid out at the table swap (worker.h,
  // "Outer-header templates"); ip_len 0: no tunnel source for its family.
  const EncapTemplate& t = outer_tmpl_[slot];
  if (t.ip_len == 0) {
    DropVip(m, DropReason::kNoNextHop, vip);
    return;
  }

  // Trim Ethernet padding so the inner packet is exactly what its header says.
  const uint32_t frame_len = p.l3_offset + inner_len;
  if (m->pkt_len > frame_len) rte_pktmbuf_trim(m, static_cast<uint16_t>(m->pkt_len - frame_len));

  const uint16_t l2_len = p.l2_len;
  const uint8_t* inner = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l3_offset);
  EncapInner in;
  in.len = inner_len;
  in.family = p.key.family;
  in.tos = p.tos;
  in.df = p.df;
  in.ip_id = p.key.family == AddrFamily::kIPv4 ? LoadBe16(inner + 4) : 0;
  uint8_t* data =
      reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, static_cast<uint16_t>(overhead)));
  if (data == nullptr) {
    DropVip(m, DropReason::kNoBuffer, vip);
    return;
  }
  // The L2 header moves `overhead` bytes forward. Untagged, every byte of it
  // is rewritten below (before the outer header overwrites it); VLAN tags (between the MACs and the
  // EtherType) move.
  if (__builtin_expect(l2_len != RTE_ETHER_HDR_LEN, 0)) {
    std::memmove(data + 12, data + overhead + 12, l2_len - 12);
  }
  const size_t w =
      ApplyEncapTemplate(data + l2_len, t, in, kind, ve.gue_port, static_cast<uint32_t>(flow_hash));
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

  CounterAdd(vstats_[vip].packets, 1);
  CounterAdd(vstats_[vip].bytes, inner_len);
  CounterAdd(bstats_[slot].packets, 1);
  CounterAdd(bstats_[slot].bytes, inner_len);
  EnqueueTx(port, m, /*forwarded=*/true);
}

// Forward for the common form, inlined into ProcessBurst's pass 2: an
// untagged IPv4 packet IP-in-IP to an IPv4 backend with a template, within
// the MTU, a known next hop and room for the outer header. It writes the same
// bytes and counts the same as Forward, which takes everything else (and
// every drop).
__attribute__((always_inline)) inline void Worker::ForwardFast(uint16_t port, rte_mbuf* m,
                                                               const ParsedPacket& p, int vip,
                                                               uint32_t slot, uint64_t flow_hash,
                                                               VipRun* run) {
  const EncapTemplate& t = outer_tmpl_[slot];
  const VipEntry& ve = slot_.vips[vip];
  const uint32_t inner_len = p.l3_total_len;
  const uint64_t mac = nh_mac_[0];
  if (__builtin_expect(t.ip_len != kIPv4HeaderLen || (ve.flags & kVipGue) != 0 ||
                           p.l2_len != RTE_ETHER_HDR_LEN || p.key.family != AddrFamily::kIPv4 ||
                           slot_.backends[slot].family != static_cast<uint8_t>(AddrFamily::kIPv4) ||
                           inner_len + kIPv4HeaderLen > node_->mtu || (mac & kMacValid) == 0 ||
                           rte_pktmbuf_headroom(m) < kIPv4HeaderLen,
                       0)) {
    Forward(port, m, p, vip, slot, flow_hash);
    return;
  }
  // Trim Ethernet padding so the inner packet is exactly what its header says.
  const uint32_t frame_len = RTE_ETHER_HDR_LEN + inner_len;
  if (m->pkt_len > frame_len) rte_pktmbuf_trim(m, static_cast<uint16_t>(m->pkt_len - frame_len));
  EncapInner in;
  in.len = inner_len;
  in.family = AddrFamily::kIPv4;
  in.tos = p.tos;
  in.df = p.df;
  in.ip_id = LoadBe16(rte_pktmbuf_mtod_offset(m, const uint8_t*, RTE_ETHER_HDR_LEN + 4));
  // Cannot fail: the headroom was checked above.
  auto* data = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kIPv4HeaderLen));
  // The inner length is below the MTU, so the template cannot refuse it.
  ApplyEncapTemplate(data + RTE_ETHER_HDR_LEN, t, in, EncapKind::kIpip, 0,
                     static_cast<uint32_t>(flow_hash));
  // The whole untagged L2 header is rewritten: next hop (PackMac's first six
  // bytes), port MAC, IPv4.
  std::memcpy(data, &mac, 6);
  std::memcpy(data + 6, node_->port_mac[port].addr_bytes, 6);
  const uint16_t et = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  std::memcpy(data + 12, &et, 2);
  m->ol_flags = 0;

  if (__builtin_expect(vip != run->vip, 0)) {
    FlushVipRun(run);
    run->vip = vip;
  }
  ++run->packets;
  run->bytes += inner_len;
  CounterAdd(bstats_[slot].packets, 1);
  CounterAdd(bstats_[slot].bytes, inner_len);
  TxBuffer& b = tx_[port];
  if (__builtin_expect(b.count == kTxBufferCap, 0)) {  // only reachable with capture on
    Drop(m, DropReason::kTxFull);
    return;
  }
  b.forwarded[b.count] = 1;
  b.pkts[b.count++] = m;
  if (b.count >= kBurst && !capture_tx_) SendPort(port);
}

// A hit that the established fast path (ProcessBurst pass 2) does not
// finish: a SYN on a closing entry, a sticky VIP, a backend that no longer
// serves. Everything a hit can lead to is here.
__attribute__((noinline)) void Worker::HandleHit(uint16_t port, rte_mbuf* m, const ParsedPacket& p,
                                                 uint64_t hash, int vip, uint32_t e,
                                                 const ConnValue& cv, uint8_t flags) {
  const FlowKey& key = p.key;
  // A SYN (no ACK) on the entry of a flow that already saw a FIN or RST is
  // a new connection reusing the 5-tuple (the client's ports wrapped, a
  // NAT): the old flow is over, so it is balanced as a new flow instead of
  // following the old pin -- to a draining backend that would be a refused
  // connection (IPVS conn_reuse_mode does the same). A retransmitted SYN of
  // a flow still opening (kTcpSyn) keeps its pin.
  if (__builtin_expect((flags & (kTcpSynFlag | kTcpAck)) == kTcpSynFlag, 0) &&
      conn_->ClassOf(e) == ConnClass::kTcpClosing) {
    ReuseClosedEntry(port, m, p, hash, vip, e, cv);
    return;
  }
  if (StillServes(slot_, cv.backend_slot, cv.incarnation)) {
    const VipEntry& v = slot_.vips[vip];
    if ((v.flags & kVipSticky) && node_->sticky != nullptr) {
      node_->sticky->Refresh(static_cast<uint32_t>(vip), key.family, key.src, now_ms_,
                             v.sticky_ttl_s * 1000);
    }
    Forward(port, m, p, vip, cv.backend_slot, hash);
    return;
  }
  BackendPick pick;
  bool all_full;
  ReleaseFlow(cv);
  if (!PickForNewFlow(vip, key, hash, /*consistent=*/false, /*remember=*/true, &pick, &all_full)) {
    conn_->Erase(e);
    DropVip(m, all_full ? DropReason::kBackendsFull : DropReason::kNoBackend, vip);
    return;
  }
  conn_->Update(e, ConnValue{pick.slot, pick.incarnation});
  CounterAdd(bstats_[pick.slot].active_flows, 1);
  CounterAdd(lstats_->conn_repicks, 1);
  Forward(port, m, p, vip, pick.slot, hash);
}

// A miss. See worker.h "New flows and the SYN-flood guard". Inlined into
// HandleMiss (and ReuseClosedEntry): as a call it cost ~50 instructions per
// new flow (callgrind, perf/l4_bench --scenarios=new).
__attribute__((always_inline)) inline void Worker::HandleNewFlow(uint16_t port, rte_mbuf* m,
                                                                 const ParsedPacket& p,
                                                                 uint64_t hash, int vip) {
  if (__builtin_expect(grace_until_ms_ != 0, 0) && AdoptFromGrace(port, m, p, hash, vip)) return;
  const FlowKey& key = p.key;
  const bool tcp = key.proto == kIpProtoTcp;
  const uint8_t flags = tcp ? p.tcp_flags : 0;
  // Only a real SYN (or a non-TCP first packet) may be balanced statefully.
  const bool consistent = tcp && (flags & (kTcpSynFlag | kTcpAck)) != kTcpSynFlag;
  BackendPick pick;
  bool all_full;
  if (!AdmitNewFlow()) {
    if (!PickForNewFlow(vip, key, hash, /*consistent=*/true, /*remember=*/false, &pick,
                        &all_full)) {
      DropVip(m, DropReason::kNoBackend, vip);
      return;
    }
    CounterAdd(lstats_->syn_guard_stateless, 1);
    guard_stateless_ms_ = now_ms_;
    if (!guard_engaged_) {
      guard_engaged_ = true;
      lstats_->syn_guard_engaged.store(1, std::memory_order_relaxed);
    }
    Forward(port, m, p, vip, pick.slot, hash);
    return;
  }
  if (!PickForNewFlow(vip, key, hash, consistent, /*remember=*/true, &pick, &all_full)) {
    DropVip(m, all_full ? DropReason::kBackendsFull : DropReason::kNoBackend, vip);
    return;
  }
  // TCP starts unconfirmed (kTcpSyn) until a packet with ACK hits the entry.
  const ConnClass cls =
      tcp ? ((flags & (kTcpFin | kTcpRst)) ? ConnClass::kTcpClosing : ConnClass::kTcpSyn)
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

__attribute__((noinline)) void Worker::HandleMiss(uint16_t port, rte_mbuf* m, const ParsedPacket& p,
                                                  uint64_t hash, int vip) {
  HandleNewFlow(port, m, p, hash, vip);
}

__attribute__((noinline)) void Worker::ReuseClosedEntry(uint16_t port, rte_mbuf* m,
                                                        const ParsedPacket& p, uint64_t hash,
                                                        int vip, uint32_t e, const ConnValue& cv) {
  ReleaseFlow(cv);
  conn_->Erase(e);
  HandleNewFlow(port, m, p, hash, vip);
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
    ToKernel(m, DropReason::kIcmpUnmatched);
    return;
  }
  FlowKey key = inner;
  std::memcpy(key.src, inner.dst, 16);
  std::memcpy(key.dst, inner.src, 16);
  key.sport = inner.dport;
  key.dport = inner.sport;
  const int vip = slot_.FindVip(key.family, key.dst, key.proto, key.dport);
  if (vip < 0) {
    ToKernel(m, DropReason::kIcmpUnmatched);
    return;
  }
  const uint64_t hash = VipFlowHash(slot_.vips[vip], &key);
  ConnValue cv;
  uint32_t slot = 0;
  if (conn_->Peek(key, hash, now_ms_, &cv) || PeekPeers(key, hash, &cv)) {
    if (StillServes(slot_, cv.backend_slot, cv.incarnation)) slot = cv.backend_slot;
  }
  if (slot == 0) {
    // No lcore holds the flow (e.g. it expired): hash-based algorithms still
    // map it to the backend that served it.
    BackendPick pick;
    if (!balancer_.Pick(slot_, vip, key, hash, bstats_, &pick)) {
      DropVip(m, DropReason::kNoBackend, vip);
      return;
    }
    slot = pick.slot;
  }
  Forward(port, m, p, vip, slot, hash);
}

// Decides whether the packet is for the node itself (ARP, NDP, addressed to
// the node) and hands it to worker_local.cc; VIP traffic returns false at
// the cost of a few compares.
bool Worker::HandleLocal(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  if (p.l3 == L3Kind::kArp) {
    HandleArp(port, m, p);
    return true;
  }
  if (p.key.family == AddrFamily::kIPv6 && p.proto == kIpProtoIcmpV6 && p.has_l4) {
    if (p.icmp_type == 135) {
      HandleNeighborSolicitation(port, m, p);
      return true;
    }
    if (p.icmp_type == 136) {
      HandleNeighborAdvertisement(m, p);
      return true;
    }
  }
  const bool to_me4 = p.key.family == AddrFamily::kIPv4 && node_->has_ipv4 &&
                      std::memcmp(p.key.dst, node_->ipv4, 4) == 0;
  const bool to_me6 = p.key.family == AddrFamily::kIPv6 && node_->has_ipv6 &&
                      std::memcmp(p.key.dst, node_->ipv6, 16) == 0;
  if (!to_me4 && !to_me6) return false;
  HandleToNode(port, m, p);
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
  echo_budget_ = kEchoRepliesPerBurst;
  // Pass 1: parse, classify, match the VIP, hash. Everything that is not
  // VIP traffic is finished here.
  for (uint16_t i = 0; i < n; ++i) {
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    rte_mbuf* m = pkts[i];
    rx_bytes += m->pkt_len;
    ParsedPacket& p = parsed[i];
    const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
    // The common form (untagged IPv4 TCP/UDP, no options, not a fragment)
    // without ParsePacket: the same fields (lib/packet_fast.h). Everything
    // else is parsed in full, and drops say why there.
    const bool fast = ClassifyIpv4Fast(data, rte_pktmbuf_data_len(m), &p);
    if (__builtin_expect(!fast, 0)) {
      DropReason why;
      if (ParsePacket(data, rte_pktmbuf_data_len(m), &p, &why) != ParseStatus::kOk) {
        Drop(m, why);
        continue;
      }
      if (p.l2_len > 22) {  // more tags than our L2 copy holds; ParsePacket allows two
        Drop(m, DropReason::kUnsupportedL3);
        continue;
      }
    }
    int vip;
    if (__builtin_expect(fast || (p.l3 == L3Kind::kIPv4 && !p.is_fragment &&
                                  (p.proto == kIpProtoTcp || p.proto == kIpProtoUdp)),
                         1)) {
      // The common form, classified as below in fewer steps: an unfragmented
      // IPv4 TCP/UDP packet is for the node only when addressed to it, and
      // is neither an ICMP error nor an echo request.
      if (node_->has_ipv4 && std::memcmp(p.key.dst, node_->ipv4, 4) == 0) {
        HandleToNode(port, m, p);
        continue;
      }
      if (generation_ == 0) {
        Drop(m, DropReason::kNoTable);
        continue;
      }
      vip = FindVipCached(p.key);
    } else if (HandleLocal(port, m, p)) {
      continue;
    } else if (generation_ == 0) {
      Drop(m, DropReason::kNoTable);
      continue;
    } else if (p.is_fragment && !p.is_first_fragment) {
      vip = FindFragmentVip(p.key);
      if (vip == kAmbiguousFragment) {
        Drop(m, DropReason::kFragment);
        continue;
      }
    } else if (IsIcmpError(p)) {
      HandleIcmpError(port, m, p);
      continue;
    } else if (IsIcmpEchoRequest(p)) {
      HandleVipEcho(port, m, p);
      continue;
    } else {
      vip = FindVipCached(p.key);
    }
    if (vip < 0) {
      ToKernel(m, DropReason::kNotForUs);
      continue;
    }
    // Fragment-tolerant VIPs hash every packet on src/dst/proto so that all
    // fragments of a datagram reach the same backend (lib/vip_flow.h).
    const VipEntry& v = slot_.vips[vip];
    if (p.is_fragment && !VipHashesFragments(v)) {
      DropVip(m, DropReason::kFragment, vip);
      continue;
    }
    hashes[i] = VipFlowHash(v, &p.key);
    vips[i] = vip;
    pending[np++] = i;
  }
  // Stage 1 of the prefetch: every bucket header of the burst, back to back.
  // Not one per packet inside pass 1: with pass 1's parse and hash between
  // two header prefetches, only a few of their misses overlapped, and on an
  // AMD EPYC guest, where each miss also takes a nested page walk (guest
  // memory on 4 KiB host pages: the table is far beyond the TLB's reach),
  // pass 1 cost 355-567 cycles per packet at 8M flows against 37-62 at 1K.
  // Issued here, the 32 misses are in flight together (perf/RESULTS.md,
  // "Established lookups on an AMD EPYC host").
  for (uint16_t k = 0; k < np; ++k) conn_->Prefetch(hashes[pending[k]]);
  // Stage 2: with the bucket headers arriving, start loading the entry lines
  // whose signatures match, all of them before the first lookup, for the
  // same reason. (Issuing them 8 packets ahead of the lookups instead cost
  // up to twice the cycles at 8M flows: fewer misses in flight. So did
  // issuing them 8 or 16 packets behind the header prefetches, inside pass
  // 1, and deferring the last 8 into pass 2 gained nothing: perf/RESULTS.md.)
  for (uint16_t k = 0; k < np; ++k) conn_->PrefetchEntry(hashes[pending[k]]);
  // Pass 2: connection-table lookups with their lines already in flight. The
  // established hit (a live entry, no FIN/RST, a SYN only on an entry that is
  // not closing, a backend that still serves, no sticky refresh) is finished
  // here; the rest of a hit goes to HandleHit, a miss to HandleMiss.
  VipRun run;
  for (uint16_t k = 0; k < np; ++k) {
    const uint16_t i = pending[k];
    rte_mbuf* m = pkts[i];
    const ParsedPacket& p = parsed[i];
    const uint64_t h = hashes[i];
    const int vip = vips[i];
    const uint8_t flags = p.key.proto == kIpProtoTcp ? p.tcp_flags : 0;
    ConnValue cv;
    const uint32_t e = conn_->Lookup(p.key, h, now_ms_, flags, &cv);
    if (__builtin_expect(e == ConnTable::kNoEntry, 0)) {
      HandleMiss(port, m, p, h, vip);
      continue;
    }
    if (__builtin_expect((flags & (kTcpSynFlag | kTcpAck)) == kTcpSynFlag ||
                             (slot_.vips[vip].flags & kVipSticky) != 0 ||
                             !StillServes(slot_, cv.backend_slot, cv.incarnation),
                         0)) {
      HandleHit(port, m, p, h, vip, e, cv, flags);
      continue;
    }
    ForwardFast(port, m, p, vip, cv.backend_slot, h, &run);
  }
  FlushVipRun(&run);
  CounterAdd(lstats_->rx_packets, n);
  CounterAdd(lstats_->rx_bytes, rx_bytes);
}

}  // namespace lb::dp
