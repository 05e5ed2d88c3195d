// IP-in-IP encapsulation for direct server return: the load balancer wraps the
// client's IP packet, unchanged, in an outer IP header from its own tunnel
// address to the chosen backend, which decapsulates and answers the client
// directly. Four forms: IPv4-in-IPv4 (protocol 4, RFC 2003), IPv6-in-IPv6
// (next header 41, RFC 2473), IPv4-in-IPv6 (next header 4) and IPv6-in-IPv4
// (protocol 41).
//
// The outer header carries what the network needs from the inner one:
//   - DSCP and ECN are copied (RFC 6040 normal mode), so QoS and ECN work.
//   - IPv4 outer: DF is copied from an IPv4 inner and always set for an IPv6
//     inner (IPv6 routers never fragment). With DF set the IP ID is 0 (an
//     atomic datagram, RFC 6864); with DF clear it is the inner ID XOR the
//     low 16 bits of the flow hash, unique within the flow as long as the
//     client's IDs are, and different across flows that reuse the same IDs.
//   - IPv6 outer: the flow label is the caller's 20-bit flow hash (never 0,
//     which means "unlabelled", RFC 6437), so that a backend's RSS and ECMP on
//     the way spread flows while keeping each flow on one path.
// No extension headers and no IPv4 options are written.
//
// Two options spread tunnelled flows over a backend NIC's receive queues (its
// RSS hashes the outer header, which would otherwise be one address pair):
//   - Outer source per flow (Katran's IPIP_V4_PREFIX): with src_prefix_len
//     set, the outer source keeps the first src_prefix_len bits of src and
//     takes the rest from the flow hash (rotated by 16, so the bits differ
//     from those in the IPv4 ID and the UDP port). IPv6: only the last 32
//     bits vary. A flow keeps its source, so it stays on one backend queue.
//   - GUE, "direct IP" variant (RFC draft-ietf-intarea-gue variant 1, as
//     Katran): an outer UDP header follows the outer IP header and carries
//     the inner IP packet itself (its first nibble, 4 or 6, is the GUE
//     version field's "IP" marker). Destination port gue_port; source port
//     49152 + the low 14 bits of the flow hash; UDP checksum 0 in both
//     families (RFC 6935 allows it for tunnels over IPv6; lb-decap strips
//     the packet before the kernel's UDP checks).
//
// Memory: the caller makes room (rte_pktmbuf_prepend) and passes a pointer to
// the outer header and to the inner packet that follows it. Nothing is
// allocated; no exceptions; per-packet safe. Pure functions, any thread.
#ifndef LB_LIB_ENCAP_H_
#define LB_LIB_ENCAP_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "lib/byte_order.h"
#include "lib/checksum.h"
#include "lib/flow_key.h"

