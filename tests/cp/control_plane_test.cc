// ControlPlane (controlplane/control_plane.h): every mutation and every error
// code; a refused call leaves the published generation, the version and the
// stored bytes exactly as they were; ids and table slots stay stable; drains
// complete on Tick when the stats region (written here by a fake dataplane
// with this process's pid) shows no flows, or at the drain timeout; health
// reports flip the published state without a version bump; a restart over the
// same store and regions republishes identical rings in identical slots; a
// stuck lcore refuses publishes and is reported; a failed save rolls the
// tables back; Explain agrees with the dataplane's hash and ring index.
// PublishLatency prints the publish / api-to-lcores latencies for 10 and
// 1,000 backends.
#include "controlplane/control_plane.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/config.h"
#include "controlplane/store.h"
#include "google/protobuf/util/message_differencer.h"
#include "lib/flow_hash.h"
#include "lib/shm_region.h"

namespace lb {
namespace {

using google::protobuf::util::MessageDifferencer;

#define EXPECT_CONTAINS(haystack, needle)                          \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) \
      << "\"" << std::string(haystack) << "\" does not contain \"" << (needle) << "\""

int FindPoolIn(const v1::Config& c, const std::string& name) {
  for (int i = 0; i < c.pools_size(); ++i) {
    if (c.pools(i).name() == name) return i;
  }
  return -1;
}

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

v1::Config ParseOrDie(const std::string& text) {
  auto c = ParseConfigText(text, "test");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : v1::Config();
}

// Three backends in pool "web" behind one TCP VIP; ids are assigned by the
// control plane in (pool, address) order: 10.0.0.1 -> 1, .2 -> 2, .3 -> 3.
constexpr char kBase[] = R"pb(
  node { tunnel_source_ipv4: "192.0.2.1" tunnel_source_ipv6: "2001:db8::ffff" }
  tables { ring_size: 251 }
  pools {
    name: "web"
    backends { address: "10.0.0.3" port: 80 weight: 2 }
    backends { address: "10.0.0.1" port: 80 }
    backends { address: "10.0.0.2" port: 80 }
  }
  vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "web" }
)pb";

// A dataplane stand-in: a stats region created with this process's pid,
// `lcores` online lcores whose heartbeat and observed generation a thread
// keeps current (every 1 ms, or spinning), and per-backend counters the test
// sets. Destroying it is a clean dataplane exit (writer pid 0).
class FakeDataplane {
 public:
  FakeDataplane(const std::string& stats_path, const std::string& table_path, uint32_t lcores,
                uint32_t max_backends, bool spin = false)
      : table_path_(table_path), spin_(spin) {
    StatsCapacities caps;
    caps.max_lcores = lcores;
    caps.max_vips = 8;
    caps.max_backends = max_backends;
    auto r = StatsRegion::Create(stats_path, caps);
    EXPECT_TRUE(r.ok()) << r.status();
    region_.emplace(*std::move(r));
    for (uint32_t i = 0; i < lcores; ++i) {
      LcoreStats& l = region_->Lcore(i);
      l.lcore_id = i + 1;
      l.heartbeat_ns.store(MonotonicNs());
      l.state.store(static_cast<uint32_t>(LcoreState::kOnline), std::memory_order_seq_cst);
      l.observed_generation.store(0, std::memory_order_seq_cst);
    }
    region_->control().num_lcores.store(lcores, std::memory_order_release);
    Step();  // observe the current generation before anyone publishes
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        if (!paused_.load()) Step();
        if (spin_) {
          sched_yield();
        } else {
          usleep(1000);
        }
      }
    });
  }
  ~FakeDataplane() {
    stop_.store(true);
    thread_.join();
    region_->control().writer_pid.store(0, std::memory_order_release);
  }

  // A paused dataplane neither observes generations nor beats: its lcores
  // become stuck.
  void Pause(bool paused) { paused_.store(paused); }
  BackendCounters& Backend(uint32_t lcore, uint32_t slot) { return region_->Backends(lcore)[slot]; }
  LcoreStats& Lcore(uint32_t i) { return region_->Lcore(i); }

 private:
  void Step() {
    if (!reader_.has_value()) {
      auto r = TableReader::Attach(table_path_);
      if (r.ok()) reader_.emplace(*std::move(r));
    }
    const uint64_t g = reader_.has_value() ? reader_->generation() : 0;
    const uint32_t n = region_->control().num_lcores.load();
    for (uint32_t i = 0; i < n; ++i) {
      region_->Lcore(i).heartbeat_ns.store(MonotonicNs(), std::memory_order_relaxed);
      region_->Lcore(i).observed_generation.store(g, std::memory_order_release);
    }
  }

  std::string table_path_;
  bool spin_;
  std::optional<StatsRegion> region_;
  std::optional<TableReader> reader_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::thread thread_;
};

// Records every event delivered to a subscriber.
class EventLog {
 public:
  explicit EventLog(ControlPlane* cp) : cp_(cp) {
    token_ = cp->Subscribe([this](const v1::Event& e) {
      absl::MutexLock l(&mu_);
      events_.push_back(e);
    });
  }
  ~EventLog() { cp_->Unsubscribe(token_); }
  std::vector<v1::Event> Take(const std::string& kind = "") {
    absl::MutexLock l(&mu_);
    std::vector<v1::Event> out;
    for (const v1::Event& e : events_) {
      if (kind.empty() || e.kind() == kind) out.push_back(e);
    }
    events_.clear();
    return out;
  }

 private:
  ControlPlane* cp_;
  uint64_t token_ = 0;
  absl::Mutex mu_;
  std::vector<v1::Event> events_;
};

class ControlPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/dev/shm/lb-cp-core-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(system(("rm -rf '" + dir_ + "' && mkdir -p '" + dir_ + "'").c_str()), 0);
    tables_ = dir_ + "/tables";
    stats_ = dir_ + "/stats";
    state_dir_ = dir_ + "/state";
    state_file_ = state_dir_ + "/state.textproto";
    caps_.max_vips = 8;
    caps_.max_backends = 64;
    caps_.max_members = 256;
    caps_.max_ring_size = 257;
  }
  void TearDown() override {
    dataplane_.reset();
    reader_.reset();
    ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
  }

  ControlPlaneOptions Options(std::optional<v1::Config> bootstrap) {
    ControlPlaneOptions o;
    o.publisher.table_path = tables_;
    o.publisher.stats_path = stats_;
    o.publisher.caps = caps_;
    o.publisher.reclaim_timeout_ns = 300'000'000;
    o.publisher.stuck_after_ns = 100'000'000;
    o.bootstrap = std::move(bootstrap);
    return o;
  }

  std::unique_ptr<ControlPlane> Make(std::optional<v1::Config> bootstrap = ParseOrDie(kBase)) {
    auto store = NewFileStore(state_dir_);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    auto cp = ControlPlane::Create(Options(std::move(bootstrap)), *std::move(store));
    EXPECT_TRUE(cp.ok()) << cp.status();
    return cp.ok() ? *std::move(cp) : nullptr;
  }

  void StartDataplane(uint32_t lcores = 2) {
    dataplane_ = std::make_unique<FakeDataplane>(stats_, tables_, lcores, caps_.max_backends);
  }

  SlotView Published() {
    if (!reader_.has_value()) {
      auto r = TableReader::Attach(tables_);
      EXPECT_TRUE(r.ok()) << r.status();
      reader_.emplace(*std::move(r));
    }
    return reader_->Slot(reader_->generation());
  }

  // The published entry of backend `id` (nullptr when absent); its slot.
  const BackendEntry* PublishedBackend(uint32_t id, uint32_t* slot = nullptr) {
    SlotView s = Published();
    for (uint32_t i = 1; i < s.header->num_backends; ++i) {
      if (s.backends[i].state != static_cast<uint8_t>(BackendState::kUnused) &&
          s.backends[i].backend_id == id) {
        if (slot != nullptr) *slot = i;
        return &s.backends[i];
      }
    }
    return nullptr;
  }

  uint32_t SlotOf(uint32_t id) {
    uint32_t slot = 0;
    EXPECT_NE(PublishedBackend(id, &slot), nullptr) << "backend " << id << " not published";
    return slot;
  }

  // A refused call: the code, a message naming `needle`, and nothing changed
  // (published generation, version, stored bytes, the config).
  void ExpectRefused(ControlPlane& cp, absl::StatusCode code, const std::string& needle,
                     const std::function<absl::Status()>& call) {
    const uint64_t generation = cp.generation();
    const uint64_t table_generation = Published().header->generation;
    const uint64_t version = cp.version();
    const std::string bytes = ReadFile(state_file_);
    const v1::Config config = cp.config();
    const absl::Status st = call();
    EXPECT_EQ(st.code(), code) << st;
    EXPECT_CONTAINS(std::string(st.message()), needle);
    EXPECT_EQ(cp.generation(), generation) << st;
    EXPECT_EQ(Published().header->generation, table_generation) << st;
    EXPECT_EQ(cp.version(), version) << st;
    EXPECT_TRUE(ReadFile(state_file_) == bytes) << "stored state changed by a refused call: " << st;
    EXPECT_TRUE(MessageDifferencer::Equals(cp.config(), config)) << st;
  }

  // The stored file, parsed.
  v1::Config Stored() {
    auto c = ParseConfigText(ReadFile(state_file_), state_file_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : v1::Config();
  }

  v1::Backend NewBackend(const std::string& address, uint32_t port = 80) {
    v1::Backend b;
    b.set_address(address);
    b.set_port(port);
    return b;
  }

  std::string dir_, tables_, stats_, state_dir_, state_file_;
  TableCapacities caps_;
  std::unique_ptr<FakeDataplane> dataplane_;
  std::optional<TableReader> reader_;
};

