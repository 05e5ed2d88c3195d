// Config loading and whole-config validation (controlplane/config.h), and the
// lb-controlplane command line: a refused config names the field at fault and
// leaves the table region byte-for-byte unchanged; SIGHUP reloads; a refused
// reload keeps the last published table and the process running.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <filesystem>

#include <cerrno>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "controlplane/config.h"
#include "google/protobuf/util/message_differencer.h"

#ifndef LB_TEST_CONFIG_DIR
#error "LB_TEST_CONFIG_DIR must name tests/configs"
#endif
#ifndef LB_CONTROLPLANE_BIN
#error "LB_CONTROLPLANE_BIN must name the lb-controlplane executable"
#endif

extern char** environ;

namespace lb {
namespace {

std::string ConfigPath(const std::string& name) {
  return std::string(LB_TEST_CONFIG_DIR) + "/" + name;
}

TableCapacities Caps() { return {64, 4096, 16384, 65537}; }

v1::Config ParseOrDie(const std::string& text) {
  auto c = ParseConfigText(text, "test.textproto");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : v1::Config();
}

// The validation message for `text`, or "" when it is accepted.
std::string Refusal(const std::string& text, const TableCapacities& caps = Caps()) {
  auto d = ValidateConfig(ParseOrDie(text), caps, nullptr);
  if (d.ok()) return "";
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(d.status().message());
}

// A minimal valid config to build error cases from.
constexpr char kBase[] = R"pb(
  node { tunnel_source_ipv4: "192.0.2.1" tunnel_source_ipv6: "2001:db8:ffff::1" }
  pools {
    name: "web"
    backends { address: "10.1.0.1" port: 80 }
    backends { address: "10.1.0.2" port: 80 }
  }
  vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 80 pool: "web" }
)pb";

// ------------------------------------------------------------- loading ---

TEST(ConfigLoadTest, TextAndJsonLoadToTheSameConfig) {
  auto text = LoadConfigFile(ConfigPath("basic.textproto"));
  ASSERT_TRUE(text.ok()) << text.status();
  auto json = LoadConfigFile(ConfigPath("basic.json"));
  ASSERT_TRUE(json.ok()) << json.status();
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(*text, *json)) << diff;
  EXPECT_EQ(text->pools_size(), 3);
  EXPECT_EQ(text->vips_size(), 4);
}

TEST(ConfigLoadTest, BasicConfigValidatesWithDefaultsApplied) {
  auto config = LoadConfigFile(ConfigPath("basic.textproto"));
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<std::string> warnings;
  auto d = ValidateConfig(*config, Caps(), &warnings);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ring_size, 65537u);
  EXPECT_EQ(d->tunnel_source_v4.text, "192.0.2.1");
  EXPECT_EQ(d->tunnel_source_v6.text, "2001:db8:ffff::1");
  ASSERT_EQ(d->pools.size(), 3u);
  const DesiredPool& web = d->pools[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.algorithm, Algorithm::kMaglev);
  ASSERT_EQ(web.backends.size(), 5u);
  EXPECT_EQ(web.backends[0].weight, 1u);  // unset -> 1
  EXPECT_EQ(web.backends[1].weight, 2u);
  EXPECT_EQ(web.backends[2].state, BackendState::kDraining);
  EXPECT_EQ(web.backends[3].state, BackendState::kDown);
  EXPECT_EQ(web.backends[4].weight, 0u);  // explicit 0 stays 0
  EXPECT_EQ(web.backends[4].state, BackendState::kActive);
  EXPECT_EQ(web.backends[4].PublishedState(), BackendState::kDraining);
  EXPECT_EQ(web.NumTakingNewFlows(), 2u);
  EXPECT_EQ(d->pools[1].algorithm, Algorithm::kIpHash);
  EXPECT_EQ(d->pools[1].backends[1].max_connections, 1000u);
  EXPECT_EQ(d->pools[1].backends[1].id, 101u);
  ASSERT_EQ(d->vips.size(), 4u);
  EXPECT_EQ(d->vips[0].Key(), "198.51.100.10:80/tcp");
  EXPECT_EQ(d->vips[1].Key(), "198.51.100.10:0/tcp");
  EXPECT_EQ(d->vips[2].Key(), "[2001:db8:100::53]:53/udp");
  EXPECT_TRUE(d->vips[2].fragment_tolerant);
  EXPECT_EQ(d->vips[2].proto, 17);
  // The VIP on a pool without active backends is accepted, with a warning.
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0],
            "vips[3].pool: pool \"empty\" has no active backend with weight > 0; traffic to "
            "198.51.100.11:443/tcp is dropped (no_backend)");
}

TEST(ConfigLoadTest, TextSyntaxErrorsCarryLineAndColumn) {
  auto c = ParseConfigText("pools {\n  name: \"web\"\n  colour: 3\n}\n", "x.textproto");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(c.status().message()).rfind("x.textproto:3:", 0), 0u) << c.status();
  EXPECT_NE(c.status().message().find("colour"), std::string::npos) << c.status();

  auto file = LoadConfigFile(ConfigPath("syntax_error.textproto"));
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("syntax_error.textproto:5:"), std::string::npos)
      << file.status();
  EXPECT_NE(file.status().message().find("adress"), std::string::npos) << file.status();
}

