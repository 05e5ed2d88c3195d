// Golden tests for lib/encap.h: each of the four encapsulation forms applied to
// a hand-written inner packet and compared byte for byte with the expected
// output written out below. The expected bytes come from an independent
// Python/struct reference and were checked with tcpdump -vv (IPv4 header and
// inner TCP/UDP checksums "correct", outer fields as intended).
#include "lib/encap.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace lb {
namespace {

// Inner IPv4: TCP SYN 203.0.113.7:40000 -> VIP 192.0.2.10:443, TOS 0xb9 (DSCP
// EF, ECT(1)), DF, ID 0x1c46, TTL 63.
constexpr uint8_t kInner4[] = {
    0x45, 0xb9, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x20, 0xbf, 0xcb, 0x00,
    0x71, 0x07, 0xc0, 0x00, 0x02, 0x0a, 0x9c, 0x40, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xfa, 0xf0, 0x14, 0xde, 0x00, 0x00,
};
// The same with TOS 0 and DF clear.
constexpr uint8_t kInner4NoDf[] = {
    0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x00, 0x00, 0x3f, 0x06, 0x61, 0x78, 0xcb, 0x00,
    0x71, 0x07, 0xc0, 0x00, 0x02, 0x0a, 0x9c, 0x40, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xfa, 0xf0, 0x14, 0xde, 0x00, 0x00,
};
// Inner IPv6: UDP 2001:db8:1::7.5353 -> VIP 2001:db8:f::a.53, traffic class
// 0x28, flow label 0xabcde, hop limit 63, payload de ad be ef.
constexpr uint8_t kInner6[] = {
    0x62, 0x8a, 0xbc, 0xde, 0x00, 0x0c, 0x11, 0x3f, 0x20, 0x01, 0x0d, 0xb8, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x20, 0x01,
    0x0d, 0xb8, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x0a, 0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0xf1, 0x87, 0xde, 0xad, 0xbe, 0xef,
};

// Outer headers from LB 198.51.100.1 / 2001:db8:100::1 to backend 10.1.0.5 /
// 2001:db8:200::5, TTL 64, flow hash 0x12345678.
constexpr uint32_t kFlowHash = 0x12345678;
// TOS 0xb9 copied, DF copied, ID 0, protocol 4, checksum 0x05cb.
constexpr uint8_t kOuter4In4[] = {
    0x45, 0xb9, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04,
    0x05, 0xcb, 0xc6, 0x33, 0x64, 0x01, 0x0a, 0x01, 0x00, 0x05,
};
// DF clear: ID = 0x1c46 ^ 0x5678 = 0x4a3e.
constexpr uint8_t kOuter4In4NoDf[] = {
    0x45, 0x00, 0x00, 0x3c, 0x4a, 0x3e, 0x00, 0x00, 0x40, 0x04,
    0xfc, 0x45, 0xc6, 0x33, 0x64, 0x01, 0x0a, 0x01, 0x00, 0x05,
};
// Traffic class 0x28 as TOS, DF set for an IPv6 inner, protocol 41.
constexpr uint8_t kOuter6In4[] = {
    0x45, 0x28, 0x00, 0x48, 0x00, 0x00, 0x40, 0x00, 0x40, 0x29,
    0x06, 0x2b, 0xc6, 0x33, 0x64, 0x01, 0x0a, 0x01, 0x00, 0x05,
};
// Traffic class 0x28, flow label 0x45678, payload 52, next header 41.
constexpr uint8_t kOuter6In6[] = {
    0x62, 0x84, 0x56, 0x78, 0x00, 0x34, 0x29, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
};
// Traffic class 0xb9 from the IPv4 TOS, flow label 0x45678, next header 4.
constexpr uint8_t kOuter4In6[] = {
    0x6b, 0x94, 0x56, 0x78, 0x00, 0x28, 0x04, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
};

// Source 172.16.0.0/16 | 0x1234 (the hash rotated by 16): 172.16.18.52; the
// rest as kOuter4In4, checksum 0x71bb.
constexpr uint8_t kOuter4In4Prefix16[] = {
    0x45, 0xb9, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04,
    0x71, 0xbb, 0xac, 0x10, 0x12, 0x34, 0x0a, 0x01, 0x00, 0x05,
};
// GUE: total 68, protocol 17, checksum 0x05b6; UDP 54904 (0xc000 | 0x1678)
// -> 6080, length 48, checksum 0; the inner IPv4 packet follows directly.
constexpr uint8_t kOuter4In4Gue[] = {
    0x45, 0xb9, 0x00, 0x44, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x05, 0xb6, 0xc6, 0x33,
    0x64, 0x01, 0x0a, 0x01, 0x00, 0x05, 0xd6, 0x78, 0x17, 0xc0, 0x00, 0x30, 0x00, 0x00,
};
// GUE over IPv6: payload 60, next header 17, UDP 54904 -> 6080, length 60.
constexpr uint8_t kOuter6In6Gue[] = {
    0x62, 0x84, 0x56, 0x78, 0x00, 0x3c, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0xd6, 0x78, 0x17, 0xc0, 0x00, 0x3c, 0x00, 0x00,
};
// Source 2001:db8:100::/64: the last 32 bits are the rotated hash 0x56781234.
constexpr uint8_t kOuter6In6Prefix64[] = {
    0x62, 0x84, 0x56, 0x78, 0x00, 0x34, 0x29, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x56, 0x78, 0x12, 0x34, 0x20, 0x01, 0x0d, 0xb8,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
};

EncapParams Params4() {
  EncapParams p{};
  p.outer_family = AddrFamily::kIPv4;
  const uint8_t src[4] = {198, 51, 100, 1};
  const uint8_t dst[4] = {10, 1, 0, 5};
  std::memcpy(p.src, src, 4);
  std::memcpy(p.dst, dst, 4);
  p.ttl = 64;
  return p;
}

EncapParams Params6() {
  EncapParams p{};
  p.outer_family = AddrFamily::kIPv6;
  const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
  std::memcpy(p.src, src, 16);
  std::memcpy(p.dst, dst, 16);
  p.ttl = 64;
  return p;
}

EncapParams Prefix4(uint8_t len) {
  EncapParams p = Params4();
  const uint8_t src[4] = {172, 16, 0, 0};
  std::memcpy(p.src, src, 4);
  p.src_prefix_len = len;
  return p;
}

EncapParams Prefix6(uint8_t len) {
  EncapParams p = Params6();
  p.src[15] = 0;  // 2001:db8:100::
  p.src_prefix_len = len;
  return p;
}

EncapParams Gue(EncapParams p) {
  p.kind = EncapKind::kGue;
  p.gue_port = 6080;
  return p;
}

std::string Hex(const uint8_t* p, size_t n) {
  std::string s;
  char buf[8];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%s%02x", i % 16 == 0 ? (i ? "\n  " : "  ") : " ", p[i]);
    s += buf;
  }
  return s;
}

