// The table builder and the publisher (controlplane/table_builder.h,
// publisher.h) against real table regions on /dev/shm with small capacities:
// VIP index lookups, member order, ring contents, slot stability and
// incarnations across rebuilds, restart continuity, fingerprints that agree
// across nodes whose slot numbering differs, and the reclamation wait that
// refuses to overwrite a slot a stuck lcore may still read.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "controlplane/config.h"
#include "controlplane/publisher.h"
#include "controlplane/table_builder.h"
#include "lib/maglev.h"
#include "lib/shm_region.h"

#ifndef LB_TEST_CONFIG_DIR
#error "LB_TEST_CONFIG_DIR must name tests/configs"
#endif

namespace lb {
namespace {

constexpr uint32_t kRing = 257;

TableCapacities SmallCaps() { return {8, 16, 64, kRing}; }

std::string TempPath(const std::string& name) {
  return "/dev/shm/lb-tb-test-" + std::to_string(getpid()) + "-" + name;
}

DesiredState Desired(const std::string& text) {
  auto c = ParseConfigText(text, "test");
  EXPECT_TRUE(c.ok()) << c.status();
  auto d = ValidateConfig(c.ok() ? *c : v1::Config(), SmallCaps(), nullptr);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : DesiredState();
}

// tests/configs/basic.textproto with a ring small enough for these regions.
std::string BasicText() {
  std::ifstream in(std::string(LB_TEST_CONFIG_DIR) + "/basic.textproto");
  std::stringstream ss;
  ss << in.rdbuf();
  return absl::StrReplaceAll(ss.str(), {{"ring_size: 65537", "ring_size: 257"}});
}

// A single pool "web" with the given backends (address -> extra fields) and
// one TCP VIP on port 80.
std::string WebConfig(const std::vector<std::string>& backends) {
  std::string s =
      "node { tunnel_source_ipv4: \"192.0.2.1\" }\n tables { ring_size: 257 }\n"
      "pools { name: \"web\"\n";
  for (const std::string& b : backends) absl::StrAppend(&s, "  backends { address: ", b, " }\n");
  absl::StrAppend(&s,
                  "}\nvips { address: \"198.51.100.10\" protocol: PROTOCOL_TCP port: 80 "
                  "pool: \"web\" }\n");
  return s;
}

std::array<uint8_t, 16> Addr(const char* text) {
  auto a = ParseIpAddress(text);
  EXPECT_TRUE(a.ok()) << text;
  return a.ok() ? a->bytes : std::array<uint8_t, 16>{};
}

std::string BackendAddress(const SlotView& v, uint32_t slot) {
  const BackendEntry& e = v.backends[slot];
  return IpAddressFromBytes(static_cast<AddrFamily>(e.family), e.addr).text;
}

// Slot of the in-use backend with this address (-1 if none, -2 if several).
int SlotOf(const SlotView& v, const std::string& address) {
  int found = -1;
  for (uint32_t s = 1; s < v.header->num_backends; ++s) {
    if (v.backends[s].state == static_cast<uint8_t>(BackendState::kUnused)) continue;
    if (BackendAddress(v, s) == address) found = found == -1 ? static_cast<int>(s) : -2;
  }
  return found;
}

int FindVip(const SlotView& v, const char* addr, uint8_t proto, uint16_t port) {
  auto a = ParseIpAddress(addr);
  EXPECT_TRUE(a.ok());
  return v.FindVip(a->family, a->bytes.data(), proto, port);
}

std::vector<uint32_t> Members(const SlotView& v, int vip) {
  const VipEntry& e = v.vips[vip];
  return std::vector<uint32_t>(v.members + e.member_begin,
                               v.members + e.member_begin + e.member_count);
}

std::map<uint32_t, uint32_t> RingCounts(const SlotView& v, int vip) {
  std::map<uint32_t, uint32_t> counts;
  for (uint32_t k = 0; k < v.header->ring_size; ++k) ++counts[v.Ring(vip)[k]];
  return counts;
}

// Everything a slot publishes except generation, time and checksum.
std::string SlotContents(const SlotView& v) {
  const SlotHeader& h = *v.header;
  std::string s;
  auto add = [&s](const void* p, size_t n) { s.append(static_cast<const char*>(p), n); };
  add(&h.num_vips, offsetof(SlotHeader, reserved) - offsetof(SlotHeader, num_vips));
  add(v.vips, sizeof(VipEntry) * h.num_vips);
  add(v.backends, sizeof(BackendEntry) * h.num_backends);
  add(v.members, sizeof(uint32_t) * h.num_members);
  add(v.vip_hash, sizeof(uint32_t) * (v.vip_hash_mask + 1));
  for (uint32_t i = 0; i < h.num_vips; ++i) {
    if (v.vips[i].flags & kVipInUse) add(v.Ring(i), sizeof(uint32_t) * h.ring_size);
  }
  return s;
}

class BuilderTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* n : {"a", "b", "stats"}) unlink(TempPath(n).c_str());
  }

  PublisherOptions Options(const std::string& region) {
    PublisherOptions o;
    o.table_path = TempPath(region);
    o.stats_path = TempPath("stats");
    o.caps = SmallCaps();
    o.reclaim_timeout_ns = 200'000'000;
    o.stuck_after_ns = 50'000'000;
    return o;
  }

  Publisher Open(const std::string& region = "a") {
    auto p = Publisher::Open(Options(region));
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }

  // Publishes and returns the now-current slot.
  SlotView Publish(Publisher& p, const DesiredState& d) {
    auto r = p.Publish(d);
    EXPECT_TRUE(r.ok()) << r.status();
    SlotView v = p.writer().CurrentSlot();
    EXPECT_TRUE(ValidateSlot(v).ok()) << ValidateSlot(v);
    return v;
  }
};

