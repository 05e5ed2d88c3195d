// ControlPlane backends and health: ids and every error code, updates and
// drains, removals that complete on Tick when the stats region (written here
// by a fake dataplane with this process's pid) shows no flows or at the drain
// timeout, and health reports that flip the published state without a
// version bump.
#include "tests/cp/control_plane_test_util.h"

namespace lb {
namespace {

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

}  // namespace
}  // namespace lb