// Byte-exact comparison that prints both packets and the first difference.
::testing::AssertionResult BytesEq(const std::vector<uint8_t>& actual,
                                   const std::vector<uint8_t>& expected) {
  if (actual == expected) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < actual.size() && i < expected.size() && actual[i] == expected[i]) ++i;
  return ::testing::AssertionFailure()
         << "first difference at byte " << i << " (sizes " << actual.size() << " vs "
         << expected.size() << ")\nactual:\n"
         << Hex(actual.data(), actual.size()) << "\nexpected:\n"
         << Hex(expected.data(), expected.size());
}

std::vector<uint8_t> Concat(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) {
  std::vector<uint8_t> v(a, a + an);
  v.insert(v.end(), b, b + bn);
  return v;
}

// RFC 1071 written the slow, obvious way, independent of lib/checksum.h.
uint16_t RefChecksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i < n; i += 2) {
    sum += static_cast<uint32_t>(p[i]) << 8;
    if (i + 1 < n) sum += p[i + 1];
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

struct Form {
  const char* name;
  const uint8_t* inner;
  size_t inner_len;
  AddrFamily inner_family;
  EncapParams params;
  const uint8_t* outer;
  size_t outer_len;
};

std::vector<Form> Forms() {
  return {
      {"4in4", kInner4, sizeof(kInner4), AddrFamily::kIPv4, Params4(), kOuter4In4,
       sizeof(kOuter4In4)},
      {"4in4-nodf", kInner4NoDf, sizeof(kInner4NoDf), AddrFamily::kIPv4, Params4(), kOuter4In4NoDf,
       sizeof(kOuter4In4NoDf)},
      {"6in6", kInner6, sizeof(kInner6), AddrFamily::kIPv6, Params6(), kOuter6In6,
       sizeof(kOuter6In6)},
      {"4in6", kInner4, sizeof(kInner4), AddrFamily::kIPv4, Params6(), kOuter4In6,
       sizeof(kOuter4In6)},
      {"6in4", kInner6, sizeof(kInner6), AddrFamily::kIPv6, Params4(), kOuter6In4,
       sizeof(kOuter6In4)},
      {"4in4-prefix16", kInner4, sizeof(kInner4), AddrFamily::kIPv4, Prefix4(16),
       kOuter4In4Prefix16, sizeof(kOuter4In4Prefix16)},
      {"6in6-prefix64", kInner6, sizeof(kInner6), AddrFamily::kIPv6, Prefix6(64),
       kOuter6In6Prefix64, sizeof(kOuter6In6Prefix64)},
      {"4in4-gue", kInner4, sizeof(kInner4), AddrFamily::kIPv4, Gue(Params4()), kOuter4In4Gue,
       sizeof(kOuter4In4Gue)},
      {"6in6-gue", kInner6, sizeof(kInner6), AddrFamily::kIPv6, Gue(Params6()), kOuter6In6Gue,
       sizeof(kOuter6In6Gue)},
  };
}

TEST(EncapTest, GoldenForms) {
  for (const Form& f : Forms()) {
    SCOPED_TRACE(f.name);
    // The dataplane's layout: outer header room right before the inner packet.
    std::vector<uint8_t> pkt(f.outer_len, 0xaa);
    pkt.insert(pkt.end(), f.inner, f.inner + f.inner_len);
    const size_t n = WriteEncapHeader(pkt.data(), pkt.data() + f.outer_len, f.inner_len,
                                      f.inner_family, f.params, kFlowHash);
    ASSERT_EQ(n, f.outer_len);
    EXPECT_EQ(n, EncapOverhead(f.params.outer_family, f.params.kind));
    EXPECT_TRUE(BytesEq(pkt, Concat(f.outer, f.outer_len, f.inner, f.inner_len)));
    if (f.params.outer_family == AddrFamily::kIPv4) {
      EXPECT_EQ(RefChecksum(pkt.data(), kIPv4HeaderLen), 0);
    }

    size_t off = 0, len = 0;
    AddrFamily fam = AddrFamily::kNone;
    const uint16_t gue = f.params.kind == EncapKind::kGue ? f.params.gue_port : 0;
    ASSERT_TRUE(ParseEncap(pkt.data(), pkt.size(), &off, &len, &fam, gue));
    EXPECT_EQ(off, f.outer_len);
    EXPECT_EQ(len, f.inner_len);
    EXPECT_EQ(fam, f.inner_family);
  }
}

TEST(EncapTest, OverheadPerFamily) {
  EXPECT_EQ(EncapOverhead(AddrFamily::kIPv4), 20u);
  EXPECT_EQ(EncapOverhead(AddrFamily::kIPv6), 40u);
  EXPECT_EQ(EncapOverhead(AddrFamily::kNone), 0u);
}

TEST(EncapTest, GueOverheadIs28Or48) {
  EXPECT_EQ(EncapOverhead(AddrFamily::kIPv4, EncapKind::kGue), 28u);
  EXPECT_EQ(EncapOverhead(AddrFamily::kIPv6, EncapKind::kGue), 48u);
  EXPECT_EQ(EncapOverhead(AddrFamily::kNone, EncapKind::kGue), 0u);
}

// Every flow's outer source stays inside the prefix, the IPv4 checksum stays
// right, a flow keeps its source, and flows spread over the host bits.
TEST(EncapTest, PerFlowSourceStaysInThePrefixAndSpreads) {
  for (uint8_t len : {8, 16, 24, 31}) {
    SCOPED_TRACE(static_cast<int>(len));
    const EncapParams p = Prefix4(len);
    const uint32_t mask = ~uint32_t{0} << (32 - len);
    std::set<uint32_t> sources;
    for (uint32_t i = 0; i < 1000; ++i) {
      const uint32_t h = i * 0x9e3779b9u;
      uint8_t out[kIPv4HeaderLen], again[kIPv4HeaderLen];
      ASSERT_EQ(WriteEncapHeader(out, kInner4, sizeof(kInner4), AddrFamily::kIPv4, p, h), 20u);
      ASSERT_EQ(WriteEncapHeader(again, kInner4, sizeof(kInner4), AddrFamily::kIPv4, p, h), 20u);
      ASSERT_EQ(std::memcmp(out, again, sizeof(out)), 0);
      ASSERT_EQ(RefChecksum(out, sizeof(out)), 0);
      const uint32_t src = (uint32_t{out[12]} << 24) | (out[13] << 16) | (out[14] << 8) | out[15];
      ASSERT_EQ(src & mask, 0xac100000u & mask);
      sources.insert(src);
    }
    EXPECT_GE(sources.size(), len == 31 ? 2u : 200u);
  }
  std::set<uint32_t> sources6;
  for (uint32_t i = 0; i < 1000; ++i) {
    uint8_t out[kIPv6HeaderLen];
    ASSERT_EQ(WriteEncapHeader(out, kInner6, sizeof(kInner6), AddrFamily::kIPv6, Prefix6(112),
                               i * 0x9e3779b9u),
              40u);
    const uint8_t want[14] = {0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ASSERT_EQ(std::memcmp(out + 8, want, 14), 0);
    sources6.insert((out[22] << 8) | out[23]);
  }
  EXPECT_GE(sources6.size(), 200u);
}

TEST(EncapTest, GueSourcePortFromTheHashAndParseChecksThePort) {
  std::set<uint16_t> ports;
  for (uint32_t i = 0; i < 1000; ++i) {
    std::vector<uint8_t> pkt(28);
    pkt.insert(pkt.end(), kInner4, kInner4 + sizeof(kInner4));
    ASSERT_EQ(WriteEncapHeader(pkt.data(), pkt.data() + 28, sizeof(kInner4), AddrFamily::kIPv4,
                               Gue(Params4()), i * 0x9e3779b9u),
              28u);
    const uint16_t sport = static_cast<uint16_t>((pkt[20] << 8) | pkt[21]);
    ASSERT_GE(sport, kGueSourcePortBase);
    ports.insert(sport);
    size_t off = 0, len = 0;
    AddrFamily fam = AddrFamily::kNone;
    ASSERT_FALSE(ParseEncap(pkt.data(), pkt.size(), &off, &len, &fam, 0));     // GUE not asked
    ASSERT_FALSE(ParseEncap(pkt.data(), pkt.size(), &off, &len, &fam, 6081));  // other port
    ASSERT_TRUE(ParseEncap(pkt.data(), pkt.size(), &off, &len, &fam, 6080));
    ASSERT_EQ(off, 28u);
    ASSERT_EQ(len, sizeof(kInner4));
  }
  EXPECT_GE(ports.size(), 500u);
}

TEST(EncapTest, FlowLabelIsTheLow20BitsOfTheHashAndNeverZero) {
  uint8_t out[kIPv6HeaderLen];
  for (uint32_t h : {0x00000001u, 0x000fffffu, 0xfff12345u, 0x00100000u, 0u}) {
    SCOPED_TRACE(h);
    ASSERT_EQ(WriteEncapHeader(out, kInner6, sizeof(kInner6), AddrFamily::kIPv6, Params6(), h),
              kIPv6HeaderLen);
    const uint32_t label = (static_cast<uint32_t>(out[1] & 0x0f) << 16) | (out[2] << 8) | out[3];
    const uint32_t want = (h & 0xfffff) == 0 ? 1 : (h & 0xfffff);
    EXPECT_EQ(label, want);
    EXPECT_EQ(out[0], 0x62);  // version 6, traffic class high nibble untouched
    EXPECT_EQ(out[1] >> 4, 0x8);
  }
}

TEST(EncapTest, OuterTtlComesFromParams) {
  EncapParams p = Params4();
  p.ttl = 5;
  uint8_t out[kIPv4HeaderLen];
  ASSERT_EQ(WriteEncapHeader(out, kInner4, sizeof(kInner4), AddrFamily::kIPv4, p, 0), 20u);
  EXPECT_EQ(out[8], 5);
  EXPECT_EQ(RefChecksum(out, sizeof(out)), 0);
  EncapParams p6 = Params6();
  p6.ttl = 7;
  uint8_t out6[kIPv6HeaderLen];
  ASSERT_EQ(WriteEncapHeader(out6, kInner4, sizeof(kInner4), AddrFamily::kIPv4, p6, 0), 40u);
  EXPECT_EQ(out6[7], 7);
}

// Returns 0 and leaves `outer` untouched.
void ExpectRejected(const uint8_t* inner, size_t inner_len, AddrFamily fam, const EncapParams& p) {
  uint8_t outer[kIPv6HeaderLen + kUdpHeaderLen];
  std::memset(outer, 0xaa, sizeof(outer));
  EXPECT_EQ(WriteEncapHeader(outer, inner, inner_len, fam, p, kFlowHash), 0u);
  for (uint8_t b : outer) ASSERT_EQ(b, 0xaa) << "rejected call wrote the header";
}

TEST(EncapTest, RejectsMalformedInner) {
  std::vector<uint8_t> v4(kInner4, kInner4 + sizeof(kInner4));
  std::vector<uint8_t> v6(kInner6, kInner6 + sizeof(kInner6));
  for (const EncapParams& p : {Params4(), Params6()}) {
    SCOPED_TRACE(p.outer_family == AddrFamily::kIPv4 ? "outer v4" : "outer v6");
    // Family does not match the version nibble.
    ExpectRejected(v4.data(), v4.size(), AddrFamily::kIPv6, p);
    ExpectRejected(v6.data(), v6.size(), AddrFamily::kIPv4, p);
    ExpectRejected(v4.data(), v4.size(), AddrFamily::kNone, p);
    // Shorter than the fixed header.
    ExpectRejected(v4.data(), 19, AddrFamily::kIPv4, p);
    ExpectRejected(v6.data(), 39, AddrFamily::kIPv6, p);
    // inner_len disagrees with the stated length (e.g. Ethernet padding kept).
    std::vector<uint8_t> padded = v4;
    padded.resize(46, 0);
    ExpectRejected(padded.data(), padded.size(), AddrFamily::kIPv4, p);
    ExpectRejected(v4.data(), v4.size() - 1, AddrFamily::kIPv4, p);
    ExpectRejected(v6.data(), v6.size() - 1, AddrFamily::kIPv6, p);
    // IHL below 5 and beyond the packet.
    std::vector<uint8_t> bad = v4;
    bad[0] = 0x44;
    ExpectRejected(bad.data(), bad.size(), AddrFamily::kIPv4, p);
    bad[0] = 0x4f;  // 60 bytes of header in a 40-byte packet
    ExpectRejected(bad.data(), bad.size(), AddrFamily::kIPv4, p);
    // IPv6 jumbogram (payload length 0).
    bad = v6;
    bad[4] = bad[5] = 0;
    ExpectRejected(bad.data(), bad.size(), AddrFamily::kIPv6, p);
  }
  EncapParams none = Params4();
  none.outer_family = AddrFamily::kNone;
  ExpectRejected(kInner4, sizeof(kInner4), AddrFamily::kIPv4, none);
  EncapParams ttl0 = Params4();
  ttl0.ttl = 0;
  ExpectRejected(kInner4, sizeof(kInner4), AddrFamily::kIPv4, ttl0);
}

// An inner IPv4 packet of `total` bytes (header + zeros), lengths consistent.
std::vector<uint8_t> BigInner4(size_t total) {
  std::vector<uint8_t> v(total, 0);
  std::memcpy(v.data(), kInner4, kIPv4HeaderLen);
  v[2] = static_cast<uint8_t>(total >> 8);
  v[3] = static_cast<uint8_t>(total);
  return v;
}

std::vector<uint8_t> BigInner6(size_t payload) {
  std::vector<uint8_t> v(kIPv6HeaderLen + payload, 0);
  std::memcpy(v.data(), kInner6, kIPv6HeaderLen);
  v[4] = static_cast<uint8_t>(payload >> 8);
  v[5] = static_cast<uint8_t>(payload);
  return v;
}

TEST(EncapTest, OversizedResultIsRejectedAtTheExactLimit) {
  uint8_t out[kIPv6HeaderLen];
  // IPv4 outer: total length 20 + inner must fit 65535.
  auto fits = BigInner4(65535 - 20);
  EXPECT_EQ(WriteEncapHeader(out, fits.data(), fits.size(), AddrFamily::kIPv4, Params4(), 0), 20u);
  EXPECT_EQ(out[2], 0xff);
  EXPECT_EQ(out[3], 0xff);
  auto over = BigInner4(65535 - 19);
  ExpectRejected(over.data(), over.size(), AddrFamily::kIPv4, Params4());
  // IPv6 outer: the whole inner is the payload, up to 65535.
  auto max4 = BigInner4(65535);
  EXPECT_EQ(WriteEncapHeader(out, max4.data(), max4.size(), AddrFamily::kIPv4, Params6(), 0), 40u);
  EXPECT_EQ(out[4], 0xff);
  EXPECT_EQ(out[5], 0xff);
  auto v6fits = BigInner6(65535 - 40);
  EXPECT_EQ(WriteEncapHeader(out, v6fits.data(), v6fits.size(), AddrFamily::kIPv6, Params6(), 0),
            40u);
  auto v6over = BigInner6(65535 - 39);
  ExpectRejected(v6over.data(), v6over.size(), AddrFamily::kIPv6, Params6());
  // IPv6 in IPv4: 20 + 40 + payload.
  auto v6in4fits = BigInner6(65535 - 60);
  EXPECT_EQ(
      WriteEncapHeader(out, v6in4fits.data(), v6in4fits.size(), AddrFamily::kIPv6, Params4(), 0),
      20u);
  auto v6in4over = BigInner6(65535 - 59);
  ExpectRejected(v6in4over.data(), v6in4over.size(), AddrFamily::kIPv6, Params4());
}

TEST(EncapTest, RoundTripsOverManySizes) {
  for (const EncapParams& p : {Params4(), Params6()}) {
    for (AddrFamily fam : {AddrFamily::kIPv4, AddrFamily::kIPv6}) {
      for (size_t extra : {0u, 1u, 7u, 100u, 1399u, 9000u}) {
        std::vector<uint8_t> inner = fam == AddrFamily::kIPv4 ? BigInner4(kIPv4HeaderLen + extra)
                                                              : BigInner6(extra == 0 ? 1 : extra);
        for (size_t i = 20; i < inner.size(); ++i) inner[i] = static_cast<uint8_t>(i * 31);
        const size_t room = EncapOverhead(p.outer_family);
        std::vector<uint8_t> pkt(room);
        pkt.insert(pkt.end(), inner.begin(), inner.end());
        ASSERT_EQ(WriteEncapHeader(pkt.data(), pkt.data() + room, inner.size(), fam, p, 99), room);
        pkt.resize(pkt.size() + 6, 0);  // trailing padding is not part of the inner packet
        size_t off = 0, len = 0;
        AddrFamily got = AddrFamily::kNone;
        ASSERT_TRUE(ParseEncap(pkt.data(), pkt.size(), &off, &len, &got));
        EXPECT_EQ(off, room);
        EXPECT_EQ(got, fam);
        ASSERT_EQ(len, inner.size());
        EXPECT_EQ(std::memcmp(pkt.data() + off, inner.data(), len), 0);
      }
    }
  }
}

TEST(EncapTest, ParseEncapRejectsWhatIsNotATunnel) {
  std::vector<uint8_t> good = Concat(kOuter4In4, sizeof(kOuter4In4), kInner4, sizeof(kInner4));
  std::vector<uint8_t> good6 = Concat(kOuter6In6, sizeof(kOuter6In6), kInner6, sizeof(kInner6));
  size_t off = 123, len = 456;
  AddrFamily fam = AddrFamily::kNone;
  auto rejects = [&](const std::vector<uint8_t>& pkt) {
    const bool ok = ParseEncap(pkt.data(), pkt.size(), &off, &len, &fam);
    return !ok && off == 123 && len == 456 && fam == AddrFamily::kNone;
  };
  // A plain TCP or UDP packet.
  EXPECT_TRUE(rejects(std::vector<uint8_t>(kInner4, kInner4 + sizeof(kInner4))));
  EXPECT_TRUE(rejects(std::vector<uint8_t>(kInner6, kInner6 + sizeof(kInner6))));
  EXPECT_TRUE(rejects({}));
  // Truncated below the outer header, or below its stated length.
  EXPECT_TRUE(rejects(std::vector<uint8_t>(good.begin(), good.begin() + 19)));
  EXPECT_TRUE(rejects(std::vector<uint8_t>(good.begin(), good.end() - 1)));
  EXPECT_TRUE(rejects(std::vector<uint8_t>(good6.begin(), good6.end() - 1)));
  // Bad IPv4 header checksum.
  auto bad = good;
  bad[11] ^= 1;
  EXPECT_TRUE(rejects(bad));
  // A fragment (MF set; checksum fixed so only the fragment bit is wrong).
  bad = good;
  bad[6] |= 0x20;
  bad[10] = bad[11] = 0;
  {
    const uint16_t c = RefChecksum(bad.data(), 20);
    bad[10] = static_cast<uint8_t>(c >> 8);
    bad[11] = static_cast<uint8_t>(c);
  }
  EXPECT_TRUE(rejects(bad));
  // Protocol says IPv4 but the inner is IPv6.
  bad = good6;
  bad[6] = 4;
  EXPECT_TRUE(rejects(bad));
  // Inner shorter than its own fixed header.
  bad = Concat(kOuter6In6, sizeof(kOuter6In6), kInner6, 39);
  bad[4] = 0;
  bad[5] = 39;
  EXPECT_TRUE(rejects(bad));
  // An IPv6 extension header before the inner packet is not followed.
  bad = good6;
  bad[6] = 0;
  EXPECT_TRUE(rejects(bad));
  // Version 5.
  bad = good;
  bad[0] = 0x55;
  EXPECT_TRUE(rejects(bad));
}

TEST(EncapTest, RejectsBadGueAndPrefixParams) {
  EncapParams p = Gue(Params4());
  p.gue_port = 0;
  ExpectRejected(kInner4, sizeof(kInner4), AddrFamily::kIPv4, p);
  ExpectRejected(kInner4, sizeof(kInner4), AddrFamily::kIPv4, Prefix4(32));
  ExpectRejected(kInner6, sizeof(kInner6), AddrFamily::kIPv6, Prefix6(128));
  // GUE adds 8 bytes to the 65535-byte limits.
  uint8_t out[48];
  auto fits = BigInner4(65535 - 28);
  EXPECT_EQ(WriteEncapHeader(out, fits.data(), fits.size(), AddrFamily::kIPv4, Gue(Params4()), 0),
            28u);
  auto over = BigInner4(65535 - 27);
  ExpectRejected(over.data(), over.size(), AddrFamily::kIPv4, Gue(Params4()));
  EXPECT_EQ(WriteEncapHeader(out, over.data(), over.size(), AddrFamily::kIPv4, Params4(), 0), 20u);
}

// The dataplane writes outer headers from per-backend templates
// (ApplyEncapTemplate); they must be WriteEncapHeader's bytes, and refuse
// what it refuses, for every form, prefix, inner TOS/DF/ID, hash and length.
TEST(EncapTest, TemplatesWriteWhatWriteEncapHeaderWrites) {
  std::mt19937 rng(12345);
  const std::vector<EncapParams> bases = {
      Params4(),        Params6(),        Prefix4(8),   Prefix4(24),    Prefix4(31),
      Prefix6(64),      Prefix6(100),     Prefix6(127), Gue(Params4()), Gue(Params6()),
      Gue(Prefix4(16)), Gue(Prefix6(96)), Prefix4(32),  Prefix6(128),
  };
  size_t written = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    EncapParams p = bases[iter % bases.size()];
    if (iter % 7 == 0) p.ttl = static_cast<uint8_t>(rng());
    if (p.kind == EncapKind::kGue && iter % 11 == 0) p.gue_port = 0;
    for (int i = 0; i < 16; ++i) p.dst[i] = static_cast<uint8_t>(rng());
    const bool inner4 = rng() % 2 == 0;
    // Lengths near the limits too (65535 - 20 - 8 and around).
    size_t len = inner4 ? 20 + rng() % 200 : 40 + rng() % 200;
    if (iter % 13 == 0) len = 65535 - 28 + rng() % 30;
    if (!inner4 && iter % 17 == 0) len = 40;  // a jumbogram's payload length 0
    if (inner4 && len > 65535) len = 65535;
    std::vector<uint8_t> inner(len, 0);
    EncapInner in{};
    in.len = static_cast<uint32_t>(len);
    in.tos = static_cast<uint8_t>(rng());
    if (inner4) {
      in.family = AddrFamily::kIPv4;
      in.df = rng() % 2 == 0;
      in.ip_id = static_cast<uint16_t>(rng());
      inner[0] = 0x45;
      inner[1] = in.tos;
      inner[2] = static_cast<uint8_t>(len >> 8);
      inner[3] = static_cast<uint8_t>(len);
      inner[4] = static_cast<uint8_t>(in.ip_id >> 8);
      inner[5] = static_cast<uint8_t>(in.ip_id);
      inner[6] = in.df ? 0x40 : 0;
    } else {
      in.family = AddrFamily::kIPv6;
      in.df = true;
      const size_t payload = len - 40;
      inner[0] = static_cast<uint8_t>(0x60 | (in.tos >> 4));
      inner[1] = static_cast<uint8_t>(in.tos << 4);
      inner[4] = static_cast<uint8_t>(payload >> 8);
      inner[5] = static_cast<uint8_t>(payload);
    }
    const uint32_t hash = rng();
    uint8_t want[48], got[48];
    std::memset(want, 0xaa, sizeof(want));
    std::memset(got, 0xaa, sizeof(got));
    const size_t nw = WriteEncapHeader(want, inner.data(), len, in.family, p, hash);
    EncapTemplate t;
    const bool built = BuildEncapTemplate(p, &t);
    const size_t ng = built ? ApplyEncapTemplate(got, t, in, p.kind, p.gue_port, hash) : 0;
    SCOPED_TRACE(testing::Message() << "iter " << iter << " len " << len);
    ASSERT_EQ(nw, ng);
    ASSERT_EQ(0, std::memcmp(want, got, sizeof(want)));
    written += nw != 0;
  }
  EXPECT_GT(written, 2000u);
}

}  // namespace
}  // namespace lb