// ------------------------------------------------------------- layout ---

TEST_F(BuilderTest, GoldenLayoutOfTheBasicConfig) {
  Publisher p = Open();
  SlotView v = Publish(p, Desired(BasicText()));
  const SlotHeader& h = *v.header;
  EXPECT_EQ(h.generation, 1u);
  EXPECT_EQ(h.ring_size, kRing);
  EXPECT_EQ(h.num_vips, 4u);
  EXPECT_EQ(h.num_backends, 8u);  // slot 0 + 7 backends
  EXPECT_EQ(h.num_members, 6u);   // web 2 + web 2 + dns 2 + empty 0
  EXPECT_EQ(0, std::memcmp(h.node.tunnel_src_v4, Addr("192.0.2.1").data(), 4));
  EXPECT_EQ(0, std::memcmp(h.node.tunnel_src_v6, Addr("2001:db8:ffff::1").data(), 16));

  // New slots go in (pool, address) order: dns < empty < web.
  const char* by_slot[] = {"",         "2001:db8:1::53", "2001:db8:1::54", "10.1.0.1",
                           "10.1.0.2", "10.1.0.3",       "10.1.0.4",       "10.1.0.5"};
  const BackendState states[] = {BackendState::kUnused,   BackendState::kActive,
                                 BackendState::kActive,   BackendState::kActive,
                                 BackendState::kDraining, BackendState::kActive,
                                 BackendState::kDown,     BackendState::kDraining};
  const uint32_t ids[] = {0, 100, 101, 1, 2, 3, 4, 5};  // dns ids are explicit
  const uint32_t weights[] = {0, 1, 1, 2, 1, 1, 1, 0};
  for (uint32_t s = 1; s < 8; ++s) {
    SCOPED_TRACE(s);
    EXPECT_EQ(BackendAddress(v, s), by_slot[s]);
    EXPECT_EQ(v.backends[s].state, static_cast<uint8_t>(states[s]));
    EXPECT_EQ(v.backends[s].incarnation, 1u);
    EXPECT_EQ(v.backends[s].backend_id, ids[s]);
    EXPECT_EQ(v.backends[s].weight, weights[s]);
  }
  EXPECT_EQ(v.backends[1].family, 6);
  EXPECT_EQ(v.backends[3].family, 4);
  EXPECT_EQ(v.backends[2].max_connections, 1000u);
  EXPECT_EQ(std::vector<uint8_t>(v.backends[0].addr, v.backends[0].addr + 16),
            std::vector<uint8_t>(16, 0));

  // VIP positions in key order; ids 1, 2 explicit, the others assigned.
  const char* keys[] = {"198.51.100.10:0/tcp", "198.51.100.10:80/tcp", "198.51.100.11:443/tcp",
                        "[2001:db8:100::53]:53/udp"};
  const uint32_t vip_ids[] = {2, 1, 3, 4};
  for (uint32_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(keys[i]);
    const VipEntry& e = v.vips[i];
    EXPECT_EQ(
        VipKey(IpAddressFromBytes(static_cast<AddrFamily>(e.family), e.addr), e.proto, e.port),
        keys[i]);
    EXPECT_EQ(e.vip_id, vip_ids[i]);
    EXPECT_TRUE(e.flags & kVipInUse);
  }
  EXPECT_EQ(v.vips[3].algorithm, static_cast<uint8_t>(Algorithm::kIpHash));
  EXPECT_EQ(v.vips[3].flags, kVipInUse | kVipFragmentTolerant);
  EXPECT_EQ(v.vips[0].algorithm, static_cast<uint8_t>(Algorithm::kMaglev));
  EXPECT_EQ(v.vips[0].flags, kVipInUse);
}