// ------------------------------------------------------------- start-up ---

TEST_F(ControlPlaneTest, BootstrapAssignsIdsStoresVersionOneAndPublishes) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(cp->version(), 1u);
  EXPECT_EQ(cp->generation(), 1u);
  const v1::Config c = cp->config();
  ASSERT_EQ(c.pools(0).backends_size(), 3);
  // (pool, address) order, whatever the file order.
  EXPECT_EQ(c.pools(0).backends(0).address(), "10.0.0.3");
  EXPECT_EQ(c.pools(0).backends(0).id(), 3u);
  EXPECT_EQ(c.pools(0).backends(1).id(), 1u);
  EXPECT_EQ(c.pools(0).backends(2).id(), 2u);
  EXPECT_EQ(c.vips(0).id(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(Stored(), c)) << ReadFile(state_file_);
  EXPECT_EQ(Stored().version(), 1u);
  for (uint32_t id : {1u, 2u, 3u}) {
    const BackendEntry* b = PublishedBackend(id);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->state, static_cast<uint8_t>(BackendState::kActive));
  }
  EXPECT_EQ(PublishedBackend(3)->weight, 2u);
  const v1::TablesInfo t = cp->GetTables();
  EXPECT_EQ(t.generation(), 1u);
  EXPECT_EQ(t.config_version(), 1u);
  ASSERT_EQ(t.vips_size(), 1);
  EXPECT_EQ(t.vips(0).fingerprint(), absl::StrFormat("%016x", Published().vips[0].fingerprint));
  EXPECT_EQ(t.vips(0).active_members(), 3u);
  EXPECT_GT(t.last_publish_ms(), 0);
}

TEST_F(ControlPlaneTest, EmptyStoreWithoutBootstrapStartsEmptyAndStoresOnFirstChange) {
  caps_.max_ring_size = kDefaultRingSize;  // the config leaves tables.ring_size at its default
  auto cp = Make(std::nullopt);
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(cp->version(), 0u);
  EXPECT_EQ(cp->generation(), 1u);
  EXPECT_NE(access(state_file_.c_str(), F_OK), 0) << "nothing to store yet";
  // The classic API's first call works on an empty store: the default pool
  // appears, no VIP and no node settings needed (the tunnel source is then
  // the dataplane's own address).
  auto added = cp->AddBackend("", NewBackend("10.9.0.1", 8080));
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->pool(), kDefaultPool);
  EXPECT_EQ(added->backend().id(), 1u);
  EXPECT_EQ(cp->version(), 1u);
  EXPECT_EQ(cp->generation(), 2u);
  EXPECT_EQ(Stored().pools(0).name(), kDefaultPool);
  EXPECT_EQ(Stored().pools(0).backends(0).id(), 1u);
  EXPECT_FALSE(Stored().has_node());
  ASSERT_NE(PublishedBackend(1), nullptr);
  EXPECT_EQ(Published().header->node.tunnel_src_v4[0], 0) << "unset: the dataplane's --ipv4";
  auto v6 = cp->AddBackend("", NewBackend("2001:db8::9", 8080));
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->backend().id(), 2u);

  // The node settings are settable through the API, canonicalised, stored
  // and published; a refused value names the field and changes nothing.
  v1::Node node;
  node.set_tunnel_source_ipv4("192.0.2.1");
  node.set_tunnel_source_ipv6("2001:DB8::1");
  auto set = cp->SetNode(node);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->tunnel_source_ipv6(), "2001:db8::1");
  EXPECT_EQ(Stored().node().tunnel_source_ipv4(), "192.0.2.1");
  EXPECT_EQ(Published().header->node.tunnel_src_v4[0], 192);
  const uint64_t version = cp->version();
  ASSERT_TRUE(cp->SetNode(*set).ok()) << "the same settings again";
  EXPECT_EQ(cp->version(), version) << "no change, no version";
  for (const std::string& bad : {std::string("224.0.0.1"), std::string("127.0.0.1"),
                                 std::string("2001:db8::1"), std::string("10.0.0.1\0x", 10)}) {
    v1::Node n = *set;
    n.set_tunnel_source_ipv4(bad);
    ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "node.tunnel_source_ipv4",
                  [&] { return cp->SetNode(n).status(); });
  }
  v1::Node cleared;
  ASSERT_TRUE(cp->SetNode(cleared).ok());
  EXPECT_EQ(Published().header->node.tunnel_src_v4[0], 0);
}

TEST_F(ControlPlaneTest, StoredStateWinsOverBootstrapAndBadStoredStateIsRefused) {
  {
    auto cp = Make();
    ASSERT_NE(cp, nullptr);
    ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  }
  {
    // A different bootstrap is ignored: the store is not empty.
    v1::Config other = ParseOrDie(kBase);
    other.mutable_pools(0)->mutable_backends()->DeleteSubrange(0, 2);
    auto cp = Make(other);
    ASSERT_NE(cp, nullptr);
    EXPECT_EQ(cp->version(), 2u);
    EXPECT_EQ(cp->config().pools(0).backends_size(), 4);
  }
  // A stored state that no longer validates (saved intact by the store, as a
  // build with other rules would have): refused, naming the field.
  const std::string good = ReadFile(state_file_);
  {
    v1::Config bad = Stored();
    bad.mutable_vips(0)->set_pool("gone");
    auto store = NewFileStore(state_dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(bad).ok());
  }
  {
    auto store = NewFileStore(state_dir_);
    ASSERT_TRUE(store.ok());
    auto cp = ControlPlane::Create(Options(ParseOrDie(kBase)), *std::move(store));
    ASSERT_FALSE(cp.ok());
    EXPECT_EQ(cp.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_CONTAINS(std::string(cp.status().message()), "vips[0].pool");
  }
  // A corrupt file: DataLoss naming the file; never replaced by the bootstrap.
  WriteFile(state_file_, good.substr(0, good.size() / 2));
  {
    auto store = NewFileStore(state_dir_);
    ASSERT_TRUE(store.ok());
    auto cp = ControlPlane::Create(Options(ParseOrDie(kBase)), *std::move(store));
    ASSERT_FALSE(cp.ok());
    EXPECT_EQ(cp.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_CONTAINS(std::string(cp.status().message()), state_file_);
    EXPECT_EQ(ReadFile(state_file_), good.substr(0, good.size() / 2));
  }
}

// ---------------------------------------------------------------- VIPs ---

TEST_F(ControlPlaneTest, VipsCreateDeleteAndEveryRefusal) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  v1::Vip v;
  v.set_address("198.51.100.2");
  v.set_protocol(v1::PROTOCOL_UDP);
  v.set_port(53);
  v.set_pool("web");
  v.set_fragment_tolerant(true);
  auto created = cp->CreateVip(v);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->id(), 2u);
  EXPECT_EQ(cp->version(), 2u);
  EXPECT_EQ(cp->generation(), 2u);
  EXPECT_EQ(Stored().vips(1).id(), 2u);
  EXPECT_EQ(Published().header->num_vips, 2u);

  // Duplicate (address, protocol, port).
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "198.51.100.2:53/udp already exists",
                [&] { return cp->CreateVip(v).status(); });
  v1::Vip id_taken = v;
  id_taken.set_port(54);
  id_taken.set_id(1);
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "vip.id: 1",
                [&] { return cp->CreateVip(id_taken).status(); });
  v1::Vip no_pool = v;
  no_pool.set_port(55);
  no_pool.set_pool("nope");
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "vip.pool: no pool named \"nope\"",
                [&] { return cp->CreateVip(no_pool).status(); });
  v1::Vip bad = v;
  bad.set_address("198.51.100.300");
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "vip.address: \"198.51.100.300\"",
                [&] { return cp->CreateVip(bad).status(); });
  v1::Vip no_proto = v;
  no_proto.set_protocol(v1::PROTOCOL_UNSPECIFIED);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "vip.protocol: required",
                [&] { return cp->CreateVip(no_proto).status(); });
  v1::Vip big_port = v;
  big_port.set_port(70000);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "vip.port: 70000",
                [&] { return cp->CreateVip(big_port).status(); });
  // Capacity: max_vips = 8.
  for (uint32_t port = 1; port <= 6; ++port) {
    v1::Vip more = v;
    more.set_port(1000 + port);
    ASSERT_TRUE(cp->CreateVip(more).ok()) << port;
  }
  v1::Vip ninth = v;
  ninth.set_port(2000);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "vip: VIP number 9 exceeds",
                [&] { return cp->CreateVip(ninth).status(); });

  ExpectRefused(*cp, absl::StatusCode::kNotFound, "id: no VIP with id 99",
                [&] { return cp->DeleteVip(99); });
  const uint64_t g = cp->generation();
  ASSERT_TRUE(cp->DeleteVip(2).ok());
  EXPECT_EQ(cp->generation(), g + 1);
  EXPECT_EQ(cp->config().vips_size(), 7);
  // The freed id is the lowest free one again.
  auto again = cp->CreateVip(v);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), 2u);
}

