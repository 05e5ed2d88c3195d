// latency_client: an open-loop HTTP/1.1 load generator for the added-latency
// case of perf/l7_bench.sh.
//
// Requests are due at a fixed total rate (start + i / rate) whether or not
// earlier ones were answered; each is sent on an idle keep-alive connection
// as soon as one is free, and its latency runs from the moment it was due
// to the end of its response, so a stall shows up in every request it
// delays (no coordinated omission, unlike a closed-loop client). One thread,
// one epoll loop, a timerfd armed for the next due request with 1 us timer
// slack: light enough to share a CPU with the backend without being the
// bottleneck, which is what made hey's p99 (a Go runtime on that CPU) say
// more about the client than about the proxy.
//
//   latency_client --port 8080 --path /small --conns 50 --rate 10000 --secs 5
//   -> rate=9998 sent=49990 p50_ms=0.21 p90_ms=0.35 p99_ms=0.62 p999_ms=1.4 max_ms=3.1
//      errors=0 unanswered=0
//
// Responses are parsed with http-parser (the same kept parser as lb-l7).
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gflags/gflags.h"
#include "glog/logging.h"

DEFINE_string(host, "127.0.0.1", "IPv4 address of the server.");
DEFINE_uint32(port, 0, "TCP port of the server.");
DEFINE_string(path, "/", "Request target.");
DEFINE_uint32(conns, 50, "Keep-alive connections (at most one request in flight on each).");
DEFINE_uint32(rate, 1000, "Requests per second, in total, due on a fixed schedule.");
DEFINE_double(secs, 5, "Measured seconds.");
DEFINE_double(warmup_secs, 1, "Seconds at the same rate before the measurement (not recorded).");

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct Conn {
  int fd = -1;
  bool busy = false;
  int64_t due_ns = 0;  // when the request in flight was due
  bool measured = false;
  bool done = false;  // http-parser saw the end of the response
  http_parser parser;
};

int OnComplete(http_parser* p) {
  static_cast<Conn*>(p->data)->done = true;
  return 0;
}

