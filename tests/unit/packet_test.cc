// Packet parser: every supported header shape built byte by byte with the
// expected fields written out, every malformation mapped to its DropReason,
// truncation at every length, and a fixed-seed mutation fuzz whose out-of-
// bounds reads ASan catches (every frame sits at the very end of an exact-size
// heap allocation).
#include "lib/packet.h"
#include "lib/packet_fast.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lib/drop_reasons.h"
#include "lib/flow_key.h"

#include "tests/unit/flow_keys.h"

namespace lb {
namespace {

using Bytes = std::vector<uint8_t>;
using Addr6 = std::array<uint8_t, 16>;

// ---------------------------------------------------------------------------
// Frame builders. Each returns the header followed by `payload`, with the
// length fields computed unless overridden.

void Put16(Bytes& b, uint32_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

void Put32(Bytes& b, uint32_t v) {
  Put16(b, v >> 16);
  Put16(b, v & 0xffff);
}

Bytes operator+(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

constexpr uint32_t Ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return (uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | d;
}

Addr6 Ip6(std::initializer_list<uint16_t> groups) {  // all 8 groups
  Addr6 a{};
  int i = 0;
  for (uint16_t g : groups) {
    a[2 * i] = static_cast<uint8_t>(g >> 8);
    a[2 * i + 1] = static_cast<uint8_t>(g);
    ++i;
  }
  return a;
}

const uint8_t kDstMac[6] = {0x02, 0, 0, 0, 0, 0x01};
const uint8_t kSrcMac[6] = {0x02, 0, 0, 0, 0, 0x02};

Bytes Eth(uint16_t ether_type, const Bytes& payload,
          const std::vector<std::pair<uint16_t, uint16_t>>& tags = {}) {
  Bytes b(kDstMac, kDstMac + 6);
  b.insert(b.end(), kSrcMac, kSrcMac + 6);
  for (const auto& [tpid, tci] : tags) {
    Put16(b, tpid);
    Put16(b, tci);
  }
  Put16(b, ether_type);
  return b + payload;
}

Bytes Tcp(uint16_t sport, uint16_t dport, uint8_t flags, int doff_words = 5, size_t payload = 0) {
  Bytes b;
  Put16(b, sport);
  Put16(b, dport);
  Put32(b, 1000);  // seq
  Put32(b, 0);     // ack
  b.push_back(static_cast<uint8_t>(doff_words << 4));
  b.push_back(flags);
  Put16(b, 65535);                                                     // window
  Put32(b, 0);                                                         // checksum, urgent pointer
  while (static_cast<int>(b.size()) < doff_words * 4) b.push_back(1);  // NOP options
  b.resize(b.size() + payload, 0xab);
  return b;
}

Bytes Udp(uint16_t sport, uint16_t dport, size_t payload, int length_override = -1) {
  Bytes b;
  Put16(b, sport);
  Put16(b, dport);
  Put16(b, length_override >= 0 ? length_override : static_cast<uint32_t>(8 + payload));
  Put16(b, 0);
  b.resize(b.size() + payload, 0xcd);
  return b;
}

Bytes Icmp(uint8_t type, uint8_t code, uint32_t rest, const Bytes& payload = {}) {
  Bytes b{type, code, 0, 0};
  Put32(b, rest);
  return b + payload;
}

struct V4Opts {
  uint8_t ttl = 64;
  uint8_t tos = 0;
  uint16_t frag = 0x4000;  // DF
  Bytes options;
  int total_len = -1;  // override
  int ver_ihl = -1;    // override
};

Bytes Ipv4(uint8_t proto, uint32_t src, uint32_t dst, const Bytes& payload, const V4Opts& o = {}) {
  const size_t hl = 20 + o.options.size();
  Bytes b;
  b.push_back(o.ver_ihl >= 0 ? static_cast<uint8_t>(o.ver_ihl)
                             : static_cast<uint8_t>(0x40 | hl / 4));
  b.push_back(o.tos);
  Put16(b, o.total_len >= 0 ? o.total_len : static_cast<uint32_t>(hl + payload.size()));
  Put16(b, 0x1234);  // id
  Put16(b, o.frag);
  b.push_back(o.ttl);
  b.push_back(proto);
  Put16(b, 0);  // checksum (the parser does not verify it)
  Put32(b, src);
  Put32(b, dst);
  return b + o.options + payload;
}

Bytes Ipv6(uint8_t next, const Addr6& src, const Addr6& dst, const Bytes& payload,
           uint8_t hop_limit = 64, uint8_t tclass = 0, int payload_len = -1) {
  Bytes b;
  Put32(b, (6u << 28) | (uint32_t{tclass} << 20) | 0x12345);
  Put16(b, payload_len >= 0 ? payload_len : static_cast<uint32_t>(payload.size()));
  b.push_back(next);
  b.push_back(hop_limit);
  b.insert(b.end(), src.begin(), src.end());
  b.insert(b.end(), dst.begin(), dst.end());
  return b + payload;
}

// Hop-by-hop / routing / destination options header of `len` bytes (multiple
// of 8), filled with Pad1 options.
Bytes ExtHdr(uint8_t next, size_t len) {
  Bytes b{next, static_cast<uint8_t>(len / 8 - 1)};
  b.resize(len, 0);
  return b;
}

Bytes FragHdr(uint8_t next, uint16_t offset_units, bool more) {
  Bytes b{next, 0};
  Put16(b, static_cast<uint32_t>(offset_units << 3) | (more ? 1 : 0));
  Put32(b, 0xdeadbeef);
  return b;
}

std::string Hex(const uint8_t* d, size_t n) {
  std::string s;
  char buf[8];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x%s", d[i], (i % 16 == 15) ? "\n" : " ");
    s += buf;
  }
  return s;
}
std::string Hex(const Bytes& b) { return Hex(b.data(), b.size()); }

FlowKey Key6(const Addr6& src, const Addr6& dst, uint16_t sport, uint16_t dport, uint8_t proto) {
  FlowKey k{};
  std::memcpy(k.src, src.data(), 16);
  std::memcpy(k.dst, dst.data(), 16);
  k.sport = sport;
  k.dport = dport;
  k.proto = proto;
  k.family = AddrFamily::kIPv6;
  return k;
}

std::string KeyStr(const FlowKey& k) {
  return Hex(k.src, 16) + "-> " + Hex(k.dst, 16) + "ports " + std::to_string(k.sport) + "/" +
         std::to_string(k.dport) + " proto " + std::to_string(k.proto) + " family " +
         std::to_string(static_cast<int>(k.family)) + " reserved " + std::to_string(k.reserved);
}

// The frame copied to the very end of an exact-size heap block, so reading
// one byte past `len` is a heap-buffer-overflow under ASan.
class ExactBuffer {
 public:
  explicit ExactBuffer(const uint8_t* d, size_t len) : buf_(new uint8_t[len ? len : 1]), len_(len) {
    if (len) std::memcpy(buf_.get(), d, len);
  }
  explicit ExactBuffer(const Bytes& b) : ExactBuffer(b.data(), b.size()) {}
  const uint8_t* data() const { return buf_.get(); }
  uint8_t* mutable_data() { return buf_.get(); }
  size_t size() const { return len_; }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  size_t len_;
};

ParsedPacket MustParse(const Bytes& f) {
  ExactBuffer buf(f);
  ParsedPacket p;
  DropReason why = DropReason::kNoTable;  // sentinel: never set by the parser
  EXPECT_EQ(ParsePacket(buf.data(), buf.size(), &p, &why), ParseStatus::kOk)
      << "dropped as " << DropReasonName(why) << "\n"
      << Hex(f);
  return p;
}

DropReason MustDrop(const Bytes& f) {
  ExactBuffer buf(f);
  ParsedPacket p;
  DropReason why = DropReason::kNoTable;
  EXPECT_EQ(ParsePacket(buf.data(), buf.size(), &p, &why), ParseStatus::kDrop) << Hex(f);
  return why;
}

#define EXPECT_KEY_EQ(got, want) \
  EXPECT_TRUE((got) == (want)) << "got  " << KeyStr(got) << "\nwant " << KeyStr(want)

constexpr uint32_t kClient = Ip4(203, 0, 113, 7);
constexpr uint32_t kVip = Ip4(198, 51, 100, 1);
const Addr6 kClient6 = Ip6({0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x7});
const Addr6 kVip6 = Ip6({0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x1});
constexpr uint8_t kSyn = 0x02;
constexpr uint8_t kAck = 0x10;

Bytes TcpV4Frame() {
  return Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(40000, 443, kSyn)));
}

Bytes UdpV6Frame() {
  return Eth(kEtherTypeIPv6, Ipv6(kIpProtoUdp, kClient6, kVip6, Udp(5353, 53, 12)));
}

// ---------------------------------------------------------------------------
// Plain frames.

TEST(PacketTest, TcpIpv4) {
  V4Opts o;
  o.ttl = 57;
  o.tos = 0xb8;
  const Bytes f =
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(40000, 443, kSyn | kAck, 5, 10), o));
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.l2_len, 14);
  EXPECT_EQ(p.ether_type, 0x0800);
  EXPECT_EQ(p.num_vlans, 0);
  EXPECT_EQ(p.l3, L3Kind::kIPv4);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l3_hdr_len, 20);
  EXPECT_EQ(p.l3_total_len, 50u);
  EXPECT_EQ(p.proto, kIpProtoTcp);
  EXPECT_EQ(p.ttl, 57);
  EXPECT_EQ(p.tos, 0xb8);
  EXPECT_TRUE(p.df);
  EXPECT_FALSE(p.is_fragment);
  EXPECT_FALSE(p.is_first_fragment);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_TRUE(p.has_l4);
  EXPECT_EQ(p.tcp_flags, kSyn | kAck);
  EXPECT_EQ(p.icmp_inner_offset, 0);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 40000, 443, kIpProtoTcp));
}

