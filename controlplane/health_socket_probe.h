// One TCP or HTTP health check over a non-blocking socket, driven by the
// health checker's epoll loop. Owns its socket: destroying the probe closes it
// (which also takes it out of epoll).
//
// Contract
//  * Through the tunnel (target.mark != 0) the socket carries SO_MARK =
//    target.mark before connect() ("setsockopt SO_MARK: ..." on failure).
//  * TCP: success = the connection is established; the socket is then closed
//    with an RST (SO_LINGER 0) so 10k checks/s leave no TIME_WAIT behind.
//  * HTTP: writes the prepared request ("GET <path> HTTP/1.1", Host,
//    "Connection: close"), then reads the response through
//    HealthResponseParser (health_response.h): success = a 2xx status line;
//    at most max_body_bytes of the body are read.
//  * The socket is registered edge-triggered for both directions once, after
//    connect(), with the caller's epoll data; every step runs until EAGAIN.
//  * Failure texts: "socket: Too many open files", "connect: Connection
//    refused", "send: ...", "recv: ...", "HTTP 503", "malformed status line
//    ...", "connection closed before the status line".
//
// Threads: the loop thread only.
#ifndef LB_CONTROLPLANE_HEALTH_SOCKET_PROBE_H_
#define LB_CONTROLPLANE_HEALTH_SOCKET_PROBE_H_

#include <cstdint>
#include <string>

#include "controlplane/health_response.h"
#include "controlplane/health_target.h"

namespace lb {

// Where a check stands after a step.
enum class ProbeStatus { kPending, kSucceeded, kFailed };

class SocketProbe {
 public:
  // `target` must outlive the probe (its address and request are used).
  explicit SocketProbe(const PreparedTarget& target)
      : target_(target), response_(target.cfg.max_body_bytes) {}
  ~SocketProbe();
  SocketProbe(const SocketProbe&) = delete;
  SocketProbe& operator=(const SocketProbe&) = delete;

  // Opens the socket, starts connecting and registers it in `epfd` with
  // epoll data `op`.
  ProbeStatus Start(int epfd, uint64_t op);
  // Handles the epoll events of the socket.
  ProbeStatus OnEvents(uint32_t events);
  // Why the check failed; "" unless a step returned kFailed.
  const std::string& error() const { return error_; }

 private:
  enum class Phase { kConnecting, kSending, kReceiving };

  ProbeStatus Fail(std::string error);
  ProbeStatus Send();
  ProbeStatus Receive();

  const PreparedTarget& target_;
  HealthResponseParser response_;
  int fd_ = -1;
  Phase phase_ = Phase::kConnecting;
  size_t sent_ = 0;
  std::string error_;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_SOCKET_PROBE_H_
