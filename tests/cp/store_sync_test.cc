// Several control planes on one store, without etcd: an in-memory store with
// etcd's semantics (one value, a revision, Save = compare-and-swap on the
// revision the last Load/Save saw; "down" refuses every call). Checks the
// ControlPlane side of the etcd store (control_plane_sync.cc, Impl::Run):
// a lost race is retried on the fresh state, a store that is down refuses
// the change and leaves the published generation, the committed config and
// the stored bytes as they were, SyncFromStore adopts what another control
// plane stored and is a no-op otherwise. tests/cluster/ runs the real etcd.
#include <memory>
#include <string>

#include "controlplane/shared_health.h"
#include "tests/cp/control_plane_test_util.h"

namespace lb {
namespace {

struct SharedState {
  absl::Mutex mu;
  std::string value ABSL_GUARDED_BY(mu);
  int64_t revision ABSL_GUARDED_BY(mu) = 0;
  bool down ABSL_GUARDED_BY(mu) = false;
  bool always_conflict ABSL_GUARDED_BY(mu) = false;  // a peer writing non-stop
};

class MemStore : public Store {
 public:
  explicit MemStore(std::shared_ptr<SharedState> s) : s_(std::move(s)) {}
  absl::StatusOr<std::optional<v1::Config>> Load() override {
    absl::MutexLock l(&s_->mu);
    if (s_->down) return absl::UnavailableError("mem store down");
    seen_ = s_->revision;
    if (s_->value.empty()) return std::optional<v1::Config>();
    auto c = DecodeStoredState(s_->value, "mem");
    if (!c.ok()) return c.status();
    return std::optional<v1::Config>(*c);
  }
  absl::Status Save(const v1::Config& config) override {
    auto bytes = EncodeStoredState(config);
    if (!bytes.ok()) return bytes.status();
    absl::MutexLock l(&s_->mu);
    if (s_->down) return absl::UnavailableError("mem store down");
    if (s_->always_conflict) ++s_->revision;
    if (s_->revision != seen_) return absl::AbortedError("revision moved");
    s_->value = *bytes;
    seen_ = ++s_->revision;
    return absl::OkStatus();
  }
  std::string Describe() const override { return "mem"; }

 private:
  std::shared_ptr<SharedState> s_;
  int64_t seen_ = 0;
};

class StoreSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/dev/shm/lb-store-sync-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(system(("rm -rf '" + dir_ + "' && mkdir -p '" + dir_ + "'").c_str()), 0);
    a_ = Make("a");
    b_ = Make("b");
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
  }
  std::unique_ptr<ControlPlane> Make(const std::string& node, bool shared_health = false,
                                     std::optional<v1::SharedHealth> initial = std::nullopt) {
    ControlPlaneOptions o;
    o.shared_health = shared_health;
    o.initial_shared_health = std::move(initial);
    o.publisher.table_path = dir_ + "/tables-" + node;
    o.publisher.stats_path = dir_ + "/stats-" + node;
    o.publisher.caps.max_vips = 8;
    o.publisher.caps.max_backends = 64;
    o.publisher.caps.max_members = 256;
    o.publisher.caps.max_ring_size = 257;
    o.bootstrap = ParseOrDie(kBase);
    auto cp = ControlPlane::Create(o, std::make_unique<MemStore>(shared_));
    EXPECT_TRUE(cp.ok()) << cp.status();
    return cp.ok() ? *std::move(cp) : nullptr;
  }
  static v1::Backend Backend(const std::string& address) {
    v1::Backend b;
    b.set_address(address);
    b.set_port(80);
    return b;
  }
  std::string Stored() {
    absl::MutexLock l(&shared_->mu);
    return shared_->value;
  }
  static std::string Fingerprint(const ControlPlane& cp) {
    auto vips = cp.ListVips();
    return vips.empty() ? "" : vips[0].fingerprint();
  }

  std::shared_ptr<SharedState> shared_ = std::make_shared<SharedState>();
  std::string dir_;
  std::unique_ptr<ControlPlane> a_;
  std::unique_ptr<ControlPlane> b_;
};

TEST_F(StoreSyncTest, SecondNodeStartsFromTheFirstNodesBootstrap) {
  EXPECT_EQ(a_->version(), 1u);
  EXPECT_EQ(b_->version(), 1u);  // found A's bootstrap stored: started from it
  EXPECT_EQ(Fingerprint(*a_), Fingerprint(*b_));
}

