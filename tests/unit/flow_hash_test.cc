// Flow hash: golden values (the hash is fleet ABI), mode semantics,
// distribution over Maglev-sized and power-of-two tables, avalanche.
#include "lib/flow_hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "lib/flow_key.h"

#include "tests/unit/flow_keys.h"

namespace lb {
namespace {

// 2001:db8::<last>
FlowKey V6Key(uint8_t src_last, uint8_t dst_last, uint16_t sport, uint16_t dport, uint8_t proto) {
  FlowKey k{};
  const uint8_t prefix[4] = {0x20, 0x01, 0x0d, 0xb8};
  std::memcpy(k.src, prefix, 4);
  std::memcpy(k.dst, prefix, 4);
  k.src[15] = src_last;
  k.dst[15] = dst_last;
  k.sport = sport;
  k.dport = dport;
  k.proto = proto;
  k.family = AddrFamily::kIPv6;
  return k;
}

// The documented canonical encoding, written out independently of the
// in-memory layout so this test means the same on any endianness.
void Encode(const FlowKey& k, uint8_t out[40]) {
  std::memcpy(out, k.src, 16);
  std::memcpy(out + 16, k.dst, 16);
  out[32] = static_cast<uint8_t>(k.sport);
  out[33] = static_cast<uint8_t>(k.sport >> 8);
  out[34] = static_cast<uint8_t>(k.dport);
  out[35] = static_cast<uint8_t>(k.dport >> 8);
  out[36] = k.proto;
  out[37] = static_cast<uint8_t>(k.family);
  out[38] = static_cast<uint8_t>(k.reserved);
  out[39] = static_cast<uint8_t>(k.reserved >> 8);
}

// Golden values computed with the reference libxxhash 0.8.1
// XXH3_64bits_withSeed() over the
// canonical encoding and kFlowHashSeed. If this fails you changed the fleet
// ABI: every LB node must be upgraded together (see flow_hash.h).
TEST(FlowHashTest, GoldenValues) {
  EXPECT_EQ(kFlowHashSeed, 0x6c62666c6f773031ULL);
  // 10.0.0.1:12345 -> 192.168.1.10:80 TCP
  EXPECT_EQ(HashFlow(V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6)), 0x4eb0d11415e867c6ULL);
  // [2001:db8::1]:5353 -> [2001:db8::2]:53 UDP
  EXPECT_EQ(HashFlow(V6Key(1, 2, 5353, 53, 17)), 0x77bec1a13416913bULL);
  // 203.0.113.7 -> 198.51.100.1 ICMP
  EXPECT_EQ(HashFlow(V4Key(0xcb007107, 0xc6336401, 0, 0, 1)), 0x9314521a75129954ULL);
}

// HashBytes is XXH3-64: reference libxxhash 0.8.1 outputs for a fixed pattern
// at lengths on both sides of every path boundary (0, 1-3, 4-8, 9-16, 17-128,
// 129-240, long input with one and several 1 KiB blocks).
TEST(FlowHashTest, HashBytesMatchesReferenceXxh3) {
  std::vector<uint8_t> pat(2500);
  for (size_t i = 0; i < pat.size(); ++i) pat[i] = static_cast<uint8_t>(i * 7 + 3);
  struct Vec {
    size_t len;
    uint64_t seed0;
    uint64_t seed_flow;
  };
  const Vec vecs[] = {
      {0, 0x2d06800538d394c2ULL, 0x71c3cc6286960b74ULL},
      {1, 0x13e608bc156defedULL, 0x68e2700f8793ce70ULL},
      {3, 0xa9088dda485b481cULL, 0xda77fd4967d98759ULL},
      {4, 0x6d9253b16c8b1ed3ULL, 0xae34ad55fa4155ceULL},
      {8, 0x60539db630471163ULL, 0xaa846223362e677eULL},
      {9, 0xfeff668361d723a8ULL, 0xf1eaf67aaf7dd626ULL},
      {16, 0xb8c859b0f030b585ULL, 0x504ca845ca75d9f5ULL},
      {17, 0x714a04408e79b80fULL, 0x8d8591735f47c637ULL},
      {40, 0x5fe78a29955db15aULL, 0xfadd1b071e6e6a41ULL},
      {128, 0x67425a03650261bfULL, 0x74df462ea3c6e1bcULL},
      {129, 0xc664bf3311c6abc4ULL, 0x5f1ed489b40d9360ULL},
      {240, 0x64556dc6b462a6cfULL, 0x8c0642ab564f26e9ULL},
      {241, 0x8beadd3a8874fe17ULL, 0x653ea182c8b4069cULL},
      {1024, 0x9b81661c641c72b1ULL, 0x61c278504eb8ef8cULL},
      {1025, 0x806c2072ed713576ULL, 0x6ca022e25586f108ULL},
      {2500, 0x3911477e37ac3c0fULL, 0x42c6b486352f73dcULL},
  };
  for (const Vec& v : vecs) {
    EXPECT_EQ(HashBytes(pat.data(), v.len, 0), v.seed0) << "len " << v.len;
    EXPECT_EQ(HashBytes(pat.data(), v.len, kFlowHashSeed), v.seed_flow) << "len " << v.len;
  }
}

TEST(FlowHashTest, HashFlowIsHashBytesOfCanonicalEncoding) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000; ++i) {
    FlowKey k{};
    for (auto& b : k.src) b = static_cast<uint8_t>(rng());
    for (auto& b : k.dst) b = static_cast<uint8_t>(rng());
    k.sport = static_cast<uint16_t>(rng());
    k.dport = static_cast<uint16_t>(rng());
    k.proto = static_cast<uint8_t>(rng());
    k.family = (rng() & 1) ? AddrFamily::kIPv4 : AddrFamily::kIPv6;
    uint8_t enc[40];
    Encode(k, enc);
    ASSERT_EQ(HashFlow(k), HashBytes(enc, sizeof(enc), kFlowHashSeed));
    ASSERT_EQ(HashFlowMode(k, HashMode::kFiveTuple), HashFlow(k));
  }
}

