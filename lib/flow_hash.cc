#include "lib/flow_hash.h"

namespace lb {

namespace {

namespace fh = flow_hash_internal;

// XXH3 specification (xxhash 0.8, doc/xxhash_spec.md): constants, the
// default secret, and the short / mid-size / long-input paths of
// XXH3_64bits_withSeed. flow_hash_test compares this against published
// reference outputs for every length class.

constexpr uint64_t kPrime32_1 = 0x9E3779B1U;
constexpr uint64_t kPrime32_2 = 0x85EBCA77U;
constexpr uint64_t kPrime32_3 = 0xC2B2AE3DU;
constexpr uint64_t kPrime64_1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime64_2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime64_3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime64_4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime64_5 = 0x27D4EB2F165667C5ULL;

constexpr size_t kSecretSize = 192;
constexpr size_t kSecretSizeMin = 136;
constexpr size_t kStripeLen = 64;
constexpr size_t kSecretConsumeRate = 8;
constexpr size_t kAccNb = 8;
constexpr size_t kMidSizeMax = 240;
constexpr size_t kMidSizeStartOffset = 3;
constexpr size_t kMidSizeLastOffset = 17;
constexpr size_t kSecretLastAccStart = 7;
constexpr size_t kSecretMergeAccsStart = 11;

constexpr uint8_t kSecret[kSecretSize] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

constexpr uint64_t ConstLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

constexpr bool SecretPrefixMatchesHeader() {
  for (size_t i = 0; i < 8; ++i) {
    if (ConstLe64(kSecret + 8 * i) != fh::kSecret40[i]) return false;
  }
  return true;
}
static_assert(SecretPrefixMatchesHeader(), "flow_hash.h kSecret40 must be XXH3_kSecret[0..64)");

uint32_t LoadLe32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

void StoreLe64(uint8_t* p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  std::memcpy(p, &v, sizeof(v));
}

uint64_t Rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t Xxh64Avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= kPrime64_2;
  h ^= h >> 29;
  h *= kPrime64_3;
  h ^= h >> 32;
  return h;
}

uint64_t Rrmxmx(uint64_t h, uint64_t len) {
  h ^= Rotl64(h, 49) ^ Rotl64(h, 24);
  h *= 0x9FB21C651E98DF25ULL;
  h ^= (h >> 35) + len;
  h *= 0x9FB21C651E98DF25ULL;
  return h ^ (h >> 28);
}

uint64_t Mix16B(const uint8_t* in, const uint8_t* secret, uint64_t seed) {
  return fh::Mul128Fold64(LoadLe64(in) ^ (LoadLe64(secret) + seed),
                          LoadLe64(in + 8) ^ (LoadLe64(secret + 8) - seed));
}

uint64_t Len0To16(const uint8_t* in, size_t len, uint64_t seed) {
  const uint8_t* s = kSecret;
  if (len > 8) {
    const uint64_t flip1 = (LoadLe64(s + 24) ^ LoadLe64(s + 32)) + seed;
    const uint64_t flip2 = (LoadLe64(s + 40) ^ LoadLe64(s + 48)) - seed;
    const uint64_t lo = LoadLe64(in) ^ flip1;
    const uint64_t hi = LoadLe64(in + len - 8) ^ flip2;
    return fh::Xxh3Avalanche(len + __builtin_bswap64(lo) + hi + fh::Mul128Fold64(lo, hi));
  }
  if (len >= 4) {
    seed ^= static_cast<uint64_t>(__builtin_bswap32(static_cast<uint32_t>(seed))) << 32;
    const uint64_t in1 = LoadLe32(in);
    const uint64_t in2 = LoadLe32(in + len - 4);
    const uint64_t flip = (LoadLe64(s + 8) ^ LoadLe64(s + 16)) - seed;
    return Rrmxmx((in2 + (in1 << 32)) ^ flip, len);
  }
  if (len > 0) {
    const uint32_t combined = (uint32_t{in[0]} << 16) | (uint32_t{in[len >> 1]} << 24) |
                              uint32_t{in[len - 1]} | (static_cast<uint32_t>(len) << 8);
    const uint64_t flip = (uint64_t{LoadLe32(s)} ^ LoadLe32(s + 4)) + seed;
    return Xxh64Avalanche(combined ^ flip);
  }
  return Xxh64Avalanche(seed ^ LoadLe64(s + 56) ^ LoadLe64(s + 64));
}

uint64_t Len17To128(const uint8_t* in, size_t len, uint64_t seed) {
  uint64_t acc = len * kPrime64_1;
  if (len > 32) {
    if (len > 64) {
      if (len > 96) {
        acc += Mix16B(in + 48, kSecret + 96, seed);
        acc += Mix16B(in + len - 64, kSecret + 112, seed);
      }
      acc += Mix16B(in + 32, kSecret + 64, seed);
      acc += Mix16B(in + len - 48, kSecret + 80, seed);
    }
    acc += Mix16B(in + 16, kSecret + 32, seed);
    acc += Mix16B(in + len - 32, kSecret + 48, seed);
  }
  acc += Mix16B(in, kSecret, seed);
  acc += Mix16B(in + len - 16, kSecret + 16, seed);
  return fh::Xxh3Avalanche(acc);
}

uint64_t Len129To240(const uint8_t* in, size_t len, uint64_t seed) {
  uint64_t acc = len * kPrime64_1;
  const size_t rounds = len / 16;
  for (size_t i = 0; i < 8; ++i) acc += Mix16B(in + 16 * i, kSecret + 16 * i, seed);
  acc = fh::Xxh3Avalanche(acc);
  for (size_t i = 8; i < rounds; ++i) {
    acc += Mix16B(in + 16 * i, kSecret + 16 * (i - 8) + kMidSizeStartOffset, seed);
  }
  acc += Mix16B(in + len - 16, kSecret + kSecretSizeMin - kMidSizeLastOffset, seed);
  return fh::Xxh3Avalanche(acc);
}

void Accumulate512(uint64_t* acc, const uint8_t* in, const uint8_t* secret) {
  for (size_t i = 0; i < kAccNb; ++i) {
    const uint64_t data = LoadLe64(in + 8 * i);
    const uint64_t key = data ^ LoadLe64(secret + 8 * i);
    acc[i ^ 1] += data;
    acc[i] += (key & 0xffffffffULL) * (key >> 32);
  }
}

void ScrambleAcc(uint64_t* acc, const uint8_t* secret) {
  for (size_t i = 0; i < kAccNb; ++i) {
    uint64_t a = acc[i];
    a ^= a >> 47;
    a ^= LoadLe64(secret + 8 * i);
    acc[i] = a * kPrime32_1;
  }
}

uint64_t HashLong(const uint8_t* in, size_t len, uint64_t seed) {
  // XXH3_initCustomSecret: the seed is folded into a derived secret.
  uint8_t secret[kSecretSize];
  for (size_t i = 0; i < kSecretSize / 16; ++i) {
    StoreLe64(secret + 16 * i, LoadLe64(kSecret + 16 * i) + seed);
    StoreLe64(secret + 16 * i + 8, LoadLe64(kSecret + 16 * i + 8) - seed);
  }
  uint64_t acc[kAccNb] = {kPrime32_3, kPrime64_1, kPrime64_2, kPrime64_3,
                          kPrime64_4, kPrime32_2, kPrime64_5, kPrime32_1};
  const size_t stripes_per_block = (kSecretSize - kStripeLen) / kSecretConsumeRate;
  const size_t block_len = kStripeLen * stripes_per_block;
  const size_t blocks = (len - 1) / block_len;
  for (size_t n = 0; n < blocks; ++n) {
    for (size_t s = 0; s < stripes_per_block; ++s) {
      Accumulate512(acc, in + n * block_len + s * kStripeLen, secret + s * kSecretConsumeRate);
    }
    ScrambleAcc(acc, secret + kSecretSize - kStripeLen);
  }
  const size_t stripes = ((len - 1) - block_len * blocks) / kStripeLen;
  for (size_t s = 0; s < stripes; ++s) {
    Accumulate512(acc, in + blocks * block_len + s * kStripeLen, secret + s * kSecretConsumeRate);
  }
  Accumulate512(acc, in + len - kStripeLen,
                secret + kSecretSize - kStripeLen - kSecretLastAccStart);
  uint64_t result = len * kPrime64_1;
  for (size_t i = 0; i < 4; ++i) {
    const uint8_t* s = secret + kSecretMergeAccsStart + 16 * i;
    result += fh::Mul128Fold64(acc[2 * i] ^ LoadLe64(s), acc[2 * i + 1] ^ LoadLe64(s + 8));
  }
  return fh::Xxh3Avalanche(result);
}

}  // namespace

uint64_t HashBytes(const void* data, size_t len, uint64_t seed) {
  const uint8_t* in = static_cast<const uint8_t*>(data);
  if (len <= 16) return Len0To16(in, len, seed);
  if (len <= 128) return Len17To128(in, len, seed);
  if (len <= kMidSizeMax) return Len129To240(in, len, seed);
  return HashLong(in, len, seed);
}

}  // namespace lb
