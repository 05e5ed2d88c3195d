// Fuzz target: lib/packet.cc over raw Ethernet frames. ParsePacket, then the
// parser the fast path would call next for what it found (ARP, ICMP errors,
// NDP neighbour solicitation), and the contract of lib/packet.h: every offset
// recorded is within the frame, and a parsed IP packet fits in it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "lib/packet.h"

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lb::ParsedPacket p;
  lb::DropReason why;
  if (lb::ParsePacket(data, size, &p, &why) != lb::ParseStatus::kOk) return 0;
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
