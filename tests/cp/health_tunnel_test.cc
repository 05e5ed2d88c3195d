// Health checks through the tunnel, the pure pieces and the map writer:
// mark assignment, the refusals of ValidateConfig (each naming its field),
// the VIP a tunnelled check connects to, the prepared target (address, mark,
// Host, identity), and HealthTunnelMap against a real BPF hash map pinned on
// a private bpffs (root, as every namespace test here), and the checker
// keeping that map in step with its targets.
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "controlplane/config.h"
#include "controlplane/health_checker.h"
#include "controlplane/health_target.h"
#include "controlplane/health_tunnel.h"
#include "controlplane/health_tunnel_map.h"
#include "gtest/gtest.h"

namespace lb {
namespace {

constexpr char kConfig[] = R"pb(
  pools {
    name: "web"
    health_check { kind: HEALTH_CHECK_KIND_HTTP through_tunnel: true }
    backends { id: 7 address: "10.0.0.7" port: 8080 }
  }
  vips { address: "2001:db8::10" protocol: PROTOCOL_TCP port: 80 pool: "web" }
  vips { address: "198.51.100.9" protocol: PROTOCOL_UDP port: 53 pool: "web" }
  vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 443 pool: "web" }
)pb";

v1::Config Parse(const char* text) {
  auto c = ParseConfigText(text, "test.textproto");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : v1::Config();
}

// Restores the process-wide availability flag after each test.
class TunnelAvailability : public ::testing::Test {
 protected:
  void TearDown() override { SetHealthTunnelAvailable(false); }
};

TEST(TunnelMark, IsBasePlusIdAndRefusesOverflowAndZero) {
  EXPECT_EQ(*TunnelMark(kDefaultHealthTunnelMarkBase, 1), 0x4c420001u);
  EXPECT_EQ(*TunnelMark(0, 9), 9u);
  EXPECT_EQ(*TunnelMark(0xfffffff0u, 0xf), 0xffffffffu);
  auto over = TunnelMark(0xfffffff0u, 0x10);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(over.status().message().find("does not fit in 32 bits"), std::string::npos);
  EXPECT_FALSE(TunnelMark(0, 0).ok());
}

TEST_F(TunnelAvailability, RefusedWithoutTheMapNamingTheField) {
  SetHealthTunnelAvailable(false);
  auto d = ValidateConfig(Parse(kConfig), TableCapacities{}, nullptr);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(std::string(d.status().message())
                .find("pools[0].health_check.through_tunnel: lb-controlplane was started "
                      "without --health_tunnel_map"),
            std::string::npos)
      << d.status();
  SetHealthTunnelAvailable(true);
  EXPECT_TRUE(ValidateConfig(Parse(kConfig), TableCapacities{}, nullptr).ok());
}

TEST_F(TunnelAvailability, RefusesScriptKindAndProxyPools) {
  SetHealthTunnelAvailable(true);
  v1::Pool pool;
  pool.set_name("p");
  pool.mutable_health_check()->set_through_tunnel(true);
  pool.mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_SCRIPT);
  pool.set_kind(v1::POOL_KIND_PROXY);
  pool.add_backends()->set_address("10.0.0.1");
  pool.add_backends()->set_address("2001:db8::2");  // IPv6 in IPv6 is fine
  auto problems = ThroughTunnelProblems(pool, true);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].first, ".health_check.kind");
  EXPECT_EQ(problems[1].first, ".health_check.through_tunnel");
  EXPECT_NE(problems[1].second.find("POOL_KIND_PROXY"), std::string::npos);

  pool.mutable_health_check()->set_through_tunnel(false);
  EXPECT_TRUE(ThroughTunnelProblems(pool, false).empty());  // not asked for: nothing to refuse

  // Through ValidateConfig, with the full path.
  v1::Config c = Parse(kConfig);
  c.mutable_pools(0)->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_SCRIPT);
  c.mutable_pools(0)->mutable_health_check()->add_script("check");
  auto d = ValidateConfig(c, TableCapacities{}, nullptr);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(std::string(d.status().message())
                .find("pools[0].health_check.kind: through_tunnel needs HEALTH_CHECK_KIND_TCP"),
            std::string::npos)
      << d.status();
}

