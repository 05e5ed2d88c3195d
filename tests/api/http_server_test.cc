// Robustness of the admin HTTP server (controlplane/http_server.h) over real
// loopback sockets: malformed request lines and headers, size limits,
// slow, silent and vanishing clients, keep-alive and pipelining, connection
// limits (global with eviction of idle connections, per client address, and
// a flood of silent sockets from many 127.0.0.0/8 addresses), graceful stop.
// Every test runs its own server on an ephemeral port.
#include "controlplane/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace lb {
namespace {

using Clock = std::chrono::steady_clock;

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string body;

  std::string Header(const std::string& name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return "";
  }
};

// A blocking loopback client with deadlines on every read. `source` binds
// the client end first (any of 127.0.0.0/8 is loopback): one machine can act
// as many client addresses.
class Client {
 public:
  explicit Client(uint16_t port, const char* source = nullptr) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (source != nullptr) {
      sockaddr_in s{};
      s.sin_family = AF_INET;
      inet_pton(AF_INET, source, &s.sin_addr);
      if (bind(fd_, reinterpret_cast<sockaddr*>(&s), sizeof(s)) != 0) return;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~Client() { Close(); }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  bool Send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one response (a 1xx has no body). nullopt on timeout or EOF first.
  std::optional<Response> Read(int timeout_ms = 3000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return std::nullopt;
    }
    Response r;
    std::vector<std::string> lines = absl::StrSplit(buf_.substr(0, head_end), "\r\n");
    std::vector<std::string> first = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
    if (first.size() < 2 || !absl::SimpleAtoi(first[1], &r.status)) return std::nullopt;
    size_t length = 0;
    for (size_t i = 1; i < lines.size(); ++i) {
      size_t colon = lines[i].find(':');
      std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      if (name == "content-length") absl::SimpleAtoi(value, &length);
      r.headers.emplace_back(name, value);
    }
    buf_.erase(0, head_end + 4);
    if (r.status < 200) return r;
    if (head_only_) length = 0;
    while (buf_.size() < length) {
      if (!Fill(deadline)) return std::nullopt;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    return r;
  }

  // True when the server closes the connection (EOF or reset) in time, with
  // nothing but `allowed_leftover` unread.
  bool WaitClosed(int timeout_ms = 3000) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
      const int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) return false;
      char tmp[65536];
      ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return true;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  void set_head_only(bool v) { head_only_ = v; }
  const std::string& leftover() const { return buf_; }

 private:
  bool Fill(Clock::time_point deadline) {
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) return false;
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool head_only_ = false;
  std::string buf_;
};

// Echoes what it got: "<METHOD> <path> body=<n>".
HttpResponse Echo(const HttpRequest& r) {
  if (r.path == "/throw") throw std::runtime_error("boom");
  HttpResponse resp;
  resp.content_type = "text/plain";
  if (r.path == "/big") {
    resp.body.assign(8 * 1024 * 1024, 'x');
    return resp;
  }
  resp.body = absl::StrCat(r.method, " ", r.path, " body=", r.body.size());
  if (r.path == "/close") resp.close = true;
  return resp;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServerOptions o = HttpServerOptions()) {
    o.listen = "127.0.0.1:0";
    auto s = HttpServer::Start(o, Echo);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  void SetUp() override {
    HttpServerOptions o;
    o.request_timeout = absl::Milliseconds(400);
    o.idle_timeout = absl::Milliseconds(600);
    o.write_timeout = absl::Seconds(1);
    o.stop_grace = absl::Milliseconds(500);
    o.max_connections = 8;
    StartServer(o);
  }
  uint16_t port() const { return server_->port(); }

  // Sends `raw` on a new connection; expects `status`, then the server
  // closing the connection.
  void ExpectRefused(const std::string& raw, int status) {
    Client c(port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.Send(raw));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value()) << "no response to: " << absl::CEscape(raw);
    EXPECT_EQ(r->status, status) << absl::CEscape(raw) << " -> " << r->body;
    EXPECT_EQ(r->Header("connection"), "close") << absl::CEscape(raw);
    EXPECT_TRUE(c.WaitClosed()) << "connection stays open after: " << absl::CEscape(raw);
  }

  std::unique_ptr<HttpServer> server_;
};

