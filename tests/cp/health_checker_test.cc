// The health checker (controlplane/health_checker.h) against real servers the
// test starts on 127.0.0.1 and ::1: a TCP listener that goes away and comes
// back, an HTTP server whose /health follows a script of status codes (the
// report sequence is checked against a hand-written golden list), oversized
// and never-ending responses, a server that never answers, scripts that
// succeed, fail, hang (killed at the timeout, no zombie left), and receive
// their argv/env; script security: only named, root-owned, non-writable
// scripts in a root-owned directory run, never through a symbolic link, as
// an unprivileged user without new privileges; damping of a flapping
// backend; and 1,000 targets on one thread. Intervals are tens of
// milliseconds so the whole file runs in a few seconds. The script tests
// need root (to own the scripts and to drop to "nobody").
#include "controlplane/health_checker.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace lb {
namespace {

using Clock = std::chrono::steady_clock;

v1::HealthCheck Check(v1::HealthCheckKind kind, uint32_t interval_ms, uint32_t timeout_ms) {
  v1::HealthCheck c;
  c.set_kind(kind);
  c.set_interval_ms(interval_ms);
  c.set_timeout_ms(timeout_ms);
  return c;
}

HealthTarget Target(uint32_t id, std::string address, uint16_t port, v1::HealthCheck check) {
  HealthTarget t;
  t.backend_id = id;
  t.address = std::move(address);
  t.port = port;
  t.check = std::move(check);
  return t;
}

const char* StatusName(v1::HealthStatus s) {
  switch (s) {
    case v1::HEALTH_STATUS_HEALTHY:
      return "H";
    case v1::HEALTH_STATUS_UNHEALTHY:
      return "U";
    case v1::HEALTH_STATUS_UNKNOWN:
      return "?";
    default:
      return "!";
  }
}

// Thread-safe sink for reports with a wait-for-condition helper.
class Reports {
 public:
  HealthChecker::ReportFn Fn() {
    return [this](const HealthReport& r) {
      std::lock_guard<std::mutex> l(mu_);
      all_.push_back(r);
      arrival_.push_back(Clock::now());
      cv_.notify_all();
    };
  }

  // Waits until pred(reports of backend id) holds; false on timeout.
  bool WaitFor(uint32_t id, const std::function<bool(const std::vector<HealthReport>&)>& pred,
               std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return pred(ForLocked(id)); });
  }

  bool WaitCount(uint32_t id, size_t n, std::chrono::milliseconds timeout) {
    return WaitFor(
        id, [n](const std::vector<HealthReport>& r) { return r.size() >= n; }, timeout);
  }

  std::vector<HealthReport> For(uint32_t id) {
    std::lock_guard<std::mutex> l(mu_);
    return ForLocked(id);
  }

  std::vector<Clock::time_point> ArrivalsFor(uint32_t id) {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<Clock::time_point> out;
    for (size_t i = 0; i < all_.size(); ++i) {
      if (all_[i].backend_id == id) out.push_back(arrival_[i]);
    }
    return out;
  }

 private:
  std::vector<HealthReport> ForLocked(uint32_t id) {
    std::vector<HealthReport> out;
    for (const HealthReport& r : all_) {
      if (r.backend_id == id) out.push_back(r);
    }
    return out;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<HealthReport> all_;
  std::vector<Clock::time_point> arrival_;
};

// "?H HU" style rendering for failure messages.
std::string Render(const std::vector<HealthReport>& rs) {
  std::string s;
  for (const HealthReport& r : rs) {
    absl::StrAppend(&s, StatusName(r.status), "(s", r.consecutive_successes, ",f",
                    r.consecutive_failures, ") ");
  }
  return s;
}

// A bound, listening, non-blocking loopback socket; port 0 = any.
int Listen(int family, uint16_t port) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    len = sizeof(*a);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

uint16_t PortOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// Listeners that accept and immediately close, all served by one thread.
class TcpServer {
 public:
  TcpServer(int family, int count, uint16_t port = 0) {
    for (int i = 0; i < count; ++i) {
      int fd = Listen(family, port);
      if (fd < 0) {
        ADD_FAILURE() << "listen: " << strerror(errno);
        continue;
      }
      fds_.push_back(fd);
      ports_.push_back(PortOf(fd));
    }
    thread_ = std::thread([this] { Serve(); });
  }
  ~TcpServer() { Close(); }

  uint16_t port(size_t i = 0) const { return ports_.at(i); }
  const std::vector<uint16_t>& ports() const { return ports_; }
  uint64_t accepted() const { return accepted_.load(); }

  void Close() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
    for (int fd : fds_) close(fd);
  }

 private:
  void Serve() {
    std::vector<pollfd> pfds;
    for (int fd : fds_) pfds.push_back(pollfd{fd, POLLIN, 0});
    while (!stop_) {
      if (poll(pfds.data(), pfds.size(), 20) <= 0) continue;
      for (pollfd& p : pfds) {
        if (!(p.revents & POLLIN)) continue;
        for (;;) {
          int c = accept4(p.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          ++accepted_;
          close(c);
        }
      }
    }
  }

  std::vector<int> fds_;
  std::vector<uint16_t> ports_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  std::thread thread_;
};

struct HttpResponse {
  std::string bytes;          // status line, headers, (start of) body
  uint64_t stream_bytes = 0;  // further body bytes written after `bytes`
  bool hang = false;          // read the request, never answer
};

// A tiny HTTP/1.1 server: one connection at a time, answers each request
// with handler(request index, request text).
class HttpServer {
 public:
  using Handler = std::function<HttpResponse(int index, const std::string& request)>;

  HttpServer(int family, Handler handler) : handler_(std::move(handler)) {
    fd_ = Listen(family, 0);
    EXPECT_GE(fd_, 0) << strerror(errno);
    port_ = PortOf(fd_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~HttpServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
    for (int fd : held_) close(fd);
  }

  uint16_t port() const { return port_; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }
  // Bytes of `stream_bytes` the last streaming response managed to write,
  // and whether that write ended in an error (the peer went away).
  uint64_t streamed() const { return streamed_.load(); }
  bool stream_aborted() const { return stream_aborted_.load(); }

 private:
  void Serve() {
    pollfd p{fd_, POLLIN, 0};
    while (!stop_) {
      if (poll(&p, 1, 20) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};  // bounded even if the checker misbehaves
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
        ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        req.append(buf, size_t(n));
      }
      int index;
      {
        std::lock_guard<std::mutex> l(mu_);
        index = int(requests_.size());
        requests_.push_back(req);
      }
      HttpResponse resp = handler_(index, req);
      if (resp.hang) {
        held_.push_back(c);
        continue;
      }
      SendAll(c, resp.bytes.data(), resp.bytes.size());
      if (resp.stream_bytes > 0) {
        std::string chunk(65536, 'x');
        uint64_t sent = 0;
        bool aborted = false;
        while (sent < resp.stream_bytes && !stop_) {
          size_t want = size_t(std::min<uint64_t>(chunk.size(), resp.stream_bytes - sent));
          ssize_t n = send(c, chunk.data(), want, MSG_NOSIGNAL);
          if (n <= 0) {
            aborted = true;
            break;
          }
          sent += uint64_t(n);
        }
        streamed_ = sent;
        stream_aborted_ = aborted;
      }
      close(c);
    }
  }

