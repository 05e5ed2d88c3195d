// The classic REST API of lb-controlplane (issue 3, "The classic REST API,
// exactly"), served by HttpServer over lb::ControlPlane. Bodies are JSON
// produced and parsed by protobuf's JSON mapping (field names as in
// proto/lb/v1/admin.proto; unknown fields are refused, naming the field).
//
// Routes ("/backends…" act on the pool kDefaultPool = "default"):
//   POST   /backends                      RestBackendRequest -> 201 RestBackend
//   GET    /backends                      -> 200 RestBackendList (elements as POST answers)
//   GET    /backends/{id}                 -> 200 BackendStatus
//   DELETE /backends/{id}                 -> 200 RestDeleteResponse (drains, then leaves)
//   GET    /backends/{id}/health          -> 200 BackendHealth
//   PUT    /config/algorithm              RestAlgorithmConfig -> 200 RestAlgorithmConfig
//   GET    /config/algorithm              -> 200 RestAlgorithmConfig
//   PUT    /config/node                   Node -> 200 Node (tunnel sources)
//   GET    /config/node                   -> 200 Node
//   the same under /pools/{pool}/backends…, and PUT|GET /pools/{pool}/algorithm
//   GET    /pools                         -> 200 ListPoolsResponse
//   POST   /pools                         Pool -> 201 Pool
//   GET    /pools/{pool}                  -> 200 Pool
//   DELETE /pools/{pool}                  -> 200 DeletePoolResponse
//   GET    /vips                          -> 200 ListVipsResponse
//   POST   /vips                          Vip -> 201 Vip
//   GET    /vips/{id}                     -> 200 VipStatus
//   DELETE /vips/{id}                     -> 200 DeleteVipResponse
//   GET    /metrics                       -> 200 Prometheus text format 0.0.4
//   GET    /healthz                       -> 200 {"status":"ok"}
//
// An id or pool-name path segment that names nothing answers 404 whatever
// its shape ("abc" like an unknown id).
//
// Errors: a RestError {error, field} body. The error names the problem, the
// field names the JSON field or path segment at fault ("port", "backend_id",
// "body"). Status codes: absl InvalidArgument/OutOfRange 400, NotFound 404,
// AlreadyExists 409, FailedPrecondition 412, Unauthenticated 401,
// ResourceExhausted 413, anything else 500; no route 404; a route without
// the method 405 with an Allow header. Before routing, CheckAdminRequest
// (rest_guard.h) refuses foreign Host (421), browser cross-site requests
// (403), bodies not sent as application/json (415) and requests without the
// bearer token where one is needed (401, with WWW-Authenticate): changes
// when a token is configured, and everything but GET /healthz off
// loopback. Nothing is parsed and nothing changes. Every
// refused request leaves the tables and the stored state as they were (the
// ControlPlane's transactions guarantee it; this layer validates first).
//
// Threads: Handle() may be called from any thread (HttpServer calls it from
// its one thread); ControlPlane is thread-safe.
#ifndef LB_CONTROLPLANE_REST_API_H_
#define LB_CONTROLPLANE_REST_API_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/control_plane.h"
#include "controlplane/http_server.h"
#include "controlplane/rest_guard.h"

namespace lb {

struct RestApiOptions {
  // Admission checks and the bearer token (rest_guard.h). StartRestServer
  // sets guard.loopback_listener from the listen address.
  RestGuardOptions guard;
  // Produces the GET /metrics body. Unset = RenderMetrics(cp, {}) (metrics.h).
  std::function<std::string()> render_metrics;
};

class RestApi {
 public:
  // `cp` must outlive the RestApi.
  RestApi(ControlPlane* cp, RestApiOptions options);
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  ControlPlane* cp_;
  RestApiOptions options_;
};

// Starts an HttpServer on options.listen serving RestApi(cp, rest). Refuses
// (FailedPrecondition) a listener off loopback without a bearer token:
// requests off loopback must be authenticated. `cp` must outlive the server.
absl::StatusOr<std::unique_ptr<HttpServer>> StartRestServer(const HttpServerOptions& options,
                                                            const RestApiOptions& rest,
                                                            ControlPlane* cp);

// absl code -> HTTP status, as listed above.
int HttpStatusFromCode(absl::StatusCode code);

// A RestError body for `status` (field taken from a "field.path: problem"
// message prefix unless given).
HttpResponse ErrorResponse(const absl::Status& status, const std::string& field = "");

}  // namespace lb

#endif  // LB_CONTROLPLANE_REST_API_H_
