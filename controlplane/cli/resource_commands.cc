// lbctl's commands that change or list the configured resources: vip,
// pool, backend. Each parses its arguments (a bad one is a usage error),
// makes one call and prints the answer through render.h.
#include "absl/strings/str_cat.h"
#include "controlplane/cli/arguments.h"
#include "controlplane/cli/lbctl.h"
#include "controlplane/cli/render.h"

namespace lb::cli {

int Lbctl::VipAdd(const ParsedArgs& a) {
  auto hp = ParseHostPort("ADDRESS:PORT", a.positional[0]);
  if (!hp.ok()) return Usage(hp.status().message());
  auto proto = ParseEnum<v1::Protocol>("protocol", a.positional[1], "PROTOCOL_");
  if (!proto.ok()) return Usage(proto.status().message());
  v1::CreateVipRequest req;
  v1::Vip* vip = req.mutable_vip();
  vip->set_address(hp->host);
  vip->set_port(hp->port);
  vip->set_protocol(*proto);
  vip->set_pool(a.Get("pool"));
  vip->set_fragment_tolerant(a.Switch("fragment_tolerant"));
  if (a.Has("id")) {
    auto id = ParseU32("--id", a.Get("id"));
    if (!id.ok()) return Usage(id.status().message());
    vip->set_id(*id);
  }
  v1::Vip resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->CreateVip(ctx.get(), req, &resp);
  return Show(s, resp, VipText);
}

int Lbctl::VipList(const ParsedArgs& /*a*/) {
  v1::ListVipsResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->ListVips(ctx.get(), v1::ListVipsRequest(), &resp);
  return Show(s, resp, [](const v1::ListVipsResponse& r) { return VipsText(r.vips()); });
}

int Lbctl::VipRm(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::DeleteVipRequest req;
  req.set_id(*id);
  v1::DeleteVipResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->DeleteVip(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::DeleteVipResponse& r) {
    return absl::StrCat("removed vip ", r.id(), "\n");
  });
}

int Lbctl::PoolAdd(const ParsedArgs& a) {
  v1::CreatePoolRequest req;
  v1::Pool* pool = req.mutable_pool();
  pool->set_name(a.positional[0]);
  if (a.Has("algorithm")) {
    auto algo = ParseEnum<v1::Algorithm>("--algorithm", a.Get("algorithm"), "ALGORITHM_");
    if (!algo.ok()) return Usage(algo.status().message());
    pool->set_algorithm(*algo);
  }
  pool->set_sticky_sessions(a.Switch("sticky"));
  if (a.Has("sticky_ttl")) {
    auto ttl = ParseU32("--sticky_ttl", a.Get("sticky_ttl"));
    if (!ttl.ok()) return Usage(ttl.status().message());
    pool->set_sticky_ttl_seconds(*ttl);
  }
  if (a.Has("drain_timeout")) {
    auto t = ParseU32("--drain_timeout", a.Get("drain_timeout"));
    if (!t.ok()) return Usage(t.status().message());
    pool->set_drain_timeout_seconds(*t);
  }
  if (a.Has("kind")) {
    auto kind = ParseEnum<v1::PoolKind>("--kind", a.Get("kind"), "POOL_KIND_");
    if (!kind.ok()) return Usage(kind.status().message());
    pool->set_kind(*kind);
  }
  v1::Pool resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->CreatePool(ctx.get(), req, &resp);
  return Show(s, resp, PoolText);
}

int Lbctl::PoolList(const ParsedArgs& /*a*/) {
  v1::ListPoolsResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->ListPools(ctx.get(), v1::ListPoolsRequest(), &resp);
  return Show(s, resp, PoolsText);
}

int Lbctl::PoolRm(const ParsedArgs& a) {
  v1::DeletePoolRequest req;
  req.set_name(a.positional[0]);
  v1::DeletePoolResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->DeletePool(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::DeletePoolResponse& r) {
    return absl::StrCat("removed pool ", r.name(), "\n");
  });
}

int Lbctl::PoolSetAlgorithm(const ParsedArgs& a) {
  auto algo = ParseEnum<v1::Algorithm>("ALGORITHM", a.positional[1], "ALGORITHM_");
  if (!algo.ok()) return Usage(algo.status().message());
  v1::SetPoolAlgorithmRequest req;
  req.set_pool(a.positional[0]);
  req.set_algorithm(*algo);
  req.set_sticky_sessions(a.Switch("sticky"));
  if (a.Has("sticky_ttl")) {
    auto ttl = ParseU32("--sticky_ttl", a.Get("sticky_ttl"));
    if (!ttl.ok()) return Usage(ttl.status().message());
    req.set_sticky_ttl_seconds(*ttl);
  }
  v1::Pool resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->SetPoolAlgorithm(ctx.get(), req, &resp);
  return Show(s, resp, PoolText);
}