TEST(PacketTest, UdpIpv4WithoutDf) {
  V4Opts o;
  o.frag = 0;
  const ParsedPacket p =
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1234, 53, 20), o)));
  EXPECT_EQ(p.l3_total_len, 48u);
  EXPECT_FALSE(p.df);
  EXPECT_TRUE(p.has_l4);
  EXPECT_EQ(p.tcp_flags, 0);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 1234, 53, kIpProtoUdp));
}

TEST(PacketTest, TcpIpv6) {
  const Bytes f =
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoTcp, kClient6, kVip6, Tcp(50000, 80, kAck, 8), 61, 0xb8));
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.ether_type, 0x86dd);
  EXPECT_EQ(p.l3, L3Kind::kIPv6);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l3_hdr_len, 40);
  EXPECT_EQ(p.l3_total_len, 72u);
  EXPECT_EQ(p.proto, kIpProtoTcp);
  EXPECT_EQ(p.ttl, 61);
  EXPECT_EQ(p.tos, 0xb8);
  EXPECT_TRUE(p.df);
  EXPECT_FALSE(p.is_fragment);
  EXPECT_EQ(p.l4_offset, 54);
  EXPECT_TRUE(p.has_l4);
  EXPECT_EQ(p.tcp_flags, kAck);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 50000, 80, kIpProtoTcp));
}

TEST(PacketTest, UdpIpv6) {
  const ParsedPacket p = MustParse(UdpV6Frame());
  EXPECT_EQ(p.l3_total_len, 60u);
  EXPECT_EQ(p.l4_offset, 54);
  EXPECT_TRUE(p.has_l4);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 5353, 53, kIpProtoUdp));
}

TEST(PacketTest, OtherUpperLayerHasNoL4) {
  // GRE over IPv4: parsed, but no ports and no L4.
  const ParsedPacket p = MustParse(Eth(kEtherTypeIPv4, Ipv4(47, kClient, kVip, Bytes(12, 0))));
  EXPECT_FALSE(p.has_l4);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 0, 0, 47));
  // ICMPv6 number inside IPv4 (and ICMP inside IPv6) is not ICMP.
  const ParsedPacket q =
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmpV6, kClient, kVip, Icmp(128, 0, 0))));
  EXPECT_FALSE(q.has_l4);
  const ParsedPacket r =
      MustParse(Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmp, kClient6, kVip6, Icmp(8, 0, 0))));
  EXPECT_FALSE(r.has_l4);
}

// ---------------------------------------------------------------------------
// L2.

TEST(PacketTest, SingleVlan) {
  const Bytes f = Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kSyn)),
                      {{kEtherTypeVlan, 0x2064}});
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.num_vlans, 1);
  EXPECT_EQ(p.vlan_tci[0], 0x2064);
  EXPECT_EQ(p.l2_len, 18);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.ether_type, 0x0800);
  EXPECT_EQ(p.l4_offset, 38);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 1, 2, kIpProtoTcp));
}

TEST(PacketTest, QinQ) {
  const Bytes f = Eth(kEtherTypeIPv6, Ipv6(kIpProtoUdp, kClient6, kVip6, Udp(7, 8, 0)),
                      {{kEtherTypeQinQ, 0x0123}, {kEtherTypeVlan, 0x0456}});
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.num_vlans, 2);
  EXPECT_EQ(p.vlan_tci[0], 0x0123);
  EXPECT_EQ(p.vlan_tci[1], 0x0456);
  EXPECT_EQ(p.l2_len, 22);
  EXPECT_EQ(p.ether_type, 0x86dd);
  EXPECT_EQ(p.l4_offset, 62);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 7, 8, kIpProtoUdp));
}

TEST(PacketTest, ThreeVlanTagsAreUnsupported) {
  const Bytes f = Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kSyn)),
                      {{kEtherTypeQinQ, 1}, {kEtherTypeVlan, 2}, {kEtherTypeVlan, 3}});
  EXPECT_EQ(MustDrop(f), DropReason::kUnsupportedL3);
}

TEST(PacketTest, UnknownEtherType) {
  ExactBuffer buf(Eth(0x88cc, Bytes(46, 0)));  // LLDP
  ParsedPacket p;
  DropReason why = DropReason::kNoTable;
  EXPECT_EQ(ParsePacket(buf.data(), buf.size(), &p, &why), ParseStatus::kDrop);
  EXPECT_EQ(why, DropReason::kUnsupportedL3);
  EXPECT_EQ(p.l3, L3Kind::kOther);
  EXPECT_EQ(p.ether_type, 0x88cc);
}

// ---------------------------------------------------------------------------
// IPv4 header and lengths.

TEST(PacketTest, Ipv4WithOptions) {
  V4Opts o;
  o.options = {0x94, 0x04, 0x00, 0x00,           // router alert
               0x07, 0x07, 0x04, 0,    0, 0, 0,  // record route, one slot
               0x00};                            // end of options
  const ParsedPacket p =
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1111, 443, kSyn), o)));
  EXPECT_EQ(p.l3_hdr_len, 32);
  EXPECT_EQ(p.l3_total_len, 52u);
  EXPECT_EQ(p.l4_offset, 46);
  EXPECT_TRUE(p.has_l4);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 1111, 443, kIpProtoTcp));

  // Maximal IHL (15 words = 60 bytes).
  V4Opts max;
  max.options = Bytes(40, 1);  // NOPs
  const ParsedPacket q =
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 0), max)));
  EXPECT_EQ(q.l3_hdr_len, 60);
  EXPECT_EQ(q.l4_offset, 74);
}

