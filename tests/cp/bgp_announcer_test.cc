// The BGP announcer (controlplane/bgp_announcer.h): the pure decision and the
// include file it renders, then the announcer against a real BIRD 2 the test
// starts (static protocols only: it touches no routing table) and a stand-in
// dataplane whose heartbeat the test stops.
#include "controlplane/bgp_announcer.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control_plane_test_util.h"
#include "gtest/gtest.h"

namespace lb {
namespace {

v1::VipStatus Vip(const std::string& addr, uint32_t port, uint32_t active) {
  v1::VipStatus v;
  v.mutable_vip()->set_address(addr);
  v.mutable_vip()->set_port(port);
  v.set_active_members(active);
  return v;
}

TEST(DecideAnnouncement, HealthyVipsOfALiveDataplane) {
  const Announcement a = DecideAnnouncement(
      true, "", false,
      {Vip("198.51.100.10", 80, 2), Vip("198.51.100.10", 443, 0), Vip("198.51.100.11", 80, 0),
       Vip("2001:db8:0:0::10", 80, 1), Vip("not-an-address", 80, 1)});
  EXPECT_EQ(a.prefixes, (std::set<std::string>{"198.51.100.10/32", "2001:db8::10/128"}));
  EXPECT_EQ(a.why_none, "");
}

TEST(DecideAnnouncement, NothingWhenDeadDrainedOrUnhealthy) {
  const std::vector<v1::VipStatus> vips = {Vip("198.51.100.10", 80, 2)};
  Announcement a = DecideAnnouncement(false, "process 12 gone", false, vips);
  EXPECT_TRUE(a.prefixes.empty());
  EXPECT_EQ(a.why_none, "dataplane not alive: process 12 gone");
  a = DecideAnnouncement(true, "", true, vips);
  EXPECT_TRUE(a.prefixes.empty());
  EXPECT_EQ(a.why_none, "node drained");
  a = DecideAnnouncement(true, "", false, {Vip("198.51.100.10", 80, 0)});
  EXPECT_TRUE(a.prefixes.empty());
  EXPECT_EQ(a.why_none, "no VIP has a healthy backend");
  a = DecideAnnouncement(true, "", false, {});
  EXPECT_EQ(a.why_none, "no VIPs");
}

TEST(RenderBirdRoutes, BothStaticProtocolsAlways) {
  const std::string empty = RenderBirdRoutes("lb_vips", {});
  EXPECT_TRUE(absl::StrContains(empty, "protocol static lb_vips4 {\n  ipv4;\n}\n")) << empty;
  EXPECT_TRUE(absl::StrContains(empty, "protocol static lb_vips6 {\n  ipv6;\n}\n")) << empty;
  const std::string two = RenderBirdRoutes("lb_vips", {"198.51.100.10/32", "2001:db8::10/128"});
  EXPECT_TRUE(absl::StrContains(
      two, "protocol static lb_vips4 {\n  ipv4;\n  route 198.51.100.10/32 blackhole;\n}\n"))
      << two;
  EXPECT_TRUE(absl::StrContains(
      two, "protocol static lb_vips6 {\n  ipv6;\n  route 2001:db8::10/128 blackhole;\n}\n"))
      << two;
}

std::string Shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// A real BIRD in a temp dir: the include file, a control socket, no kernel
// protocol.
class RealBird : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(system("command -v bird >/dev/null && command -v birdc >/dev/null"), 0)
        << "bird/birdc not installed (scripts/install-deps.sh: bird2)";
    char tmpl[] = "/tmp/lb-bgp-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    routes_ = dir_ + "/vips.conf";
    sock_ = dir_ + "/bird.ctl";
    std::ofstream(routes_) << RenderBirdRoutes("lb_vips", {});
    std::ofstream(dir_ + "/bird.conf")
        << "log \"" << dir_ << "/bird.log\" all;\nrouter id 192.0.2.1;\n"
        << "protocol device {}\ninclude \"" << routes_ << "\";\n";
    bird_ = fork();
    if (bird_ == 0) {
      execlp("bird", "bird", "-f", "-c", (dir_ + "/bird.conf").c_str(), "-s", sock_.c_str(), "-P",
             (dir_ + "/bird.pid").c_str(), nullptr);
      _exit(127);
    }
    for (int i = 0; i < 100 && !absl::StrContains(Routes(), "BIRD"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(absl::StrContains(Routes(), "BIRD")) << "BIRD did not answer on " << sock_;
  }
  void TearDown() override {
    if (bird_ > 0) {
      kill(bird_, SIGTERM);
      waitpid(bird_, nullptr, 0);
    }
    if (!dir_.empty()) Shell("rm -rf '" + dir_ + "'");
  }
  std::string Routes() { return Shell("birdc -s '" + sock_ + "' show route 2>&1"); }

  std::string dir_, routes_, sock_;
  pid_t bird_ = -1;
};

TEST_F(RealBird, AnnouncesWhileAliveAndHealthyWithdrawsOtherwise) {
  const std::string stats = dir_ + "/stats";
  auto dp = std::make_unique<FakeDataplane>(stats, dir_ + "/no-tables", 1, 16);
  DataplaneView view(stats, 500'000'000);
  std::atomic<uint32_t> active{2};
  BgpAnnouncerOptions o;
  o.routes_file = routes_;
  o.bird_socket = sock_;
  o.drain_file = dir_ + "/drain";
  o.heartbeat_max_age_ns = 100'000'000;
  BgpAnnouncer a(
      o, [&] { return std::vector<v1::VipStatus>{Vip("198.51.100.10", 80, active)}; }, &view);
  a.Step();
  EXPECT_TRUE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();

  active = 0;  // the VIP's last backend went down
  a.Step();
  EXPECT_FALSE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();
  active = 2;
  a.Step();
  EXPECT_TRUE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();

  std::ofstream(o.drain_file) << "";  // drained
  a.Step();
  EXPECT_FALSE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();
  std::remove(o.drain_file.c_str());
  a.Step();
  EXPECT_TRUE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();

  dp->Pause(true);  // the heartbeat stops
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  a.Step();
  EXPECT_FALSE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();
  dp->Pause(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  a.Step();
  EXPECT_TRUE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();

  dp.reset();  // the process is gone (writer pid 0)
  a.Step();
  EXPECT_FALSE(absl::StrContains(Routes(), "198.51.100.10/32")) << Routes();
}

TEST(BgpAnnouncer, RefusesBadFlags) {
  DataplaneView view("/nonexistent", 1);
  BgpAnnouncerOptions o;
  o.routes_file = "relative.conf";
  o.bird_socket = "/tmp/x";
  BgpAnnouncer a(
      o, [] { return std::vector<v1::VipStatus>{}; }, &view);
  absl::Status s = a.Start();
  EXPECT_TRUE(absl::StrContains(s.message(), "--bgp_routes_file")) << s;
  o.routes_file = "/tmp/abs.conf";
  o.bird_socket = "";
  BgpAnnouncer b(
      o, [] { return std::vector<v1::VipStatus>{}; }, &view);
  s = b.Start();
  EXPECT_TRUE(absl::StrContains(s.message(), "--bgp_bird_socket")) << s;
}

}  // namespace
}  // namespace lb
