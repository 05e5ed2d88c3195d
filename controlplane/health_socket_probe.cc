#include "controlplane/health_socket_probe.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace lb {

using health::ErrnoText;

SocketProbe::~SocketProbe() {
  if (fd_ >= 0) close(fd_);  // also leaves epoll
}

ProbeStatus SocketProbe::Fail(std::string error) {
  error_ = std::move(error);
  return ProbeStatus::kFailed;
}

ProbeStatus SocketProbe::Start(int epfd, uint64_t op) {
  fd_ = socket(target_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Fail("socket: " + ErrnoText(errno));
  // Close with RST: no TIME_WAIT per check on this host.
  const linger lg{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  // Through the tunnel: the mark tells lb-hc-encap's tc program which
  // backend to tunnel to (needs CAP_NET_ADMIN).
  if (target_.mark != 0 &&
      setsockopt(fd_, SOL_SOCKET, SO_MARK, &target_.mark, sizeof(target_.mark)) != 0) {
    return Fail("setsockopt SO_MARK: " + ErrnoText(errno));
  }
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&target_.addr), target_.addr_len) != 0 &&
      errno != EINPROGRESS) {
    return Fail("connect: " + ErrnoText(errno));
  }
  // Registered after connect() so that the first readiness seen is the
  // connect's (an unconnected socket polls as writable). Edge-triggered on
  // both directions: no EPOLL_CTL_MOD between the connect, send and receive
  // steps; each step runs until EAGAIN.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = op;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd_, &ev) != 0) return Fail("epoll_ctl: " + ErrnoText(errno));
  phase_ = Phase::kConnecting;
  return ProbeStatus::kPending;
}

ProbeStatus SocketProbe::OnEvents(uint32_t events) {
  if (phase_ == Phase::kConnecting) {
    // Writable without error/hang-up is a completed connect; only the error
    // case costs a getsockopt.
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      return Fail("connect: " + ErrnoText(err != 0 ? err : ECONNRESET));
    }
    if (!(events & EPOLLOUT)) return ProbeStatus::kPending;  // not connected yet
    if (target_.cfg.kind == v1::HEALTH_CHECK_KIND_TCP) return ProbeStatus::kSucceeded;
    phase_ = Phase::kSending;
  }
  if (phase_ == Phase::kSending) {
    const ProbeStatus s = Send();
    if (s != ProbeStatus::kPending || phase_ != Phase::kReceiving) return s;
  }
  return Receive();
}

ProbeStatus SocketProbe::Send() {
  const std::string& request = target_.request;
  while (sent_ < request.size()) {
    const ssize_t n = send(fd_, request.data() + sent_, request.size() - sent_, MSG_NOSIGNAL);
    if (n >= 0) {
      sent_ += size_t(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return ProbeStatus::kPending;  // the next EPOLLOUT edge resumes
    } else {
      return Fail("send: " + ErrnoText(errno));
    }
  }
  phase_ = Phase::kReceiving;
  return ProbeStatus::kPending;
}

ProbeStatus SocketProbe::Receive() {
  using Verdict = HealthResponseParser::Verdict;
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    Verdict v;
    if (n > 0) {
      v = response_.Feed(absl::string_view(buf, size_t(n)));
    } else if (n == 0) {
      v = response_.Finish();
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return ProbeStatus::kPending;
    } else {
      return Fail("recv: " + ErrnoText(errno));
    }
    if (v == Verdict::kHealthy) return ProbeStatus::kSucceeded;
    if (v == Verdict::kUnhealthy) return Fail(response_.error());
  }
}

}  // namespace lb
