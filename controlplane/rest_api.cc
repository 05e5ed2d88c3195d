#include "controlplane/rest_api.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "controlplane/algorithms.h"
#include "controlplane/config.h"
#include "controlplane/config_api_validation.h"
#include "controlplane/metrics.h"
#include "controlplane/strict_json.h"

namespace lb {
namespace {

// --- JSON via protobuf's mapping ---

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(m, &out, o);
  if (!s.ok()) return "{}\n";  // cannot happen for our messages
  out += '\n';
  return out;
}

HttpResponse JsonResponse(int status, const google::protobuf::Message& m) {
  HttpResponse r;
  r.status = status;
  r.body = ToJson(m);
  return r;
}

// --- path handling ---

bool PercentDecode(absl::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size() || !absl::ascii_isxdigit(in[i + 1]) ||
        !absl::ascii_isxdigit(in[i + 2])) {
      return false;
    }
    int v = 0;
    if (!absl::SimpleHexAtoi(in.substr(i + 1, 2), &v)) return false;
    out->push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

// An id path segment. Whatever its shape, a segment that names no id names
// no resource: 404, like an unknown id ("abc", "0" and "99999999999" are no
// more wrong than an id nobody has).
absl::StatusOr<uint32_t> ParseId(const std::string& segment, const char* field, const char* what) {
  uint32_t id = 0;
  if (segment.empty() || segment.size() > 10 ||
      !std::all_of(segment.begin(), segment.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      !absl::SimpleAtoi(segment, &id) || id == 0) {
    return absl::NotFoundError(absl::StrCat(field, ": no ", what, " \"", QuoteBounded(segment),
                                            "\" (ids are 1..4294967295)"));
  }
  return id;
}

// --- conversions ---

std::string BackendStatusName(const v1::BackendStatus& s) {
  if (s.backend().state() == v1::BACKEND_STATE_DRAINING || s.backend().remove_at_unix_ms() != 0) {
    return "draining";
  }
  return HealthStatusName(s.health());
}

v1::RestBackend ToRestBackend(const v1::BackendStatus& s) {
  v1::RestBackend r;
  r.set_id(s.backend().id());
  r.set_address(s.backend().address());
  r.set_port(s.backend().port());
  r.set_weight(s.backend().has_weight() ? s.backend().weight() : kDefaultBackendWeight);
  r.set_status(BackendStatusName(s));
  return r;
}

v1::RestAlgorithmConfig ToRestAlgorithm(const v1::Pool& p) {
  v1::RestAlgorithmConfig c;
  c.set_algorithm(AlgorithmName(p.algorithm()));
  c.set_sticky_sessions(p.sticky_sessions());
  c.set_sticky_ttl_seconds(p.sticky_ttl_seconds() == 0 ? kDefaultStickyTtlSeconds
                                                       : p.sticky_ttl_seconds());
  return c;
}

// --- the routes ---

struct Params {
  std::string pool = kDefaultPool;
  uint32_t backend_id = 0;
  uint32_t vip_id = 0;
};

using RouteFn = HttpResponse (*)(ControlPlane*, const RestApiOptions&, const HttpRequest&,
                                 const Params&);

struct Route {
  const char* method;
  std::vector<std::string> pattern;  // "{pool}", "{backend_id}", "{vip_id}" match one segment
  RouteFn fn;
};

// GetBackend, restricted to the pool named in the path.
absl::StatusOr<v1::BackendStatus> BackendInPool(ControlPlane* cp, const Params& p) {
  auto b = cp->GetBackend(p.backend_id);
  if (!b.ok()) return b.status();
  const std::string pool = b->pool().empty() ? kDefaultPool : b->pool();
  if (pool != p.pool) {
    return absl::NotFoundError(
        absl::StrCat("backend_id: backend ", p.backend_id, " is not in pool \"", p.pool, "\""));
  }
  return b;
}

bool PoolExists(ControlPlane* cp, const std::string& name) {
  const v1::Config c = cp->config();
  return std::any_of(c.pools().begin(), c.pools().end(),
                     [&](const v1::Pool& p) { return p.name() == name; });
}

absl::StatusOr<v1::Pool> FindPool(ControlPlane* cp, const std::string& name) {
  const v1::Config c = cp->config();
  for (const v1::Pool& p : c.pools()) {
    if (p.name() == name) return p;
  }
  return absl::NotFoundError(absl::StrCat("pool: pool \"", name, "\" not found"));
}

HttpResponse ListBackends(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                          const Params& p) {
  if (p.pool != kDefaultPool && !PoolExists(cp, p.pool)) {
    return ErrorResponse(
        absl::NotFoundError(absl::StrCat("pool: pool \"", p.pool, "\" not found")));
  }
  v1::RestBackendList resp;
  for (const v1::BackendStatus& b : cp->ListBackends(p.pool))
    *resp.add_backends() = ToRestBackend(b);
  return JsonResponse(200, resp);
}

HttpResponse AddBackend(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                        const Params& p) {
  v1::RestBackendRequest in;
  if (auto s = ParseStrictJson(req.body, &in); !s.ok()) return ErrorResponse(s);
  if (auto s = CheckApiBackend(in); !s.ok()) return ErrorResponse(s);
  const std::string path =
      in.health_check_path().empty() ? kDefaultHealthCheckPath : in.health_check_path();
  v1::Backend b;
  b.set_address(in.address());
  b.set_port(static_cast<uint32_t>(in.port()));
  b.set_weight(in.has_weight() ? static_cast<uint32_t>(in.weight()) : kDefaultBackendWeight);
  b.set_health_check_path(path);
  auto added = cp->AddBackend(p.pool, b);
  if (!added.ok()) return ErrorResponse(added.status());
  HttpResponse r = JsonResponse(201, ToRestBackend(*added));
  const std::string base = p.pool == kDefaultPool && absl::StartsWith(req.path, "/backends")
                               ? "/backends/"
                               : absl::StrCat("/pools/", p.pool, "/backends/");
  r.headers.emplace_back("Location", absl::StrCat(base, added->backend().id()));
  return r;
}

HttpResponse GetBackend(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                        const Params& p) {
  auto b = BackendInPool(cp, p);
  if (!b.ok()) return ErrorResponse(b.status());
  return JsonResponse(200, *b);
}

HttpResponse RemoveBackend(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                           const Params& p) {
  if (auto b = BackendInPool(cp, p); !b.ok()) return ErrorResponse(b.status());
  auto removed = cp->RemoveBackend(p.backend_id);
  if (!removed.ok()) return ErrorResponse(removed.status());
  v1::RestDeleteResponse out;
  out.set_id(removed->id() != 0 ? removed->id() : p.backend_id);
  out.set_drained_connections(
      static_cast<uint32_t>(std::min<uint64_t>(removed->drained_connections(), UINT32_MAX)));
  return JsonResponse(200, out);
}

HttpResponse BackendHealth(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                           const Params& p) {
  if (auto b = BackendInPool(cp, p); !b.ok()) return ErrorResponse(b.status());
  auto h = cp->GetBackendHealth(p.backend_id);
  if (!h.ok()) return ErrorResponse(h.status());
  return JsonResponse(200, *h);
}

HttpResponse GetAlgorithm(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                          const Params& p) {
  auto pool = FindPool(cp, p.pool);
  if (!pool.ok()) {
    if (p.pool != kDefaultPool) return ErrorResponse(pool.status());
    v1::Pool empty;  // the default pool before first use: the defaults
    return JsonResponse(200, ToRestAlgorithm(empty));
  }
  return JsonResponse(200, ToRestAlgorithm(*pool));
}

HttpResponse SetAlgorithm(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                          const Params& p) {
  v1::RestAlgorithmConfig in;
  if (auto s = ParseStrictJson(req.body, &in); !s.ok()) return ErrorResponse(s);
  if (in.algorithm().empty()) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("algorithm: required, one of ", AlgorithmChoices())));
  }
  const AlgorithmInfo* info = FindAlgorithmByName(in.algorithm());
  if (info == nullptr) {
    return ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("algorithm: unknown algorithm \"", QuoteBounded(in.algorithm()),
                     "\", expected one of ", AlgorithmChoices())));
  }
  const int64_t ttl = in.has_sticky_ttl_seconds() ? int64_t{in.sticky_ttl_seconds()}
                                                  : int64_t{kDefaultStickyTtlSeconds};
  if (auto s = CheckApiStickyTtl("sticky_ttl_seconds", ttl); !s.ok()) return ErrorResponse(s);
  auto pool =
      cp->SetPoolAlgorithm(p.pool, info->api, in.sticky_sessions(), static_cast<uint32_t>(ttl));
  if (!pool.ok()) return ErrorResponse(pool.status());
  return JsonResponse(200, ToRestAlgorithm(*pool));
}

