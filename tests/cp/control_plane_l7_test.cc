// lb-l7's configuration in the control plane (control_plane_l7.cc): the
// validator is lb-l7's own (proto/l7_config.h) — a config it refuses is
// refused here with the same findings under "config." — refusals change
// nothing, the generation and optimistic concurrency, persistence across a
// restart, ReplaceConfig (SIGHUP) keeping it, the L4 tables untouched, and
// WaitL7Config waking on a change; the active checks of L7 pools
// (l7_health.h): targets, down/up decisions and their own generation,
// streamed by WaitL7Config without a configuration generation.
#include <thread>

#include "controlplane/l7_health.h"

#include "proto/l7_config.h"
#include "proto/text_parse.h"
#include "tests/cp/control_plane_test_util.h"

namespace lb {
namespace {

v1::L7Config L7(const std::string& text) {
  v1::L7Config c;
  absl::Status st = ParseTextProto(text, "test", &c);
  EXPECT_TRUE(st.ok()) << st;
  return c;
}

constexpr char kGood[] = R"pb(
  listeners { name: "main" port: 8080 default_pool: "web" }
  pools {
    name: "web"
    backends { address: "127.0.0.1" port: 9001 }
  }
)pb";
constexpr char kOther[] = R"pb(
  listeners {
    name: "main"
    port: 8080
    default_pool: "web"
    routes {
      name: "api"
      path { prefix: "/api" }
      pool: "api"
    }
  }
  pools {
    name: "web"
    backends { address: "127.0.0.1" port: 9001 }
  }
  pools {
    name: "api"
    backends { address: "127.0.0.1" port: 9002 }
  }
)pb";
// Two faults lb-l7 reports: a port and a route to a missing pool.
constexpr char kBad[] = R"pb(
  listeners {
    name: "main"
    port: 8080
    routes { name: "r" pool: "nope" }
  }
  pools {
    name: "web"
    backends { address: "127.0.0.1" port: 0 }
  }
)pb";

using ControlPlaneL7Test = ControlPlaneTest;

TEST_F(ControlPlaneL7Test, SameValidatorAsLbL7WithConfigPrefix) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  auto l7 = l7::ValidateL7Config(L7(kBad));
  ASSERT_FALSE(l7.ok());
  auto r = cp->SetL7Config(L7(kBad), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(r.status().message(), "config.pools[0].backends[0].port: 0 is not a port");
  EXPECT_CONTAINS(r.status().message(), "config.listeners[0].routes[0].pool: no pool named");
  // The same findings, each under "config.".
  auto prefixed = l7::ValidateL7Config(L7(kBad), "config.");
  EXPECT_EQ(r.status().message(), prefixed.status().message());
  std::string unprefixed(prefixed.status().message());
  for (size_t p; (p = unprefixed.find("config.")) != std::string::npos;) unprefixed.erase(p, 7);
  EXPECT_EQ(unprefixed, l7.status().message());
  // lb-l7's example config is accepted as is.
  auto example = l7::LoadL7Config(std::string(LB_SOURCE_ROOT) + "/dataplane/l7/example.textproto");
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_TRUE(cp->SetL7Config(*example, 0).ok());
}

TEST_F(ControlPlaneL7Test, RefusalChangesNothing) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  ASSERT_TRUE(cp->SetL7Config(L7(kGood), 0).ok());
  const uint64_t version = cp->version();
  const uint64_t generation = cp->generation();
  const std::string stored = ReadFile(state_file_);
  EXPECT_FALSE(cp->SetL7Config(L7(kBad), 0).ok());
  EXPECT_EQ(cp->GetL7Config().generation(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(cp->GetL7Config().config(), L7(kGood)));
  EXPECT_EQ(cp->version(), version);
  EXPECT_EQ(cp->generation(), generation);
  EXPECT_EQ(ReadFile(state_file_), stored);
}

TEST_F(ControlPlaneL7Test, GenerationsAndOptimisticConcurrency) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(cp->GetL7Config().generation(), 0u);
  const uint64_t tables = cp->generation();
  auto a = cp->SetL7Config(L7(kGood), 0);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->generation(), 1u);
  // The same document again: no new generation, no store write.
  const uint64_t version = cp->version();
  EXPECT_EQ(cp->SetL7Config(L7(kGood), 1)->generation(), 1u);
  EXPECT_EQ(cp->version(), version);
  auto b = cp->SetL7Config(L7(kOther), 1);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->generation(), 2u);
  // A writer that read generation 1 loses: FailedPrecondition, nothing changed.
  auto stale = cp->SetL7Config(L7(kGood), 1);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_CONTAINS(stale.status().message(), "expected_generation: 1 is not the current");
  EXPECT_TRUE(MessageDifferencer::Equals(cp->GetL7Config().config(), L7(kOther)));
  // L7 changes never republish the L4 tables.
  EXPECT_EQ(cp->generation(), tables);
}