TEST_F(StoreSyncTest, LostRaceIsRetriedOnTheFreshState) {
  ASSERT_TRUE(a_->AddBackend("web", Backend("10.0.0.10")).ok());
  // B has not seen A's change: its Save loses the compare-and-swap, it
  // adopts version 2 and applies its change on top.
  auto added = b_->AddBackend("web", Backend("10.0.0.11"));
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(b_->version(), 3u);
  EXPECT_EQ(b_->ListBackends("web").size(), 5u);
  ASSERT_TRUE(a_->SyncFromStore().ok());
  EXPECT_EQ(a_->version(), 3u);
  EXPECT_EQ(a_->ListBackends("web").size(), 5u);
  EXPECT_EQ(Fingerprint(*a_), Fingerprint(*b_));
  EXPECT_EQ(a_->ListBackends("web").back().backend().id(),
            b_->ListBackends("web").back().backend().id());
}

TEST_F(StoreSyncTest, SyncAdoptsAndRepublishesOnceThenIsANoOp) {
  const uint64_t gen_b = b_->generation();
  ASSERT_TRUE(a_->AddBackend("web", Backend("10.0.0.10")).ok());
  ASSERT_TRUE(b_->SyncFromStore().ok());
  EXPECT_EQ(b_->version(), 2u);
  EXPECT_EQ(b_->generation(), gen_b + 1);
  EXPECT_EQ(Fingerprint(*a_), Fingerprint(*b_));
  ASSERT_TRUE(b_->SyncFromStore().ok());
  EXPECT_EQ(b_->generation(), gen_b + 1);  // nothing new: nothing published
}

TEST_F(StoreSyncTest, StoreDownRefusesAndChangesNothing) {
  const std::string stored = Stored();
  const uint64_t gen = a_->generation();
  const v1::Config before = a_->config();
  {
    absl::MutexLock l(&shared_->mu);
    shared_->down = true;
  }
  auto added = a_->AddBackend("web", Backend("10.0.0.10"));
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_CONTAINS(added.status().message(), "mem store down");
  EXPECT_EQ(a_->generation(), gen);
  EXPECT_TRUE(MessageDifferencer::Equals(a_->config(), before));
  EXPECT_EQ(a_->ListBackends("web").size(), 3u);  // reads still served
  EXPECT_EQ(b_->SyncFromStore().code(), absl::StatusCode::kUnavailable);
  {
    absl::MutexLock l(&shared_->mu);
    shared_->down = false;
  }
  EXPECT_EQ(Stored(), stored);
  ASSERT_TRUE(a_->AddBackend("web", Backend("10.0.0.10")).ok());
  EXPECT_EQ(a_->version(), 2u);
}

