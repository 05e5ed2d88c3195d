// libFuzzer target: the ClientHello/SNI parser of lb-l7's SNI passthrough
// listeners (lib/l7/client_hello.h) over the first bytes a client sends.
//
// Input: the bytes of a connection from its first byte.
// Asserts:
//   - an accepted ClientHello ends inside the input, and its name is empty
//     or lowercase LDH labels of at most 255 bytes;
//   - segmentation does not change the answer: every prefix (at a
//     fuzzer-derived split and at the hello's own end) either needs more
//     bytes or gives exactly the whole input's answer (status, name, end);
//   - a smaller max_bytes never accepts what the default refuses, and what
//     it accepts the default accepts the same way.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lib/l7/client_hello.h"

namespace {

using lb::l7::HelloResult;
using lb::l7::HelloStatus;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "client_hello_fuzz: %s\n", what);
    std::abort();
  }
}

bool Same(const HelloResult& a, const HelloResult& b) {
  return a.status == b.status && a.sni == b.sni && a.hello_end == b.hello_end;
}

bool LdhLower(const std::string& s) {
  if (s.size() > 255) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  return s.empty() || (s.front() != '.' && s.back() != '.' && s.find("..") == std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const HelloResult whole = lb::l7::ParseClientHello(data, size);
  if (whole.status == HelloStatus::kOk) {
    Check(whole.hello_end > 0 && whole.hello_end <= size, "hello_end outside the input");
    Check(LdhLower(whole.sni), "name not lowercase LDH");
    Check(Same(lb::l7::ParseClientHello(data, whole.hello_end), whole),
          "the hello alone gives another answer");
  }
  size_t split = 0;
  for (size_t i = 0; i < size && i < 8; ++i) split = split * 31 + data[i];
  if (size > 0) split %= size;
  for (size_t k : {split, size / 2, size > 0 ? size - 1 : 0}) {
    const HelloResult p = lb::l7::ParseClientHello(data, k);
    Check(p.status == HelloStatus::kNeedMore || Same(p, whole),
          "a prefix answers differently from the whole");
  }
  const HelloResult small = lb::l7::ParseClientHello(data, size, 512);
  if (small.status == HelloStatus::kOk) Check(Same(small, whole), "max_bytes changed the answer");
  if (whole.status == HelloStatus::kMalformed) {
    Check(small.status != HelloStatus::kOk, "a smaller limit accepted a refused hello");
  }
  return 0;
}