constexpr char kGet[] = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";

TEST_F(HttpServerTest, KeepAliveServesSequentialRequests) {
  Client c(port());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.Send(kGet));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "GET /x body=0");
    EXPECT_EQ(r->Header("connection"), "");
    EXPECT_NE(r->Header("date"), "");
  }
  EXPECT_EQ(server_->stats().connections_accepted, 1u);
  EXPECT_EQ(server_->stats().requests, 5u);
}

TEST_F(HttpServerTest, PipelinedRequestsAnsweredInOrder) {
  Client c(port());
  ASSERT_TRUE(
      c.Send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
             "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
             "DELETE /c HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
             "GET /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  const char* expected[] = {"GET /a body=0", "POST /b body=3", "DELETE /c body=0", "GET /d body=0"};
  for (const char* e : expected) {
    auto r = c.Read();
    ASSERT_TRUE(r.has_value()) << e;
    EXPECT_EQ(r->body, e);
  }
  EXPECT_TRUE(c.WaitClosed());
  EXPECT_TRUE(c.leftover().empty());
}

TEST_F(HttpServerTest, BareLineFeedsAndLeadingEmptyLinesAccepted) {
  Client c(port());
  ASSERT_TRUE(c.Send("\r\n\nGET /lf HTTP/1.1\nHost: t\n\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /lf body=0");
}

TEST_F(HttpServerTest, GarbageRequestLinesGet400AndClose) {
  const std::vector<std::string> bad = {
      "HELLO\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
      "GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
      "G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET foo HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET / HTTP/1.x\r\nHost: t\r\n\r\n",
      "GET / FTP/1.1\r\nHost: t\r\n\r\n",
      std::string("GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n"),
      std::string("GET / HTTP/1.1\r\nHost: t\0x\r\n\r\n", 29),
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // TLS ClientHello
      "GET / HTTP/1.1\r\nHost t\r\n\r\n",                               // no colon
      "GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",                   // obs-fold
      "GET / HTTP/1.1\r\nBad Name: v\r\nHost: t\r\n\r\n",
      "GET / HTTP/1.1\r\n: v\r\nHost: t\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",  // HTTP/1.1 without Host
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1 2\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
  };
  for (const std::string& raw : bad) ExpectRefused(raw, 400);
  EXPECT_GE(server_->stats().bad_requests, bad.size());
  EXPECT_EQ(server_->stats().requests, 0u);
}

TEST_F(HttpServerTest, UnsupportedFeaturesGetTheirOwnCodes) {
  ExpectRefused("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
  ExpectRefused("GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505);
  ExpectRefused(
      "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501);
}

TEST_F(HttpServerTest, GarbageLineRefusedWithoutWaitingForTheBlankLine) {
  Client c(port());
  ASSERT_TRUE(c.Send("NOT HTTP AT ALL\r\n"));  // and nothing more
  auto r = c.Read(300);                        // well before the 400 ms request timeout
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
}

TEST_F(HttpServerTest, HeaderSectionTooLargeGets431) {
  ExpectRefused(
      absl::StrCat("GET / HTTP/1.1\r\nHost: t\r\nX-Big: ", std::string(20000, 'a'), "\r\n\r\n"),
      431);
  std::string many = "GET / HTTP/1.1\r\nHost: t\r\n";
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&many, "X-H", i, ": 0123456789\r\n");
  ExpectRefused(many + "\r\n", 431);
  // A head that never ends is cut at the limit, not buffered for ever.
  ExpectRefused(absl::StrCat("GET / HTTP/1.1\r\nHost: t\r\nX: ", std::string(17000, 'b')), 431);
  // Just under the limit is fine.
  Client c(port());
  ASSERT_TRUE(c.Send(
      absl::StrCat("GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: ", std::string(16000, 'a'), "\r\n\r\n")));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, BodyTooLargeGets413BeforeTheBodyIsRead) {
  // Announced only: the answer comes without the body being sent.
  ExpectRefused("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n", 413);
  // Announced and sent: the client's upload is drained, so it reads the 413
  // instead of a connection reset.
  Client c(port());
  ASSERT_TRUE(c.Send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n"));
  std::thread uploader([fd = c.fd()] {
    std::string chunk(65536, 'z');
    for (int i = 0; i < 32; ++i) {
      if (send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) return;
    }
    shutdown(fd, SHUT_WR);
  });
  auto r = c.Read(5000);
  uploader.join();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.WaitClosed(5000));
  // Exactly at the limit is accepted.
  Client ok(port());
  ASSERT_TRUE(
      ok.Send(absl::StrCat("POST /max HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n",
                           std::string(1048576, 'y'))));
  auto r2 = ok.Read(5000);
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(r2->body, "POST /max body=1048576");
}

TEST_F(HttpServerTest, ExpectContinue) {
  Client c(port());
  ASSERT_TRUE(
      c.Send("PUT /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = c.Read();
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.Send("data"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "PUT /e body=4");
  // Too large: 413 instead of 100.
  ExpectRefused(
      "PUT /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n", 413);
}

TEST_F(HttpServerTest, SlowClientGets408) {
  Client c(port());
  ASSERT_TRUE(c.Send("GET /slow HTTP/1.1\r\nHo"));
  const auto start = Clock::now();
  auto r = c.Read(3000);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(300));
  EXPECT_TRUE(c.WaitClosed());
  // Same for a body that never completes.
  Client b(port());
  ASSERT_TRUE(b.Send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"));
  auto r2 = b.Read(3000);
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 408);
  EXPECT_GE(server_->stats().timeouts, 2u);
}

TEST_F(HttpServerTest, TricklingClientWithinTheTimeoutIsServed) {
  HttpServerOptions o;
  o.request_timeout = absl::Seconds(5);
  StartServer(o);
  Client c(port());
  const std::string req = "POST /trickle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
  for (char ch : req) {
    ASSERT_TRUE(c.Send(std::string(1, ch)));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "POST /trickle body=5");
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  Client c(port());
  ASSERT_TRUE(c.Send(kGet));
  ASSERT_TRUE(c.Read().has_value());
  const auto start = Clock::now();
  EXPECT_TRUE(c.WaitClosed(3000));
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(500));
  // A connection that never sends anything is closed as well.
  Client silent(port());
  EXPECT_TRUE(silent.WaitClosed(3000));
}

TEST_F(HttpServerTest, ClientClosingMidRequestDoesNotDisturbOthers) {
  {
    Client c(port());
    ASSERT_TRUE(c.Send("GET /half HTTP/1.1\r\nHos"));
  }
  {
    Client c(port());
    ASSERT_TRUE(c.Send("POST /half HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly-part"));
  }
  {
    // Half-close after complete requests: they are still answered.
    Client c(port());
    ASSERT_TRUE(c.Send(std::string(kGet) + kGet));
    shutdown(c.fd(), SHUT_WR);
    ASSERT_TRUE(c.Read().has_value());
    ASSERT_TRUE(c.Read().has_value());
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    // Reset with a response pending.
    Client c(port());
    ASSERT_TRUE(c.Send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n"));
    pollfd p{c.fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 3000), 1);  // the response has started
    linger l{1, 0};
    setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  Client c(port());
  ASSERT_TRUE(c.Send(kGet));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server_->stats().requests, 4u);
}

TEST_F(HttpServerTest, ClientThatDoesNotReadIsCutOffAfterWriteTimeout) {
  Client c(port());
  ASSERT_TRUE(c.Send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1800));  // > write_timeout + tick
  // The server gave up: draining what was sent ends in EOF or reset, short
  // of the 8 MiB body.
  EXPECT_TRUE(c.WaitClosed(3000));
  EXPECT_LT(c.leftover().size(), 8u * 1024 * 1024);
}

TEST_F(HttpServerTest, HeadHttp10AndConnectionClose) {
  {
    Client c(port());
    c.set_head_only(true);
    ASSERT_TRUE(c.Send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->Header("content-length"), "13");  // of "GET /h body=0"
    ASSERT_TRUE(c.Send(kGet));                     // no body bytes were in the way
    c.set_head_only(false);
    auto r2 = c.Read();
    ASSERT_TRUE(r2.has_value());
    EXPECT_EQ(r2->body, "GET /x body=0");
  }
  {
    Client c(port());
    ASSERT_TRUE(c.Send("GET /old HTTP/1.0\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->Header("connection"), "close");
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    Client c(port());
    ASSERT_TRUE(c.Send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->Header("connection"), "keep-alive");
    ASSERT_TRUE(c.Send("GET /again HTTP/1.0\r\n\r\n"));
    ASSERT_TRUE(c.Read().has_value());
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    Client c(port());
    ASSERT_TRUE(c.Send("GET /close HTTP/1.1\r\nHost: t\r\n\r\n" + std::string(kGet)));
    auto r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->Header("connection"), "close");  // the handler asked; the 2nd is not served
    EXPECT_TRUE(c.WaitClosed());
    EXPECT_TRUE(c.leftover().empty());
  }
}

TEST_F(HttpServerTest, HandlerExceptionIs500) {
  Client c(port());
  ASSERT_TRUE(c.Send("GET /throw HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
  ASSERT_TRUE(c.Send(kGet));  // the connection and the server survive
  EXPECT_TRUE(c.Read().has_value());
}

// At max_connections a newcomer is not refused while a connection has no
// request in progress: the one idle for longest is closed instead.
TEST_F(HttpServerTest, AtTheLimitTheLongestIdleConnectionMakesRoom) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<Client>(port()));
    ASSERT_TRUE(clients.back()->Send(kGet));
    ASSERT_TRUE(clients.back()->Read().has_value());
  }
  Client extra(port());
  ASSERT_TRUE(extra.Send(kGet));
  auto r = extra.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(clients.front()->WaitClosed()) << "the oldest idle connection stays open";
  EXPECT_TRUE(clients.front()->leftover().empty());
  // The others were left alone.
  ASSERT_TRUE(clients.back()->Send(kGet));
  auto r2 = clients.back()->Read();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(server_->stats().evicted_idle_connections, 1u);
  EXPECT_EQ(server_->stats().rejected_connections, 0u);
}

// Only when every connection is mid-request does a newcomer get 503.
TEST_F(HttpServerTest, AtTheLimitWithEveryConnectionBusyAnswers503) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<Client>(port()));
    ASSERT_TRUE(clients.back()->Send("GET /x HTTP/1.1\r\nHost: t\r\n"));  // head not done
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server has read them
  Client extra(port());
  auto r = extra.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_TRUE(extra.WaitClosed());
  EXPECT_EQ(server_->stats().rejected_connections, 1u);
  EXPECT_EQ(server_->stats().evicted_idle_connections, 0u);
  // A slot is free again once the server has seen a close.
  clients.pop_back();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Client again(port());
  ASSERT_TRUE(again.Send(kGet));
  auto r2 = again.Read();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 200);
}

