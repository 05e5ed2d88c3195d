// Connection-table test keys and hash, shared by conn_table_test and
// conn_table_guard_test: flow `id` as a key (its low 32 bits the source
// address, its high bits the source port), and a stand-in for
// lib/flow_hash.h (any well-mixed 64-bit hash of the key bytes will do).
#ifndef LB_TESTS_UNIT_CONN_KEYS_H_
#define LB_TESTS_UNIT_CONN_KEYS_H_

#include <cstdint>
#include <cstring>

#include "lib/flow_key.h"

namespace lb {

inline constexpr uint8_t kTcpProto = 6;
inline constexpr uint8_t kUdpProto = 17;
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kAck = 0x10;

inline FlowKey MakeKey(uint64_t id, uint8_t proto = kTcpProto) {
  FlowKey k;
  std::memset(&k, 0, sizeof(k));
  const uint32_t lo = static_cast<uint32_t>(id);
  std::memcpy(k.src, &lo, 4);
  k.dst[0] = 192;
  k.dst[1] = 0;
  k.dst[2] = 2;
  k.dst[3] = 1;
  k.sport = static_cast<uint16_t>(1024 + (id >> 32));
  k.dport = 443;
  k.proto = proto;
  k.family = AddrFamily::kIPv4;
  return k;
}

inline uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t TestHash(const FlowKey& k) {
  uint64_t w[5];
  std::memcpy(w, &k, sizeof(k));
  uint64_t h = 0;
  for (uint64_t x : w) h = Mix(h ^ x);
  return h;
}

}  // namespace lb

#endif  // LB_TESTS_UNIT_CONN_KEYS_H_
