// ControlPlane publishing and reading: a restart over the same store and
// regions republishes identical rings in identical slots; a stuck lcore
// refuses publishes and is reported; a failed save never reaches an lcore;
// huge pools are refused up front; SIGHUP replaces as one transaction;
// counters and tables from the stats region; Explain agrees with the
// dataplane's hash and ring index; events; PublishLatency prints the publish /
// api-to-lcores latencies for 10 and 1,000 backends.
#include "tests/cp/control_plane_test_util.h"

namespace lb {
namespace {

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
  state_file_ = state_dir_ + "/state.binpb";
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
    dataplane_->Lcore(l).syn_guard_stateless.store(7 + l);
    dataplane_->Lcore(l).tables_refused.store(l);
    dataplane_->Lcore(l).refused_generation.store(l == 1 ? 9 : 0);
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
  EXPECT_EQ(st.lcores(1).syn_guard_stateless(), 8u);
  EXPECT_EQ(st.lcores(1).tables_refused(), 1u);
  EXPECT_EQ(st.lcores(1).refused_generation(), 9u);
  EXPECT_EQ(st.lcores(0).refused_generation(), 0u);

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