TEST(PacketTest, Ipv4BadVersionOrIhl) {
  V4Opts o;
  o.ver_ihl = 0x55;  // version 5
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, 0), o))),
            DropReason::kBadIpHeader);
  o.ver_ihl = 0x44;  // IHL 4
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, 0), o))),
            DropReason::kBadIpHeader);
  o.ver_ihl = 0x4f;  // IHL 15 but only 20 + 20 bytes in the frame after it
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 0), o))),
            DropReason::kTruncated);
}

TEST(PacketTest, Ipv4TotalLengthLies) {
  V4Opts o;
  o.total_len = 41;  // one more than the packet has
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, 0), o))),
            DropReason::kBadLength);
  o.total_len = 1500;
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, 0), o))),
            DropReason::kBadLength);
  o.total_len = 16;  // smaller than the 20-byte header
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, 0), o))),
            DropReason::kBadLength);
  o.total_len = 0;
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, 0), o))),
            DropReason::kBadLength);
}

TEST(PacketTest, EthernetPaddingIsIgnored) {
  // 14 + 20 + 8 = 42 bytes, padded to the 60-byte Ethernet minimum with junk
  // that must not be taken as UDP payload.
  Bytes f = Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1000, 2000, 0)));
  ASSERT_EQ(f.size(), 42u);
  f.resize(60, 0xee);
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.l3_total_len, 28u);
  EXPECT_TRUE(p.has_l4);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 1000, 2000, kIpProtoUdp));

  // A TCP header cannot borrow bytes from the padding either.
  V4Opts o;
  o.total_len = 20 + 16;
  Bytes g = Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kSyn), o));
  EXPECT_EQ(MustDrop(g), DropReason::kTruncated);
}

// ---------------------------------------------------------------------------
// L4 headers.

TEST(PacketTest, TcpDataOffset) {
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kSyn, 4)))),
            DropReason::kBadL4Header);
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kSyn, 0)))),
            DropReason::kBadL4Header);
  // Data offset 15 (60 bytes) but only a 20-byte header + 20 bytes of payload.
  Bytes tcp = Tcp(1, 2, kSyn, 5, 20);
  tcp[12] = 0xf0;
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, tcp))),
            DropReason::kBadL4Header);
  // Data offset 15 with exactly 60 bytes: fine.
  tcp = Tcp(1, 2, kSyn, 5, 40);
  tcp[12] = 0xf0;
  EXPECT_TRUE(MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, tcp))).has_l4);
  // Same over IPv6.
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(kIpProtoTcp, kClient6, kVip6, Tcp(1, 2, kSyn, 3)))),
            DropReason::kBadL4Header);
  // Shorter than a minimal TCP header.
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Bytes(19, 0x50)))),
            DropReason::kTruncated);
}

TEST(PacketTest, UdpLengthLies) {
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 10, 7)))),
            DropReason::kBadLength);
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 10, 19)))),
            DropReason::kBadLength);
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(kIpProtoUdp, kClient6, kVip6, Udp(1, 2, 10, 100)))),
            DropReason::kBadLength);
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(kIpProtoUdp, kClient6, kVip6, Udp(1, 2, 10, 0)))),
            DropReason::kBadLength);
  // UDP length shorter than the IP payload: trailing bytes are ignored.
  EXPECT_TRUE(
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 10, 12)))).has_l4);
  EXPECT_TRUE(
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 10, 18)))).has_l4);
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Bytes(7, 0)))),
            DropReason::kTruncated);
}

// ---------------------------------------------------------------------------
// IPv6 extension headers.

TEST(PacketTest, Ipv6HopByHopDestOptsFirstFragment) {
  const Bytes chain = ExtHdr(60, 8) + ExtHdr(44, 16) + FragHdr(kIpProtoTcp, 0, /*more=*/true) +
                      Tcp(40000, 443, kSyn, 5, 100);
  const ParsedPacket p = MustParse(Eth(kEtherTypeIPv6, Ipv6(0, kClient6, kVip6, chain)));
  EXPECT_EQ(p.l3_hdr_len, 40 + 8 + 16 + 8);
  EXPECT_EQ(p.l4_offset, 14 + 72);
  EXPECT_EQ(p.proto, kIpProtoTcp);
  EXPECT_TRUE(p.is_fragment);
  EXPECT_TRUE(p.is_first_fragment);
  EXPECT_TRUE(p.has_l4);
  EXPECT_EQ(p.tcp_flags, kSyn);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 40000, 443, kIpProtoTcp));
}

TEST(PacketTest, Ipv6RoutingAndAh) {
  Bytes ah{kIpProtoUdp, 4, 0, 0};  // (4 + 2) * 4 = 24 bytes
  ah.resize(24, 0x11);
  const Bytes chain = ExtHdr(51, 24) + ah + Udp(9, 10, 4);
  const ParsedPacket p = MustParse(Eth(kEtherTypeIPv6, Ipv6(43, kClient6, kVip6, chain)));
  EXPECT_EQ(p.l3_hdr_len, 40 + 24 + 24);
  EXPECT_EQ(p.proto, kIpProtoUdp);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 9, 10, kIpProtoUdp));
}

TEST(PacketTest, Ipv6EspAndNoNextHeaderEndTheWalk) {
  const ParsedPacket p =
      MustParse(Eth(kEtherTypeIPv6, Ipv6(60, kClient6, kVip6, ExtHdr(50, 8) + Bytes(16, 0))));
  EXPECT_EQ(p.proto, 50);
  EXPECT_EQ(p.l3_hdr_len, 48);
  EXPECT_FALSE(p.has_l4);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 0, 0, 50));
  const ParsedPacket q = MustParse(Eth(kEtherTypeIPv6, Ipv6(59, kClient6, kVip6, Bytes(5, 0))));
  EXPECT_EQ(q.proto, 59);
  EXPECT_FALSE(q.has_l4);
}

TEST(PacketTest, Ipv6ExtensionHeaderLimit) {
  // Hop-by-hop + 7 destination options = 8 headers: accepted.
  Bytes chain;
  for (int i = 0; i < 7; ++i) chain = chain + ExtHdr(60, 8);
  Bytes eight = ExtHdr(60, 8) + chain;
  eight[eight.size() - 8] = kIpProtoUdp;
  const ParsedPacket p =
      MustParse(Eth(kEtherTypeIPv6, Ipv6(0, kClient6, kVip6, eight + Udp(1, 2, 0))));
  EXPECT_EQ(p.l3_hdr_len, 40 + 64);
  EXPECT_TRUE(p.has_l4);
  // Nine: dropped.
  Bytes nine = ExtHdr(60, 8) + ExtHdr(60, 8) + chain;
  nine[nine.size() - 8] = kIpProtoUdp;
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(0, kClient6, kVip6, nine + Udp(1, 2, 0)))),
            DropReason::kBadExtHeaders);
  // Nine where the ninth is a fragment header: dropped too.
  Bytes nine_frag = eight;
  nine_frag[nine_frag.size() - 8] = 44;
  EXPECT_EQ(
      MustDrop(Eth(kEtherTypeIPv6, Ipv6(0, kClient6, kVip6,
                                        nine_frag + FragHdr(kIpProtoUdp, 0, true) + Udp(1, 2, 0)))),
      DropReason::kBadExtHeaders);
}