TEST_F(ControlPlaneL7Test, PersistedAndKeptByReplaceConfig) {
  {
    auto cp = Make();
    ASSERT_NE(cp, nullptr);
    ASSERT_TRUE(cp->SetL7Config(L7(kGood), 0).ok());
    ASSERT_TRUE(cp->SetL7Config(L7(kOther), 0).ok());
    // A reload of the L4 file (which has no l7) keeps the L7 document.
    ASSERT_TRUE(cp->ReplaceConfig(ParseOrDie(kBase)).ok());
    EXPECT_EQ(cp->GetL7Config().generation(), 2u);
    // An L4 change keeps it too.
    ASSERT_TRUE(cp->DeleteVip(cp->config().vips(0).id()).ok());
    EXPECT_EQ(cp->GetL7Config().generation(), 2u);
  }
  auto again = Make();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->GetL7Config().generation(), 2u);
  EXPECT_TRUE(MessageDifferencer::Equals(again->GetL7Config().config(), L7(kOther)));
}

TEST_F(ControlPlaneL7Test, BootstrapL7IsIgnored) {
  v1::Config boot = ParseOrDie(kBase);
  *boot.mutable_l7() = L7(kBad);
  boot.set_l7_generation(7);
  auto cp = Make(boot);
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(cp->GetL7Config().generation(), 0u);
  EXPECT_EQ(cp->GetL7Config().config().pools_size(), 0);
}

TEST_F(ControlPlaneL7Test, WaitWakesOnChangeAndTimesOut) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(cp->WaitL7Config(0, absl::Milliseconds(50)).generation(), 0u);
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(45));
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(cp->SetL7Config(L7(kGood), 0).ok());
  });
  const v1::L7ConfigResponse r = cp->WaitL7Config(0, absl::Seconds(10));
  setter.join();
  EXPECT_EQ(r.generation(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(r.config(), L7(kGood)));
  // Already different: returns at once.
  EXPECT_EQ(cp->WaitL7Config(0, absl::Seconds(10)).generation(), 1u);
}

constexpr char kChecked[] = R"pb(
  listeners { name: "main" port: 8080 default_pool: "web" }
  pools {
    name: "web"
    backends { address: "127.0.0.1" port: 9001 }
    backends { address: "127.0.0.1" port: 9002 }
    health_check { path: "/hz" interval_ms: 200 unhealthy_threshold: 2 }
  }
  pools {
    name: "plain"
    backends { address: "127.0.0.1" port: 9003 }
  }
)pb";

HealthReport Report(uint32_t id, v1::HealthStatus status, bool failed) {
  HealthReport r;
  r.backend_id = id;
  r.status = status;
  r.consecutive_failures = failed ? 1 : 0;
  r.consecutive_successes = failed ? 0 : 1;
  if (failed) r.last_error = "HTTP 500";
  return r;
}

TEST(L7HealthBook, TargetsOnlyForCheckedPoolsWithTheirSettings) {
  L7HealthBook book;
  const auto t = book.Targets(L7(kChecked));
  ASSERT_EQ(t.size(), 2u);  // "plain" has no health_check
  EXPECT_EQ(t[0].port, 9001);
  EXPECT_EQ(t[1].port, 9002);
  EXPECT_NE(t[0].backend_id, t[1].backend_id);
  EXPECT_EQ(t[0].check.kind(), v1::HEALTH_CHECK_KIND_HTTP);
  EXPECT_EQ(t[0].check.http_path(), "/hz");
  EXPECT_EQ(t[0].check.interval_ms(), 200u);
  EXPECT_EQ(t[0].check.unhealthy_threshold(), 2u);
  // The same backends keep their ids in the next configuration.
  EXPECT_EQ(book.Targets(L7(kChecked))[1].backend_id, t[1].backend_id);
  v1::L7Config tcp = L7(kChecked);
  tcp.mutable_pools(0)->mutable_health_check()->set_tcp(true);
  EXPECT_EQ(book.Targets(tcp)[0].check.kind(), v1::HEALTH_CHECK_KIND_TCP);
}