  static void SendAll(int fd, const char* p, size_t n) {
    while (n > 0) {
      ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
      if (k <= 0) return;
      p += k;
      n -= size_t(k);
    }
  }

  Handler handler_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<int> held_;
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::atomic<uint64_t> streamed_{0};
  std::atomic<bool> stream_aborted_{false};
};

HttpResponse Status(int code) {
  HttpResponse r;
  const char* reason = code == 200 ? "OK" : code == 503 ? "Service Unavailable" : "Other";
  std::string body = code == 200 ? "ok\n" : "down\n";
  r.bytes = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Length: ", body.size(),
                         "\r\nConnection: close\r\n\r\n", body);
  return r;
}

std::string HeaderValue(const std::string& request, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(request, "\r\n")) {
    if (line.size() > name.size() + 1 && line.substr(0, name.size() + 1) == name + ":") {
      return std::string(absl::StripLeadingAsciiWhitespace(line.substr(name.size() + 1)));
    }
  }
  return "";
}

// Our direct children, as listed in /proc (any state, zombies included).
std::vector<std::string> ChildrenOfSelf() {
  std::vector<std::string> out;
  const pid_t self = getpid();
  DIR* d = opendir("/proc");
  if (!d) return {"<cannot open /proc>"};
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(absl::StrCat("/proc/", e->d_name, "/stat"));
    std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(stat.substr(rp + 2));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == self)
      out.push_back(absl::StrCat(e->d_name, " ", stat.substr(0, rp + 1), " ", state));
  }
  closedir(d);
  return out;
}

// The process state letter from /proc/<pid>/stat, "" when it is gone.
std::string ProcState(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t rp = stat.rfind(')');
  if (rp == std::string::npos || rp + 2 >= stat.size()) return "";
  return stat.substr(rp + 2, 1);
}

int ThreadCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

// A private temporary directory, removed with its files.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lb_health_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(absl::StrCat("rm -rf '", path_, "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::unique_ptr<HealthChecker> StartChecker(Reports& reports, HealthCheckerOptions options = {}) {
  auto hc = HealthChecker::Start(reports.Fn(), std::move(options));
  EXPECT_TRUE(hc.ok()) << hc.status();
  return hc.ok() ? std::move(*hc) : nullptr;
}

constexpr auto kWait = std::chrono::milliseconds(3000);

// --------------------------------------------------------------- config

TEST(TargetsFromConfig, ChecksOnlyPoolsWithAKindAndKeepsBackendPaths) {
  v1::Config config;
  v1::Pool* none = config.add_pools();
  none->set_name("none");
  none->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_NONE);
  none->add_backends()->set_id(1);
  v1::Pool* unspecified = config.add_pools();
  unspecified->set_name("unspecified");
  unspecified->add_backends()->set_id(2);
  v1::Pool* http = config.add_pools();
  http->set_name("web");
  http->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_HTTP);
  http->mutable_health_check()->set_http_path("/ready");
  v1::Backend* b3 = http->add_backends();
  b3->set_id(3);
  b3->set_address("10.0.0.3");
  b3->set_port(8080);
  v1::Backend* b4 = http->add_backends();
  b4->set_id(4);
  b4->set_address("2001:db8::4");
  b4->set_port(80);
  b4->set_health_check_path("/custom");
  http->add_backends()->set_id(0);  // not yet assigned: skipped
  v1::Pool* tcp = config.add_pools();
  tcp->set_name("tcp");
  tcp->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_TCP);
  v1::Backend* b5 = tcp->add_backends();
  b5->set_id(5);
  b5->set_address("10.0.0.5");
  b5->set_port(443);

  std::vector<HealthTarget> targets = TargetsFromConfig(config);
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_EQ(targets[0].backend_id, 3u);
  EXPECT_EQ(targets[0].address, "10.0.0.3");
  EXPECT_EQ(targets[0].port, 8080);
  EXPECT_EQ(targets[0].check.http_path(), "/ready");
  EXPECT_EQ(targets[0].http_path_override, "");
  EXPECT_EQ(targets[1].backend_id, 4u);
  EXPECT_EQ(targets[1].http_path_override, "/custom");
  EXPECT_EQ(targets[2].backend_id, 5u);
  EXPECT_EQ(targets[2].check.kind(), v1::HEALTH_CHECK_KIND_TCP);
}

// --------------------------------------------------------------- TCP

