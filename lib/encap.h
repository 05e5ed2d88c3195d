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

}  // namespace lb

#endif  // LB_LIB_ENCAP_H_
