// The gRPC admin API end to end in one process: a real ControlPlane (file
// store and table region in a temp directory under /dev/shm, no dataplane so
// every publish goes through at once) behind the real StartGrpcServer on
// 127.0.0.1 with a kernel-chosen port, driven through the generated client
// stub. Covers every RPC, every status code the API promises (with the field
// named and nothing changed), auth, Watch, TLS, reflection and grpc.health.v1.
//
// grpc.health.v1 and reflection have no generated stubs on this system, so
// their messages are declared below as FileDescriptorProtos and used as
// DynamicMessages through the same blocking call machinery generated code
// uses.
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/sync_stream.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "controlplane/control_plane.h"
#include "controlplane/grpc_service.h"
#include "controlplane/store.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/text_format.h"
#include "lb/v1/admin.grpc.pb.h"

namespace lb {
namespace {

using grpc::StatusCode;

constexpr auto kCallTimeout = std::chrono::seconds(5);

// A temp directory under /dev/shm, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/dev/shm/lb-grpc-api-test-XXXXXX";
    const char* p = mkdtemp(tmpl);
    if (p == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
      return;
    }
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

v1::Config BootstrapConfig() {
  v1::Config c;
  c.mutable_node()->set_tunnel_source_ipv4("192.0.2.1");
  c.mutable_node()->set_tunnel_source_ipv6("2001:db8::1");
  c.mutable_tables()->set_ring_size(251);
  return c;
}

// A ControlPlane and its gRPC server.
struct Harness {
  TempDir dir;
  std::unique_ptr<ControlPlane> cp;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  // Returns false (with a test failure) when anything does not start.
  bool Start(GrpcServerOptions options = {}) {
    ControlPlaneOptions o;
    o.publisher.table_path = dir.path() + "/tables";
    o.publisher.stats_path = dir.path() + "/stats";  // absent: no dataplane
    o.publisher.caps.max_vips = 16;
    o.publisher.caps.max_backends = 64;
    o.publisher.caps.max_members = 256;
    o.publisher.caps.max_ring_size = 251;
    o.bootstrap = BootstrapConfig();
    auto store = NewFileStore(dir.path() + "/state");
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return false;
    auto created = ControlPlane::Create(std::move(o), *std::move(store));
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return false;
    cp = *std::move(created);
    options.listen_address = "127.0.0.1:0";
    options.selected_port = &port;
    auto started = StartGrpcServer(options, cp.get());
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return false;
    server = *std::move(started);
    return port > 0;
  }

  std::string Target() const { return absl::StrCat("127.0.0.1:", port); }

  std::shared_ptr<grpc::Channel> Channel() const {
    return grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials());
  }

  std::unique_ptr<v1::LoadBalancerAdmin::Stub> Stub() const {
    return v1::LoadBalancerAdmin::NewStub(Channel());
  }

  ~Harness() {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now() + kCallTimeout);
    server.reset();
    cp.reset();
  }
};

