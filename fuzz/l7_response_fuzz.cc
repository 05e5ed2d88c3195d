// libFuzzer target: what lb-l7 accepts from a backend (lib/l7/http1.h in
// response mode, lib/l7/headers.h for the client head).
//
// Input: 3 bytes of parameters, then the bytes a backend sends.
//   [0..1] split point (little endian, modulo the payload size + 1)
//   [2]    bit 0: the request was HEAD; bit 1: the client speaks HTTP/1.0
// Asserts:
//   - framing does not depend on segmentation (whole, split in two, and up
//     to 256 bytes one byte per Feed): same heads, bodies, completion,
//     refusal (status and detail: the 8-byte scan of a head whole against
//     the byte-table checks of one fed a byte at a time), and the same
//     outcome at EOF;
//   - the head lb-l7 would write to the client for an accepted final
//     response parses back (as a response to the same request) with the
//     same status and with framing that matches what lb-l7 sends.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace {

using lb::l7::ClientFraming;
using lb::l7::Http1Error;
using lb::l7::Http1Parser;
using lb::l7::MessageHead;

struct Record : lb::l7::Http1Sink {
  std::string log;
  MessageHead head;
  bool has_head = false;
  void OnHead(const MessageHead& h) override {
    head = h;
    has_head = true;
    absl::StrAppend(&log, "H:", h.status, " ", h.chunked, " ", h.content_length, " ",
                    h.body_until_close, "|");
  }
  void OnBody(const char* d, size_t n) override { log.append(d, n); }
  void OnComplete() override { log += "|C|"; }
};

lb::l7::Http1Limits Limits() {
  lb::l7::Http1Limits l;
  l.max_header_bytes = 4096;
  l.max_header_count = 64;
  l.max_body_bytes = 0;
  return l;
}

// Interim (1xx) answers are followed by the final one, as the worker does.
std::string Run(const std::string& in, size_t first, size_t step, bool head_req, Record* last) {
  std::string out;
  Http1Parser p(Http1Parser::Kind::kResponse, Limits());
  p.SetRequestWasHead(head_req);
  Record r;
  size_t off = 0;
  bool first_call = true;
  while (off < in.size()) {
    size_t n = in.size() - off;
    if (first_call && first > 0) {
      n = std::min(n, first);
    } else if (step > 0) {
      n = std::min(n, step);
    }
    first_call = false;
    const size_t used = p.Feed(in.data() + off, n, &r);
    off += used;
    if (p.error() != Http1Error::kNone)
      return absl::StrCat(out, r.log, "E", p.status(), " ", p.error_detail());
    if (p.complete()) {
      out += r.log;
      *last = r;
      if (r.head.status >= 200 || r.head.status == 101) return absl::StrCat(out, "D", off);
      r = Record();
      p.Reset();
      p.SetRequestWasHead(head_req);
      continue;
    }
    if (used == 0 && n == in.size() - off) break;
  }
  const bool eof_done = p.FeedEof(&r);
  if (r.has_head) *last = r;
  return absl::StrCat(out, r.log, eof_done ? "EOF-C" : "EOF", p.error() != Http1Error::kNone);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 3, size - 3);
  const size_t split = (data[0] | (data[1] << 8)) % (in.size() + 1);
  const bool head_req = data[2] & 1;
  Record a, b, c;
  const std::string whole = Run(in, 0, 0, head_req, &a);
  const std::string two = Run(in, split, 0, head_req, &b);
  if (whole != two) {
    fprintf(stderr, "split at %zu changed framing:\n%s\nvs\n%s\n", split, whole.c_str(),
            two.c_str());
    abort();
  }
  if (in.size() <= 256) {
    const std::string drip = Run(in, 0, 1, head_req, &c);
    if (whole != drip) {
      fprintf(stderr, "byte-by-byte changed framing:\n%s\nvs\n%s\n", whole.c_str(), drip.c_str());
      abort();
    }
  }
  if (a.has_head && a.head.status >= 200) {
    MessageHead req;
    req.method = head_req ? "HEAD" : "GET";
    req.minor = (data[2] & 2) ? 0 : 1;
    const ClientFraming framing = lb::l7::ChooseClientFraming(a.head, req);
    std::string out;
    lb::l7::BuildClientResponse(a.head, req, true, framing, &out);
    // The client has limits of its own: lb-l7 may add a field or two
    // (Transfer-Encoding, Connection) to a head that was at our limit.
    lb::l7::Http1Limits client;
    client.max_header_bytes = 1 << 16;
    client.max_header_count = 1000;
    client.max_body_bytes = 0;
    Http1Parser p(Http1Parser::Kind::kResponse, client);
    p.SetRequestWasHead(head_req);
    Record r;
    p.Feed(out.data(), out.size(), &r);
    const bool framing_ok = framing == ClientFraming::kChunked ? r.head.chunked
                            : framing == ClientFraming::kLength
                                ? r.head.content_length == a.head.content_length
                            : framing == ClientFraming::kClose ? r.head.body_until_close
                                                               : true;
    if (p.error() != Http1Error::kNone || !r.has_head || r.head.status != a.head.status ||
        !framing_ok) {
      fprintf(stderr, "client head does not parse back:\n%s\n(%s)\n", out.c_str(),
              p.error_detail().c_str());
      abort();
    }
  }
  return 0;
}