TEST_F(HttpServerTest, PerClientAddressLimitAnswers503) {
  HttpServerOptions o;
  o.max_connections_per_client = 4;
  StartServer(o);
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Client>(port(), "127.0.0.5"));
    ASSERT_TRUE(clients.back()->connected());
  }
  Client over(port(), "127.0.0.5");
  ASSERT_TRUE(over.connected());
  auto r = over.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 503);
  EXPECT_TRUE(over.WaitClosed());
  EXPECT_EQ(server_->stats().rejected_per_client, 1u);
  // Another address is not affected, and the first one's connections work.
  Client other(port(), "127.0.0.6");
  ASSERT_TRUE(other.Send(kGet));
  auto r2 = other.Read();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 200);
  ASSERT_TRUE(clients[0]->Send(kGet));
  auto r3 = clients[0]->Read();
  ASSERT_TRUE(r3.has_value());
  EXPECT_EQ(r3->status, 200);
  // Closing one frees a slot for that address.
  clients.pop_back();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Client again(port(), "127.0.0.5");
  ASSERT_TRUE(again.Send(kGet));
  auto r4 = again.Read();
  ASSERT_TRUE(r4.has_value());
  EXPECT_EQ(r4->status, 200);
  EXPECT_EQ(server_->stats().rejected_per_client, 1u);
}