TEST_F(BuilderTest, VipIndexLookups) {
  Publisher p = Open();
  SlotView v = Publish(p, Desired(BasicText()));
  const int exact = FindVip(v, "198.51.100.10", IPPROTO_TCP, 80);
  ASSERT_GE(exact, 0);
  EXPECT_EQ(v.vips[exact].port, 80);
  EXPECT_EQ(v.vips[exact].vip_id, 1u);
  // Another port on the same address falls back to the all-ports VIP.
  const int any = FindVip(v, "198.51.100.10", IPPROTO_TCP, 8080);
  ASSERT_GE(any, 0);
  EXPECT_NE(any, exact);
  EXPECT_EQ(v.vips[any].port, 0);
  EXPECT_EQ(v.vips[any].vip_id, 2u);
  EXPECT_EQ(FindVip(v, "198.51.100.10", IPPROTO_TCP, 0), any);
  auto a = ParseIpAddress("198.51.100.10");
  EXPECT_EQ(v.FindVipExact(a->family, a->bytes.data(), IPPROTO_TCP, 8080), -1);
  // IPv6.
  const int dns = FindVip(v, "2001:db8:100::53", IPPROTO_UDP, 53);
  ASSERT_GE(dns, 0);
  EXPECT_EQ(v.vips[dns].vip_id, 4u);
  // Misses: other protocol, other port without an all-ports VIP, other address.
  EXPECT_EQ(FindVip(v, "198.51.100.10", IPPROTO_UDP, 80), -1);
  EXPECT_EQ(FindVip(v, "2001:db8:100::53", IPPROTO_UDP, 54), -1);
  EXPECT_EQ(FindVip(v, "2001:db8:100::53", IPPROTO_TCP, 53), -1);
  EXPECT_EQ(FindVip(v, "198.51.100.12", IPPROTO_TCP, 80), -1);
  EXPECT_EQ(FindVip(v, "198.51.100.11", IPPROTO_TCP, 80), -1);
  // The VIP on the empty pool is found; it has no members and an empty ring.
  const int empty = FindVip(v, "198.51.100.11", IPPROTO_TCP, 443);
  ASSERT_GE(empty, 0);
  EXPECT_EQ(v.vips[empty].member_count, 0u);
  EXPECT_EQ(RingCounts(v, empty), (std::map<uint32_t, uint32_t>{{0, kRing}}));
  // Every in-use VIP is reachable through the index, and the index is at
  // most half full.
  uint32_t cells = 0;
  for (uint32_t i = 0; i <= v.vip_hash_mask; ++i) cells += v.vip_hash[i] != 0;
  EXPECT_EQ(cells, 4u);
  for (uint32_t i = 0; i < v.header->num_vips; ++i) {
    const VipEntry& e = v.vips[i];
    EXPECT_EQ(v.FindVipExact(static_cast<AddrFamily>(e.family), e.addr, e.proto, e.port),
              static_cast<int>(i));
  }
}

TEST_F(BuilderTest, IndexProbesPastCollisions) {
  // Eight VIPs in a 16-cell index: whatever the hash, every one is found
  // (some of them after linear probing).
  std::string text = WebConfig({"\"10.1.0.1\""});
  for (int i = 1; i < 8; ++i) {
    absl::StrAppend(&text, "vips { address: \"198.51.100.", i,
                    "\" protocol: PROTOCOL_UDP port: 53 pool: \"web\" }\n");
  }
  Publisher p = Open();
  SlotView v = Publish(p, Desired(text));
  ASSERT_EQ(v.header->num_vips, 8u);
  for (int i = 1; i < 8; ++i) {
    const std::string addr = absl::StrCat("198.51.100.", i);
    const int idx = FindVip(v, addr.c_str(), IPPROTO_UDP, 53);
    ASSERT_GE(idx, 0) << addr;
    EXPECT_EQ(0, std::memcmp(v.vips[idx].addr, Addr(addr.c_str()).data(), 16));
    EXPECT_EQ(FindVip(v, addr.c_str(), IPPROTO_UDP, 54), -1);
  }
}

TEST_F(BuilderTest, MembersSortedAndRingsHoldOnlyActiveBackends) {
  Publisher p = Open();
  SlotView v = Publish(p, Desired(BasicText()));
  const int web = FindVip(v, "198.51.100.10", IPPROTO_TCP, 80);
  const int web_any = FindVip(v, "198.51.100.10", IPPROTO_TCP, 0);
  const int dns = FindVip(v, "2001:db8:100::53", IPPROTO_UDP, 53);
  const uint32_t s1 = SlotOf(v, "10.1.0.1"), s3 = SlotOf(v, "10.1.0.3");
  // Listed .3 before .1 in the config; members are sorted by address.
  EXPECT_EQ(Members(v, web), (std::vector<uint32_t>{s1, s3}));
  EXPECT_EQ(Members(v, web_any), (std::vector<uint32_t>{s1, s3}));
  EXPECT_EQ(Members(v, dns),
            (std::vector<uint32_t>{static_cast<uint32_t>(SlotOf(v, "2001:db8:1::53")),
                                   static_cast<uint32_t>(SlotOf(v, "2001:db8:1::54"))}));
  // Draining, down and weight-0 backends are in the table with their state
  // but in no ring. Weight 2 gets twice the entries (Maglev: within 2).
  auto counts = RingCounts(v, web);
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts.count(0), 0u);
  EXPECT_NEAR(counts[s1], kRing * 2.0 / 3, 2.0);
  EXPECT_NEAR(counts[s3], kRing * 1.0 / 3, 2.0);
  for (const char* out : {"10.1.0.2", "10.1.0.4", "10.1.0.5"}) {
    const int s = SlotOf(v, out);
    ASSERT_GT(s, 0) << out;
    EXPECT_EQ(counts.count(static_cast<uint32_t>(s)), 0u) << out;
  }
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.2")].state, static_cast<uint8_t>(BackendState::kDraining));
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.4")].state, static_cast<uint8_t>(BackendState::kDown));
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.5")].state, static_cast<uint8_t>(BackendState::kDraining));
  // Two VIPs on one pool share ring and fingerprint; the ring is the Maglev
  // table of the members, values = slots.
  EXPECT_EQ(0, std::memcmp(v.Ring(web), v.Ring(web_any), kRing * sizeof(uint32_t)));
  EXPECT_EQ(v.vips[web].fingerprint, v.vips[web_any].fingerprint);
  std::vector<uint32_t> expect(kRing);
  ASSERT_TRUE(
      BuildMaglevTable({{"10.1.0.1", 2, s1}, {"10.1.0.3", 1, s3}}, absl::MakeSpan(expect)).ok());
  EXPECT_EQ(std::vector<uint32_t>(v.Ring(web), v.Ring(web) + kRing), expect);
  for (int vip : {web, web_any, dns}) {
    EXPECT_EQ(ComputeVipFingerprint(v, vip), v.vips[vip].fingerprint);
  }
  EXPECT_NE(v.vips[web].fingerprint, v.vips[dns].fingerprint);
}