TEST(PacketTest, Ipv6MalformedChains) {
  // Hop-by-hop anywhere but first.
  EXPECT_EQ(
      MustDrop(Eth(kEtherTypeIPv6, Ipv6(60, kClient6, kVip6,
                                        ExtHdr(0, 8) + ExtHdr(kIpProtoUdp, 8) + Udp(1, 2, 0)))),
      DropReason::kBadExtHeaders);
  // A header longer than the payload.
  Bytes longer = ExtHdr(kIpProtoUdp, 8);
  longer[1] = 1;  // claims 16 bytes
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(60, kClient6, kVip6, longer))),
            DropReason::kBadExtHeaders);
  Bytes big = ExtHdr(kIpProtoUdp, 8);
  big[1] = 200;
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(60, kClient6, kVip6, big + Udp(1, 2, 0)))),
            DropReason::kBadExtHeaders);
  // A header whose first two bytes are missing.
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(60, kClient6, kVip6, Bytes{}))),
            DropReason::kBadExtHeaders);
  // Two fragment headers.
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(44, kClient6, kVip6,
                                              FragHdr(44, 0, true) + FragHdr(kIpProtoUdp, 0, true) +
                                                  Udp(1, 2, 0)))),
            DropReason::kBadExtHeaders);
  // Bytes past payload_length are not part of the chain.
  Bytes f = Eth(kEtherTypeIPv6, Ipv6(60, kClient6, kVip6, ExtHdr(kIpProtoUdp, 8) + Udp(1, 2, 0), 64,
                                     0, /*payload_len=*/4));
  EXPECT_EQ(MustDrop(f), DropReason::kBadExtHeaders);
}

TEST(PacketTest, Ipv6BadHeader) {
  Bytes f = UdpV6Frame();
  f[14] = 0x40;  // version 4 in an IPv6 EtherType
  EXPECT_EQ(MustDrop(f), DropReason::kBadIpHeader);
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv6, Ipv6(kIpProtoUdp, kClient6, kVip6, Udp(1, 2, 4), 64, 0,
                                              /*payload_len=*/13))),
            DropReason::kBadLength);
}

// ---------------------------------------------------------------------------
// Fragments.

TEST(PacketTest, Ipv4Fragments) {
  // First fragment: MF, offset 0. The UDP length covers the whole datagram
  // (3000 bytes), more than this fragment holds, and that is fine.
  V4Opts first;
  first.frag = 0x2000;
  const ParsedPacket p = MustParse(
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(4000, 53, 1472, 3000), first)));
  EXPECT_TRUE(p.is_fragment);
  EXPECT_TRUE(p.is_first_fragment);
  EXPECT_FALSE(p.df);
  EXPECT_TRUE(p.has_l4);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 4000, 53, kIpProtoUdp));

  // Middle fragment: MF, offset 185 (1480 bytes). Its payload is not a UDP
  // header, even though it looks like one.
  V4Opts middle;
  middle.frag = 0x2000 | 185;
  const ParsedPacket q =
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(4000, 53, 100), middle)));
  EXPECT_TRUE(q.is_fragment);
  EXPECT_FALSE(q.is_first_fragment);
  EXPECT_FALSE(q.has_l4);
  EXPECT_EQ(q.l4_offset, 34);
  EXPECT_EQ(q.proto, kIpProtoUdp);
  EXPECT_KEY_EQ(q.key, V4Key(kClient, kVip, 0, 0, kIpProtoUdp));

  // Last fragment: no MF, offset != 0; even 1 byte of payload is fine.
  V4Opts last;
  last.frag = 370;
  const ParsedPacket r =
      MustParse(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Bytes{0x42}, last)));
  EXPECT_TRUE(r.is_fragment);
  EXPECT_FALSE(r.is_first_fragment);
  EXPECT_FALSE(r.has_l4);
  EXPECT_KEY_EQ(r.key, V4Key(kClient, kVip, 0, 0, kIpProtoTcp));

  // A first fragment too short for the TCP header (RFC 1858 tiny fragment).
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Bytes(8, 0), first))),
            DropReason::kTruncated);
}

TEST(PacketTest, Ipv6Fragments) {
  const ParsedPacket p = MustParse(
      Eth(kEtherTypeIPv6,
          Ipv6(44, kClient6, kVip6, FragHdr(kIpProtoUdp, 0, true) + Udp(4000, 53, 1400, 3000))));
  EXPECT_TRUE(p.is_fragment);
  EXPECT_TRUE(p.is_first_fragment);
  EXPECT_TRUE(p.has_l4);
  EXPECT_EQ(p.l3_hdr_len, 48);
  EXPECT_KEY_EQ(p.key, Key6(kClient6, kVip6, 4000, 53, kIpProtoUdp));

  const ParsedPacket q = MustParse(Eth(
      kEtherTypeIPv6,
      Ipv6(0, kClient6, kVip6, ExtHdr(44, 8) + FragHdr(kIpProtoUdp, 175, false) + Bytes(3, 0))));
  EXPECT_TRUE(q.is_fragment);
  EXPECT_FALSE(q.is_first_fragment);
  EXPECT_FALSE(q.has_l4);
  EXPECT_EQ(q.proto, kIpProtoUdp);
  EXPECT_EQ(q.l3_hdr_len, 56);
  EXPECT_EQ(q.l4_offset, 70);
  EXPECT_KEY_EQ(q.key, Key6(kClient6, kVip6, 0, 0, kIpProtoUdp));

  // Atomic fragment (offset 0, M 0): a whole packet (RFC 6946).
  const ParsedPacket r = MustParse(Eth(
      kEtherTypeIPv6, Ipv6(44, kClient6, kVip6, FragHdr(kIpProtoTcp, 0, false) + Tcp(5, 6, kAck))));
  EXPECT_FALSE(r.is_fragment);
  EXPECT_TRUE(r.has_l4);
  EXPECT_KEY_EQ(r.key, Key6(kClient6, kVip6, 5, 6, kIpProtoTcp));
}

// ---------------------------------------------------------------------------
// Truncation at every length.

void ExpectDropsAtEveryPrefix(const Bytes& full, size_t ip_hdr_end) {
  for (size_t len = 0; len < full.size(); ++len) {
    ExactBuffer buf(full.data(), len);
    ParsedPacket p;
    DropReason why = DropReason::kNoTable;
    ASSERT_EQ(ParsePacket(buf.data(), len, &p, &why), ParseStatus::kDrop) << "len " << len;
    // Before the IP header is complete nothing can be trusted: truncated.
    // After it, the IP length field claims more than there is: bad length.
    const DropReason want = len < ip_hdr_end ? DropReason::kTruncated : DropReason::kBadLength;
    ASSERT_EQ(why, want) << "len " << len << " got " << DropReasonName(why);
  }
  ExactBuffer buf(full);
  ParsedPacket p;
  DropReason why;
  EXPECT_EQ(ParsePacket(buf.data(), buf.size(), &p, &why), ParseStatus::kOk);
}

TEST(PacketTest, TruncatedTcpIpv4AtEveryLength) { ExpectDropsAtEveryPrefix(TcpV4Frame(), 14 + 20); }

TEST(PacketTest, TruncatedUdpIpv6AtEveryLength) { ExpectDropsAtEveryPrefix(UdpV6Frame(), 14 + 40); }

TEST(PacketTest, TruncatedVlanHeader) {
  const Bytes f = Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kSyn)),
                      {{kEtherTypeQinQ, 1}, {kEtherTypeVlan, 2}});
  for (size_t len = 0; len < 22 + 20; ++len) {
    ExactBuffer buf(f.data(), len);
    ParsedPacket p;
    DropReason why;
    ASSERT_EQ(ParsePacket(buf.data(), len, &p, &why), ParseStatus::kDrop);
    ASSERT_EQ(why, DropReason::kTruncated) << "len " << len;
  }
}

// ---------------------------------------------------------------------------
// ARP, ICMP, NDP.

Bytes ArpRequest() {
  Bytes a;
  Put16(a, 1);       // Ethernet
  Put16(a, 0x0800);  // IPv4
  a.push_back(6);
  a.push_back(4);
  Put16(a, 1);  // request
  a.insert(a.end(), kSrcMac, kSrcMac + 6);
  Put32(a, Ip4(10, 0, 0, 2));
  a.insert(a.end(), 6, 0);
  Put32(a, Ip4(10, 0, 0, 1));
  return a;
}

