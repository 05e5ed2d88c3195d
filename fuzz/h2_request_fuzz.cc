// libFuzzer target: lb-l7's HTTP/2 request path (lib/l7/h2_server.h over
// nghttp2, lib/l7/headers.h), the bytes a client sends on an h2
// connection fed to the server session the way a worker does.
//
// Input: 2 bytes of parameters, then the client's bytes.
//   [0..1] split point (little endian, modulo the payload size + 1): the
//          bytes arrive in two reads, frames written back in between.
// The sink behaves like the worker: every request head is turned into the
// upstream HTTP/1.1 head and answered (a response head carrying one of its
// fields, so client bytes reach the response encoder too, and a body read
// through the data provider in pieces); a refusal is answered with its
// status; every third stream is reset by the "proxy" instead.
// Asserts:
//   - a head reaches the sink once per stream, never after a refusal, and
//     no DATA after a refusal or after the request ended;
//   - body bytes delivered never exceed max_body_bytes, nor a declared
//     Content-Length;
//   - the upstream head of an accepted request parses back through the
//     strict HTTP/1 parser to the same method, path, host and framing (no
//     client byte can change what a backend sees as the message frame);
//   - the session's output starts with a SETTINGS frame.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/l7/h2_server.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace {

using lb::l7::H2Server;
using lb::l7::H2Settings;
using lb::l7::MessageHead;

#define CHECK_OR_DIE(c)                                     \
  do {                                                      \
    if (!(c)) {                                             \
      fprintf(stderr, "h2_request_fuzz: failed: %s\n", #c); \
      abort();                                              \
    }                                                       \
  } while (0)

struct Head : lb::l7::Http1Sink {
  MessageHead head;
  bool done = false;
  void OnHead(const MessageHead& h) override { head = h; }
  void OnBody(const char*, size_t) override {}
  void OnComplete() override { done = true; }
};

lb::l7::Http1Limits Limits() {
  lb::l7::Http1Limits l;
  l.max_header_bytes = 2048;
  l.max_header_count = 32;
  l.max_uri_bytes = 512;
  l.max_body_bytes = 4096;
  return l;
}

struct Sink : lb::l7::H2Sink {
  struct S {
    bool head = false, refused = false, ended = false;
    int64_t length = -1;
    uint64_t body = 0;
    std::string out;
    bool eof = false;
  };
  H2Server* server = nullptr;
  std::map<int32_t, S> streams;
  int count = 0;

  void Answer(int32_t id, S* s, const std::string& head, const std::string& body) {
    s->out = body;
    s->eof = true;
    server->SubmitResponse(id, head, !body.empty());
  }

  void OnRequest(int32_t id, MessageHead* h, bool) override {
    S& s = streams[id];
    CHECK_OR_DIE(!s.head && !s.refused);
    s.head = true;
    s.length = h->content_length;
    // What the worker sends upstream must frame exactly as the head says.
    lb::l7::ForwardInfo fi;
    fi.client_ip = "192.0.2.1";
    fi.request_id = "0123456789abcdef0123456789abcdef";
    std::string up;
    lb::l7::BuildUpstreamRequest(*h, fi, &up);
    lb::l7::Http1Parser p(lb::l7::Http1Parser::Kind::kRequest, lb::l7::Http1Limits{});
    Head back;
    const size_t used = p.Feed(up.data(), up.size(), &back);
    CHECK_OR_DIE(p.error() == lb::l7::Http1Error::kNone);
    CHECK_OR_DIE(used == up.size() || back.done);
    CHECK_OR_DIE(back.head.method == h->method);
    CHECK_OR_DIE(back.head.origin_form == h->origin_form);
    CHECK_OR_DIE(back.head.host == h->host);
    CHECK_OR_DIE(back.head.chunked == h->chunked);
    CHECK_OR_DIE(back.head.content_length == h->content_length);
    if (++count % 3 == 0) {
      server->ResetStream(id, 2);
      return;
    }
    const absl::string_view* echo = h->headers.empty() ? nullptr : &h->headers[0].value;
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n";
    if (echo != nullptr && echo->find_first_of("\r\n") == absl::string_view::npos) {
      absl::StrAppend(&head, "X-Echo: ", *echo, "\r\n");
    }
    head += "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    Answer(id, &s, head, std::string(100 + (count % 7) * 4000, 'b'));
  }

  void OnRefused(int32_t id, int status, absl::string_view) override {
    CHECK_OR_DIE(status == 400 || status == 413 || status == 414 || status == 431 || status == 501);
    S& s = streams[id];
    CHECK_OR_DIE(!s.refused);
    s.refused = true;
    std::string r;
    lb::l7::BuildErrorResponse(status, "refused", true, &r);
    const size_t end = r.find("\r\n\r\n") + 4;
    Answer(id, &s, r.substr(0, end), r.substr(end));
  }

  void OnData(int32_t id, const char*, size_t n) override {
    S& s = streams[id];
    CHECK_OR_DIE(s.head && !s.refused && !s.ended);
    s.body += n;
    CHECK_OR_DIE(s.body <= Limits().max_body_bytes);
    if (s.length >= 0) CHECK_OR_DIE(s.body <= static_cast<uint64_t>(s.length));
    server->Consume(id, n);
  }

  void OnRequestEnd(int32_t id) override {
    S& s = streams[id];
    CHECK_OR_DIE(s.head && !s.ended);
    s.ended = true;
  }

  void OnStreamClose(int32_t id, uint32_t) override { streams.erase(id); }

  ssize_t ReadBody(int32_t id, uint8_t* buf, size_t n, bool* eof) override {
    auto it = streams.find(id);
    if (it == streams.end()) {
      *eof = true;
      return 0;
    }
    S& s = it->second;
    const size_t k = std::min(n, std::min<size_t>(s.out.size(), 1500));
    memcpy(buf, s.out.data(), k);
    s.out.erase(0, k);
    if (s.out.empty() && s.eof) *eof = true;
    return static_cast<ssize_t>(k);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t split = (data[0] | (data[1] << 8)) % (in.size() + 1);
  H2Settings settings;
  settings.max_concurrent_streams = 8;
  settings.stream_window = 65535;
  settings.limits = Limits();
  Sink sink;
  H2Server server(settings, &sink);
  sink.server = &server;
  std::string out;
  server.Send(&out, 1 << 20);
  CHECK_OR_DIE(out.size() >= 9 && out[3] == 4);  // SETTINGS first
  bool ok = server.Recv(in.data(), split);
  for (int i = 0; i < 4 && ok; ++i) server.Send(&out, 1 << 22);
  if (ok) ok = server.Recv(in.data() + split, in.size() - split);
  for (int i = 0; i < 8; ++i) server.Send(&out, 1 << 22);
  server.Shutdown();
  server.Send(&out, 1 << 22);
  return 0;
}
