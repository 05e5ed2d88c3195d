// lib/l7/h2_server.h against a real nghttp2 client session in the same
// process: the heads the sink sees, the refusals, flow control held until
// Consume, and the response head as the client decodes it.
#include "lib/l7/h2_server.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lb::l7 {
namespace {

struct Sink : H2Sink {
  std::map<int32_t, MessageHead> heads;
  std::map<int32_t, int> refused;
  std::map<int32_t, std::string> bodies;
  std::map<int32_t, bool> ended;
  std::string answer_body;
  H2Server* server = nullptr;
  bool consume = true;
  bool answer = false;
  void OnRequest(int32_t id, MessageHead* h, bool) override {
    heads[id] = *h;
    if (answer) {
      server->SubmitResponse(id,
                             "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\n"
                             "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
                             "Set-Cookie: a=b\r\nX-Mixed-Case: v\r\n\r\n",
                             true);
    }
  }
  void OnRefused(int32_t id, int status, absl::string_view) override { refused[id] = status; }
  void OnData(int32_t id, const char* d, size_t n) override {
    bodies[id].append(d, n);
    if (consume) server->Consume(id, n);
  }
  void OnRequestEnd(int32_t id) override { ended[id] = true; }
  void OnStreamClose(int32_t, uint32_t) override {}
  ssize_t ReadBody(int32_t, uint8_t* buf, size_t n, bool* eof) override {
    const size_t k = std::min(n, answer_body.size());
    memcpy(buf, answer_body.data(), k);
    answer_body.erase(0, k);
    *eof = answer_body.empty();
    return static_cast<ssize_t>(k);
  }
};

// The client side: nghttp2's own client session.
struct Client {
  nghttp2_session* s = nullptr;
  std::vector<std::pair<std::string, std::string>> headers;
  std::map<int32_t, uint32_t> resets;
  std::string body;
  std::string upload;
  Client() {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame*, const uint8_t* n, size_t nl,
               const uint8_t* v, size_t vl, uint8_t, void* ud) {
          static_cast<Client*>(ud)->headers.emplace_back(
              std::string(reinterpret_cast<const char*>(n), nl),
              std::string(reinterpret_cast<const char*>(v), vl));
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t, const uint8_t* d, size_t n, void* ud) {
          static_cast<Client*>(ud)->body.append(reinterpret_cast<const char*>(d), n);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t code, void* ud) {
          static_cast<Client*>(ud)->resets[id] = code;
          return 0;
        });
    nghttp2_session_client_new(&s, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(s); }
  int32_t Request(std::vector<std::pair<std::string, std::string>> f, std::string up = "",
                  bool has_body = false) {
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : f) {
      nv.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()),
                    n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    upload = std::move(up);
    nghttp2_data_provider prd;
    prd.source.ptr = this;
    prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                           nghttp2_data_source* src, void*) -> ssize_t {
      auto* c = static_cast<Client*>(src->ptr);
      const size_t k = std::min(len, c->upload.size());
      memcpy(buf, c->upload.data(), k);
      c->upload.erase(0, k);
      if (c->upload.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(k);
    };
    return nghttp2_submit_request(s, nullptr, nv.data(), nv.size(), has_body ? &prd : nullptr,
                                  nullptr);
  }
};

// Moves bytes both ways until neither side has anything to say.
void Pump(Client* c, H2Server* srv) {
  for (int i = 0; i < 100; ++i) {
    std::string to_server;
    const uint8_t* d;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(c->s, &d)) > 0)
      to_server.append(reinterpret_cast<const char*>(d), n);
    if (!to_server.empty()) {
      ASSERT_TRUE(srv->Recv(to_server.data(), to_server.size()));
    }
    std::string to_client;
    srv->Send(&to_client, 1 << 24);
    if (!to_client.empty()) {
      ASSERT_GE(nghttp2_session_mem_recv(c->s, reinterpret_cast<const uint8_t*>(to_client.data()),
                                         to_client.size()),
                0);
    }
    if (to_server.empty() && to_client.empty()) return;
  }
}

using Fields = std::vector<std::pair<std::string, std::string>>;
Fields Get(const std::string& path = "/a?b", Fields extra = {}) {
  Fields f = {
      {":method", "GET"}, {":scheme", "http"}, {":authority", "Example.COM:8080"}, {":path", path}};
  for (auto& e : extra) f.push_back(e);
  return f;
}

H2Settings Settings() {
  H2Settings s;
  s.limits.max_header_bytes = 1024;
  s.limits.max_header_count = 8;
  s.limits.max_uri_bytes = 64;
  s.limits.max_body_bytes = 100000;
  return s;
}

TEST(H2Server, Preface) {
  EXPECT_EQ(MatchH2Preface(""), PrefaceMatch::kPartial);
  EXPECT_EQ(MatchH2Preface("PRI * HT"), PrefaceMatch::kPartial);
  EXPECT_EQ(MatchH2Preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxyz"), PrefaceMatch::kYes);
  EXPECT_EQ(MatchH2Preface("GET / HTTP/1.1"), PrefaceMatch::kNo);
  EXPECT_EQ(MatchH2Preface("PRI * HTTP/1.1\r\n"), PrefaceMatch::kNo);
}

TEST(H2Server, HeadInHttp1Terms) {
  Sink sink;
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  Client c;
  const int32_t id = c.Request(Get("/a?b", {{"cookie", "x=1"}, {"cookie", "y=2"}, {"x-k", "v"}}));
  Pump(&c, &srv);
  ASSERT_EQ(sink.heads.count(id), 1u);
  const MessageHead& h = sink.heads[id];
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.origin_form, "/a?b");
  EXPECT_EQ(h.host, "example.com:8080");
  EXPECT_FALSE(h.chunked);
  EXPECT_EQ(h.content_length, -1);
  ASSERT_NE(h.Find("cookie"), nullptr);
  EXPECT_EQ(*h.Find("cookie"), "x=1; y=2");
  EXPECT_EQ(*h.Find("x-k"), "v");
  EXPECT_TRUE(sink.ended[id]);
}