TEST(PacketTest, ArpRequest) {
  Bytes f = Eth(kEtherTypeArp, ArpRequest());
  f.resize(60, 0);  // padded
  ExactBuffer buf(f);
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.l3, L3Kind::kArp);
  EXPECT_EQ(p.ether_type, 0x0806);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l3_hdr_len, 28);
  EXPECT_FALSE(p.has_l4);
  ArpInfo arp;
  ASSERT_TRUE(ParseArp(buf.data(), buf.size(), p, &arp));
  EXPECT_EQ(arp.op, 1);
  EXPECT_EQ(Hex(arp.sha, 6), Hex(kSrcMac, 6));
  const uint8_t spa[4] = {10, 0, 0, 2};
  const uint8_t tpa[4] = {10, 0, 0, 1};
  const uint8_t zero[6] = {};
  EXPECT_EQ(Hex(arp.spa, 4), Hex(spa, 4));
  EXPECT_EQ(Hex(arp.tha, 6), Hex(zero, 6));
  EXPECT_EQ(Hex(arp.tpa, 4), Hex(tpa, 4));

  // Not Ethernet/IPv4: ParsePacket accepts, ParseArp refuses.
  Bytes g = Eth(kEtherTypeArp, ArpRequest());
  g[14 + 1] = 6;  // htype 6 (IEEE 802)
  ExactBuffer gbuf(g);
  const ParsedPacket q = MustParse(g);
  EXPECT_FALSE(ParseArp(gbuf.data(), gbuf.size(), q, &arp));
  // Address lengths that do not fit: truncated.
  Bytes h = Eth(kEtherTypeArp, ArpRequest());
  h[14 + 4] = 16;
  EXPECT_EQ(MustDrop(h), DropReason::kTruncated);
  // An IP packet is not ARP.
  const Bytes t = TcpV4Frame();
  ExactBuffer tbuf(t);
  EXPECT_FALSE(ParseArp(tbuf.data(), tbuf.size(), MustParse(t), &arp));
}

TEST(PacketTest, IcmpEcho) {
  const Bytes f =
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, kClient, kVip, Icmp(8, 0, 0x00010002, Bytes(56, 7))));
  ExactBuffer buf(f);
  const ParsedPacket p = MustParse(f);
  EXPECT_TRUE(p.has_l4);
  EXPECT_EQ(p.icmp_type, 8);
  EXPECT_EQ(p.icmp_code, 0);
  EXPECT_EQ(p.icmp_inner_offset, 0);
  EXPECT_KEY_EQ(p.key, V4Key(kClient, kVip, 0, 0, kIpProtoIcmp));
  FlowKey inner;
  uint32_t mtu;
  EXPECT_FALSE(ParseIcmpError(buf.data(), buf.size(), p, &inner, &mtu));
  // Shorter than 8 bytes of ICMP header.
  EXPECT_EQ(MustDrop(Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, kClient, kVip, Bytes{8, 0, 0, 0}))),
            DropReason::kTruncated);
}

// A router between the LB's backend (answering from the VIP, DSR) and the
// client cannot forward a 1500-byte segment: it sends frag-needed to the VIP
// with the start of that segment embedded.
TEST(PacketTest, IcmpFragNeededWithEmbeddedTcp) {
  const uint32_t router = Ip4(192, 0, 2, 254);
  V4Opts orig;
  orig.total_len = 1500;  // the original length, not what is embedded
  Bytes inner_pkt = Ipv4(kIpProtoTcp, kVip, kClient, Tcp(443, 40000, kAck), orig);
  inner_pkt.resize(20 + 8);  // IP header + first 8 bytes, as RFC 792 routers send
  const Bytes f =
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(3, 4, /*mtu=*/1400, inner_pkt)));
  ExactBuffer buf(f);
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.icmp_type, 3);
  EXPECT_EQ(p.icmp_code, 4);
  EXPECT_EQ(p.icmp_inner_offset, 14 + 20 + 8);
  FlowKey inner;
  uint32_t mtu = 0;
  ASSERT_TRUE(ParseIcmpError(buf.data(), buf.size(), p, &inner, &mtu));
  EXPECT_EQ(mtu, 1400u);
  EXPECT_KEY_EQ(inner, V4Key(kVip, kClient, 443, 40000, kIpProtoTcp));

  // Time exceeded: same tuple, no MTU.
  const Bytes te = Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(11, 0, 0, inner_pkt)));
  ExactBuffer tebuf(te);
  ASSERT_TRUE(ParseIcmpError(tebuf.data(), tebuf.size(), MustParse(te), &inner, &mtu));
  EXPECT_EQ(mtu, 0u);
  EXPECT_KEY_EQ(inner, V4Key(kVip, kClient, 443, 40000, kIpProtoTcp));

  // Only 4 bytes of the L4 header embedded: too short.
  Bytes short_inner = inner_pkt;
  short_inner.resize(24);
  const Bytes s =
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(3, 4, 1400, short_inner)));
  ExactBuffer sbuf(s);
  EXPECT_FALSE(ParseIcmpError(sbuf.data(), sbuf.size(), MustParse(s), &inner, &mtu));

  // Embedded header with a bad version, or an IHL running past the data.
  Bytes bad = inner_pkt;
  bad[0] = 0x65;
  const Bytes b = Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(3, 4, 1400, bad)));
  ExactBuffer bbuf(b);
  EXPECT_FALSE(ParseIcmpError(bbuf.data(), bbuf.size(), MustParse(b), &inner, &mtu));
  bad[0] = 0x4f;
  const Bytes c = Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(3, 4, 1400, bad)));
  ExactBuffer cbuf(c);
  EXPECT_FALSE(ParseIcmpError(cbuf.data(), cbuf.size(), MustParse(c), &inner, &mtu));

  // An embedded non-first fragment has no ports and needs no L4 bytes.
  V4Opts frag;
  frag.frag = 100;
  frag.total_len = 600;
  Bytes frag_inner = Ipv4(kIpProtoUdp, kVip, kClient, Bytes(), frag);
  const Bytes d = Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(11, 1, 0, frag_inner)));
  ExactBuffer dbuf(d);
  ASSERT_TRUE(ParseIcmpError(dbuf.data(), dbuf.size(), MustParse(d), &inner, &mtu));
  EXPECT_KEY_EQ(inner, V4Key(kVip, kClient, 0, 0, kIpProtoUdp));
}

TEST(PacketTest, Icmpv6PacketTooBigWithEmbeddedTcp) {
  const Addr6 router = Ip6({0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 1});
  Bytes inner_pkt = Ipv6(kIpProtoTcp, kVip6, kClient6, Tcp(443, 50000, kAck, 5, 1200), 64, 0, 1440);
  inner_pkt.resize(1232 - 8);  // as much as fits in the minimum MTU
  const Bytes f =
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, router, kVip6, Icmp(2, 0, /*mtu=*/1280, inner_pkt)));
  ExactBuffer buf(f);
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.icmp_type, 2);
  EXPECT_EQ(p.icmp_inner_offset, 14 + 40 + 8);
  EXPECT_KEY_EQ(p.key, Key6(router, kVip6, 0, 0, kIpProtoIcmpV6));
  FlowKey inner;
  uint32_t mtu = 0;
  ASSERT_TRUE(ParseIcmpError(buf.data(), buf.size(), p, &inner, &mtu));
  EXPECT_EQ(mtu, 1280u);
  EXPECT_KEY_EQ(inner, Key6(kVip6, kClient6, 443, 50000, kIpProtoTcp));

  // With an extension header in the embedded packet.
  Bytes inner_ext = Ipv6(60, kVip6, kClient6, ExtHdr(kIpProtoUdp, 16) + Udp(53, 5353, 30));
  const Bytes g =
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, router, kVip6, Icmp(1, 4, 0, inner_ext)));
  ExactBuffer gbuf(g);
  ASSERT_TRUE(ParseIcmpError(gbuf.data(), gbuf.size(), MustParse(g), &inner, &mtu));
  EXPECT_EQ(mtu, 0u);
  EXPECT_KEY_EQ(inner, Key6(kVip6, kClient6, 53, 5353, kIpProtoUdp));

  // An embedded IPv4 packet inside ICMPv6 is malformed.
  const Bytes h =
      Eth(kEtherTypeIPv6,
          Ipv6(kIpProtoIcmpV6, router, kVip6,
               Icmp(2, 0, 1280, Ipv4(kIpProtoTcp, kVip, kClient, Tcp(1, 2, 0)) + Bytes(20, 0))));
  ExactBuffer hbuf(h);
  EXPECT_FALSE(ParseIcmpError(hbuf.data(), hbuf.size(), MustParse(h), &inner, &mtu));

  // Echo request is not an error.
  const Bytes e = Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, kClient6, kVip6, Icmp(128, 0, 1)));
  ExactBuffer ebuf(e);
  const ParsedPacket q = MustParse(e);
  EXPECT_EQ(q.icmp_type, 128);
  EXPECT_FALSE(ParseIcmpError(ebuf.data(), ebuf.size(), q, &inner, &mtu));
}