TEST(HealthCheckerTcp, ListenerGoesAwayAndComesBack) {
  auto server = std::make_unique<TcpServer>(AF_INET, 1);
  const uint16_t port = server->port();
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_TCP, 30, 500);
  c.set_healthy_threshold(2);
  c.set_unhealthy_threshold(3);
  c.set_min_state_duration_ms(1);  // thresholds only; damping has its own test
  hc->SetTargets({Target(7, "127.0.0.1", port, c)});

  auto healthy_after_2 = [](const std::vector<HealthReport>& r) {
    return !r.empty() && r.back().status == v1::HEALTH_STATUS_HEALTHY;
  };
  ASSERT_TRUE(reports.WaitFor(7, healthy_after_2, kWait)) << Render(reports.For(7));
  std::vector<HealthReport> up = reports.For(7);
  ASSERT_EQ(up.size(), 2u) << Render(up);
  EXPECT_EQ(up[0].status, v1::HEALTH_STATUS_UNKNOWN);
  EXPECT_EQ(up[0].consecutive_successes, 1u);
  EXPECT_EQ(up[1].consecutive_successes, 2u);
  EXPECT_EQ(up[1].failed_checks, 0u);
  // A TCP check passes once the kernel completes the handshake; the server
  // thread's accept() may run later on a loaded machine.
  const auto accept_deadline = std::chrono::steady_clock::now() + kWait;
  while (server->accepted() == 0 && std::chrono::steady_clock::now() < accept_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(server->accepted(), 1u);

  server->Close();
  server.reset();
  const size_t before_down = up.size();
  ASSERT_TRUE(reports.WaitFor(
      7,
      [](const std::vector<HealthReport>& r) {
        return r.back().status == v1::HEALTH_STATUS_UNHEALTHY;
      },
      kWait))
      << Render(reports.For(7));
  std::vector<HealthReport> down = reports.For(7);
  down.erase(down.begin(), down.begin() + before_down);
  // Checks may still have succeeded between our look and the close.
  while (!down.empty() && down.front().consecutive_failures == 0) down.erase(down.begin());
  ASSERT_EQ(down.size(), 3u) << Render(down);
  EXPECT_EQ(down[0].status, v1::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(down[1].status, v1::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(down[2].status, v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(down[2].consecutive_failures, 3u);
  EXPECT_EQ(down[2].last_error, "connect: Connection refused");
  EXPECT_EQ(down[2].failed_checks, 3u);
  EXPECT_LT(down[2].latency_ms, 100);

  TcpServer reopened(AF_INET, 1, port);
  const size_t before_up = reports.For(7).size();
  ASSERT_TRUE(reports.WaitFor(7, healthy_after_2, kWait)) << Render(reports.For(7));
  std::vector<HealthReport> again = reports.For(7);
  again.erase(again.begin(), again.begin() + before_up);
  while (!again.empty() && again.front().consecutive_successes == 0) again.erase(again.begin());
  ASSERT_EQ(again.size(), 2u) << Render(again);
  EXPECT_EQ(again[0].status, v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(again[1].status, v1::HEALTH_STATUS_HEALTHY);
  // The last failure's text stays visible after recovery.
  EXPECT_EQ(again[1].last_error, "connect: Connection refused");
  hc->Stop();
}

TEST(HealthCheckerTcp, Ipv6) {
  TcpServer server(AF_INET6, 1);
  // A port nobody listens on: bind one, note it, close it.
  int tmp = Listen(AF_INET6, 0);
  ASSERT_GE(tmp, 0);
  const uint16_t dead_port = PortOf(tmp);
  close(tmp);
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_TCP, 20, 500);
  hc->SetTargets({Target(1, "::1", server.port(), c), Target(2, "::1", dead_port, c)});
  auto is = [](v1::HealthStatus s) {
    return [s](const std::vector<HealthReport>& r) { return !r.empty() && r.back().status == s; };
  };
  ASSERT_TRUE(reports.WaitFor(1, is(v1::HEALTH_STATUS_HEALTHY), kWait)) << Render(reports.For(1));
  ASSERT_TRUE(reports.WaitFor(2, is(v1::HEALTH_STATUS_UNHEALTHY), kWait)) << Render(reports.For(2));
  // Default thresholds: healthy at the 2nd check, unhealthy at the 3rd.
  std::vector<HealthReport> up = reports.For(1);
  std::vector<HealthReport> down = reports.For(2);
  EXPECT_EQ(up[0].status, v1::HEALTH_STATUS_UNKNOWN) << Render(up);
  EXPECT_EQ(up[1].status, v1::HEALTH_STATUS_HEALTHY) << Render(up);
  ASSERT_GE(down.size(), 3u);
  EXPECT_EQ(down[1].status, v1::HEALTH_STATUS_UNKNOWN) << Render(down);
  EXPECT_EQ(down[2].status, v1::HEALTH_STATUS_UNHEALTHY) << Render(down);
  EXPECT_EQ(down[2].last_error, "connect: Connection refused");
}

TEST(HealthCheckerTcp, BadAddressFailsEveryCheckWithTheFieldNamed) {
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  hc->SetTargets({Target(1, "10.0.0.300", 80, Check(v1::HEALTH_CHECK_KIND_TCP, 10, 100))});
  ASSERT_TRUE(reports.WaitCount(1, 1, kWait));
  EXPECT_EQ(reports.For(1)[0].last_error, "address: \"10.0.0.300\" is not an IPv4 or IPv6 literal");
}

// --------------------------------------------------------------- HTTP

// The server's /health answers 200 x4, 503 x5, 200 from then on. With the
// default thresholds (2 up, 3 down) and default damping (2 intervals, shorter
// than the gaps between the transitions here) the statuses must be exactly:
TEST(HealthCheckerHttp, TransitionsExactlyAtTheThresholds) {
  HttpServer server(AF_INET, [](int i, const std::string&) {
    return Status(i < 4 ? 200 : i < 9 ? 503 : 200);
  });
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_HTTP, 30, 1000);
  c.set_http_path("/status/ready?full=1");
  c.set_http_host("svc.example.test");
  hc->SetTargets({Target(3, "127.0.0.1", server.port(), c)});
  ASSERT_TRUE(reports.WaitCount(3, 13, kWait));
  hc->Stop();

  std::vector<HealthReport> r = reports.For(3);
  r.resize(13);
  const std::string expected_status = "?HHHHHUUUUHHH";
  const std::vector<uint32_t> expected_succ = {1, 2, 3, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4};
  const std::vector<uint32_t> expected_fail = {0, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 0};
  std::string got_status;
  for (size_t i = 0; i < r.size(); ++i) {
    got_status += StatusName(r[i].status);
    EXPECT_EQ(r[i].consecutive_successes, expected_succ[i]) << "check " << i;
    EXPECT_EQ(r[i].consecutive_failures, expected_fail[i]) << "check " << i;
  }
  EXPECT_EQ(got_status, expected_status) << Render(r);
  EXPECT_EQ(r[4].last_error, "HTTP 503");
  EXPECT_EQ(r[8].failed_checks, 5u);
  EXPECT_EQ(r[12].failed_checks, 5u);

  std::vector<std::string> reqs = server.requests();
  ASSERT_GE(reqs.size(), 13u);
  for (const std::string& req : reqs) {
    EXPECT_EQ(req.substr(0, req.find("\r\n")), "GET /status/ready?full=1 HTTP/1.1");
    EXPECT_EQ(HeaderValue(req, "Host"), "svc.example.test");
    EXPECT_EQ(HeaderValue(req, "Connection"), "close");
  }
  EXPECT_FALSE(hc->DrainLatencyObservationsMs().empty());
  EXPECT_TRUE(hc->DrainLatencyObservationsMs().empty());  // drained
}

TEST(HealthCheckerHttp, DefaultHostAndBackendPathOverrideOnIpv6) {
  HttpServer server(AF_INET6, [](int, const std::string&) { return Status(204); });
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  HealthTarget t = Target(9, "::1", server.port(), Check(v1::HEALTH_CHECK_KIND_HTTP, 20, 1000));
  t.check.set_http_path("/pool-path");
  t.http_path_override = "/backend-path";
  hc->SetTargets({t});
  ASSERT_TRUE(reports.WaitCount(9, 2, kWait));
  EXPECT_EQ(reports.For(9)[1].status, v1::HEALTH_STATUS_HEALTHY);  // 204 is a 2xx
  std::vector<std::string> reqs = server.requests();
  ASSERT_FALSE(reqs.empty());
  EXPECT_EQ(reqs[0].substr(0, reqs[0].find("\r\n")), "GET /backend-path HTTP/1.1");
  EXPECT_EQ(HeaderValue(reqs[0], "Host"), absl::StrCat("[::1]:", server.port()));
}

TEST(HealthCheckerHttp, BodyLargerThanTheLimitIsCutShort) {
  // Announces 64 MiB and tries to send it all; the checker must stop reading
  // at its 1 KiB limit, succeed at once and close, so the server's write fails
  // long before the end.
  constexpr uint64_t kBody = uint64_t{64} << 20;
  HttpServer server(AF_INET, [](int, const std::string&) {
    HttpResponse r;
    r.bytes = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", kBody, "\r\n\r\n");
    r.stream_bytes = kBody;
    return r;
  });
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_HTTP, 500, 2000);
  c.set_http_max_body_bytes(1024);
  hc->SetTargets({Target(1, "127.0.0.1", server.port(), c)});
  ASSERT_TRUE(reports.WaitCount(1, 1, kWait));
  HealthReport r = reports.For(1)[0];
  EXPECT_EQ(r.consecutive_successes, 1u) << r.last_error;
  EXPECT_LT(r.latency_ms, 1000);
  hc->Stop();
  // The server's stream ends (error) once the checker closed.
  for (int i = 0; i < 300 && !server.stream_aborted(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(server.stream_aborted());
  EXPECT_LT(server.streamed(), kBody);
}

TEST(HealthCheckerHttp, EndlessStatusLineFailsWithoutGrowingForever) {
  HttpServer server(AF_INET, [](int, const std::string&) {
    HttpResponse r;
    r.bytes = std::string(100000, 'A');
    return r;
  });
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  hc->SetTargets(
      {Target(1, "127.0.0.1", server.port(), Check(v1::HEALTH_CHECK_KIND_HTTP, 500, 2000))});
  ASSERT_TRUE(reports.WaitCount(1, 1, kWait));
  EXPECT_EQ(reports.For(1)[0].last_error, "status line exceeds 16384 bytes");
}

TEST(HealthCheckerHttp, ServerThatNeverAnswersTimesOut) {
  HttpServer server(AF_INET, [](int, const std::string&) {
    HttpResponse r;
    r.hang = true;
    return r;
  });
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  hc->SetTargets(
      {Target(1, "127.0.0.1", server.port(), Check(v1::HEALTH_CHECK_KIND_HTTP, 400, 150))});
  ASSERT_TRUE(reports.WaitCount(1, 1, kWait));
  HealthReport r = reports.For(1)[0];
  EXPECT_EQ(r.last_error, "timeout after 150 ms");
  EXPECT_EQ(r.consecutive_failures, 1u);
  EXPECT_GE(r.latency_ms, 150);
  EXPECT_LT(r.latency_ms, 250);
  EXPECT_EQ(server.requests().size(), 1u);  // it did receive the request
}

TEST(HealthCheckerHttp, ConnectionRefused) {
  int tmp = Listen(AF_INET, 0);
  ASSERT_GE(tmp, 0);
  const uint16_t dead_port = PortOf(tmp);
  close(tmp);
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  hc->SetTargets({Target(1, "127.0.0.1", dead_port, Check(v1::HEALTH_CHECK_KIND_HTTP, 20, 500))});
  ASSERT_TRUE(reports.WaitCount(1, 3, kWait));
  HealthReport r = reports.For(1)[2];
  EXPECT_EQ(r.last_error, "connect: Connection refused");
  EXPECT_EQ(r.status, v1::HEALTH_STATUS_UNHEALTHY);
}

// A backend alternating 200/503 on every check with thresholds 1/1 would
// change state on every check; damping of 5 intervals allows at most one
// change per 5 intervals, and the changes still happen.
TEST(HealthCheckerDamping, FlappingBackendChangesAtMostOncePerWindow) {
  HttpServer server(AF_INET, [](int i, const std::string&) { return Status(i % 2 ? 503 : 200); });
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  constexpr uint32_t kInterval = 30;
  constexpr uint32_t kWindow = 5 * kInterval;
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_HTTP, kInterval, 500);
  c.set_healthy_threshold(1);
  c.set_unhealthy_threshold(1);
  c.set_min_state_duration_ms(kWindow);
  hc->SetTargets({Target(1, "127.0.0.1", server.port(), c)});
  ASSERT_TRUE(reports.WaitCount(1, 50, std::chrono::milliseconds(10000)));
  hc->Stop();

  std::vector<HealthReport> r = reports.For(1);
  std::vector<Clock::time_point> at = reports.ArrivalsFor(1);
  std::vector<Clock::time_point> changes;
  v1::HealthStatus prev = v1::HEALTH_STATUS_UNKNOWN;
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i].status != prev) changes.push_back(at[i]);
    prev = r[i].status;
  }
  // The first check (a success) leaves UNKNOWN at once: nothing to damp yet.
  EXPECT_EQ(r[0].status, v1::HEALTH_STATUS_HEALTHY);
  // 50 checks = 10 windows: several changes, never two within a window.
  EXPECT_GE(changes.size(), 4u) << Render(r);
  EXPECT_LE(changes.size(), 11u) << Render(r);
  for (size_t i = 1; i < changes.size(); ++i) {
    const auto gap =
        std::chrono::duration_cast<std::chrono::milliseconds>(changes[i] - changes[i - 1]);
    // Slack for the delay between the decision and its arrival here (the
    // thread may be preempted in between); undamped, the gap would be one
    // interval (30 ms).
    EXPECT_GE(gap.count(), int64_t{kWindow} - 10) << "change " << i << ": " << Render(r);
  }
}

