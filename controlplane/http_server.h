// A small HTTP/1.1 server for the admin REST API and /metrics, written on
// epoll and non-blocking sockets (the project's dependency list has no HTTP
// library).
//
// Model: one thread runs an event loop that accepts, reads, parses, calls the
// handler and writes. The handler runs on that thread, synchronously, one
// request at a time (the REST handlers serialize on ControlPlane's mutex
// anyway), so responses on a connection leave in request order and
// pipelined requests need nothing special.
//
// Request framing and its limits are http_codec.h's; this file is the
// socket loop around it. Protocol subset (RFC 9112): origin-form request targets; HTTP/1.1 and 1.0;
// keep-alive (1.1 default, 1.0 with "Connection: keep-alive"); bodies by
// Content-Length only ("Transfer-Encoding" gets 501); "Expect: 100-continue"
// honoured; HEAD served as GET without the body.
//
// What the server answers by itself, always with "Connection: close":
//   400 malformed request line, header or Content-Length
//   408 a request started but not complete in time (see Deadlines)
//   413 Content-Length above max_body_bytes (decided before reading the body)
//   431 request line + headers above max_header_bytes
//   501 Transfer-Encoding
//   503 the client address already holds max_connections_per_client
//       connections, or max_connections are open and every one of them has a
//       request in progress (see Connection limits)
//   505 an HTTP version other than 1.0/1.1
//   500 the handler threw
// After an error response the server stops reading, shuts its side down and
// discards what the client still sends (bounded), so the client sees the
// response rather than a reset.
//
// Deadlines (a connection that sends nothing must not hold a slot):
//   - The first request on a connection must be complete (head and body)
//     within request_timeout of the accept. A connection that has sent no
//     byte by then is closed silently; one that started a request gets 408.
//   - After a response, a keep-alive connection may stay idle for
//     idle_timeout; its next request must be complete within
//     request_timeout of its first byte.
//   - A client that does not read its responses is closed after
//     write_timeout without progress.
// Every deadline that fires is counted in HttpServerStats::timeouts.
//
// Connection limits (a flood from one address, or of silent sockets, must
// not lock other clients out):
//   - At most max_connections_per_client connections per client IP address;
//     the next one gets 503 at once and is closed.
//   - At max_connections, a newcomer does not get 503 while some connection
//     has no request in progress (idle keep-alive, or no byte sent yet): the
//     one idle for longest is closed to make room (evicted_idle_connections).
//     Only when every connection is mid-request is the newcomer refused.
//
// Threads: Start() and Stop() (and the destructor) from any one thread; the
// handler is called only on the server thread. Stop() is graceful: the
// listener closes at once, responses already produced are flushed for up to
// stop_grace, then every connection is closed and the thread joined.
//
// Errors: Start() fails with InvalidArgument for a listen address it cannot
// parse (naming the option) and Unavailable when the socket cannot be bound.
#ifndef LB_CONTROLPLANE_HTTP_SERVER_H_
#define LB_CONTROLPLANE_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controlplane/http_codec.h"
#include "controlplane/listen_address.h"

namespace lb {

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // "host:port" with an IPv4 literal, "[v6]:port", or "localhost:port".
  // Port 0 picks a free port (see HttpServer::port()).
  std::string listen = "127.0.0.1:8080";
  size_t max_header_bytes = 16 * 1024;  // request line + headers + blank line
  size_t max_body_bytes = 1024 * 1024;
  size_t max_connections = 1024;
  size_t max_connections_per_client = 32;  // per client IP address; 0 = no limit
  // Keep-alive after a response, no request started.
  absl::Duration idle_timeout = absl::Seconds(60);
  // Accept -> first request complete; first byte -> complete for later ones.
  absl::Duration request_timeout = absl::Seconds(5);
  absl::Duration write_timeout = absl::Seconds(10);  // response pending, client not reading
  absl::Duration stop_grace = absl::Seconds(2);
};

// Counters of what the server refused or closed, for tests and metrics.
struct HttpServerStats {
  uint64_t connections_accepted = 0;
  uint64_t requests = 0;                  // handed to the handler
  uint64_t bad_requests = 0;              // 400/431/413/501/505 answered by the server
  uint64_t timeouts = 0;                  // idle, request or write timeouts
  uint64_t rejected_connections = 0;      // 503: max_connections open, all mid-request
  uint64_t rejected_per_client = 0;       // 503: over max_connections_per_client
  uint64_t evicted_idle_connections = 0;  // closed at max_connections to make room
};

class HttpServer {
 public:
  // Binds, listens and starts the server thread.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           HttpHandler handler);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Graceful stop as described above; idempotent.
  void Stop();

  uint16_t port() const;
  // "127.0.0.1:8080", with the actual port.
  std::string address() const;
  HttpServerStats stats() const;

 private:
  HttpServer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HTTP_SERVER_H_