// The deadline of the first request counts from the accept: a connection
// that never sends a byte is closed after request_timeout (silently: it asked
// nothing), not after idle_timeout. A keep-alive connection that completed a
// request gets idle_timeout.
TEST_F(HttpServerTest, SilentConnectionIsClosedAfterRequestTimeout) {
  HttpServerOptions o;
  o.request_timeout = absl::Milliseconds(300);
  o.idle_timeout = absl::Seconds(30);
  StartServer(o);
  const auto start = Clock::now();
  Client silent(port());
  Client keep(port());
  ASSERT_TRUE(keep.Send(kGet));
  ASSERT_TRUE(keep.Read().has_value());
  Client late(port());  // starts its request after a while, never finishes it
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(late.Send("GET /late HTTP/1.1\r\nHo"));
  EXPECT_TRUE(silent.WaitClosed(3000)) << "a silent connection holds its slot";
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(250));
  EXPECT_TRUE(silent.leftover().empty()) << silent.leftover();
  auto r = late.Read(3000);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 408);
  // Well past request_timeout, the idle keep-alive connection still works.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ASSERT_TRUE(keep.Send(kGet));
  auto r2 = keep.Read();
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 200);
  EXPECT_GE(server_->stats().timeouts, 2u);
}

// Raises the soft RLIMIT_NOFILE to at least `want` for the life of the
// object (the hard limit permitting).
class NoFileLimit {
 public:
  explicit NoFileLimit(rlim_t want) {
    getrlimit(RLIMIT_NOFILE, &old_);
    rlimit r = old_;
    if (r.rlim_cur < want) r.rlim_cur = std::min(want, r.rlim_max);
    ok_ = r.rlim_cur >= want && setrlimit(RLIMIT_NOFILE, &r) == 0;
  }
  ~NoFileLimit() { setrlimit(RLIMIT_NOFILE, &old_); }
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  bool ok_ = false;
};