// --------------------------------------------------------------- scripts

// The user scripts run as in these tests (lb-controlplane's default).
ScriptUser Nobody() {
  auto u = LookupScriptUser("nobody");
  EXPECT_TRUE(u.ok()) << u.status();
  return u.ok() ? *u : ScriptUser{65534, 65534};
}

// A script directory the way lb-controlplane wants it: <tmp>/scripts, owned
// by root, 0755, holding root-owned 0755 scripts; and <tmp>/out, 0777, where
// scripts (running as nobody) leave what they saw. <tmp> is 0755 so that
// nobody can reach out/.
class ScriptDir {
 public:
  ScriptDir() {
    // Root-owned scripts and chown need root; the test tiers run as root.
    EXPECT_EQ(geteuid(), 0u) << "the script tests must run as root";
    EXPECT_EQ(chmod(tmp_.path().c_str(), 0755), 0);
    EXPECT_EQ(mkdir(dir().c_str(), 0755), 0);
    EXPECT_EQ(chmod(dir().c_str(), 0755), 0);  // whatever the umask
    EXPECT_EQ(mkdir(out().c_str(), 0777), 0);
    EXPECT_EQ(chmod(out().c_str(), 0777), 0);
  }
  std::string dir() const { return tmp_.path() + "/scripts"; }
  std::string out() const { return tmp_.path() + "/out"; }