// ---------------------------------------------------- slot stability ---

TEST_F(BuilderTest, SlotsAndIncarnationsSurviveRebuilds) {
  Publisher p = Open();
  SlotView v = Publish(
      p, Desired(WebConfig({"\"10.1.0.1\"", "\"10.1.0.2\"", "\"10.1.0.3\"", "\"10.1.0.4\""})));
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(SlotOf(v, absl::StrCat("10.1.0.", i)), i);
    EXPECT_EQ(v.backends[i].incarnation, 1u);
  }

  // Remove .2: the others keep slot and incarnation; slot 2 is free but
  // remembers its incarnation; no ring entry points at it.
  v = Publish(p, Desired(WebConfig({"\"10.1.0.1\"", "\"10.1.0.3\"", "\"10.1.0.4\""})));
  EXPECT_EQ(SlotOf(v, "10.1.0.1"), 1);
  EXPECT_EQ(SlotOf(v, "10.1.0.3"), 3);
  EXPECT_EQ(SlotOf(v, "10.1.0.4"), 4);
  EXPECT_EQ(SlotOf(v, "10.1.0.2"), -1);
  EXPECT_EQ(v.backends[2].state, static_cast<uint8_t>(BackendState::kUnused));
  EXPECT_EQ(v.backends[2].incarnation, 1u);
  for (uint32_t s : {1u, 3u, 4u}) EXPECT_EQ(v.backends[s].incarnation, 1u);
  EXPECT_EQ(RingCounts(v, 0).count(2), 0u);

  // Add .9: it takes the freed slot 2 with incarnation 2. State changes keep
  // slot and incarnation.
  v = Publish(p, Desired(WebConfig({"\"10.1.0.1\" state: BACKEND_STATE_DRAINING", "\"10.1.0.3\"",
                                    "\"10.1.0.4\" weight: 3", "\"10.1.0.9\""})));
  EXPECT_EQ(SlotOf(v, "10.1.0.9"), 2);
  EXPECT_EQ(v.backends[2].incarnation, 2u);
  EXPECT_EQ(SlotOf(v, "10.1.0.1"), 1);
  EXPECT_EQ(v.backends[1].incarnation, 1u);
  EXPECT_EQ(v.backends[1].state, static_cast<uint8_t>(BackendState::kDraining));
  EXPECT_EQ(v.backends[4].weight, 3u);

  // Drop .1 and add two in the same build: "10.1.0.10" (first as text) takes
  // slot 1, freed by this very build, with incarnation 2; "10.1.0.11" a fresh
  // slot 5.
  v = Publish(p, Desired(WebConfig({"\"10.1.0.3\"", "\"10.1.0.4\"", "\"10.1.0.9\"", "\"10.1.0.11\"",
                                    "\"10.1.0.10\""})));
  EXPECT_EQ(SlotOf(v, "10.1.0.1"), -1);
  EXPECT_EQ(SlotOf(v, "10.1.0.10"), 1);
  EXPECT_EQ(v.backends[1].incarnation, 2u);
  EXPECT_EQ(SlotOf(v, "10.1.0.11"), 5);
  EXPECT_EQ(v.backends[5].incarnation, 1u);

  // Removing the highest slot does not shrink the table below it: the freed
  // slot's incarnation must survive for its next owner.
  v = Publish(
      p, Desired(WebConfig({"\"10.1.0.3\"", "\"10.1.0.4\"", "\"10.1.0.9\"", "\"10.1.0.10\""})));
  EXPECT_EQ(v.header->num_backends, 6u);
  EXPECT_EQ(v.backends[5].state, static_cast<uint8_t>(BackendState::kUnused));
  EXPECT_EQ(v.backends[5].incarnation, 1u);
  v = Publish(p, Desired(WebConfig({"\"10.1.0.3\"", "\"10.1.0.4\"", "\"10.1.0.9\"", "\"10.1.0.10\"",
                                    "\"10.1.0.20\"", "\"10.1.0.21\""})));
  EXPECT_EQ(SlotOf(v, "10.1.0.20"), 5);
  EXPECT_EQ(v.backends[5].incarnation, 2u);
  EXPECT_EQ(SlotOf(v, "10.1.0.21"), 6);
  EXPECT_EQ(v.backends[6].incarnation, 1u);
  EXPECT_EQ(p.published_generation(), 6u);
}

