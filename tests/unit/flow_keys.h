// FlowKey builders shared by the unit tests of lib/ (flow hash, backend
// pick, packet parser goldens).
#ifndef LB_TESTS_UNIT_FLOW_KEYS_H_
#define LB_TESTS_UNIT_FLOW_KEYS_H_

#include <cstdint>

#include "lib/flow_key.h"

namespace lb {

// An IPv4 key from host-order addresses.
inline FlowKey V4Key(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto) {
  FlowKey k{};
  for (int i = 0; i < 4; ++i) {
    k.src[i] = static_cast<uint8_t>(src >> (24 - 8 * i));
    k.dst[i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
  }
  k.sport = sport;
  k.dport = dport;
  k.proto = proto;
  k.family = AddrFamily::kIPv4;
  return k;
}

}  // namespace lb

#endif  // LB_TESTS_UNIT_FLOW_KEYS_H_