TEST(ConfigLoadTest, JsonErrorsAreRefused) {
  auto bad_syntax = ParseConfigJson("{\"pools\": [", "x.json");
  ASSERT_FALSE(bad_syntax.ok());
  EXPECT_EQ(std::string(bad_syntax.status().message()).rfind("x.json: ", 0), 0u);
  auto unknown = ParseConfigJson("{\"poolz\": []}", "x.json");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("poolz"), std::string::npos) << unknown.status();
}

TEST(ConfigLoadTest, FormatFollowsTheExtension) {
  auto missing = LoadConfigFile("/nonexistent/lb.textproto");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto ini = LoadConfigFile(ConfigPath("../meson.build"));
  ASSERT_FALSE(ini.ok());
  EXPECT_NE(ini.status().message().find("unknown config format"), std::string::npos);
}

TEST(ConfigLoadTest, AddressesAreCanonicalised) {
  auto a = ParseIpAddress("2001:DB8:0:0::0:1");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->text, "2001:db8::1");
  EXPECT_EQ(a->family, AddrFamily::kIPv6);
  auto b = ParseIpAddress("10.0.0.7");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->bytes[0], 10);
  EXPECT_EQ(b->bytes[3], 7);
  EXPECT_EQ(b->bytes[4], 0);
  EXPECT_FALSE(ParseIpAddress("10.0.0.300").ok());
  EXPECT_FALSE(ParseIpAddress("10.0.0.0/24").ok());
  EXPECT_FALSE(ParseIpAddress("fe80::1%eth0").ok());
  EXPECT_FALSE(ParseIpAddress("0.0.0.0").ok());
  EXPECT_FALSE(ParseIpAddress("::").ok());
  EXPECT_FALSE(ParseIpAddress("").ok());
  // inet_pton reads a C string: what follows a NUL must not be cut off.
  auto nul = ParseIpAddress(std::string("10.9.0.1\0x", 10));
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(std::string(nul.status().message()),
            "\"10.9.0.1\\x00x\" is not an IPv4 or IPv6 address");
}

TEST(ConfigLoadTest, OnlyUnicastAddressesServe) {
  const std::pair<const char*, const char*> refused[] = {
      {"0.1.2.3", "0.1.2.3 is in 0.0.0.0/8 (this network), not a unicast address"},
      {"127.0.0.1", "127.0.0.1 is a loopback address, not a unicast address"},
      {"127.255.0.9", "127.255.0.9 is a loopback address, not a unicast address"},
      {"169.254.0.1", "169.254.0.1 is a link-local address, not a unicast address"},
      {"224.0.0.1", "224.0.0.1 is a multicast address, not a unicast address"},
      {"239.255.255.255", "239.255.255.255 is a multicast address, not a unicast address"},
      {"240.0.0.1", "240.0.0.1 is in 240.0.0.0/4 (reserved), not a unicast address"},
      {"255.255.255.255", "255.255.255.255 is the broadcast address, not a unicast address"},
      {"::1", "::1 is a loopback address, not a unicast address"},
      {"fe80::1", "fe80::1 is a link-local address, not a unicast address"},
      {"febf::1", "febf::1 is a link-local address, not a unicast address"},
      {"ff02::1", "ff02::1 is a multicast address, not a unicast address"},
      {"::ffff:10.0.0.1",
       "::ffff:10.0.0.1 is an IPv4-mapped address (write it as IPv4), not a unicast address"},
  };
  for (const auto& [text, message] : refused) {
    auto a = ParseIpAddress(text);
    ASSERT_TRUE(a.ok()) << text;
    EXPECT_EQ(CheckUnicastAddress(*a).message(), message);
  }
  for (const char* text : {"1.0.0.1", "10.0.0.1", "126.255.255.255", "128.0.0.1", "169.253.0.1",
                           "223.255.255.255", "2001:db8::1", "fec0::1", "fd00::1", "::2"}) {
    auto a = ParseIpAddress(text);
    ASSERT_TRUE(a.ok()) << text;
    EXPECT_TRUE(CheckUnicastAddress(*a).ok()) << text;
  }
}

TEST(ConfigLoadTest, QuotesAreBounded) {
  EXPECT_EQ(QuoteBounded("a\nb"), "a\\nb");
  EXPECT_EQ(QuoteBounded(std::string(64, 'x')), std::string(64, 'x'));
  EXPECT_EQ(QuoteBounded(std::string(100000, 'x')), std::string(64, 'x') + "...");
  auto long_address = ParseIpAddress(std::string(100000, '1'));
  ASSERT_FALSE(long_address.ok());
  EXPECT_LT(long_address.status().message().size(), 120u);
}

// ---------------------------------------------------------- validation ---

TEST(ConfigValidateTest, BaseIsAccepted) { EXPECT_EQ(Refusal(kBase), ""); }

struct ErrorCase {
  const char* name;
  std::string config;
  std::string expected;  // exact message
  TableCapacities caps = Caps();
};

class ConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrorTest, RefusedNamingTheField) {
  const ErrorCase& c = GetParam();
  EXPECT_EQ(Refusal(c.config, c.caps), c.expected);
}

std::string With(const std::string& extra) { return std::string(kBase) + extra; }

const char kNode[] = R"pb(
  node { tunnel_source_ipv4: "192.0.2.1" tunnel_source_ipv6: "2001:db8:ffff::1" }
)pb";

