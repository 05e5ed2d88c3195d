// Shared by the ControlPlane tests (control_plane_test, control_plane_backend_test,
// control_plane_publish_test): a stand-in dataplane writing a stats region
// with this process's pid, an event recorder, a store that can be told to
// fail, and the ControlPlaneTest fixture (a fresh temp dir with regions and a
// store per test). Header-only; each test executable includes it once.
#ifndef LB_TESTS_CP_CONTROL_PLANE_TEST_UTIL_H_
#define LB_TESTS_CP_CONTROL_PLANE_TEST_UTIL_H_

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

inline int FindPoolIn(const v1::Config& c, const std::string& name) {
  for (int i = 0; i < c.pools_size(); ++i) {
    if (c.pools(i).name() == name) return i;
  }
  return -1;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

inline v1::Config ParseOrDie(const std::string& text) {
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
    state_file_ = state_dir_ + "/state.binpb";
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
    // The file is "<checksum line>\n<lb.v1.Config in wire format>".
    const std::string file = ReadFile(state_file_);
    v1::Config c;
    const size_t eol = file.find('\n');
    EXPECT_TRUE(eol != std::string::npos && c.ParseFromString(file.substr(eol + 1)))
        << state_file_ << " is not a sealed lb.v1.Config";
    return c;
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

}  // namespace
}  // namespace lb

#endif  // LB_TESTS_CP_CONTROL_PLANE_TEST_UTIL_H_
