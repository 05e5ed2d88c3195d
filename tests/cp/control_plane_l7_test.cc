// lb-l7's configuration in the control plane (control_plane_l7.cc): the
// validator is lb-l7's own (proto/l7_config.h) — a config it refuses is
// refused here with the same findings under "config." — refusals change
// nothing, the generation and optimistic concurrency, persistence across a
// restart, ReplaceConfig (SIGHUP) keeping it, the L4 tables untouched, and
// WaitL7Config waking on a change; the active checks of L7 pools
// (l7_health.h): targets, down/up decisions and their own generation,
// streamed by WaitL7Config without a configuration generation.
#include <sys/stat.h>

#include <thread>

#include "controlplane/l7_health.h"

#include "google/protobuf/text_format.h"
#include "proto/l7_config.h"
#include "proto/l7_pem.h"
#include "proto/text_parse.h"
#include "tests/cp/control_plane_test_util.h"
#include "tests/l7/pem_test_util.h"

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
  EXPECT_EQ(cp->WaitL7Config(0, 0, absl::Milliseconds(50)).generation(), 0u);
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(45));
  std::thread setter([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(cp->SetL7Config(L7(kGood), 0).ok());
  });
  const v1::L7ConfigResponse r = cp->WaitL7Config(0, 0, absl::Seconds(10));
  setter.join();
  EXPECT_EQ(r.generation(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(r.config(), L7(kGood)));
  // Already different: returns at once.
  EXPECT_EQ(cp->WaitL7Config(0, 0, absl::Seconds(10)).generation(), 1u);
}

// One TLS listener takes the control plane's keys, one has its own file.
constexpr char kTls[] = R"pb(
  listeners {
    name: "https"
    port: 8443
    default_pool: "web"
    tls { certificates { cert_file: "/c.pem" key_file: "/k.pem" } }
  }
  listeners {
    name: "own"
    port: 8444
    default_pool: "web"
    tls {
      certificates { cert_file: "/c.pem" key_file: "/k.pem" }
      session_ticket_key_file: "/t.key"
    }
  }
  pools {
    name: "web"
    backends { address: "127.0.0.1" port: 9001 }
  }
)pb";

std::string NodeKeys(const ControlPlane& cp) {
  return cp.L7ConfigForNodes().config().listeners(0).tls().session_ticket_keys();
}