// Without node settings a config is accepted: the dataplane's own address
// is the tunnel source (what a new user of the classic API starts with).
// The warning says so; proxy pools need no tunnel at all.
TEST(ConfigValidateTest, UnsetTunnelSourcesAreAWarningNotARefusal) {
  auto config = ParseConfigText(R"pb(
                                  pools {
                                    name: "web"
                                    backends { address: "10.1.0.1" }
                                    backends { address: "2001:db8::5" }
                                  }
                                  pools {
                                    name: "app"
                                    kind: POOL_KIND_PROXY
                                    backends { address: "10.2.0.1" port: 8080 }
                                  })pb",
                                "t");
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<std::string> warnings;
  auto d = ValidateConfig(*config, Caps(), &warnings);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->tunnel_source_v4.empty());
  EXPECT_FALSE(d->pools[0].proxy);
  EXPECT_TRUE(d->pools[1].proxy);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_EQ(warnings[0],
            "node.tunnel_source_ipv4: unset: IPv4 tunnels to pools[0].backends[0] (10.1.0.1) "
            "leave from lb-dataplane's --ipv4 (without it they are dropped as no_next_hop)");
  EXPECT_EQ(warnings[1],
            "node.tunnel_source_ipv6: unset: IPv6 tunnels to pools[0].backends[1] (2001:db8::5) "
            "leave from lb-dataplane's --ipv6 (without it they are dropped as no_next_hop)");
}

