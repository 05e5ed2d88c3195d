// Flow hashing: the function that decides which backend a flow lands on.
//
// Algorithm: XXH3-64 (xxHash 0.8 "XXH3_64bits_withSeed", Yann Collet; stable
// since xxHash 0.8.0, specified in the xxHash repository's doc/xxhash_spec.md)
// with the fixed seed kFlowHashSeed over a canonical 40-byte encoding of the
// FlowKey:
//
//   bytes  0..15  src address (network order, IPv4 in bytes 0..3, rest zero)
//   bytes 16..31  dst address
//   bytes 32..33  sport, little-endian
//   bytes 34..35  dport, little-endian
//   byte  36      proto
//   byte  37      family (AddrFamily value)
//   bytes 38..39  reserved (zero)
//
// On a little-endian machine that is exactly the in-memory FlowKey, so the hot
// path is five 64-bit loads and four independent 64x64->128-bit multiplies
// (XXH3's 17..128-byte path); on a big-endian machine the encoding is composed
// explicitly so that the result is the same. The implementation is
// libxxhash's own (>= 0.8.0, Debian's libxxhash-dev), inlined. Any other implementation (a test
// tool, a script, another language) reproduces HashFlow() with any xxHash
// >= 0.8.0: XXH3_64bits_withSeed(encoding, 40, kFlowHashSeed).
// XXH3 rather than XXH64: on 40 bytes it measured ~8 against ~40 TSC cycles
// per key (4 multiplies instead of 25).
//
// Contract: deterministic across processes, runs, machines and builds. There is
// no random seed anywhere. CHANGING THE ALGORITHM, THE SEED OR THE ENCODING IS
// AN ABI CHANGE: every LB node in a fleet must agree, or flows that ECMP moves
// between nodes land on different backends (and anything derived from
// HashBytes(), such as Maglev permutations, stops being byte-identical). The golden values in
// tests/unit/flow_hash_test.cc pin it down.
//
// Modes (HashFlowMode) hash the same encoding with some fields zeroed, so
//   HashFlowMode(k, kFiveTuple)   == HashFlow(k)
//   HashFlowMode(k, kSrcDstProto) == HashFlow(k with sport = dport = 0)
//   HashFlowMode(k, kSourceIp)    == HashFlow(k with only src and family kept)
// In particular every fragment of a datagram (ports 0) hashes the same under
// kFiveTuple and kSrcDstProto, and the first fragment hashes with them under
// kSrcDstProto whatever ports the parser recorded for it.
//
// Failure: none; every input has a hash. Thread-safety: pure functions, any
// thread. Per-packet safe: no allocation, no branches on key contents.
#ifndef LB_LIB_FLOW_HASH_H_
#define LB_LIB_FLOW_HASH_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "lib/byte_order.h"
#include "lib/flow_key.h"

// libxxhash (Debian libxxhash-dev), every function inlined into the caller.
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace lb {

enum class HashMode : uint8_t {
  kFiveTuple,    // src, dst, sport, dport, proto, family
  kSourceIp,     // family + src only (client affinity)
  kSrcDstProto,  // family + src + dst + proto, ports ignored (fragment-safe)
};

// Fixed seed ("lbflow01" in ASCII). Part of the ABI, see above.
inline constexpr uint64_t kFlowHashSeed = 0x6c62666c6f773031ULL;

// XXH3_64bits_withSeed of [data, data + len), any length. The same function as
// HashFlow(): HashFlow(k) == HashBytes(<canonical encoding of k>, 40,
// kFlowHashSeed). Not specialised: meant for the control plane (Maglev
// offset/skip of backend names) or occasional per-packet use.
inline uint64_t HashBytes(const void* data, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(data, len, seed);
}

namespace flow_hash_internal {

// The 40-byte canonical encoding as five 64-bit words in memory order.
struct Encoding {
  uint64_t w[5];
};

inline void Encode(const FlowKey& k, Encoding* e) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  static_assert(sizeof(FlowKey) == sizeof(Encoding), "FlowKey is the canonical encoding");
  std::memcpy(e, &k, sizeof(*e));
#else
  uint8_t* b = reinterpret_cast<uint8_t*>(e);
  std::memcpy(b, k.src, 16);
  std::memcpy(b + 16, k.dst, 16);
  b[32] = static_cast<uint8_t>(k.sport);
  b[33] = static_cast<uint8_t>(k.sport >> 8);
  b[34] = static_cast<uint8_t>(k.dport);
  b[35] = static_cast<uint8_t>(k.dport >> 8);
  b[36] = k.proto;
  b[37] = static_cast<uint8_t>(k.family);
  b[38] = static_cast<uint8_t>(k.reserved);
  b[39] = static_cast<uint8_t>(k.reserved >> 8);
#endif
}

// Word 4 of the encoding keeps proto and family (bytes 36, 37), or family
// only (byte 37). Byte masks, so they mean the same on any endianness.
inline uint64_t ByteMask(int first, int count) {
  uint64_t m = 0;
  uint8_t* b = reinterpret_cast<uint8_t*>(&m);
  for (int i = first; i < first + count; ++i) b[i] = 0xff;
  return m;
}

// XXH3_64bits_withSeed from libxxhash, inlined (XXH_INLINE_ALL) and, with
// flatten, specialised to the constant 40-byte length: the compiler keeps
// only XXH3's 17..128-byte path (four 64x64->128-bit multiplies).
[[gnu::flatten]] inline uint64_t Hash40(const Encoding& e) {
  return XXH3_64bits_withSeed(&e, sizeof(e), kFlowHashSeed);
}

}  // namespace flow_hash_internal

// Full 5-tuple hash (plus family). The per-packet default.
inline uint64_t HashFlow(const FlowKey& k) {
  namespace fh = flow_hash_internal;
  fh::Encoding e;
  fh::Encode(k, &e);
  return fh::Hash40(e);
}

inline uint64_t HashFlowMode(const FlowKey& k, HashMode m) {
  namespace fh = flow_hash_internal;
  fh::Encoding e;
  fh::Encode(k, &e);
  // Masks instead of branches around the hash: one code path for all modes.
  const uint64_t dst_mask = m == HashMode::kSourceIp ? 0 : ~0ULL;
  const uint64_t tail_mask = m == HashMode::kFiveTuple  ? ~0ULL
                             : m == HashMode::kSourceIp ? fh::ByteMask(5, 1)
                                                        : fh::ByteMask(4, 2);
  e.w[2] &= dst_mask;
  e.w[3] &= dst_mask;
  e.w[4] &= tail_mask;
  return fh::Hash40(e);
}

}  // namespace lb

#endif  // LB_LIB_FLOW_HASH_H_