TEST_F(ControlPlaneL7Test, TicketKeysDrawnRotatedStoredAndNeverReturnedByGet) {
  std::string keys_gen2;
  {
    auto cp = Make();
    ASSERT_NE(cp, nullptr);
    // Nothing before the first L7 document.
    EXPECT_FALSE(cp->RotateL7TicketKeys(false).ok());
    EXPECT_EQ(*cp->RotateL7TicketKeys(true), 0u);
    EXPECT_EQ(cp->l7_ticket_key_rotations(), 0u);
    ASSERT_TRUE(cp->SetL7Config(L7(kTls), 0).ok());
    // The first document brings the first keys: next + current.
    EXPECT_EQ(cp->GetL7Config().ticket_key_generation(), 1u);
    const std::string gen1 = NodeKeys(*cp);
    ASSERT_EQ(gen1.size(), 160u);
    EXPECT_EQ(cp->L7ConfigForNodes().config().listeners(1).tls().session_ticket_keys(), "");
    // Not due yet (3600 s period): nothing changes.
    const uint64_t version = cp->version();
    EXPECT_EQ(*cp->RotateL7TicketKeys(true), 1u);
    cp->Tick();
    EXPECT_EQ(cp->version(), version);
    EXPECT_EQ(NodeKeys(*cp), gen1);
    // A rotation: the next key encrypts, the old current one still decrypts.
    EXPECT_EQ(*cp->RotateL7TicketKeys(false), 2u);
    EXPECT_EQ(cp->l7_ticket_key_rotations(), 2u);
    EXPECT_EQ(cp->version(), version + 1);
    keys_gen2 = NodeKeys(*cp);
    ASSERT_EQ(keys_gen2.size(), 240u);
    EXPECT_EQ(keys_gen2.substr(0, 80), gen1.substr(80, 80));   // old next -> current
    EXPECT_EQ(keys_gen2.substr(160, 80), gen1.substr(0, 80));  // old current -> previous
    // The operator's view: the generation, never the bytes.
    const v1::L7ConfigResponse got = cp->GetL7Config();
    EXPECT_EQ(got.ticket_key_generation(), 2u);
    EXPECT_TRUE(MessageDifferencer::Equals(got.config(), L7(kTls)));
    std::string wire;
    ASSERT_TRUE(got.SerializeToString(&wire));
    EXPECT_EQ(wire.find(keys_gen2.substr(0, 16)), std::string::npos);
    EXPECT_EQ(wire.find(keys_gen2.substr(80, 16)), std::string::npos);
    // A reload of the L4 file keeps them; an L7 change keeps them.
    ASSERT_TRUE(cp->ReplaceConfig(ParseOrDie(kBase)).ok());
    EXPECT_EQ(NodeKeys(*cp), keys_gen2);
    v1::L7Config other = L7(kTls);
    other.mutable_listeners(0)->mutable_tls()->set_session_timeout_s(600);
    ASSERT_TRUE(cp->SetL7Config(other, 0).ok());
    EXPECT_EQ(cp->GetL7Config().ticket_key_generation(), 2u);
  }
  // Stored (file mode 0600: the state holds keys) and read back.
  struct stat st;
  ASSERT_EQ(stat(state_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = Make();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->GetL7Config().ticket_key_generation(), 2u);
  EXPECT_EQ(NodeKeys(*again), keys_gen2);
}

TEST_F(ControlPlaneL7Test, RotateNowAndDropPrevious) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  auto early = cp->RotateL7TicketKeys(false);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(cp->SetL7Config(L7(kTls), 0).ok());
  ASSERT_EQ(*cp->RotateL7TicketKeys(false), 2u);
  const std::string before = NodeKeys(*cp);
  ASSERT_EQ(before.size(), 240u);
  // Every key replaced: none of the 3 old ones is left, 2 fresh ones.
  ASSERT_EQ(*cp->RotateL7TicketKeys(false, /*drop_previous=*/true), 3u);
  const std::string after = NodeKeys(*cp);
  ASSERT_EQ(after.size(), 160u);
  for (size_t i = 0; i < before.size(); i += 80) {
    EXPECT_EQ(after.find(before.substr(i, 80)), std::string::npos) << "old key " << i / 80;
  }
  // A normal rotation after it keeps going from there.
  ASSERT_EQ(*cp->RotateL7TicketKeys(false), 4u);
  EXPECT_EQ(NodeKeys(*cp).substr(160, 80), after.substr(0, 80));
}

TEST_F(ControlPlaneL7Test, InlineTicketKeysRefusedFromOperators) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  v1::L7Config c = L7(kTls);
  c.mutable_listeners(0)->mutable_tls()->set_session_ticket_keys(std::string(80, 'k'));
  auto r = cp->SetL7Config(c, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(r.status().message(), "config.listeners[0].tls.session_ticket_keys: set by the");
  EXPECT_EQ(r.status().message().find("kkkk"), std::string::npos);
  EXPECT_EQ(cp->GetL7Config().generation(), 0u);
}

TEST_F(ControlPlaneL7Test, WaitWakesOnTicketKeyRotation) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  ASSERT_TRUE(cp->SetL7Config(L7(kTls), 0).ok());
  std::thread rotator([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(cp->RotateL7TicketKeys(false).ok());
  });
  const v1::L7ConfigResponse r = cp->WaitL7Config(1, 1, absl::Seconds(10));
  rotator.join();
  EXPECT_EQ(r.generation(), 1u);
  EXPECT_EQ(r.ticket_key_generation(), 2u);
  EXPECT_EQ(r.config().listeners(0).tls().session_ticket_keys(), NodeKeys(*cp));
}