INSTANTIATE_TEST_SUITE_P(
    Classes, ConfigErrorTest,
    ::testing::Values(
        ErrorCase{"VipAddress",
                  With(R"pb(vips { address: "10.0.0.300" protocol: PROTOCOL_TCP pool: "web" })pb"),
                  "vips[1].address: \"10.0.0.300\" is not an IPv4 or IPv6 address"},
        ErrorCase{"VipAddressMissing", With(R"pb(vips { protocol: PROTOCOL_TCP pool: "web" })pb"),
                  "vips[1].address: required"},
        ErrorCase{"BackendAddress", With(R"pb(pools {
                                                name: "x"
                                                backends { address: "10.1.0.256" }
                                              })pb"),
                  "pools[1].backends[0].address: \"10.1.0.256\" is not an IPv4 or IPv6 address"},
        ErrorCase{"BackendWeight", std::string(kNode) + R"pb(
                    pools {
                      name: "web"
                      backends { address: "10.1.0.1" }
                      backends { address: "10.1.0.2" }
                      backends { address: "10.1.0.3" }
                      backends { address: "10.1.0.4" weight: 70000 }
                    })pb",
                  "pools[0].backends[3].weight: 70000 out of range [0, 65535]"},
        ErrorCase{"BackendPort", With(R"pb(pools {
                                             name: "x"
                                             backends { address: "10.1.0.9" port: 65536 }
                                           })pb"),
                  "pools[1].backends[0].port: 65536 is not a port (0..65535)"},
        ErrorCase{"VipPort", With(R"pb(vips {
                                         address: "198.51.100.1"
                                         protocol: PROTOCOL_UDP
                                         port: 70000
                                         pool: "web"
                                       })pb"),
                  "vips[1].port: 70000 is not a port (0..65535; 0 = all ports)"},
        ErrorCase{"VipProtocol", With(R"pb(vips { address: "198.51.100.1" pool: "web" })pb"),
                  "vips[1].protocol: required (PROTOCOL_TCP or PROTOCOL_UDP)"},
        ErrorCase{"VipUnknownPool",
                  std::string(kNode) +
                      R"pb(pools {
                             name: "api"
                             backends { address: "10.1.0.1" }
                           }
                           vips { address: "198.51.100.1" protocol: PROTOCOL_TCP pool: "api" }
                           vips { address: "198.51.100.2" protocol: PROTOCOL_TCP pool: "web" })pb",
                  "vips[1].pool: no pool named \"web\""},
        ErrorCase{"VipPoolMissing",
                  With(R"pb(vips { address: "198.51.100.1" protocol: PROTOCOL_TCP })pb"),
                  "vips[1].pool: required: the name of a pool"},
        ErrorCase{"DuplicateVip", With(R"pb(vips {
                                              address: "198.51.100.10"
                                              protocol: PROTOCOL_TCP
                                              port: 80
                                              pool: "web"
                                            })pb"),
                  "vips[1]: duplicate VIP 198.51.100.10:80/tcp (first at vips[0])"},
        ErrorCase{"DuplicateVipOtherSpelling", std::string(kBase) + R"pb(
                    vips { address: "2001:db8::10" protocol: PROTOCOL_UDP pool: "web" }
                    vips { address: "2001:DB8:0::0:10" protocol: PROTOCOL_UDP pool: "web" })pb",
                  "vips[2]: duplicate VIP [2001:db8::10]:0/udp (first at vips[1])"},
        ErrorCase{"BackendAddressLeadingZero", std::string(kNode) + R"pb(
                    pools {
                      name: "web"
                      backends { address: "10.1.0.01" port: 8080 }
                    })pb",
                  "pools[0].backends[0].address: \"10.1.0.01\" is not an IPv4 or IPv6 address"},
        ErrorCase{"DuplicateBackendAddress", std::string(kNode) + R"pb(
                    pools {
                      name: "web"
                      backends { address: "10.1.0.1" port: 80 }
                      backends { address: "10.1.0.2" port: 80 }
                      backends { address: "10.1.0.1" port: 8080 }
                    })pb",
                  "pools[0].backends[2].address: duplicate address 10.1.0.1 in pool \"web\" "
                  "(first at pools[0].backends[0]); a DSR pool holds one backend per address: "
                  "tunnelled packets keep the VIP's port"},
        ErrorCase{"DuplicateProxyBackend", std::string(kNode) + R"pb(
                    pools {
                      name: "app"
                      kind: POOL_KIND_PROXY
                      backends { address: "10.1.0.1" port: 80 }
                      backends { address: "10.1.0.1" port: 8080 }
                      backends { address: "10.1.0.1" port: 80 }
                    })pb",
                  "pools[0].backends[2]: duplicate backend 10.1.0.1:80 in pool \"app\" (first at "
                  "pools[0].backends[0])"},
        ErrorCase{
            "VipOnProxyPool",
            With(R"pb(pools { name: "app" kind: POOL_KIND_PROXY }
                      vips { address: "198.51.100.99" protocol: PROTOCOL_TCP pool: "app" })pb"),
            "vips[1].pool: pool \"app\" is a proxy pool (POOL_KIND_PROXY, reached by lb-l7 "
            "at address:port); an L4 VIP forwards by direct server return and needs a DSR "
            "pool"},
        ErrorCase{"MulticastVip",
                  With(R"pb(vips { address: "239.1.2.3" protocol: PROTOCOL_UDP pool: "web" })pb"),
                  "vips[1].address: 239.1.2.3 is a multicast address, not a unicast address"},
        ErrorCase{"LoopbackBackend", With(R"pb(pools {
                                                 name: "lo"
                                                 backends { address: "::1" }
                                               })pb"),
                  "pools[1].backends[0].address: ::1 is a loopback address, not a unicast address"},
        ErrorCase{"DuplicateBackendAddressCanonical", std::string(kNode) + R"pb(
                    pools {
                      name: "web"
                      backends { address: "2001:db8::5" port: 80 }
                      backends { address: "2001:db8:0::5" port: 8080 }
                    })pb",
                  "pools[0].backends[1].address: duplicate address 2001:db8::5 in pool \"web\" "
                  "(first at pools[0].backends[0]); a DSR pool holds one backend per address: "
                  "tunnelled packets keep the VIP's port"},
        ErrorCase{"DuplicatePoolName", With(R"pb(pools { name: "web" })pb"),
                  "pools[1].name: duplicate pool name \"web\" (first at pools[0])"},
        ErrorCase{"EmptyPoolName", With(R"pb(pools {})pb"), "pools[1].name: must not be empty"},
        ErrorCase{"BadPoolName", With(R"pb(pools { name: "a b" })pb"),
                  "pools[1].name: \"a b\" must be 1-64 characters of [A-Za-z0-9_.:-]"},
        ErrorCase{"DuplicateBackendId", std::string(kNode) + R"pb(
                    pools {
                      name: "a"
                      backends { id: 7 address: "10.1.0.1" }
                    }
                    pools {
                      name: "b"
                      backends { id: 7 address: "10.1.0.2" }
                    })pb",
                  "pools[1].backends[0].id: duplicate backend id 7 (first at "
                  "pools[0].backends[0])"},
        ErrorCase{"DuplicateVipId", std::string(kBase) + R"pb(
                    vips { id: 4 address: "198.51.100.1" protocol: PROTOCOL_TCP pool: "web" }
                    vips { id: 4 address: "198.51.100.2" protocol: PROTOCOL_TCP pool: "web" })pb",
                  "vips[2].id: duplicate VIP id 4 (first at vips[1])"},
        ErrorCase{
            "VipsBeyondCapacity",
            With(R"pb(vips { address: "198.51.100.1" protocol: PROTOCOL_TCP pool: "web" }
                      vips { address: "198.51.100.2" protocol: PROTOCOL_TCP pool: "web" })pb"),
            "vips[2]: VIP number 3 exceeds the table capacity of 2 VIPs (--max_vips)",
            TableCapacities{2, 4096, 16384, 65537}},
        ErrorCase{
            "MembersBeyondCapacity",
            With(R"pb(vips { address: "198.51.100.1" protocol: PROTOCOL_TCP pool: "web" })pb"),
            "vips[1].pool: VIP member lists would total 4 entries, beyond the table "
            "capacity of 3 (--max_members)",
            TableCapacities{64, 4096, 3, 65537}},
        ErrorCase{"BackendsBeyondCapacity", With(R"pb(pools {
                                                        name: "x"
                                                        backends { address: "10.1.0.9" }
                                                      })pb"),
                  "pools[1].backends[0]: backend number 3 exceeds the table capacity of 2 "
                  "backends (--max_backends 3 includes the reserved slot 0)",
                  TableCapacities{64, 3, 16384, 65537}},
        ErrorCase{"RingSizeNotPrime", With(R"pb(tables { ring_size: 65536 })pb"),
                  "tables.ring_size: 65536 is not a valid Maglev table size (table_size 65536 "
                  "is not prime)"},
        ErrorCase{"RingSizeBeyondRegion", With(R"pb(tables { ring_size: 257 })pb"),
                  "tables.ring_size: 257 exceeds the table region's max_ring_size 251 (raise "
                  "--max_ring_size)",
                  TableCapacities{64, 4096, 16384, 251}},
        ErrorCase{"RingSmallerThanPool", With(R"pb(tables { ring_size: 2 }
                                                   pools {
                                                     name: "big"
                                                     backends { address: "10.2.0.1" }
                                                     backends { address: "10.2.0.2" }
                                                     backends { address: "10.2.0.3" }
                                                   })pb"),
                  "tables.ring_size: 2 is smaller than the 3 active backends of pool \"big\""},
        ErrorCase{"TunnelSourceBroadcast", R"pb(
                    node { tunnel_source_ipv4: "255.255.255.255" })pb",
                  "node.tunnel_source_ipv4: 255.255.255.255 is the broadcast address, not a "
                  "unicast address"},
        ErrorCase{"TunnelSourceWrongFamily", R"pb(
                    node { tunnel_source_ipv4: "2001:db8::1" })pb",
                  "node.tunnel_source_ipv4: \"2001:db8::1\" is not an IPv4 address"},
        ErrorCase{"SourcePrefixTooShort", R"pb(
                    node { tunnel_source_ipv4_prefix: "172.0.0.0/7" })pb",
                  "node.tunnel_source_ipv4_prefix: prefix length 7 out of range [8, 31]"},
        ErrorCase{"SourcePrefixSingleAddress", R"pb(
                    node { tunnel_source_ipv4_prefix: "172.16.0.1/32" })pb",
                  "node.tunnel_source_ipv4_prefix: prefix length 32 out of range [8, 31]"},
        ErrorCase{"SourcePrefix6TooShort", R"pb(
                    node { tunnel_source_ipv6_prefix: "2001:db8::/48" })pb",
                  "node.tunnel_source_ipv6_prefix: prefix length 48 out of range [64, 127]"},
        ErrorCase{"SourcePrefixHostBits", R"pb(
                    node { tunnel_source_ipv4_prefix: "172.16.0.1/16" })pb",
                  "node.tunnel_source_ipv4_prefix: \"172.16.0.1/16\" has host bits set beyond "
                  "/16"},
        ErrorCase{"SourcePrefixNoLength", R"pb(
                    node { tunnel_source_ipv4_prefix: "172.16.0.0" })pb",
                  "node.tunnel_source_ipv4_prefix: \"172.16.0.0\" is not ADDRESS/LENGTH"},
        ErrorCase{"SourcePrefixAndAddress", R"pb(
                    node {
                      tunnel_source_ipv4: "192.0.2.1"
                      tunnel_source_ipv4_prefix: "172.16.0.0/16"
                    })pb",
                  "node.tunnel_source_ipv4_prefix: set either node.tunnel_source_ipv4 or "
                  "node.tunnel_source_ipv4_prefix, not both"},
        ErrorCase{"GuePortWithoutGue", R"pb(
                    pools { name: "p" gue_port: 6081 })pb",
                  "pools[0].gue_port: 6081 set, but encapsulation is not ENCAPSULATION_GUE"},
        ErrorCase{"GuePortRange", R"pb(
                    pools { name: "p" encapsulation: ENCAPSULATION_GUE gue_port: 70000 })pb",
                  "pools[0].gue_port: 70000 out of range [1, 65535] (0 = 6080)"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::string(info.param.name); });