TEST(H2Server, BodyWithoutLengthIsChunkedUpstream) {
  Sink sink;
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  Client c;
  Fields f = Get("/up");
  f[0].second = "POST";
  const int32_t id = c.Request(f, std::string(70000, 'u'), true);
  Pump(&c, &srv);
  EXPECT_TRUE(sink.heads[id].chunked);
  EXPECT_EQ(sink.bodies[id].size(), 70000u);
  EXPECT_TRUE(sink.ended[id]);
}

TEST(H2Server, WindowHeldUntilConsumed) {
  Sink sink;
  sink.consume = false;
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  Client c;
  Fields f = Get("/up");
  f[0].second = "POST";
  const int32_t id = c.Request(f, std::string(200000, 'u'), true);
  Pump(&c, &srv);
  EXPECT_EQ(sink.bodies[id].size(), 65535u);  // one stream window, then the client waits
  srv.Consume(id, sink.bodies[id].size());
  Pump(&c, &srv);
  EXPECT_GT(sink.bodies[id].size(), 65535u);
}

TEST(H2Server, Refusals) {
  Sink sink;
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  Client c;
  const int32_t big = c.Request(Get("/", {{"x-big", std::string(1100, 'v')}}));
  const int32_t many = c.Request(Get("/", {{"a", "1"},
                                           {"b", "1"},
                                           {"c", "1"},
                                           {"d", "1"},
                                           {"e", "1"},
                                           {"f", "1"},
                                           {"g", "1"},
                                           {"h", "1"},
                                           {"i", "1"}}));
  const int32_t longp = c.Request(Get("/" + std::string(100, 'p')));
  const int32_t star = c.Request(Get("*"));
  const int32_t host = c.Request(Get("/", {{"host", "other.example"}}));
  Fields m = Get("/");
  m[0].second = "BREW";
  const int32_t brew = c.Request(m);
  Fields cl = Get("/");
  cl[0].second = "POST";
  cl.push_back({"content-length", "200000"});
  const int32_t toolarge = c.Request(cl, "x", true);
  const int32_t conn = c.Request(Get("/", {{"connection", "close"}}));
  const int32_t ok = c.Request(Get("/fine"));
  Pump(&c, &srv);
  EXPECT_EQ(sink.refused[big], 431);
  EXPECT_EQ(sink.refused[many], 431);
  EXPECT_EQ(sink.refused[longp], 414);
  // `*` for GET: nghttp2's own check (a reset) or ours (400), never a head.
  EXPECT_TRUE(sink.refused[star] == 400 ||
              c.resets[star] == static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_EQ(sink.refused[host], 400);
  EXPECT_EQ(sink.refused[brew], 501);
  EXPECT_EQ(sink.refused[toolarge], 413);
  // Connection-specific: a stream error by nghttp2, the sink never hears of it.
  EXPECT_EQ(sink.heads.count(conn) + sink.refused.count(conn), 0u);
  EXPECT_EQ(c.resets[conn], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_EQ(sink.heads.count(ok), 1u);
  EXPECT_EQ(sink.heads.size(), 1u);
}

TEST(H2Server, ResponseHeadWithoutConnectionFields) {
  Sink sink;
  sink.answer = true;
  sink.answer_body = std::string(100000, 'r');
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  Client c;
  c.Request(Get("/"));
  Pump(&c, &srv);
  Fields want = {{":status", "201"},
                 {"content-type", "text/plain"},
                 {"set-cookie", "a=b"},
                 {"x-mixed-case", "v"}};
  EXPECT_EQ(c.headers, want);
  EXPECT_EQ(c.body.size(), 100000u);
}

TEST(H2Server, HeadPendingUntilEndHeaders) {
  Sink sink;
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string in = preface + std::string("\0\0\0\4\0\0\0\0\0", 9);  // SETTINGS
  // HEADERS without END_HEADERS: ":method: GET" (static index 2).
  in += std::string("\0\0\1\1\0\0\0\0\1\x82", 10);
  ASSERT_TRUE(srv.Recv(in.data(), in.size()));
  EXPECT_TRUE(srv.head_pending());
  // CONTINUATION with END_HEADERS: :scheme http, :path /, :authority a.
  const std::string cont("\x86\x84\x01\x01\x61", 5);
  std::string f =
      std::string("\0\0", 2) + char(cont.size()) + std::string("\x09\x04\0\0\0\1", 6) + cont;
  ASSERT_TRUE(srv.Recv(f.data(), f.size()));
  EXPECT_FALSE(srv.head_pending());
  EXPECT_EQ(sink.heads.size(), 1u);
}

TEST(H2Server, ShutdownEndsTheSession) {
  Sink sink;
  H2Server srv(Settings(), &sink);
  sink.server = &srv;
  Client c;
  const int32_t id = c.Request(Get("/"));
  Pump(&c, &srv);
  EXPECT_EQ(srv.open_streams(), 1u);
  srv.Shutdown();  // GOAWAY: the open stream may still finish
  Pump(&c, &srv);
  EXPECT_TRUE(srv.Alive());
  srv.ResetStream(id, NGHTTP2_CANCEL);
  Pump(&c, &srv);
  EXPECT_EQ(srv.open_streams(), 0u);
  EXPECT_FALSE(srv.Alive());
}

}  // namespace
}  // namespace lb::l7