TEST_F(BuilderTest, AssignedIdsAreStable) {
  Publisher p = Open();
  SlotView v = Publish(p, Desired(WebConfig({"\"10.1.0.1\"", "\"10.1.0.2\"", "\"10.1.0.3\""})));
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.3")].backend_id, 3u);
  // .1 leaves: .3 keeps id 3 although id 1 is free; a newcomer takes id 1.
  v = Publish(p, Desired(WebConfig({"\"10.1.0.2\"", "\"10.1.0.3\"", "\"10.1.0.7\""})));
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.2")].backend_id, 2u);
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.3")].backend_id, 3u);
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.7")].backend_id, 1u);
  // An explicit id wins over an assigned one; the loser gets a fresh id.
  v = Publish(
      p,
      Desired(WebConfig({"\"10.1.0.2\"", "\"10.1.0.3\"", "\"10.1.0.8\" id: 1", "\"10.1.0.7\""})));
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.8")].backend_id, 1u);
  EXPECT_EQ(v.backends[SlotOf(v, "10.1.0.7")].backend_id, 4u);
}

TEST_F(BuilderTest, ConfigOrderDoesNotMatter) {
  const std::string forward = R"pb(
    node { tunnel_source_ipv4: "192.0.2.1" }
    tables { ring_size: 257 }
    pools {
      name: "a"
      backends { address: "10.0.0.1" }
      backends { address: "10.0.0.2" weight: 3 }
    }
    pools {
      name: "b"
      backends { address: "10.0.1.1" }
      backends { address: "10.0.1.2" }
    }
    vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "a" }
    vips { address: "198.51.100.2" protocol: PROTOCOL_TCP port: 80 pool: "b" }
  )pb";
  const std::string backward = R"pb(
    node { tunnel_source_ipv4: "192.0.2.1" }
    tables { ring_size: 257 }
    vips { address: "198.51.100.2" protocol: PROTOCOL_TCP port: 80 pool: "b" }
    vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "a" }
    pools {
      name: "b"
      backends { address: "10.0.1.2" }
      backends { address: "10.0.1.1" }
    }
    pools {
      name: "a"
      backends { address: "10.0.0.2" weight: 3 }
      backends { address: "10.0.0.1" }
    }
  )pb";
  Publisher a = Open("a");
  Publisher b = Open("b");
  EXPECT_EQ(SlotContents(Publish(a, Desired(forward))),
            SlotContents(Publish(b, Desired(backward))));
}

TEST_F(BuilderTest, BuildTablesIsPure) {
  auto wa = TableWriter::Open(TempPath("a"), SmallCaps(), false);
  auto wb = TableWriter::Open(TempPath("b"), SmallCaps(), false);
  ASSERT_TRUE(wa.ok() && wb.ok());
  const DesiredState d = Desired(BasicText());
  auto ra = BuildTables(d, SlotAssignment{}, wa->NextSlot());
  auto rb = BuildTables(d, SlotAssignment{}, wb->NextSlot());
  ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status() << rb.status();
  EXPECT_EQ(SlotContents(wa->NextSlot()), SlotContents(wb->NextSlot()));
  EXPECT_EQ(ra->num_backends, 8u);
  EXPECT_EQ(ra->backends_in_use, 7u);
  ASSERT_EQ(ra->vips.size(), 4u);
  EXPECT_EQ(ra->vips[0].key, "198.51.100.10:80/tcp");  // config order
  EXPECT_EQ(ra->vips[0].members, 2u);
  EXPECT_EQ(ra->assignment.backends.size(), 8u);
  EXPECT_EQ(ra->assignment.backends[3].pool, "web");
  EXPECT_EQ(ra->assignment.backends[3].address, "10.1.0.1");
  // Nothing was published.
  EXPECT_EQ(wa->published_generation(), 0u);
}

// A scratch ring carries over only when its inputs are the same: a rebuild
// of the same pools reuses it, a changed weight or member refills it, and
// the slot is byte for byte what a build without a scratch writes.
TEST_F(BuilderTest, ScratchRingsAreReusedOnlyForTheSameInputs) {
  auto wa = TableWriter::Open(TempPath("a"), SmallCaps(), false);
  auto wb = TableWriter::Open(TempPath("b"), SmallCaps(), false);
  ASSERT_TRUE(wa.ok() && wb.ok());
  BuildScratch scratch;
  auto same_as_fresh = [&](const DesiredState& d, uint64_t reused_before, uint64_t reused) {
    auto ra = BuildTables(d, SlotAssignment{}, wa->NextSlot(), &scratch);
    auto rb = BuildTables(d, SlotAssignment{}, wb->NextSlot());
    ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status() << rb.status();
    EXPECT_EQ(SlotContents(wa->NextSlot()), SlotContents(wb->NextSlot()));
    EXPECT_EQ(scratch.rings_reused - reused_before, reused);
    for (size_t i = 0; i < ra->vips.size(); ++i) {
      EXPECT_EQ(ra->vips[i].fingerprint, rb->vips[i].fingerprint);
      EXPECT_EQ(ra->vips[i].fingerprint,
                ComputeVipFingerprint(wa->NextSlot(), ra->vips[i].position));
    }
  };
  const DesiredState basic = Desired(BasicText());
  same_as_fresh(basic, scratch.rings_reused, 0);
  const uint64_t pools = scratch.ring_inputs.size();
  ASSERT_GT(pools, 1u);
  same_as_fresh(basic, scratch.rings_reused, pools);  // nothing changed: every ring reused
  const DesiredState w1 = Desired(WebConfig({"\"10.1.0.1\"", "\"10.1.0.2\""}));
  const DesiredState w2 = Desired(WebConfig({"\"10.1.0.1\" weight: 2", "\"10.1.0.2\""}));
  const DesiredState w3 = Desired(WebConfig({"\"10.1.0.1\"", "\"10.1.0.3\""}));
  same_as_fresh(w1, scratch.rings_reused, 0);
  same_as_fresh(w2, scratch.rings_reused, 0);  // a weight changed
  same_as_fresh(w3, scratch.rings_reused, 0);  // a member changed
  same_as_fresh(w3, scratch.rings_reused, 1);
}

