// ControlPlane (controlplane/control_plane.h), start-up and entities: the
// store or the bootstrap at start, VIPs and pools with every error code; a
// refused call leaves the published generation, the version and the stored
// bytes exactly as they were. Backends and health: control_plane_backend_test;
// restarts, stuck lcores, failed saves, queries, Explain, events, latency:
// control_plane_publish_test.
#include "tests/cp/control_plane_test_util.h"

namespace lb {
namespace {

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

}  // namespace
}  // namespace lb