Bytes NsMessage(const Addr6& target, const uint8_t* mac) {
  Bytes b = Icmp(135, 0, 0);
  b.insert(b.end(), target.begin(), target.end());
  if (mac != nullptr) {
    b.push_back(1);  // source link-layer address
    b.push_back(1);  // 8 bytes
    b.insert(b.end(), mac, mac + 6);
  }
  return b;
}

TEST(PacketTest, NeighborSolicitation) {
  const Addr6 target = Ip6({0x2001, 0xdb8, 0, 0, 0, 0, 0, 5});
  const Addr6 sender = Ip6({0xfe80, 0, 0, 0, 0, 0, 0, 1});
  const Addr6 solicited = Ip6({0xff02, 0, 0, 0, 0, 1, 0xff00, 5});
  const Bytes f =
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, sender, solicited, NsMessage(target, kSrcMac), 255));
  ExactBuffer buf(f);
  const ParsedPacket p = MustParse(f);
  EXPECT_EQ(p.icmp_type, 135);
  uint8_t got_target[16];
  uint8_t mac[6];
  bool has_mac = false;
  ASSERT_TRUE(ParseNeighborSolicitation(buf.data(), buf.size(), p, got_target, mac, &has_mac));
  EXPECT_EQ(Hex(got_target, 16), Hex(target.data(), 16));
  EXPECT_TRUE(has_mac);
  EXPECT_EQ(Hex(mac, 6), Hex(kSrcMac, 6));

  // Duplicate address detection: from ::, no option.
  const Bytes dad = Eth(kEtherTypeIPv6,
                        Ipv6(kIpProtoIcmpV6, Addr6{}, solicited, NsMessage(target, nullptr), 255));
  ExactBuffer dbuf(dad);
  ASSERT_TRUE(ParseNeighborSolicitation(dbuf.data(), dbuf.size(), MustParse(dad), got_target, mac,
                                        &has_mac));
  EXPECT_FALSE(has_mac);

  // From :: with a source link-layer option: invalid.
  const Bytes bad_dad = Eth(
      kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, Addr6{}, solicited, NsMessage(target, kSrcMac), 255));
  ExactBuffer bdbuf(bad_dad);
  EXPECT_FALSE(ParseNeighborSolicitation(bdbuf.data(), bdbuf.size(), MustParse(bad_dad), got_target,
                                         mac, &has_mac));
  // Hop limit not 255: forwarded, so not on-link: invalid.
  const Bytes hop =
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, sender, solicited, NsMessage(target, kSrcMac), 64));
  ExactBuffer hbuf(hop);
  EXPECT_FALSE(ParseNeighborSolicitation(hbuf.data(), hbuf.size(), MustParse(hop), got_target, mac,
                                         &has_mac));
  // Zero-length option: invalid.
  Bytes zero_opt = NsMessage(target, kSrcMac);
  zero_opt[24 + 1] = 0;
  const Bytes z = Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, sender, solicited, zero_opt, 255));
  ExactBuffer zbuf(z);
  EXPECT_FALSE(
      ParseNeighborSolicitation(zbuf.data(), zbuf.size(), MustParse(z), got_target, mac, &has_mac));
  // Too short for the target.
  Bytes short_ns = NsMessage(target, nullptr);
  short_ns.resize(20);
  const Bytes s = Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, sender, solicited, short_ns, 255));
  ExactBuffer sbuf(s);
  EXPECT_FALSE(
      ParseNeighborSolicitation(sbuf.data(), sbuf.size(), MustParse(s), got_target, mac, &has_mac));
  // Not an NS at all.
  const Bytes u = UdpV6Frame();
  ExactBuffer ubuf(u);
  EXPECT_FALSE(
      ParseNeighborSolicitation(ubuf.data(), ubuf.size(), MustParse(u), got_target, mac, &has_mac));
}

Bytes NaMessage(const Addr6& target, const Bytes& options) {
  Bytes b = Icmp(136, 0, 0x60000000);  // solicited + override
  b.insert(b.end(), target.begin(), target.end());
  b.insert(b.end(), options.begin(), options.end());
  return b;
}

Bytes LinkAddrOption(uint8_t type, const uint8_t* mac) {
  // Sized once: GCC 12 -O3 misreads insert() after an initializer list as
  // out of bounds (-Warray-bounds), which broke --buildtype=release.
  Bytes o(8);
  o[0] = type;
  o[1] = 1;  // length in units of 8 bytes
  std::copy(mac, mac + 6, o.begin() + 2);
  return o;
}

TEST(PacketTest, NeighborAdvertisement) {
  const Addr6 target = Ip6({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1});
  const Addr6 node = Ip6({0x2001, 0xdb8, 0, 0, 0, 0, 0, 5});
  auto parse = [&](const Bytes& msg, uint8_t got_target[16], uint8_t mac[6]) {
    const Bytes f = Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, target, node, msg, 255));
    ExactBuffer buf(f);
    return ParseNeighborAdvertisement(buf.data(), buf.size(), MustParse(f), got_target, mac);
  };
  uint8_t got_target[16];
  uint8_t mac[6];
  ASSERT_TRUE(parse(NaMessage(target, LinkAddrOption(2, kSrcMac)), got_target, mac));
  EXPECT_EQ(Hex(got_target, 16), Hex(target.data(), 16));
  EXPECT_EQ(Hex(mac, 6), Hex(kSrcMac, 6));

  // The target link-layer option after another option (a nonce, 8 bytes).
  Bytes opts = {14, 1, 1, 2, 3, 4, 5, 6};
  const Bytes tll = LinkAddrOption(2, kSrcMac);
  opts.insert(opts.end(), tll.begin(), tll.end());
  ASSERT_TRUE(parse(NaMessage(target, opts), got_target, mac));
  EXPECT_EQ(Hex(mac, 6), Hex(kSrcMac, 6));

  // No target link-layer option (only a source one): nothing to learn.
  EXPECT_FALSE(parse(NaMessage(target, LinkAddrOption(1, kSrcMac)), got_target, mac));
  EXPECT_FALSE(parse(NaMessage(target, Bytes{}), got_target, mac));
  // A zero-length option before it: invalid.
  Bytes zero = {14, 0, 0, 0, 0, 0, 0, 0};
  zero.insert(zero.end(), tll.begin(), tll.end());
  EXPECT_FALSE(parse(NaMessage(target, zero), got_target, mac));
  // An option longer than the packet: invalid.
  Bytes longer = LinkAddrOption(2, kSrcMac);
  longer[1] = 2;
  EXPECT_FALSE(parse(NaMessage(target, longer), got_target, mac));
  // Too short for the target.
  Bytes short_na = NaMessage(target, Bytes{});
  short_na.resize(20);
  EXPECT_FALSE(parse(short_na, got_target, mac));
  // A solicitation is not an advertisement.
  EXPECT_FALSE(parse(NsMessage(target, kSrcMac), got_target, mac));
}