HttpResponse ListPools(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params&) {
  v1::ListPoolsResponse resp;
  const v1::Config c = cp->config();
  for (const v1::Pool& p : c.pools()) *resp.add_pools() = p;
  return JsonResponse(200, resp);
}

HttpResponse CreatePool(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                        const Params&) {
  v1::Pool in;
  if (auto s = ParseStrictJson(req.body, &in); !s.ok()) return ErrorResponse(s);
  if (auto s = CheckApiPoolName("name", in.name()); !s.ok()) return ErrorResponse(s);
  auto created = cp->CreatePool(in);
  if (!created.ok()) return ErrorResponse(created.status());
  HttpResponse r = JsonResponse(201, *created);
  r.headers.emplace_back("Location", absl::StrCat("/pools/", created->name()));
  return r;
}

HttpResponse GetPool(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params& p) {
  auto pool = FindPool(cp, p.pool);
  if (!pool.ok()) return ErrorResponse(pool.status());
  return JsonResponse(200, *pool);
}

HttpResponse DeletePool(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                        const Params& p) {
  if (auto s = cp->DeletePool(p.pool); !s.ok()) return ErrorResponse(s);
  v1::DeletePoolResponse out;
  out.set_name(p.pool);
  return JsonResponse(200, out);
}

HttpResponse ListVips(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params&) {
  v1::ListVipsResponse resp;
  for (v1::VipStatus& v : cp->ListVips()) *resp.add_vips() = std::move(v);
  return JsonResponse(200, resp);
}

