// The node's own control traffic, as Ethernet frames: answers to ARP, ICMP
// echo and ICMPv6 echo for the node's addresses (rewritten in place in the
// request's buffer), ARP requests and IPv6 neighbor solicitations/
// advertisements for resolving next hops and announcing ourselves, and the
// ICMP "fragmentation needed" / ICMPv6 "packet too big" errors sent to a client
// whose packet would exceed the egress MTU once encapsulated.
//
// Contract:
//   - The caller has classified the frame (the parser) and decided that it
//     concerns one of the node's addresses; these functions check only what
//     they need to produce a correct packet, and refuse anything else.
//   - Make*() rewrite the frame in place, keeping its length (Ethernet padding
//     included) and its VLAN tag, if any. They return false, leaving the frame
//     unchanged, if it is not what they answer.
//   - Write*() build a complete untagged Ethernet frame (no FCS) at `out` and
//     return its length, or 0, writing nothing, if `cap` is too small or the
//     inputs are malformed or must not be answered. Frames shorter than 60
//     bytes are not padded: the NIC pads on transmit.
//   - MAC addresses are 6 bytes, IPv4 addresses 4, IPv6 addresses 16, all in
//     network order. Every checksum written is complete and correct.
//
// Per-packet safe: no allocation, no exceptions, no logging. Pure functions on
// caller-owned bytes, callable from any thread.
#ifndef LB_LIB_ICMP_H_
#define LB_LIB_ICMP_H_

#include <cstddef>
#include <cstdint>