std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "") {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

std::string Describe(const grpc::Status& s) {
  return absl::StrCat("code ", s.error_code(), ": ", s.error_message());
}

// Asserts a status code and that the message starts with the field name.
#define EXPECT_STATUS(call, code, field)                                       \
  do {                                                                         \
    const grpc::Status st_ = (call);                                           \
    EXPECT_EQ(st_.error_code(), (code)) << Describe(st_);                      \
    EXPECT_TRUE(absl::StartsWith(st_.error_message(), field))                  \
        << "message does not name " << (field) << ": " << st_.error_message(); \
  } while (0)

class GrpcApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(h_.Start());
    stub_ = h_.Stub();
  }

  v1::Pool MakePool(const std::string& name) {
    v1::CreatePoolRequest req;
    req.mutable_pool()->set_name(name);
    v1::Pool resp;
    grpc::Status s = stub_->CreatePool(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return resp;
  }

  v1::Vip MakeVip(const std::string& address, uint32_t port, const std::string& pool) {
    v1::CreateVipRequest req;
    req.mutable_vip()->set_address(address);
    req.mutable_vip()->set_port(port);
    req.mutable_vip()->set_protocol(v1::PROTOCOL_TCP);
    req.mutable_vip()->set_pool(pool);
    v1::Vip resp;
    grpc::Status s = stub_->CreateVip(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return resp;
  }

  v1::BackendStatus MakeBackend(const std::string& pool, const std::string& address,
                                uint32_t port) {
    v1::AddBackendRequest req;
    req.set_pool(pool);
    req.mutable_backend()->set_address(address);
    req.mutable_backend()->set_port(port);
    v1::BackendStatus resp;
    grpc::Status s = stub_->AddBackend(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    return resp;
  }

  // The state every refused call must leave untouched.
  struct Observed {
    uint64_t version, generation;
    std::string config;
  };
  Observed Observe() const {
    return {h_.cp->version(), h_.cp->generation(), h_.cp->config().SerializeAsString()};
  }
  void ExpectUnchanged(const Observed& before) const {
    const Observed now = Observe();
    EXPECT_EQ(now.version, before.version);
    EXPECT_EQ(now.generation, before.generation);
    EXPECT_EQ(now.config, before.config) << "desired state changed by a refused call";
  }

  Harness h_;
  std::unique_ptr<v1::LoadBalancerAdmin::Stub> stub_;
};

// ------------------------------------------------------------- every RPC

TEST_F(GrpcApiTest, EveryRpcThroughTheStub) {
  const uint64_t gen0 = h_.cp->generation();

  const v1::Pool pool = MakePool("web");
  EXPECT_EQ(pool.name(), "web");

  const v1::Vip vip = MakeVip("10.0.0.1", 80, "web");
  EXPECT_GT(vip.id(), 0u);
  EXPECT_EQ(vip.address(), "10.0.0.1");

  const v1::BackendStatus b1 = MakeBackend("web", "10.1.0.1", 8080);
  const v1::BackendStatus b2 = MakeBackend("web", "10.1.0.2", 8080);
  EXPECT_GT(b1.backend().id(), 0u);
  EXPECT_NE(b1.backend().id(), b2.backend().id());
  EXPECT_EQ(b1.pool(), "web");
  EXPECT_EQ(b1.effective_state(), v1::BACKEND_STATE_ACTIVE);
  EXPECT_GT(h_.cp->generation(), gen0);

  {
    v1::ListVipsResponse r;
    ASSERT_TRUE(stub_->ListVips(Ctx().get(), {}, &r).ok());
    ASSERT_EQ(r.vips_size(), 1);
    EXPECT_EQ(r.vips(0).vip().id(), vip.id());
    EXPECT_EQ(r.vips(0).fingerprint().size(), 16u);
    EXPECT_EQ(r.vips(0).active_members(), 2u);
    EXPECT_GT(r.vips(0).generation(), 0u);
  }
  {
    v1::ListPoolsResponse r;
    ASSERT_TRUE(stub_->ListPools(Ctx().get(), {}, &r).ok());
    bool found = false;
    for (const v1::Pool& p : r.pools()) {
      if (p.name() == "web") {
        found = true;
        EXPECT_EQ(p.backends_size(), 2);
      }
    }
    EXPECT_TRUE(found);
  }
  {
    v1::ListBackendsRequest req;
    req.set_pool("web");
    v1::ListBackendsResponse r;
    ASSERT_TRUE(stub_->ListBackends(Ctx().get(), req, &r).ok());
    EXPECT_EQ(r.backends_size(), 2);
    v1::ListBackendsResponse all;
    ASSERT_TRUE(stub_->ListBackends(Ctx().get(), {}, &all).ok());
    EXPECT_EQ(all.backends_size(), 2);
  }
  {
    v1::UpdateBackendRequest req;
    req.set_id(b1.backend().id());
    req.set_weight(3);
    v1::BackendStatus r;
    grpc::Status s = stub_->UpdateBackend(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.backend().weight(), 3u);
  }
  {
    v1::SetPoolAlgorithmRequest req;
    req.set_pool("web");
    req.set_algorithm(v1::ALGORITHM_ROUND_ROBIN);
    v1::Pool r;
    grpc::Status s = stub_->SetPoolAlgorithm(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.algorithm(), v1::ALGORITHM_ROUND_ROBIN);
    req.set_algorithm(v1::ALGORITHM_MAGLEV);
    ASSERT_TRUE(stub_->SetPoolAlgorithm(Ctx().get(), req, &r).ok());
  }
  {
    v1::SetHealthCheckRequest req;
    req.set_pool("web");
    req.mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
    req.mutable_health_check()->set_interval_ms(1000);
    v1::Pool r;
    grpc::Status s = stub_->SetHealthCheck(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.health_check().kind(), v1::HEALTH_CHECK_KIND_TCP);
    req.mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_NONE);
    ASSERT_TRUE(stub_->SetHealthCheck(Ctx().get(), req, &r).ok());
  }
  {
    v1::GetBackendHealthRequest req;
    req.set_id(b1.backend().id());
    v1::BackendHealth r;
    grpc::Status s = stub_->GetBackendHealth(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.id(), b1.backend().id());
    EXPECT_FALSE(r.status().empty());
  }
  {
    v1::ExplainRequest req;
    req.set_src("198.51.100.7");
    req.set_src_port(40000);
    req.set_dst("10.0.0.1");
    req.set_dst_port(80);
    req.set_protocol(v1::PROTOCOL_TCP);
    v1::ExplainResponse r;
    grpc::Status s = stub_->Explain(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.vip_id(), vip.id());
    EXPECT_TRUE(r.backend_id() == b1.backend().id() || r.backend_id() == b2.backend().id())
        << r.ShortDebugString();
    EXPECT_EQ(r.generation(), h_.cp->generation());
    EXPECT_FALSE(r.reason().empty());
  }
  {
    v1::TablesInfo r;
    ASSERT_TRUE(stub_->GetTables(Ctx().get(), {}, &r).ok());
    EXPECT_EQ(r.generation(), h_.cp->generation());
    EXPECT_EQ(r.config_version(), h_.cp->version());
    EXPECT_EQ(r.vips_size(), 1);
    EXPECT_TRUE(r.stuck_lcores().empty());
  }
  {
    v1::Stats r;
    ASSERT_TRUE(stub_->GetStats(Ctx().get(), {}, &r).ok());
    EXPECT_FALSE(r.dataplane_running());
    EXPECT_EQ(r.generation(), h_.cp->generation());
  }
  {
    v1::DrainBackendRequest req;
    req.set_id(b2.backend().id());
    v1::BackendStatus r;
    grpc::Status s = stub_->DrainBackend(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.backend().state(), v1::BACKEND_STATE_DRAINING);
    EXPECT_EQ(r.effective_state(), v1::BACKEND_STATE_DRAINING);
  }
  {
    v1::RemoveBackendRequest req;
    req.set_id(b2.backend().id());
    v1::RemoveBackendResponse r;
    grpc::Status s = stub_->RemoveBackend(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.id(), b2.backend().id());
    EXPECT_EQ(r.drained_connections(), 0u);  // no dataplane, no flows
  }
  {
    v1::DeleteVipRequest req;
    req.set_id(vip.id());
    v1::DeleteVipResponse r;
    grpc::Status s = stub_->DeleteVip(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.id(), vip.id());
    v1::ListVipsResponse l;
    ASSERT_TRUE(stub_->ListVips(Ctx().get(), {}, &l).ok());
    EXPECT_EQ(l.vips_size(), 0);
  }
  {
    // A pool with no VIP can go, backends and all.
    v1::DeletePoolRequest req;
    req.set_name("web");
    v1::DeletePoolResponse r;
    grpc::Status s = stub_->DeletePool(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(r.name(), "web");
  }
}

// ------------------------------------------------------- status codes

TEST_F(GrpcApiTest, InvalidArgumentNamesTheFieldAndChangesNothing) {
  MakePool("web");
  const v1::BackendStatus b = MakeBackend("web", "10.1.0.1", 8080);
  MakeVip("10.0.0.1", 80, "web");
  const Observed before = Observe();

  v1::Vip vip;
  v1::Pool pool;
  v1::BackendStatus bs;
  v1::ExplainResponse ex;

  EXPECT_STATUS(stub_->CreateVip(Ctx().get(), v1::CreateVipRequest(), &vip),
                StatusCode::INVALID_ARGUMENT, "vip: required");
  {
    v1::CreateVipRequest req;
    req.mutable_vip()->set_address("10.0.0.300");
    req.mutable_vip()->set_port(80);
    req.mutable_vip()->set_protocol(v1::PROTOCOL_TCP);
    req.mutable_vip()->set_pool("web");
    const grpc::Status s = stub_->CreateVip(Ctx().get(), req, &vip);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << Describe(s);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "address")) << s.error_message();
  }
  EXPECT_STATUS(stub_->CreatePool(Ctx().get(), v1::CreatePoolRequest(), &pool),
                StatusCode::INVALID_ARGUMENT, "pool: required");
  EXPECT_STATUS(stub_->AddBackend(Ctx().get(), v1::AddBackendRequest(), &bs),
                StatusCode::INVALID_ARGUMENT, "backend: required");
  {
    v1::AddBackendRequest req;
    req.set_pool("web");
    req.mutable_backend()->set_address("10.1.0.9");
    req.mutable_backend()->set_port(70000);
    const grpc::Status s = stub_->AddBackend(Ctx().get(), req, &bs);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << Describe(s);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "port")) << s.error_message();
  }
  {
    v1::AddBackendRequest req;
    req.set_pool("web");
    req.mutable_backend()->set_address("not-an-address");
    req.mutable_backend()->set_port(80);
    const grpc::Status s = stub_->AddBackend(Ctx().get(), req, &bs);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << Describe(s);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "address")) << s.error_message();
  }
  {
    v1::SetPoolAlgorithmRequest req;
    req.set_pool("web");
    req.set_algorithm(static_cast<v1::Algorithm>(99));
    EXPECT_STATUS(stub_->SetPoolAlgorithm(Ctx().get(), req, &pool), StatusCode::INVALID_ARGUMENT,
                  "algorithm: unknown value 99");
  }
  EXPECT_STATUS(stub_->SetHealthCheck(Ctx().get(), v1::SetHealthCheckRequest(), &pool),
                StatusCode::INVALID_ARGUMENT, "health_check: required");
  {
    v1::DeleteVipResponse r;
    EXPECT_STATUS(stub_->DeleteVip(Ctx().get(), v1::DeleteVipRequest(), &r),
                  StatusCode::INVALID_ARGUMENT, "id: required");
    v1::DeletePoolResponse p;
    EXPECT_STATUS(stub_->DeletePool(Ctx().get(), v1::DeletePoolRequest(), &p),
                  StatusCode::INVALID_ARGUMENT, "name: required");
    v1::RemoveBackendResponse rb;
    EXPECT_STATUS(stub_->RemoveBackend(Ctx().get(), v1::RemoveBackendRequest(), &rb),
                  StatusCode::INVALID_ARGUMENT, "id: required");
    EXPECT_STATUS(stub_->DrainBackend(Ctx().get(), v1::DrainBackendRequest(), &bs),
                  StatusCode::INVALID_ARGUMENT, "id: required");
    v1::BackendHealth bh;
    EXPECT_STATUS(stub_->GetBackendHealth(Ctx().get(), v1::GetBackendHealthRequest(), &bh),
                  StatusCode::INVALID_ARGUMENT, "id: required");
  }
  {
    v1::UpdateBackendRequest req;
    EXPECT_STATUS(stub_->UpdateBackend(Ctx().get(), req, &bs), StatusCode::INVALID_ARGUMENT,
                  "id: required");
    req.set_id(b.backend().id());
    EXPECT_STATUS(stub_->UpdateBackend(Ctx().get(), req, &bs), StatusCode::INVALID_ARGUMENT,
                  "weight: nothing to update");
    req.set_weight(70000);
    const grpc::Status s = stub_->UpdateBackend(Ctx().get(), req, &bs);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << Describe(s);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "weight")) << s.error_message();
  }
  {
    v1::ExplainRequest req;
    EXPECT_STATUS(stub_->Explain(Ctx().get(), req, &ex), StatusCode::INVALID_ARGUMENT,
                  "src: required");
    req.set_src("198.51.100.7");
    EXPECT_STATUS(stub_->Explain(Ctx().get(), req, &ex), StatusCode::INVALID_ARGUMENT,
                  "dst: required");
    req.set_dst("10.0.0.1");
    EXPECT_STATUS(stub_->Explain(Ctx().get(), req, &ex), StatusCode::INVALID_ARGUMENT,
                  "protocol: required");
    req.set_protocol(v1::PROTOCOL_TCP);
    req.set_src_port(70000);
    EXPECT_STATUS(stub_->Explain(Ctx().get(), req, &ex), StatusCode::INVALID_ARGUMENT,
                  "src_port: 70000 is out of range");
    req.set_src_port(1);
    req.set_dst_port(65536);
    EXPECT_STATUS(stub_->Explain(Ctx().get(), req, &ex), StatusCode::INVALID_ARGUMENT,
                  "dst_port: 65536 is out of range");
  }
  ExpectUnchanged(before);
}