TEST(FlowHashTest, SourceIpModeUsesOnlyFamilyAndSource) {
  const FlowKey base = V4Key(0x0a000001, 0xc0a8010a, 12345, 80, 6);
  const uint64_t h = HashFlowMode(base, HashMode::kSourceIp);

  FlowKey k = base;
  k.dst[3] ^= 1;
  k.sport = 1;
  k.dport = 2;
  k.proto = 17;
  EXPECT_EQ(HashFlowMode(k, HashMode::kSourceIp), h);

  FlowKey only_src{};
  std::memcpy(only_src.src, base.src, 16);
  only_src.family = base.family;
  EXPECT_EQ(HashFlow(only_src), h);

  k = base;
  k.src[3] ^= 1;
  EXPECT_NE(HashFlowMode(k, HashMode::kSourceIp), h);
  k = base;
  k.family = AddrFamily::kIPv6;
  EXPECT_NE(HashFlowMode(k, HashMode::kSourceIp), h);
}

TEST(FlowHashTest, SrcDstProtoModeIgnoresOnlyPorts) {
  const FlowKey base = V6Key(1, 2, 5353, 53, 17);
  const uint64_t h = HashFlowMode(base, HashMode::kSrcDstProto);

  FlowKey k = base;
  k.sport = 0;
  k.dport = 0;
  // A non-first fragment (ports 0) hashes the same in both modes.
  EXPECT_EQ(HashFlowMode(k, HashMode::kSrcDstProto), h);
  EXPECT_EQ(HashFlow(k), h);
  k.sport = 999;
  EXPECT_EQ(HashFlowMode(k, HashMode::kSrcDstProto), h);

  k = base;
  k.dst[15] ^= 1;
  EXPECT_NE(HashFlowMode(k, HashMode::kSrcDstProto), h);
  k = base;
  k.src[0] ^= 0x80;
  EXPECT_NE(HashFlowMode(k, HashMode::kSrcDstProto), h);
  k = base;
  k.proto = 6;
  EXPECT_NE(HashFlowMode(k, HashMode::kSrcDstProto), h);
  // And the 5-tuple mode does see the ports.
  k = base;
  k.sport ^= 1;
  EXPECT_NE(HashFlow(k), HashFlow(base));
}

// Many clients from one /16 with sequential source ports to one VIP:443, the
// shape of real traffic and the worst case for a weak hash.
std::vector<uint64_t> SequentialHashes(int n) {
  std::vector<uint64_t> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    const uint32_t src = 0x0a0a0000u + static_cast<uint32_t>(i / 32);
    const uint16_t sport = static_cast<uint16_t>(40000 + i % 32);
    out.push_back(HashFlow(V4Key(src, 0xc6336401, sport, 443, 6)));
  }
  return out;
}

struct BucketStats {
  double mean;
  uint64_t max;
  double chi2;
};