// A persistent scratch (with its cached member order), the previous
// build's slot guesses and the skipped identity sort must give exactly what
// a fresh build without guesses gives, through a history of changes that
// keep, reorder, add and remove members; and a build whose backends all
// carry the ids they already had (the sort is skipped) must equal one where
// the same backends carry none (it runs).
TEST_F(BuilderTest, SkippedSortsGiveTheTablesOfAFullBuild) {
  auto wa = TableWriter::Open(TempPath("a"), SmallCaps(), false);
  auto wb = TableWriter::Open(TempPath("b"), SmallCaps(), false);
  ASSERT_TRUE(wa.ok() && wb.ok());
  BuildScratch scratch;
  SlotAssignment previous;
  auto step = [&](const std::vector<std::string>& backends) {
    const DesiredState d = Desired(WebConfig(backends));
    SlotAssignment no_guesses = previous;
    no_guesses.config_order_slots.clear();
    auto ra = BuildTables(d, previous, wa->NextSlot(), &scratch);
    auto rb = BuildTables(d, no_guesses, wb->NextSlot());
    ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status() << rb.status();
    EXPECT_EQ(SlotContents(wa->NextSlot()), SlotContents(wb->NextSlot()));
    previous = ra->assignment;
  };
  // Config order is not address order ("10.1.0.10" < "10.1.0.9").
  step({"\"10.1.0.9\"", "\"10.1.0.10\"", "\"10.1.0.2\""});
  step({"\"10.1.0.9\" weight: 3", "\"10.1.0.10\"", "\"10.1.0.2\""});         // same members
  step({"\"10.1.0.2\"", "\"10.1.0.9\"", "\"10.1.0.10\""});                   // reordered
  step({"\"10.1.0.2\"", "\"10.1.0.11\"", "\"10.1.0.9\"", "\"10.1.0.10\""});  // added
  step({"\"10.1.0.2\"", "\"10.1.0.11\" state: BACKEND_STATE_DRAINING", "\"10.1.0.10\""});
  step({"\"10.1.0.2\"", "\"10.1.0.11\"", "\"10.1.0.10\""});

  // The ids `previous` handed out, written into the config: no identity is
  // new and every one has an id, so AssignSlots skips its sort.
  std::vector<std::string> with_ids;
  for (const char* a : {"10.1.0.10", "10.1.0.2", "10.1.0.11"}) {
    uint32_t id = 0;
    for (const auto& b : previous.backends) {
      if (b.in_use() && b.address == a) id = b.backend_id;
    }
    ASSERT_NE(id, 0u) << a;
    with_ids.push_back(absl::StrCat("\"", a, "\" id: ", id));
  }
  auto with = BuildTables(Desired(WebConfig(with_ids)), previous, wa->NextSlot(), &scratch);
  auto without = BuildTables(Desired(WebConfig({"\"10.1.0.10\"", "\"10.1.0.2\"", "\"10.1.0.11\""})),
                             previous, wb->NextSlot());
  ASSERT_TRUE(with.ok() && without.ok()) << with.status() << without.status();
  EXPECT_EQ(SlotContents(wa->NextSlot()), SlotContents(wb->NextSlot()));
}

// ------------------------------------------------- restart continuity ---

TEST_F(BuilderTest, RestartReproducesSlotsAndRings) {
  // History makes the numbering differ from a fresh build: pool "b" was
  // there first, so its twin of 10.9.0.1 holds the lower slot although "a"
  // sorts first; .2 was removed and .5 reused its slot.
  const std::string first = R"pb(
    node { tunnel_source_ipv4: "192.0.2.1" }
    tables { ring_size: 257 }
    pools {
      name: "b"
      backends { address: "10.9.0.1" }
      backends { address: "10.9.0.2" }
    }
    vips { address: "198.51.100.2" protocol: PROTOCOL_TCP port: 80 pool: "b" }
  )pb";
  const std::string final_config = R"pb(
    node { tunnel_source_ipv4: "192.0.2.1" }
    tables { ring_size: 257 }
    pools {
      name: "a"
      backends { address: "10.9.0.1" }
      backends { address: "10.9.0.3" weight: 2 }
      backends { address: "10.9.0.4" state: BACKEND_STATE_DRAINING }
    }
    pools {
      name: "b"
      backends { address: "10.9.0.1" }
      backends { address: "10.9.0.5" }
    }
    vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "a" }
    vips { address: "198.51.100.2" protocol: PROTOCOL_TCP port: 80 pool: "b" }
  )pb";
  std::string before;
  {
    Publisher p = Open();
    Publish(p, Desired(first));
    SlotView v = Publish(p, Desired(final_config));
    ASSERT_EQ(SlotOf(v, "10.9.0.1"), -2);  // twins
    EXPECT_EQ(v.backends[1].state, static_cast<uint8_t>(BackendState::kActive));
    // b's twin kept slot 1; a's twin (first new identity) reused slot 2,
    // freed by .2, with incarnation 2.
    const int vip_a = FindVip(v, "198.51.100.1", IPPROTO_TCP, 80);
    const int vip_b = FindVip(v, "198.51.100.2", IPPROTO_TCP, 80);
    EXPECT_EQ(Members(v, vip_a), (std::vector<uint32_t>{2, 3}));
    EXPECT_EQ(Members(v, vip_b), (std::vector<uint32_t>{1, 5}));
    EXPECT_EQ(BackendAddress(v, 2), "10.9.0.1");
    EXPECT_EQ(v.backends[2].incarnation, 2u);
    before = SlotContents(v);
  }
  // A new process: recover from the published slot, publish the same config.
  Publisher p = Open();
  EXPECT_EQ(p.published_generation(), 2u);
  ASSERT_EQ(p.assignment().backends.size(), 6u);
  EXPECT_EQ(p.assignment().backends[1].address, "10.9.0.1");
  EXPECT_EQ(p.assignment().backends[1].pool, "");  // not in the table
  EXPECT_EQ(p.assignment().backends[1].member_of,
            (std::vector<std::string>{"198.51.100.2:80/tcp"}));
  SlotView v = Publish(p, Desired(final_config));
  EXPECT_EQ(v.header->generation, 3u);
  EXPECT_EQ(SlotContents(v), before);
  // Without the seed the numbering (and so the rings) would differ.
  Publisher fresh = Open("b");
  EXPECT_NE(SlotContents(Publish(fresh, Desired(final_config))), before);
}