// The lock-out this server must not have: max_connections sockets that never
// send a byte, from many addresses (each within the per-client limit). A new
// client still gets its answer at once, because the longest-idle silent
// connection makes room; one more from a full address gets 503.
TEST(HttpServerFlood, SilentConnectionsDoNotLockOutANewClient) {
  constexpr int kConnections = 1024;
  constexpr int kPerClient = 32;
  NoFileLimit limit(2 * kConnections + 256);
  ASSERT_TRUE(limit.ok()) << "RLIMIT_NOFILE cannot be raised to " << 2 * kConnections + 256;
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  o.max_connections = kConnections;
  o.max_connections_per_client = kPerClient;
  o.request_timeout = absl::Seconds(30);  // the flood outlives the test
  auto s = HttpServer::Start(o, Echo);
  ASSERT_TRUE(s.ok()) << s.status();
  HttpServer& server = **s;

  std::vector<std::unique_ptr<Client>> flood;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < kConnections; ++i) {
    const std::string source = absl::StrCat("127.0.0.", 2 + i / kPerClient);  // .2 .. .33
    flood.push_back(std::make_unique<Client>(server.port(), source.c_str()));
    ASSERT_TRUE(flood.back()->connected()) << source << " #" << i << ": " << strerror(errno);
    // Stay well inside the listen backlog: let the server accept as we go.
    if (i % 64 == 63) {
      while (server.stats().connections_accepted < static_cast<uint64_t>(i + 1) &&
             Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  while (server.stats().connections_accepted < kConnections && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(server.stats().connections_accepted, static_cast<uint64_t>(kConnections));
  ASSERT_EQ(server.stats().rejected_per_client, 0u);

  const auto start = Clock::now();
  Client fresh(server.port(), "127.0.0.1");
  ASSERT_TRUE(fresh.Send(kGet));
  auto r = fresh.Read(5000);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  ASSERT_TRUE(r.has_value()) << "no answer within 5 s with " << kConnections << " silent sockets";
  EXPECT_EQ(r->status, 200) << r->body;
  std::printf("a new client got %d after %lld ms next to %d silent connections\n", r->status,
              static_cast<long long>(took), kConnections);
  EXPECT_EQ(server.stats().evicted_idle_connections, 1u);
  EXPECT_EQ(server.stats().rejected_connections, 0u);
  // The first silent socket (the longest idle) is the one that went.
  EXPECT_TRUE(flood.front()->WaitClosed(3000));

  // 127.0.0.33 holds its 32: one more from there is refused at once.
  Client over(server.port(), "127.0.0.33");
  ASSERT_TRUE(over.connected());
  auto r2 = over.Read(5000);
  ASSERT_TRUE(r2.has_value());
  EXPECT_EQ(r2->status, 503);
  EXPECT_EQ(server.stats().rejected_per_client, 1u);

  flood.clear();
  server.Stop();
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Out of file descriptors, accept() keeps failing while the connection waits
// in the backlog: the server must back off, not spin, and recover.
TEST_F(HttpServerTest, OutOfDescriptorsDoesNotSpinAndRecovers) {
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  int highest = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    highest = std::max(highest, std::stoi(e.path().filename().string()));
  }
  rlimit tight = old;
  tight.rlim_cur = static_cast<rlim_t>(highest + 1);  // no descriptor is free
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  std::vector<int> fillers;  // take every free number below the limit
  for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
  ASSERT_EQ(errno, EMFILE);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : fds) {
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    std::string req = kGet;
    EXPECT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  }
  const double cpu0 = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const double cpu = ProcessCpuSeconds() - cpu0;
  for (int fd : fillers) close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  EXPECT_LT(cpu, 0.2) << "the server spins while accept() fails";
  EXPECT_EQ(server_->stats().connections_accepted, 0u) << "accept() did not fail: test is void";
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 3000), 1) << "not served after descriptors are free again";
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    EXPECT_GT(n, 12);
    if (n > 12) {
      EXPECT_EQ(std::string(buf, 12), "HTTP/1.1 200");
    }
    close(fd);
  }
}