class Client {
 public:
  bool Connect(const std::string& request) {
    request_ = request;
    settings_.on_message_complete = OnComplete;
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd_ < 0 || tfd_ < 0) return false;
    Watch(tfd_, UINT64_MAX);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(FLAGS_port));
    if (inet_pton(AF_INET, FLAGS_host.c_str(), &sa.sin_addr) != 1) {
      LOG(ERROR) << "--host: not an IPv4 address: " << FLAGS_host;
      return false;
    }
    conns_.resize(FLAGS_conns);
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = conns_[i];
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        PLOG(ERROR) << "connect " << FLAGS_host << ":" << FLAGS_port;
        return false;
      }
      Watch(c.fd, i);
      idle_.push_back(i);
    }
    return true;
  }

  // Runs the schedule: warm-up, then the measured seconds, then waits up to
  // a second for the answers still due.
  void Run() {
    const int64_t period = 1000000000 / std::max<uint32_t>(FLAGS_rate, 1);
    const int64_t start = NowNs();
    const int64_t measure_from = start + static_cast<int64_t>(FLAGS_warmup_secs * 1e9);
    const int64_t stop = measure_from + static_cast<int64_t>(FLAGS_secs * 1e9);
    int64_t next_due = start;
    epoll_event ev[64];
    while (true) {
      const int64_t now = NowNs();
      for (; next_due <= now && next_due < stop; next_due += period) {
        queue_.push_back({next_due, next_due >= measure_from});
      }
      Dispatch();
      if (next_due >= stop && queue_.empty() && InFlight() == 0) break;
      if (now > stop + 1000000000) break;  // answers still missing count as errors
      Arm(next_due < stop ? next_due : now + 1000000);
      const int n = epoll_wait(epfd_, ev, 64, 1000);
      for (int k = 0; k < n; ++k) {
        if (ev[k].data.u64 == UINT64_MAX) {
          uint64_t expirations;
          (void)!read(tfd_, &expirations, sizeof(expirations));
        } else {
          OnReadable(ev[k].data.u64);
        }
      }
    }
    unanswered_ = queue_.size() + InFlight();
    Report((std::min(NowNs(), stop) - measure_from) / 1e9);
  }

 private:
  struct Due {
    int64_t ns;
    bool measured;
  };

  void Watch(int fd, uint64_t id) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = id;
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &e);
  }

  void Arm(int64_t at_ns) {
    itimerspec its{};
    its.it_value.tv_sec = at_ns / 1000000000;
    its.it_value.tv_nsec = at_ns % 1000000000;
    timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  }

  size_t InFlight() const { return conns_.size() - idle_.size() - dead_; }

  void Dispatch() {
    while (!queue_.empty() && !idle_.empty()) {
      const Due d = queue_.front();
      queue_.pop_front();
      const size_t i = idle_.back();
      idle_.pop_back();
      Conn& c = conns_[i];
      http_parser_init(&c.parser, HTTP_RESPONSE);
      c.parser.data = &c;
      c.busy = true;
      c.done = false;
      c.due_ns = d.ns;
      c.measured = d.measured;
      if (send(c.fd, request_.data(), request_.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request_.size())) {
        Kill(i);
      }
    }
  }

  void OnReadable(size_t i) {
    Conn& c = conns_[i];
    char buf[16384];
    const ssize_t got = recv(c.fd, buf, sizeof(buf), 0);
    if (got <= 0) {
      if (got < 0 && errno == EAGAIN) return;
      Kill(i);
      return;
    }
    const size_t parsed = http_parser_execute(&c.parser, &settings_, buf, got);
    if (!c.busy || parsed != static_cast<size_t>(got) || c.parser.http_errno != HPE_OK) {
      Kill(i);
      return;
    }
    if (!c.done) return;
    if (c.measured) {
      latencies_us_.push_back(static_cast<uint32_t>((NowNs() - c.due_ns) / 1000));
      ++answered_;
    }
    if (c.parser.status_code != 200) ++errors_;
    c.busy = false;
    idle_.push_back(i);
  }

  void Kill(size_t i) {
    Conn& c = conns_[i];
    if (c.fd < 0) return;
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
    if (c.busy)
      ++errors_;
    else
      idle_.erase(std::find(idle_.begin(), idle_.end(), i));
    c.busy = false;
    ++dead_;
  }

  void Report(double secs) {
    std::sort(latencies_us_.begin(), latencies_us_.end());
    auto pct = [&](double q) {
      if (latencies_us_.empty()) return 0.0;
      const size_t k = std::min(latencies_us_.size() - 1,
                                static_cast<size_t>(q * static_cast<double>(latencies_us_.size())));
      return latencies_us_[k] / 1000.0;
    };
    std::printf(
        "rate=%.0f sent=%zu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f "
        "max_ms=%.3f errors=%zu unanswered=%zu\n",
        answered_ / std::max(secs, 1e-9), answered_, pct(0.5), pct(0.9), pct(0.99), pct(0.999),
        latencies_us_.empty() ? 0.0 : latencies_us_.back() / 1000.0, errors_, unanswered_);
  }

  std::string request_;
  http_parser_settings settings_{};
  int epfd_ = -1;
  int tfd_ = -1;
  std::vector<Conn> conns_;
  std::vector<size_t> idle_;
  std::deque<Due> queue_;
  std::vector<uint32_t> latencies_us_;
  size_t answered_ = 0;
  size_t errors_ = 0;      // closed connections, answers other than 200
  size_t unanswered_ = 0;  // still queued or in flight 1 s after the end
  size_t dead_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "open-loop HTTP/1.1 latency client: latency_client --port P --path /small --conns 50 "
      "--rate R --secs S");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  if (FLAGS_port == 0 || FLAGS_port > 65535) {
    LOG(ERROR) << "--port: give the server's TCP port";
    return 2;
  }
  if (FLAGS_conns == 0 || FLAGS_rate == 0 || FLAGS_secs <= 0) {
    LOG(ERROR) << "--conns, --rate, --secs: must be positive";
    return 2;
  }
  prctl(PR_SET_TIMERSLACK, 1000UL);  // wake up within 1 us of the next due request
  Client client;
  if (!client.Connect(absl::StrCat("GET ", FLAGS_path, " HTTP/1.1\r\nHost: ", FLAGS_host,
                                   "\r\nUser-Agent: latency_client\r\n\r\n"))) {
    return 1;
  }
  client.Run();
  return 0;
}
