// Unaligned, bounds-unchecked loads and stores of network-order (big-endian)
// and little-endian integers, for the packet code in lib/. Callers check
// bounds first. memcpy-based, so they compile to single moves (plus a byte
// swap) on every target and never trip alignment or aliasing rules.
//
// Threads: pure functions.
#ifndef LB_LIB_BYTE_ORDER_H_
#define LB_LIB_BYTE_ORDER_H_

#include <cstdint>
#include <cstring>

namespace lb {

inline uint16_t LoadBe16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap16(v);
#endif
  return v;
}

inline uint32_t LoadBe32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

inline void StoreBe16(uint8_t* p, uint16_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap16(v);
#endif
  std::memcpy(p, &v, sizeof(v));
}

inline void StoreBe32(uint8_t* p, uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  std::memcpy(p, &v, sizeof(v));
}

// Little-endian 64-bit load (the flow hash's byte-defined encoding).
inline uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

}  // namespace lb

#endif  // LB_LIB_BYTE_ORDER_H_
