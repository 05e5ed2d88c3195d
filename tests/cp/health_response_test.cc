// The HTTP health check's response parser (controlplane/health_response.h):
// golden verdicts and error texts for real-looking responses, the same
// verdict whichever way recv splits the bytes (every split point, and one
// byte at a time), the bounds on what is held, and the regressions found by
// fuzz/health_response_fuzz.cc.
#include "controlplane/health_response.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lb {
namespace {

using Verdict = HealthResponseParser::Verdict;

struct Case {
  const char* what;
  std::string response;
  bool closed;  // the peer closes after the bytes
  uint64_t max_body;
  Verdict verdict;
  std::string error;
};

std::vector<Case> Cases() {
  return {
      {"200 with its body", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", false, 4096,
       Verdict::kHealthy, ""},
      {"204, no body", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false, 4096,
       Verdict::kHealthy, ""},
      {"200 without a reason phrase", "HTTP/1.1 200\r\n\r\n", true, 4096, Verdict::kHealthy, ""},
      {"LF-only line ends", "HTTP/1.0 200 OK\nContent-Length: 3\n\nyes", false, 4096,
       Verdict::kHealthy, ""},
      {"body still coming", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, 4096,
       Verdict::kNeedMore, ""},
      {"body cut short by close", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true, 4096,
       Verdict::kHealthy, ""},
      {"body beyond the limit is not waited for",
       "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789", false, 8, Verdict::kHealthy,
       ""},
      {"unparsable Content-Length, no close", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nab",
       false, 4096, Verdict::kNeedMore, ""},
      {"503", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", false, 4096,
       Verdict::kUnhealthy, "HTTP 503"},
      {"301 is not healthy", "HTTP/1.1 301 Moved Permanently\r\n", false, 4096, Verdict::kUnhealthy,
       "HTTP 301"},
      {"199 and 300 bound 2xx", "HTTP/1.1 300 x\r\n", false, 4096, Verdict::kUnhealthy, "HTTP 300"},
      {"letters in the code", "HTTP/1.1 2OO OK\r\n\r\n", false, 4096, Verdict::kUnhealthy,
       "malformed status line \"HTTP/1.1 2OO OK\""},
      {"four-digit code", "HTTP/1.1 2000 OK\r\n", false, 4096, Verdict::kUnhealthy,
       "malformed status line \"HTTP/1.1 2000 OK\""},
      {"not HTTP at all", "SSH-2.0-OpenSSH_9.2p1\r\n", false, 4096, Verdict::kUnhealthy,
       "malformed status line \"SSH-2.0-OpenSSH_9.2p1\""},
      {"binary status line is escaped", std::string("HTTP/1.1 2\x01\xff\r\n", 15), false, 4096,
       Verdict::kUnhealthy, "malformed status line \"HTTP/1.1 2\\x01\\xff\""},
      {"closed before anything", "", true, 4096, Verdict::kUnhealthy,
       "connection closed before the status line"},
      {"closed inside the status line", "HTTP/1.1 20", true, 4096, Verdict::kUnhealthy,
       "connection closed before the status line"},
  };
}

Verdict Parse(const Case& c, const std::vector<size_t>& splits, std::string* error) {
  HealthResponseParser p(c.max_body);
  size_t at = 0;
  for (size_t s : splits) {
    p.Feed(absl::string_view(c.response).substr(at, s - at));
    at = s;
  }
  p.Feed(absl::string_view(c.response).substr(at));
  const Verdict v = c.closed ? p.Finish() : p.verdict();
  *error = p.error();
  return v;
}

TEST(HealthResponseParser, GoldenVerdictsAndErrors) {
  for (const Case& c : Cases()) {
    std::string error;
    EXPECT_EQ(Parse(c, {}, &error), c.verdict) << c.what;
    EXPECT_EQ(error, c.error) << c.what;
  }
}

TEST(HealthResponseParser, SameVerdictWhereverTheBytesAreSplit) {
  for (const Case& c : Cases()) {
    for (size_t cut = 0; cut <= c.response.size(); ++cut) {
      std::string error;
      EXPECT_EQ(Parse(c, {cut}, &error), c.verdict) << c.what << " cut at " << cut;
      EXPECT_EQ(error, c.error) << c.what << " cut at " << cut;
    }
    std::vector<size_t> every_byte;
    for (size_t i = 1; i < c.response.size(); ++i) every_byte.push_back(i);
    std::string error;
    EXPECT_EQ(Parse(c, every_byte, &error), c.verdict) << c.what << " byte by byte";
  }
}

TEST(HealthResponseParser, EndlessStatusLineOrHeadersAreCutAtTheBound) {
  HealthResponseParser status(4096);
  const std::string junk(1000, 'x');
  Verdict v = Verdict::kNeedMore;
  for (int i = 0; i < 100 && v == Verdict::kNeedMore; ++i) {
    v = status.Feed(junk);
    EXPECT_LE(status.buffered_bytes(), kMaxHealthHeaderBytes + junk.size());
  }
  EXPECT_EQ(v, Verdict::kUnhealthy);
  EXPECT_EQ(status.error(), "status line exceeds 16384 bytes");
  EXPECT_EQ(status.buffered_bytes(), 0u);

  HealthResponseParser headers(4096);
  headers.Feed("HTTP/1.1 200 OK\r\n");
  v = Verdict::kNeedMore;
  for (int i = 0; i < 100 && v == Verdict::kNeedMore; ++i)
    v = headers.Feed("X-Pad: " + junk + "\r\n");
  EXPECT_EQ(v, Verdict::kUnhealthy);
  EXPECT_EQ(headers.error(), "response headers exceed 16384 bytes");
}

TEST(HealthResponseParser, DecisionIsFinal) {
  HealthResponseParser p(4096);
  EXPECT_EQ(p.Feed("HTTP/1.1 500 Oops\r\n"), Verdict::kUnhealthy);
  EXPECT_EQ(p.Feed("HTTP/1.1 200 OK\r\n\r\n"), Verdict::kUnhealthy);
  EXPECT_EQ(p.Finish(), Verdict::kUnhealthy);
  EXPECT_EQ(p.error(), "HTTP 500");
}

TEST(HealthResponseParser, StatusLineAndContentLengthHelpers) {
  EXPECT_EQ(ParseHealthStatusLine("HTTP/1.1 200 OK"), 200);
  EXPECT_EQ(ParseHealthStatusLine("HTTP/2 404"), 404);
  EXPECT_EQ(ParseHealthStatusLine("HTTP/1.1 20"), std::nullopt);
  EXPECT_EQ(ParseHealthStatusLine("HTTP/1.1"), std::nullopt);
  EXPECT_EQ(ParseHealthStatusLine("http/1.1 200 OK"), std::nullopt);
  EXPECT_EQ(ParseHealthContentLength("Server: x\r\ncontent-LENGTH:  42 \r\n"), 42);
  EXPECT_EQ(ParseHealthContentLength("Content-Length: 12abc\r\n"), -1);
  EXPECT_EQ(ParseHealthContentLength("Content-Length: -1\r\n"), -1);
  EXPECT_EQ(ParseHealthContentLength("X: y"), -1);
}

}  // namespace
}  // namespace lb
