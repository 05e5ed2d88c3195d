// libFuzzer target: controlplane/health_response.h, the HTTP health check's
// parser of a backend's response (untrusted bytes).
//
// Input: byte 0 picks max_body_bytes (0 -> 1, else byte * 17), byte 1 the
// chunk size the response arrives in (1-256, as recv would split it), the
// rest is the response. After every chunk it checks the parser's contract:
// bounded buffer, a verdict that never changes once taken, an error text
// exactly when unhealthy; Finish (the peer closing) always decides.
// Seeds: fuzz/corpus/health_response/. Run: scripts/fuzz.sh 60 health_response
// (the long run is recorded in docs/FUZZING.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "controlplane/health_response.h"

namespace {

using Verdict = lb::HealthResponseParser::Verdict;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckDecided(const lb::HealthResponseParser& p) {
  Check(p.verdict() != Verdict::kNeedMore);
  Check((p.verdict() == Verdict::kUnhealthy) == !p.error().empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint64_t max_body = data[0] == 0 ? 1 : uint64_t{data[0]} * 17;
  const size_t chunk = size_t{data[1]} + 1;
  absl::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);

  lb::HealthResponseParser p(max_body);
  Verdict decided = Verdict::kNeedMore;
  while (!rest.empty()) {
    const absl::string_view piece = rest.substr(0, chunk);
    rest.remove_prefix(piece.size());
    const Verdict v = p.Feed(piece);
    Check(v == p.verdict());
    Check(p.buffered_bytes() <= lb::kMaxHealthHeaderBytes + chunk);
    if (decided != Verdict::kNeedMore) Check(v == decided);
    if (v != Verdict::kNeedMore) {
      CheckDecided(p);
      decided = v;
    } else {
      Check(p.error().empty());
    }
  }
  const Verdict end = p.Finish();
  if (decided != Verdict::kNeedMore) Check(end == decided);
  CheckDecided(p);
  Check(p.buffered_bytes() == 0);
  return 0;
}