TEST_F(GrpcApiTest, NotFound) {
  MakePool("web");
  MakeVip("10.0.0.1", 80, "web");
  const Observed before = Observe();

  v1::BackendStatus bs;
  v1::Pool pool;
  {
    v1::DeleteVipRequest req;
    req.set_id(999);
    v1::DeleteVipResponse r;
    EXPECT_STATUS(stub_->DeleteVip(Ctx().get(), req, &r), StatusCode::NOT_FOUND, "id");
  }
  {
    v1::RemoveBackendRequest req;
    req.set_id(999);
    v1::RemoveBackendResponse r;
    EXPECT_STATUS(stub_->RemoveBackend(Ctx().get(), req, &r), StatusCode::NOT_FOUND, "id");
  }
  {
    v1::DrainBackendRequest req;
    req.set_id(999);
    EXPECT_STATUS(stub_->DrainBackend(Ctx().get(), req, &bs), StatusCode::NOT_FOUND, "id");
  }
  {
    v1::UpdateBackendRequest req;
    req.set_id(999);
    req.set_weight(2);
    EXPECT_STATUS(stub_->UpdateBackend(Ctx().get(), req, &bs), StatusCode::NOT_FOUND, "id");
  }
  {
    v1::GetBackendHealthRequest req;
    req.set_id(999);
    v1::BackendHealth r;
    EXPECT_STATUS(stub_->GetBackendHealth(Ctx().get(), req, &r), StatusCode::NOT_FOUND, "id");
  }
  {
    v1::DeletePoolRequest req;
    req.set_name("nope");
    v1::DeletePoolResponse r;
    EXPECT_STATUS(stub_->DeletePool(Ctx().get(), req, &r), StatusCode::NOT_FOUND, "name");
  }
  {
    v1::SetPoolAlgorithmRequest req;
    req.set_pool("nope");
    req.set_algorithm(v1::ALGORITHM_RANDOM);
    EXPECT_STATUS(stub_->SetPoolAlgorithm(Ctx().get(), req, &pool), StatusCode::NOT_FOUND, "pool");
  }
  {
    v1::AddBackendRequest req;
    req.set_pool("nope");
    req.mutable_backend()->set_address("10.1.0.1");
    req.mutable_backend()->set_port(80);
    EXPECT_STATUS(stub_->AddBackend(Ctx().get(), req, &bs), StatusCode::NOT_FOUND, "pool");
  }
  {
    v1::CreateVipRequest req;
    req.mutable_vip()->set_address("10.0.0.2");
    req.mutable_vip()->set_port(80);
    req.mutable_vip()->set_protocol(v1::PROTOCOL_TCP);
    req.mutable_vip()->set_pool("nope");
    v1::Vip r;
    EXPECT_STATUS(stub_->CreateVip(Ctx().get(), req, &r), StatusCode::NOT_FOUND, "vip.pool");
  }
  {
    v1::ListBackendsRequest req;
    req.set_pool("nope");
    v1::ListBackendsResponse r;
    EXPECT_STATUS(stub_->ListBackends(Ctx().get(), req, &r), StatusCode::NOT_FOUND, "pool");
  }
  {
    v1::ExplainRequest req;
    req.set_src("198.51.100.7");
    req.set_src_port(1);
    req.set_dst("10.9.9.9");
    req.set_dst_port(80);
    req.set_protocol(v1::PROTOCOL_TCP);
    v1::ExplainResponse r;
    const grpc::Status s = stub_->Explain(Ctx().get(), req, &r);
    EXPECT_EQ(s.error_code(), StatusCode::NOT_FOUND) << Describe(s);
  }
  ExpectUnchanged(before);
}