TEST(ConfigValidateTest, SourcePrefixesAndGueAreConverted) {
  const auto d =
      ValidateConfig(ParseOrDie(R"pb(
                       node {
                         tunnel_source_ipv4_prefix: "172.16.0.0/16"
                         tunnel_source_ipv6_prefix: "2001:db8:eeee::/64"
                       }
                       pools {
                         name: "g"
                         encapsulation: ENCAPSULATION_GUE
                         backends { address: "10.1.0.1" }
                       }
                       pools { name: "h" encapsulation: ENCAPSULATION_GUE gue_port: 7777 }
                       pools { name: "i" encapsulation: ENCAPSULATION_IPIP }
                     )pb"),
                     Caps(), nullptr);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->tunnel_source_v4.text, "172.16.0.0");
  EXPECT_EQ(d->tunnel_source_v4_prefix_len, 16);
  EXPECT_EQ(d->tunnel_source_v6_prefix_len, 64);
  EXPECT_TRUE(d->pools[0].gue);
  EXPECT_EQ(d->pools[0].gue_port, 6080);
  EXPECT_EQ(d->pools[1].gue_port, 7777);
  EXPECT_FALSE(d->pools[2].gue);
}

TEST(ConfigValidateTest, UnknownEnumValuesAreRefused) {
  v1::Config c = ParseOrDie(kBase);
  c.mutable_pools(0)->set_algorithm(static_cast<v1::Algorithm>(42));
  c.mutable_pools(0)->mutable_backends(1)->set_state(static_cast<v1::BackendState>(9));
  c.mutable_vips(0)->set_protocol(static_cast<v1::Protocol>(5));
  auto d = ValidateConfig(c, Caps(), nullptr);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(),
            "pools[0].algorithm: unknown algorithm 42; pools[0].backends[1].state: unknown state "
            "9; vips[0].protocol: unknown protocol 5");
}

TEST(ConfigValidateTest, EveryErrorIsReportedThenCapped) {
  std::string text = kBase;
  for (int i = 0; i < 15; ++i) {
    absl::StrAppend(&text, "vips { address: \"10.0.0.", 300 + i,
                    "\" protocol: PROTOCOL_TCP pool: \"web\" }\n");
  }
  const std::string msg = Refusal(text);
  EXPECT_EQ(msg.rfind("vips[1].address: \"10.0.0.300\" is not", 0), 0u) << msg;
  EXPECT_NE(msg.find("; vips[10].address: \"10.0.0.309\""), std::string::npos) << msg;
  EXPECT_EQ(msg.find("10.0.0.310"), std::string::npos) << msg;
  EXPECT_NE(msg.find("; ... and 5 more"), std::string::npos) << msg;
}

