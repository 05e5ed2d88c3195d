#include "lib/packet.h"

#include <cstring>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "lib/byte_order.h"

namespace lb {

namespace {

// Invariant kept throughout this file: before reading n bytes at offset `off`
// we have checked `end - off >= n` with off <= end <= len, all in size_t, so no
// check can wrap and no read passes the frame.

constexpr size_t kEthHdrLen = 14;
constexpr size_t kVlanTagLen = 4;
constexpr size_t kIpv4MinHdrLen = 20;
constexpr size_t kIpv6HdrLen = 40;
constexpr size_t kTcpMinHdrLen = 20;
constexpr size_t kUdpHdrLen = 8;
constexpr size_t kIcmpHdrLen = 8;  // type, code, checksum, 4 bytes of rest
constexpr size_t kArpFixedLen = 8;
constexpr size_t kArpEthIpv4Len = 28;
constexpr size_t kNsMinLen = 24;  // ICMPv6 header + target address
constexpr size_t kNaMinLen = 24;  // ICMPv6 header + flags + target address

constexpr uint16_t kIpv4FlagDf = 0x4000;
constexpr uint16_t kIpv4FlagMf = 0x2000;
constexpr uint16_t kIpv4OffsetMask = 0x1fff;

constexpr uint8_t kExtHopByHop = 0;
constexpr uint8_t kExtRouting = 43;
constexpr uint8_t kExtFragment = 44;
constexpr uint8_t kExtAh = 51;
constexpr uint8_t kExtDestOpts = 60;
constexpr size_t kFragHdrLen = 8;

constexpr uint8_t kIcmpDestUnreachable = 3;
constexpr uint8_t kIcmpCodeFragNeeded = 4;
constexpr uint8_t kIcmpTimeExceeded = 11;
constexpr uint8_t kIcmpParamProblem = 12;
constexpr uint8_t kIcmpV6DestUnreachable = 1;
constexpr uint8_t kIcmpV6PacketTooBig = 2;
constexpr uint8_t kIcmpV6ParamProblem = 4;
constexpr uint8_t kIcmpV6NeighborSolicit = 135;
constexpr uint8_t kNdOptSourceLinkAddr = 1;
constexpr uint8_t kIcmpV6NeighborAdvert = 136;
constexpr uint8_t kNdOptTargetLinkAddr = 2;

inline ParseStatus Drop(DropReason r, DropReason* why) {
  *why = r;
  return ParseStatus::kDrop;
}

inline bool IsIcmpError(bool v6, uint8_t type) {
  if (v6) return type >= kIcmpV6DestUnreachable && type <= kIcmpV6ParamProblem;
  return type == kIcmpDestUnreachable || type == kIcmpTimeExceeded || type == kIcmpParamProblem;
}

// Result of walking an IPv6 extension-header chain.
struct Ipv6Chain {
  size_t l4_off;        // first byte after the last extension header
  uint8_t proto;        // the upper-layer protocol (or 50 / 59 / the frag's next)
  bool is_fragment;     // a fragment header with offset != 0 or M set
  bool first_fragment;  // ... and offset == 0
};

// Walks the chain starting at `off` (first byte after the fixed header) with
// next-header `nh`, bounded by `end`. False if the chain is too long, a
// header does not fit, hop-by-hop is not first, or there are two fragment
// headers. Stops at the first non-extension header, and after the fragment
// header of a non-first fragment (what follows is not the start of anything).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool WalkIpv6Chain(const uint8_t* data, size_t off, size_t end,
                                                       uint8_t nh, Ipv6Chain* c) {
  c->is_fragment = false;
  c->first_fragment = false;
  bool seen_frag = false;
  for (int count = 0;; ++count) {
    size_t hdr_len;
    switch (nh) {
      case kExtHopByHop:
      case kExtRouting:
      case kExtDestOpts:
        if (nh == kExtHopByHop && count != 0) return false;  // RFC 8200 section 4.1
        if (end - off < 2) return false;
        hdr_len = (static_cast<size_t>(data[off + 1]) + 1) * 8;
        break;
      case kExtAh:
        if (end - off < 2) return false;
        hdr_len = (static_cast<size_t>(data[off + 1]) + 2) * 4;
        break;
      case kExtFragment: {
        if (seen_frag || end - off < kFragHdrLen) return false;
        if (count >= kMaxIpv6ExtHeaders) return false;
        seen_frag = true;
        const uint16_t offset_flags = LoadBe16(data + off + 2);
        const uint16_t frag_offset = offset_flags >> 3;
        if (frag_offset != 0 || (offset_flags & 1) != 0) {
          c->is_fragment = true;
          c->first_fragment = frag_offset == 0;
        }
        nh = data[off];
        off += kFragHdrLen;
        if (frag_offset != 0) {
          c->l4_off = off;
          c->proto = nh;
          return true;
        }
        continue;
      }
      default:  // upper layer, ESP (50) or no next header (59)
        c->l4_off = off;
        c->proto = nh;
        return true;
    }
    if (count >= kMaxIpv6ExtHeaders || hdr_len > end - off) return false;
    nh = data[off];
    off += hdr_len;
  }
}

// Parses the L4 header at `off` of an IP packet ending at `end`. `fragment`:
// this is a first fragment, so the UDP length covers more than we have.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline ParseStatus ParseL4(const uint8_t* data, size_t off, size_t end,
                                                        bool fragment, bool v6, ParsedPacket* out,
                                                        DropReason* why) {
  const uint8_t* l4 = data + off;
  const size_t avail = end - off;
  switch (out->proto) {
    case kIpProtoTcp: {
      if (ABSL_PREDICT_FALSE(avail < kTcpMinHdrLen)) return Drop(DropReason::kTruncated, why);
      const size_t doff = static_cast<size_t>(l4[12] >> 4) * 4;
      if (ABSL_PREDICT_FALSE(doff < kTcpMinHdrLen || doff > avail)) {
        return Drop(DropReason::kBadL4Header, why);
      }
      out->key.sport = LoadBe16(l4);
      out->key.dport = LoadBe16(l4 + 2);
      out->tcp_flags = l4[13];
      out->has_l4 = true;
      return ParseStatus::kOk;
    }
    case kIpProtoUdp: {
      if (ABSL_PREDICT_FALSE(avail < kUdpHdrLen)) return Drop(DropReason::kTruncated, why);
      const size_t ulen = LoadBe16(l4 + 4);
      if (ABSL_PREDICT_FALSE(ulen < kUdpHdrLen || (!fragment && ulen > avail))) {
        return Drop(DropReason::kBadLength, why);
      }
      out->key.sport = LoadBe16(l4);
      out->key.dport = LoadBe16(l4 + 2);
      out->has_l4 = true;
      return ParseStatus::kOk;
    }
    case kIpProtoIcmp:
    case kIpProtoIcmpV6: {
      if ((out->proto == kIpProtoIcmpV6) != v6) return ParseStatus::kOk;  // not L4 we know
      if (ABSL_PREDICT_FALSE(avail < kIcmpHdrLen)) return Drop(DropReason::kTruncated, why);
      out->icmp_type = l4[0];
      out->icmp_code = l4[1];
      if (IsIcmpError(v6, l4[0])) out->icmp_inner_offset = static_cast<uint16_t>(off + kIcmpHdrLen);
      out->has_l4 = true;
      return ParseStatus::kOk;
    }
    default:
      return ParseStatus::kOk;
  }
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline ParseStatus ParseIpv4(const uint8_t* data, size_t len,
                                                          size_t off, ParsedPacket* out,
                                                          DropReason* why) {
  const uint8_t* ip = data + off;
  const size_t avail = len - off;
  if (ABSL_PREDICT_FALSE(avail < kIpv4MinHdrLen)) return Drop(DropReason::kTruncated, why);
  const uint8_t ver_ihl = ip[0];
  const size_t ihl = static_cast<size_t>(ver_ihl & 0xf) * 4;
  if (ABSL_PREDICT_FALSE((ver_ihl >> 4) != 4 || ihl < kIpv4MinHdrLen)) {
    return Drop(DropReason::kBadIpHeader, why);
  }
  if (ABSL_PREDICT_FALSE(ihl > avail)) return Drop(DropReason::kTruncated, why);
  const size_t total = LoadBe16(ip + 2);
  if (ABSL_PREDICT_FALSE(total < ihl || total > avail)) return Drop(DropReason::kBadLength, why);

  out->l3 = L3Kind::kIPv4;
  out->l3_hdr_len = static_cast<uint16_t>(ihl);
  out->l3_total_len = static_cast<uint32_t>(total);
  out->tos = ip[1];
  out->ttl = ip[8];
  out->proto = ip[9];
  out->key.proto = ip[9];
  out->key.family = AddrFamily::kIPv4;
  std::memcpy(out->key.src, ip + 12, 4);
  std::memcpy(out->key.dst, ip + 16, 4);
  const uint16_t frag = LoadBe16(ip + 6);
  out->df = (frag & kIpv4FlagDf) != 0;
  const uint16_t frag_offset = frag & kIpv4OffsetMask;
  const size_t l4_off = off + ihl;
  out->l4_offset = static_cast<uint16_t>(l4_off);
  if (ABSL_PREDICT_FALSE((frag & (kIpv4FlagMf | kIpv4OffsetMask)) != 0)) {
    out->is_fragment = true;
    out->is_first_fragment = frag_offset == 0;
    if (frag_offset != 0) return ParseStatus::kOk;
  }
  return ParseL4(data, l4_off, off + total, out->is_fragment, /*v6=*/false, out, why);
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline ParseStatus ParseIpv6(const uint8_t* data, size_t len,
                                                          size_t off, ParsedPacket* out,
                                                          DropReason* why) {
  const uint8_t* ip = data + off;
  const size_t avail = len - off;
  if (ABSL_PREDICT_FALSE(avail < kIpv6HdrLen)) return Drop(DropReason::kTruncated, why);
  if (ABSL_PREDICT_FALSE((ip[0] >> 4) != 6)) return Drop(DropReason::kBadIpHeader, why);
  const size_t total = kIpv6HdrLen + LoadBe16(ip + 4);
  if (ABSL_PREDICT_FALSE(total > avail)) return Drop(DropReason::kBadLength, why);

  out->l3 = L3Kind::kIPv6;
  out->l3_total_len = static_cast<uint32_t>(total);
  out->tos = static_cast<uint8_t>(LoadBe16(ip) >> 4);
  out->ttl = ip[7];
  out->df = true;
  out->key.family = AddrFamily::kIPv6;
  std::memcpy(out->key.src, ip + 8, 16);
  std::memcpy(out->key.dst, ip + 24, 16);

  const size_t end = off + total;
  const uint8_t nh = ip[6];
  Ipv6Chain chain;
  if (ABSL_PREDICT_TRUE(nh == kIpProtoTcp || nh == kIpProtoUdp || nh == kIpProtoIcmpV6)) {
    chain = Ipv6Chain{off + kIpv6HdrLen, nh, false, false};
  } else if (!WalkIpv6Chain(data, off + kIpv6HdrLen, end, nh, &chain)) {
    return Drop(DropReason::kBadExtHeaders, why);
  }
  // The walk is bounded by end <= len and by 8 headers of at most 2 KiB each,
  // so these fit in 16 bits.
  out->l3_hdr_len = static_cast<uint16_t>(chain.l4_off - off);
  out->l4_offset = static_cast<uint16_t>(chain.l4_off);
  out->proto = chain.proto;
  out->key.proto = chain.proto;
  out->is_fragment = chain.is_fragment;
  out->is_first_fragment = chain.first_fragment;
  if (chain.is_fragment && !chain.first_fragment) return ParseStatus::kOk;
  return ParseL4(data, chain.l4_off, end, chain.is_fragment, /*v6=*/true, out, why);
}

}  // namespace

ParseStatus ParsePacket(const uint8_t* data, size_t len, ParsedPacket* out, DropReason* why) {
  *out = ParsedPacket{};
  if (ABSL_PREDICT_FALSE(len < kEthHdrLen)) return Drop(DropReason::kTruncated, why);
  size_t off = kEthHdrLen;
  uint16_t ether_type = LoadBe16(data + 12);
  if (ABSL_PREDICT_FALSE(ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ)) {
    do {
      if (out->num_vlans == kMaxVlanTags) {
        out->ether_type = ether_type;
        out->l3 = L3Kind::kOther;
        return Drop(DropReason::kUnsupportedL3, why);
      }
      if (len - off < kVlanTagLen) return Drop(DropReason::kTruncated, why);
      out->vlan_tci[out->num_vlans++] = LoadBe16(data + off);
      ether_type = LoadBe16(data + off + 2);
      off += kVlanTagLen;
    } while (ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ);
  }
  out->l2_len = static_cast<uint16_t>(off);
  out->l3_offset = static_cast<uint16_t>(off);
  out->ether_type = ether_type;
  if (ABSL_PREDICT_TRUE(ether_type == kEtherTypeIPv4)) return ParseIpv4(data, len, off, out, why);
  if (ether_type == kEtherTypeIPv6) return ParseIpv6(data, len, off, out, why);
  if (ether_type == kEtherTypeArp) {
    const size_t avail = len - off;
    if (avail < kArpFixedLen) return Drop(DropReason::kTruncated, why);
    const size_t arp_len = kArpFixedLen + 2 * (static_cast<size_t>(data[off + 4]) + data[off + 5]);
    if (arp_len > avail) return Drop(DropReason::kTruncated, why);
    out->l3 = L3Kind::kArp;
    out->l3_hdr_len = static_cast<uint16_t>(arp_len);
    out->l3_total_len = static_cast<uint32_t>(arp_len);
    return ParseStatus::kOk;
  }
  out->l3 = L3Kind::kOther;
  return Drop(DropReason::kUnsupportedL3, why);
}

bool ParseArp(const uint8_t* data, size_t len, const ParsedPacket& p, ArpInfo* out) {
  const size_t off = p.l3_offset;
  if (p.l3 != L3Kind::kArp || off > len || len - off < kArpEthIpv4Len) return false;
  const uint8_t* a = data + off;
  if (LoadBe16(a) != 1 || LoadBe16(a + 2) != kEtherTypeIPv4 || a[4] != 6 || a[5] != 4) return false;
  out->op = LoadBe16(a + 6);
  std::memcpy(out->sha, a + 8, 6);
  std::memcpy(out->spa, a + 14, 4);
  std::memcpy(out->tha, a + 18, 6);
  std::memcpy(out->tpa, a + 24, 4);
  return true;
}

bool ParseIcmpError(const uint8_t* data, size_t len, const ParsedPacket& p, FlowKey* inner,
                    uint32_t* mtu) {
  const bool v6 = p.l3 == L3Kind::kIPv6;
  if (!p.has_l4 || p.icmp_inner_offset == 0) return false;
  if (p.proto != (v6 ? kIpProtoIcmpV6 : kIpProtoIcmp)) return false;
  // Re-check what we rely on, in case `p` does not come from this frame.
  const size_t end = static_cast<size_t>(p.l3_offset) + p.l3_total_len;
  const size_t off = p.icmp_inner_offset;
  if (end > len || off > end || p.l4_offset + kIcmpHdrLen != off) return false;
  const uint8_t* icmp = data + p.l4_offset;

  *mtu = 0;
  if (!v6 && icmp[0] == kIcmpDestUnreachable && icmp[1] == kIcmpCodeFragNeeded) {
    *mtu = LoadBe16(icmp + 6);
  } else if (v6 && icmp[0] == kIcmpV6PacketTooBig) {
    *mtu = LoadBe32(icmp + 4);
  }

  *inner = FlowKey{};
  const uint8_t* ip = data + off;
  const size_t avail = end - off;
  size_t l4_off;
  bool has_ports;
  if (!v6) {
    if (avail < kIpv4MinHdrLen || (ip[0] >> 4) != 4) return false;
    const size_t ihl = static_cast<size_t>(ip[0] & 0xf) * 4;
    // The embedded total_length is the original packet's; only sanity-check it.
    if (ihl < kIpv4MinHdrLen || ihl > avail || LoadBe16(ip + 2) < ihl) return false;
    inner->family = AddrFamily::kIPv4;
    inner->proto = ip[9];
    std::memcpy(inner->src, ip + 12, 4);
    std::memcpy(inner->dst, ip + 16, 4);
    l4_off = off + ihl;
    has_ports = (LoadBe16(ip + 6) & kIpv4OffsetMask) == 0;
  } else {
    if (avail < kIpv6HdrLen || (ip[0] >> 4) != 6) return false;
    inner->family = AddrFamily::kIPv6;
    std::memcpy(inner->src, ip + 8, 16);
    std::memcpy(inner->dst, ip + 24, 16);
    Ipv6Chain chain;
    if (!WalkIpv6Chain(data, off + kIpv6HdrLen, end, ip[6], &chain)) return false;
    inner->proto = chain.proto;
    l4_off = chain.l4_off;
    has_ports = !chain.is_fragment || chain.first_fragment;
  }
  if (!has_ports) return true;
  // RFC 792 / RFC 1812 section 4.3.2.3: at least 8 bytes of the original L4 header.
  if (end - l4_off < 8) return false;
  if (inner->proto == kIpProtoTcp || inner->proto == kIpProtoUdp) {
    inner->sport = LoadBe16(data + l4_off);
    inner->dport = LoadBe16(data + l4_off + 2);
  }
  return true;
}

bool ParseNeighborSolicitation(const uint8_t* data, size_t len, const ParsedPacket& p,
                               uint8_t target[16], uint8_t src_mac[6], bool* has_src_mac) {
  if (p.l3 != L3Kind::kIPv6 || !p.has_l4 || p.is_fragment || p.proto != kIpProtoIcmpV6 ||
      p.icmp_type != kIcmpV6NeighborSolicit || p.icmp_code != 0 || p.ttl != 255) {
    return false;
  }
  const size_t end = static_cast<size_t>(p.l3_offset) + p.l3_total_len;
  size_t off = p.l4_offset;
  if (end > len || off > end || end - off < kNsMinLen) return false;
  const uint8_t* t = data + off + 8;
  if (t[0] == 0xff) return false;  // multicast target
  *has_src_mac = false;
  off += kNsMinLen;
  while (end - off >= 2) {
    const size_t opt_len = static_cast<size_t>(data[off + 1]) * 8;
    if (opt_len == 0 || opt_len > end - off) return false;
    if (data[off] == kNdOptSourceLinkAddr && opt_len >= 8) {
      std::memcpy(src_mac, data + off + 2, 6);
      *has_src_mac = true;
    }
    off += opt_len;
  }
  static constexpr uint8_t kUnspecified[16] = {};
  if (*has_src_mac && std::memcmp(p.key.src, kUnspecified, 16) == 0) return false;
  std::memcpy(target, t, 16);
  return true;
}

bool ParseNeighborAdvertisement(const uint8_t* data, size_t len, const ParsedPacket& p,
                                uint8_t target[16], uint8_t mac[6]) {
  const size_t end = static_cast<size_t>(p.l3_offset) + p.l3_total_len;
  const size_t off = p.l4_offset;
  if (!p.has_l4 || p.proto != kIpProtoIcmpV6 || p.icmp_type != kIcmpV6NeighborAdvert || end > len ||
      off + kNaMinLen > end) {
    return false;
  }
  std::memcpy(target, data + off + 8, 16);
  for (size_t o = off + kNaMinLen; o + 8 <= end;) {
    const size_t opt_len = static_cast<size_t>(data[o + 1]) * 8;
    if (opt_len == 0 || o + opt_len > end) return false;
    if (data[o] == kNdOptTargetLinkAddr) {
      std::memcpy(mac, data + o + 2, 6);
      return true;
    }
    o += opt_len;
  }
  return false;
}

}  // namespace lb
