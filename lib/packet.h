// Packet parsing: from the bytes of an Ethernet frame to the facts the fast
// path acts on (L2/L3/L4 offsets, 5-tuple, fragment state, ICMP type).
//
// Contract:
//  - Input is (data, len): the frame starting at the destination MAC, len bytes
//    readable. Nothing is ever read at or past data + len, whatever the bytes
//    say; every length field is checked before it is trusted (this code is
//    fuzzed). Every offset recorded in ParsedPacket is <= len, and
//    l3_offset + l3_total_len <= len for a parsed IP packet.
//  - Bytes after the IP packet (Ethernet padding up to 60 bytes, or anything
//    else beyond IPv4 total_length / IPv6 40 + payload_length) are ignored.
//    Everything above L3 is bounded by the IP packet, not by the frame.
//  - Supported: Ethernet II; up to two VLAN tags (0x8100 / 0x88a8, any order);
//    ARP; IPv4 with options; IPv6 with up to kMaxIpv6ExtHeaders extension
//    headers (hop-by-hop (first only), routing, destination options, fragment,
//    AH; ESP and "no next header" end the walk); TCP, UDP, ICMP (over IPv4)
//    and ICMPv6 (over IPv6). Other upper-layer protocols parse as kOk with
//    has_l4 == false.
//  - Fragments: IPv4 with MF set or a non-zero offset; IPv6 with a fragment
//    header whose offset or M flag is non-zero (an "atomic fragment", offset 0
//    and M 0, is a whole packet: RFC 6946). Only the first fragment
//    (offset 0) carries the L4 header; it is parsed there (the UDP length is
//    not checked against the fragment, it covers the whole datagram) and never
//    for a later fragment.
//  - Failure: ParseStatus::kDrop plus one DropReason (kTruncated,
//    kBadLength, kBadIpHeader, kUnsupportedL3, kBadL4Header, kBadExtHeaders).
//    On kDrop the fields of *out filled so far are valid (e.g. ether_type for
//    kUnsupportedL3); the rest are zero.
//
// Per-packet safe: no allocation, no exceptions, no logging, no global state.
// Thread-safety: pure functions over caller-owned memory; any thread.
#ifndef LB_LIB_PACKET_H_
#define LB_LIB_PACKET_H_

#include <cstddef>
#include <cstdint>

#include "lib/drop_reasons.h"
#include "lib/flow_key.h"