TEST_F(GrpcApiTest, AlreadyExists) {
  MakePool("web");
  const v1::BackendStatus b = MakeBackend("web", "10.1.0.1", 8080);
  const v1::Vip vip = MakeVip("10.0.0.1", 80, "web");
  const Observed before = Observe();

  {
    v1::CreatePoolRequest req;
    req.mutable_pool()->set_name("web");
    v1::Pool r;
    const grpc::Status s = stub_->CreatePool(Ctx().get(), req, &r);
    EXPECT_EQ(s.error_code(), StatusCode::ALREADY_EXISTS) << Describe(s);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "name")) << s.error_message();
  }
  {
    v1::AddBackendRequest req;
    req.set_pool("web");
    req.mutable_backend()->set_address("10.1.0.1");
    req.mutable_backend()->set_port(8080);
    v1::BackendStatus r;
    EXPECT_STATUS(stub_->AddBackend(Ctx().get(), req, &r), StatusCode::ALREADY_EXISTS, "backend");
  }
  {
    // The same id on another address is a clash too.
    v1::AddBackendRequest req;
    req.set_pool("web");
    req.mutable_backend()->set_id(b.backend().id());
    req.mutable_backend()->set_address("10.1.0.2");
    req.mutable_backend()->set_port(8080);
    v1::BackendStatus r;
    EXPECT_EQ(stub_->AddBackend(Ctx().get(), req, &r).error_code(), StatusCode::ALREADY_EXISTS);
  }
  {
    v1::CreateVipRequest req;
    req.mutable_vip()->set_address("10.0.0.1");
    req.mutable_vip()->set_port(80);
    req.mutable_vip()->set_protocol(v1::PROTOCOL_TCP);
    req.mutable_vip()->set_pool("web");
    v1::Vip r;
    EXPECT_STATUS(stub_->CreateVip(Ctx().get(), req, &r), StatusCode::ALREADY_EXISTS, "vip");
    req.mutable_vip()->set_address("10.0.0.2");
    req.mutable_vip()->set_id(vip.id());
    EXPECT_STATUS(stub_->CreateVip(Ctx().get(), req, &r), StatusCode::ALREADY_EXISTS, "vip.id");
  }
  ExpectUnchanged(before);
}