TEST_F(StoreSyncTest, APeerThatAlwaysWinsGetsAbortedAndNothingChanges) {
  const uint64_t gen = a_->generation();
  {
    absl::MutexLock l(&shared_->mu);
    shared_->always_conflict = true;
  }
  auto added = a_->AddBackend("web", Backend("10.0.0.10"));
  ASSERT_FALSE(added.ok());
  EXPECT_EQ(added.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(a_->generation(), gen);
  EXPECT_EQ(a_->version(), 1u);
}

// Shared health (leader.h): the tables follow the leader's stored document,
// never the node's own checker; every node applying the same document
// publishes the same fingerprint.
TEST_F(StoreSyncTest, SharedHealthTablesFollowTheStoredDocumentOnly) {
  a_.reset();
  b_.reset();
  a_ = Make("a", /*shared_health=*/true);
  b_ = Make("b", /*shared_health=*/true);
  ASSERT_NE(a_, nullptr);
  ASSERT_NE(b_, nullptr);
  v1::HealthCheck hc;
  hc.set_kind(v1::HEALTH_CHECK_KIND_TCP);
  ASSERT_TRUE(a_->SetHealthCheck("web", hc).ok());
  ASSERT_TRUE(b_->SyncFromStore().ok());
  const std::string fp = Fingerprint(*a_);
  ASSERT_EQ(fp, Fingerprint(*b_));
  uint32_t id = 0;
  for (const v1::BackendStatus& s : a_->ListBackends("web")) {
    if (s.backend().address() == "10.0.0.2") id = s.backend().id();
  }
  ASSERT_NE(id, 0u);

  int calls = 0;
  a_->SetLocalHealthListener([&calls] { ++calls; });
  HealthReport r;
  r.backend_id = id;
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  const uint64_t ga = a_->generation();
  a_->ReportHealth(r);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(a_->generation(), ga);  // its own verdict alone publishes nothing
  EXPECT_EQ(Fingerprint(*a_), fp);
  a_->ReportHealth(r);
  EXPECT_EQ(calls, 1);  // no change, no call
  auto local = a_->GetBackendHealth(id);
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->status(), "unhealthy");  // the local view is still shown

  v1::SharedHealth doc = a_->LocalHealthView();
  ASSERT_EQ(doc.backends_size(), 1);
  EXPECT_EQ(doc.backends(0).address(), "10.0.0.2");
  doc.set_leader("a");
  doc.set_term(5);
  auto stored = DecodeSharedHealth(EncodeSharedHealth(doc), "test");
  ASSERT_TRUE(stored.ok()) << stored.status();
  const uint64_t gb = b_->generation();
  const uint64_t version = b_->version();
  a_->AdoptSharedHealth(*stored);
  b_->AdoptSharedHealth(*stored);
  EXPECT_NE(Fingerprint(*a_), fp);
  EXPECT_EQ(Fingerprint(*a_), Fingerprint(*b_));
  EXPECT_EQ(a_->generation(), ga + 1);
  EXPECT_EQ(b_->generation(), gb + 1);
  EXPECT_EQ(b_->version(), version);  // health is no config change
  auto on_b = b_->GetBackend(id);
  ASSERT_TRUE(on_b.ok());
  EXPECT_EQ(on_b->health(), v1::HEALTH_STATUS_UNHEALTHY);  // published: the leader's
  EXPECT_EQ(on_b->effective_state(), v1::BACKEND_STATE_DOWN);
  auto b_local = b_->GetBackendHealth(id);
  ASSERT_TRUE(b_local.ok());
  EXPECT_EQ(b_local->status(), "unknown");  // B's own checker said nothing

  b_->AdoptSharedHealth(*stored);  // the same document again: nothing to publish
  EXPECT_EQ(b_->generation(), gb + 1);

  // A verdict made for another address of that id counts for nothing.
  v1::SharedHealth other = *stored;
  other.mutable_backends(0)->set_address("10.9.9.9");
  b_->AdoptSharedHealth(other);
  EXPECT_EQ(Fingerprint(*b_), fp);
  EXPECT_EQ(b_->generation(), gb + 2);

  // A node starting while the document is stored publishes it in its very
  // first generation (not "everything up" until its watch delivers it).
  b_.reset();
  b_ = Make("b2", /*shared_health=*/true, *stored);
  ASSERT_NE(b_, nullptr);
  EXPECT_EQ(b_->generation(), 1u);
  EXPECT_EQ(Fingerprint(*b_), Fingerprint(*a_));
}

TEST(SharedHealthCodec, RefusesWhatLbControlplaneDidNotWrite) {
  v1::SharedHealth doc;
  doc.set_term(3);
  auto* b = doc.add_backends();
  b->set_id(1);
  b->set_address("10.0.0.1");
  b->set_status(v1::HEALTH_STATUS_UNHEALTHY);
  const std::string bytes = EncodeSharedHealth(doc);
  ASSERT_TRUE(DecodeSharedHealth(bytes, "t").ok());
  EXPECT_EQ(DecodeSharedHealth(bytes.substr(1), "t").status().code(), absl::StatusCode::kDataLoss);
  v1::SharedHealth bad = doc;
  bad.set_term(0);
  EXPECT_NE(DecodeSharedHealth(EncodeSharedHealth(bad), "t").status().message().find("term"),
            std::string::npos);
  bad = doc;
  *bad.add_backends() = doc.backends(0);
  EXPECT_NE(DecodeSharedHealth(EncodeSharedHealth(bad), "t")
                .status()
                .message()
                .find("backends[1].id: 1 repeated"),
            std::string::npos);
  bad = doc;
  bad.mutable_backends(0)->set_status(static_cast<v1::HealthStatus>(9));
  EXPECT_NE(DecodeSharedHealth(EncodeSharedHealth(bad), "t")
                .status()
                .message()
                .find("backends[0].status"),
            std::string::npos);
}

}  // namespace
}  // namespace lb