TEST_F(ControlPlaneTest, VipWithoutPoolUsesTheDefaultPool) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  v1::Vip v;
  v.set_address("2001:DB8::10");
  v.set_protocol(v1::PROTOCOL_TCP);
  v.set_port(443);
  auto created = cp->CreateVip(v);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->pool(), kDefaultPool);
  EXPECT_EQ(created->address(), "2001:db8::10");  // canonical
  EXPECT_EQ(cp->config().pools(1).name(), kDefaultPool);
}

// --------------------------------------------------------------- pools ---

TEST_F(ControlPlaneTest, PoolsCreateDeleteSettingsAndEveryRefusal) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  v1::Pool p;
  p.set_name("api");
  p.set_algorithm(v1::ALGORITHM_ROUND_ROBIN);
  *p.add_backends() = NewBackend("10.1.0.1", 8080);
  *p.add_backends() = NewBackend("10.0.0.1", 8080);  // same address as in "web": allowed
  auto created = cp->CreatePool(p);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->backends(0).id(), 4u);
  EXPECT_EQ(created->backends(1).id(), 5u);
  EXPECT_EQ(cp->version(), 2u);

  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "pool.name: pool \"api\" already exists",
                [&] { return cp->CreatePool(p).status(); });
  v1::Pool unnamed;
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "pool.name: must not be empty",
                [&] { return cp->CreatePool(unnamed).status(); });
  v1::Pool bad_name;
  bad_name.set_name("a b");
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument,
                "pool.name:", [&] { return cp->CreatePool(bad_name).status(); });
  v1::Pool bad_hc;
  bad_hc.set_name("hc");
  bad_hc.mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
  bad_hc.mutable_health_check()->set_interval_ms(5);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "pool.health_check.interval_ms: 5",
                [&] { return cp->CreatePool(bad_hc).status(); });
  v1::Pool taken_id;
  taken_id.set_name("t");
  *taken_id.add_backends() = NewBackend("10.2.0.1");
  taken_id.mutable_backends(0)->set_id(2);
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "pool.backends[0].id: 2",
                [&] { return cp->CreatePool(taken_id).status(); });

  // Algorithm and sticky settings; "" = the default pool, created on use.
  auto set = cp->SetPoolAlgorithm("web", v1::ALGORITHM_IP_HASH, true, 600);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->algorithm(), v1::ALGORITHM_IP_HASH);
  EXPECT_TRUE(set->sticky_sessions());
  EXPECT_EQ(set->sticky_ttl_seconds(), 600u);
  EXPECT_EQ(Published().vips[0].algorithm, static_cast<uint8_t>(Algorithm::kIpHash));
  EXPECT_TRUE(Stored().pools(0).sticky_sessions());
  auto def = cp->SetPoolAlgorithm("", v1::ALGORITHM_LEAST_CONNECTIONS, false, 0);
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->name(), kDefaultPool);
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "pool: no pool named \"nope\"", [&] {
    return cp->SetPoolAlgorithm("nope", v1::ALGORITHM_MAGLEV, false, 0).status();
  });
  ExpectRefused(
      *cp, absl::StatusCode::kInvalidArgument, "pool.algorithm: unknown algorithm 99", [&] {
        return cp->SetPoolAlgorithm("web", static_cast<v1::Algorithm>(99), false, 0).status();
      });
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "pool.sticky_ttl_seconds: 99999999", [&] {
    return cp->SetPoolAlgorithm("web", v1::ALGORITHM_MAGLEV, true, 99999999).status();
  });

  // Health checks: every bound names its field.
  v1::HealthCheck hc;
  hc.set_kind(v1::HEALTH_CHECK_KIND_HTTP);
  hc.set_http_path("/ready");
  hc.set_interval_ms(1000);
  auto with_hc = cp->SetHealthCheck("web", hc);
  ASSERT_TRUE(with_hc.ok()) << with_hc.status();
  EXPECT_EQ(Stored().pools(0).health_check().http_path(), "/ready");
  struct Bad {
    std::function<void(v1::HealthCheck*)> edit;
    std::string needle;
  };
  const std::vector<Bad> bads = {
      {[](v1::HealthCheck* h) { h->set_http_path("ready"); }, "pool.health_check.http_path"},
      {[](v1::HealthCheck* h) { h->set_http_path("/a b"); }, "pool.health_check.http_path"},
      {[](v1::HealthCheck* h) { h->set_http_host("a\r\nb"); }, "pool.health_check.http_host"},
      {[](v1::HealthCheck* h) { h->set_healthy_threshold(101); },
       "pool.health_check.healthy_threshold: 101"},
      {[](v1::HealthCheck* h) { h->set_unhealthy_threshold(1000); },
       "pool.health_check.unhealthy_threshold: 1000"},
      {[](v1::HealthCheck* h) { h->set_interval_ms(4'000'000); },
       "pool.health_check.interval_ms: 4000000"},
      {[](v1::HealthCheck* h) { h->set_timeout_ms(700'000); },
       "pool.health_check.timeout_ms: 700000"},
      {[](v1::HealthCheck* h) { h->set_http_max_body_bytes(2u << 20); },
       "pool.health_check.http_max_body_bytes"},
      {[](v1::HealthCheck* h) { h->set_kind(v1::HEALTH_CHECK_KIND_SCRIPT); },
       "pool.health_check.script: required"},
      {[](v1::HealthCheck* h) {
         h->set_kind(v1::HEALTH_CHECK_KIND_SCRIPT);
         h->add_script("/bin/true");
       },
       "pool.health_check.script[0]: \"/bin/true\" is not a script name"},
      {[](v1::HealthCheck* h) { h->set_kind(static_cast<v1::HealthCheckKind>(42)); },
       "pool.health_check.kind: unknown kind 42"},
  };
  for (const Bad& b : bads) {
    v1::HealthCheck h = hc;
    b.edit(&h);
    ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, b.needle,
                  [&] { return cp->SetHealthCheck("web", h).status(); });
  }
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "pool: no pool named \"x\"",
                [&] { return cp->SetHealthCheck("x", hc).status(); });
  v1::HealthCheck script;
  script.set_kind(v1::HEALTH_CHECK_KIND_SCRIPT);
  script.add_script("check_api");  // a file in --health_script_dir
  script.add_script("--strict");
  EXPECT_TRUE(cp->SetHealthCheck("api", script).ok());

  // Delete: a pool a VIP uses is refused; unknown is NotFound.
  ExpectRefused(*cp, absl::StatusCode::kFailedPrecondition, "used by VIP 1",
                [&] { return cp->DeletePool("web"); });
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "name: no pool named \"zz\"",
                [&] { return cp->DeletePool("zz"); });
  ASSERT_TRUE(cp->DeletePool("api").ok());
  EXPECT_EQ(FindPoolIn(cp->config(), "api"), -1);
  EXPECT_EQ(PublishedBackend(4), nullptr);
}

// ------------------------------------------------------------ backends ---