int Lbctl::PoolSetHealthCheck(const ParsedArgs& a) {
  auto kind = ParseEnum<v1::HealthCheckKind>("KIND", a.positional[1], "HEALTH_CHECK_KIND_");
  if (!kind.ok()) return Usage(kind.status().message());
  v1::SetHealthCheckRequest req;
  req.set_pool(a.positional[0]);
  v1::HealthCheck* hc = req.mutable_health_check();
  hc->set_kind(*kind);
  struct U32Flag {
    const char* name;
    void (v1::HealthCheck::*set)(uint32_t);
  };
  const U32Flag numbers[] = {
      {"interval_ms", &v1::HealthCheck::set_interval_ms},
      {"timeout_ms", &v1::HealthCheck::set_timeout_ms},
      {"healthy_threshold", &v1::HealthCheck::set_healthy_threshold},
      {"unhealthy_threshold", &v1::HealthCheck::set_unhealthy_threshold},
      {"http_max_body_bytes", &v1::HealthCheck::set_http_max_body_bytes},
      {"min_state_duration_ms", &v1::HealthCheck::set_min_state_duration_ms},
  };
  for (const U32Flag& f : numbers) {
    if (!a.Has(f.name)) continue;
    auto v = ParseU32(absl::StrCat("--", f.name), a.Get(f.name));
    if (!v.ok()) return Usage(v.status().message());
    (hc->*f.set)(*v);
  }
  hc->set_http_path(a.Get("http_path"));
  hc->set_http_host(a.Get("http_host"));
  for (const std::string& arg : a.GetAll("script")) hc->add_script(arg);
  hc->set_through_tunnel(a.Switch("through_tunnel"));
  v1::Pool resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->SetHealthCheck(ctx.get(), req, &resp);
  return Show(s, resp, PoolText);
}

int Lbctl::BackendAdd(const ParsedArgs& a) {
  auto hp = ParseHostPort("ADDRESS:PORT", a.positional[0]);
  if (!hp.ok()) return Usage(hp.status().message());
  v1::AddBackendRequest req;
  req.set_pool(a.Get("pool"));
  v1::Backend* b = req.mutable_backend();
  b->set_address(hp->host);
  b->set_port(hp->port);
  if (a.Has("weight")) {
    auto w = ParseU32("--weight", a.Get("weight"));
    if (!w.ok()) return Usage(w.status().message());
    b->set_weight(*w);
  }
  if (a.Has("max_connections")) {
    auto m = ParseU32("--max_connections", a.Get("max_connections"));
    if (!m.ok()) return Usage(m.status().message());
    b->set_max_connections(*m);
  }
  if (a.Has("id")) {
    auto id = ParseU32("--id", a.Get("id"));
    if (!id.ok()) return Usage(id.status().message());
    b->set_id(*id);
  }
  if (a.Has("state")) {
    auto st = ParseEnum<v1::BackendState>("--state", a.Get("state"), "BACKEND_STATE_");
    if (!st.ok()) return Usage(st.status().message());
    b->set_state(*st);
  }
  b->set_health_check_path(a.Get("health_check_path"));
  v1::BackendStatus resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->AddBackend(ctx.get(), req, &resp);
  return Show(s, resp, BackendText);
}

int Lbctl::BackendList(const ParsedArgs& a) {
  v1::ListBackendsRequest req;
  req.set_pool(a.Get("pool"));
  v1::ListBackendsResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->ListBackends(ctx.get(), req, &resp);
  return Show(s, resp, BackendsText);
}

int Lbctl::BackendUpdate(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::UpdateBackendRequest req;
  req.set_id(*id);
  if (a.Has("weight")) {
    auto w = ParseU32("--weight", a.Get("weight"));
    if (!w.ok()) return Usage(w.status().message());
    req.set_weight(*w);
  }
  if (a.Has("max_connections")) {
    auto m = ParseU32("--max_connections", a.Get("max_connections"));
    if (!m.ok()) return Usage(m.status().message());
    req.set_max_connections(*m);
  }
  if (a.Has("state")) {
    auto st = ParseEnum<v1::BackendState>("--state", a.Get("state"), "BACKEND_STATE_");
    if (!st.ok()) return Usage(st.status().message());
    req.set_state(*st);
  }
  if (!req.has_weight() && !req.has_max_connections() && !req.has_state()) {
    return Usage("nothing to update: give --weight, --max_connections or --state");
  }
  v1::BackendStatus resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->UpdateBackend(ctx.get(), req, &resp);
  return Show(s, resp, BackendText);
}

int Lbctl::BackendDrain(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::DrainBackendRequest req;
  req.set_id(*id);
  v1::BackendStatus resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->DrainBackend(ctx.get(), req, &resp);
  return Show(s, resp, BackendText);
}

int Lbctl::BackendRm(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::RemoveBackendRequest req;
  req.set_id(*id);
  v1::RemoveBackendResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->RemoveBackend(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::RemoveBackendResponse& r) {
    return absl::StrCat("removed backend ", r.id(),
                        " (drained_connections=", r.drained_connections(), ")\n");
  });
}

int Lbctl::BackendHealth(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::GetBackendHealthRequest req;
  req.set_id(*id);
  v1::BackendHealth resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->GetBackendHealth(ctx.get(), req, &resp);
  return Show(s, resp, BackendHealthText);
}

}  // namespace lb::cli