TEST_F(HttpServerTest, GracefulStop) {
  Client idle(port());
  ASSERT_TRUE(idle.Send(kGet));
  ASSERT_TRUE(idle.Read().has_value());
  Client busy(port());  // a response larger than the socket buffers, not read yet
  ASSERT_TRUE(busy.Send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::thread reader([&busy] {
    auto r = busy.Read(5000);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body.size(), 8u * 1024 * 1024);
    EXPECT_EQ(r->Header("connection"), "");  // produced before the stop
  });
  const auto start = Clock::now();
  server_->Stop();
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(1500));
  reader.join();
  EXPECT_TRUE(idle.WaitClosed(1000));
  Client late(port());
  EXPECT_FALSE(late.connected());  // the listener is gone
  server_->Stop();                 // idempotent
}

TEST(HttpServerStart, RefusesBadListenAddresses) {
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:99999", "nohost:80", "[::1:80", "1.2.3.4.5:1"}) {
    HttpServerOptions o;
    o.listen = bad;
    auto s = HttpServer::Start(o, Echo);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  auto first = HttpServer::Start(o, Echo);
  ASSERT_TRUE(first.ok());
  o.listen = (*first)->address();
  auto second = HttpServer::Start(o, Echo);  // port in use
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find((*first)->address()), std::string::npos);
}

TEST(HttpServerStart, ServesIpv6Loopback) {
  HttpServerOptions o;
  o.listen = "[::1]:0";
  auto s = HttpServer::Start(o, Echo);
  if (!s.ok()) {
    // No IPv6 in this network namespace is a property of the machine, which
    // the loopback check below makes visible rather than silently skipping.
    FAIL() << "cannot listen on [::1]: " << s.status();
  }
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((*s)->port());
  a.sin6_addr = in6addr_loopback;
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  std::string req = kGet;
  ASSERT_EQ(send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof(buf), 0);
  close(fd);
  ASSERT_GT(n, 12);
  EXPECT_EQ(std::string(buf, 12), "HTTP/1.1 200");
}

TEST(ParseListenAddress, Loopback) {
  EXPECT_TRUE(ParseListenAddress("127.0.0.1:8080", "x")->loopback);
  EXPECT_TRUE(ParseListenAddress("127.1.2.3:8080", "x")->loopback);
  EXPECT_TRUE(ParseListenAddress("localhost:8080", "x")->loopback);
  EXPECT_TRUE(ParseListenAddress("[::1]:8080", "x")->loopback);
  EXPECT_FALSE(ParseListenAddress("0.0.0.0:8080", "x")->loopback);
  EXPECT_FALSE(ParseListenAddress("10.1.2.3:8080", "x")->loopback);
  EXPECT_FALSE(ParseListenAddress("[::]:8080", "x")->loopback);
  EXPECT_EQ(ParseListenAddress("[::]:8080", "x")->port, 8080);
}

}  // namespace
}  // namespace lb