TEST(L7HealthBook, DownAndUpBumpTheGenerationOnlyOnChange) {
  L7HealthBook book;
  const auto t = book.Targets(L7(kChecked));
  const uint32_t b = t[1].backend_id;
  EXPECT_EQ(book.Health().generation(), 0u);
  // Failures below the threshold (status still UNKNOWN/HEALTHY): up.
  EXPECT_FALSE(book.Report(Report(b, v1::HEALTH_STATUS_UNKNOWN, true)));
  EXPECT_TRUE(book.Report(Report(b, v1::HEALTH_STATUS_UNHEALTHY, true)));
  EXPECT_FALSE(book.Report(Report(b, v1::HEALTH_STATUS_UNHEALTHY, true)));  // no change
  v1::L7Health h = book.Health();
  EXPECT_EQ(h.generation(), 1u);
  ASSERT_EQ(h.backends_size(), 2);
  int down = 0;
  for (const auto& e : h.backends()) {
    EXPECT_EQ(e.pool(), "web");
    if (e.down()) {
      ++down;
      EXPECT_EQ(e.port(), 9002u);
      EXPECT_EQ(e.last_error(), "HTTP 500");
    }
  }
  EXPECT_EQ(down, 1);
  EXPECT_TRUE(book.Report(Report(b, v1::HEALTH_STATUS_HEALTHY, false)));
  EXPECT_EQ(book.Health().generation(), 2u);
  const L7HealthCounters c = book.Counters();
  EXPECT_EQ(c.checks_failed, 3u);
  EXPECT_EQ(c.checks_ok, 1u);
  EXPECT_EQ(c.transitions, 2u);
  EXPECT_EQ(c.backends, 2u);
  EXPECT_EQ(c.down, 0u);
  // Unknown ids (a target forgotten meanwhile) change nothing.
  EXPECT_FALSE(book.Report(Report(9999, v1::HEALTH_STATUS_UNHEALTHY, true)));
}

TEST(L7HealthBook, ForgettingADownBackendIsANewGeneration) {
  L7HealthBook book;
  const uint32_t b = book.Targets(L7(kChecked))[1].backend_id;
  ASSERT_TRUE(book.Report(Report(b, v1::HEALTH_STATUS_UNHEALTHY, true)));
  v1::L7Config fewer = L7(kChecked);
  fewer.mutable_pools(0)->mutable_backends()->RemoveLast();
  EXPECT_EQ(book.Targets(fewer).size(), 1u);
  const v1::L7Health h = book.Health();
  EXPECT_EQ(h.generation(), 2u);
  ASSERT_EQ(h.backends_size(), 1);
  EXPECT_FALSE(h.backends(0).down());
  EXPECT_FALSE(book.Report(Report(b, v1::HEALTH_STATUS_HEALTHY, false)));  // forgotten
  // A pool losing its check forgets its backends.
  fewer.mutable_pools(0)->clear_health_check();
  EXPECT_TRUE(book.Targets(fewer).empty());
  EXPECT_EQ(book.Health().backends_size(), 0);
}

TEST(L7HealthConfig, CheckSettingsValidatedNamingTheField) {
  v1::L7Config c = L7(kChecked);
  auto* hc = c.mutable_pools(0)->mutable_health_check();
  hc->set_interval_ms(50);
  hc->set_timeout_ms(5000);
  hc->set_path("no-slash");
  hc->set_unhealthy_threshold(1000);
  const absl::Status st = l7::ValidateL7Config(c, "config.").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  for (const char* f :
       {"config.pools[0].health_check.interval_ms", "config.pools[0].health_check.timeout_ms",
        "config.pools[0].health_check.path", "config.pools[0].health_check.unhealthy_threshold"}) {
    EXPECT_NE(st.message().find(f), std::string::npos) << f << " in " << st.message();
  }
  EXPECT_TRUE(l7::ValidateL7Config(L7(kChecked), "config.").ok());
}

// Health streams on its own generation: WaitL7Config wakes on it with the
// configuration generation unchanged; an older document is ignored.
TEST_F(ControlPlaneL7Test, HealthWakesTheWatchWithoutAConfigGeneration) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  ASSERT_TRUE(cp->SetL7Config(L7(kChecked), 0).ok());
  EXPECT_EQ(cp->GetL7Config().health().generation(), 0u);
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(50));
    v1::L7Health h;
    h.set_generation(3);
    auto* b = h.add_backends();
    b->set_pool("web");
    b->set_address("127.0.0.1");
    b->set_port(9002);
    b->set_down(true);
    cp->SetL7Health(h);
  });
  const v1::L7ConfigResponse r = cp->WaitL7Config(1, absl::Seconds(10), 0);
  setter.join();
  EXPECT_EQ(r.generation(), 1u);
  EXPECT_EQ(r.health().generation(), 3u);
  ASSERT_EQ(r.health().backends_size(), 1);
  EXPECT_TRUE(r.health().backends(0).down());
  v1::L7Health older;
  older.set_generation(2);
  cp->SetL7Health(older);
  EXPECT_EQ(cp->GetL7Config().health().generation(), 3u);
  // Nothing new: the wait times out with the same generations.
  const v1::L7ConfigResponse same = cp->WaitL7Config(1, absl::Milliseconds(50), 3);
  EXPECT_EQ(same.generation(), 1u);
  EXPECT_EQ(same.health().generation(), 3u);
}

}  // namespace
}  // namespace lb