TEST(ConfigValidateTest, AcceptedVariations) {
  // Same address on another port or protocol is another VIP; the same backend
  // address in two pools is two backends.
  EXPECT_EQ(Refusal(With(R"pb(
              vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 443 pool: "web" }
              vips { address: "198.51.100.10" protocol: PROTOCOL_UDP port: 80 pool: "web" }
              vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 0 pool: "web" }
              pools {
                name: "other"
                backends { address: "10.1.0.1" }
              })pb")),
            "");
  // No backends at all: no tunnel source needed.
  EXPECT_EQ(Refusal(R"pb(pools { name: "p" }
                         vips { address: "198.51.100.1" protocol: PROTOCOL_TCP pool: "p" })pb"),
            "");
  // Weight 0 and draining backends do not count towards the ring size.
  EXPECT_EQ(Refusal(With(R"pb(tables { ring_size: 2 }
                              pools {
                                name: "big"
                                backends { address: "10.2.0.1" }
                                backends { address: "10.2.0.2" weight: 0 }
                                backends { address: "10.2.0.3" state: BACKEND_STATE_DRAINING }
                              })pb")),
            "");
}

// Script health checks NAME a script in lb-controlplane's --health_script_dir:
// nothing the API sends can name a binary, and what it passes is bounded.
TEST(ConfigValidateTest, ScriptHealthChecksAreNamedAndBounded) {
  auto refusal = [](const std::vector<std::string>& script,
                    v1::HealthCheckKind kind = v1::HEALTH_CHECK_KIND_SCRIPT) {
    v1::Config c = ParseOrDie(kBase);
    v1::HealthCheck* hc = c.mutable_pools(0)->mutable_health_check();
    hc->set_kind(kind);
    for (const std::string& a : script) hc->add_script(a);
    auto d = ValidateConfig(c, Caps(), nullptr);
    return d.ok() ? std::string() : std::string(d.status().message());
  };
  // Accepted: names of [A-Za-z0-9_.-], up to 64; 8 arguments of up to 256
  // visible ASCII bytes or spaces.
  EXPECT_EQ(refusal({"check_http", "--port", "8080", "two words", std::string(256, '~')}), "");
  EXPECT_EQ(refusal({"_a.b-c9"}), "");
  EXPECT_EQ(refusal({std::string(64, 'n')}), "");
  std::vector<std::string> eight(9, "x");
  eight[0] = "check";
  EXPECT_EQ(refusal(eight), "");

  const std::string at = "pools[0].health_check.script";
  const std::string rule =
      " is not a script name: 1-64 characters of [A-Za-z0-9_.-], not starting with '.' or '-' "
      "(a file in lb-controlplane's --health_script_dir, never a path)";
  EXPECT_EQ(refusal({"/bin/sh", "-c", "id"}), at + "[0]: \"/bin/sh\"" + rule);
  EXPECT_EQ(refusal({"sub/check"}), at + "[0]: \"sub/check\"" + rule);
  EXPECT_EQ(refusal({"../check"}), at + "[0]: \"../check\"" + rule);
  EXPECT_EQ(refusal({".check"}), at + "[0]: \".check\"" + rule);
  EXPECT_EQ(refusal({"-check"}), at + "[0]: \"-check\"" + rule);
  EXPECT_EQ(refusal({"a b"}), at + "[0]: \"a b\"" + rule);
  EXPECT_EQ(refusal({std::string("go\0ok", 5)}), at + "[0]: \"go\\x00ok\"" + rule);
  EXPECT_EQ(refusal({""}), at + "[0]: \"\"" + rule);
  // Quoted input is bounded: the first 64 bytes, then "...".
  EXPECT_EQ(refusal({std::string(65, 'n')}),
            at + "[0]: \"" + std::string(64, 'n') + "...\"" + rule);
  EXPECT_EQ(refusal({"/" + std::string(100000, 'x')}),
            at + "[0]: \"/" + std::string(63, 'x') + "...\"" + rule);
  // Even when the pool does not check by script, a script must be well-formed.
  EXPECT_EQ(refusal({"/bin/sh"}, v1::HEALTH_CHECK_KIND_TCP), at + "[0]: \"/bin/sh\"" + rule);

  std::vector<std::string> nine(10, "x");
  nine[0] = "check";
  EXPECT_EQ(refusal(nine), at + ": 9 arguments after the script name; at most 8");
  EXPECT_EQ(refusal({"check", std::string(257, 'a')}), at + "[1]: 257 bytes; at most 256");
  EXPECT_EQ(refusal({"check", "ok", "a\nb"}),
            at + "[2]: \"a\\nb\" may contain only visible ASCII characters and spaces");
  EXPECT_EQ(refusal({"check", std::string("a\0z", 3)}),
            at + "[1]: \"a\\x00z\" may contain only visible ASCII characters and spaces");
  EXPECT_EQ(refusal({"check", "\x7f\xc3\xa9"}),
            at + "[1]: \"\\x7f\\xc3\\xa9\" may contain only visible ASCII characters and spaces");
  EXPECT_EQ(refusal({"check", std::string(200, '\t')}),
            at + "[1]: \"" + absl::StrJoin(std::vector<std::string>(64, "\\t"), "") +
                "...\" may contain only visible ASCII characters and spaces");
  EXPECT_EQ(refusal({}), at + ": required for HEALTH_CHECK_KIND_SCRIPT: a script name (a file in "
                              "--health_script_dir) and its arguments");
}

// ----------------------------------------------------------------- CLI ---

