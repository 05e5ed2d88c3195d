// Admission checks of the admin REST API: what a request must look like
// before any route sees it (DESIGN.md, "Trust boundaries"). Loopback is not a
// trust boundary: a web page in a browser on this machine can send "simple"
// cross-origin requests (a POST with Content-Type text/plain needs no CORS
// preflight) to 127.0.0.1, and DNS rebinding lets a page on a foreign name
// reach the listener with that name in Host. CheckAdminRequest refuses, in
// this order:
//
//   400 host            HTTP/1.1 without Host, a malformed Host; HTTP/1.0
//                       without Host off a loopback listener
//   421 host            Host names something else than this server. Allowed:
//                       the address the client reached as ip:port or
//                       [v6]:port (HttpRequest::local; port 80 when Host has
//                       none), the configured listen IP with that port,
//                       localhost:<that port> when that address is loopback,
//                       and RestGuardOptions::allowed_hosts
//   403 origin          an Origin header that is not http(s)://<allowed host>
//                       (the same set as Host), including "Origin: null"
//   403 sec-fetch-site  "cross-site" or "same-site" (a browser says so)
//   415 content-type    a request with a body (POST, PUT, PATCH, or any
//                       non-empty body) not sent as application/json
//                       (parameters such as "; charset=utf-8" allowed). No
//                       browser can send that cross-origin without a
//                       preflight, which the API never answers.
//   401 authorization   no or a wrong bearer token (compared in constant
//                       time) where one is needed: on a loopback listener
//                       every method but GET when a token is configured; off
//                       loopback every request but GET /healthz, reads
//                       included (and all of them when no token is
//                       configured: StartRestServer refuses that set-up).
//
// Everything is decided from the request and the options: no I/O, no state,
// callable from any thread.
#ifndef LB_CONTROLPLANE_REST_GUARD_H_
#define LB_CONTROLPLANE_REST_GUARD_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controlplane/http_server.h"

namespace lb {

// One entry of --http_allowed_hosts.
struct AllowedHost {
  std::string host;  // lower-case name, or an IP literal as inet_ntop spells it
  int port = -1;     // -1: any port
};

// Parses "name,name:port,[v6]:port,...": names of letters, digits, '-', '.'
// and '_', IPv4 literals, or bracketed IPv6 literals, each with an optional
// port 1..65535. Empty entries are skipped. InvalidArgument names the entry.
absl::StatusOr<std::vector<AllowedHost>> ParseAllowedHosts(absl::string_view csv);

struct RestGuardOptions {
  // Empty: no token. Then a loopback listener takes changes unauthenticated
  // and any other listener refuses everything but GET /healthz.
  std::string bearer_token;
  // Whether the listener is on loopback; StartRestServer sets it from the
  // listen address. The default fails closed (tokens for reads too).
  bool loopback_listener = false;
  // The listen IP as configured ("0.0.0.0" or "::" for a wildcard
  // listener), also accepted in Host with the port the client reached;
  // StartRestServer sets it. Empty: only the address reached counts.
  std::string listen_host;
  // Further names clients may use in Host and Origin.
  std::vector<AllowedHost> allowed_hosts;
};

// Why a request was refused: the HTTP status, the status whose message is
// the RestError "error" (Unauthenticated for 401, so that ErrorResponse adds
// WWW-Authenticate), and the RestError "field".
struct AdminRefusal {
  int http_status = 0;
  absl::Status status;
  std::string field;
};

// nullopt: the request may go on to routing.
std::optional<AdminRefusal> CheckAdminRequest(const HttpRequest& request,
                                              const RestGuardOptions& options);

}  // namespace lb

#endif  // LB_CONTROLPLANE_REST_GUARD_H_