HttpResponse CreateVip(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                       const Params&) {
  v1::Vip in;
  if (auto s = ParseStrictJson(req.body, &in); !s.ok()) return ErrorResponse(s);
  auto created = cp->CreateVip(in);
  if (!created.ok()) return ErrorResponse(created.status());
  HttpResponse r = JsonResponse(201, *created);
  r.headers.emplace_back("Location", absl::StrCat("/vips/", created->id()));
  return r;
}

HttpResponse GetVip(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params& p) {
  for (const v1::VipStatus& v : cp->ListVips()) {
    if (v.vip().id() == p.vip_id) return JsonResponse(200, v);
  }
  return ErrorResponse(absl::NotFoundError(absl::StrCat("vip_id: VIP ", p.vip_id, " not found")));
}

HttpResponse DeleteVip(ControlPlane* cp, const RestApiOptions&, const HttpRequest&,
                       const Params& p) {
  if (auto s = cp->DeleteVip(p.vip_id); !s.ok()) return ErrorResponse(s);
  v1::DeleteVipResponse out;
  out.set_id(p.vip_id);
  return JsonResponse(200, out);
}

HttpResponse GetNode(ControlPlane* cp, const RestApiOptions&, const HttpRequest&, const Params&) {
  return JsonResponse(200, cp->config().node());
}

HttpResponse SetNode(ControlPlane* cp, const RestApiOptions&, const HttpRequest& req,
                     const Params&) {
  v1::Node in;
  if (auto s = ParseStrictJson(req.body, &in); !s.ok()) return ErrorResponse(s);
  auto node = cp->SetNode(in);
  if (!node.ok()) return ErrorResponse(node.status());
  return JsonResponse(200, *node);
}

HttpResponse Metrics(ControlPlane* cp, const RestApiOptions& o, const HttpRequest&, const Params&) {
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = o.render_metrics ? o.render_metrics() : RenderMetrics(*cp, MetricsInputs());
  return r;
}

HttpResponse Healthz(ControlPlane*, const RestApiOptions&, const HttpRequest&, const Params&) {
  HttpResponse r;
  r.body = "{\"status\":\"ok\"}\n";
  return r;
}

const std::vector<Route>& Routes() {
  static const auto* routes = new std::vector<Route>{
      {"GET", {"backends"}, ListBackends},
      {"POST", {"backends"}, AddBackend},
      {"GET", {"backends", "{backend_id}"}, GetBackend},
      {"DELETE", {"backends", "{backend_id}"}, RemoveBackend},
      {"GET", {"backends", "{backend_id}", "health"}, BackendHealth},
      {"GET", {"config", "algorithm"}, GetAlgorithm},
      {"PUT", {"config", "algorithm"}, SetAlgorithm},
      {"GET", {"config", "node"}, GetNode},
      {"PUT", {"config", "node"}, SetNode},
      {"GET", {"pools"}, ListPools},
      {"POST", {"pools"}, CreatePool},
      {"GET", {"pools", "{pool}"}, GetPool},
      {"DELETE", {"pools", "{pool}"}, DeletePool},
      {"GET", {"pools", "{pool}", "algorithm"}, GetAlgorithm},
      {"PUT", {"pools", "{pool}", "algorithm"}, SetAlgorithm},
      {"GET", {"pools", "{pool}", "backends"}, ListBackends},
      {"POST", {"pools", "{pool}", "backends"}, AddBackend},
      {"GET", {"pools", "{pool}", "backends", "{backend_id}"}, GetBackend},
      {"DELETE", {"pools", "{pool}", "backends", "{backend_id}"}, RemoveBackend},
      {"GET", {"pools", "{pool}", "backends", "{backend_id}", "health"}, BackendHealth},
      {"GET", {"vips"}, ListVips},
      {"POST", {"vips"}, CreateVip},
      {"GET", {"vips", "{vip_id}"}, GetVip},
      {"DELETE", {"vips", "{vip_id}"}, DeleteVip},
      {"GET", {"metrics"}, Metrics},
      {"GET", {"healthz"}, Healthz},
  };
  return *routes;
}

