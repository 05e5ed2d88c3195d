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
// (XXH3's 17..128-byte path); on a big-endian machine the port word is composed
// explicitly so that the result is the same. Any other implementation (a test
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
uint64_t HashBytes(const void* data, size_t len, uint64_t seed);

namespace flow_hash_internal {

inline constexpr uint64_t kPrime64_1 = 0x9E3779B185EBCA87ULL;

// The first 64 bytes of XXH3's default secret (XXH3_kSecret); the 40-byte
// path reads only these. The full 192 bytes live in flow_hash.cc.
inline constexpr uint64_t kSecret40[8] = {
    0xbe4ba423396cfeb8ULL, 0x1cad21f72c81017cULL, 0xdb979083e96dd4deULL, 0x1f67b3b7a4a44072ULL,
    0x78e5c0cc4ee679cbULL, 0x2172ffcc7dd05a82ULL, 0x8e2443f7744608b8ULL, 0x4c263a81e69035e0ULL,
};

__extension__ typedef unsigned __int128 Uint128;

inline uint64_t Mul128Fold64(uint64_t a, uint64_t b) {
  const Uint128 p = static_cast<Uint128>(a) * b;
  return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
}

// XXH3_mix16B on two little-endian input words and secret words si, si + 1.
inline uint64_t Mix16(uint64_t lo, uint64_t hi, int si, uint64_t seed) {
  return Mul128Fold64(lo ^ (kSecret40[si] + seed), hi ^ (kSecret40[si + 1] - seed));
}

inline uint64_t Xxh3Avalanche(uint64_t h) {
  h ^= h >> 37;
  h *= 0x165667919E3779F9ULL;
  h ^= h >> 32;
  return h;
}

// XXH3_64bits_withSeed specialised to exactly 40 input bytes given as five
// little-endian words (XXH3_len_17to128_64b with len = 40: four independent
// 128-bit multiplies over the overlapping 16-byte windows at 0, 24, 16, 8).
inline uint64_t Xxh3Words40(uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3, uint64_t w4,
                            uint64_t seed) {
  uint64_t acc = 40 * kPrime64_1;
  acc += Mix16(w2, w3, 4, seed);  // input + 16, secret + 32
  acc += Mix16(w1, w2, 6, seed);  // input + len - 32, secret + 48
  acc += Mix16(w0, w1, 0, seed);  // input + 0, secret + 0
  acc += Mix16(w3, w4, 2, seed);  // input + len - 16, secret + 16
  return Xxh3Avalanche(acc);
}

// The fifth word of the encoding: sport | dport<<16 | proto<<32 | family<<40.
inline uint64_t TailWord(const FlowKey& k) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  std::memcpy(&v, &k.sport, sizeof(v));
  return v;
#else
  return uint64_t{k.sport} | (uint64_t{k.dport} << 16) | (uint64_t{k.proto} << 32) |
         (uint64_t{static_cast<uint8_t>(k.family)} << 40) | (uint64_t{k.reserved} << 48);
#endif
}

inline constexpr uint64_t kTailFamilyMask = 0xffULL << 40;
inline constexpr uint64_t kTailProtoFamilyMask = 0xffffULL << 32;

}  // namespace flow_hash_internal

// Full 5-tuple hash (plus family). The per-packet default.
inline uint64_t HashFlow(const FlowKey& k) {
  namespace fh = flow_hash_internal;
  return fh::Xxh3Words40(LoadLe64(k.src), LoadLe64(k.src + 8), LoadLe64(k.dst), LoadLe64(k.dst + 8),
                         fh::TailWord(k), kFlowHashSeed);
}

inline uint64_t HashFlowMode(const FlowKey& k, HashMode m) {
  namespace fh = flow_hash_internal;
  // Masks instead of branches around the hash: one code path for all modes.
  const uint64_t dst_mask = m == HashMode::kSourceIp ? 0 : ~0ULL;
  const uint64_t tail_mask = m == HashMode::kFiveTuple  ? ~0ULL
                             : m == HashMode::kSourceIp ? fh::kTailFamilyMask
                                                        : fh::kTailProtoFamilyMask;
  return fh::Xxh3Words40(LoadLe64(k.src), LoadLe64(k.src + 8), LoadLe64(k.dst) & dst_mask,
                         LoadLe64(k.dst + 8) & dst_mask, fh::TailWord(k) & tail_mask,
                         kFlowHashSeed);
}

}  // namespace lb

#endif  // LB_LIB_FLOW_HASH_H_