TEST_F(ControlPlaneTest, AddBackendAssignsLowestFreeIdAndRefusesWithTheRightCode) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  auto added = cp->AddBackend("web", NewBackend("10.0.0.4", 8080));
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->backend().id(), 4u);
  EXPECT_EQ(added->pool(), "web");
  EXPECT_EQ(added->health(), v1::HEALTH_STATUS_UNKNOWN);
  EXPECT_EQ(added->effective_state(), v1::BACKEND_STATE_ACTIVE);
  EXPECT_EQ(Stored().pools(0).backends(3).id(), 4u);
  ASSERT_NE(PublishedBackend(4), nullptr);

  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "10.0.0.4:8080 already exists",
                [&] { return cp->AddBackend("web", NewBackend("10.0.0.4", 8080)).status(); });
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "one backend per address",
                [&] { return cp->AddBackend("web", NewBackend("10.0.0.4", 9090)).status(); });
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "pool: no pool named \"nope\"",
                [&] { return cp->AddBackend("nope", NewBackend("10.0.0.5")).status(); });
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "backend.address: \"10.0.0.256\"",
                [&] { return cp->AddBackend("web", NewBackend("10.0.0.256")).status(); });
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "backend.address: required",
                [&] { return cp->AddBackend("web", NewBackend("")).status(); });
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "backend.port: 70000",
                [&] { return cp->AddBackend("web", NewBackend("10.0.0.5", 70000)).status(); });
  v1::Backend heavy = NewBackend("10.0.0.5");
  heavy.set_weight(70000);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "backend.weight: 70000",
                [&] { return cp->AddBackend("web", heavy).status(); });
  v1::Backend bad_path = NewBackend("10.0.0.5");
  bad_path.set_health_check_path("health");
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "backend.health_check_path",
                [&] { return cp->AddBackend("web", bad_path).status(); });
  v1::Backend leaving = NewBackend("10.0.0.5");
  leaving.set_remove_at_unix_ms(1);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "backend.remove_at_unix_ms",
                [&] { return cp->AddBackend("web", leaving).status(); });
  v1::Backend taken = NewBackend("10.0.0.5");
  taken.set_id(3);
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "backend.id: 3 is already used by 10.0.0.3",
                [&] { return cp->AddBackend("web", taken).status(); });
  // Addresses that cannot be a backend: an embedded NUL is not cut off, and
  // loopback, link-local, multicast and broadcast are refused by name.
  const std::pair<std::string, const char*> not_unicast[] = {
      {std::string("10.9.0.1\0x", 10), "backend.address: \"10.9.0.1\\x00x\" is not an IPv4"},
      {"224.0.0.5", "backend.address: 224.0.0.5 is a multicast address"},
      {"255.255.255.255", "backend.address: 255.255.255.255 is the broadcast address"},
      {"127.0.0.1", "backend.address: 127.0.0.1 is a loopback address"},
      {"169.254.1.1", "backend.address: 169.254.1.1 is a link-local address"},
      {"::1", "backend.address: ::1 is a loopback address"},
      {"fe80::1", "backend.address: fe80::1 is a link-local address"},
      {"ff02::1", "backend.address: ff02::1 is a multicast address"},
      {"::ffff:10.0.0.1", "backend.address: ::ffff:10.0.0.1 is an IPv4-mapped address"},
  };
  for (const auto& [address, needle] : not_unicast) {
    ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, needle,
                  [&] { return cp->AddBackend("web", NewBackend(address)).status(); });
  }
  // Error messages quote a bounded prefix of what was sent.
  const absl::Status long_address =
      cp->AddBackend("web", NewBackend(std::string(100000, 'a'))).status();
  EXPECT_EQ(long_address.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(long_address.message().size(), 200u) << long_address.message().substr(0, 300);

  // A DSR pool holds one backend per address and says why; a proxy pool
  // takes several ports of one address (its identity is address:port).
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "tunnelled packets keep the VIP's",
                [&] { return cp->AddBackend("web", NewBackend("10.0.0.1", 8081)).status(); });
  v1::Pool proxy;
  proxy.set_name("app");
  proxy.set_kind(v1::POOL_KIND_PROXY);
  ASSERT_TRUE(cp->CreatePool(proxy).ok());
  ASSERT_TRUE(cp->AddBackend("app", NewBackend("10.0.0.1", 8080)).ok());
  ASSERT_TRUE(cp->AddBackend("app", NewBackend("10.0.0.1", 8081)).ok());
  ExpectRefused(*cp, absl::StatusCode::kAlreadyExists, "backend: 10.0.0.1:8081 already exists",
                [&] { return cp->AddBackend("app", NewBackend("10.0.0.1", 8081)).status(); });
  v1::Vip on_proxy;
  on_proxy.set_address("198.51.100.77");
  on_proxy.set_protocol(v1::PROTOCOL_TCP);
  on_proxy.set_port(80);
  on_proxy.set_pool("app");
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "vip.pool: pool \"app\" is a proxy pool",
                [&] { return cp->CreateVip(on_proxy).status(); });
  ASSERT_TRUE(cp->DeletePool("app").ok());

  // Explicit ids are kept; the next assigned id is the lowest free one.
  v1::Backend explicit_id = NewBackend("10.0.0.9");
  explicit_id.set_id(9);
  auto e = cp->AddBackend("web", explicit_id);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->backend().id(), 9u);
  auto next = cp->AddBackend("web", NewBackend("10.0.0.10"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->backend().id(), 5u);

  // Capacity: 63 backends (64 slots, slot 0 reserved).
  int added_more = 0;
  absl::Status last;
  for (int i = 0; i < 80 && last.ok(); ++i) {
    last = cp->AddBackend("web", NewBackend(absl::StrCat("10.7.0.", i + 1))).status();
    if (last.ok()) ++added_more;
  }
  EXPECT_EQ(added_more, 63 - 6);
  EXPECT_EQ(last.code(), absl::StatusCode::kInvalidArgument) << last;
  EXPECT_CONTAINS(std::string(last.message()), "exceeds the table capacity");
}

TEST_F(ControlPlaneTest, UpdateAndDrainBackend) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  v1::UpdateBackendRequest req;
  req.set_id(2);
  req.set_weight(7);
  req.set_max_connections(100);
  auto updated = cp->UpdateBackend(req);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->backend().weight(), 7u);
  EXPECT_EQ(PublishedBackend(2)->weight, 7u);
  EXPECT_EQ(PublishedBackend(2)->max_connections, 100u);
  EXPECT_EQ(cp->version(), 2u);

  v1::UpdateBackendRequest unknown;
  unknown.set_id(77);
  unknown.set_weight(1);
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "id: no backend with id 77",
                [&] { return cp->UpdateBackend(unknown).status(); });
  v1::UpdateBackendRequest heavy;
  heavy.set_id(2);
  heavy.set_weight(70000);
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "weight: 70000 out of range",
                [&] { return cp->UpdateBackend(heavy).status(); });
  v1::UpdateBackendRequest bad_state;
  bad_state.set_id(2);
  bad_state.set_state(static_cast<v1::BackendState>(9));
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "state: unknown state 9",
                [&] { return cp->UpdateBackend(bad_state).status(); });

  // Nothing to change: no transaction.
  v1::UpdateBackendRequest same;
  same.set_id(2);
  same.set_weight(7);
  const uint64_t g = cp->generation();
  ASSERT_TRUE(cp->UpdateBackend(same).ok());
  EXPECT_EQ(cp->generation(), g);
  EXPECT_EQ(cp->version(), 2u);

  // Weight 0 publishes as draining (the table keeps ACTIVE for weight >= 1).
  v1::UpdateBackendRequest zero;
  zero.set_id(1);
  zero.set_weight(0);
  auto z = cp->UpdateBackend(zero);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->effective_state(), v1::BACKEND_STATE_DRAINING);
  EXPECT_EQ(PublishedBackend(1)->state, static_cast<uint8_t>(BackendState::kDraining));

  auto drained = cp->DrainBackend(3);
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->backend().state(), v1::BACKEND_STATE_DRAINING);
  EXPECT_EQ(PublishedBackend(3)->state, static_cast<uint8_t>(BackendState::kDraining));
  EXPECT_EQ(Published().vips[0].member_count, 1u);  // only backend 2 takes new flows
  const uint64_t v = cp->version();
  ASSERT_TRUE(cp->DrainBackend(3).ok());  // idempotent
  EXPECT_EQ(cp->version(), v);
  ExpectRefused(*cp, absl::StatusCode::kNotFound, "id: no backend with id 12",
                [&] { return cp->DrainBackend(12).status(); });

  v1::UpdateBackendRequest back;
  back.set_id(3);
  back.set_state(v1::BACKEND_STATE_ACTIVE);
  ASSERT_TRUE(cp->UpdateBackend(back).ok());
  EXPECT_EQ(PublishedBackend(3)->state, static_cast<uint8_t>(BackendState::kActive));
}

TEST_F(ControlPlaneTest, RemoveBackendDrainsWhileFlowsLiveThenLeavesOnTick) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  StartDataplane(2);
  EventLog log(cp.get());
  const uint32_t slot2 = SlotOf(2);
  const uint32_t slot1 = SlotOf(1), slot3 = SlotOf(3);
  const uint32_t incarnation1 = PublishedBackend(1)->incarnation;
  dataplane_->Backend(0, slot2).active_flows.store(5);
  dataplane_->Backend(1, slot2).active_flows.store(2);

  ExpectRefused(*cp, absl::StatusCode::kNotFound, "id: no backend with id 42",
                [&] { return cp->RemoveBackend(42).status(); });
  const uint64_t before_ms = RealtimeNs() / 1'000'000;
  auto removed = cp->RemoveBackend(2);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->id(), 2u);
  EXPECT_EQ(removed->drained_connections(), 7u);
  EXPECT_EQ(PublishedBackend(2)->state, static_cast<uint8_t>(BackendState::kDraining));
  const v1::Backend stored = Stored().pools(0).backends(2);
  ASSERT_EQ(stored.id(), 2u);
  EXPECT_EQ(stored.state(), v1::BACKEND_STATE_DRAINING);
  EXPECT_GE(stored.remove_at_unix_ms(), before_ms + 30'000);
  EXPECT_LE(stored.remove_at_unix_ms(), RealtimeNs() / 1'000'000 + 30'000);
  EXPECT_EQ(cp->GetBackend(2)->active_connections(), 7u);

  // Its state is fixed while it leaves; a second remove changes nothing.
  v1::UpdateBackendRequest revive;
  revive.set_id(2);
  revive.set_state(v1::BACKEND_STATE_ACTIVE);
  ExpectRefused(*cp, absl::StatusCode::kFailedPrecondition, "is being removed",
                [&] { return cp->UpdateBackend(revive).status(); });
  const uint64_t version = cp->version();
  auto again = cp->RemoveBackend(2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->drained_connections(), 7u);
  EXPECT_EQ(cp->version(), version);

  // Flows still live: Tick keeps it.
  cp->Tick();
  EXPECT_NE(PublishedBackend(2), nullptr);
  EXPECT_EQ(cp->version(), version);
  dataplane_->Backend(0, slot2).active_flows.store(0);
  cp->Tick();
  EXPECT_NE(PublishedBackend(2), nullptr);
  dataplane_->Backend(1, slot2).active_flows.store(0);
  const uint64_t g = cp->generation();
  cp->Tick();
  EXPECT_EQ(PublishedBackend(2), nullptr);
  EXPECT_EQ(cp->version(), version + 1);
  EXPECT_EQ(cp->generation(), g + 1);
  EXPECT_EQ(Stored().pools(0).backends_size(), 2);
  EXPECT_EQ(cp->GetBackend(2).status().code(), absl::StatusCode::kNotFound);
  auto gone = log.Take("removed");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].backend_id(), 2u);
  EXPECT_CONTAINS(gone[0].message(), "no flows left");
  // Everyone else kept slot and incarnation; the freed id is reused.
  EXPECT_EQ(SlotOf(1), slot1);
  EXPECT_EQ(SlotOf(3), slot3);
  EXPECT_EQ(PublishedBackend(1)->incarnation, incarnation1);
  auto added = cp->AddBackend("web", NewBackend("10.0.0.8"));
  ASSERT_TRUE(added.ok());
  EXPECT_EQ(added->backend().id(), 2u);
  uint32_t new_slot = 0;
  const BackendEntry* e = PublishedBackend(2, &new_slot);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(new_slot, slot2);  // lowest free slot, next incarnation
  EXPECT_GT(e->incarnation, 1u);
}