// A child process with its stdout and stderr captured.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int out[2], err[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(err), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, err[0]);
    std::vector<char*> argv;
    std::string bin = LB_CONTROLPLANE_BIN;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, bin.c_str(), &fa, nullptr, argv.data(), environ), 0) << bin;
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~Child() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
    close(out_fd_);
    close(err_fd_);
  }

  // Reads until `pattern` appears in stdout (or stderr, if `in_stderr`) or
  // the timeout passes. Returns whether it appeared.
  bool WaitFor(const std::string& pattern, bool in_stderr = false, int timeout_ms = 10000) {
    const std::string& buf = in_stderr ? err_ : out_;
    for (int waited = 0; waited < timeout_ms; waited += 10) {
      Drain(10);
      if (buf.find(pattern) != std::string::npos) return true;
    }
    return false;
  }
  int Wait() {
    int status = 0;
    while (true) {
      Drain(10);
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
    }
    Drain(0);
    Drain(0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void Signal(int sig) { kill(pid_, sig); }
  bool Running() { return !exited_ && waitpid(pid_, nullptr, WNOHANG) == 0; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  void Drain(int timeout_ms) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) <= 0) return;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents & (POLLIN | POLLHUP)) {
        ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n > 0) (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(n));
      }
    }
  }

  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  bool exited_ = false;
  std::string out_, err_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> lines = absl::StrSplit(s, '\n', absl::SkipEmpty());
  return lines;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = "/dev/shm/lb-cp-cli-" + std::to_string(getpid()) + "-";
    tables_ = prefix_ + "tables";
    stats_ = prefix_ + "stats";
    config_ = prefix_ + "config.textproto";
  }
  void TearDown() override {
    unlink(tables_.c_str());
    unlink(stats_.c_str());
    unlink(config_.c_str());
    std::error_code ec;
    std::filesystem::remove_all(prefix_ + "state", ec);
  }
  std::vector<std::string> Args(const std::string& config, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {
        "--config=" + config, "--table_region=" + tables_, "--stats_region=" + stats_,
        "--max_vips=8", "--max_backends=64", "--max_members=64",
        // The server's own state and listeners: a temp dir, none.
        "--state_dir=" + prefix_ + "state", "--grpc_listen=", "--http_listen="};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string prefix_, tables_, stats_, config_;
};

TEST_F(CliTest, OncePublishesAndPrintsOneLinePerVip) {
  Child c(Args(ConfigPath("basic.textproto"), {"--once"}));
  ASSERT_EQ(c.Wait(), 0) << c.err();
  std::vector<std::string> lines = Lines(c.out());
  ASSERT_EQ(lines.size(), 5u) << c.out();
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex("published generation=1 vips=4 backends=7 build_ms=[0-9.]+ "
                           "wait_ms=[0-9.]+")))
      << lines[0];
  EXPECT_TRUE(
      std::regex_match(lines[1], std::regex("vip 198\\.51\\.100\\.10:80/tcp pool=web members=2 "
                                            "fingerprint=[0-9a-f]{16}")))
      << lines[1];
  EXPECT_TRUE(
      std::regex_match(lines[3], std::regex("vip \\[2001:db8:100::53\\]:53/udp pool=dns members=2 "
                                            "fingerprint=[0-9a-f]{16}")))
      << lines[3];
  EXPECT_TRUE(Exists(tables_));
  // JSON spelling of the same config: same rings, so the same fingerprints.
  Child j(Args(ConfigPath("basic.json"), {"--once"}));
  ASSERT_EQ(j.Wait(), 0) << j.err();
  std::vector<std::string> jl = Lines(j.out());
  ASSERT_EQ(jl.size(), 5u);
  EXPECT_EQ(jl[0].rfind("published generation=2 ", 0), 0u) << jl[0];
  for (size_t i = 1; i < 5; ++i) EXPECT_EQ(jl[i], lines[i]);
}

TEST_F(CliTest, RefusedConfigExitsOneNamingTheFieldAndTouchesNothing) {
  // No region yet: a refused config must not create one.
  {
    Child c(Args(ConfigPath("bad_vip_address.textproto"), {"--once"}));
    EXPECT_EQ(c.Wait(), 1);
    EXPECT_FALSE(Exists(tables_));
  }
  // An existing region: byte-for-byte unchanged, also without --once.
  {
    Child good(Args(ConfigPath("basic.textproto"), {"--once"}));
    ASSERT_EQ(good.Wait(), 0) << good.err();
  }
  const std::string before = ReadFile(tables_);
  ASSERT_FALSE(before.empty());
  for (bool once : {true, false}) {
    Child c(Args(ConfigPath("bad_vip_address.textproto"),
                 once ? std::vector<std::string>{"--once"} : std::vector<std::string>{}));
    EXPECT_EQ(c.Wait(), 1);
    EXPECT_EQ(c.out(), "");
    std::vector<std::string> lines = Lines(c.err());
    ASSERT_EQ(lines.size(), 1u) << c.err();
    EXPECT_NE(lines[0].find("vips[1].address: \"10.0.0.300\" is not an IPv4 or IPv6 address"),
              std::string::npos)
        << lines[0];
    EXPECT_TRUE(ReadFile(tables_) == before) << "table region modified by a refused config";
  }
}

TEST_F(CliTest, CheckValidatesOnlyAndTouchesNothing) {
  Child ok(Args(ConfigPath("basic.json"), {"--check"}));
  EXPECT_EQ(ok.Wait(), 0) << ok.err();
  EXPECT_EQ(ok.out().rfind("OK ", 0), 0u) << ok.out();
  Child bad(Args(ConfigPath("syntax_error.textproto"), {"--check"}));
  EXPECT_EQ(bad.Wait(), 1);
  EXPECT_NE(bad.err().find("syntax_error.textproto:5:"), std::string::npos) << bad.err();
  EXPECT_FALSE(Exists(tables_));
  EXPECT_FALSE(Exists(stats_));
}

