#include "lib/encap.h"

#include <cstring>

#include "lib/byte_order.h"
#include "lib/checksum.h"

namespace lb {
namespace {

constexpr size_t kMaxIpLength = 65535;
constexpr uint16_t kIpv4FlagDf = 0x4000;
constexpr uint16_t kIpv4FlagMf = 0x2000;
constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;

// What the outer header copies from the inner one, after checking that the
// inner packet is what inner_len says it is.
struct InnerInfo {
  uint8_t tos;     // DSCP + ECN (IPv4 TOS / IPv6 traffic class)
  bool df;         // IPv4 DF; true for IPv6, which routers never fragment
  uint16_t ip_id;  // IPv4 identification; 0 for IPv6
  uint8_t proto;   // outer protocol / next header announcing this inner
};

bool InspectInner(const uint8_t* inner, size_t inner_len, AddrFamily family, InnerInfo* info) {
  if (family == AddrFamily::kIPv4) {
    if (inner_len < kIPv4HeaderLen || (inner[0] >> 4) != 4) return false;
    const size_t ihl = static_cast<size_t>(inner[0] & 0x0f) * 4;
    if (ihl < kIPv4HeaderLen || ihl > inner_len || LoadBe16(inner + 2) != inner_len) return false;
    info->tos = inner[1];
    info->df = (LoadBe16(inner + 6) & kIpv4FlagDf) != 0;
    info->ip_id = LoadBe16(inner + 4);
    info->proto = kIpProtoIpip;
    return true;
  }
  if (family == AddrFamily::kIPv6) {
    if (inner_len < kIPv6HeaderLen || (inner[0] >> 4) != 6) return false;
    // A payload length of 0 announces a jumbogram (RFC 2675), which cannot be
    // carried: the outer length field would overflow.
    const size_t payload = LoadBe16(inner + 4);
    if (payload == 0 || kIPv6HeaderLen + payload != inner_len) return false;
    info->tos = static_cast<uint8_t>(((inner[0] & 0x0f) << 4) | (inner[1] >> 4));
    info->df = true;
    info->ip_id = 0;
    info->proto = kIpProtoIpv6;
    return true;
  }
  return false;
}

// The flow-hash bits an outer source takes (rotated, see encap.h).
inline uint32_t SourceBits(uint32_t flow_hash) { return (flow_hash << 16) | (flow_hash >> 16); }

// Outer UDP of GUE: source port from the hash, checksum 0 (see encap.h).
inline void WriteGueUdp(uint8_t* udp, const EncapParams& p, uint32_t flow_hash, size_t inner_len) {
  StoreBe16(udp, static_cast<uint16_t>(kGueSourcePortBase | (flow_hash & 0x3fff)));
  StoreBe16(udp + 2, p.gue_port);
  StoreBe16(udp + 4, static_cast<uint16_t>(kUdpHeaderLen + inner_len));
  StoreBe16(udp + 6, 0);
}

// kGue is a template parameter so that each form is one straight path.
template <bool kGue>
size_t WriteOuter4(uint8_t* outer, size_t inner_len, const InnerInfo& info, const EncapParams& p,
                   uint32_t flow_hash) {
  constexpr size_t udp = kGue ? kUdpHeaderLen : 0;
  if (inner_len > kMaxIpLength - kIPv4HeaderLen - udp || p.src_prefix_len >= 32) return 0;
  const uint16_t ver_tos = static_cast<uint16_t>(0x4500 | info.tos);
  const uint16_t total = static_cast<uint16_t>(kIPv4HeaderLen + udp + inner_len);
  // RFC 6864: an atomic datagram (DF set) needs no unique ID; otherwise a
  // per-flow bijection of the client's ID keeps fragments of different
  // datagrams apart at the backend.
  const uint16_t id = info.df ? 0 : static_cast<uint16_t>(info.ip_id ^ (flow_hash & 0xffff));
  const uint16_t flags = info.df ? kIpv4FlagDf : 0;
  const uint8_t proto = kGue ? kIpProtoGueUdp : info.proto;
  const uint16_t ttl_proto = static_cast<uint16_t>((p.ttl << 8) | proto);
  uint32_t src = LoadBe32(p.src);
  if (p.src_prefix_len != 0) {
    const uint32_t host = ~uint32_t{0} >> p.src_prefix_len;
    src = (src & ~host) | (SourceBits(flow_hash) & host);
  }
  // The checksum is summed from the values, not re-read from `outer`: wide
  // loads right after byte stores would stall on store forwarding.
  uint32_t sum = ChecksumPartial(p.dst, 4, 0);
  sum = ChecksumAdd(sum, (src >> 16) + (src & 0xffff) + ver_tos + total + id + flags + ttl_proto);
  StoreBe16(outer, ver_tos);
  StoreBe16(outer + 2, total);
  StoreBe16(outer + 4, id);
  StoreBe16(outer + 6, flags);
  StoreBe16(outer + 8, ttl_proto);
  StoreBe16(outer + 10, ChecksumFold(sum));
  StoreBe32(outer + 12, src);
  std::memcpy(outer + 16, p.dst, 4);
  if (kGue) WriteGueUdp(outer + kIPv4HeaderLen, p, flow_hash, inner_len);
  return kIPv4HeaderLen + udp;
}

size_t WriteOuter6(uint8_t* outer, size_t inner_len, const InnerInfo& info, const EncapParams& p,
                   uint32_t flow_hash) {
  const bool gue = p.kind == EncapKind::kGue;
  const size_t udp = gue ? kUdpHeaderLen : 0;
  if (inner_len > kMaxIpLength - udp || p.src_prefix_len >= 128) return 0;
  uint32_t label = flow_hash & 0xfffff;
  if (label == 0) label = 1;  // 0 would mean "no flow label" (RFC 6437 §2)
  outer[0] = static_cast<uint8_t>(0x60 | (info.tos >> 4));
  outer[1] = static_cast<uint8_t>((info.tos << 4) | (label >> 16));
  StoreBe16(outer + 2, static_cast<uint16_t>(label));
  StoreBe16(outer + 4, static_cast<uint16_t>(udp + inner_len));
  outer[6] = gue ? kIpProtoGueUdp : info.proto;
  outer[7] = p.ttl;
  std::memcpy(outer + 8, p.src, 16);
  if (p.src_prefix_len != 0) {
    const unsigned fixed = p.src_prefix_len > 96 ? p.src_prefix_len - 96u : 0u;
    const uint32_t host = ~uint32_t{0} >> fixed;
    StoreBe32(outer + 20, (LoadBe32(p.src + 12) & ~host) | (SourceBits(flow_hash) & host));
  }
  std::memcpy(outer + 24, p.dst, 16);
  if (gue) WriteGueUdp(outer + kIPv6HeaderLen, p, flow_hash, inner_len);
  return kIPv6HeaderLen + udp;
}

}  // namespace

size_t WriteEncapHeader(uint8_t* outer, const uint8_t* inner, size_t inner_len,
                        AddrFamily inner_family, const EncapParams& p, uint32_t flow_hash) {
  InnerInfo info;
  if (p.ttl == 0 || !InspectInner(inner, inner_len, inner_family, &info)) return 0;
  if (p.kind == EncapKind::kIpip) {
    if (p.outer_family == AddrFamily::kIPv4) {
      return WriteOuter4<false>(outer, inner_len, info, p, flow_hash);
    }
  } else if (p.gue_port == 0) {
    return 0;
  } else if (p.outer_family == AddrFamily::kIPv4) {
    return WriteOuter4<true>(outer, inner_len, info, p, flow_hash);
  }
  if (p.outer_family == AddrFamily::kIPv6) return WriteOuter6(outer, inner_len, info, p, flow_hash);
  return 0;
}

bool BuildEncapTemplate(const EncapParams& p, EncapTemplate* t) {
  std::memset(t, 0, sizeof(*t));
  if (p.ttl == 0) return false;
  if (p.outer_family == AddrFamily::kIPv4) {
    if (p.src_prefix_len >= 32) return false;
    const uint32_t host = p.src_prefix_len == 0 ? 0 : ~uint32_t{0} >> p.src_prefix_len;
    t->src_host_mask = host;
    t->src_fixed = LoadBe32(p.src) & ~host;
    uint8_t* h = t->hdr;
    h[0] = 0x45;
    h[8] = p.ttl;
    StoreBe32(h + 12, t->src_fixed);
    std::memcpy(h + 16, p.dst, 4);
    // Host-order words, as WriteOuter4 sums them.
    uint32_t sum = 0;
    for (size_t i = 0; i < kIPv4HeaderLen; i += 2) sum += LoadBe16(h + i);
    t->sum = sum;
    t->ip_len = kIPv4HeaderLen;
    return true;
  }
  if (p.outer_family == AddrFamily::kIPv6) {
    if (p.src_prefix_len >= 128) return false;
    uint8_t* h = t->hdr;
    h[0] = 0x60;
    h[7] = p.ttl;
    std::memcpy(h + 8, p.src, 16);
    std::memcpy(h + 24, p.dst, 16);
    if (p.src_prefix_len != 0) {
      const unsigned fixed = p.src_prefix_len > 96 ? p.src_prefix_len - 96u : 0u;
      const uint32_t host = ~uint32_t{0} >> fixed;
      t->src_host_mask = host;
      t->src_fixed = LoadBe32(p.src + 12) & ~host;
      StoreBe32(h + 20, t->src_fixed);
    }
    t->ip_len = kIPv6HeaderLen;
    return true;
  }
  return false;
}

bool ParseEncap(const uint8_t* pkt, size_t len, size_t* inner_off, size_t* inner_len,
                AddrFamily* inner_family, uint16_t gue_port) {
  if (len < 1) return false;
  size_t off;
  size_t total;
  uint8_t proto;
  const unsigned version = pkt[0] >> 4;
  if (version == 4) {
    if (len < kIPv4HeaderLen) return false;
    off = static_cast<size_t>(pkt[0] & 0x0f) * 4;
    total = LoadBe16(pkt + 2);
    if (off < kIPv4HeaderLen || total < off || total > len) return false;
    if ((LoadBe16(pkt + 6) & (kIpv4FlagMf | kIpv4FragOffsetMask)) != 0) return false;
    if (Ipv4HeaderChecksum(pkt, off) != 0) return false;
    proto = pkt[9];
  } else if (version == 6) {
    if (len < kIPv6HeaderLen) return false;
    off = kIPv6HeaderLen;
    total = kIPv6HeaderLen + LoadBe16(pkt + 4);
    if (total > len) return false;
    proto = pkt[6];
  } else {
    return false;
  }

  // GUE variant 1: UDP to gue_port, whose payload's first nibble is the
  // inner IP version; the UDP length bounds the inner packet.
  if (gue_port != 0 && proto == kIpProtoGueUdp) {
    if (total - off < kUdpHeaderLen || LoadBe16(pkt + off + 2) != gue_port) return false;
    const size_t udp_len = LoadBe16(pkt + off + 4);
    if (udp_len < kUdpHeaderLen + 1 || udp_len > total - off) return false;
    total = off + udp_len;
    off += kUdpHeaderLen;
    proto = (pkt[off] >> 4) == 4 ? kIpProtoIpip : (pkt[off] >> 4) == 6 ? kIpProtoIpv6 : 0;
  }
  AddrFamily family;
  size_t min_inner;
  if (proto == kIpProtoIpip) {
    family = AddrFamily::kIPv4;
    min_inner = kIPv4HeaderLen;
  } else if (proto == kIpProtoIpv6) {
    family = AddrFamily::kIPv6;
    min_inner = kIPv6HeaderLen;
  } else {
    return false;
  }
  const size_t n = total - off;
  if (n < min_inner || (pkt[off] >> 4) != static_cast<unsigned>(family)) return false;
  *inner_off = off;
  *inner_len = n;
  *inner_family = family;
  return true;
}

}  // namespace lb