TEST_F(ControlPlaneTest, RemoveBackendLeavesAtTheDrainTimeoutWithFlowsLeft) {
  v1::Config base = ParseOrDie(kBase);
  base.mutable_pools(0)->set_drain_timeout_seconds(1);
  auto cp = Make(base);
  ASSERT_NE(cp, nullptr);
  StartDataplane(1);
  EventLog log(cp.get());
  dataplane_->Backend(0, SlotOf(3)).active_flows.store(3);
  auto removed = cp->RemoveBackend(3);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->drained_connections(), 3u);
  cp->Tick();
  EXPECT_NE(PublishedBackend(3), nullptr);
  usleep(1'100'000);
  cp->Tick();
  EXPECT_EQ(PublishedBackend(3), nullptr);
  auto gone = log.Take("removed");
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_CONTAINS(gone[0].message(), "drain timeout with 3 flows left");
}

TEST_F(ControlPlaneTest, WithoutADataplaneARemovedBackendLeavesAtTheNextTick) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  auto removed = cp->RemoveBackend(1);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->drained_connections(), 0u);
  EXPECT_NE(PublishedBackend(1), nullptr);
  cp->Tick();
  EXPECT_EQ(PublishedBackend(1), nullptr);
  EXPECT_EQ(cp->version(), 3u);
}

TEST_F(ControlPlaneTest, ADeadDataplanesGaugesDoNotHoldADrain) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  StartDataplane(1);
  dataplane_->Backend(0, SlotOf(1)).active_flows.store(9);
  EXPECT_EQ(cp->GetBackend(1)->active_connections(), 9u);
  dataplane_.reset();  // clean exit: writer pid 0
  EXPECT_EQ(cp->GetBackend(1)->active_connections(), 0u);
  ASSERT_EQ(cp->RemoveBackend(1)->drained_connections(), 0u);
  cp->Tick();
  EXPECT_EQ(PublishedBackend(1), nullptr);
}

// -------------------------------------------------------------- health ---

TEST_F(ControlPlaneTest, HealthFlipsThePublishedStateWithoutAVersionBump) {
  v1::Config base = ParseOrDie(kBase);
  base.mutable_pools(0)->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
  v1::Pool* other = base.add_pools();
  other->set_name("zz-unchecked");
  *other->add_backends() = NewBackend("10.5.0.1");
  auto cp = Make(base);
  ASSERT_NE(cp, nullptr);
  EventLog log(cp.get());
  const uint64_t version = cp->version();
  const std::string bytes = ReadFile(state_file_);
  uint64_t g = cp->generation();

  HealthReport r;
  r.backend_id = 2;
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  r.check_unix_ms = 1'700'000'000'123;
  r.latency_ms = 3000;
  r.consecutive_failures = 3;
  r.failed_checks = 3;
  r.last_error = "connect: Connection refused";
  cp->ReportHealth(r);
  EXPECT_EQ(cp->generation(), ++g);
  EXPECT_EQ(cp->version(), version);
  EXPECT_TRUE(ReadFile(state_file_) == bytes);
  EXPECT_EQ(PublishedBackend(2)->state, static_cast<uint8_t>(BackendState::kDown));
  EXPECT_EQ(Published().vips[0].member_count, 2u);
  auto st = cp->GetBackend(2);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->health(), v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(st->effective_state(), v1::BACKEND_STATE_DOWN);
  EXPECT_EQ(st->backend().state(), v1::BACKEND_STATE_UNSPECIFIED);  // as configured
  auto h = cp->GetBackendHealth(2);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->status(), "unhealthy");
  EXPECT_EQ(h->last_check(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(h->last_latency_ms(), 3000);
  EXPECT_EQ(h->consecutive_failures(), 3u);
  EXPECT_EQ(h->failed_checks(), 3u);
  EXPECT_EQ(h->last_error(), "connect: Connection refused");
  auto events = log.Take();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind(), "health");
  EXPECT_EQ(events[0].backend_id(), 2u);
  EXPECT_EQ(events[0].health(), v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(events[1].kind(), "publish");
  EXPECT_EQ(events[1].generation(), g);

  // The same status again: nothing to publish.
  r.consecutive_failures = 4;
  cp->ReportHealth(r);
  EXPECT_EQ(cp->generation(), g);
  EXPECT_EQ(cp->GetBackendHealth(2)->consecutive_failures(), 4u);
  // unknown -> healthy changes no table, but is an event.
  HealthReport ok1;
  ok1.backend_id = 1;
  ok1.status = v1::HEALTH_STATUS_HEALTHY;
  cp->ReportHealth(ok1);
  EXPECT_EQ(cp->generation(), g);
  EXPECT_EQ(log.Take("health").size(), 1u);
  // Recovery republishes ACTIVE.
  r.status = v1::HEALTH_STATUS_HEALTHY;
  cp->ReportHealth(r);
  EXPECT_EQ(cp->generation(), ++g);
  EXPECT_EQ(PublishedBackend(2)->state, static_cast<uint8_t>(BackendState::kActive));
  EXPECT_EQ(cp->version(), version);

  // Reports for unknown backends or unchecked pools are ignored.
  HealthReport stray;
  stray.backend_id = 4;  // pool "zz-unchecked"
  stray.status = v1::HEALTH_STATUS_UNHEALTHY;
  cp->ReportHealth(stray);
  stray.backend_id = 99;
  cp->ReportHealth(stray);
  EXPECT_EQ(cp->generation(), g);
  EXPECT_EQ(cp->GetBackendHealth(4)->status(), "unknown");
  EXPECT_EQ(cp->GetBackendHealth(99).status().code(), absl::StatusCode::kNotFound);

  // Unhealthy, then checks are switched off: the backend is back in the rings.
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  cp->ReportHealth(r);
  EXPECT_EQ(PublishedBackend(2)->state, static_cast<uint8_t>(BackendState::kDown));
  v1::HealthCheck none;
  none.set_kind(v1::HEALTH_CHECK_KIND_NONE);
  ASSERT_TRUE(cp->SetHealthCheck("web", none).ok());
  EXPECT_EQ(PublishedBackend(2)->state, static_cast<uint8_t>(BackendState::kActive));
  EXPECT_EQ(cp->GetBackend(2)->health(), v1::HEALTH_STATUS_UNKNOWN);
}

TEST_F(ControlPlaneTest, AnUnhealthyBackendStaysDownAcrossConfigChanges) {
  v1::Config base = ParseOrDie(kBase);
  base.mutable_pools(0)->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_HTTP);
  auto cp = Make(base);
  ASSERT_NE(cp, nullptr);
  HealthReport r;
  r.backend_id = 3;
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  cp->ReportHealth(r);
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  EXPECT_EQ(PublishedBackend(3)->state, static_cast<uint8_t>(BackendState::kDown));
  EXPECT_EQ(PublishedBackend(4)->state, static_cast<uint8_t>(BackendState::kActive));
  // The stored state never holds runtime health.
  EXPECT_EQ(Stored().pools(0).backends(0).state(), v1::BACKEND_STATE_UNSPECIFIED);
}

// ------------------------------------------------ restart, stuck, failures ---