  // Writes `body` to scripts/<name> with `mode`, owned by root.
  std::string Install(const std::string& name, const std::string& body, mode_t mode = 0755) {
    const std::string path = dir() + "/" + name;
    {
      std::ofstream f(path);
      f << body;
    }
    EXPECT_EQ(chown(path.c_str(), 0, 0), 0) << path;
    EXPECT_EQ(chmod(path.c_str(), mode), 0) << path;
    return path;
  }
  // A script that leaves out/ran-<name> behind when it runs: proof that a
  // refused one never did.
  std::string InstallMarker(const std::string& name, mode_t mode = 0755) {
    return Install(name, absl::StrCat("#!/bin/sh\ntouch ", out(), "/ran-", name, "\n"), mode);
  }
  bool Ran(const std::string& name) const {
    return access((out() + "/ran-" + name).c_str(), F_OK) == 0;
  }

  HealthCheckerOptions Options() const {
    HealthCheckerOptions o;
    o.script_dir = dir();
    o.script_user = Nobody();
    return o;
  }

 private:
  TempDir tmp_;
};

v1::HealthCheck ScriptCheck(std::vector<std::string> argv, uint32_t interval_ms = 20,
                            uint32_t timeout_ms = 1000) {
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_SCRIPT, interval_ms, timeout_ms);
  for (std::string& a : argv) c.add_script(std::move(a));
  return c;
}

// The first failure text of each target, after every one reported once.
std::map<uint32_t, std::string> FirstErrors(Reports& reports, HealthChecker& hc,
                                            const std::vector<HealthTarget>& targets) {
  std::map<uint32_t, std::string> out;
  hc.SetTargets(targets);
  for (const HealthTarget& t : targets) {
    EXPECT_TRUE(reports.WaitCount(t.backend_id, 1, kWait)) << t.backend_id;
  }
  hc.Stop();
  for (const HealthTarget& t : targets) {
    const std::vector<HealthReport> r = reports.For(t.backend_id);
    if (!r.empty()) out[t.backend_id] = r[0].last_error;
  }
  return out;
}

