// lib/l7/http1.h: strict framing. Table of refusals (each names the vector
// and the status), accepted messages decoded the same whatever the
// segmentation, one message per Feed (pipelining).
#include "lib/l7/http1.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

struct Collect : Http1Sink {
  int heads = 0, completes = 0;
  std::string body;
  MessageHead head;
  void OnHead(const MessageHead& h) override {
    ++heads;
    head = h;
  }
  void OnBody(const char* d, size_t n) override { body.append(d, n); }
  void OnComplete() override { ++completes; }
};

// Feeds `in` in pieces of `step` bytes (0 = all at once) until complete or
// error; returns bytes consumed.
size_t FeedAll(Http1Parser& p, const std::string& in, Collect* c, size_t step = 0) {
  size_t off = 0;
  while (off < in.size() && !p.complete() && p.error() == Http1Error::kNone) {
    const size_t n = step == 0 ? in.size() - off : std::min(step, in.size() - off);
    const size_t used = p.Feed(in.data() + off, n, c);
    off += used;
    if (used == 0 && n == in.size() - off + used) break;
  }
  return off;
}

struct Refusal {
  const char* what;
  std::string bytes;
  int status;
};

TEST(Http1Request, RefusesEverySmugglingVectorAndLimit) {
  Http1Limits lim;
  lim.max_header_bytes = 512;
  lim.max_header_count = 5;
  lim.max_uri_bytes = 64;
  lim.max_body_bytes = 100;
  const std::vector<Refusal> cases = {
      {"CL with TE",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
       400},
      {"duplicate CL",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
      {"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,3\r\n\r\nabc", 400},
      {"CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400},
      {"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400},
      {"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
      {"TE twice",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n",
       400},
      {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       400},
      {"chunk size overflow",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
       400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400},
      {"NUL in value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 36), 400},
      {"CTL in value",
       "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
       "b\r\n\r\n",
       400},
      {"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400},
      {"bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
      {"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
      {"no colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},
      {"1.1 without Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
      {"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
      {"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
      {"HTTP/0.9", "GET /\r\n\r\n", 400},
      {"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"absolute-form host mismatch", "GET http://evil/ HTTP/1.1\r\nHost: good\r\n\r\n", 400},
      {"absolute-form userinfo", "GET http://u@good/ HTTP/1.1\r\nHost: good\r\n\r\n", 400},
      {"authority-form GET", "GET good:80 HTTP/1.1\r\nHost: good\r\n\r\n", 400},
      {"asterisk GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
      // Found by the l7_request fuzzer (fuzz/regressions/l7_request).
      {"version not HTTP", "GET / H^TP/1.0\r\n\r\n", 400},
      {"empty userinfo in authority", "GET http://@h/ HTTP/1.0\r\n\r\n", 400},
      {"head behind many empty lines",
       "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
      {"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"header bytes", "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(600, 'a') + "\r\n\r\n",
       431},
      {"header count", "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n",
       431},
      {"URI length", "GET /" + std::string(100, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
      {"CL over body limit", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413},
      {"chunked over body limit",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" +
           std::string(101, 'x') + "\r\n0\r\n\r\n",
       413},
  };
  for (const Refusal& r : cases) {
    for (size_t step : {size_t{0}, size_t{1}, size_t{7}}) {
      Http1Parser p(Http1Parser::Kind::kRequest, lim);
      Collect c;
      FeedAll(p, r.bytes, &c, step);
      EXPECT_NE(p.error(), Http1Error::kNone) << r.what << " (step " << step << ")";
      EXPECT_EQ(p.status(), r.status) << r.what << " (step " << step << "): " << p.error_detail();
      EXPECT_EQ(c.completes, 0) << r.what;
    }
  }
}

TEST(Http1Request, ChunkedBodyDecodedWhateverTheSegmentation) {
  const std::string in =
      "POST /up?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t step : {size_t{0}, size_t{1}, size_t{3}, size_t{16}}) {
    Http1Parser p(Http1Parser::Kind::kRequest, Http1Limits{});
    Collect c;
    EXPECT_EQ(FeedAll(p, in, &c, step), in.size());
    ASSERT_EQ(p.error(), Http1Error::kNone) << p.error_detail();
    EXPECT_TRUE(p.complete());
    EXPECT_EQ(c.body, "hello world");
    EXPECT_TRUE(c.head.chunked);
    EXPECT_EQ(c.head.method, "POST");
    EXPECT_EQ(c.head.host, "example.com:8080");
    EXPECT_EQ(c.head.origin_form, "/up?x=1");
    EXPECT_EQ(c.heads, 1);
    EXPECT_EQ(c.completes, 1);
  }
}

TEST(Http1Request, StopsAfterOneMessageForPipelining) {
  const std::string one = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string two = "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
  const std::string in = one + two;
  Http1Parser p(Http1Parser::Kind::kRequest, Http1Limits{});
  Collect c;
  EXPECT_EQ(p.Feed(in.data(), in.size(), &c), one.size());
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(c.head.origin_form, "/a");
  p.Reset();
  Collect c2;
  size_t off = one.size();
  while (off < in.size() && !p.complete()) off += p.Feed(in.data() + off, in.size() - off, &c2);
  EXPECT_EQ(off, in.size());
  EXPECT_EQ(c2.head.origin_form, "/b");
  EXPECT_EQ(c2.body, "abc");
}

TEST(Http1Request, AbsoluteFormBecomesOriginFormWithMatchingHost) {
  const std::string in = "GET http://Good.test:80/p?q HTTP/1.1\r\nHost: good.test\r\n\r\n";
  Http1Parser p(Http1Parser::Kind::kRequest, Http1Limits{});
  Collect c;
  FeedAll(p, in, &c);
  ASSERT_EQ(p.error(), Http1Error::kNone) << p.error_detail();
  EXPECT_EQ(c.head.origin_form, "/p?q");
  EXPECT_EQ(c.head.host, "good.test");
}

TEST(Http1Request, Http10WithoutHostAndKeepAlive) {
  const std::string in = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  Http1Parser p(Http1Parser::Kind::kRequest, Http1Limits{});
  Collect c;
  FeedAll(p, in, &c);
  ASSERT_EQ(p.error(), Http1Error::kNone) << p.error_detail();
  EXPECT_TRUE(c.head.keep_alive);
  EXPECT_EQ(c.head.minor, 0);
  EXPECT_EQ(c.head.host, "");
}

TEST(Http1Response, HeadResponseHasNoBodyAndCloseDelimitedEndsAtEof) {
  {
    Http1Parser p(Http1Parser::Kind::kResponse, Http1Limits{});
    p.SetRequestWasHead(true);
    Collect c;
    const std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    EXPECT_EQ(p.Feed(in.data(), in.size(), &c), in.size());
    EXPECT_TRUE(p.complete());
  }
  {
    Http1Parser p(Http1Parser::Kind::kResponse, Http1Limits{});
    Collect c;
    const std::string in = "HTTP/1.0 200 OK\r\n\r\nsome body";
    EXPECT_EQ(FeedAll(p, in, &c), in.size());
    EXPECT_FALSE(p.complete());
    EXPECT_TRUE(c.head.body_until_close);
    EXPECT_TRUE(p.FeedEof(&c));
    EXPECT_EQ(c.body, "some body");
  }
  {
    Http1Parser p(Http1Parser::Kind::kResponse, Http1Limits{});
    Collect c;
    const std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
    FeedAll(p, in, &c);
    EXPECT_FALSE(p.FeedEof(&c));  // truncated
    EXPECT_EQ(p.status(), 502);
  }
}

// What a parser makes of `in` fed in pieces: the first `first` bytes, then
// `step` bytes per Feed (0 = the rest at once). Error status and detail, or
// the head's fields, framing and body, as one comparable string.
std::string Outcome(Http1Parser::Kind kind, const Http1Limits& lim, const std::string& in,
                    size_t first, size_t step) {
  Http1Parser p(kind, lim);
  Collect c;
  size_t off = 0;
  bool first_call = true;
  while (off < in.size() && !p.complete() && p.error() == Http1Error::kNone) {
    size_t n = in.size() - off;
    if (first_call && first > 0) {
      n = std::min(n, first);
    } else if (step > 0) {
      n = std::min(n, step);
    }
    first_call = false;
    const size_t used = p.Feed(in.data() + off, n, &c);
    off += used;
    if (used == 0) break;
  }
  if (p.error() != Http1Error::kNone) {
    return "error " + std::to_string(p.status()) + " " + p.error_detail();
  }
  std::string out = c.head.method + " " + c.head.target + " " + c.head.host + " " +
                    std::to_string(c.head.status) + " " + c.head.reason + "|";
  for (const HeaderField& f : c.head.headers) absl::StrAppend(&out, f.name, "=", f.value, "|");
  out += std::to_string(c.head.content_length) + (c.head.chunked ? " chunked" : "") + "|" + c.body +
         (p.complete() ? "|complete" : "|partial") + " used=" + std::to_string(off);
  return out;
}

// The 8-byte scan (SWAR) of the head walk: a byte to refuse is refused, with
// the same detail as the byte-table checks give it, at every position of an
// 8-byte word (the value starts at 16 offsets), in the value and in the
// name; and HTAB or bytes >= 0x80 in a value stay accepted. The head whole
// (the scan) and fed one byte at a time (every line incomplete when first
// seen: the byte-table checks) must agree on every input.
TEST(Http1Swar, EveryRefusedByteAtEveryWordPosition) {
  Http1Limits lim;
  struct Bad {
    std::string byte;
    const char* detail;
  };
  const std::vector<Bad> value_bytes = {
      {std::string(1, '\0'), "control character in field value"},
      {"\x01", "control character in field value"},
      {"\x0b", "control character in field value"},
      {"\x1f", "control character in field value"},
      {"\x7f", "control character in field value"},
      {"\r", "bare CR in head"},
      {"\n", "bare LF in head"},
  };
  for (size_t pad = 0; pad < 16; ++pad) {
    for (size_t at = 0; at <= 8; ++at) {
      for (const Bad& b : value_bytes) {
        std::string value = std::string(pad, 'v') + std::string(8, 'w');
        value.insert(pad + at, b.byte);
        const std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + value + "\r\n\r\n";
        const std::string whole = Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 0);
        EXPECT_EQ(whole, std::string("error 400 ") + b.detail)
            << "pad " << pad << " at " << at << " byte " << int(b.byte[0]);
        EXPECT_EQ(whole, Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 1));
        // And in a response (the same walk, 502).
        const std::string resp =
            "HTTP/1.1 200 OK\r\nX-Pad: " + value + "\r\nContent-Length: 0\r\n\r\n";
        EXPECT_EQ(Outcome(Http1Parser::Kind::kResponse, lim, resp, 0, 0),
                  std::string("error 502 ") + b.detail);
      }
      // A control byte right before a bare LF: the LF is bare whatever
      // precedes it (only CR makes a line end).
      if (at == 8) {
        for (const std::string& b : {std::string("\t"), std::string(1, '\0'), std::string("\x01"),
                                     std::string("\x1f"), std::string("\x7f")}) {
          const std::string in =
              "GET / HTTP/1.1\r\nX-Pad: " + std::string(pad, 'v') + b + "\nHost: a\r\n\r\n";
          EXPECT_EQ(Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 0),
                    "error 400 bare LF in head")
              << "pad " << pad << " byte " << int(b[0]);
          EXPECT_EQ(Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 1),
                    "error 400 bare LF in head");
        }
      }
      // Accepted: HTAB and obs-text anywhere in a value.
      for (const char* ok : {"\t", "\x80", "\xff", " "}) {
        std::string value = std::string(pad, 'v') + std::string(8, 'w');
        value.insert(pad + at, ok);
        const std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + value + "\r\n\r\n";
        const std::string whole = Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 0);
        EXPECT_EQ(whole.rfind("error", 0), std::string::npos) << whole;
        EXPECT_EQ(whole, Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 1));
      }
    }
  }
  // In the name, at every position of a 16-byte name.
  for (size_t at = 0; at <= 16; ++at) {
    // Around the ranges the 8-byte name scan clears (letters, digits, '-'),
    // and 0xc1 / 0xe1, which are 'A' / 'a' but for their high bit.
    for (const char* bad : {" ", "\t", "\x01", "\x7f", "(", "\x80", "\xc1", "\xe1", "\xad", "\xb0",
                            "@", "[", "{", "/", ",", "\"", "=", "\\"}) {
      std::string name(16, 'n');
      name.insert(at, bad);
      const std::string in = "GET / HTTP/1.1\r\nHost: a\r\n" + name + ": v\r\n\r\n";
      const std::string whole = Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 0);
      EXPECT_EQ(whole.rfind("error 400", 0), 0u) << "at " << at << " byte " << int(bad[0]);
      EXPECT_EQ(whole, Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 1));
    }
  }
  // Names with every tchar outside the 8-byte scan's ranges, at every
  // position: accepted, with the name as sent.
  for (size_t at = 0; at <= 16; ++at) {
    for (const char* ok : {"_", "!", "#", "$", "%", "&", "'", "*", "+", ".",
                           "^", "`", "|", "~", "Z", "z", "A", "0", "9", "-"}) {
      std::string name(16, 'n');
      name.insert(at, ok);
      const std::string in = "GET / HTTP/1.1\r\nHost: a\r\n" + name + ": v\r\n\r\n";
      const std::string whole = Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 0);
      EXPECT_NE(whole.find("|" + name + "=v|"), std::string::npos) << whole;
      EXPECT_EQ(whole, Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 1));
    }
  }
  // In the start line.
  for (size_t at = 0; at <= 16; ++at) {
    for (const std::string& bad : {std::string("\x01"), std::string("\t"), std::string("\x7f"),
                                   std::string(1, '\0'), std::string("\r")}) {
      std::string target = "/" + std::string(16, 't');
      target.insert(1 + at, bad);
      const std::string in = "GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n";
      const std::string whole = Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 0);
      EXPECT_EQ(whole.rfind("error 400", 0), 0u) << "at " << at << " byte " << int(bad[0]);
      EXPECT_EQ(whole, Outcome(Http1Parser::Kind::kRequest, lim, in, 0, 1));
    }
  }
}

// Heads split across two reads at every offset (and fed a byte at a time)
// decode to exactly what the head whole in one read (parsed in place)
// decodes to, refusals included with their detail.
TEST(Http1Swar, HeadSplitAtEveryOffsetAgreesWithWhole) {
  Http1Limits lim;
  lim.max_header_bytes = 200;
  lim.max_header_count = 4;
  lim.max_uri_bytes = 40;
  const std::vector<std::pair<Http1Parser::Kind, std::string>> inputs = {
      {Http1Parser::Kind::kRequest,
       "GET /a?b=c HTTP/1.1\r\nHost: Example.test\r\nAccept:  */*  \r\nX-Tab: a\tb\r\n\r\n"},
      {Http1Parser::Kind::kRequest,
       "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n"},
      {Http1Parser::Kind::kRequest,
       "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\nY: \n\r\n"},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\nBad Name: x\r\n\r\n"},
      {Http1Parser::Kind::kRequest,
       "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n"},
      {Http1Parser::Kind::kRequest,
       "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nX\x01: 1\r\nY: 1\n\r\n"},
      {Http1Parser::Kind::kRequest,
       "GET /" + std::string(60, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(220, 'x')},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"},
      {Http1Parser::Kind::kRequest, "GET / HTTP/1.1\r\nHost: a\r\n\r"},
      {Http1Parser::Kind::kResponse,
       "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 12:00:00 GMT\r\n"
       "Content-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\nbody"},
      {Http1Parser::Kind::kResponse, "HTTP/1.1 204 No Content\r\nX: \x7f\r\n\r\n"},
      {Http1Parser::Kind::kResponse, "HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
  };
  for (const auto& [kind, in] : inputs) {
    const std::string whole = Outcome(kind, lim, in, 0, 0);
    EXPECT_EQ(whole, Outcome(kind, lim, in, 0, 1)) << in;
    for (size_t split = 1; split < in.size(); ++split) {
      EXPECT_EQ(whole, Outcome(kind, lim, in, split, 0)) << in << " split at " << split;
    }
  }
}

// A head whole in one read is parsed where it lies: Feed takes exactly the
// head (and the body it can), and the fields' bytes keep their storage
// from one message to the next (no allocation per field once warm).
TEST(Http1Swar, InPlaceHeadAndFieldStorageReused) {
  const std::string in =
      "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 12:00:00 GMT\r\n"
      "Content-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1";
  const size_t head_size = in.find("\r\n\r\n") + 4;
  Http1Parser p(Http1Parser::Kind::kResponse, Http1Limits{});
  Collect c;
  EXPECT_EQ(p.Feed(in.data(), in.size(), &c), head_size);  // the head alone
  EXPECT_EQ(c.heads, 1);
  EXPECT_EQ(p.Feed(in.data() + head_size, in.size() - head_size, &c), 3u);
  ASSERT_TRUE(p.complete()) << p.error_detail();
  EXPECT_EQ(c.body, "abc");
  ASSERT_EQ(p.head().headers.size(), 3u);
  const char* date = p.head().headers[0].value.data();
  const char* type = p.head().headers[1].value.data();
  p.Reset();
  EXPECT_TRUE(p.head().headers.empty());
  Collect c2;
  EXPECT_EQ(p.Feed(in.data(), in.size(), &c2), head_size);
  EXPECT_EQ(c2.heads, 1);
  ASSERT_EQ(p.head().headers.size(), 3u);
  EXPECT_EQ(p.head().headers[0].value.data(), date);
  EXPECT_EQ(p.head().headers[1].value.data(), type);
  EXPECT_EQ(p.head().headers[1].value, "application/octet-stream");
  // Copies and moves carry only the fields in use.
  MessageHead copy = p.head();
  EXPECT_EQ(copy.headers.size(), 3u);
  MessageHead moved = std::move(copy);
  EXPECT_EQ(moved.headers.size(), 3u);
  EXPECT_EQ(*moved.Find("content-length"), "3");
}

// The fields are views into the head's own copy of its bytes: they outlive
// the caller's buffer, and survive a swap, a move and a copy of the head.
TEST(Http1Views, FieldsOwnTheirBytesThroughSwapMoveAndCopy) {
  std::string in = "GET /a HTTP/1.1\r\nHost: x\r\nX-Trim:   padded  \r\nX-Empty:\r\n\r\n";
  Http1Parser p(Http1Parser::Kind::kRequest, Http1Limits{});
  Collect c;
  ASSERT_EQ(p.Feed(in.data(), in.size(), &c), in.size());
  ASSERT_EQ(c.heads, 1) << p.error_detail();
  in.assign(in.size(), '#');  // the caller reuses its buffer
  const HeaderList want = {{"Host", "x"}, {"X-Trim", "padded"}, {"X-Empty", ""}};
  auto same = [&](const MessageHead& h) {
    ASSERT_EQ(h.headers.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(h.headers[i].name, want[i].name) << i;
      EXPECT_EQ(h.headers[i].value, want[i].value) << i;
    }
  };
  same(p.head());
  MessageHead swapped;
  swapped.Swap(*p.mutable_head());
  p.Reset();  // the parser's next head does not reuse the swapped-out bytes
  const std::string other = "GET /b HTTP/1.1\r\nHost: yyyyyyyyyyyyyyyy\r\n\r\n";
  ASSERT_EQ(p.Feed(other.data(), other.size(), &c), other.size());
  same(swapped);
  MessageHead moved = std::move(swapped);
  same(moved);
  MessageHead copy = moved;
  moved.Clear();
  same(copy);
  EXPECT_EQ(*p.head().Find("host"), "yyyyyyyyyyyyyyyy");
}

// Fields added one by one (HTTP/2) fill several blocks; the earlier ones
// stay where they are, and clear() keeps the blocks for the next head.
TEST(Http1Views, AddedFieldsStayValidAcrossBlocks) {
  HeaderList l;
  std::vector<std::string> values;
  for (int i = 0; i < 200; ++i) {
    values.push_back(std::string(static_cast<size_t>(i % 37), static_cast<char>('a' + i % 26)));
    l.Add("x-field-" + std::to_string(i), values.back());
  }
  l.Add("x-big", std::string(5000, 'z'));
  ASSERT_EQ(l.size(), 201u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(l[static_cast<size_t>(i)].name, "x-field-" + std::to_string(i));
    EXPECT_EQ(l[static_cast<size_t>(i)].value, values[static_cast<size_t>(i)]);
  }
  EXPECT_EQ(l[200].value, std::string(5000, 'z'));
  const char* first = l[0].name.data();
  l.clear();
  EXPECT_TRUE(l.empty());
  l.Add("x-field-0", "");
  EXPECT_EQ(l[0].name.data(), first);
  EXPECT_EQ(l[0].name, "x-field-0");
}

// Release() hands the list's block to this thread's pool: the next list
// that needs a block takes that one (no allocation), and the released list
// works as a new one.
TEST(Http1Views, ReleasedBlocksAreReusedByTheNextHead) {
  HeaderList a;
  a.Add("host", "example.com");
  const char* block = a[0].name.data();
  a.Release();
  EXPECT_TRUE(a.empty());
  HeaderList b;
  b.Add("x", "y");
  EXPECT_EQ(b[0].name.data(), block) << "the pooled block was not reused";
  EXPECT_EQ(b[0].name, "x");
  a.Add("host", "again");
  EXPECT_EQ(a[0].value, "again");
  EXPECT_NE(a[0].name.data(), block) << "two lists share a block";
  EXPECT_EQ(b[0].value, "y");
}

// A keep-alive parser gives its head memory back between requests (the
// first head arrives in pieces, so the split-head buffer is used too) and
// parses the next request as before.
TEST(Http1Views, ParserReleasesIdleMemoryAndParsesTheNextHead) {
  Http1Parser p(Http1Parser::Kind::kRequest, Http1Limits());
  Collect sink;
  const std::string r1 =
      "GET /a HTTP/1.1\r\nHost: one\r\nX-Long: " + std::string(300, 'v') + "\r\n\r\n";
  ASSERT_EQ(FeedAll(p, r1, &sink, 7), r1.size());
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.head().Find("x-long")->size(), 300u);
  p.Reset();
  p.ReleaseIdleMemory();
  const std::string r2 = "GET /b HTTP/1.1\r\nHost: two\r\n\r\n";
  ASSERT_EQ(FeedAll(p, r2, &sink), r2.size());
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.head().target, "/b");
  EXPECT_EQ(*p.head().Find("host"), "two");
  EXPECT_EQ(p.head().Find("x-long"), nullptr);
  EXPECT_EQ(sink.heads, 2);
}

}  // namespace
}  // namespace lb::l7
