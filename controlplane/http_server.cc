#include "controlplane/http_server.h"

#include "controlplane/clock.h"
#include "controlplane/listen_address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <map>
#include <thread>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace lb {
namespace {

// Output beyond this stops the parsing of further pipelined requests until
// the client reads: memory per connection stays bounded.
constexpr size_t kMaxPendingOutput = 1024 * 1024;
// After an error response: how long and how much of the client's remaining
// upload we read and throw away before closing, so that the close does not
// turn into a reset that destroys the response in flight.
constexpr uint64_t kLingerNs = 3'000'000'000;
constexpr size_t kLingerMaxBytes = 16 * 1024 * 1024;
// How often the loop checks deadlines when nothing happens.
constexpr int kTickMs = 100;
// How long accepting pauses when the process is out of file descriptors.
constexpr uint64_t kAcceptPauseNs = 100'000'000;
constexpr size_t kReadChunk = 16 * 1024;

uint64_t ToNs(absl::Duration d) {
  return d <= absl::ZeroDuration() ? 0 : static_cast<uint64_t>(absl::ToInt64Nanoseconds(d));
}

std::string HttpDate() {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(), absl::UTCTimeZone());
}

// A 503 on a connection that is never registered, then close. The client
// has usually sent nothing yet, so the close does not turn into a reset.
void RefuseAtAccept(int fd, absl::string_view why) {
  HttpResponse refused;
  refused.status = 503;
  refused.body = HttpErrorBody(why);
  std::string r;
  AppendHttpResponse(refused, false, false, 1, HttpDate(), &r);
  ssize_t ignored = send(fd, r.data(), r.size(), MSG_NOSIGNAL);
  (void)ignored;
  close(fd);
}

}  // namespace

struct HttpServer::Impl {
  struct Conn {
    int fd = -1;
    std::string peer;
    std::string local;      // our address as the client reached it
    std::string client;     // peer address without the port (per-client limit)
    HttpRequestDecoder in;  // framing of the bytes received (http_codec.h)
    std::string out;
    size_t out_off = 0;
    uint64_t request_start_ns = 0;  // 0 = no request in progress
    uint64_t accepted_ns = 0;       // the first request's deadline counts from here
    uint64_t served = 0;            // requests handed to the handler
    uint64_t idle_since_ns = 0;     // accept, or the end of the last request
    uint64_t write_progress_ns = 0;
    bool reading = true;  // EPOLLIN wanted
    bool close_after_write = false;
    bool linger = false;  // error path: discard input after the response
    bool shut_wr = false;
    uint64_t linger_until_ns = 0;
    size_t discarded = 0;
    uint32_t events = 0;
  };

  HttpServerOptions options;
  HttpHandler handler;
  ListenAddress address;
  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::thread thread;
  uint64_t accept_paused_until_ns = 0;  // 0 = the listener is in the epoll set
  std::atomic<bool> stop_requested{false};
  bool stopped = false;  // Stop() ran (caller thread only)
  std::map<int, Conn> conns;
  std::unordered_map<std::string, size_t> per_client;  // open connections by SockaddrHost
  mutable absl::Mutex stats_mu;
  HttpServerStats stats ABSL_GUARDED_BY(stats_mu);

  ~Impl() {
    if (listen_fd >= 0) close(listen_fd);
    if (epoll_fd >= 0) close(epoll_fd);
    if (wake_fd >= 0) close(wake_fd);
  }

  template <typename F>
  void Count(F f) {
    absl::MutexLock l(&stats_mu);
    f(stats);
  }