TEST_F(BuilderTest, FingerprintsAgreeAcrossDifferentNumbering) {
  const std::string final_config = BasicText();
  Publisher a = Open("a");
  // Node A has history: other backends came and went first.
  Publish(a, Desired(WebConfig({"\"10.1.0.7\"", "\"10.1.0.8\"", "\"10.1.0.3\""})));
  SlotView va = Publish(a, Desired(final_config));
  Publisher b = Open("b");
  SlotView vb = Publish(b, Desired(final_config));
  EXPECT_NE(SlotOf(va, "10.1.0.1"), SlotOf(vb, "10.1.0.1"));  // numbering differs
  EXPECT_NE(SlotContents(va), SlotContents(vb));
  ASSERT_EQ(va.header->num_vips, 4u);
  ASSERT_EQ(vb.header->num_vips, 4u);
  for (uint32_t i = 0; i < va.header->num_vips; ++i) {
    // VIP positions differ too (A's first VIP kept position 0).
    const VipEntry& e = va.vips[i];
    const int j = vb.FindVipExact(static_cast<AddrFamily>(e.family), e.addr, e.proto, e.port);
    ASSERT_GE(j, 0);
    SCOPED_TRACE(absl::StrCat(i, " ", j));
    EXPECT_EQ(va.vips[i].fingerprint, vb.vips[j].fingerprint);
    EXPECT_EQ(ComputeVipFingerprint(va, i), va.vips[i].fingerprint);
    EXPECT_EQ(ComputeVipFingerprint(vb, j), vb.vips[j].fingerprint);
    // The property behind it: every ring entry names the same backend.
    for (uint32_t k = 0; k < kRing; ++k) {
      const uint32_t sa = va.Ring(i)[k], sb = vb.Ring(j)[k];
      ASSERT_EQ(sa == 0, sb == 0);
      if (sa != 0) {
        ASSERT_EQ(BackendAddress(va, sa), BackendAddress(vb, sb)) << k;
      }
    }
  }
}