// ---------------------------------------------------------------------------
// Fuzz: mutated valid frames at every length. Under ASan any read past `len`
// aborts; in any build the recorded offsets must stay inside the frame.

std::vector<Bytes> FuzzSeeds() {
  const uint32_t router = Ip4(192, 0, 2, 254);
  V4Opts opts;
  opts.options = Bytes(8, 1);
  V4Opts first;
  first.frag = 0x2000;
  V4Opts later;
  later.frag = 0x2000 | 3;
  Bytes inner4 = Ipv4(kIpProtoTcp, kVip, kClient, Tcp(443, 40000, kAck));
  inner4.resize(28);
  Bytes inner6 = Ipv6(60, kVip6, kClient6, ExtHdr(kIpProtoTcp, 8) + Tcp(443, 50000, kAck));
  inner6.resize(40 + 8 + 8);
  const Addr6 solicited = Ip6({0xff02, 0, 0, 0, 0, 1, 0xff00, 5});
  return {
      TcpV4Frame(),
      UdpV6Frame(),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 6), opts),
          {{kEtherTypeVlan, 5}}),
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoTcp, kClient6, kVip6, Tcp(1, 2, kSyn, 7)),
          {{kEtherTypeQinQ, 1}, {kEtherTypeVlan, 2}}),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 20, 300), first)),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Bytes(16, 0), later)),
      Eth(kEtherTypeIPv6, Ipv6(0, kClient6, kVip6,
                               ExtHdr(43, 8) + ExtHdr(51, 16) + Bytes{44, 2, 0, 0} + Bytes(12, 0) +
                                   FragHdr(kIpProtoUdp, 0, true) + Udp(1, 2, 8))),
      Eth(kEtherTypeIPv6, Ipv6(44, kClient6, kVip6, FragHdr(kIpProtoTcp, 9, true) + Bytes(24, 0))),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, router, kVip, Icmp(3, 4, 1400, inner4))),
      Eth(kEtherTypeIPv6, Ipv6(kIpProtoIcmpV6, kClient6, kVip6, Icmp(2, 0, 1280, inner6))),
      Eth(kEtherTypeIPv6,
          Ipv6(kIpProtoIcmpV6, kClient6, solicited, NsMessage(kVip6, kSrcMac), 255)),
      Eth(kEtherTypeArp, ArpRequest()),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, kClient, kVip, Icmp(8, 0, 1, Bytes(8, 0)))),
  };
}

void CheckInvariants(const uint8_t* d, size_t len, const ParsedPacket& p, ParseStatus st,
                     int* icmp_errors, int* ns) {
  if (st != ParseStatus::kOk) return;
  ASSERT_LE(p.l2_len, len);
  ASSERT_EQ(p.l3_offset, p.l2_len);
  ASSERT_EQ(p.l2_len, 14 + 4 * p.num_vlans);
  if (p.l3 == L3Kind::kArp) {
    ASSERT_LE(p.l3_offset + p.l3_hdr_len, len);
    ArpInfo arp;
    ParseArp(d, len, p, &arp);
    return;
  }
  ASSERT_TRUE(p.l3 == L3Kind::kIPv4 || p.l3 == L3Kind::kIPv6);
  const size_t end = size_t{p.l3_offset} + p.l3_total_len;
  ASSERT_LE(end, len);
  ASSERT_LE(size_t{p.l3_offset} + p.l3_hdr_len, end);
  ASSERT_EQ(p.l4_offset, p.l3_offset + p.l3_hdr_len);
  ASSERT_EQ(p.key.reserved, 0);
  if (p.is_first_fragment) {
    ASSERT_TRUE(p.is_fragment);
  }
  if (p.has_l4) {
    ASSERT_TRUE(!p.is_fragment || p.is_first_fragment);
    const size_t min = p.proto == kIpProtoTcp ? 20 : 8;
    ASSERT_LE(p.l4_offset + min, end);
    if (p.proto == kIpProtoTcp) {
      ASSERT_LE(p.l4_offset + (d[p.l4_offset + 12] >> 4) * 4u, end);
    }
  } else {
    ASSERT_EQ(p.key.sport, 0);
    ASSERT_EQ(p.key.dport, 0);
  }
  if (p.icmp_inner_offset != 0) {
    ASSERT_TRUE(p.has_l4);
    ASSERT_EQ(p.icmp_inner_offset, p.l4_offset + 8);
    ASSERT_LE(p.icmp_inner_offset, end);
  }
  FlowKey inner;
  uint32_t mtu;
  if (ParseIcmpError(d, len, p, &inner, &mtu)) {
    ++*icmp_errors;
    ASSERT_EQ(inner.family, p.key.family);
    ASSERT_EQ(inner.reserved, 0);
  }
  uint8_t target[16];
  uint8_t mac[6];
  bool has_mac;
  if (ParseNeighborSolicitation(d, len, p, target, mac, &has_mac)) ++*ns;
  if (ParseNeighborAdvertisement(d, len, p, target, mac)) ++*ns;
}

// ClassifyIpv4Fast against ParsePacket on the same bytes: it may decline
// anything, but what it accepts ParsePacket accepts with every field equal.
// Returns whether the fast classifier accepted.
bool CheckFastAgrees(const uint8_t* d, size_t len, ParseStatus st, const ParsedPacket& want) {
  ParsedPacket got;
  if (!ClassifyIpv4Fast(d, len, &got)) return false;
  EXPECT_EQ(st, ParseStatus::kOk) << "accepted a frame ParsePacket drops";
  if (st != ParseStatus::kOk) return true;
  EXPECT_EQ(got.l2_len, want.l2_len);
  EXPECT_EQ(got.ether_type, want.ether_type);
  EXPECT_EQ(got.num_vlans, want.num_vlans);
  for (int i = 0; i < kMaxVlanTags; ++i) EXPECT_EQ(got.vlan_tci[i], want.vlan_tci[i]);
  EXPECT_EQ(got.l3, want.l3);
  EXPECT_EQ(got.l3_offset, want.l3_offset);
  EXPECT_EQ(got.l3_hdr_len, want.l3_hdr_len);
  EXPECT_EQ(got.l3_total_len, want.l3_total_len);
  EXPECT_EQ(got.proto, want.proto);
  EXPECT_EQ(got.ttl, want.ttl);
  EXPECT_EQ(got.tos, want.tos);
  EXPECT_EQ(got.df, want.df);
  EXPECT_EQ(got.is_fragment, want.is_fragment);
  EXPECT_EQ(got.is_first_fragment, want.is_first_fragment);
  EXPECT_EQ(got.l4_offset, want.l4_offset);
  EXPECT_EQ(got.has_l4, want.has_l4);
  EXPECT_EQ(got.tcp_flags, want.tcp_flags);
  EXPECT_EQ(got.icmp_type, want.icmp_type);
  EXPECT_EQ(got.icmp_code, want.icmp_code);
  EXPECT_EQ(got.icmp_inner_offset, want.icmp_inner_offset);
  EXPECT_KEY_EQ(got.key, want.key);
  return true;
}

