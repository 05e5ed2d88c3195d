// Packets for the node itself (ARP, NDP, ICMP echo), the ICMP errors the
// node sends, and the next hops: resolving them (worker 0) and learning them
// through the mailboxes described in worker.h ("Next hops").
#include <rte_ether.h>

#include <cstring>

#include "dataplane/l4/worker.h"
#include "glog/logging.h"
#include "lib/icmp.h"

namespace lb::dp {
namespace {

constexpr uint64_t kNeighborRefreshNs = 30ull * 1000000000ull;
constexpr uint64_t kNeighborRetryNs = 1000000000ull;

}  // namespace

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

void Worker::HandleArp(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = rte_pktmbuf_data_len(m);
  ArpInfo a;
  if (!node_->has_ipv4 || !ParseArp(data, len, p, &a)) {
    ToKernel(m, DropReason::kArpIgnored);
    return;
  }
  const NextHop& gw = node_->gw4;  // configured/is_static/ip: fixed before launch
  const bool from_gw = gw.configured && !gw.is_static && std::memcmp(a.spa, gw.ip, 4) == 0;
  if (from_gw) LearnNeighbor(0, a.sha);
  if (a.op == 1 && std::memcmp(a.tpa, node_->ipv4, 4) == 0 &&
      MakeArpReply(data, len, p.l2_len, node_->port_mac[port].addr_bytes)) {
    CounterAdd(lstats_->replies, 1);
    EnqueueTx(port, m);
    return;
  }
  if (from_gw) {
    CounterAdd(lstats_->neighbor_learned, 1);
    // With the exception path, the gateway's answer to the kernel's own
    // request (or its request for a kernel address) is the kernel's too.
    if (exc_ == nullptr || std::memcmp(a.tpa, node_->ipv4, 4) == 0) {
      rte_pktmbuf_free(m);
      return;
    }
  }
  ToKernel(m, DropReason::kArpIgnored);
}

// Neighbour discovery is addressed to multicast groups, not to us: a
// solicitation for the node's address is answered whoever it was sent to.
void Worker::HandleNeighborSolicitation(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = rte_pktmbuf_data_len(m);
  uint8_t target[16], src_mac[6];
  bool has_mac = false;
  if (!node_->has_ipv6 || !ParseNeighborSolicitation(data, len, p, target, src_mac, &has_mac) ||
      std::memcmp(target, node_->ipv6, 16) != 0) {
    ToKernel(m, DropReason::kIcmpIgnored);
    return;
  }
  const auto* eth = reinterpret_cast<const rte_ether_hdr*>(data);
  uint8_t dst_mac[6], dst_ip[16];
  std::memcpy(dst_mac, has_mac ? src_mac : eth->src_addr.addr_bytes, 6);
  std::memcpy(dst_ip, p.key.src, 16);
  const NextHop& gw = node_->gw6;
  if (has_mac && gw.configured && !gw.is_static && std::memcmp(p.key.src, gw.ip, 16) == 0) {
    LearnNeighbor(1, src_mac);
  }
  const bool unspecified = AddrIsZero(dst_ip, 16);
  if (unspecified) {
    static const uint8_t kAllNodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t kAllNodesMac[6] = {0x33, 0x33, 0, 0, 0, 1};
    std::memcpy(dst_ip, kAllNodes, 16);
    std::memcpy(dst_mac, kAllNodesMac, 6);
  }
  // The advertisement is written over the solicitation; every input it needs
  // was copied out above.
  if (m->nb_segs == 1) {
    const size_t cap = rte_pktmbuf_data_len(m) + rte_pktmbuf_tailroom(m);
    const size_t n = WriteNeighborAdvertisement(data, cap, node_->port_mac[port].addr_bytes,
                                                node_->ipv6, dst_mac, dst_ip, target, !unspecified);
    if (n != 0) {
      m->data_len = static_cast<uint16_t>(n);
      m->pkt_len = static_cast<uint32_t>(n);
      CounterAdd(lstats_->replies, 1);
      EnqueueTx(port, m);
      return;
    }
  }
  Drop(m, DropReason::kNoBuffer);
}

void Worker::HandleNeighborAdvertisement(rte_mbuf* m, const ParsedPacket& p) {
  const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
  uint8_t target[16], mac[6];
  const NextHop& gw = node_->gw6;
  if (gw.configured && !gw.is_static &&
      ParseNeighborAdvertisement(data, rte_pktmbuf_data_len(m), p, target, mac) &&
      std::memcmp(target, gw.ip, 16) == 0) {
    LearnNeighbor(1, mac);
    CounterAdd(lstats_->neighbor_learned, 1);
    // With the exception path, the gateway's answer to the kernel's own
    // solicitation (addressed to a kernel address) or its unsolicited
    // advertisement (to all nodes) is the kernel's too, as for ARP: without
    // it the kernel never resolves the router, and its IPv6 BGP session
    // (docs/OPERATIONS.md 2.16) never connects.
    if (exc_ == nullptr || std::memcmp(p.key.dst, node_->ipv6, 16) == 0) {
      rte_pktmbuf_free(m);
      return;
    }
  }
  ToKernel(m, DropReason::kIcmpIgnored);
}

// Addressed to the node's own address: echo requests are answered, the rest
// dropped.
void Worker::HandleToNode(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = rte_pktmbuf_data_len(m);
  const bool v4 = p.key.family == AddrFamily::kIPv4;
  if (v4 && p.proto == kIpProtoIcmp && p.has_l4 && p.icmp_type == 8 &&
      MakeIcmpEchoReply(data, len, p.l3_offset)) {
    CounterAdd(lstats_->replies, 1);
    EnqueueTx(port, m);
    return;
  }
  if (!v4 && p.proto == kIpProtoIcmpV6 && p.has_l4 && p.icmp_type == 128 &&
      MakeIcmpv6EchoReply(data, len, p.l3_offset)) {
    CounterAdd(lstats_->replies, 1);
    EnqueueTx(port, m);
    return;
  }
  const bool icmp = p.proto == kIpProtoIcmp || p.proto == kIpProtoIcmpV6;
  ToKernel(m, icmp ? DropReason::kIcmpIgnored : DropReason::kNotForUs);
}

bool Worker::AddressHasVip(const FlowKey& key) const {
  const size_t alen = key.family == AddrFamily::kIPv4 ? 4 : 16;
  for (uint32_t i = 0; i < slot_.header->num_vips; ++i) {
    const VipEntry& v = slot_.vips[i];
    if ((v.flags & kVipInUse) && v.family == static_cast<uint8_t>(key.family) &&
        std::memcmp(v.addr, key.dst, alen) == 0) {
      return true;
    }
  }
  return false;
}

void Worker::HandleVipEcho(uint16_t port, rte_mbuf* m, const ParsedPacket& p) {
  if (echo_budget_ == 0) {
    Drop(m, DropReason::kIcmpIgnored);
    return;
  }
  if (p.is_fragment || !AddressHasVip(p.key)) {
    ToKernel(m, DropReason::kNotForUs);
    return;
  }
  --echo_budget_;
  uint8_t* data = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = rte_pktmbuf_data_len(m);
  const bool ok = p.key.family == AddrFamily::kIPv4 ? MakeIcmpEchoReply(data, len, p.l3_offset)
                                                    : MakeIcmpv6EchoReply(data, len, p.l3_offset);
  if (!ok) {
    Drop(m, DropReason::kIcmpIgnored);
    return;
  }
  CounterAdd(lstats_->replies, 1);
  EnqueueTx(port, m);
}

void Worker::PollFromKernel() {
  rte_mbuf* b[kBurst];
  const unsigned n =
      rte_ring_sc_dequeue_burst(exc_->from_kernel, reinterpret_cast<void**>(b), kBurst, nullptr);
  for (unsigned i = 0; i < n; ++i) EnqueueTx(exc_->egress_port, b[i]);
  CounterAdd(lstats_->from_kernel, n);
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

void Worker::CopyNextHops() {
  nh_mac_[0] = node_->gw4.mac_word.load(std::memory_order_relaxed);
  nh_mac_[1] = node_->gw6.mac_word.load(std::memory_order_relaxed);
}

void Worker::LearnNeighbor(uint8_t gw, const uint8_t mac[6]) {
  const NeighborUpdate u{PackMac(mac), MonotonicNs(), gw};
  if (opt_.index == 0) {
    OwnNeighbor(u);
  } else if (!to_owner_.Post(u)) {
    // Worker 0 has not drained 15 earlier answers: it is stuck or gone; the
    // gateway is learned again from its next answer.
    VLOG(1) << "lcore " << opt_.index << ": next-hop mailbox to worker 0 full";
  }
}

void Worker::OwnNeighbor(const NeighborUpdate& u) {
  (u.gw == 0 ? node_->gw4 : node_->gw6).SetWord(u.mac_word, u.learned_ns);
  nh_mac_[u.gw] = u.mac_word;
  for (Worker* w : peers_) {
    if (w != this && !w->from_owner_.Post(u)) {
      VLOG(1) << "next-hop mailbox to lcore " << w->opt_.index << " full";
    }
  }
}

void Worker::PollNeighbors() {
  NeighborUpdate u;
  if (opt_.index == 0) {
    for (Worker* w : peers_) {
      if (w == this) continue;
      while (w->to_owner_.Take(&u)) OwnNeighbor(u);
    }
  }
  while (from_owner_.Take(&u)) nh_mac_[u.gw] = u.mac_word;
}

}  // namespace lb::dp
