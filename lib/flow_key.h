// FlowKey: the identity of a flow as the load balancer sees it.
//
// A plain, fixed-size, trivially copyable struct so that it can be hashed as
// bytes, stored in the connection table and compared with memcmp. Every byte
// is defined (padding is explicit and zero) so that two equal flows always
// compare and hash equal.
//
// Addresses are in network byte order; an IPv4 address occupies bytes [0, 4)
// and bytes [4, 16) are zero. Ports are in host byte order. For a
// fragment-tolerant VIP (or a fragment) the ports are zero, so that every
// fragment of a datagram maps to the same flow.
//
// Thread-safety: a value type; no shared state.
#ifndef LB_LIB_FLOW_KEY_H_
#define LB_LIB_FLOW_KEY_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lb {

enum class AddrFamily : uint8_t { kNone = 0, kIPv4 = 4, kIPv6 = 6 };

struct FlowKey {
  uint8_t src[16];
  uint8_t dst[16];
  uint16_t sport;
  uint16_t dport;
  uint8_t proto;  // IPPROTO_TCP, IPPROTO_UDP, ...
  AddrFamily family;
  uint16_t reserved;  // always zero

  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof(*this)) == 0; }
  bool operator!=(const FlowKey& o) const { return !(*this == o); }
};

static_assert(sizeof(FlowKey) == 40, "FlowKey is hashed and stored as 40 bytes");
static_assert(offsetof(FlowKey, sport) == 32, "FlowKey layout");
static_assert(offsetof(FlowKey, family) == 37, "FlowKey layout");

}  // namespace lb

#endif  // LB_LIB_FLOW_KEY_H_