TEST(PacketTest, FuzzMutatedFramesAtEveryLength) {
  const std::vector<Bytes> seeds = FuzzSeeds();
  std::mt19937_64 rng(0x5eed);
  const uint8_t interesting[] = {0,    1,    4,    5,    6,    8,    0x0f, 0x11, 0x20, 0x2c,
                                 0x33, 0x3a, 0x3b, 0x3c, 0x40, 0x45, 0x4f, 0x60, 0x7f, 0x80,
                                 0x81, 0x86, 0x88, 0xa8, 0xdd, 0xf0, 0xff, 0x2b, 0x32, 0x87};
  constexpr int kFrames = 200000;
  int ok = 0;
  int icmp_errors = 0;
  int ns = 0;
  int parses = 0;
  int fast = 0;  // whole frames ClassifyIpv4Fast took
  for (int n = 0; n < kFrames; ++n) {
    Bytes f;
    if (n % 16 == 0) {
      // Pure noise behind a believable Ethernet header.
      f.resize(14 + rng() % 120);
      for (auto& b : f) b = static_cast<uint8_t>(rng());
      const uint16_t types[] = {kEtherTypeIPv4, kEtherTypeIPv6, kEtherTypeVlan, kEtherTypeArp};
      if (f.size() >= 14) {
        const uint16_t t = types[rng() % 4];
        f[12] = static_cast<uint8_t>(t >> 8);
        f[13] = static_cast<uint8_t>(t);
      }
    } else {
      f = seeds[rng() % seeds.size()];
      const int mutations = 1 + static_cast<int>(rng() % 4);
      for (int m = 0; m < mutations; ++m) {
        // Bias towards the headers, where the length fields are.
        const size_t pos = (rng() & 1) ? rng() % std::min<size_t>(f.size(), 80) : rng() % f.size();
        switch (rng() % 3) {
          case 0:
            f[pos] = static_cast<uint8_t>(rng());
            break;
          case 1:
            f[pos] = interesting[rng() % sizeof(interesting)];
            break;
          default:
            f[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
            break;
        }
      }
      if (rng() % 8 == 0) f.resize(f.size() + rng() % 40, static_cast<uint8_t>(rng()));
    }
    // Every length, the frame always ending at the end of the allocation.
    ExactBuffer buf(f);
    for (size_t len = 0; len <= f.size(); ++len) {
      uint8_t* d = buf.mutable_data() + (f.size() - len);
      std::memcpy(d, f.data(), len);
      ParsedPacket p;
      DropReason why = DropReason::kNoTable;
      const ParseStatus st = ParsePacket(d, len, &p, &why);
      ++parses;
      if (st == ParseStatus::kOk) {
        if (len == f.size()) ++ok;
      } else {
        ASSERT_NE(why, DropReason::kNoTable);
      }
      CheckInvariants(d, len, p, st, &icmp_errors, &ns);
      if (CheckFastAgrees(d, len, st, p) && len == f.size()) ++fast;
      if (HasFatalFailure() || HasNonfatalFailure()) {
        FAIL() << "frame (len " << len << " of " << f.size() << "):\n" << Hex(f);
      }
    }
  }
  // The fuzz must reach deep code, not just bounce off the first check.
  // (Most prefixes are rightly dropped; count whole frames.)
  EXPECT_GT(ok, kFrames / 4) << "parses " << parses;
  EXPECT_GT(icmp_errors, 10000);
  EXPECT_GT(ns, 5000);
  EXPECT_GT(fast, kFrames / 50);
}

// The fast classifier over well-formed IPv4 TCP/UDP frames with random
// fields (lengths, flags, TOS, TTL, DF, padding, data offset), then the same
// frames with one header byte (Ethernet, IPv4 or the L4 header) replaced or
// the frame cut: whatever it accepts, ParsePacket accepts with every field
// equal, and it accepts every intact frame of the common form.
TEST(PacketTest, FastIpv4ClassifierAgreesWithParsePacket) {
  std::mt19937_64 rng(0xfa57);
  int intact = 0;
  int accepted = 0;
  int mutated_accepted = 0;
  int mutated_declined = 0;
  for (int n = 0; n < 100000; ++n) {
    V4Opts o;
    o.ttl = static_cast<uint8_t>(rng());
    o.tos = static_cast<uint8_t>(rng());
    o.frag = (rng() & 1) ? 0x4000 : 0;
    const bool tcp = rng() & 1;
    const uint32_t src = static_cast<uint32_t>(rng());
    const uint32_t dst = static_cast<uint32_t>(rng());
    const auto sport = static_cast<uint16_t>(rng());
    const auto dport = static_cast<uint16_t>(rng());
    const size_t payload = rng() % 64;
    const Bytes l4 = tcp ? Tcp(sport, dport, static_cast<uint8_t>(rng()),
                               5 + static_cast<int>(rng() % 3), payload)
                         : Udp(sport, dport, payload);
    Bytes f = Eth(kEtherTypeIPv4, Ipv4(tcp ? kIpProtoTcp : kIpProtoUdp, src, dst, l4, o));
    if (rng() % 4 == 0) f.resize(f.size() + rng() % 24, static_cast<uint8_t>(rng()));  // padding
    {
      ExactBuffer buf(f);
      ParsedPacket p;
      DropReason why;
      const ParseStatus st = ParsePacket(buf.data(), buf.size(), &p, &why);
      ASSERT_EQ(st, ParseStatus::kOk) << Hex(f);
      ++intact;
      ASSERT_TRUE(CheckFastAgrees(buf.data(), buf.size(), st, p)) << "declined\n" << Hex(f);
      ++accepted;
    }
    // One mutation in the first 14 + 20 + 20 bytes, or a cut.
    Bytes g = f;
    if (rng() % 4 == 0) {
      g.resize(rng() % g.size());
    } else {
      const size_t pos = rng() % std::min<size_t>(g.size(), 54);
      const uint8_t vals[] = {0,    0x08, 0x45, 0x46, 0x55, 0x40, 0x20, 0x3f,
                              0x1f, 0x06, 0x11, 0xff, 0x01, 0x81, 0x86, 0xdd};
      g[pos] = (rng() & 1) ? vals[rng() % sizeof(vals)] : static_cast<uint8_t>(rng());
    }
    ExactBuffer buf(g);
    ParsedPacket p;
    DropReason why;
    const ParseStatus st = ParsePacket(buf.data(), buf.size(), &p, &why);
    if (CheckFastAgrees(buf.data(), buf.size(), st, p)) {
      ++mutated_accepted;
    } else {
      ++mutated_declined;
    }
    if (HasFailure()) FAIL() << "frame:\n" << Hex(g);
  }
  EXPECT_EQ(accepted, intact);
  // Both outcomes are exercised by the mutations.
  EXPECT_GT(mutated_accepted, 10000);
  EXPECT_GT(mutated_declined, 10000);
}

// What the fast classifier leaves to ParsePacket: each fixture-like form
// outside the common one.
TEST(PacketTest, FastIpv4ClassifierDeclinesTheRest) {
  V4Opts opts;
  opts.options = Bytes(4, 1);
  V4Opts first;
  first.frag = 0x2000;
  V4Opts later;
  later.frag = 3;
  const std::vector<Bytes> declined = {
      UdpV6Frame(),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kAck)), {{kEtherTypeVlan, 5}}),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kAck), opts)),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 20, 300), first)),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Bytes(16, 0), later)),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoIcmp, kClient, kVip, Icmp(8, 0, 1, Bytes(8, 0)))),
      Eth(kEtherTypeIPv4, Ipv4(47, kClient, kVip, Bytes(16, 0))),
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoTcp, kClient, kVip, Tcp(1, 2, kAck, 4))),  // doff 16
      Eth(kEtherTypeIPv4, Ipv4(kIpProtoUdp, kClient, kVip, Udp(1, 2, 4, 40))),    // ulen lies
      Eth(kEtherTypeArp, ArpRequest()),
  };
  for (const Bytes& f : declined) {
    ExactBuffer buf(f);
    ParsedPacket p;
    EXPECT_FALSE(ClassifyIpv4Fast(buf.data(), buf.size(), &p)) << Hex(f);
  }
  ParsedPacket p;
  EXPECT_TRUE(ClassifyIpv4Fast(ExactBuffer(TcpV4Frame()).data(), TcpV4Frame().size(), &p));
}

}  // namespace
}  // namespace lb