TEST(HealthCheckerScript, TrueIsHealthyFalseIsUnhealthy) {
  ScriptDir sd;
  // An ELF binary (exec'd from its fd as it is) and a "#!" script (the
  // interpreter reads it through fd 3).
  std::filesystem::copy_file("/bin/true", sd.dir() + "/true");
  ASSERT_EQ(chmod((sd.dir() + "/true").c_str(), 0755), 0);
  sd.Install("false", "#!/bin/sh\nexit 1\n");
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  hc->SetTargets({Target(1, "127.0.0.1", 1, ScriptCheck({"true"})),
                  Target(2, "127.0.0.1", 1, ScriptCheck({"false"})),
                  Target(3, "127.0.0.1", 1, ScriptCheck({"lb-check"}))});
  ASSERT_TRUE(reports.WaitCount(1, 2, kWait));
  ASSERT_TRUE(reports.WaitCount(2, 3, kWait));
  ASSERT_TRUE(reports.WaitCount(3, 1, kWait));
  hc->Stop();
  EXPECT_EQ(reports.For(1)[1].status, v1::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(reports.For(1)[1].failed_checks, 0u);
  EXPECT_EQ(reports.For(2)[2].status, v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(reports.For(2)[2].last_error, "exit status 1");
  EXPECT_EQ(reports.For(3)[0].last_error,
            absl::StrCat("script \"lb-check\": not found in ", sd.dir()));
  EXPECT_TRUE(ChildrenOfSelf().empty());
}

TEST(HealthCheckerScript, HungScriptIsKilledAtTheTimeoutWithItsGroupAndReaped) {
  ScriptDir sd;
  const std::string pidfile = sd.out() + "/grandchild.pid";
  // The shell (our child) starts a grandchild and waits for it: the timeout
  // must take both down (process-group kill).
  sd.Install("hang", "#!/bin/sh\nsleep 10 & echo $! > \"$1\"; wait\n");
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  hc->SetTargets({Target(1, "127.0.0.1", 1, ScriptCheck({"hang", pidfile}, 1000, 150))});
  ASSERT_TRUE(reports.WaitCount(1, 1, kWait));
  HealthReport r = reports.For(1)[0];
  hc->SetTargets({});  // nothing new starts while we look
  EXPECT_EQ(r.last_error, "timeout after 150 ms");
  EXPECT_GE(r.latency_ms, 150);
  EXPECT_LT(r.latency_ms, 300);

  std::vector<std::string> children;
  for (int i = 0; i < 100; ++i) {
    children = ChildrenOfSelf();
    if (children.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(children.empty()) << "left over: " << absl::StrJoin(children, "; ");

  const std::string grandchild = ReadFile(pidfile);
  ASSERT_FALSE(grandchild.empty());
  const pid_t gpid = pid_t(std::atol(grandchild.c_str()));
  std::string state;
  for (int i = 0; i < 100; ++i) {
    state = ProcState(gpid);
    if (state.empty() || state == "Z" || state == "X") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(state.empty() || state == "Z" || state == "X") << "sleep still " << state;
  if (!state.empty() && state != "Z" && state != "X") kill(gpid, SIGKILL);
}

TEST(HealthCheckerScript, GetsArgvAddressPortAndAFixedEnvironmentAndNoOtherDescriptor) {
  ScriptDir sd;
  // Each run records what it got in its own file (out.<pid>), written whole
  // and renamed, so concurrent runs cannot interleave.
  const std::string script = sd.Install(
      "check.sh",
      absl::StrCat("#!/bin/sh\n", "o=", sd.out(), "/out.$$\n",
                   "fds=\"$(readlink /proc/$$/fd/0) $(readlink /proc/$$/fd/1) "
                   "$(readlink /proc/$$/fd/2) $(readlink /proc/$$/fd/3)\"\n",
                   "leak=$(test -e /proc/$$/fd/200 && echo yes || echo no)\n",
                   "{ echo \"args=$*\"\n", "  echo \"env=$LB_BACKEND_ADDRESS $LB_BACKEND_PORT\"\n",
                   "  echo \"path=$PATH secret=${LB_TEST_SECRET-unset}\"\n",
                   "  echo \"fds $fds leak=$leak\"; } > $o.tmp && mv $o.tmp $o\n",
                   "[ \"$LB_BACKEND_PORT\" = 4242 ]\n"));
  // Neither the control plane's environment nor a descriptor it holds
  // without close-on-exec (another thread's, say) reaches the script.
  ASSERT_EQ(setenv("LB_TEST_SECRET", "root-only", 1), 0);
  const int null_fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(null_fd, 0);
  ASSERT_EQ(dup2(null_fd, 200), 200);  // no O_CLOEXEC
  close(null_fd);
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  v1::HealthCheck c = ScriptCheck({"check.sh", "--mode=strict", "two words"}, 30, 2000);
  hc->SetTargets({Target(1, "2001:db8::7", 4242, c), Target(2, "10.1.2.3", 4243, c)});
  ASSERT_TRUE(reports.WaitCount(1, 2, kWait));
  ASSERT_TRUE(reports.WaitCount(2, 3, kWait));
  hc->Stop();
  close(200);
  unsetenv("LB_TEST_SECRET");
  EXPECT_EQ(reports.For(1)[1].status, v1::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(reports.For(2)[2].status, v1::HEALTH_STATUS_UNHEALTHY);  // port 4243 != 4242
  EXPECT_EQ(reports.For(2)[2].last_error, "exit status 1");

  const std::string tail = absl::StrCat(
      "path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin secret=unset\n"
      "fds /dev/null /dev/null /dev/null ",
      script, " leak=no\n");
  const std::string want1 =
      absl::StrCat("args=--mode=strict two words 2001:db8::7 4242\nenv=2001:db8::7 4242\n", tail);
  const std::string want2 =
      absl::StrCat("args=--mode=strict two words 10.1.2.3 4243\nenv=10.1.2.3 4243\n", tail);
  int seen1 = 0, seen2 = 0;
  DIR* d = opendir(sd.out().c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("out.", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    const std::string text = ReadFile(sd.out() + "/" + name);
    seen1 += text == want1;
    seen2 += text == want2;
    EXPECT_TRUE(text == want1 || text == want2) << name << ":\n" << text;
  }
  closedir(d);
  EXPECT_GE(seen1, 2);
  EXPECT_GE(seen2, 3);
}

TEST(HealthCheckerScript, RunsAsTheScriptUserWithoutGroupsOrNewPrivileges) {
  ScriptDir sd;
  sd.Install("unprivileged", "#!/bin/sh\n[ \"$(id -u)\" != 0 ]\n");
  sd.Install("as-root", "#!/bin/sh\n[ \"$(id -u)\" = 0 ]\n");
  sd.Install("whoami", absl::StrCat("#!/bin/sh\n{ echo \"$(id -u) $(id -g) $(id -G)\"\n",
                                    "  grep NoNewPrivs /proc/self/status; } > ", sd.out(),
                                    "/who.tmp && mv ", sd.out(), "/who.tmp ", sd.out(), "/who\n"));
  const ScriptUser nobody = Nobody();
  ASSERT_NE(nobody.uid, 0u);
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  hc->SetTargets({Target(1, "127.0.0.1", 1, ScriptCheck({"unprivileged"})),
                  Target(2, "127.0.0.1", 1, ScriptCheck({"as-root"})),
                  Target(3, "127.0.0.1", 1, ScriptCheck({"whoami"}))});
  ASSERT_TRUE(reports.WaitCount(1, 2, kWait));
  ASSERT_TRUE(reports.WaitCount(2, 3, kWait));
  ASSERT_TRUE(reports.WaitCount(3, 1, kWait));
  hc->Stop();
  EXPECT_EQ(reports.For(1)[1].status, v1::HEALTH_STATUS_HEALTHY) << reports.For(1)[1].last_error;
  EXPECT_EQ(reports.For(2)[2].status, v1::HEALTH_STATUS_UNHEALTHY);
  EXPECT_EQ(reports.For(2)[2].last_error, "exit status 1");
  // Its uid and gid, its gid as the only group, no_new_privs set.
  EXPECT_EQ(ReadFile(sd.out() + "/who"),
            absl::StrCat(nobody.uid, " ", nobody.gid, " ", nobody.gid, "\nNoNewPrivs:\t1\n"));
}

TEST(HealthCheckerScript, NamesThatAreNotScriptNamesAndUnboundedArgvNeverRun) {
  ScriptDir sd;
  sd.InstallMarker("ok");
  ASSERT_EQ(mkdir((sd.dir() + "/sub").c_str(), 0755), 0);
  sd.InstallMarker("sub/ok");
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  std::vector<std::string> nine(10, "x");
  nine[0] = "ok";
  const std::map<uint32_t, std::string> errors =
      FirstErrors(reports, *hc,
                  {Target(1, "127.0.0.1", 1, ScriptCheck({"/bin/sh", "-c", "id"})),
                   Target(2, "127.0.0.1", 1, ScriptCheck({"sub/ok"})),
                   Target(3, "127.0.0.1", 1, ScriptCheck({"../scripts/ok"})),
                   Target(4, "127.0.0.1", 1, ScriptCheck({".ok"})),
                   Target(5, "127.0.0.1", 1, ScriptCheck(nine)),
                   Target(6, "127.0.0.1", 1, ScriptCheck({"ok", std::string(257, 'a')})),
                   Target(7, "127.0.0.1", 1, ScriptCheck({"ok", "a\nb"})),
                   Target(8, "127.0.0.1", 1, ScriptCheck({})),
                   Target(9, "127.0.0.1", 1, ScriptCheck({std::string(100, 'n')}))});
  const std::string rule =
      " is not a script name (1-64 characters of [A-Za-z0-9_.-], not starting with '.' or '-')";
  EXPECT_EQ(errors.at(1), "script[0]: \"/bin/sh\"" + rule);
  EXPECT_EQ(errors.at(2), "script[0]: \"sub/ok\"" + rule);
  EXPECT_EQ(errors.at(3), "script[0]: \"../scripts/ok\"" + rule);
  EXPECT_EQ(errors.at(4), "script[0]: \".ok\"" + rule);
  EXPECT_EQ(errors.at(5), "script: 9 arguments; at most 8");
  EXPECT_EQ(errors.at(6), "script[1]: 257 bytes; at most 256");
  EXPECT_EQ(errors.at(7),
            "script[1]: \"a\\nb\" may contain only visible ASCII characters and spaces");
  EXPECT_EQ(errors.at(8), "script: empty; expected a script name and its arguments");
  EXPECT_EQ(errors.at(9), absl::StrCat("script[0]: \"", std::string(64, 'n'), "...\"", rule));
  EXPECT_FALSE(sd.Ran("ok"));
  EXPECT_FALSE(sd.Ran("sub/ok"));
}

TEST(HealthCheckerScript, SymbolicLinksInTheDirectoryAreNotFollowed) {
  ScriptDir sd;
  sd.InstallMarker("real");
  ASSERT_EQ(symlink("real", (sd.dir() + "/relative").c_str()), 0);
  ASSERT_EQ(symlink((sd.dir() + "/real").c_str(), (sd.dir() + "/absolute").c_str()), 0);
  ASSERT_EQ(symlink("/bin/sh", (sd.dir() + "/sh").c_str()), 0);
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  const std::map<uint32_t, std::string> errors =
      FirstErrors(reports, *hc,
                  {Target(1, "127.0.0.1", 1, ScriptCheck({"relative"})),
                   Target(2, "127.0.0.1", 1, ScriptCheck({"absolute"})),
                   Target(3, "127.0.0.1", 1, ScriptCheck({"sh", "-c", "true"}))});
  for (const auto& [id, name] :
       std::map<uint32_t, std::string>{{1, "relative"}, {2, "absolute"}, {3, "sh"}}) {
    EXPECT_EQ(errors.at(id), absl::StrCat("script \"", name, "\": is a symbolic link in ", sd.dir(),
                                          " (links are not followed)"));
  }
  EXPECT_FALSE(sd.Ran("real"));
}

TEST(HealthCheckerScript, ScriptsAnyoneButRootCouldChangeOrNobodyCouldRunNeverRun) {
  ScriptDir sd;
  sd.InstallMarker("group-writable", 0775);
  sd.InstallMarker("world-writable", 0757);
  sd.InstallMarker("not-roots");
  ASSERT_EQ(chown((sd.dir() + "/not-roots").c_str(), Nobody().uid, 0), 0);
  sd.InstallMarker("owner-only", 0744);
  ASSERT_EQ(mkdir((sd.dir() + "/a-dir").c_str(), 0755), 0);
  ASSERT_EQ(mkfifo((sd.dir() + "/a-fifo").c_str(), 0755), 0);
  sd.Install("no-interpreter", "touch ran\n");
  Reports reports;
  auto hc = StartChecker(reports, sd.Options());
  ASSERT_TRUE(hc);
  const std::map<uint32_t, std::string> errors =
      FirstErrors(reports, *hc,
                  {Target(1, "127.0.0.1", 1, ScriptCheck({"group-writable"})),
                   Target(2, "127.0.0.1", 1, ScriptCheck({"world-writable"})),
                   Target(3, "127.0.0.1", 1, ScriptCheck({"not-roots"})),
                   Target(4, "127.0.0.1", 1, ScriptCheck({"owner-only"})),
                   Target(5, "127.0.0.1", 1, ScriptCheck({"a-dir"})),
                   Target(6, "127.0.0.1", 1, ScriptCheck({"a-fifo"})),
                   Target(7, "127.0.0.1", 1, ScriptCheck({"no-interpreter"}))});
  EXPECT_EQ(errors.at(1), "script \"group-writable\": writable by group/others (mode 0775)");
  EXPECT_EQ(errors.at(2), "script \"world-writable\": writable by group/others (mode 0757)");
  EXPECT_EQ(errors.at(3),
            absl::StrCat("script \"not-roots\": owned by uid ", Nobody().uid, ", not root"));
  EXPECT_EQ(errors.at(4), absl::StrCat("script \"owner-only\": not executable by uid ",
                                       Nobody().uid, " (mode 0744)"));
  EXPECT_EQ(errors.at(5), absl::StrCat("script \"a-dir\": not a regular file in ", sd.dir()));
  EXPECT_EQ(errors.at(6), absl::StrCat("script \"a-fifo\": not a regular file in ", sd.dir()));
  // Passed every check, but the kernel cannot run it: the step is named.
  EXPECT_EQ(errors.at(7), "exec: Exec format error");
  for (const char* name : {"group-writable", "world-writable", "not-roots", "owner-only"}) {
    EXPECT_FALSE(sd.Ran(name)) << name;
  }
  EXPECT_TRUE(ChildrenOfSelf().empty());
}

TEST(HealthCheckerScript, NothingRunsFromADirectoryAnyoneButRootCouldChange) {
  struct Case {
    std::function<void(const std::string& dir)> spoil;
    std::string error_after_dir;
  };
  const std::vector<Case> cases = {
      {[](const std::string& d) { ASSERT_EQ(chmod(d.c_str(), 0777), 0); },
       ": writable by group/others (mode 0777)"},
      {[](const std::string& d) { ASSERT_EQ(chmod(d.c_str(), 01777), 0); },
       ": writable by group/others (mode 1777)"},
      {[](const std::string& d) { ASSERT_EQ(chmod(d.c_str(), 0775), 0); },
       ": writable by group/others (mode 0775)"},
      {[](const std::string& d) { ASSERT_EQ(chown(d.c_str(), Nobody().uid, 0), 0); },
       absl::StrCat(": owned by uid ", Nobody().uid, ", not root")},
      {[](const std::string& d) { ASSERT_EQ(std::system(("rm -rf '" + d + "'").c_str()), 0); },
       ": No such file or directory"},
  };
  for (const Case& c : cases) {
    ScriptDir sd;
    sd.InstallMarker("ok");
    c.spoil(sd.dir());
    Reports reports;
    auto hc = StartChecker(reports, sd.Options());
    ASSERT_TRUE(hc);
    const std::map<uint32_t, std::string> errors =
        FirstErrors(reports, *hc, {Target(1, "127.0.0.1", 1, ScriptCheck({"ok"}))});
    EXPECT_EQ(errors.at(1), absl::StrCat("script directory ", sd.dir(), c.error_after_dir));
    EXPECT_FALSE(sd.Ran("ok"));
  }
}

TEST(HealthCheckerScript, NoScriptRunsWithoutADirectoryAndAUserAndNeverAsRoot) {
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  EXPECT_EQ(FirstErrors(reports, *hc, {Target(1, "127.0.0.1", 1, ScriptCheck({"ok"}))}).at(1),
            "script checks are disabled: no script directory configured");

  HealthCheckerOptions as_root;
  as_root.script_dir = "/etc";
  as_root.script_user = ScriptUser{0, 0};
  auto refused = HealthChecker::Start(reports.Fn(), as_root);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(), "health checker: scripts must not run as uid 0");
  HealthCheckerOptions relative;
  relative.script_dir = "scripts";
  relative.script_user = Nobody();
  EXPECT_EQ(HealthChecker::Start(reports.Fn(), relative).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto root = LookupScriptUser("root");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(root.status().message(),
            "user \"root\" is uid 0: health-check scripts never run as root");
  auto missing = LookupScriptUser("lb-no-such-user");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no user \"lb-no-such-user\"");
}

// --------------------------------------------------------------- targets

TEST(HealthCheckerTargets, SetTargetsKeepsUnchangedResetsChangedDropsRemoved) {
  TcpServer server(AF_INET, 2);
  Reports reports;
  auto hc = StartChecker(reports);
  ASSERT_TRUE(hc);
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_TCP, 20, 500);
  hc->SetTargets({Target(1, "127.0.0.1", server.port(0), c),
                  Target(2, "127.0.0.1", server.port(0), c),
                  Target(3, "127.0.0.1", server.port(0), c)});
  for (uint32_t id : {1u, 2u, 3u}) ASSERT_TRUE(reports.WaitCount(id, 3, kWait));

  // 1 unchanged but with new timing; 2 moves to another port; 3 goes away.
  v1::HealthCheck c2 = c;
  c2.set_interval_ms(25);
  hc->SetTargets(
      {Target(1, "127.0.0.1", server.port(0), c2), Target(2, "127.0.0.1", server.port(1), c)});
  const size_t n1 = reports.For(1).size();
  const size_t n2 = reports.For(2).size();
  ASSERT_TRUE(reports.WaitCount(1, n1 + 1, kWait));
  ASSERT_TRUE(reports.WaitCount(2, n2 + 2, kWait));
  const size_t n3 = reports.For(3).size();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  hc->Stop();

  const HealthReport kept = reports.For(1)[n1];
  EXPECT_EQ(kept.status, v1::HEALTH_STATUS_HEALTHY);
  EXPECT_EQ(kept.consecutive_successes, n1 + 1);
  // SetTargets is applied by the loop thread: a check of the old target 2
  // that completed just before the loop saw the new set may still report
  // (its count keeps growing). The first report whose count starts over is
  // the new target's, and it must be a fresh "unknown" with one success.
  const std::vector<HealthReport> r2 = reports.For(2);
  size_t first_new = n2;
  while (first_new < r2.size() && first_new > 0 &&
         r2[first_new].consecutive_successes > r2[first_new - 1].consecutive_successes) {
    ++first_new;
  }
  ASSERT_LT(first_new, r2.size()) << "target 2 never started over";
  EXPECT_LE(first_new - n2, 1u) << "more than one stale report of the old target";
  const HealthReport reset = r2[first_new];
  EXPECT_EQ(reset.status, v1::HEALTH_STATUS_UNKNOWN);
  EXPECT_EQ(reset.consecutive_successes, 1u);
  EXPECT_EQ(reports.For(3).size(), n3);  // nothing after its removal
}

// --------------------------------------------------------------- scale

// CPU microseconds of one blocking connect + RST close on loopback, measured
// on this thread: the kernel's share of a TCP check, whoever makes it.
double KernelConnectFloorUs(uint16_t port) {
  constexpr int kConnects = 2000;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const linger lg{1, 0};
  rusage r0{}, r1{};
  getrusage(RUSAGE_THREAD, &r0);
  for (int i = 0; i < kConnects; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    close(fd);
  }
  getrusage(RUSAGE_THREAD, &r1);
  auto us = [](const rusage& r) {
    return 1e6 * double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
  };
  return (us(r1) - us(r0)) / kConnects;
}

TEST(HealthCheckerScale, ThousandTargetsOnOneThread) {
  constexpr int kTargets = 1000;
  constexpr int kIntervalMs = 100;
  TcpServer server(AF_INET, 20);
  const double floor_us = KernelConnectFloorUs(server.port(0));
  std::mutex mu;
  std::vector<v1::HealthStatus> last(kTargets + 1, v1::HEALTH_STATUS_UNSPECIFIED);
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> failures{0};

  const int threads_before = ThreadCount();
  auto started = HealthChecker::Start([&](const HealthReport& r) {
    count.fetch_add(1, std::memory_order_relaxed);
    if (r.consecutive_failures) failures.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> l(mu);
    last[r.backend_id] = r.status;
  });
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<HealthChecker> hc = std::move(*started);
  EXPECT_EQ(ThreadCount(), threads_before + 1);

  std::vector<HealthTarget> targets;
  v1::HealthCheck c = Check(v1::HEALTH_CHECK_KIND_TCP, kIntervalMs, 1000);
  for (int i = 1; i <= kTargets; ++i) {
    targets.push_back(Target(uint32_t(i), "127.0.0.1", server.port(size_t(i) % 20), c));
  }
  const absl::Duration cpu0 = hc->CpuTime();
  const auto t0 = Clock::now();
  hc->SetTargets(std::move(targets));
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  EXPECT_EQ(ThreadCount(), threads_before + 1);
  const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu_s = absl::ToDoubleSeconds(hc->CpuTime() - cpu0);
  const uint64_t checks = count.load();
  hc->Stop();
  EXPECT_EQ(ThreadCount(), threads_before);

  int healthy = 0;
  {
    std::lock_guard<std::mutex> l(mu);
    for (int i = 1; i <= kTargets; ++i) healthy += last[i] == v1::HEALTH_STATUS_HEALTHY;
  }
  const double rate = double(checks) / wall_s;
  const double cpu_percent = 100.0 * cpu_s / wall_s;
  const double us_per_check = 1e6 * cpu_s / double(checks ? checks : 1);
  std::printf(
      "scale: targets=%d interval_ms=%d checks=%llu failures=%llu checks_per_s=%.0f "
      "checker_cpu_percent=%.1f us_per_check=%.1f kernel_connect_floor_us=%.1f\n",
      kTargets, kIntervalMs, static_cast<unsigned long long>(checks),
      static_cast<unsigned long long>(failures.load()), rate, cpu_percent, us_per_check, floor_us);
  EXPECT_EQ(healthy, kTargets);
  EXPECT_EQ(failures.load(), 0u);
  // Nominally ~19k checks (10k/s, less in the first, jittered interval). A
  // starved checker skips slots instead of bursting, so on an overloaded
  // machine there are fewer; a quarter of nominal still proves the loop
  // keeps up with 1,000 targets (4 copies of this test at once on 2 cores
  // still make 6k).
  EXPECT_GE(checks, uint64_t{5000});
  // Not absurd: on loopback a TCP check costs the kernel work of both ends of
  // a handshake (the floor, ~25 us here); the loop may add at most as much
  // again, i.e. roughly < 50% of one core at 10k checks/s.
  EXPECT_LT(us_per_check, 2.5 * floor_us);
  EXPECT_LT(cpu_percent, 90.0);  // never a busy loop
}

}  // namespace
}  // namespace lb