template <typename F>
BucketStats Bucketize(const std::vector<uint64_t>& hashes, size_t buckets, F index) {
  std::vector<uint32_t> count(buckets);
  for (uint64_t h : hashes) ++count[index(h)];
  BucketStats s{};
  s.mean = static_cast<double>(hashes.size()) / buckets;
  for (uint32_t c : count) {
    s.max = std::max<uint64_t>(s.max, c);
    s.chi2 += (c - s.mean) * (c - s.mean) / s.mean;
  }
  return s;
}

// Chi-square with buckets-1 degrees of freedom: mean df, sd sqrt(2 df). Allow
// 5 sd (a uniform hash is inside with overwhelming probability; a biased one
// on 1M keys is far outside).
void ExpectChiSquareSane(const BucketStats& s, size_t buckets, const char* what) {
  const double df = static_cast<double>(buckets - 1);
  EXPECT_LT(std::abs(s.chi2 - df), 5 * std::sqrt(2 * df)) << what << " chi2=" << s.chi2;
}

TEST(FlowHashTest, DistributionOverMaglevTable) {
  const std::vector<uint64_t> hashes = SequentialHashes(1000000);
  constexpr size_t kTable = 65537;
  const BucketStats s = Bucketize(hashes, kTable, [](uint64_t h) { return h % kTable; });
  ExpectChiSquareSane(s, kTable, "h % 65537");
  // 15.3 keys per slot on average: max/mean near 1 is impossible even for an
  // ideal hash (Poisson max over 65537 slots is ~33). Bound it by the Poisson
  // tail instead: P(slot >= 40) ~ 1e-7 per slot.
  EXPECT_LT(s.max, 40u) << "mean " << s.mean;
}

TEST(FlowHashTest, DistributionLowAndHighBits) {
  const std::vector<uint64_t> hashes = SequentialHashes(1000000);
  // Connection-table bucket index from the low bits.
  BucketStats s = Bucketize(hashes, 65536, [](uint64_t h) { return h & 0xffff; });
  ExpectChiSquareSane(s, 65536, "low 16 bits");
  s = Bucketize(hashes, 65536, [](uint64_t h) { return h >> 48; });
  ExpectChiSquareSane(s, 65536, "high 16 bits");
  // Coarse tables, where max/mean is a meaningful bound (mean 3906, sd 62).
  s = Bucketize(hashes, 251, [](uint64_t h) { return h % 251; });
  EXPECT_LT(s.max / s.mean, 1.1);
  ExpectChiSquareSane(s, 251, "h % 251");
  s = Bucketize(hashes, 256, [](uint64_t h) { return h & 0xff; });
  EXPECT_LT(s.max / s.mean, 1.1);
  ExpectChiSquareSane(s, 256, "low 8 bits");
  s = Bucketize(hashes, 256, [](uint64_t h) { return h >> 56; });
  EXPECT_LT(s.max / s.mean, 1.1);
  ExpectChiSquareSane(s, 256, "high 8 bits");
}

// Flip each of the 320 input bits of random keys: on average half the output
// bits flip, and no output bit is stuck or strongly tied to any input bit.
TEST(FlowHashTest, Avalanche) {
  constexpr int kKeys = 2000;
  std::mt19937_64 rng(42);
  std::vector<uint32_t> flips(320 * 64);
  uint64_t total_flipped = 0;
  for (int n = 0; n < kKeys; ++n) {
    uint8_t bytes[40];
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    FlowKey k;
    std::memcpy(&k, bytes, sizeof(k));
    const uint64_t h = HashFlow(k);
    for (int bit = 0; bit < 320; ++bit) {
      FlowKey f = k;
      reinterpret_cast<uint8_t*>(&f)[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      const uint64_t d = h ^ HashFlow(f);
      total_flipped += static_cast<uint64_t>(__builtin_popcountll(d));
      for (int ob = 0; ob < 64; ++ob) flips[bit * 64 + ob] += (d >> ob) & 1;
    }
  }
  const double avg = static_cast<double>(total_flipped) / (kKeys * 320.0);
  EXPECT_NEAR(avg, 32.0, 0.2);
  double worst = 0;
  for (uint32_t c : flips) worst = std::max(worst, std::abs(c / double{kKeys} - 0.5));
  // 2000 trials per cell: sd 0.011; 0.08 is > 7 sd over 20480 cells.
  EXPECT_LT(worst, 0.08);
}

}  // namespace
}  // namespace lb