TEST_F(ControlPlaneL7Test, TickRotatesWhenThePeriodIsOver) {
  auto store = NewFileStore(state_dir_);
  ASSERT_TRUE(store.ok());
  ControlPlaneOptions o = Options(ParseOrDie(kBase));
  o.l7_ticket_key_rotate_s = 1;
  auto cp = ControlPlane::Create(std::move(o), *std::move(store));
  ASSERT_TRUE(cp.ok()) << cp.status();
  ASSERT_TRUE((*cp)->SetL7Config(L7(kTls), 0).ok());
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while ((*cp)->GetL7Config().ticket_key_generation() < 2 && absl::Now() < end) {
    (*cp)->Tick();
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ((*cp)->GetL7Config().ticket_key_generation(), 2u);
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
  const uint64_t keys = cp->GetL7Config().ticket_key_generation();
  const v1::L7ConfigResponse r = cp->WaitL7Config(1, keys, absl::Seconds(10), 0);
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
  const v1::L7ConfigResponse same = cp->WaitL7Config(1, keys, absl::Milliseconds(50), 3);
  EXPECT_EQ(same.generation(), 1u);
  EXPECT_EQ(same.health().generation(), 3u);
}

}  // namespace
}  // namespace lb

namespace lb {
namespace {

using lb::testing::MakeTestPem;
using lb::testing::TestPem;

v1::L7Certificate InlineCert(const TestPem& p) {
  v1::L7Certificate c;
  c.set_cert_pem(p.cert);
  c.set_key_pem(p.key);
  return c;
}

const v1::L7Certificate& NodeCert(const ControlPlane& cp, int i) {
  static thread_local v1::L7ConfigResponse r;
  r = cp.L7ConfigForNodes();
  return r.config().listeners(0).tls().certificates(i);
}

void ExpectRedacted(const v1::L7ConfigResponse& r, const std::vector<TestPem>& pems) {
  std::string wire, text;
  ASSERT_TRUE(r.SerializeToString(&wire));
  google::protobuf::TextFormat::PrintToString(r, &text);
  EXPECT_EQ(wire.find("PRIVATE KEY"), std::string::npos) << text;
  const v1::L7Tls& t = r.config().listeners(0).tls();
  ASSERT_EQ(t.certificates_size(), static_cast<int>(pems.size()));
  for (size_t i = 0; i < pems.size(); ++i) {
    EXPECT_EQ(t.certificates(i).key_pem(), *l7::RedactedKeyMarker(pems[i].key)) << i;
    EXPECT_EQ(t.certificates(i).cert_pem(), pems[i].cert) << i;  // public: as it is
  }
}

// Keys are stored with the document, streamed to lb-l7 only, shown as
// markers everywhere else; a marker sent back keeps the stored key; an
// unknown marker, a mismatched pair or an expired new certificate is
// refused naming the field with nothing changed; stored 0600, read back.
TEST_F(ControlPlaneL7Test, InlineKeysRedactedInAnswersKeptByMarkers) {
  const TestPem a = MakeTestPem({"a.example.com"}), b = MakeTestPem({"b.example.com"}, true);
  const TestPem a2 = MakeTestPem({"a.example.com"}, false, 86400, 2);
  v1::L7Config doc = L7(kGood);
  *doc.mutable_listeners(0)->mutable_tls()->add_certificates() = InlineCert(a);
  *doc.mutable_listeners(0)->mutable_tls()->add_certificates() = InlineCert(b);
  {
    auto cp = Make();
    ASSERT_NE(cp, nullptr);
    auto set = cp->SetL7Config(doc, 0);
    ASSERT_TRUE(set.ok()) << set.status();
    EXPECT_EQ(set->generation(), 1u);
    ExpectRedacted(*set, {a, b});
    ExpectRedacted(cp->GetL7Config(), {a, b});
    EXPECT_EQ(NodeCert(*cp, 0).key_pem(), a.key);
    EXPECT_EQ(NodeCert(*cp, 1).key_pem(), b.key);

    // get -> set as it is: nothing changes (no generation, no write).
    const uint64_t version = cp->version();
    v1::L7ConfigResponse got = cp->GetL7Config();
    auto same = cp->SetL7Config(got.config(), got.generation());
    ASSERT_TRUE(same.ok()) << same.status();
    EXPECT_EQ(same->generation(), 1u);
    EXPECT_EQ(cp->version(), version);
    // get -> edit -> set: the markers keep both keys.
    v1::L7Config edited = got.config();
    edited.mutable_listeners(0)->set_port(8081);
    auto r = cp->SetL7Config(edited, 1);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->generation(), 2u);
    EXPECT_EQ(NodeCert(*cp, 0).key_pem(), a.key);
    EXPECT_EQ(NodeCert(*cp, 1).key_pem(), b.key);
    // A new certificate and key for [0]; [1] by its marker.
    *edited.mutable_listeners(0)->mutable_tls()->mutable_certificates(0) = InlineCert(a2);
    r = cp->SetL7Config(edited, 2);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->generation(), 3u);
    ExpectRedacted(*r, {a2, b});
    EXPECT_EQ(NodeCert(*cp, 0).key_pem(), a2.key);

