// Fuzz target: lib/packet.cc over raw Ethernet frames. ParsePacket, then the
// parser the fast path would call next for what it found (ARP, ICMP errors,
// NDP neighbour solicitation), and the contract of lib/packet.h: every offset
// recorded is within the frame, and a parsed IP packet fits in it. And the
// established fast path's ClassifyIpv4Fast: whatever it accepts, ParsePacket
// accepts with every field equal.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "lib/packet.h"
#include "lib/packet_fast.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();  // a broken contract is a finding, like a crash
}

void CheckOffsets(const lb::ParsedPacket& p, size_t len) {
  Check(p.l2_len <= len);
  Check(p.l4_offset <= len);
  Check(p.icmp_inner_offset <= len);
  if (p.l3 == lb::L3Kind::kIPv4 || p.l3 == lb::L3Kind::kIPv6) {
    Check(p.l3_offset == p.l2_len);
    Check(p.l3_offset + static_cast<size_t>(p.l3_total_len) <= len);
    Check(p.l3_offset + static_cast<size_t>(p.l3_hdr_len) <= len);
  }
}

bool SameFields(const lb::ParsedPacket& a, const lb::ParsedPacket& b) {
  return a.l2_len == b.l2_len && a.ether_type == b.ether_type && a.num_vlans == b.num_vlans &&
         a.vlan_tci[0] == b.vlan_tci[0] && a.vlan_tci[1] == b.vlan_tci[1] && a.l3 == b.l3 &&
         a.l3_offset == b.l3_offset && a.l3_hdr_len == b.l3_hdr_len &&
         a.l3_total_len == b.l3_total_len && a.proto == b.proto && a.ttl == b.ttl &&
         a.tos == b.tos && a.df == b.df && a.is_fragment == b.is_fragment &&
         a.is_first_fragment == b.is_first_fragment && a.l4_offset == b.l4_offset &&
         a.has_l4 == b.has_l4 && a.tcp_flags == b.tcp_flags && a.icmp_type == b.icmp_type &&
         a.icmp_code == b.icmp_code && a.icmp_inner_offset == b.icmp_inner_offset && a.key == b.key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lb::ParsedPacket p;
  lb::DropReason why;
  const lb::ParseStatus st = lb::ParsePacket(data, size, &p, &why);
  lb::ParsedPacket fast;
  if (lb::ClassifyIpv4Fast(data, size, &fast))
    Check(st == lb::ParseStatus::kOk && SameFields(fast, p));
  if (st != lb::ParseStatus::kOk) return 0;
  CheckOffsets(p, size);
  if (p.l3 == lb::L3Kind::kArp) {
    lb::ArpInfo arp;
    lb::ParseArp(data, size, p, &arp);
    return 0;
  }
  if (p.has_l4 && (p.proto == lb::kIpProtoIcmp || p.proto == lb::kIpProtoIcmpV6)) {
    lb::FlowKey inner;
    uint32_t mtu = 0;
    lb::ParseIcmpError(data, size, p, &inner, &mtu);
    uint8_t target[16];
    uint8_t mac[6];
    bool has_mac = false;
    lb::ParseNeighborSolicitation(data, size, p, target, mac, &has_mac);
  }
  return 0;
}
