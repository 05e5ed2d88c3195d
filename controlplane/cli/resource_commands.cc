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
  if (absl::Status s = SetU32Flags(a, {{"id", &v1::Vip::set_id}}, vip); !s.ok()) {
    return Usage(s.message());
  }
  return Call(&v1::LoadBalancerAdmin::Stub::CreateVip, req, VipText);
}

int Lbctl::VipList(const ParsedArgs& /*a*/) {
  return Call(&v1::LoadBalancerAdmin::Stub::ListVips, v1::ListVipsRequest(),
              [](const v1::ListVipsResponse& r) { return VipsText(r.vips()); });
}

int Lbctl::VipRm(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::DeleteVipRequest req;
  req.set_id(*id);
  return Call(&v1::LoadBalancerAdmin::Stub::DeleteVip, req, [](const v1::DeleteVipResponse& r) {
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
  if (absl::Status s = SetU32Flags(a,
                                   {{"sticky_ttl", &v1::Pool::set_sticky_ttl_seconds},
                                    {"drain_timeout", &v1::Pool::set_drain_timeout_seconds}},
                                   pool);
      !s.ok()) {
    return Usage(s.message());
  }
  if (a.Has("kind")) {
    auto kind = ParseEnum<v1::PoolKind>("--kind", a.Get("kind"), "POOL_KIND_");
    if (!kind.ok()) return Usage(kind.status().message());
    pool->set_kind(*kind);
  }
  return Call(&v1::LoadBalancerAdmin::Stub::CreatePool, req, PoolText);
}

int Lbctl::PoolList(const ParsedArgs& /*a*/) {
  return Call(&v1::LoadBalancerAdmin::Stub::ListPools, v1::ListPoolsRequest(), PoolsText);
}

int Lbctl::PoolRm(const ParsedArgs& a) {
  v1::DeletePoolRequest req;
  req.set_name(a.positional[0]);
  return Call(&v1::LoadBalancerAdmin::Stub::DeletePool, req, [](const v1::DeletePoolResponse& r) {
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
  if (absl::Status s = SetU32Flags(
          a, {{"sticky_ttl", &v1::SetPoolAlgorithmRequest::set_sticky_ttl_seconds}}, &req);
      !s.ok()) {
    return Usage(s.message());
  }
  return Call(&v1::LoadBalancerAdmin::Stub::SetPoolAlgorithm, req, PoolText);
}

int Lbctl::PoolSetHealthCheck(const ParsedArgs& a) {
  auto kind = ParseEnum<v1::HealthCheckKind>("KIND", a.positional[1], "HEALTH_CHECK_KIND_");
  if (!kind.ok()) return Usage(kind.status().message());
  v1::SetHealthCheckRequest req;
  req.set_pool(a.positional[0]);
  v1::HealthCheck* hc = req.mutable_health_check();
  hc->set_kind(*kind);
  if (absl::Status s =
          SetU32Flags(a,
                      {{"interval_ms", &v1::HealthCheck::set_interval_ms},
                       {"timeout_ms", &v1::HealthCheck::set_timeout_ms},
                       {"healthy_threshold", &v1::HealthCheck::set_healthy_threshold},
                       {"unhealthy_threshold", &v1::HealthCheck::set_unhealthy_threshold},
                       {"http_max_body_bytes", &v1::HealthCheck::set_http_max_body_bytes},
                       {"min_state_duration_ms", &v1::HealthCheck::set_min_state_duration_ms}},
                      hc);
      !s.ok()) {
    return Usage(s.message());
  }
  hc->set_http_path(a.Get("http_path"));
  hc->set_http_host(a.Get("http_host"));
  for (const std::string& arg : a.GetAll("script")) hc->add_script(arg);
  hc->set_through_tunnel(a.Switch("through_tunnel"));
  return Call(&v1::LoadBalancerAdmin::Stub::SetHealthCheck, req, PoolText);
}

int Lbctl::BackendAdd(const ParsedArgs& a) {
  auto hp = ParseHostPort("ADDRESS:PORT", a.positional[0]);
  if (!hp.ok()) return Usage(hp.status().message());
  v1::AddBackendRequest req;
  req.set_pool(a.Get("pool"));
  v1::Backend* b = req.mutable_backend();
  b->set_address(hp->host);
  b->set_port(hp->port);
  if (absl::Status s = SetU32Flags(a,
                                   {{"weight", &v1::Backend::set_weight},
                                    {"max_connections", &v1::Backend::set_max_connections},
                                    {"id", &v1::Backend::set_id}},
                                   b);
      !s.ok()) {
    return Usage(s.message());
  }
  if (a.Has("state")) {
    auto st = ParseEnum<v1::BackendState>("--state", a.Get("state"), "BACKEND_STATE_");
    if (!st.ok()) return Usage(st.status().message());
    b->set_state(*st);
  }
  b->set_health_check_path(a.Get("health_check_path"));
  return Call(&v1::LoadBalancerAdmin::Stub::AddBackend, req, BackendText);
}

int Lbctl::BackendList(const ParsedArgs& a) {
  v1::ListBackendsRequest req;
  req.set_pool(a.Get("pool"));
  return Call(&v1::LoadBalancerAdmin::Stub::ListBackends, req, BackendsText);
}

int Lbctl::BackendUpdate(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::UpdateBackendRequest req;
  req.set_id(*id);
  if (absl::Status s =
          SetU32Flags(a,
                      {{"weight", &v1::UpdateBackendRequest::set_weight},
                       {"max_connections", &v1::UpdateBackendRequest::set_max_connections}},
                      &req);
      !s.ok()) {
    return Usage(s.message());
  }
  if (a.Has("state")) {
    auto st = ParseEnum<v1::BackendState>("--state", a.Get("state"), "BACKEND_STATE_");
    if (!st.ok()) return Usage(st.status().message());
    req.set_state(*st);
  }
  if (!req.has_weight() && !req.has_max_connections() && !req.has_state()) {
    return Usage("nothing to update: give --weight, --max_connections or --state");
  }
  return Call(&v1::LoadBalancerAdmin::Stub::UpdateBackend, req, BackendText);
}

int Lbctl::BackendDrain(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::DrainBackendRequest req;
  req.set_id(*id);
  return Call(&v1::LoadBalancerAdmin::Stub::DrainBackend, req, BackendText);
}

int Lbctl::BackendRm(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::RemoveBackendRequest req;
  req.set_id(*id);
  return Call(&v1::LoadBalancerAdmin::Stub::RemoveBackend, req,
              [](const v1::RemoveBackendResponse& r) {
                return absl::StrCat("removed backend ", r.id(),
                                    " (drained_connections=", r.drained_connections(), ")\n");
              });
}

int Lbctl::BackendHealth(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::GetBackendHealthRequest req;
  req.set_id(*id);
  return Call(&v1::LoadBalancerAdmin::Stub::GetBackendHealth, req, BackendHealthText);
}

}  // namespace lb::cli