TEST(TunnelDestination, FirstTcpVipOfThePoolInTheBackendsFamily) {
  const v1::Config c = Parse(kConfig);
  auto d = TunnelDestinationFor(c, "web", "10.0.0.7", 8080);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->address, "198.51.100.10");  // the IPv6 and the UDP VIP are skipped
  EXPECT_EQ(d->port, 443);
  auto d6 = TunnelDestinationFor(c, "web", "2001:db8::7", 8080);
  ASSERT_TRUE(d6.has_value());
  EXPECT_EQ(d6->address, "2001:db8::10");
  EXPECT_EQ(d6->port, 80);
  EXPECT_FALSE(TunnelDestinationFor(c, "other", "10.0.0.7", 80).has_value());
  EXPECT_FALSE(TunnelDestinationFor(c, "web", "not-an-address", 80).has_value());

  v1::Config all_ports = c;
  all_ports.mutable_vips(2)->set_port(0);
  EXPECT_EQ(TunnelDestinationFor(all_ports, "web", "10.0.0.7", 8080)->port, 8080);  // the backend's

  // No VIP of the backend's family: the other family's (a mixed tunnel).
  v1::Config v6_only = c;
  v6_only.mutable_vips()->DeleteSubrange(1, 2);  // only the IPv6 VIP is left
  auto mixed = TunnelDestinationFor(v6_only, "web", "10.0.0.7", 8080);
  ASSERT_TRUE(mixed.has_value());
  EXPECT_EQ(mixed->address, "2001:db8::10");
  v1::Config udp_only = c;
  udp_only.mutable_vips()->DeleteSubrange(2, 1);
  udp_only.mutable_vips()->DeleteSubrange(0, 1);  // only the UDP VIP is left
  EXPECT_FALSE(TunnelDestinationFor(udp_only, "web", "10.0.0.7", 8080).has_value());
}

TEST(TunnelTarget, ConnectsToTheVipWithTheBackendsMark) {
  std::vector<HealthTarget> targets = TargetsFromConfig(Parse(kConfig));
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].tunnel_address, "198.51.100.10");
  EXPECT_EQ(targets[0].tunnel_port, 443);

  const PreparedTarget t = PrepareTarget(targets[0], 0x1000);
  EXPECT_EQ(t.config_error, "");
  EXPECT_EQ(t.mark, 0x1007u);
  const auto* in4 = reinterpret_cast<const sockaddr_in*>(&t.addr);
  ASSERT_EQ(in4->sin_family, AF_INET);
  EXPECT_EQ(ntohl(in4->sin_addr.s_addr), 0xc633640au);  // 198.51.100.10
  EXPECT_EQ(ntohs(in4->sin_port), 443);
  EXPECT_EQ(t.tunnel_real.family, 4u);
  EXPECT_EQ(t.tunnel_real.addr[0], 10);
  EXPECT_EQ(t.tunnel_real.addr[3], 7);  // 10.0.0.7
  EXPECT_NE(t.request.find("Host: 198.51.100.10:443\r\n"), std::string::npos) << t.request;

  // The same backend checked directly: no mark, its own address, a new identity.
  HealthTarget direct = targets[0];
  direct.check.set_through_tunnel(false);
  const PreparedTarget d = PrepareTarget(direct, 0x1000);
  EXPECT_EQ(d.mark, 0u);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&d.addr)->sin_port), 8080);
  EXPECT_FALSE(SameCheckIdentity(t, d));
  EXPECT_FALSE(SameCheckIdentity(t, PrepareTarget(targets[0], 0x2000)));  // another mark
  EXPECT_TRUE(SameCheckIdentity(t, PrepareTarget(targets[0], 0x1000)));
}

TEST(TunnelTarget, FailsEveryCheckWithoutAVipOrWithAnOverflowingMark) {
  HealthTarget spec = TargetsFromConfig(Parse(kConfig))[0];
  HealthTarget no_vip = spec;
  no_vip.tunnel_address.clear();
  EXPECT_EQ(PrepareTarget(no_vip).config_error,
            "through_tunnel: no TCP VIP uses this backend's pool");
  EXPECT_EQ(PrepareTarget(no_vip).mark, 0u);
  const PreparedTarget over = PrepareTarget(spec, 0xfffffffcu);
  EXPECT_NE(over.config_error.find("through_tunnel: mark base"), std::string::npos)
      << over.config_error;
}

// ---------------------------------------------------------- the BPF map

long Bpf(int cmd, bpf_attr* a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }

int CreateMap(uint32_t key_size, uint32_t value_size) {
  bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.map_type = BPF_MAP_TYPE_HASH;
  a.key_size = key_size;
  a.value_size = value_size;
  a.max_entries = 64;
  return int(Bpf(BPF_MAP_CREATE, &a));
}

bool Pin(int fd, const std::string& path) {
  bpf_attr a;
  memset(&a, 0, sizeof(a));
  a.bpf_fd = uint32_t(fd);
  a.pathname = reinterpret_cast<uint64_t>(path.c_str());
  return Bpf(BPF_OBJ_PIN, &a) == 0;
}

// mark -> "family/first address byte/last address byte".
std::map<uint32_t, std::string> Dump(int fd) {
  std::map<uint32_t, std::string> out;
  uint32_t key = 0, next = 0;
  bool first = true;
  for (;;) {
    bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = uint32_t(fd);
    a.key = first ? 0 : reinterpret_cast<uint64_t>(&key);
    a.next_key = reinterpret_cast<uint64_t>(&next);
    if (Bpf(BPF_MAP_GET_NEXT_KEY, &a) != 0) break;
    TunnelReal value;
    bpf_attr l;
    memset(&l, 0, sizeof(l));
    l.map_fd = uint32_t(fd);
    l.key = reinterpret_cast<uint64_t>(&next);
    l.value = reinterpret_cast<uint64_t>(&value);
    EXPECT_EQ(Bpf(BPF_MAP_LOOKUP_ELEM, &l), 0);
    out[next] = std::to_string(value.family) + "/" + std::to_string(value.addr[0]) + "/" +
                std::to_string(value.addr[15]);
    key = next;
    first = false;
  }
  return out;
}

class TunnelMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lb-hc-tunnel-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(mount("bpf", dir_.c_str(), "bpf", 0, nullptr), 0)
        << "mounting a bpffs at " << dir_ << ": " << strerror(errno) << " (needs root)";
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) umount(dir_.c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
  bool mounted_ = false;
};

TEST_F(TunnelMapTest, SyncAddsUpdatesAndRemoves) {
  const int fd = CreateMap(4, sizeof(TunnelReal));
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_TRUE(Pin(fd, dir_ + "/hc_reals")) << strerror(errno);
  auto m = HealthTunnelMap::Open(dir_ + "/hc_reals");
  ASSERT_TRUE(m.ok()) << m.status();

  auto real = [](const char* text) { return *TunnelRealFromText(text); };
  ASSERT_TRUE((*m)->Sync({{101, real("10.0.0.1")}, {102, real("2001:db8::2")}}).ok());
  EXPECT_EQ(Dump(fd), (std::map<uint32_t, std::string>{{101, "4/10/0"}, {102, "6/32/2"}}));
  // 101 leaves, 102 moves, 103 arrives.
  ASSERT_TRUE((*m)->Sync({{102, real("10.0.0.34")}, {103, real("2001:db8::3")}}).ok());
  EXPECT_EQ(Dump(fd), (std::map<uint32_t, std::string>{{102, "4/10/0"}, {103, "6/32/3"}}));
  ASSERT_TRUE((*m)->Sync({}).ok());
  EXPECT_TRUE(Dump(fd).empty());
  unlink((dir_ + "/hc_reals").c_str());
  close(fd);
}

TEST_F(TunnelMapTest, OpenRefusesAMissingPinAndAnotherLayout) {
  auto missing = HealthTunnelMap::Open(dir_ + "/nothing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--health_tunnel_map"), std::string::npos);

  const int fd = CreateMap(4, 16);  // not hc_reals: 16-byte values
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(Pin(fd, dir_ + "/wrong"));
  auto wrong = HealthTunnelMap::Open(dir_ + "/wrong");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong.status().message().find("not lb-hc-encap's hc_reals map"), std::string::npos);
  unlink((dir_ + "/wrong").c_str());
  close(fd);
}

// The checker keeps the map in step with its tunnelled targets: a target's
// mark appears before its checks run and leaves with the target. The check
// itself goes to a local listener standing in for the VIP (no tc program on
// lo: the marked connect simply succeeds).
TEST_F(TunnelMapTest, CheckerSyncsTheMapWithItsTargets) {
  const int fd = CreateMap(4, sizeof(TunnelReal));
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_TRUE(Pin(fd, dir_ + "/hc_reals"));

  const int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(listen(lfd, 16), 0);
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&sin), &len), 0);

  std::atomic<int> healthy{0};
  HealthCheckerOptions options;
  options.tunnel_map_path = dir_ + "/hc_reals";
  options.tunnel_mark_base = 0x100;
  auto hc = HealthChecker::Start(
      [&](const HealthReport& r) {
        if (r.backend_id == 3 && r.consecutive_successes > 0) healthy.store(1);
      },
      options);
  ASSERT_TRUE(hc.ok()) << hc.status();

  HealthTarget t;
  t.backend_id = 3;
  t.address = "10.0.0.3";
  t.port = 80;
  t.check.set_kind(v1::HEALTH_CHECK_KIND_TCP);
  t.check.set_interval_ms(50);
  t.check.set_through_tunnel(true);
  t.tunnel_address = "127.0.0.1";
  t.tunnel_port = ntohs(sin.sin_port);
  (*hc)->SetTargets({t});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!healthy.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(healthy.load(), 1) << "the marked check of the local listener never succeeded";
  EXPECT_EQ(Dump(fd), (std::map<uint32_t, std::string>{{0x103, "4/10/0"}}));

  (*hc)->SetTargets({});
  while (!Dump(fd).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(Dump(fd).empty());
  (*hc)->Stop();
  close(lfd);
  unlink((dir_ + "/hc_reals").c_str());
  close(fd);
}

TEST(TunnelChecker, StartFailsWhenTheMapIsMissing) {
  HealthCheckerOptions options;
  options.tunnel_map_path = "/nonexistent/lb-hc-encap/hc_reals";
  auto hc = HealthChecker::Start([](const HealthReport&) {}, options);
  ASSERT_FALSE(hc.ok());
  EXPECT_EQ(hc.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(hc.status().message().find("/nonexistent/lb-hc-encap/hc_reals"), std::string::npos);
}

}  // namespace
}  // namespace lb