TEST_F(CliTest, BadFlagsAreNamed) {
  Child none({"--once"});
  EXPECT_EQ(none.Wait(), 1);
  EXPECT_NE(none.err().find("--config is required"), std::string::npos) << none.err();
  Child caps(Args(ConfigPath("basic.textproto"), {"--once", "--max_vips=0"}));
  EXPECT_EQ(caps.Wait(), 1);
  EXPECT_NE(caps.err().find("--max_vips 0 out of range"), std::string::npos) << caps.err();
  // Flags gflags itself refuses are logged as one ERROR line naming them.
  Child unknown(Args(ConfigPath("basic.textproto"), {"--once", "--max_vipz=3"}));
  EXPECT_EQ(unknown.Wait(), 1);
  EXPECT_EQ(unknown.err().rfind("E", 0), 0u) << unknown.err();
  EXPECT_NE(unknown.err().find("unknown flag --max_vipz"), std::string::npos) << unknown.err();
  Child value(Args(ConfigPath("basic.textproto"), {"--once", "--max_vips", "lots"}));
  EXPECT_EQ(value.Wait(), 1);
  EXPECT_NE(value.err().find("--max_vips: \"lots\" is not a valid uint32"), std::string::npos)
      << value.err();
  Child ring(Args(ConfigPath("basic.textproto"), {"--once", "--max_ring_size=257"}));
  EXPECT_EQ(ring.Wait(), 1);
  EXPECT_NE(ring.err().find("tables.ring_size: 65537 exceeds the table region's max_ring_size 257"),
            std::string::npos)
      << ring.err();
}

TEST_F(CliTest, SighupReloadsAndARefusedReloadKeepsRunning) {
  WriteFile(config_, ReadFile(ConfigPath("basic.textproto")));
  // Server mode logs (glog, stderr); --v=1 adds the per-VIP lines.
  Child c(Args(config_, {"--v=1"}));
  ASSERT_TRUE(c.WaitFor("published generation=1 ", true)) << c.out() << c.err();

  // A refused reload: the error names the field, generation 1 stays.
  WriteFile(config_, ReadFile(ConfigPath("bad_vip_address.textproto")));
  const std::string tables_before = ReadFile(tables_);
  c.Signal(SIGHUP);
  ASSERT_TRUE(c.WaitFor("keeping generation 1", true)) << c.err();
  EXPECT_NE(c.err().find("vips[1].address: \"10.0.0.300\""), std::string::npos) << c.err();
  EXPECT_TRUE(c.Running());
  EXPECT_TRUE(ReadFile(tables_) == tables_before);

  // A good reload publishes generation 2.
  std::string smaller = ReadFile(ConfigPath("basic.textproto"));
  smaller += "vips { address: \"198.51.100.12\" protocol: PROTOCOL_UDP pool: \"web\" }\n";
  WriteFile(config_, smaller);
  c.Signal(SIGHUP);
  ASSERT_TRUE(c.WaitFor("published generation=2 vips=5 ", true)) << c.out() << c.err();
  ASSERT_TRUE(c.WaitFor("vip 198.51.100.12:0/udp pool=web members=2 ", true)) << c.err();
  EXPECT_EQ(c.out(), "");

  c.Signal(SIGTERM);
  EXPECT_EQ(c.Wait(), 0) << c.err();
}

TEST_F(CliTest, HealthScriptFlagsAreCheckedAtStartUp) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--health_script_user=root",
       "--health_script_user: user \"root\" is uid 0: health-check scripts never run as root"},
      {"--health_script_user=lb-no-such-user", "--health_script_user: no user \"lb-no-such-user\""},
      {"--health_script_dir=health-scripts",
       "--health_script_dir: \"health-scripts\" is not an absolute path"},
  };
  for (const auto& [flag, line] : cases) {
    Child c(Args(ConfigPath("basic.textproto"), {flag}));
    EXPECT_EQ(c.Wait(), 1) << flag;
    // One glog ERROR line: E<date> <time> <tid> main.cc:<line>] <message>
    ASSERT_TRUE(
        std::regex_match(c.err(), std::regex("E\\d{4,8} [0-9:.]+ +\\d+ main\\.cc:\\d+\\] .*\n")))
        << c.err();
    EXPECT_EQ(c.err().substr(c.err().find("] ") + 2), line + "\n") << flag;
    EXPECT_FALSE(Exists(tables_)) << flag;
  }
  Child help({"--help"});
  help.Wait();
  for (const char* flag : {"-health_script_dir", "-health_script_user"}) {
    EXPECT_NE((help.out() + help.err()).find(flag), std::string::npos) << flag;
  }
}

TEST_F(CliTest, HelpExplainsEveryFlag) {
  Child c({"--help"});
  c.Wait();
  const std::string all = c.out() + c.err();
  for (const char* flag : {"-config", "-table_region", "-stats_region", "-recreate_tables",
                           "-max_vips", "-max_backends", "-max_members", "-max_ring_size",
                           "-reclaim_timeout_ms", "-stuck_lcore_ms", "-once", "-check"}) {
    EXPECT_NE(all.find(flag), std::string::npos) << flag << "\n" << all;
  }
  EXPECT_NE(all.find("SIGHUP reloads"), std::string::npos) << all;
}

}  // namespace
}  // namespace lb
