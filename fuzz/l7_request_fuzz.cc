// libFuzzer target: lb-l7's request path (lib/l7/http1.h + headers.h).
//
// Input: 2 bytes of parameters, then the bytes a client sends.
//   [0..1] split point (little endian, modulo the payload size + 1)
// Asserts:
//   - framing does not depend on segmentation: whole, split in two at the
//     chosen point, and (payloads up to 256 bytes) one byte per Feed give the
//     same heads, decoded bodies, completions and refusal status and detail
//     (whole, the head walk's 8-byte scan runs; one byte per Feed, every
//     line is checked by the byte-table checks: the two must agree);
//   - what lb-l7 would send upstream for an accepted head parses back through
//     the same strict parser to the same method, target, host and framing
//     (no byte of a client field can change the framing the backend sees).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace {

using lb::l7::Http1Error;
using lb::l7::Http1Limits;
using lb::l7::Http1Parser;
using lb::l7::MessageHead;

struct Record : lb::l7::Http1Sink {
  std::string log;
  MessageHead head;
  bool has_head = false;
  void OnHead(const MessageHead& h) override {
    head = h;
    has_head = true;
    absl::StrAppend(&log, "H:", h.method, " ", h.origin_form, " ", h.host, " ", h.chunked, " ",
                    h.content_length, "|");
  }
  void OnBody(const char* d, size_t n) override { log.append(d, n); }
  void OnComplete() override { log += "|C|"; }
};

Http1Limits Limits() {
  Http1Limits l;
  l.max_header_bytes = 2048;
  l.max_header_count = 32;
  l.max_uri_bytes = 512;
  l.max_body_bytes = 4096;
  return l;
}

// Feeds messages one after another (pipelining), `step` bytes at most per
// Feed after `first` bytes in the first one.
std::string Run(const std::string& in, size_t first, size_t step, Record* last) {
  std::string out;
  Http1Parser p(Http1Parser::Kind::kRequest, Limits());
  Record r;
  size_t off = 0;
  bool first_call = true;
  int stalls = 0;
  while (off < in.size() && stalls < 2) {
    size_t n = in.size() - off;
    if (first_call && first > 0)
      n = std::min(n, first);
    else if (step > 0)
      n = std::min(n, step);
    first_call = false;
    const size_t used = p.Feed(in.data() + off, n, &r);
    off += used;
    if (p.error() != Http1Error::kNone) {
      absl::StrAppend(&out, r.log, "E", p.status(), " ", p.error_detail());
      return out;
    }
    if (p.complete()) {
      out += r.log;
      *last = r;
      r = Record();
      p.Reset();
      p.ReleaseIdleMemory();  // as lb-l7 between requests (its views must be dead)
      stalls = 0;
      continue;
    }
    stalls = used == 0 && n == in.size() - off ? stalls + 1 : 0;
  }
  absl::StrAppend(&out, r.log, "P");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t split = (data[0] | (data[1] << 8)) % (in.size() + 1);
  Record a, b, c;
  const std::string whole = Run(in, 0, 0, &a);
  const std::string two = Run(in, split, 0, &b);
  if (whole != two) {
    fprintf(stderr, "split at %zu changed framing:\n%s\nvs\n%s\n", split, whole.c_str(),
            two.c_str());
    abort();
  }
  if (in.size() <= 256) {
    const std::string drip = Run(in, 0, 1, &c);
    if (whole != drip) {
      fprintf(stderr, "byte-by-byte changed framing:\n%s\nvs\n%s\n", whole.c_str(), drip.c_str());
      abort();
    }
  }
  if (a.has_head) {
    lb::l7::ForwardInfo fi;
    fi.client_ip = "192.0.2.1";
    fi.listener_port = 80;
    fi.request_id = "fuzz";
    fi.fallback_host = "192.0.2.80:80";
    std::string up;
    lb::l7::BuildUpstreamRequest(a.head, fi, &up);
    Http1Limits big;
    big.max_header_bytes = 1 << 16;
    big.max_header_count = 1000;
    big.max_uri_bytes = 1 << 16;
    big.max_body_bytes = 0;
    Http1Parser p(Http1Parser::Kind::kRequest, big);
    Record r;
    p.Feed(up.data(), up.size(), &r);
    if (p.error() != Http1Error::kNone || !r.has_head || r.head.method != a.head.method ||
        r.head.origin_form != a.head.origin_form || r.head.chunked != a.head.chunked ||
        r.head.content_length != a.head.content_length ||
        r.head.host != (a.head.host.empty() ? "192.0.2.80:80" : a.head.host)) {
      fprintf(stderr, "upstream head does not parse back the same:\n%s\n(%s)\n", up.c_str(),
              p.error_detail().c_str());
      abort();
    }
  }
  return 0;
}