namespace lb {

inline constexpr size_t kEtherHeaderLen = 14;
inline constexpr size_t kVlanEtherHeaderLen = 18;  // one 802.1Q tag
inline constexpr size_t kArpFrameLen = 42;         // Ethernet + ARP for IPv4
inline constexpr size_t kNdFrameLen = 86;          // Ethernet + IPv6 + NS/NA + one LLA option

// ICMP errors quote as much of the offending packet as keeps the error within
// the size every host must accept: 576 bytes for IPv4 (RFC 1812 §4.3.2.3),
// 1280 for IPv6 (RFC 4443 §2.4(c)).
inline constexpr size_t kIcmpv4ErrorMaxQuote = 576 - 20 - 8;   // 548
inline constexpr size_t kIcmpv6ErrorMaxQuote = 1280 - 40 - 8;  // 1232
inline constexpr size_t kMaxFragNeededFrameLen = kEtherHeaderLen + 576;
inline constexpr size_t kMaxPacketTooBigFrameLen = kEtherHeaderLen + 1280;

// ARP request -> ARP reply, in place. l2_len is 14 (untagged) or 18 (one VLAN
// tag). The frame must carry an Ethernet/IPv4 ARP request (htype 1, ptype
// 0x0800, op 1) at l2_len, asking for an address the caller knows is ours.
// The reply goes to the requester's hardware address, from my_mac.
bool MakeArpReply(uint8_t* frame, size_t len, size_t l2_len, const uint8_t my_mac[6]);

// Broadcast "who has target_ip, tell my_ip" (kArpFrameLen bytes).
size_t WriteArpRequest(uint8_t* out, size_t cap, const uint8_t my_mac[6], const uint8_t my_ip[4],
                       const uint8_t target_ip[4]);

// IPv4 ICMP echo request -> echo reply, in place. l3_off is the IPv4 header's
// offset (14 or 18); the EtherType before it must be IPv4. MACs and IPs are
// swapped, type set to 0, the ICMP checksum updated incrementally (RFC 1624),
// TTL set to 64 and the IP checksum recomputed. Refused: a group-addressed
// Ethernet destination or a multicast/broadcast IP destination (they would
// become our source), IP options, fragments, truncated packets, a bad IP header
// checksum, and requests whose ICMP checksum is wrong (the update would only carry the error over).
bool MakeIcmpEchoReply(uint8_t* frame, size_t len, size_t l3_off);

// ICMPv6 echo request (128) -> echo reply (129), in place, the same way: hop
// limit 64, checksum covering the IPv6 pseudo-header. The ICMPv6 header must
// follow the IPv6 header directly (no extension headers). Refused: a
// group-addressed Ethernet destination, a multicast IPv6 destination,
// truncated packets, and requests whose checksum is wrong.
bool MakeIcmpv6EchoReply(uint8_t* frame, size_t len, size_t l3_off);

// Neighbor advertisement (RFC 4861 §4.4) for `target` from my_ip/my_mac to
// dst_ip/dst_mac, with flags Override and, if `solicited`, Solicited, and the
// target link-layer address option (my_mac). Hop limit 255. The caller picks
// the destination: the soliciting node, or all-nodes (ff02::1, 33:33:00:00:00:01)
// with solicited = false when the solicitation came from the unspecified
// address or the advertisement is unsolicited. kNdFrameLen bytes.
size_t WriteNeighborAdvertisement(uint8_t* out, size_t cap, const uint8_t my_mac[6],
                                  const uint8_t my_ip[16], const uint8_t dst_mac[6],
                                  const uint8_t dst_ip[16], const uint8_t target[16],
                                  bool solicited);

// Neighbor solicitation (RFC 4861 §4.3) for `target`, from my_ip/my_mac to the
// target's solicited-node multicast address ff02::1:ffXX:XXXX (RFC 4291
// §2.7.1) and MAC 33:33:ff:XX:XX:XX (RFC 2464 §7), with the source link-layer
// address option. Hop limit 255. kNdFrameLen bytes.
size_t WriteNeighborSolicitation(uint8_t* out, size_t cap, const uint8_t my_mac[6],
                                 const uint8_t my_ip[16], const uint8_t target[16]);

// ICMP destination unreachable, fragmentation needed (type 3 code 4, RFC 1191)
// from my_ip to the source of the IPv4 packet [orig_ip, orig_ip + orig_len),
// carrying the next-hop MTU `mtu` (the egress MTU minus the encapsulation
// overhead) and quoting the original from its IP header on, up to
// kIcmpv4ErrorMaxQuote bytes (less if the packet is shorter). The frame goes
// from src_mac to dst_mac (the router towards the client); IP TTL 64, DF set,
// precedence "internetwork control". At most kMaxFragNeededFrameLen bytes.
//
// `out` may overlap any input (orig_ip, the MACs): the offending packet's own
// buffer can be turned into the error, as everything is read first.
//
// Returns 0 for a malformed original (not IPv4, truncated header, total length
// shorter than its header), mtu < 68, and where RFC 1812 §4.3.2.7 forbids an
// error: a non-initial fragment, an ICMP error message (types 3, 4, 5, 11, 12),
// or a source that is not a unicast host (0/8, 127/8, 224/4 and above).
size_t WriteIcmpFragNeeded(uint8_t* out, size_t cap, const uint8_t src_mac[6],
                           const uint8_t dst_mac[6], const uint8_t my_ip[4], const uint8_t* orig_ip,
                           size_t orig_len, uint16_t mtu);

// ICMPv6 packet too big (type 2 code 0, RFC 4443 §3.2) from my_ip to the
// source of the IPv6 packet [orig_ip, orig_ip + orig_len), carrying the 32-bit
// MTU and quoting the original up to kIcmpv6ErrorMaxQuote bytes, so the whole
// IPv6 packet fits in 1280. Hop limit 64. Same frame and overlap rules as
// WriteIcmpFragNeeded. At most kMaxPacketTooBigFrameLen bytes.
//
// Returns 0 for a malformed original (not IPv6, truncated header), mtu < 1280
// (a sender discards it, RFC 8201 §4), and where RFC 4443
// §2.4(e) forbids an error: the original is an ICMPv6 error message (found
// after at most a few hop-by-hop/routing/destination-options/fragment
// headers), or its source is unspecified, loopback or multicast.
size_t WriteIcmpv6PacketTooBig(uint8_t* out, size_t cap, const uint8_t src_mac[6],
                               const uint8_t dst_mac[6], const uint8_t my_ip[16],
                               const uint8_t* orig_ip, size_t orig_len, uint32_t mtu);

}  // namespace lb

#endif  // LB_LIB_ICMP_H_
