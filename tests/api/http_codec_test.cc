// HttpRequestDecoder (controlplane/http_codec.h): framing as a pure function
// of the bytes, and the same answer however the bytes are split across reads
// (the fuzz target fuzz/http_request_fuzz.cc checks that at random; the
// cases below were found broken by reading the old framing code).
#include "controlplane/http_codec.h"

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace lb {
namespace {

using Kind = HttpDecodeResult::Kind;

HttpCodecLimits Limits(size_t header, size_t body) {
  HttpCodecLimits l;
  l.max_header_bytes = header;
  l.max_body_bytes = body;
  return l;
}

// The whole input in one read.
std::vector<HttpDecodeResult> Whole(absl::string_view in, HttpCodecLimits l = HttpCodecLimits()) {
  return DecodeHttpChunks({in}, l);
}

// One byte per read.
std::vector<HttpDecodeResult> Drip(absl::string_view in, HttpCodecLimits l = HttpCodecLimits()) {
  std::vector<absl::string_view> bytes;
  for (size_t i = 0; i < in.size(); ++i) bytes.push_back(in.substr(i, 1));
  return DecodeHttpChunks(bytes, l);
}

// Every two-way split, and one byte per read, agree with one read on the
// kinds, statuses and errors.
void ExpectSplitInvariant(absl::string_view in, HttpCodecLimits l = HttpCodecLimits()) {
  const std::vector<HttpDecodeResult> whole = Whole(in, l);
  auto same = [&](const std::vector<HttpDecodeResult>& other, const std::string& how) {
    ASSERT_EQ(other.size(), whole.size()) << how;
    for (size_t i = 0; i < whole.size(); ++i) {
      EXPECT_EQ(other[i].kind, whole[i].kind) << how << " result " << i;
      EXPECT_EQ(other[i].status, whole[i].status) << how << " result " << i;
      EXPECT_EQ(other[i].error, whole[i].error) << how << " result " << i;
      EXPECT_EQ(other[i].request.target, whole[i].request.target) << how << " result " << i;
      EXPECT_EQ(other[i].request.body, whole[i].request.body) << how << " result " << i;
    }
  };
  for (size_t split = 0; split <= in.size(); ++split) {
    same(DecodeHttpChunks({in.substr(0, split), in.substr(split)}, l),
         "split at " + std::to_string(split));
  }
  same(Drip(in, l), "one byte per read");
}

TEST(HttpCodec, OneRequestWithBody) {
  const std::string in = "POST /backends?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd";
  auto r = Whole(in);
  ASSERT_EQ(r.size(), 2u);
  ASSERT_EQ(r[0].kind, Kind::kRequest);
  EXPECT_EQ(r[0].request.method, "POST");
  EXPECT_EQ(r[0].request.path, "/backends");
  EXPECT_EQ(r[0].request.query, "x=1");
  EXPECT_EQ(r[0].request.body, "abcd");
  EXPECT_TRUE(r[0].keep_alive);
  EXPECT_EQ(r[1].kind, Kind::kNeedMore);
  ExpectSplitInvariant(in);
}

TEST(HttpCodec, PipelinedAndLeadingEmptyLines) {
  const std::string in =
      "\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\n\r\nGET /c HT";
  auto r = Whole(in);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].request.target, "/a");
  EXPECT_EQ(r[1].request.target, "/b");
  EXPECT_FALSE(r[1].keep_alive);  // 1.0 without keep-alive
  EXPECT_EQ(r[2].kind, Kind::kNeedMore);
  ExpectSplitInvariant(in);
}

// Found reading the old framing for split dependence (the fuzz target now
// guards it): a method longer than 32 characters was refused
// (400) when the first read ended inside it, and served when the line came
// in one read.
TEST(HttpCodec, LongMethodRefusedWhateverTheSplit) {
  const std::string in = std::string(40, 'A') + " / HTTP/1.1\r\nHost: a\r\n\r\n";
  auto r = Whole(in);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, Kind::kError);
  EXPECT_EQ(r[0].status, 400);
  EXPECT_EQ(r[0].error, "malformed method");
  ExpectSplitInvariant(in);
}

// Found reading the old framing for split dependence (the fuzz target now
// guards it): with a bad version and a stray CR in a later
// header, one read answered 400 (the head was checked for CR first) and a
// read ending after the request line answered 505.
TEST(HttpCodec, ErrorsReportedInByteOrder) {
  const std::string in = "GET / HTTP/2.0\r\nHost: a\r\nX: a\rb\r\n\r\n";
  auto r = Whole(in);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, 505);
  ExpectSplitInvariant(in);
}

// Found reading the old framing for split dependence (the fuzz target now
// guards it): the early method check took a NUL for a token
// character (strchr finds the terminator), the full parse did not.
TEST(HttpCodec, NulInMethod) {
  const std::string in("GE\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 28);
  auto r = Whole(in);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, 400);
  EXPECT_EQ(r[0].error, "malformed method");
  ExpectSplitInvariant(in);
}

// Found reading the old framing for split dependence (the fuzz target now
// guards it): a request line that ends past max_header_bytes
// was judged on its version (505) when it arrived whole and refused as too
// large (431) when the first read stopped at the limit.
TEST(HttpCodec, LineBeyondTheLimitIs431) {
  const HttpCodecLimits l = Limits(64, 1024);
  const std::string in = "GET /" + std::string(80, 'x') + " HTTP/3.0\r\nHost: a\r\n\r\n";
  auto r = Whole(in, l);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, 431);
  ExpectSplitInvariant(in, l);
}

// The head terminator straddling the limit: 431 in one read as in two.
TEST(HttpCodec, TerminatorStraddlingTheLimit) {
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  const HttpCodecLimits l = Limits(64, 1024);
  in += std::string(64 - in.size() - 2, 'y');
  in += "\r\n\r\n";  // the blank line ends at byte 66
  auto r = Whole(in, l);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, 431);
  ExpectSplitInvariant(in, l);
}

TEST(HttpCodec, BodyLimitAndTransferEncoding) {
  const HttpCodecLimits l = Limits(1024, 8);
  auto big = Whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n", l);
  ASSERT_EQ(big.size(), 1u);
  EXPECT_EQ(big[0].status, 413);
  auto te = Whole("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", l);
  ASSERT_EQ(te.size(), 1u);
  EXPECT_EQ(te[0].status, 501);
}

TEST(HttpCodec, RefusalIsSticky) {
  HttpRequestDecoder d(Limits(1024, 1024));
  d.Append("BAD\x01 / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(d.Next().status, 400);
  d.Append("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(d.Next().kind, Kind::kError);
}

TEST(HttpCodec, ContinueOncePerRequest) {
  HttpRequestDecoder d(Limits(1024, 1024));
  d.Append("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(d.Next().kind, Kind::kNeedMore);
  EXPECT_TRUE(d.in_request());
  EXPECT_TRUE(d.TakeContinue());
  EXPECT_FALSE(d.TakeContinue());
  d.Append("ok");
  HttpDecodeResult r = d.Next();
  ASSERT_EQ(r.kind, Kind::kRequest);
  EXPECT_EQ(r.request.body, "ok");
  EXPECT_FALSE(d.in_request());
}

}  // namespace
}  // namespace lb