TEST_F(ControlPlaneTest, RestartRepublishesIdenticalRingsInIdenticalSlots) {
  struct Seen {
    uint64_t version, generation;
    std::vector<std::string> fingerprints;
    std::map<uint32_t, std::pair<uint32_t, uint32_t>> slots;  // id -> (slot, incarnation)
    v1::Config config;
  };
  auto capture = [&](ControlPlane& cp) {
    Seen s;
    s.version = cp.version();
    s.generation = cp.generation();
    const v1::TablesInfo tables = cp.GetTables();
    for (const v1::VipStatus& v : tables.vips()) s.fingerprints.push_back(v.fingerprint());
    s.config = cp.config();
    for (const v1::Pool& p : s.config.pools()) {
      for (const v1::Backend& b : p.backends()) {
        uint32_t slot = 0;
        const BackendEntry* e = PublishedBackend(b.id(), &slot);
        EXPECT_NE(e, nullptr);
        if (e != nullptr) s.slots[b.id()] = {slot, e->incarnation};
      }
    }
    s.config = cp.config();
    return s;
  };
  Seen before;
  {
    auto cp = Make();
    ASSERT_NE(cp, nullptr);
    StartDataplane(2);
    // A history that makes slot numbers differ from a fresh start's.
    ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
    ASSERT_TRUE(cp->AddBackend("", NewBackend("10.3.0.1", 81)).ok());
    ASSERT_TRUE(cp->RemoveBackend(1).ok());
    cp->Tick();
    ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.0")).ok());
    v1::Vip v;
    v.set_address("198.51.100.9");
    v.set_protocol(v1::PROTOCOL_UDP);
    v.set_pool(kDefaultPool);
    ASSERT_TRUE(cp->CreateVip(v).ok());
    before = capture(*cp);
  }
  auto cp = Make(std::nullopt);
  ASSERT_NE(cp, nullptr);
  const Seen after = capture(*cp);
  EXPECT_EQ(after.version, before.version);
  EXPECT_EQ(after.generation, before.generation + 1);  // republished, same content
  EXPECT_EQ(after.fingerprints, before.fingerprints);
  EXPECT_EQ(after.slots, before.slots);
  EXPECT_TRUE(MessageDifferencer::Equals(after.config, before.config));
  // The fresh table is byte-identical to the one before, apart from the
  // generation, time and checksum in its header.
  const SlotView now = Published();
  auto other = reader_->Slot(now.header->generation - 1);
  EXPECT_EQ(std::memcmp(now.backends, other.backends, sizeof(BackendEntry) * 64), 0);
  EXPECT_EQ(std::memcmp(now.Ring(0), other.Ring(0), 251 * 4), 0);
}

TEST_F(ControlPlaneTest, AStuckLcoreRefusesPublishesAndIsReported) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  StartDataplane(2);
  EventLog log(cp.get());
  dataplane_->Pause(true);
  // One publish still fits (the lcores left the older slot); the next needs
  // the slot they are on.
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  log.Take();
  usleep(150'000);  // heartbeat older than stuck_after (100 ms)
  ExpectRefused(*cp, absl::StatusCode::kFailedPrecondition, "stuck",
                [&] { return cp->AddBackend("web", NewBackend("10.0.0.5")).status(); });
  const v1::TablesInfo t = cp->GetTables();
  EXPECT_EQ(std::vector<uint32_t>(t.stuck_lcores().begin(), t.stuck_lcores().end()),
            (std::vector<uint32_t>{1, 2}));
  auto events = log.Take();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind(), "stuck_lcore");
  EXPECT_CONTAINS(events[0].message(), "lcore(s) 1, 2 stuck");
  EXPECT_EQ(events[1].kind(), "refused");
  dataplane_->Pause(false);
  usleep(20'000);
  auto ok = cp->AddBackend("web", NewBackend("10.0.0.5"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(cp->GetTables().stuck_lcores().empty());
}

TEST_F(ControlPlaneTest, HealthRepublishBlockedByAStuckLcoreIsRetriedByTick) {
  v1::Config base = ParseOrDie(kBase);
  base.mutable_pools(0)->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
  auto cp = Make(base);
  ASSERT_NE(cp, nullptr);
  StartDataplane(1);
  dataplane_->Pause(true);
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  const uint64_t g = cp->generation();
  HealthReport r;
  r.backend_id = 1;
  r.status = v1::HEALTH_STATUS_UNHEALTHY;
  const uint64_t t0 = MonotonicNs();
  cp->ReportHealth(r);
  EXPECT_LT(MonotonicNs() - t0, 100'000'000u) << "ReportHealth blocked on the stuck lcore";
  EXPECT_EQ(cp->generation(), g);
  cp->Tick();
  EXPECT_EQ(cp->generation(), g);
  dataplane_->Pause(false);
  usleep(20'000);
  cp->Tick();
  EXPECT_EQ(cp->generation(), g + 1);
  EXPECT_EQ(PublishedBackend(1)->state, static_cast<uint8_t>(BackendState::kDown));
}

// A store whose Save fails on demand.
class FlakyStore : public Store {
 public:
  FlakyStore(std::unique_ptr<Store> inner, std::atomic<bool>* fail)
      : inner_(std::move(inner)), fail_(fail) {}
  absl::StatusOr<std::optional<v1::Config>> Load() override { return inner_->Load(); }
  absl::Status Save(const v1::Config& c) override {
    if (fail_->load()) return absl::UnavailableError("disk on fire");
    return inner_->Save(c);
  }
  std::string Describe() const override { return "flaky " + inner_->Describe(); }

 private:
  std::unique_ptr<Store> inner_;
  std::atomic<bool>* fail_;
};

// Persist first, publish second: a change the store refuses is never seen
// by an lcore, not even briefly (it used to be published, then rolled back:
// two generations per refused call).
TEST_F(ControlPlaneTest, AFailedSaveNeverReachesAnLcore) {
  std::atomic<bool> fail{false};
  auto inner = NewFileStore(state_dir_);
  ASSERT_TRUE(inner.ok());
  auto created = ControlPlane::Create(Options(ParseOrDie(kBase)),
                                      std::make_unique<FlakyStore>(*std::move(inner), &fail));
  ASSERT_TRUE(created.ok()) << created.status();
  auto& cp = *created;
  std::atomic<int> publishes{0};
  const uint64_t token = cp->Subscribe([&](const v1::Event& e) {
    if (e.kind() == "publish") ++publishes;
  });
  const std::string fp = cp->GetTables().vips(0).fingerprint();
  const uint64_t g = cp->generation();
  const uint64_t table_generation = Published().header->generation;
  const std::string bytes = ReadFile(state_file_);
  fail = true;
  for (int i = 0; i < 3; ++i) {
    auto r = cp->AddBackend("web", NewBackend("10.0.0.4"));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_CONTAINS(std::string(r.status().message()), "disk on fire");
    EXPECT_CONTAINS(std::string(r.status().message()), "nothing was published");
  }
  EXPECT_EQ(publishes.load(), 0);
  EXPECT_EQ(cp->version(), 1u);
  EXPECT_EQ(cp->config().pools(0).backends_size(), 3);
  EXPECT_TRUE(ReadFile(state_file_) == bytes);
  EXPECT_EQ(cp->generation(), g) << "a refused change must not be published at all";
  EXPECT_EQ(Published().header->generation, table_generation);
  EXPECT_EQ(cp->GetTables().vips(0).fingerprint(), fp);
  EXPECT_EQ(Published().vips[0].member_count, 3u);
  EXPECT_EQ(PublishedBackend(4), nullptr);
  fail = false;
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  EXPECT_EQ(cp->version(), 2u);
  EXPECT_EQ(cp->generation(), g + 1);
  EXPECT_EQ(publishes.load(), 1);
  EXPECT_NE(PublishedBackend(4), nullptr);
  cp->Unsubscribe(token);
}

// One request cannot hold the transaction mutex for long: a pool beyond the
// tables is refused before any per-backend work, and a large pool within
// them costs O(n log n) (ids used to be assigned by a scan from 1 per
// backend: 100k backends held the mutex ~21 s).
TEST_F(ControlPlaneTest, HugePoolsAreRefusedUpFrontOrBuiltInNLogN) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  v1::Pool huge;
  huge.set_name("huge");
  for (int i = 0; i < 100000; ++i) {
    v1::Backend* b = huge.add_backends();
    b->set_address(absl::StrCat("10.", 100 + i / 62500, ".", (i / 250) % 250, ".", i % 250 + 1));
    b->set_port(80);
  }
  ExpectRefused(*cp, absl::StatusCode::kResourceExhausted,
                "pool.backends: 100000 backends with the 3 configured exceed the table capacity "
                "of 63",
                [&] { return cp->CreatePool(huge).status(); });

  // With room for them (a second control plane on its own region), the
  // same 100k-backend pool is accepted, with ids 4.. in address order, and
  // another client's change goes through right after it.
  caps_.max_backends = 1u << 17;
  caps_.max_ring_size = 100003;  // prime, above the pool's size
  tables_ += ".big";
  state_dir_ += ".big";
  state_file_ = state_dir_ + "/state.textproto";
  v1::Config base = ParseOrDie(kBase);
  base.mutable_tables()->set_ring_size(100003);
  auto big = Make(base);
  ASSERT_NE(big, nullptr);
  const absl::Time start = absl::Now();
  auto created = big->CreatePool(huge);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_EQ(created->backends_size(), 100000);
  std::set<uint32_t> ids;
  for (const v1::Backend& b : created->backends()) ids.insert(b.id());
  EXPECT_EQ(ids.size(), 100000u);
  EXPECT_EQ(*ids.begin(), 4u);
  EXPECT_EQ(*ids.rbegin(), 100003u);
  // Reported, not asserted: timing belongs to perf/ (perf/run.sh control).
  std::printf("RESULT create_pool_100k_backends_ms=%.0f\n", absl::ToDoubleMilliseconds(took));
  ASSERT_TRUE(big->AddBackend("web", NewBackend("10.0.0.4")).ok());
}

// ------------------------------------------------------------- SIGHUP ---

TEST_F(ControlPlaneTest, ReplaceConfigKeepsAssignedIdsAndIsOneTransaction) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());  // id 4
  v1::Config file = ParseOrDie(kBase);                              // ids 0; 10.0.0.4 not in it
  v1::Backend* fresh = file.mutable_pools(0)->add_backends();
  *fresh = NewBackend("10.0.0.20");
  const uint64_t g = cp->generation();
  ASSERT_TRUE(cp->ReplaceConfig(file).ok());
  EXPECT_EQ(cp->generation(), g + 1);
  EXPECT_EQ(cp->version(), 3u);
  std::map<std::string, uint32_t> ids;
  const v1::Config now = cp->config();
  for (const v1::Backend& b : now.pools(0).backends()) ids[b.address()] = b.id();
  EXPECT_EQ(ids, (std::map<std::string, uint32_t>{
                     {"10.0.0.1", 1}, {"10.0.0.2", 2}, {"10.0.0.3", 3}, {"10.0.0.20", 4}}));
  EXPECT_EQ(cp->config().vips(0).id(), 1u);
  // The same file again still publishes (an operator asked for it).
  ASSERT_TRUE(cp->ReplaceConfig(file).ok());
  EXPECT_EQ(cp->generation(), g + 2);
  // A refused file changes nothing and names the field.
  v1::Config bad = file;
  bad.mutable_vips(0)->set_address("10.0.0.300");
  ExpectRefused(*cp, absl::StatusCode::kInvalidArgument, "vips[0].address: \"10.0.0.300\"",
                [&] { return cp->ReplaceConfig(bad); });
}

