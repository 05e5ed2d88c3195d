// libFuzzer target: lb-l7's sticky cookie path (lib/l7/sticky_cookie.h) over
// untrusted Cookie header bytes.
//
// Input: the value of a Cookie field as a client sends it.
// Asserts:
//   - FindCookie returns a view inside the input, never longer than it;
//   - VerifyStickyCookie of whatever it found never accepts without a valid
//     MAC: only a value this target signed itself verifies, and then names
//     the backend it was signed for;
//   - re-signing a found value's backend round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lib/l7/sticky_cookie.h"

namespace {

const std::string kKey(32, 'F');

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "sticky_cookie_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  for (absl::string_view name : {"lb_sticky", "sid", "a"}) {
    auto v = lb::l7::FindCookie(in, name);
    if (!v) continue;
    Check(v->size() <= in.size(), "cookie longer than the header");
    Check(v->data() >= in.data() && v->data() + v->size() <= in.data() + in.size(),
          "cookie outside the header");
    std::string backend;
    const auto r = lb::l7::VerifyStickyCookie(kKey, "web", *v, 0, &backend);
    Check(r != lb::l7::CookieVerdict::kValid, "an unsigned cookie verified");
    Check(backend.empty(), "backend set without a valid cookie");
  }
  // Whatever bytes name a backend, its cookie verifies to exactly them.
  const std::string backend(in.substr(0, lb::l7::kMaxCookieBackendKey));
  if (!backend.empty()) {
    const std::string c = lb::l7::SignStickyCookie(kKey, "web", backend, 100);
    std::string got;
    Check(lb::l7::VerifyStickyCookie(kKey, "web", c, 99, &got) == lb::l7::CookieVerdict::kValid,
          "own cookie refused");
    Check(got == backend, "own cookie names another backend");
    const std::string header = "x=1; lb_sticky=" + c + "; y=2";
    auto found = lb::l7::FindCookie(header, "lb_sticky");
    Check(found && *found == c, "own cookie not found in a header");
  }
  return 0;
}