    // Refusals name the field and change nothing.
    const v1::L7ConfigResponse before = cp->L7ConfigForNodes();
    const uint64_t v3 = cp->version();
    auto expect_refused = [&](const v1::L7Config& c, const std::string& want) {
      auto rr = cp->SetL7Config(c, 0);
      ASSERT_FALSE(rr.ok()) << want;
      EXPECT_EQ(rr.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_CONTAINS(rr.status().message(), want);
      EXPECT_EQ(rr.status().message().find("PRIVATE KEY"), std::string::npos);
      EXPECT_EQ(cp->version(), v3);
      EXPECT_TRUE(MessageDifferencer::Equals(cp->L7ConfigForNodes(), before));
    };
    // a's key is no longer stored: its marker stands for nothing.
    v1::L7Config gone = edited;
    v1::L7Certificate* c0 = gone.mutable_listeners(0)->mutable_tls()->mutable_certificates(0);
    c0->set_cert_pem(a.cert);
    c0->set_key_pem(*l7::RedactedKeyMarker(a.key));
    expect_refused(gone, "config.listeners[0].tls.certificates[0].key_pem: \"redacted:sha256:");
    // b's marker (a stored key) under a's certificate: not its key.
    c0->set_key_pem(*l7::RedactedKeyMarker(b.key));
    expect_refused(gone,
                   "config.listeners[0].tls.certificates[0].key_pem: does not match the "
                   "certificate of cert_pem");
    // A mismatched pair uploaded.
    *c0 = InlineCert(a);
    c0->set_key_pem(a2.key);
    expect_refused(gone, "config.listeners[0].tls.certificates[0].key_pem: does not match");
    // An expired certificate uploaded.
    *c0 = InlineCert(MakeTestPem({"a.example.com"}, false, -60));
    expect_refused(gone,
                   "config.listeners[0].tls.certificates[0].cert_pem: the certificate "
                   "expired");
  }
  struct stat st;
  ASSERT_EQ(stat(state_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = Make();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->GetL7Config().generation(), 3u);
  ExpectRedacted(again->GetL7Config(), {a2, b});
  EXPECT_EQ(NodeCert(*again, 0).key_pem(), a2.key);
  EXPECT_EQ(NodeCert(*again, 1).key_pem(), b.key);
}

}  // namespace
}  // namespace lb
