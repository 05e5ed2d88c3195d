// ClassifyIpv4Fast: the established fast path's packet classifier, beside
// ParsePacket (lib/packet.h), whose contract it keeps for what it accepts.
// A header of its own so that the per-packet inline code is compiled only
// where it is used (dataplane/l4/worker.cc, the tests, the fuzz target).
//
// Thread-safety: a pure function over caller-owned memory; any thread.
#ifndef LB_LIB_PACKET_FAST_H_
#define LB_LIB_PACKET_FAST_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "lib/byte_order.h"
#include "lib/packet.h"

namespace lb {

// The established fast path's classifier (inline: ProcessBurst calls it per
// packet before ParsePacket). It accepts only the common form -- untagged
// Ethernet, IPv4 with IHL 5, not a fragment (MF clear, offset 0), TCP with a
// valid data offset or UDP with a valid length, all within the frame -- and
// then fills *out exactly as ParsePacket would (every field; ParsePacket would
// return kOk). For anything else it returns false having written an
// unspecified part of *out, and the caller runs ParsePacket, which decides
// (and says why it drops). It never accepts a frame ParsePacket drops
// (tests/unit/packet_test.cc FastIpv4*, fuzz/packet_parser_fuzz.cc).
// Saves ParsePacket's call, its VLAN and version branches and the walk of
// the general case: 47 instructions per established packet (callgrind on
// perf/l4_bench, perf/RESULTS.md).
__attribute__((always_inline)) inline bool ClassifyIpv4Fast(const uint8_t* data, size_t len,
                                                            ParsedPacket* out) {
  constexpr size_t kEth = 14;
  constexpr size_t kIp = 20;
  // The Ethernet header, the IPv4 header and 8 L4 bytes (the UDP header, or
  // TCP's ports) are then readable; TCP needs 20 and is checked below.
  if (__builtin_expect(len < kEth + kIp + 8, 0)) return false;
  const uint8_t* ip = data + kEth;
  // EtherType 0x0800 and version/IHL 0x45 in one compare (bytes 12..14).
  uint32_t head;
  std::memcpy(&head, data + 12, 4);
  // Little-endian host: bytes 08 00 45 xx (xx = TOS, ignored).
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if ((head & 0x00ffffffu) != 0x00450008u) return false;
#else
  if ((head & 0xffffff00u) != 0x08004500u) return false;
#endif
  const size_t total = LoadBe16(ip + 2);
  const uint16_t frag = LoadBe16(ip + 6);
  const uint8_t proto = ip[9];
  // total covers the header and 8 L4 bytes and fits in the frame; not a
  // fragment (MF and the offset clear; DF may be set).
  if (total < kIp + 8 || total > len - kEth || (frag & 0x3fff) != 0) return false;
  const uint8_t* l4 = ip + kIp;
  const size_t avail = total - kIp;
  if (proto == kIpProtoTcp) {
    // avail >= 20 (and total <= len - 14) before l4[12] and l4[13] are read.
    if (avail < 20) return false;
    const size_t doff = static_cast<size_t>(l4[12] >> 4) * 4;
    if (doff < 20 || doff > avail) return false;
  } else if (proto == kIpProtoUdp) {
    const size_t ulen = LoadBe16(l4 + 4);
    if (ulen < 8 || ulen > avail) return false;
  } else {
    return false;
  }
  *out = ParsedPacket{};
  out->l2_len = kEth;
  out->ether_type = kEtherTypeIPv4;
  out->l3 = L3Kind::kIPv4;
  out->l3_offset = kEth;
  out->l3_hdr_len = kIp;
  out->l3_total_len = static_cast<uint32_t>(total);
  out->proto = proto;
  out->ttl = ip[8];
  out->tos = ip[1];
  out->df = (frag & 0x4000) != 0;
  out->l4_offset = kEth + kIp;
  out->has_l4 = true;
  out->tcp_flags = proto == kIpProtoTcp ? l4[13] : 0;
  std::memcpy(out->key.src, ip + 12, 4);
  std::memcpy(out->key.dst, ip + 16, 4);
  out->key.sport = LoadBe16(l4);
  out->key.dport = LoadBe16(l4 + 2);
  out->key.proto = proto;
  out->key.family = AddrFamily::kIPv4;
  return true;
}

}  // namespace lb

#endif  // LB_LIB_PACKET_FAST_H_