// ------------------------------------------------------------- queries ---

TEST_F(ControlPlaneTest, CountersComeFromTheStatsRegion) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  StartDataplane(2);
  const uint32_t s = SlotOf(3);
  for (uint32_t l = 0; l < 2; ++l) {
    dataplane_->Backend(l, s).packets.store(100 + l);
    dataplane_->Backend(l, s).bytes.store(1000 * (l + 1));
    dataplane_->Backend(l, s).new_flows.store(10 + l);
    dataplane_->Backend(l, s).active_flows.store(3);
    dataplane_->Lcore(l).rx_packets.store(50 + l);
    dataplane_->Lcore(l).drops[static_cast<int>(DropReason::kNoBackend)].store(5 * (l + 1));
  }
  auto b = cp->GetBackend(3);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->packets(), 201u);
  EXPECT_EQ(b->bytes(), 3000u);
  EXPECT_EQ(b->active_connections(), 6u);
  auto h = cp->GetBackendHealth(3);
  EXPECT_EQ(h->total_requests(), 21u);
  EXPECT_EQ(h->active_connections(), 6u);
  auto list = cp->ListBackends("web");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].backend().id(), 3u);
  EXPECT_EQ(list[0].packets(), 201u);
  EXPECT_TRUE(cp->ListBackends("nope").empty());
  EXPECT_EQ(cp->ListBackends("").size(), 3u);

  v1::Stats st = cp->GetStats();
  EXPECT_TRUE(st.dataplane_running());
  EXPECT_EQ(st.generation(), cp->generation());
  ASSERT_EQ(st.lcores_size(), 2);
  EXPECT_EQ(st.lcores(1).lcore(), 2u);
  EXPECT_TRUE(st.lcores(1).online());
  EXPECT_EQ(st.lcores(1).rx_packets(), 51u);
  EXPECT_EQ(st.lcores(1).observed_generation(), cp->generation());
  EXPECT_EQ(st.lcores(1).drops().at("no_backend"), 10u);
  EXPECT_EQ(st.lcores(1).drops().size(), static_cast<size_t>(kNumDropReasons));

  // A restarted dataplane (a new region at the same path) is re-attached.
  dataplane_.reset();
  EXPECT_FALSE(cp->GetStats().dataplane_running());
  StartDataplane(1);
  EXPECT_TRUE(cp->GetStats().dataplane_running());
  EXPECT_EQ(cp->GetStats().lcores_size(), 1);
  EXPECT_EQ(cp->GetBackend(3)->packets(), 0u);
}

TEST_F(ControlPlaneTest, ListVipsReportsGenerationFingerprintAndMembers) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  auto vips = cp->ListVips();
  ASSERT_EQ(vips.size(), 1u);
  EXPECT_EQ(vips[0].vip().id(), 1u);
  EXPECT_EQ(vips[0].generation(), 1u);
  EXPECT_EQ(vips[0].active_members(), 3u);
  ASSERT_EQ(vips[0].fingerprint().size(), 16u);
  EXPECT_EQ(vips[0].fingerprint(), absl::StrFormat("%016x", ComputeVipFingerprint(Published(), 0)));
  // A second control plane elsewhere (its own regions and store, another
  // history) with the same config shows the same fingerprint.
  ControlPlaneOptions o = Options(ParseOrDie(kBase));
  o.publisher.table_path = dir_ + "/tables2";
  o.publisher.stats_path = dir_ + "/stats2";
  auto store = NewFileStore(dir_ + "/state2");
  ASSERT_TRUE(store.ok());
  auto cp2 = ControlPlane::Create(o, *std::move(store));
  ASSERT_TRUE(cp2.ok()) << cp2.status();
  ASSERT_TRUE((*cp2)->AddBackend("web", NewBackend("10.0.0.77")).ok());
  ASSERT_TRUE((*cp2)->RemoveBackend(1).ok());
  (*cp2)->Tick();
  ASSERT_TRUE((*cp2)->ReplaceConfig(ParseOrDie(kBase)).ok());
  EXPECT_EQ((*cp2)->ListVips()[0].fingerprint(), vips[0].fingerprint());
}

// -------------------------------------------------------------- explain ---

FlowKey Key(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
            uint8_t proto) {
  FlowKey k;
  std::memset(&k, 0, sizeof(k));
  auto s = ParseIpAddress(src);
  auto d = ParseIpAddress(dst);
  std::memcpy(k.src, s->bytes.data(), 16);
  std::memcpy(k.dst, d->bytes.data(), 16);
  k.sport = sport;
  k.dport = dport;
  k.proto = proto;
  k.family = s->family;
  return k;
}

v1::ExplainRequest Req(const std::string& src, uint32_t sport, const std::string& dst,
                       uint32_t dport, v1::Protocol proto = v1::PROTOCOL_TCP) {
  v1::ExplainRequest r;
  r.set_src(src);
  r.set_src_port(sport);
  r.set_dst(dst);
  r.set_dst_port(dport);
  r.set_protocol(proto);
  return r;
}

