// lib/l7/headers.h: the upstream request head and the client response head,
// written out in full (golden), plus the Connection-named removal rule.
#include "lib/l7/headers.h"

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

MessageHead Parse(const std::string& in, Http1Parser::Kind kind = Http1Parser::Kind::kRequest) {
  struct Keep : Http1Sink {
    MessageHead h;
    void OnHead(const MessageHead& x) override { h = x; }
    void OnBody(const char*, size_t) override {}
    void OnComplete() override {}
  } k;
  Http1Parser p(kind, Http1Limits{});
  p.Feed(in.data(), in.size(), &k);
  EXPECT_EQ(p.error(), Http1Error::kNone) << p.error_detail();
  return k.h;
}

// The upstream head for a plain-HTTP client 192.0.2.7 on port 80, request id "r".
std::string Upstream(const MessageHead& h, const HeaderRules* rules = nullptr) {
  ForwardInfo fi;
  fi.client_ip = "192.0.2.7";
  fi.listener_port = 80;
  fi.request_id = "r";
  std::string out;
  BuildUpstreamRequest(h, fi, &out, rules);
  return out;
}

TEST(Headers, UpstreamRequestGolden) {
  const MessageHead h = Parse(
      "POST http://api.test/v1?x HTTP/1.1\r\nHost: api.test\r\nConnection: keep-alive, X-Secret\r\n"
      "X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\n"
      "Proxy-Connection: x\r\nX-Forwarded-For: 198.51.100.1\r\nForwarded: for=198.51.100.1\r\n"
      "X-Forwarded-Proto: https\r\nX-Request-ID: keep-me\r\nAccept: */*\r\n"
      "Transfer-Encoding: chunked\r\n\r\n");
  ForwardInfo fi;
  fi.client_ip = "2001:db8::1";
  fi.client_ipv6 = true;
  fi.listener_port = 8080;
  fi.request_id = "generated";
  std::string out;
  EXPECT_EQ(BuildUpstreamRequest(h, fi, &out), "keep-me");
  EXPECT_EQ(out,
            "POST /v1?x HTTP/1.1\r\n"
            "Host: api.test\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 198.51.100.1, 2001:db8::1\r\n"
            "X-Forwarded-Proto: http\r\n"
            "X-Forwarded-Port: 8080\r\n"
            "Forwarded: for=198.51.100.1, for=\"[2001:db8::1]\";proto=http;host=api.test\r\n"
            "X-Request-ID: keep-me\r\n"
            "Transfer-Encoding: chunked\r\n"
            "\r\n");
}

TEST(Headers, ConnectionCannotRemoveFramingAndBadRequestIdIsReplaced) {
  const MessageHead h = Parse(
      "PUT / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host\r\nContent-Length: 3\r\n"
      "X-Request-ID: has space\r\n\r\n");
  ForwardInfo fi;
  fi.client_ip = "192.0.2.7";
  fi.listener_port = 80;
  fi.request_id = "gen-1";
  std::string out;
  EXPECT_EQ(BuildUpstreamRequest(h, fi, &out), "gen-1");
  EXPECT_EQ(out,
            "PUT / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n"
            "Forwarded: for=192.0.2.7;proto=http;host=a\r\nX-Request-ID: gen-1\r\n"
            "Content-Length: 3\r\n\r\n");
}

// A client cannot forge the mTLS subject: its own field is always removed,
// and the verified one (when there is one) is the only one sent.
TEST(Headers, ClientCertSubjectIsStrippedThenSet) {
  const MessageHead h = Parse(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Client-Cert-Subject: CN=admin\r\n"
      "x-client-cert-subject: CN=root\r\n\r\n");
  ForwardInfo fi;
  fi.client_ip = "192.0.2.7";
  fi.listener_port = 443;
  fi.proto = "https";
  fi.request_id = "r";
  std::string out;
  BuildUpstreamRequest(h, fi, &out);
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n"
            "Forwarded: for=192.0.2.7;proto=https;host=a\r\nX-Request-ID: r\r\n\r\n");
  fi.client_cert_subject = "CN=client-1,O=lb-test";
  out.clear();
  BuildUpstreamRequest(h, fi, &out);
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n"
            "Forwarded: for=192.0.2.7;proto=https;host=a\r\nX-Request-ID: r\r\n"
            "X-Client-Cert-Subject: CN=client-1,O=lb-test\r\n\r\n");
  EXPECT_TRUE(IsProtectedHeader("x-client-cert-subject"));
}