  void SetEvents(Conn& c) {
    uint32_t ev = 0;
    // Reading pauses while a backlog of unprocessed input is at its cap
    // (Process is waiting for the client to read its responses).
    if (c.reading && (c.close_after_write || c.in.buffered() < InputCap())) ev |= EPOLLIN;
    if (c.out_off < c.out.size()) ev |= EPOLLOUT;
    if (ev == c.events) return;
    epoll_event e{};
    e.events = ev;
    e.data.fd = c.fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &e);
    c.events = ev;
  }

  void CloseConn(int fd) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    auto pc = per_client.find(it->second.client);
    if (pc != per_client.end() && --pc->second == 0) per_client.erase(pc);
    conns.erase(it);
  }

  // No request in progress and nothing to send: closing it loses nothing
  // the client has asked for (an idle keep-alive connection, or one that
  // has sent no byte yet).
  static bool Evictable(const Conn& c) {
    return c.request_start_ns == 0 && c.in.buffered() == 0 && c.out_off == c.out.size() &&
           !c.close_after_write;
  }

  // At max_connections: closes the connection idle for longest. False when
  // every connection has a request in progress.
  bool EvictIdle() {
    int victim = -1;
    uint64_t oldest = UINT64_MAX;
    for (const auto& [fd, c] : conns) {
      if (Evictable(c) && c.idle_since_ns < oldest) {
        oldest = c.idle_since_ns;
        victim = fd;
      }
    }
    if (victim < 0) return false;
    Count([](HttpServerStats& s) { ++s.evicted_idle_connections; });
    CloseConn(victim);
    return true;
  }

  void Accept() {
    while (true) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      int fd =
          accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: the pending connection keeps the listener
          // readable, so stop polling it for a while instead of spinning.
          epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
          accept_paused_until_ns = MonotonicNs() + kAcceptPauseNs;
        }
        return;  // EAGAIN, or paused
      }
      std::string client = SockaddrHost(ss);
      auto pc = per_client.find(client);
      if (options.max_connections_per_client != 0 && pc != per_client.end() &&
          pc->second >= options.max_connections_per_client) {
        // Counted first: a client that has read the 503 sees it counted.
        Count([](HttpServerStats& s) { ++s.rejected_per_client; });
        RefuseAtAccept(fd, "too many connections from this address to the admin HTTP server");
        continue;
      }
      if (conns.size() >= options.max_connections && !EvictIdle()) {
        Count([](HttpServerStats& s) { ++s.rejected_connections; });
        RefuseAtAccept(fd, "too many connections to the admin HTTP server");
        continue;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      sockaddr_storage local{};
      socklen_t local_len = sizeof(local);
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len);
      Conn& c = conns[fd];
      c.fd = fd;
      c.in = HttpRequestDecoder(HttpCodecLimits{options.max_header_bytes, options.max_body_bytes});
      c.peer = SockaddrText(ss);
      c.local = SockaddrText(local);
      c.client = std::move(client);
      ++per_client[c.client];
      c.accepted_ns = MonotonicNs();
      c.idle_since_ns = c.accepted_ns;
      c.events = EPOLLIN;
      epoll_event e{};
      e.events = EPOLLIN;
      e.data.fd = fd;
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &e);
      Count([](HttpServerStats& s) { ++s.connections_accepted; });
    }
  }

  void AppendResponse(Conn& c, const HttpResponse& r, bool head_only, bool keep_alive,
                      int version_minor) {
    AppendHttpResponse(r, head_only, keep_alive, version_minor, HttpDate(), &c.out);
    if (c.write_progress_ns == 0 || c.out_off == c.out.size()) c.write_progress_ns = MonotonicNs();
  }

  // An error answered by the server itself; the connection is then closed
  // after lingering.
  void Refuse(Conn& c, int status, const std::string& why) {
    HttpResponse r;
    r.status = status;
    r.body = HttpErrorBody(why);
    AppendResponse(c, r, false, false, 1);
    c.close_after_write = true;
    c.linger = true;
    c.in.Clear();
    Count([status](HttpServerStats& s) {
      if (status == 408) {
        ++s.timeouts;
      } else {
        ++s.bad_requests;
      }
    });
  }

  // Answers as many complete requests as `in` holds.
  void Process(Conn& c) {
    while (!c.close_after_write && c.out.size() - c.out_off < kMaxPendingOutput) {
      HttpDecodeResult next = c.in.Next();
      if (next.kind == HttpDecodeResult::Kind::kError) {
        Refuse(c, next.status, next.error);
        return;
      }
      if (next.kind == HttpDecodeResult::Kind::kNeedMore) {
        if (c.in.in_request() && c.request_start_ns == 0) c.request_start_ns = MonotonicNs();
        if (c.in.TakeContinue()) {
          c.out += "HTTP/1.1 100 Continue\r\n\r\n";
          if (c.write_progress_ns == 0) c.write_progress_ns = MonotonicNs();
        }
        return;
      }
      HttpRequest& req = next.request;
      req.peer = c.peer;
      req.local = c.local;
      c.request_start_ns = 0;
      c.idle_since_ns = MonotonicNs();
      ++c.served;

      HttpResponse resp;
      try {
        resp = handler(req);
      } catch (const std::exception& e) {
        resp = HttpResponse();
        resp.status = 500;
        resp.body = "{\"error\":\"internal error\",\"field\":\"\"}\n";
      }
      Count([](HttpServerStats& s) { ++s.requests; });
      const bool keep_alive = next.keep_alive && !resp.close && !stop_requested.load();
      AppendResponse(c, resp, req.head, keep_alive, req.version_minor);
      if (!keep_alive) {
        c.close_after_write = true;
        c.in.Clear();
      }
    }
  }

  // Writes what it can. Returns false when the connection was closed.
  bool Flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        c.write_progress_ns = MonotonicNs();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      CloseConn(c.fd);
      return false;
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
      c.write_progress_ns = 0;
      if (c.close_after_write) {
        if (!c.linger) {
          CloseConn(c.fd);
          return false;
        }
        if (!c.shut_wr) {
          shutdown(c.fd, SHUT_WR);
          c.shut_wr = true;
          c.linger_until_ns = MonotonicNs() + kLingerNs;
        }
      }
    }
    SetEvents(c);
    return true;
  }

  // The input backlog beyond which we stop reading until Process consumes
  // it: one maximal request plus a read chunk.
  size_t InputCap() const { return options.max_header_bytes + options.max_body_bytes + kReadChunk; }

  void OnReadable(Conn& c) {
    char buf[kReadChunk];
    while (true) {
      ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
      if (n > 0) {
        if (c.close_after_write) {
          // Error path or last response queued: what follows is discarded.
          c.discarded += static_cast<size_t>(n);
          if (c.discarded > kLingerMaxBytes) {
            CloseConn(c.fd);
            return;
          }
          continue;
        }
        c.in.Append(absl::string_view(buf, static_cast<size_t>(n)));
        if (c.in.buffered() >= InputCap()) break;  // SetEvents pauses reading
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) {
        CloseConn(c.fd);
        return;
      }
      // EOF. Complete requests already received are still answered (the
      // client may only have half-closed); a request cut short is dropped.
      if (!c.close_after_write) Process(c);
      c.reading = false;
      c.close_after_write = true;
      c.linger = false;
      c.in.Clear();
      Flush(c);  // closes once the output is out (at once when there is none)
      return;
    }
    Process(c);
    Flush(c);
  }

  // Deadline sweep.
  void Sweep(uint64_t now) {
    std::vector<int> to_close;
    std::vector<int> to_timeout;
    for (auto& [fd, c] : conns) {
      if (c.shut_wr) {
        if (now >= c.linger_until_ns) to_close.push_back(fd);
        continue;
      }
      if (c.out_off < c.out.size()) {
        if (now - c.write_progress_ns >= ToNs(options.write_timeout)) to_close.push_back(fd);
        continue;
      }
      if (c.served == 0 || c.request_start_ns != 0) {
        // The first request's deadline counts from the accept, so a
        // connection that never sends a byte holds its slot no longer than
        // one that sends a request slowly.
        const uint64_t start = c.served == 0 ? c.accepted_ns : c.request_start_ns;
        if (now - start >= ToNs(options.request_timeout)) {
          if (c.request_start_ns == 0 && c.in.buffered() == 0) {
            to_close.push_back(fd);  // nothing asked, nothing to answer
          } else {
            to_timeout.push_back(fd);
          }
        }
      } else if (now - c.idle_since_ns >= ToNs(options.idle_timeout)) {
        to_close.push_back(fd);
      }
    }
    for (int fd : to_close) {
      Count([](HttpServerStats& s) { ++s.timeouts; });
      CloseConn(fd);
    }
    for (int fd : to_timeout) {
      Conn& c = conns[fd];
      Refuse(c, 408, "request not complete in time");
      c.reading = true;
      Flush(c);
    }
  }

  void Run() {
    std::vector<epoll_event> events(256);
    uint64_t last_sweep = MonotonicNs();
    uint64_t stop_deadline = 0;
    while (true) {
      if (stop_requested.load() && stop_deadline == 0) {
        stop_deadline = MonotonicNs() + ToNs(options.stop_grace);
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
        close(listen_fd);
        listen_fd = -1;
        std::vector<int> idle;
        for (auto& [fd, c] : conns) {
          if (c.out_off == c.out.size()) {
            idle.push_back(fd);
          } else {
            c.close_after_write = true;
            c.reading = false;
            SetEvents(c);
          }
        }
        for (int fd : idle) CloseConn(fd);
      }
      if (stop_deadline != 0 && (conns.empty() || MonotonicNs() >= stop_deadline)) break;

      int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), kTickMs);
      if (n < 0 && errno != EINTR) break;
      bool accept_ready = false;
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        const uint32_t ev = events[i].events;
        if (fd == wake_fd) {
          uint64_t v;
          ssize_t ignored = read(wake_fd, &v, sizeof(v));
          (void)ignored;
          continue;
        }
        if (fd == listen_fd) {
          // After the batch: Accept may evict (close) a connection whose
          // event is still ahead in this batch, and reuse its descriptor.
          accept_ready = true;
          continue;
        }
        auto it = conns.find(fd);
        if (it == conns.end()) continue;
        Conn& c = it->second;
        if (ev & EPOLLOUT) {
          if (!Flush(c)) continue;
          // Output drained: pipelined requests held back may proceed.
          if (!c.close_after_write && c.in.buffered() != 0) {
            Process(c);
            if (!Flush(c)) continue;
          }
        }
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          if (conns.count(fd) == 0) continue;
          if (!c.reading && !(ev & (EPOLLHUP | EPOLLERR))) continue;
          if ((ev & EPOLLERR) && !(ev & EPOLLIN)) {
            CloseConn(fd);
            continue;
          }
          OnReadable(c);
        }
      }
      if (accept_ready && listen_fd >= 0) Accept();
      const uint64_t now = MonotonicNs();
      if (accept_paused_until_ns != 0 && now >= accept_paused_until_ns && listen_fd >= 0) {
        accept_paused_until_ns = 0;
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = listen_fd;
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &e);
      }
      if (now - last_sweep >= kTickMs * 1'000'000ull) {
        last_sweep = now;
        Sweep(now);
      }
    }
    std::vector<int> fds;
    for (auto& [fd, c] : conns) fds.push_back(fd);
    for (int fd : fds) CloseConn(fd);
  }
};

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              HttpHandler handler) {
  auto addr = ParseListenAddress(options.listen, "http listen address");
  if (!addr.ok()) return addr.status();
  if (options.max_connections == 0 || options.max_header_bytes < 64) {
    return absl::InvalidArgumentError(
        "http server: max_connections and max_header_bytes must be set");
  }
  std::unique_ptr<HttpServer> server(new HttpServer());
  Impl& s = *server->impl_;
  s.options = options;
  s.handler = std::move(handler);
  s.address = *addr;

  sockaddr_storage ss{};
  socklen_t len = 0;
  if (addr->ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(addr->port);
    inet_pton(AF_INET6, addr->host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(addr->port);
    inet_pton(AF_INET, addr->host.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  s.listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s.listen_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("http listen ", options.listen, ": socket: ", std::strerror(errno)));
  }
  int one = 1;
  setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (addr->ipv6) setsockopt(s.listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(s.listen_fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return absl::UnavailableError(
        absl::StrCat("http listen ", options.listen, ": bind: ", std::strerror(errno)));
  }
  if (listen(s.listen_fd, 128) != 0) {
    return absl::UnavailableError(
        absl::StrCat("http listen ", options.listen, ": listen: ", std::strerror(errno)));
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof(bound);
  getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  s.address.port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  s.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s.epoll_fd < 0 || s.wake_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("http server: epoll/eventfd: ", std::strerror(errno)));
  }
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = s.listen_fd;
  epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.listen_fd, &e);
  e.data.fd = s.wake_fd;
  epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.wake_fd, &e);
  s.thread = std::thread([&s] { s.Run(); });
  return server;
}

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stop_requested.store(true);
  uint64_t one = 1;
  ssize_t ignored = write(impl_->wake_fd, &one, sizeof(one));
  (void)ignored;
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t HttpServer::port() const { return impl_->address.port; }

std::string HttpServer::address() const {
  return impl_->address.ipv6 ? absl::StrCat("[", impl_->address.host, "]:", impl_->address.port)
                             : absl::StrCat(impl_->address.host, ":", impl_->address.port);
}

HttpServerStats HttpServer::stats() const {
  absl::MutexLock l(&impl_->stats_mu);
  return impl_->stats;
}

}  // namespace lb