namespace lb {

inline constexpr uint16_t kEtherTypeIPv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;
inline constexpr uint16_t kEtherTypeIPv6 = 0x86dd;

inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoIcmpV6 = 58;

inline constexpr int kMaxVlanTags = 2;
// A chain longer than this is dropped with kBadExtHeaders (no legitimate
// traffic needs more; a long chain is a classic ACL-evasion trick).
inline constexpr int kMaxIpv6ExtHeaders = 8;

enum class L3Kind : uint8_t { kNone, kArp, kIPv4, kIPv6, kOther };

struct ParsedPacket {
  uint16_t l2_len;      // Ethernet header + VLAN tags
  uint16_t ether_type;  // host order, after VLAN tags
  uint8_t num_vlans;
  uint16_t vlan_tci[kMaxVlanTags];  // host order, outermost first
  L3Kind l3;
  uint16_t l3_offset;   // == l2_len
  uint16_t l3_hdr_len;  // IPv4 IHL*4; IPv6 40 + extension headers; ARP 8 + addresses
  // Bytes the IP packet really occupies: IPv4 total_length, IPv6 40 +
  // payload_length. 32 bits because the IPv6 value can exceed 65535.
  uint32_t l3_total_len;
  uint8_t proto;  // upper-layer protocol after extension headers
  uint8_t ttl;    // TTL / hop limit
  uint8_t tos;    // IPv4 TOS / IPv6 traffic class
  bool df;        // IPv4 DF bit (IPv6: always true, routers never fragment)
  bool is_fragment;
  bool is_first_fragment;  // is_fragment && offset == 0
  // End of the IP headers (start of the upper-layer header), from the start of
  // the frame. The L4 header there was parsed only if has_l4.
  uint16_t l4_offset;
  bool has_l4;        // TCP/UDP/ICMP/ICMPv6 header present and parsed
  uint8_t tcp_flags;  // TCP only
  uint8_t icmp_type;  // ICMP / ICMPv6 only
  uint8_t icmp_code;
  // ICMP error (v4 types 3, 11, 12; v6 types 1..4): offset of the embedded
  // packet (l4_offset + 8). 0 for anything else. ParseIcmpError reads it.
  uint16_t icmp_inner_offset;
  // src/dst/proto/family always filled for IP; ports only for TCP/UDP with
  // has_l4 (so 0 for a non-first fragment; a first fragment has its ports:
  // hash fragments with HashMode::kSrcDstProto, which ignores them).
  FlowKey key;
};

enum class ParseStatus : uint8_t { kOk, kDrop };

// Fills *out (always fully overwritten); on kDrop sets *why. ARP frames parse as
// kOk with l3 == kArp (only the fixed ARP header and its address fields are
// bounds-checked: use ParseArp). Any other non-IP EtherType is kDrop /
// kUnsupportedL3 with l3 == kOther.
ParseStatus ParsePacket(const uint8_t* data, size_t len, ParsedPacket* out, DropReason* why);

struct ArpInfo {
  uint16_t op;  // host order: 1 request, 2 reply
  uint8_t sha[6];
  uint8_t spa[4];  // network order
  uint8_t tha[6];
  uint8_t tpa[4];
};

// Ethernet/IPv4 ARP only (htype 1, ptype 0x0800, hlen 6, plen 4). `p` must come
// from ParsePacket on the same (data, len). False for anything else.
bool ParseArp(const uint8_t* data, size_t len, const ParsedPacket& p, ArpInfo* out);

// ICMP / ICMPv6 errors (v4: dest-unreachable 3, time-exceeded 11, parameter
// problem 12; v6: 1, 2 (packet too big), 3, 4) carry the start of the offending
// packet. Parses that embedded IP header (IPv6: with its extension headers)
// and the first 8 bytes of its L4 header into *inner: the tuple exactly as
// embedded, i.e. src is the address that sent the original packet (for a VIP
// flow answered by a router on the way to the client: src = VIP, dst = client).
// Ports are zero unless the inner protocol is TCP or UDP and the inner packet
// is not a non-first fragment. The embedded family must match the outer one.
// *mtu is the next-hop MTU of an IPv4 frag-needed (type 3 code 4) or the MTU of
// an ICMPv6 packet-too-big, else 0. Returns false (leaving *inner and *mtu
// unspecified) if the packet is not such an error or the embedded data is
// too short or malformed. Everything read is bounded by the outer IP packet.
bool ParseIcmpError(const uint8_t* data, size_t len, const ParsedPacket& p, FlowKey* inner,
                    uint32_t* mtu);

// NDP neighbour solicitation (ICMPv6 135, code 0, hop limit 255, not a
// fragment, RFC 4861 section 7.1.1): copies the target address and, if present,
// the source link-layer address option. False if `p` is not a valid NS (too
// short, multicast target, zero-length option, or a source link-layer option
// from the unspecified address).
bool ParseNeighborSolicitation(const uint8_t* data, size_t len, const ParsedPacket& p,
                               uint8_t target[16], uint8_t src_mac[6], bool* has_src_mac);

// NDP neighbour advertisement (ICMPv6 136, RFC 4861 section 4.4): copies the
// target address and the target link-layer address option (the MAC the
// dataplane learns a next hop from). False if `p` is not an NA, is shorter
// than the fixed part, has a zero-length or overlong option before that
// option, or carries none. Everything read is bounded by the IP packet and by
// `len`.
bool ParseNeighborAdvertisement(const uint8_t* data, size_t len, const ParsedPacket& p,
                                uint8_t target[16], uint8_t mac[6]);

}  // namespace lb

#endif  // LB_LIB_PACKET_H_