namespace lb {

inline constexpr size_t kIPv4HeaderLen = 20;
inline constexpr size_t kIPv6HeaderLen = 40;

inline constexpr uint8_t kIpProtoIpip = 4;     // IPv4 payload (IPPROTO_IPIP)
inline constexpr uint8_t kIpProtoIpv6 = 41;    // IPv6 payload (IPPROTO_IPV6)
inline constexpr uint8_t kIpProtoGueUdp = 17;  // GUE: outer UDP
inline constexpr size_t kUdpHeaderLen = 8;
inline constexpr uint16_t kDefaultGuePort = 6080;  // as Katran
inline constexpr uint16_t kGueSourcePortBase = 49152;

enum class EncapKind : uint8_t {
  kIpip = 0,  // IP-in-IP (protocol 4 / 41)
  kGue = 1,   // IP-in-UDP, GUE variant 1
};

struct EncapParams {
  AddrFamily outer_family;  // kIPv4 or kIPv6
  uint8_t src[16];          // LB tunnel address (or prefix); IPv4 in bytes [0, 4)
  uint8_t dst[16];          // backend address; IPv4 in bytes [0, 4)
  uint8_t ttl = 64;         // outer TTL / hop limit; must be non-zero
  // 0 = src as is. Else the source is per flow (see above): IPv4 in [1, 32),
  // IPv6 in [1, 128); an IPv6 prefix shorter than 96 varies the last 32 bits.
  uint8_t src_prefix_len = 0;
  EncapKind kind = EncapKind::kIpip;
  uint16_t gue_port = kDefaultGuePort;  // outer UDP destination port with kGue
};

// Writes the outer header at `outer` (EncapOverhead(p.outer_family, p.kind)
// bytes, guaranteed by the caller). `inner` is the inner IP header, already in place,
// and inner_len its length, which must equal the length the inner header
// states (IPv4 total length; 40 + IPv6 payload length): trim Ethernet padding
// first. flow_hash feeds the IPv4 ID (DF clear) and the IPv6 flow label.
//
// Returns the outer header length, or 0, writing nothing, if the inner packet
// is malformed (wrong version, truncated, length mismatch, IPv6 jumbogram), if
// the result would exceed 65535 bytes (IPv4 total length) or a 65535-byte IPv6
// payload, or if the params are invalid (outer family not IPv4/IPv6, ttl 0,
// src_prefix_len out of range, kGue with port 0).
size_t WriteEncapHeader(uint8_t* outer, const uint8_t* inner, size_t inner_len,
                        AddrFamily inner_family, const EncapParams& p, uint32_t flow_hash);

// Per-destination outer-header templates (Katran's approach): everything of
// the outer IP header that does not depend on the packet -- version, TTL,
// source (or its fixed prefix), destination -- is laid out once, with the
// one's-complement sum of those fields, so that per packet only the
// DSCP/ECN, length, ID/DF (IPv4), flow label (IPv6), protocol, the per-flow
// source bits and the UDP header (GUE) are written, and the IPv4 checksum is
// the template's sum plus those fields, folded. The bytes written are exactly
// WriteEncapHeader's for the same EncapParams (tests/unit/encap_test.cc
// compares them). The dataplane builds one per backend slot and lcore at each
// table swap (dataplane/l4/worker.h, "Outer-header templates").
struct alignas(64) EncapTemplate {
  uint8_t hdr[kIPv6HeaderLen];  // outer IP header; per-packet fields zero
  uint32_t sum;                 // IPv4: host-order sum of hdr's 16-bit words
  // Per-flow source bits (IPv4: of the source; IPv6: of its last 32 bits),
  // 0 for one fixed source, and those 32 bits with the per-flow bits clear.
  uint32_t src_host_mask;
  uint32_t src_fixed;
  uint8_t ip_len;  // 20 (IPv4 outer), 40 (IPv6 outer); 0 = no template
  uint8_t reserved[7];
};
static_assert(sizeof(EncapTemplate) == 64, "one cache line");

// The inner packet's fields the outer header copies, as the parser
// (lib/packet.h) reads them: tos is the IPv4 TOS or IPv6 traffic class,
// df the IPv4 DF bit (true for IPv6), ip_id the IPv4 identification.
struct EncapInner {
  uint32_t len;  // inner packet length (its header's stated length)
  AddrFamily family;
  uint8_t tos;
  bool df;
  uint16_t ip_id;
};

// Fills *t for p's outer family, source, destination, TTL and source prefix
// (p.kind and p.gue_port are per packet: see ApplyEncapTemplate). Returns
// false, leaving t->ip_len 0, when WriteEncapHeader would refuse the params
// (family, ttl 0, src_prefix_len out of range).
bool BuildEncapTemplate(const EncapParams& p, EncapTemplate* t);

// Writes the outer headers at `outer` as WriteEncapHeader(outer, inner,
// in.len, in.family, p, flow_hash) would for the params t was built from with
// p.kind = kind and p.gue_port = gue_port, and returns their length; returns
// 0, writing nothing, when t holds no template, kGue has port 0, the inner
// IPv6 packet is a jumbogram (len 40), or the outer length would overflow.
// The inner header itself is not re-checked: the caller passes what the
// parser validated. Inline: the lcores call it per packet.
inline size_t ApplyEncapTemplate(uint8_t* outer, const EncapTemplate& t, const EncapInner& in,
                                 EncapKind kind, uint16_t gue_port, uint32_t flow_hash);

// Bytes the outer headers add: 20 for kIPv4, 40 for kIPv6, 0 otherwise; 8
// more (UDP) with kGue. The inner MTU to advertise to clients is the egress
// MTU minus this.
inline size_t EncapOverhead(AddrFamily outer, EncapKind kind = EncapKind::kIpip) {
  const size_t udp = kind == EncapKind::kGue ? kUdpHeaderLen : 0;
  switch (outer) {
    case AddrFamily::kIPv4:
      return kIPv4HeaderLen + udp;
    case AddrFamily::kIPv6:
      return kIPv6HeaderLen + udp;
    case AddrFamily::kNone:
      break;
  }
  return 0;
}

// Decapsulation, for tests and backend-side tooling. If [pkt, pkt + len) is an
// IPv4 or IPv6 packet whose payload is directly IPv4 (protocol 4) or IPv6
// (protocol 41), or (gue_port != 0) UDP to gue_port whose payload is an IP
// packet (GUE variant 1), and the inner header's version agrees, stores where the inner
// packet starts, its length (the outer's stated length minus the outer
// header, so trailing padding is excluded) and its family, and returns true.
// Returns false, storing nothing, for anything else: truncated or malformed
// outer header, bad IPv4 header checksum, IPv4 fragment, IPv6 extension
// headers, or an inner too short for its own fixed header.
bool ParseEncap(const uint8_t* pkt, size_t len, size_t* inner_off, size_t* inner_len,
                AddrFamily* inner_family, uint16_t gue_port = 0);

// ---- inline implementation ----

inline size_t ApplyEncapTemplate(uint8_t* outer, const EncapTemplate& t, const EncapInner& in,
                                 EncapKind kind, uint16_t gue_port, uint32_t flow_hash) {
  const bool gue = kind == EncapKind::kGue;
  const size_t udp = gue ? kUdpHeaderLen : 0;
  if (t.ip_len == 0 || (gue && gue_port == 0)) return 0;
  const bool inner4 = in.family == AddrFamily::kIPv4;
  if (!inner4 && in.len <= kIPv6HeaderLen) return 0;  // a jumbogram (payload length 0)
  const uint8_t proto = gue ? kIpProtoGueUdp : inner4 ? kIpProtoIpip : kIpProtoIpv6;
  // The per-flow source bits, rotated as SourceBits in encap.cc.
  const uint32_t src_var = ((flow_hash << 16) | (flow_hash >> 16)) & t.src_host_mask;
  size_t ip_len;
  if (t.ip_len == kIPv4HeaderLen) {
    if (in.len > 65535 - kIPv4HeaderLen - udp) return 0;
    ip_len = kIPv4HeaderLen;
    std::memcpy(outer, t.hdr, kIPv4HeaderLen);
    const uint16_t total = static_cast<uint16_t>(kIPv4HeaderLen + udp + in.len);
    const uint16_t id = in.df ? 0 : static_cast<uint16_t>(in.ip_id ^ (flow_hash & 0xffff));
    const uint16_t flags = in.df ? 0x4000 : 0;
    outer[1] = in.tos;
    StoreBe16(outer + 2, total);
    StoreBe16(outer + 4, id);
    StoreBe16(outer + 6, flags);
    outer[9] = proto;
    // The template's words plus the ones written here (the source's fixed
    // and per-flow bits are disjoint, so their words add).
    const uint32_t sum =
        t.sum + in.tos + total + id + flags + proto + (src_var >> 16) + (src_var & 0xffff);
    StoreBe16(outer + 10, ChecksumFold(sum));
    if (src_var != 0) StoreBe32(outer + 12, t.src_fixed | src_var);
  } else {
    if (in.len > 65535 - udp) return 0;
    ip_len = kIPv6HeaderLen;
    std::memcpy(outer, t.hdr, kIPv6HeaderLen);
    uint32_t label = flow_hash & 0xfffff;
    if (label == 0) label = 1;  // 0 would mean "no flow label" (RFC 6437 §2)
    StoreBe32(outer, 0x60000000u | (static_cast<uint32_t>(in.tos) << 20) | label);
    StoreBe16(outer + 4, static_cast<uint16_t>(udp + in.len));
    outer[6] = proto;
    if (src_var != 0) StoreBe32(outer + 20, t.src_fixed | src_var);
  }
  if (gue) {
    uint8_t* u = outer + ip_len;
    StoreBe16(u, static_cast<uint16_t>(kGueSourcePortBase | (flow_hash & 0x3fff)));
    StoreBe16(u + 2, gue_port);
    StoreBe16(u + 4, static_cast<uint16_t>(kUdpHeaderLen + in.len));
    StoreBe16(u + 6, 0);
  }
  return ip_len + udp;
}

}  // namespace lb

#endif  // LB_LIB_ENCAP_H_