TEST(Headers, ClientResponseDropsHopByHopAndRechunks) {
  const MessageHead req = Parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const MessageHead resp = Parse(
      "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\n"
      "Transfer-Encoding: chunked\r\nServer: nginx\r\n\r\n",
      Http1Parser::Kind::kResponse);
  EXPECT_EQ(ChooseClientFraming(resp, req), ClientFraming::kChunked);
  std::string out;
  BuildClientResponse(resp, req, false, ClientFraming::kChunked, &out);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n");
  const MessageHead req10 = Parse("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(ChooseClientFraming(resp, req10), ClientFraming::kClose);
  const MessageHead head = Parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(ChooseClientFraming(resp, head), ClientFraming::kNone);
}

TEST(Headers, UpgradeHandshakePassesItsUpgradeOnly) {
  const MessageHead h = Parse(
      "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n"
      "X-Hop: 1\r\nSec-WebSocket-Key: k\r\n\r\n");
  EXPECT_TRUE(h.upgrade);
  EXPECT_EQ(Upstream(h),
            "GET /chat HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: k\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n"
            "Forwarded: for=192.0.2.7;proto=http;host=a\r\nX-Request-ID: r\r\n"
            "Upgrade: websocket\r\nConnection: upgrade\r\n\r\n");
  // Without Connection: upgrade it is an ordinary request: Upgrade is dropped.
  const MessageHead plain = Parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_FALSE(plain.upgrade);
  // A body makes it an ordinary request too.
  const MessageHead post = Parse(
      "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\n"
      "Content-Length: 0\r\n\r\n");
  EXPECT_FALSE(post.upgrade);
}

TEST(Headers, RouteRulesAddAndRemove) {
  const MessageHead h = Parse("GET / HTTP/1.1\r\nHost: a\r\nCookie: c\r\nX-Debug: 1\r\n\r\n");
  HeaderRules rules;
  rules.request_remove = {"x-debug"};
  rules.request_add = {{"X-Route", "api"}};
  rules.response_remove = {"Server"};
  rules.response_add = {{"Cache-Control", "no-store"}};
  EXPECT_EQ(Upstream(h, &rules),
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: c\r\nX-Forwarded-For: 192.0.2.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n"
            "Forwarded: for=192.0.2.7;proto=http;host=a\r\nX-Request-ID: r\r\n"
            "X-Route: api\r\n\r\n");
  const MessageHead resp = Parse("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n",
                                 Http1Parser::Kind::kResponse);
  std::string r;
  BuildClientResponse(resp, h, true, ClientFraming::kLength, &r, &rules);
  EXPECT_EQ(r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nCache-Control: no-store\r\n\r\n");
  EXPECT_TRUE(IsProtectedHeader("Content-Length"));
  EXPECT_TRUE(IsProtectedHeader("x-forwarded-for"));
  EXPECT_FALSE(IsProtectedHeader("Cache-Control"));
}

TEST(Headers, ErrorResponse) {
  std::string out;
  BuildErrorResponse(502, "cannot connect to a backend", true, &out);
  EXPECT_EQ(out,
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 28\r\n"
            "Connection: close\r\n\r\ncannot connect to a backend\n");
}

// The name lists behind a length switch: every listed name (any case) is
// known, and names of the same lengths that are not listed are not.
TEST(Headers, ProtectedNamesByLengthThenLetters) {
  for (const char* n :
       {"host", "Content-Length", "TRANSFER-ENCODING", "connection", "Keep-Alive",
        "proxy-connection", "TE", "trailer", "Upgrade", "X-Forwarded-For", "x-forwarded-proto",
        "X-Forwarded-Port", "Forwarded", "X-Request-ID", "x-client-cert-subject"}) {
    EXPECT_TRUE(IsProtectedHeader(n)) << n;
  }
  for (const char* n :
       {"", "t", "tf", "date", "hosts", "trailers", "upgradE-", "forwardet", "connectiom",
        "keep-alivf", "content-type", "content-lengtx", "x-forwarded-fox", "x-forwarded-pory",
        "proxy-connectio_", "transfer-encodinf", "x-client-cert-subjecu", "x-request-i"}) {
    EXPECT_FALSE(IsProtectedHeader(n)) << n;
  }
}

// Connection tokens split by hand: empty elements, spaces and tabs around
// tokens, any case; only whole tokens name a field.
TEST(Headers, ConnectionTokensSplitByHand) {
  const MessageHead h = Parse(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, X-A ,\tx-b\t,,\r\nConnection: X-C\r\n"
      "Connection:\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-AB: 5\r\n\r\n");
  EXPECT_TRUE(IsHopByHop(h, "x-a"));
  EXPECT_TRUE(IsHopByHop(h, "X-B"));
  EXPECT_TRUE(IsHopByHop(h, "x-c"));
  EXPECT_TRUE(IsHopByHop(h, "keep-alive"));
  EXPECT_FALSE(IsHopByHop(h, "x-d"));
  EXPECT_FALSE(IsHopByHop(h, "x-ab"));
  EXPECT_FALSE(IsHopByHop(h, ""));
  EXPECT_EQ(Upstream(h),
            "GET / HTTP/1.1\r\nHost: a\r\nX-D: 4\r\nX-AB: 5\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n"
            "Forwarded: for=192.0.2.7;proto=http;host=a\r\nX-Request-ID: r\r\n\r\n");
}

}  // namespace
}  // namespace lb::l7
