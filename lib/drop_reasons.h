// Why the dataplane dropped a packet. Every drop in the fast path is counted
// under exactly one of these reasons, per lcore, in the stats region.
//
// The numeric values are part of the stats-region ABI (see table_format.h):
// append new reasons at the end, never renumber, and bump kStatsAbiVersion if
// the count changes.
#ifndef LB_LIB_DROP_REASONS_H_
#define LB_LIB_DROP_REASONS_H_

#include <cstdint>

namespace lb {

enum class DropReason : uint8_t {
  kTruncated = 0,       // shorter than the headers it claims to carry
  kBadLength = 1,       // an IP/UDP length field that lies about the packet
  kBadIpHeader = 2,     // IPv4 version/IHL wrong, IPv6 version wrong
  kUnsupportedL3 = 3,   // EtherType we neither forward nor answer
  kBadL4Header = 4,     // TCP data offset < 5 or beyond the packet
  kBadExtHeaders = 5,   // IPv6 extension-header chain too long or malformed
  kNotForUs = 6,        // no VIP and not one of the node's own addresses
  kFragment = 7,        // IP fragment to a VIP that is not fragment-tolerant
  kNoBackend = 8,       // the VIP has no usable backend
  kTooBig = 9,          // larger than the egress MTU once encapsulated
  kNoNextHop = 10,      // next-hop MAC not resolved yet
  kTxFull = 11,         // the NIC refused the packet
  kIcmpUnmatched = 12,  // ICMP error whose inner packet is not a VIP flow
  kNoTable = 13,        // no table generation published yet
  kArpIgnored = 14,     // ARP not asking for one of our addresses
  kIcmpIgnored = 15,    // ICMP to the node that we do not answer
  kNoBuffer = 16,       // could not allocate an mbuf for a reply
  kTtlExceeded = 17,    // TTL / hop limit would reach zero
  kBackendsFull = 18,   // a new flow whose every usable backend is at max_connections
  kExceptionFull = 19,  // for the kernel (exception path) but its ring or budget is full
};

inline constexpr int kNumDropReasons = 20;

// Stable snake_case names, used in metrics labels and in test output.
inline const char* DropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kTruncated:
      return "truncated";
    case DropReason::kBadLength:
      return "bad_length";
    case DropReason::kBadIpHeader:
      return "bad_ip_header";
    case DropReason::kUnsupportedL3:
      return "unsupported_l3";
    case DropReason::kBadL4Header:
      return "bad_l4_header";
    case DropReason::kBadExtHeaders:
      return "bad_ext_headers";
    case DropReason::kNotForUs:
      return "not_for_us";
    case DropReason::kFragment:
      return "fragment";
    case DropReason::kNoBackend:
      return "no_backend";
    case DropReason::kTooBig:
      return "too_big";
    case DropReason::kNoNextHop:
      return "no_next_hop";
    case DropReason::kTxFull:
      return "tx_full";
    case DropReason::kIcmpUnmatched:
      return "icmp_unmatched";
    case DropReason::kNoTable:
      return "no_table";
    case DropReason::kArpIgnored:
      return "arp_ignored";
    case DropReason::kIcmpIgnored:
      return "icmp_ignored";
    case DropReason::kNoBuffer:
      return "no_buffer";
    case DropReason::kTtlExceeded:
      return "ttl_exceeded";
    case DropReason::kBackendsFull:
      return "backends_full";
    case DropReason::kExceptionFull:
      return "exception_full";
  }
  return "unknown";
}

}  // namespace lb

#endif  // LB_LIB_DROP_REASONS_H_