TEST_F(GrpcApiTest, FailedPreconditionWhilePoolInUse) {
  MakePool("web");
  MakeVip("10.0.0.1", 80, "web");
  const Observed before = Observe();
  v1::DeletePoolRequest req;
  req.set_name("web");
  v1::DeletePoolResponse r;
  const grpc::Status s = stub_->DeletePool(Ctx().get(), req, &r);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "name")) << s.error_message();
  ExpectUnchanged(before);
}

// --------------------------------------------------------------- auth

// Calls every mutating RPC with `token` (maybe empty or wrong); returns the
// codes in RPC order.
std::vector<StatusCode> CallEveryMutation(v1::LoadBalancerAdmin::Stub* stub,
                                          const std::string& token) {
  std::vector<StatusCode> codes;
  {
    v1::CreatePoolRequest req;
    req.mutable_pool()->set_name("evil");
    v1::Pool r;
    codes.push_back(stub->CreatePool(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::CreateVipRequest req;
    req.mutable_vip()->set_address("10.0.0.66");
    req.mutable_vip()->set_port(80);
    req.mutable_vip()->set_protocol(v1::PROTOCOL_TCP);
    req.mutable_vip()->set_pool("web");
    v1::Vip r;
    codes.push_back(stub->CreateVip(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::DeleteVipRequest req;
    req.set_id(1);
    v1::DeleteVipResponse r;
    codes.push_back(stub->DeleteVip(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::DeletePoolRequest req;
    req.set_name("web");
    v1::DeletePoolResponse r;
    codes.push_back(stub->DeletePool(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::SetPoolAlgorithmRequest req;
    req.set_pool("web");
    req.set_algorithm(v1::ALGORITHM_RANDOM);
    v1::Pool r;
    codes.push_back(stub->SetPoolAlgorithm(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::SetHealthCheckRequest req;
    req.set_pool("web");
    req.mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
    v1::Pool r;
    codes.push_back(stub->SetHealthCheck(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::AddBackendRequest req;
    req.set_pool("web");
    req.mutable_backend()->set_address("10.1.0.66");
    req.mutable_backend()->set_port(80);
    v1::BackendStatus r;
    codes.push_back(stub->AddBackend(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::UpdateBackendRequest req;
    req.set_id(1);
    req.set_weight(9);
    v1::BackendStatus r;
    codes.push_back(stub->UpdateBackend(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::DrainBackendRequest req;
    req.set_id(1);
    v1::BackendStatus r;
    codes.push_back(stub->DrainBackend(Ctx(token).get(), req, &r).error_code());
  }
  {
    v1::RemoveBackendRequest req;
    req.set_id(1);
    v1::RemoveBackendResponse r;
    codes.push_back(stub->RemoveBackend(Ctx(token).get(), req, &r).error_code());
  }
  return codes;
}

class GrpcAuthTest : public GrpcApiTest {
 protected:
  void SetUp() override {
    GrpcServerOptions o;
    o.token = kToken;
    ASSERT_TRUE(h_.Start(o));
    stub_ = h_.Stub();
    v1::CreatePoolRequest req;
    req.mutable_pool()->set_name("web");
    v1::Pool p;
    ASSERT_TRUE(stub_->CreatePool(Ctx(kToken).get(), req, &p).ok());
    v1::AddBackendRequest b;
    b.set_pool("web");
    b.mutable_backend()->set_address("10.1.0.1");
    b.mutable_backend()->set_port(80);
    v1::BackendStatus bs;
    ASSERT_TRUE(stub_->AddBackend(Ctx(kToken).get(), b, &bs).ok());
    ASSERT_EQ(bs.backend().id(), 1u);
  }
  static constexpr char kToken[] = "s3cret-token";
};

TEST_F(GrpcAuthTest, MutationsWithoutTheTokenAreUnauthenticatedAndChangeNothing) {
  const Observed before = Observe();
  for (const std::string& token : {std::string(), std::string("wrong-token"),
                                   std::string(kToken) + "x", std::string("s3cret-toke")}) {
    const std::vector<StatusCode> codes = CallEveryMutation(stub_.get(), token);
    ASSERT_EQ(codes.size(), 10u);
    for (size_t i = 0; i < codes.size(); ++i) {
      EXPECT_EQ(codes[i], StatusCode::UNAUTHENTICATED)
          << "mutation #" << i << " token '" << token << "'";
    }
  }
  {
    // A token in the wrong scheme is no token.
    auto ctx = Ctx();
    ctx->AddMetadata("authorization", kToken);
    v1::CreatePoolRequest req;
    req.mutable_pool()->set_name("evil");
    v1::Pool r;
    EXPECT_STATUS(stub_->CreatePool(ctx.get(), req, &r), StatusCode::UNAUTHENTICATED,
                  "authorization");
  }
  ExpectUnchanged(before);
}

TEST_F(GrpcAuthTest, ReadsAreOpenOnLoopbackAndTheTokenWorks) {
  v1::ListPoolsResponse pools;
  EXPECT_TRUE(stub_->ListPools(Ctx().get(), {}, &pools).ok());
  v1::ListBackendsResponse backends;
  EXPECT_TRUE(stub_->ListBackends(Ctx().get(), {}, &backends).ok());
  v1::TablesInfo tables;
  EXPECT_TRUE(stub_->GetTables(Ctx().get(), {}, &tables).ok());

  const uint64_t version = h_.cp->version();
  const std::vector<StatusCode> codes = CallEveryMutation(stub_.get(), kToken);
  // Authenticated, so each reaches the control plane (the first two succeed;
  // later ones may be refused on their merits, never for auth).
  EXPECT_EQ(codes[0], StatusCode::OK);
  for (StatusCode c : codes) EXPECT_NE(c, StatusCode::UNAUTHENTICATED);
  EXPECT_GT(h_.cp->version(), version);
}

// The service as StartGrpcServer builds it for a non-loopback listener
// (reads need the token too), served here on loopback: tests may not listen
// off this host.
TEST(GrpcAuthPolicyTest, ReadsNeedTheTokenOffLoopback) {
  Harness h;
  ASSERT_TRUE(h.Start());
  AdminService service(h.cp.get(), "tok", /*reads_need_token=*/true, 16, 4);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::LoadBalancerAdmin::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  v1::ListVipsResponse r;
  EXPECT_EQ(stub->ListVips(Ctx().get(), {}, &r).error_code(), StatusCode::UNAUTHENTICATED);
  v1::Stats st;
  EXPECT_EQ(stub->GetStats(Ctx("nope").get(), {}, &st).error_code(), StatusCode::UNAUTHENTICATED);
  {
    auto ctx = Ctx();
    auto reader = stub->Watch(ctx.get(), {});
    v1::Event e;
    EXPECT_FALSE(reader->Read(&e));
    EXPECT_EQ(reader->Finish().error_code(), StatusCode::UNAUTHENTICATED);
  }
  EXPECT_TRUE(stub->ListVips(Ctx("tok").get(), {}, &r).ok());
  server->Shutdown(std::chrono::system_clock::now() + kCallTimeout);
}

TEST(GrpcServerOptionsTest, LoopbackListenAddresses) {
  for (const char* a : {"127.0.0.1:50051", "127.1.2.3:0", "[::1]:50051", "localhost:50051",
                        "unix:/tmp/lb.sock", "ipv4:127.0.0.1:1", "[::ffff:127.0.0.1]:80"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(a)) << a;
  }
  for (const char* a : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051", "example.com:50051",
                        "[2001:db8::1]:80", ":50051", "[::1:50051"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(a)) << a;
  }
}

TEST(GrpcServerOptionsTest, RefusedOptionsNameTheOption) {
  Harness h;
  ASSERT_TRUE(h.Start());
  GrpcServerOptions o;
  o.listen_address = "0.0.0.0:0";
  auto s = StartGrpcServer(o, h.cp.get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "listen_address:")) << s.status();

  o.listen_address = "127.0.0.1:0";
  o.token = "has space";
  s = StartGrpcServer(o, h.cp.get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "token:")) << s.status();

  o.token = "";
  o.tls_cert_file = h.dir.path() + "/cert.pem";
  s = StartGrpcServer(o, h.cp.get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "tls_key_file:")) << s.status();

  o.tls_key_file = h.dir.path() + "/key.pem";
  s = StartGrpcServer(o, h.cp.get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "tls_cert_file:")) << s.status();

  // A port that is taken (by h's own server) is an error, not a shared port.
  o = GrpcServerOptions();
  o.listen_address = h.Target();
  s = StartGrpcServer(o, h.cp.get());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_TRUE(absl::StartsWith(s.status().message(), "listen_address:")) << s.status();
}

TEST(GrpcStatusTest, EveryAbslCodeMapsToTheGrpcCodeOfTheSameName) {
  const std::pair<absl::StatusCode, StatusCode> pairs[] = {
      {absl::StatusCode::kCancelled, StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [absl_code, grpc_code] : pairs) {
    const grpc::Status s = ToGrpcStatus(absl::Status(absl_code, "field.x: why"));
    EXPECT_EQ(s.error_code(), grpc_code) << absl::StatusCodeToString(absl_code);
    EXPECT_EQ(s.error_message(), "field.x: why");
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

// -------------------------------------------------------------- Watch

TEST_F(GrpcApiTest, WatchSeesThePublishOfAMutation) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  auto reader = stub_->Watch(&ctx, {});
  v1::Event e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.kind(), "subscribed");
  const uint64_t gen = e.generation();
  EXPECT_EQ(gen, h_.cp->generation());

  MakePool("web");
  bool saw_publish = false;
  while (!saw_publish && reader->Read(&e)) {
    if (e.kind() == "publish") {
      saw_publish = true;
      EXPECT_GT(e.generation(), gen);
      EXPECT_GT(e.unix_ms(), 0u);
    }
  }
  EXPECT_TRUE(saw_publish);

  // A refused change is an event too.
  v1::CreatePoolRequest dup;
  dup.mutable_pool()->set_name("web");
  v1::Pool p;
  EXPECT_EQ(stub_->CreatePool(Ctx().get(), dup, &p).error_code(), StatusCode::ALREADY_EXISTS);
  bool saw_refused = false;
  while (!saw_refused && reader->Read(&e)) saw_refused = e.kind() == "refused";
  EXPECT_TRUE(saw_refused);

  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), StatusCode::CANCELLED);
}

TEST(GrpcWatchTest, WatcherLimitAndShutdownWithAnOpenStream) {
  Harness h;
  GrpcServerOptions o;
  o.max_watchers = 1;
  ASSERT_TRUE(h.Start(o));
  auto stub = h.Stub();
  grpc::ClientContext first;
  auto reader = stub->Watch(&first, {});
  v1::Event e;
  ASSERT_TRUE(reader->Read(&e));
  {
    auto ctx = Ctx();
    auto second = stub->Watch(ctx.get(), {});
    EXPECT_FALSE(second->Read(&e));
    const grpc::Status s = second->Finish();
    EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED) << Describe(s);
  }
  // Shutdown with a deadline ends the open stream instead of waiting for
  // the client forever.
  const auto start = std::chrono::steady_clock::now();
  h.server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(3));
  while (reader->Read(&e)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
}

// A client that does not read: gRPC flow control blocks the server's
// writes, the stream's queue (8 events) overflows, and the client is told
// how many events it lost. Nothing is lost silently: events read + dropped
// = events emitted, and the ones after the note are the newest.
TEST(GrpcWatchTest, SlowClientLosesTheOldestEventsAndIsTold) {
  Harness h;
  GrpcServerOptions o;
  o.watch_queue_events = 8;
  ASSERT_TRUE(h.Start(o));
  auto stub = h.Stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  auto reader = stub->Watch(&ctx, {});
  v1::Event e;
  ASSERT_TRUE(reader->Read(&e));
  ASSERT_EQ(e.kind(), "subscribed");

  // Each refused call is one "refused" event naming its pool; far more bytes
  // than the HTTP/2 window lets through unread.
  constexpr int kEvents = 20000;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(h.cp->DeletePool(absl::StrCat("nope-", i)).code(), absl::StatusCode::kNotFound);
  }

  // Overflow may happen more than once (gRPC lets some bytes through before
  // it blocks the writer again); each episode ends with its own note.
  uint64_t dropped = 0;
  int notes = 0;
  uint64_t delivered = 0;
  int last_index = -1;
  while (delivered + dropped < kEvents && reader->Read(&e)) {
    if (e.kind() == "dropped") {
      uint64_t n = 0;
      ASSERT_TRUE(absl::SimpleAtoi(
          absl::StripPrefix(absl::StripSuffix(e.message(), " events"), "dropped "), &n))
          << e.message();
      EXPECT_GT(n, 0u);
      dropped += n;
      ++notes;
      continue;
    }
    ASSERT_EQ(e.kind(), "refused") << e.ShortDebugString();
    ++delivered;
    const size_t at = e.message().find("nope-");
    ASSERT_NE(at, std::string::npos) << e.message();
    int index = -1;
    ASSERT_TRUE(
        absl::SimpleAtoi(e.message().substr(at + 5, e.message().find('"', at) - at - 5), &index))
        << e.message();
    EXPECT_GT(index, last_index) << "out of order";
    last_index = index;
  }
  EXPECT_GT(notes, 0);
  EXPECT_EQ(delivered + dropped, static_cast<uint64_t>(kEvents));
  // Dropping takes the oldest: what arrives is in order and ends with the
  // newest event.
  EXPECT_EQ(last_index, kEvents - 1);
  ctx.TryCancel();
  reader->Finish();
}

TEST(EventQueueTest, FullQueueDropsTheOldestAndCountsThem) {
  EventQueue q(3);
  for (int i = 1; i <= 5; ++i) {
    v1::Event e;
    e.set_generation(i);
    q.Push(e);
  }
  std::vector<v1::Event> out;
  EXPECT_EQ(q.PopAll(absl::Milliseconds(10), &out), 2u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].generation(), 3u);
  EXPECT_EQ(out[2].generation(), 5u);
  out.clear();
  const absl::Time start = absl::Now();
  EXPECT_EQ(q.PopAll(absl::Milliseconds(50), &out), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(40));  // it waited
}

TEST(EventQueueTest, PopWakesOnPush) {
  EventQueue q(8);
  std::thread producer([&q] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    q.Push(v1::Event());
  });
  std::vector<v1::Event> out;
  const absl::Time start = absl::Now();
  q.PopAll(absl::Seconds(10), &out);
  producer.join();
  EXPECT_EQ(out.size(), 1u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// ------------------------------------------ health, reflection, TLS

// The parts of grpc/health/v1/health.proto and
// grpc/reflection/v1alpha/reflection.proto this test uses.
constexpr char kHealthProto[] = R"pb(
  name: "test_health.proto"
  package: "grpc.health.v1"
  syntax: "proto3"
  message_type {
    name: "HealthCheckRequest"
    field { name: "service" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  }
  message_type {
    name: "HealthCheckResponse"
    field {
      name: "status"
      number: 1
      label: LABEL_OPTIONAL
      type: TYPE_ENUM
      type_name: ".grpc.health.v1.HealthCheckResponse.ServingStatus"
    }
    enum_type {
      name: "ServingStatus"
      value { name: "UNKNOWN" number: 0 }
      value { name: "SERVING" number: 1 }
      value { name: "NOT_SERVING" number: 2 }
      value { name: "SERVICE_UNKNOWN" number: 3 }
    }
  }
)pb";

constexpr char kReflectionProto[] = R"pb(
  name: "test_reflection.proto"
  package: "grpc.reflection.v1alpha"
  syntax: "proto3"
  message_type {
    name: "ServerReflectionRequest"
    field { name: "host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "file_containing_symbol" number: 4 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "list_services" number: 7 label: LABEL_OPTIONAL type: TYPE_STRING }
  }
  message_type {
    name: "ServerReflectionResponse"
    field { name: "valid_host" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field {
      name: "file_descriptor_response"
      number: 4
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.FileDescriptorResponse"
    }
    field {
      name: "list_services_response"
      number: 6
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.ListServiceResponse"
    }
  }
  message_type {
    name: "FileDescriptorResponse"
    field { name: "file_descriptor_proto" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
  }
  message_type {
    name: "ListServiceResponse"
    field {
      name: "service"
      number: 1
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".grpc.reflection.v1alpha.ServiceResponse"
    }
  }
  message_type {
    name: "ServiceResponse"
    field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  }
)pb";

// Messages of the two protos above, as DynamicMessages.
class DynamicProtos {
 public:
  DynamicProtos() {
    for (const char* text : {kHealthProto, kReflectionProto}) {
      google::protobuf::FileDescriptorProto file;
      EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &file));
      EXPECT_NE(pool_.BuildFile(file), nullptr);
    }
  }
  // A new message of `type`, filled from text format.
  std::unique_ptr<google::protobuf::Message> New(const std::string& type,
                                                 const std::string& text = "") {
    const google::protobuf::Descriptor* d = pool_.FindMessageTypeByName(type);
    EXPECT_NE(d, nullptr) << type;
    std::unique_ptr<google::protobuf::Message> m(factory_.GetPrototype(d)->New());
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, m.get())) << text;
    return m;
  }

 private:
  google::protobuf::DescriptorPool pool_;
  google::protobuf::DynamicMessageFactory factory_;
};

std::string TextOf(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::TextFormat::PrintToString(m, &out);
  return out;
}

TEST_F(GrpcApiTest, HealthServiceReportsServing) {
  DynamicProtos protos;
  auto channel = h_.Channel();
  const grpc::internal::RpcMethod check("/grpc.health.v1.Health/Check",
                                        grpc::internal::RpcMethod::NORMAL_RPC);
  for (const std::string service : {"", "lb.v1.LoadBalancerAdmin"}) {
    auto req = protos.New("grpc.health.v1.HealthCheckRequest", "service: '" + service + "'");
    auto resp = protos.New("grpc.health.v1.HealthCheckResponse");
    const grpc::Status s =
        grpc::internal::BlockingUnaryCall<google::protobuf::Message, google::protobuf::Message>(
            channel.get(), check, Ctx().get(), *req, resp.get());
    ASSERT_TRUE(s.ok()) << Describe(s);
    EXPECT_EQ(TextOf(*resp), "status: SERVING\n") << "service '" << service << "'";
  }
  auto req = protos.New("grpc.health.v1.HealthCheckRequest", "service: 'no.such.Service'");
  auto resp = protos.New("grpc.health.v1.HealthCheckResponse");
  EXPECT_EQ(
      (grpc::internal::BlockingUnaryCall<google::protobuf::Message, google::protobuf::Message>(
           channel.get(), check, Ctx().get(), *req, resp.get()))
          .error_code(),
      StatusCode::NOT_FOUND);
}

TEST_F(GrpcApiTest, ReflectionListsTheAdminServiceAndServesItsSchema) {
  DynamicProtos protos;
  auto channel = h_.Channel();
  const grpc::internal::RpcMethod info(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::BIDI_STREAMING);
  auto ctx = Ctx();
  std::unique_ptr<grpc::ClientReaderWriter<google::protobuf::Message, google::protobuf::Message>>
      stream(grpc::internal::ClientReaderWriterFactory<
             google::protobuf::Message, google::protobuf::Message>::Create(channel.get(), info,
                                                                           ctx.get()));
  auto list = protos.New("grpc.reflection.v1alpha.ServerReflectionRequest", "list_services: '*'");
  ASSERT_TRUE(stream->Write(*list));
  auto resp = protos.New("grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_TRUE(stream->Read(resp.get()));
  const std::string listed = TextOf(*resp);
  EXPECT_TRUE(absl::StrContains(listed, "name: \"lb.v1.LoadBalancerAdmin\"")) << listed;
  EXPECT_TRUE(absl::StrContains(listed, "name: \"grpc.health.v1.Health\"")) << listed;

  auto file = protos.New("grpc.reflection.v1alpha.ServerReflectionRequest",
                         "file_containing_symbol: 'lb.v1.LoadBalancerAdmin'");
  ASSERT_TRUE(stream->Write(*file));
  auto files = protos.New("grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_TRUE(stream->Read(files.get()));
  // The first descriptor is the file that defines the symbol.
  const google::protobuf::Message& fdr = files->GetReflection()->GetMessage(
      *files, files->GetDescriptor()->FindFieldByName("file_descriptor_response"));
  const google::protobuf::FieldDescriptor* bytes_field =
      fdr.GetDescriptor()->FindFieldByName("file_descriptor_proto");
  ASSERT_GE(fdr.GetReflection()->FieldSize(fdr, bytes_field), 1) << TextOf(*files);
  google::protobuf::FileDescriptorProto admin;
  ASSERT_TRUE(admin.ParseFromString(fdr.GetReflection()->GetRepeatedString(fdr, bytes_field, 0)));
  EXPECT_EQ(admin.name(), "lb/v1/admin.proto");
  ASSERT_EQ(admin.service_size(), 1);
  EXPECT_EQ(admin.service(0).name(), "LoadBalancerAdmin");
  EXPECT_EQ(admin.service(0).method_size(), google::protobuf::DescriptorPool::generated_pool()
                                                ->FindServiceByName("lb.v1.LoadBalancerAdmin")
                                                ->method_count());
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST(GrpcTlsTest, TlsServerAcceptsTlsClientsOnly) {
  Harness h;
  const std::string cert = h.dir.path() + "/cert.pem";
  const std::string key = h.dir.path() + "/key.pem";
  const std::string cmd = absl::StrCat(
      "timeout 30 openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  GrpcServerOptions o;
  o.tls_cert_file = cert;
  o.tls_key_file = key;
  ASSERT_TRUE(h.Start(o));

  std::ifstream in(cert);
  const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem;
  auto tls =
      v1::LoadBalancerAdmin::NewStub(grpc::CreateChannel(h.Target(), grpc::SslCredentials(ssl)));
  v1::ListVipsResponse r;
  const grpc::Status s = tls->ListVips(Ctx().get(), {}, &r);
  EXPECT_TRUE(s.ok()) << Describe(s);

  v1::ListVipsResponse r2;
  EXPECT_EQ(h.Stub()->ListVips(Ctx().get(), {}, &r2).error_code(), StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace lb