TEST_F(BuilderTest, PublishedSlotsValidateForAReader) {
  Publisher p = Open();
  Publish(p, Desired("tables { ring_size: 257 }"));  // nothing at all
  Publish(p, Desired(BasicText()));
  auto r = TableReader::Attach(TempPath("a"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generation(), 2u);
  EXPECT_TRUE(ValidateSlot(r->Slot(1)).ok()) << ValidateSlot(r->Slot(1));
  EXPECT_TRUE(ValidateSlot(r->Slot(2)).ok()) << ValidateSlot(r->Slot(2));
  EXPECT_EQ(r->Slot(1).header->num_vips, 0u);
  EXPECT_EQ(r->Slot(1).header->num_backends, 1u);
  EXPECT_EQ(r->Slot(2).header->num_vips, 4u);
}

TEST_F(BuilderTest, RegionOfOtherCapacitiesIsRefusedUnlessRecreated) {
  { Publisher p = Open(); }
  PublisherOptions o = Options("a");
  o.caps.max_vips = 4;
  auto refused = Publisher::Open(o);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  o.recreate_tables = true;
  auto recreated = Publisher::Open(o);
  ASSERT_TRUE(recreated.ok()) << recreated.status();
  EXPECT_EQ(recreated->published_generation(), 0u);
}

// -------------------------------------------------------- reclamation ---

class ReclaimTest : public BuilderTest {
 protected:
  // A stats region owned by this (live) process with one online lcore.
  void MakeStats(uint64_t observed, uint64_t heartbeat_age_ns) {
    auto s = StatsRegion::Create(TempPath("stats"), {4, 8, 16});
    ASSERT_TRUE(s.ok()) << s.status();
    stats_ = std::make_unique<StatsRegion>(*std::move(s));
    LcoreStats& l = stats_->Lcore(0);
    l.lcore_id = 7;
    l.state.store(static_cast<uint32_t>(LcoreState::kOnline));
    l.observed_generation.store(observed);
    l.heartbeat_ns.store(MonotonicNs() - heartbeat_age_ns);
    stats_->control().num_lcores.store(1);
  }
  std::unique_ptr<StatsRegion> stats_;
};

TEST_F(ReclaimTest, StuckLcoreBlocksPublishAndTheSlotIsNotOverwritten) {
  Publisher p = Open();
  Publish(p, Desired(WebConfig({"\"10.1.0.1\""})));  // generation 1 -> slot 1
  Publish(p, Desired(WebConfig({"\"10.1.0.2\""})));  // generation 2 -> slot 0
  // The lcore still uses generation 1 (slot 1), which generation 3 would
  // overwrite, and its heartbeat stopped 10 s ago.
  MakeStats(1, 10'000'000'000ull);
  auto r = TableReader::Attach(TempPath("a"));
  ASSERT_TRUE(r.ok());
  const std::string slot1 = SlotContents(r->Slot(1));
  const uint64_t checksum1 = r->Slot(1).header->checksum;

  auto refused = p.Publish(Desired(WebConfig({"\"10.1.0.3\""})));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(refused.status().message());
  EXPECT_NE(msg.find("lcore 7 stuck (observed generation 1, heartbeat "), std::string::npos) << msg;
  EXPECT_NE(msg.find("generation 3 not published"), std::string::npos) << msg;
  EXPECT_NE(msg.find("need observed generation >= 2"), std::string::npos) << msg;
  EXPECT_EQ(p.published_generation(), 2u);
  EXPECT_EQ(SlotContents(r->Slot(1)), slot1);
  EXPECT_EQ(r->Slot(1).header->checksum, checksum1);
  EXPECT_EQ(r->Slot(1).header->generation, 1u);
  EXPECT_TRUE(ValidateSlot(r->Slot(1)).ok());

  // Once the lcore moves on, the same publish goes through.
  stats_->Lcore(0).observed_generation.store(2);
  auto ok = p.Publish(Desired(WebConfig({"\"10.1.0.3\""})));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->generation, 3u);
  EXPECT_TRUE(ok->stats_region_present);
}

TEST_F(ReclaimTest, LiveButLateLcoreIsReportedAsWaiting) {
  Publisher p = Open();
  Publish(p, Desired(WebConfig({"\"10.1.0.1\""})));
  MakeStats(0, 0);  // attaching: online, nothing observed, heartbeat fresh
  // Keep the heartbeat fresh so that it is late, not stuck.
  std::atomic<bool> stop{false};
  std::thread beat([&] {
    while (!stop.load()) {
      stats_->Lcore(0).heartbeat_ns.store(MonotonicNs());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  auto refused = p.Publish(Desired(WebConfig({"\"10.1.0.2\""})));
  stop.store(true);
  beat.join();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("lcore 7 waiting (observed generation 0)"),
            std::string::npos)
      << refused.status();
  EXPECT_EQ(refused.status().message().find("stuck"), std::string::npos) << refused.status();
  EXPECT_EQ(p.published_generation(), 1u);
}

TEST_F(ReclaimTest, PublishWaitsForAnLcoreThatMovesOn) {
  Publisher p = Open();
  Publish(p, Desired(WebConfig({"\"10.1.0.1\""})));
  Publish(p, Desired(WebConfig({"\"10.1.0.2\""})));
  MakeStats(1, 0);
  std::thread lcore([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stats_->Lcore(0).heartbeat_ns.store(MonotonicNs());
    stats_->Lcore(0).observed_generation.store(2);
  });
  auto r = p.Publish(Desired(WebConfig({"\"10.1.0.3\""})));
  lcore.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generation, 3u);
  EXPECT_GE(r->wait_ms, 10.0);
  EXPECT_LT(r->wait_ms, 200.0);
}

TEST_F(ReclaimTest, DeadOrOfflineDataplaneDoesNotBlock) {
  Publisher p = Open();
  Publish(p, Desired(WebConfig({"\"10.1.0.1\""})));
  Publish(p, Desired(WebConfig({"\"10.1.0.2\""})));
  MakeStats(0, 10'000'000'000ull);
  stats_->Lcore(0).state.store(static_cast<uint32_t>(LcoreState::kOffline));
  auto r = p.Publish(Desired(WebConfig({"\"10.1.0.3\""})));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->wait_ms, 50.0);
  // Online but its process is gone (pid that cannot exist: above pid_max).
  stats_->Lcore(0).state.store(static_cast<uint32_t>(LcoreState::kOnline));
  stats_->control().writer_pid.store(0x7ffffff0u);
  r = p.Publish(Desired(WebConfig({"\"10.1.0.4\""})));
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST_F(ReclaimTest, UnreadableStatsRegionRefusesPublish) {
  Publisher p = Open();
  Publish(p, Desired(WebConfig({"\"10.1.0.1\""})));
  {
    std::ofstream junk(TempPath("stats"), std::ios::binary);
    junk << std::string(8192, 'x');
  }
  auto r = p.Publish(Desired(WebConfig({"\"10.1.0.2\""})));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("stats region unusable"), std::string::npos) << r.status();
  EXPECT_EQ(p.published_generation(), 1u);
}

}  // namespace
}  // namespace lb