TEST_F(ControlPlaneTest, ExplainFollowsTheDataplanesHashAndRing) {
  v1::Config base = ParseOrDie(kBase);
  v1::Pool* dns = base.add_pools();
  dns->set_name("zdns");  // pools sort after "web": web keeps ids 1-3
  dns->set_algorithm(v1::ALGORITHM_IP_HASH);
  for (int i = 1; i <= 4; ++i) *dns->add_backends() = NewBackend(absl::StrCat("10.8.0.", i), 53);
  v1::Vip* v = base.add_vips();
  v->set_address("198.51.100.53");
  v->set_protocol(v1::PROTOCOL_UDP);
  v->set_port(53);
  v->set_pool("zdns");
  v->set_fragment_tolerant(true);
  v1::Pool* rr = base.add_pools();
  rr->set_name("zrr");
  rr->set_algorithm(v1::ALGORITHM_ROUND_ROBIN);
  *rr->add_backends() = NewBackend("10.9.0.1");
  v = base.add_vips();
  v->set_address("198.51.100.80");
  v->set_protocol(v1::PROTOCOL_TCP);
  v->set_pool("zrr");  // all ports
  auto cp = Make(base);
  ASSERT_NE(cp, nullptr);
  const SlotView slot = Published();

  // Maglev: ring[RingIndex(HashFlow(5-tuple))], for many flows.
  std::set<uint32_t> seen;
  for (uint16_t port = 1000; port < 1200; ++port) {
    auto r = cp->Explain(Req("203.0.113.7", port, "198.51.100.1", 80));
    ASSERT_TRUE(r.ok()) << r.status();
    const FlowKey k = Key("203.0.113.7", port, "198.51.100.1", 80, IPPROTO_TCP);
    const uint32_t idx = RingIndex(HashFlow(k), slot.header->ring_size);
    const uint32_t s = slot.Ring(0)[idx];
    EXPECT_EQ(r->backend_id(), slot.backends[s].backend_id);
    EXPECT_EQ(r->backend(), IpAddressFromBytes(AddrFamily::kIPv4, slot.backends[s].addr).text);
    EXPECT_CONTAINS(r->reason(), absl::StrCat("maglev ring[", idx, "] of 251"));
    EXPECT_CONTAINS(r->reason(), "connection table not consulted");
    EXPECT_EQ(r->vip_id(), 1u);
    EXPECT_EQ(r->vip(), "198.51.100.1:80/tcp");
    EXPECT_EQ(r->algorithm(), "maglev");
    EXPECT_EQ(r->generation(), cp->generation());
    seen.insert(r->backend_id());
  }
  EXPECT_EQ(seen, (std::set<uint32_t>{1, 2, 3}));

  // IP hash on a fragment-tolerant VIP: the source address alone decides.
  auto a = cp->Explain(Req("203.0.113.9", 1111, "198.51.100.53", 53, v1::PROTOCOL_UDP));
  auto b = cp->Explain(Req("203.0.113.9", 2222, "198.51.100.53", 53, v1::PROTOCOL_UDP));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->backend_id(), b->backend_id());
  EXPECT_EQ(a->algorithm(), "ip_hash");
  FlowKey k = Key("203.0.113.9", 0, "198.51.100.53", 0, IPPROTO_UDP);
  const int dns_vip = slot.FindVip(AddrFamily::kIPv4, k.dst, IPPROTO_UDP, 53);
  ASSERT_GE(dns_vip, 0);
  const uint32_t s =
      slot.Ring(dns_vip)[RingIndex(HashFlowMode(k, HashMode::kSourceIp), slot.header->ring_size)];
  EXPECT_EQ(a->backend_id(), slot.backends[s].backend_id);
  EXPECT_CONTAINS(a->reason(), "source-address hash");

  // Per-lcore algorithm: no single answer, the candidates instead.
  auto c = cp->Explain(Req("203.0.113.9", 5, "198.51.100.80", 8443));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->backend_id(), 0u);
  EXPECT_EQ(c->vip(), "198.51.100.80:0/tcp");
  EXPECT_CONTAINS(c->reason(), "round_robin: the pick depends on");
  EXPECT_CONTAINS(c->reason(), "id 8 10.9.0.1");

  // Errors name the request field.
  EXPECT_EQ(cp->Explain(Req("203.0.113.9", 5, "198.51.100.99", 80)).status().code(),
            absl::StatusCode::kNotFound);
  auto bad = cp->Explain(Req("nope", 5, "198.51.100.1", 80));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_CONTAINS(std::string(bad.status().message()), "src:");
  EXPECT_CONTAINS(
      std::string(cp->Explain(Req("2001:db8::1", 5, "198.51.100.1", 80)).status().message()),
      "dst: address family");
  EXPECT_CONTAINS(
      std::string(cp->Explain(Req("203.0.113.9", 5, "198.51.100.1", 80, v1::PROTOCOL_UNSPECIFIED))
                      .status()
                      .message()),
      "protocol: required");
  EXPECT_CONTAINS(
      std::string(cp->Explain(Req("203.0.113.9", 70000, "198.51.100.1", 80)).status().message()),
      "src_port");

  // An empty pool: the ring is empty, the packet would be dropped.
  v1::UpdateBackendRequest down;
  for (uint32_t id : {1u, 2u, 3u}) {
    down.set_id(id);
    down.set_state(v1::BACKEND_STATE_DOWN);
    ASSERT_TRUE(cp->UpdateBackend(down).ok());
  }
  auto empty = cp->Explain(Req("203.0.113.7", 1000, "198.51.100.1", 80));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->backend_id(), 0u);
  EXPECT_CONTAINS(empty->reason(), "no_backend");
}

// -------------------------------------------------------------- events ---

TEST_F(ControlPlaneTest, EventsAreDeliveredUntilUnsubscribe) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  auto log = std::make_unique<EventLog>(cp.get());
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  auto pubs = log->Take();
  ASSERT_EQ(pubs.size(), 1u);
  EXPECT_EQ(pubs[0].kind(), "publish");
  EXPECT_EQ(pubs[0].generation(), cp->generation());
  EXPECT_GT(pubs[0].unix_ms(), 0u);
  EXPECT_FALSE(cp->AddBackend("web", NewBackend("10.0.0.4")).ok());
  auto refused = log->Take();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].kind(), "refused");
  EXPECT_CONTAINS(refused[0].message(), "AddBackend: ALREADY_EXISTS");
  log.reset();  // unsubscribes
  ASSERT_TRUE(cp->AddBackend("web", NewBackend("10.0.0.5")).ok());
}

TEST_F(ControlPlaneTest, ConcurrentMutationsAreSerialized) {
  auto cp = Make();
  ASSERT_NE(cp, nullptr);
  StartDataplane(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto r = cp->AddBackend("web", NewBackend(absl::StrCat("10.4.", t, ".", i + 1)));
        EXPECT_TRUE(r.ok()) << r.status();
        (void)cp->ListBackends("");
        (void)cp->GetTables();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(cp->version(), 41u);
  EXPECT_EQ(cp->generation(), 41u);
  std::set<uint32_t> ids;
  const v1::Config now = cp->config();
  for (const v1::Backend& b : now.pools(0).backends()) ids.insert(b.id());
  EXPECT_EQ(ids.size(), 43u);
  EXPECT_EQ(*ids.rbegin(), 43u);
  EXPECT_TRUE(MessageDifferencer::Equals(Stored(), cp->config()));
}

// ------------------------------------------------------------- latency ---

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// API call -> Publish returned -> every lcore on the new generation, with a
// spinning fake lcore (a real one polls between bursts), for 10 and 1,000
// backends at the default ring size 65537. Printed for perf/RESULTS.md.
TEST_F(ControlPlaneTest, PublishLatency) {
  caps_.max_backends = 1100;
  caps_.max_members = 2048;
  caps_.max_ring_size = 65537;
  for (int n : {10, 1000}) {
    SCOPED_TRACE(n);
    TearDown();
    SetUp();
    caps_.max_backends = 1100;
    caps_.max_members = 2048;
    caps_.max_ring_size = 65537;
    v1::Config base = ParseOrDie(kBase);
    base.clear_tables();
    base.mutable_pools(0)->clear_backends();
    for (int i = 0; i < n; ++i) {
      *base.mutable_pools(0)->add_backends() =
          NewBackend(absl::StrCat("10.", 20 + i / 250, ".", i / 250, ".", i % 250 + 1));
    }
    std::vector<double> build_ms;
    ControlPlaneOptions o = Options(base);
    o.on_publish = [&](const PublishReport& r) { build_ms.push_back(r.build_ms); };
    std::vector<double> reported;  // the cumulative-histogram feed
    o.on_publish_latency = [&](double publish_ms, double lcores_ms) {
      EXPECT_GE(lcores_ms, publish_ms);
      reported.push_back(publish_ms);
    };
    auto store = NewFileStore(state_dir_);
    ASSERT_TRUE(store.ok());
    auto created = ControlPlane::Create(o, *std::move(store));
    ASSERT_TRUE(created.ok()) << created.status();
    auto& cp = *created;
    dataplane_ = std::make_unique<FakeDataplane>(stats_, tables_, 1, caps_.max_backends, true);
    const int rounds = n == 10 ? 200 : 60;
    const size_t skip = cp->PublishLatenciesMs().size();
    build_ms.clear();
    for (int i = 0; i < rounds; ++i) {
      v1::UpdateBackendRequest req;
      req.set_id(1);
      req.set_weight(1 + (i % 2));
      ASSERT_TRUE(cp->UpdateBackend(req).ok());
    }
    std::vector<double> pub = cp->PublishLatenciesMs();
    std::vector<double> lcores = cp->ApiToLcoresLatenciesMs();
    pub.erase(pub.begin(), pub.begin() + static_cast<long>(skip));
    lcores.erase(lcores.begin(), lcores.begin() + static_cast<long>(skip));
    ASSERT_EQ(pub.size(), static_cast<size_t>(rounds));
    ASSERT_EQ(build_ms.size(), static_cast<size_t>(rounds));
    ASSERT_EQ(reported.size(), static_cast<size_t>(rounds) + skip);
    EXPECT_EQ(reported.back(), pub.back());
    std::vector<double> beyond;
    for (int i = 0; i < rounds; ++i) beyond.push_back(lcores[i] - build_ms[i]);
    std::printf(
        "control backends=%d publish_ms_p50=%.3f publish_ms_p99=%.3f api_to_lcores_ms_p50=%.3f "
        "api_to_lcores_ms_p99=%.3f build_ms_p50=%.3f beyond_build_ms_p50=%.3f "
        "beyond_build_ms_p99=%.3f\n",
        n, Percentile(pub, 0.5), Percentile(pub, 0.99), Percentile(lcores, 0.5),
        Percentile(lcores, 0.99), Percentile(build_ms, 0.5), Percentile(beyond, 0.5),
        Percentile(beyond, 0.99));
    std::fflush(stdout);
    for (int i = 0; i < rounds; ++i) EXPECT_GE(lcores[i], pub[i]);
    // Generous: the machine is shared; the target (p99 <= 1 ms beyond the
    // build) is reported above, this only catches gross regressions.
    EXPECT_LT(Percentile(beyond, 0.5), 20.0);
    dataplane_.reset();
  }
}

}  // namespace
}  // namespace lb
