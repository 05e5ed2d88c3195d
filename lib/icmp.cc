#include "lib/icmp.h"

#include <cstring>

#include "lib/byte_order.h"
#include "lib/checksum.h"
#include "lib/encap.h"

namespace lb {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeVlan = 0x8100;

constexpr size_t kArpLen = 28;
constexpr size_t kIcmpHeaderLen = 8;
constexpr size_t kNdBodyLen = 24;  // type .. target
constexpr size_t kNdOptionLen = 8;

constexpr uint8_t kIpProtoIcmp = 1;
constexpr uint8_t kDefaultTtl = 64;
constexpr uint8_t kNdHopLimit = 255;  // RFC 4861 §7.1.1/§7.1.2: receivers check it
constexpr uint8_t kTosInternetControl = 0xc0;
constexpr uint16_t kIpv4FlagDf = 0x4000;
constexpr uint16_t kIpv4FlagMf = 0x2000;
constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;
constexpr uint16_t kIpv4MinMtu = 68;
constexpr uint32_t kIpv6MinMtu = 1280;

constexpr uint8_t kIcmpEchoReply = 0;
constexpr uint8_t kIcmpDestUnreachable = 3;
constexpr uint8_t kIcmpCodeFragNeeded = 4;
constexpr uint8_t kIcmpEchoRequest = 8;
constexpr uint8_t kIcmpv6PacketTooBig = 2;
constexpr uint8_t kIcmpv6EchoRequest = 128;
constexpr uint8_t kIcmpv6EchoReply = 129;
constexpr uint8_t kIcmpv6NeighborSolicit = 135;
constexpr uint8_t kIcmpv6NeighborAdvert = 136;
constexpr uint8_t kNdOptSourceLla = 1;
constexpr uint8_t kNdOptTargetLla = 2;
constexpr uint8_t kNaFlagSolicited = 0x40;
constexpr uint8_t kNaFlagOverride = 0x20;

void Swap(uint8_t* a, uint8_t* b, size_t n) {
  uint8_t tmp[16];
  std::memcpy(tmp, a, n);
  std::memcpy(a, b, n);
  std::memcpy(b, tmp, n);
}

void WriteEther(uint8_t* out, const uint8_t dst[6], const uint8_t src[6], uint16_t type) {
  std::memcpy(out, dst, 6);
  std::memcpy(out + 6, src, 6);
  StoreBe16(out + 12, type);
}

// The frame's EtherType (behind at most one VLAN tag) is `type` and the L3
// header at l3_off follows it directly.
bool EtherTypeIs(const uint8_t* frame, size_t len, size_t l3_off, uint16_t type) {
  if (l3_off == kEtherHeaderLen) {
    return len >= kEtherHeaderLen && LoadBe16(frame + 12) == type;
  }
  if (l3_off == kVlanEtherHeaderLen) {
    return len >= kVlanEtherHeaderLen && LoadBe16(frame + 12) == kEtherTypeVlan &&
           LoadBe16(frame + 16) == type;
  }
  return false;
}

bool IsGroupMac(const uint8_t mac[6]) { return (mac[0] & 0x01) != 0; }

// IPv4 header without options, checksum included.
void WriteIpv4Header(uint8_t* ip, uint8_t tos, uint16_t total_len, uint8_t proto,
                     const uint8_t src[4], const uint8_t dst[4]) {
  ip[0] = 0x45;
  ip[1] = tos;
  StoreBe16(ip + 2, total_len);
  StoreBe16(ip + 4, 0);  // atomic datagram (DF set): the ID is not used (RFC 6864)
  StoreBe16(ip + 6, kIpv4FlagDf);
  ip[8] = kDefaultTtl;
  ip[9] = proto;
  StoreBe16(ip + 10, 0);
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  StoreBe16(ip + 10, Ipv4HeaderChecksum(ip, kIPv4HeaderLen));
}

// IPv6 header with traffic class and flow label 0.
void WriteIpv6Header(uint8_t* ip, uint16_t payload_len, uint8_t next_header, uint8_t hop_limit,
                     const uint8_t src[16], const uint8_t dst[16]) {
  StoreBe32(ip, 0x60000000u);
  StoreBe16(ip + 4, payload_len);
  ip[6] = next_header;
  ip[7] = hop_limit;
  std::memcpy(ip + 8, src, 16);
  std::memcpy(ip + 24, dst, 16);
}

// Ethernet + IPv6 + an NS/NA body (target) + one link-layer address option.
// `flags` is the first byte after the checksum (NA flags; 0 for NS).
size_t WriteNd(uint8_t* out, size_t cap, const uint8_t eth_dst[6], const uint8_t my_mac[6],
               const uint8_t ip_src[16], const uint8_t ip_dst[16], uint8_t type, uint8_t flags,
               const uint8_t target[16], uint8_t option) {
  if (out == nullptr || cap < kNdFrameLen) return 0;
  constexpr size_t kIcmpLen = kNdBodyLen + kNdOptionLen;
  WriteEther(out, eth_dst, my_mac, kEtherTypeIpv6);
  uint8_t* ip = out + kEtherHeaderLen;
  WriteIpv6Header(ip, kIcmpLen, kIpProtoIcmpv6, kNdHopLimit, ip_src, ip_dst);
  uint8_t* icmp = ip + kIPv6HeaderLen;
  icmp[0] = type;
  icmp[1] = 0;
  StoreBe16(icmp + 2, 0);
  icmp[4] = flags;
  icmp[5] = icmp[6] = icmp[7] = 0;
  std::memcpy(icmp + 8, target, 16);
  icmp[24] = option;
  icmp[25] = 1;  // option length in units of 8 bytes
  std::memcpy(icmp + 26, my_mac, 6);
  StoreBe16(icmp + 2, Icmpv6Checksum(ip_src, ip_dst, icmp, kIcmpLen));
  return kNdFrameLen;
}

// RFC 1812 §4.3.2.7: only a unicast host address may receive an ICMP error.
bool IsUnicastIpv4Source(const uint8_t a[4]) { return a[0] != 0 && a[0] != 127 && a[0] < 224; }

bool IsIcmpv4Error(uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

// Copies of an ICMP error's addresses, taken before the output (which may
// overlap any input) is written.
struct Addresses4 {
  uint8_t src_mac[6], dst_mac[6], my_ip[4], client[4];
};
struct Addresses6 {
  uint8_t src_mac[6], dst_mac[6], my_ip[16], client[16];
};

bool IsUnicastIpv6Source(const uint8_t a[16]) {
  if (a[0] == 0xff) return false;  // multicast
  static constexpr uint8_t kZero[15] = {};
  if (std::memcmp(a, kZero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return false;  // ::, ::1
  return true;
}

// Whether the IPv6 packet's upper layer is an ICMPv6 error message (type <
// 128). Walks a bounded number of extension headers; *malformed is set when
// the chain runs past the bytes present.
bool IsIcmpv6Error(const uint8_t* ip, size_t len, bool* malformed) {
  constexpr int kMaxExtHeaders = 8;
  uint8_t nh = ip[6];
  size_t off = kIPv6HeaderLen;
  *malformed = false;
  for (int i = 0; i < kMaxExtHeaders; ++i) {
    if (nh == kIpProtoIcmpv6) {
      if (off + 1 > len) {
        *malformed = true;
        return false;
      }
      return ip[off] < 128;
    }
    if (nh == 0 || nh == 43 || nh == 60) {  // hop-by-hop, routing, destination options
      if (off + 2 > len) {
        *malformed = true;
        return false;
      }
      nh = ip[off];
      off += (static_cast<size_t>(ip[off + 1]) + 1) * 8;
    } else if (nh == 44) {  // fragment
      if (off + 8 > len) {
        *malformed = true;
        return false;
      }
      // A non-initial fragment does not show the upper-layer header.
      if ((LoadBe16(ip + off + 2) & 0xfff8) != 0) return false;
      nh = ip[off];
      off += 8;
    } else {
      return false;
    }
  }
  return false;  // a longer chain is not an ICMPv6 error we can see
}

}  // namespace

bool MakeArpReply(uint8_t* frame, size_t len, size_t l2_len, const uint8_t my_mac[6]) {
  if (frame == nullptr || len < l2_len + kArpLen) return false;
  if (!EtherTypeIs(frame, len, l2_len, kEtherTypeArp)) return false;
  uint8_t* arp = frame + l2_len;
  // Ethernet (1), IPv4 (0x0800), 6-byte MACs, 4-byte addresses, request (1).
  if (LoadBe16(arp) != 1 || LoadBe16(arp + 2) != kEtherTypeIpv4 || arp[4] != 6 || arp[5] != 4 ||
      LoadBe16(arp + 6) != 1) {
    return false;
  }
  uint8_t* sha = arp + 8;
  uint8_t* spa = arp + 14;
  uint8_t* tha = arp + 18;
  uint8_t* tpa = arp + 24;
  StoreBe16(arp + 6, 2);
  std::memcpy(tha, sha, 6);
  std::memcpy(sha, my_mac, 6);
  Swap(spa, tpa, 4);
  std::memcpy(frame, tha, 6);
  std::memcpy(frame + 6, my_mac, 6);
  return true;
}

size_t WriteArpRequest(uint8_t* out, size_t cap, const uint8_t my_mac[6], const uint8_t my_ip[4],
                       const uint8_t target_ip[4]) {
  if (out == nullptr || cap < kArpFrameLen) return 0;
  static constexpr uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  WriteEther(out, kBroadcast, my_mac, kEtherTypeArp);
  uint8_t* arp = out + kEtherHeaderLen;
  StoreBe16(arp, 1);
  StoreBe16(arp + 2, kEtherTypeIpv4);
  arp[4] = 6;
  arp[5] = 4;
  StoreBe16(arp + 6, 1);
  std::memcpy(arp + 8, my_mac, 6);
  std::memcpy(arp + 14, my_ip, 4);
  std::memset(arp + 18, 0, 6);
  std::memcpy(arp + 24, target_ip, 4);
  return kArpFrameLen;
}

bool MakeIcmpEchoReply(uint8_t* frame, size_t len, size_t l3_off) {
  if (frame == nullptr || !EtherTypeIs(frame, len, l3_off, kEtherTypeIpv4)) return false;
  if (len < l3_off + kIPv4HeaderLen + kIcmpHeaderLen || IsGroupMac(frame)) return false;
  uint8_t* ip = frame + l3_off;
  // Options (source routes, record route) would have to be reversed or
  // stripped; echo requests carrying them are refused instead.
  if (ip[0] != 0x45 || Ipv4HeaderChecksum(ip, kIPv4HeaderLen) != 0) return false;
  const size_t total = LoadBe16(ip + 2);
  if (total < kIPv4HeaderLen + kIcmpHeaderLen || total > len - l3_off) return false;
  if ((LoadBe16(ip + 6) & (kIpv4FlagMf | kIpv4FragOffsetMask)) != 0) return false;
  if (ip[9] != kIpProtoIcmp || ip[16] >= 224) return false;
  uint8_t* icmp = ip + kIPv4HeaderLen;
  const size_t icmp_len = total - kIPv4HeaderLen;
  if (icmp[0] != kIcmpEchoRequest || icmp[1] != 0 || Checksum(icmp, icmp_len) != 0) return false;

  Swap(frame, frame + 6, 6);
  Swap(ip + 12, ip + 16, 4);
  ip[8] = kDefaultTtl;
  StoreBe16(ip + 10, 0);
  StoreBe16(ip + 10, Ipv4HeaderChecksum(ip, kIPv4HeaderLen));
  icmp[0] = kIcmpEchoReply;
  StoreBe16(icmp + 2,
            ChecksumUpdate16(LoadBe16(icmp + 2), kIcmpEchoRequest << 8, kIcmpEchoReply << 8));
  return true;
}

bool MakeIcmpv6EchoReply(uint8_t* frame, size_t len, size_t l3_off) {
  if (frame == nullptr || !EtherTypeIs(frame, len, l3_off, kEtherTypeIpv6)) return false;
  if (len < l3_off + kIPv6HeaderLen + kIcmpHeaderLen || IsGroupMac(frame)) return false;
  uint8_t* ip = frame + l3_off;
  if ((ip[0] >> 4) != 6 || ip[6] != kIpProtoIcmpv6 || ip[24] == 0xff) return false;
  const size_t icmp_len = LoadBe16(ip + 4);
  if (icmp_len < kIcmpHeaderLen || icmp_len > len - l3_off - kIPv6HeaderLen) return false;
  uint8_t* icmp = ip + kIPv6HeaderLen;
  if (icmp[0] != kIcmpv6EchoRequest || icmp[1] != 0 ||
      Icmpv6Checksum(ip + 8, ip + 24, icmp, icmp_len) != 0) {
    return false;
  }

  Swap(frame, frame + 6, 6);
  Swap(ip + 8, ip + 24, 16);
  ip[7] = kDefaultTtl;
  // Swapping the addresses leaves the pseudo-header sum unchanged, so only the
  // type word changes; the result equals a recomputation from scratch.
  icmp[0] = kIcmpv6EchoReply;
  StoreBe16(icmp + 2,
            ChecksumUpdate16(LoadBe16(icmp + 2), kIcmpv6EchoRequest << 8, kIcmpv6EchoReply << 8));
  return true;
}

size_t WriteNeighborAdvertisement(uint8_t* out, size_t cap, const uint8_t my_mac[6],
                                  const uint8_t my_ip[16], const uint8_t dst_mac[6],
                                  const uint8_t dst_ip[16], const uint8_t target[16],
                                  bool solicited) {
  const uint8_t flags = static_cast<uint8_t>(kNaFlagOverride | (solicited ? kNaFlagSolicited : 0));
  return WriteNd(out, cap, dst_mac, my_mac, my_ip, dst_ip, kIcmpv6NeighborAdvert, flags, target,
                 kNdOptTargetLla);
}

size_t WriteNeighborSolicitation(uint8_t* out, size_t cap, const uint8_t my_mac[6],
                                 const uint8_t my_ip[16], const uint8_t target[16]) {
  uint8_t dst_ip[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff};
  std::memcpy(dst_ip + 13, target + 13, 3);
  uint8_t dst_mac[6] = {0x33, 0x33};
  std::memcpy(dst_mac + 2, dst_ip + 12, 4);
  return WriteNd(out, cap, dst_mac, my_mac, my_ip, dst_ip, kIcmpv6NeighborSolicit, 0, target,
                 kNdOptSourceLla);
}

size_t WriteIcmpFragNeeded(uint8_t* out, size_t cap, const uint8_t src_mac[6],
                           const uint8_t dst_mac[6], const uint8_t my_ip[4], const uint8_t* orig_ip,
                           size_t orig_len, uint16_t mtu) {
  if (out == nullptr || orig_ip == nullptr || orig_len < kIPv4HeaderLen) return 0;
  if ((orig_ip[0] >> 4) != 4 || mtu < kIpv4MinMtu) return 0;
  const size_t ihl = static_cast<size_t>(orig_ip[0] & 0x0f) * 4;
  const size_t total = LoadBe16(orig_ip + 2);
  if (ihl < kIPv4HeaderLen || ihl > orig_len || total < ihl) return 0;
  const size_t avail = total < orig_len ? total : orig_len;
  if ((LoadBe16(orig_ip + 6) & kIpv4FragOffsetMask) != 0) return 0;
  if (orig_ip[9] == kIpProtoIcmp) {
    if (avail < ihl + 1 || IsIcmpv4Error(orig_ip[ihl])) return 0;
  }
  Addresses4 a;
  std::memcpy(a.client, orig_ip + 12, 4);
  if (!IsUnicastIpv4Source(a.client)) return 0;

  const size_t quote = avail < kIcmpv4ErrorMaxQuote ? avail : kIcmpv4ErrorMaxQuote;
  const size_t icmp_len = kIcmpHeaderLen + quote;
  const size_t frame_len = kEtherHeaderLen + kIPv4HeaderLen + icmp_len;
  if (cap < frame_len) return 0;

  // Everything needed from the inputs has been read (addresses into `a`):
  // move the quote first, since the headers may overlap where it was.
  std::memcpy(a.src_mac, src_mac, 6);
  std::memcpy(a.dst_mac, dst_mac, 6);
  std::memcpy(a.my_ip, my_ip, 4);
  uint8_t* ip = out + kEtherHeaderLen;
  uint8_t* icmp = ip + kIPv4HeaderLen;
  std::memmove(icmp + kIcmpHeaderLen, orig_ip, quote);
  WriteEther(out, a.dst_mac, a.src_mac, kEtherTypeIpv4);
  WriteIpv4Header(ip, kTosInternetControl, static_cast<uint16_t>(kIPv4HeaderLen + icmp_len),
                  kIpProtoIcmp, a.my_ip, a.client);
  icmp[0] = kIcmpDestUnreachable;
  icmp[1] = kIcmpCodeFragNeeded;
  StoreBe16(icmp + 2, 0);
  StoreBe16(icmp + 4, 0);  // unused (RFC 1191 §4)
  StoreBe16(icmp + 6, mtu);
  StoreBe16(icmp + 2, Checksum(icmp, icmp_len));
  return frame_len;
}

size_t WriteIcmpv6PacketTooBig(uint8_t* out, size_t cap, const uint8_t src_mac[6],
                               const uint8_t dst_mac[6], const uint8_t my_ip[16],
                               const uint8_t* orig_ip, size_t orig_len, uint32_t mtu) {
  if (out == nullptr || orig_ip == nullptr || orig_len < kIPv6HeaderLen) return 0;
  if ((orig_ip[0] >> 4) != 6 || mtu < kIpv6MinMtu) return 0;
  const size_t total = kIPv6HeaderLen + LoadBe16(orig_ip + 4);
  const size_t avail = total < orig_len ? total : orig_len;
  bool malformed;
  if (IsIcmpv6Error(orig_ip, avail, &malformed) || malformed) return 0;
  Addresses6 a;
  std::memcpy(a.client, orig_ip + 8, 16);
  if (!IsUnicastIpv6Source(a.client)) return 0;

  const size_t quote = avail < kIcmpv6ErrorMaxQuote ? avail : kIcmpv6ErrorMaxQuote;
  const size_t icmp_len = kIcmpHeaderLen + quote;
  const size_t frame_len = kEtherHeaderLen + kIPv6HeaderLen + icmp_len;
  if (cap < frame_len) return 0;

  // As for IPv4: inputs copied, then the quote moves, then the headers.
  std::memcpy(a.src_mac, src_mac, 6);
  std::memcpy(a.dst_mac, dst_mac, 6);
  std::memcpy(a.my_ip, my_ip, 16);
  uint8_t* ip = out + kEtherHeaderLen;
  uint8_t* icmp = ip + kIPv6HeaderLen;
  std::memmove(icmp + kIcmpHeaderLen, orig_ip, quote);
  WriteEther(out, a.dst_mac, a.src_mac, kEtherTypeIpv6);
  WriteIpv6Header(ip, static_cast<uint16_t>(icmp_len), kIpProtoIcmpv6, kDefaultTtl, a.my_ip,
                  a.client);
  icmp[0] = kIcmpv6PacketTooBig;
  icmp[1] = 0;
  StoreBe16(icmp + 2, 0);
  StoreBe32(icmp + 4, mtu);
  StoreBe16(icmp + 2, Icmpv6Checksum(a.my_ip, a.client, icmp, icmp_len));
  return frame_len;
}

}  // namespace lb