bool Matches(const Route& r, const std::vector<std::string>& segments) {
  if (r.pattern.size() != segments.size()) return false;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (r.pattern[i][0] == '{') continue;
    if (r.pattern[i] != segments[i]) return false;
  }
  return true;
}

}  // namespace

int HttpStatusFromCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:  // lost a store race to another control plane
      return 409;
    case absl::StatusCode::kFailedPrecondition:
      return 412;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kResourceExhausted:
      return 413;
    case absl::StatusCode::kUnavailable:  // the store (etcd) is unreachable
      return 503;
    default:
      return 500;
  }
}

HttpResponse ErrorResponse(const absl::Status& status, const std::string& field) {
  v1::RestError e;
  e.set_error(std::string(status.message()));
  e.set_field(field.empty() ? FieldOfError(status.message()) : field);
  HttpResponse r = JsonResponse(HttpStatusFromCode(status.code()), e);
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"lb-controlplane\"");
  }
  return r;
}

RestApi::RestApi(ControlPlane* cp, RestApiOptions options)
    : cp_(cp), options_(std::move(options)) {}

HttpResponse RestApi::Handle(const HttpRequest& request) const {
  // Host, Origin, Content-Type and the bearer token, before anything else.
  if (std::optional<AdminRefusal> refused = CheckAdminRequest(request, options_.guard)) {
    HttpResponse r = ErrorResponse(refused->status, refused->field);
    r.status = refused->http_status;
    return r;
  }
  // Segments: "/pools/web/backends/" -> {"pools", "web", "backends"}.
  absl::string_view path = request.path;
  if (path.size() > 1 && absl::EndsWith(path, "/")) path.remove_suffix(1);
  std::vector<std::string> segments;
  for (absl::string_view raw : absl::StrSplit(path.substr(1), '/')) {
    std::string seg;
    if (!PercentDecode(raw, &seg)) {
      return ErrorResponse(absl::InvalidArgumentError(
          absl::StrCat("path: bad percent-encoding in \"", QuoteBounded(raw), "\"")));
    }
    segments.push_back(std::move(seg));
  }
  if (segments.size() == 1 && segments[0].empty()) segments.clear();

  const Route* route = nullptr;
  std::vector<std::string> allowed;
  for (const Route& r : Routes()) {
    if (!Matches(r, segments)) continue;
    allowed.push_back(r.method);
    if (request.method == r.method) route = &r;
  }
  if (allowed.empty()) {
    return ErrorResponse(
        absl::NotFoundError(absl::StrCat("path: no such resource: ", QuoteBounded(request.path))));
  }
  if (route == nullptr) {
    if (std::find(allowed.begin(), allowed.end(), "GET") != allowed.end())
      allowed.push_back("HEAD");
    HttpResponse r = ErrorResponse(absl::InvalidArgumentError(
        absl::StrCat("method: ", QuoteBounded(request.method), " is not allowed on ",
                     QuoteBounded(request.path), "; allowed: ", absl::StrJoin(allowed, ", "))));
    r.status = 405;
    r.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
    return r;
  }

  Params params;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& pat = route->pattern[i];
    if (pat == "{pool}") {
      // Like an id: a segment that cannot be a pool name names no pool.
      if (auto s = CheckApiPoolName("pool", segments[i]); !s.ok()) {
        return ErrorResponse(absl::NotFoundError(s.message()));
      }
      params.pool = segments[i];
    } else if (pat == "{backend_id}") {
      auto id = ParseId(segments[i], "backend_id", "backend");
      if (!id.ok()) return ErrorResponse(id.status());
      params.backend_id = *id;
    } else if (pat == "{vip_id}") {
      auto id = ParseId(segments[i], "vip_id", "VIP");
      if (!id.ok()) return ErrorResponse(id.status());
      params.vip_id = *id;
    }
  }
  return route->fn(cp_, options_, request, params);
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartRestServer(const HttpServerOptions& options,
                                                            const RestApiOptions& rest,
                                                            ControlPlane* cp) {
  auto addr = ParseListenAddress(options.listen, "http listen address");
  if (!addr.ok()) return addr.status();
  if (!addr->loopback && rest.guard.bearer_token.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "http listen address ", options.listen,
        " is not loopback: requests over REST must be authenticated, configure a bearer token"));
  }
  RestApiOptions with_listener = rest;
  with_listener.guard.loopback_listener = addr->loopback;
  with_listener.guard.listen_host = addr->host;
  auto api = std::make_shared<RestApi>(cp, std::move(with_listener));
  return HttpServer::Start(options, [api](const HttpRequest& r) { return api->Handle(r); });
}

}  // namespace lb
