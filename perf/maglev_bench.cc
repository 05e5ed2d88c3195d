// maglev_bench: build time and quality of weighted Maglev tables (lib/maglev.h).
//
// Prints exactly one line per case:
//   maglev M=<m> N=<n> build_ms=<x> max_over_mean=<y> moved_on_remove=<z>
// build_ms is the median of kRuns builds into a preallocated table (the way the
// control plane builds straight into shared memory); max_over_mean is the
// busiest backend's slot count over the mean; moved_on_remove is the fraction
// of slots whose backend changed when one of the N backends is removed (1/N is
// the ideal). Run through `perf/run.sh maglev` so it is a release build.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/maglev.h"

namespace {

constexpr int kRuns = 21;

std::vector<lb::MaglevBackend> MakeBackends(int n) {
  std::vector<lb::MaglevBackend> backends;
  for (int i = 0; i < n; ++i) {
    backends.push_back({absl::StrCat("10.", (i >> 8) & 255, ".", i & 255, ".1:443"), 1,
                        static_cast<uint32_t>(i + 1)});
  }
  return backends;
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "maglev_bench: %s\n", s.ToString().c_str());
    std::exit(1);
  }
}

void RunCase(uint64_t m, int n) {
  const std::vector<lb::MaglevBackend> backends = MakeBackends(n);
  std::vector<uint32_t> table(m);
  lb::MaglevBuilder builder;
  Check(builder.Build(backends, absl::MakeSpan(table)));  // warm the scratch and the table

  std::vector<double> ms;
  for (int i = 0; i < kRuns; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Check(builder.Build(backends, absl::MakeSpan(table)));
    const auto end = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + kRuns / 2, ms.end());

  std::vector<uint64_t> count(n + 1, 0);
  for (uint32_t v : table) ++count[v];
  const uint64_t max_count = *std::max_element(count.begin() + 1, count.end());
  const double mean = static_cast<double>(m) / n;

  std::vector<lb::MaglevBackend> fewer = backends;
  fewer.erase(fewer.begin() + n / 2);
  std::vector<uint32_t> after(m);
  Check(builder.Build(fewer, absl::MakeSpan(after)));
  uint64_t moved = 0;
  for (uint64_t i = 0; i < m; ++i) moved += table[i] != after[i];

  std::printf("maglev M=%llu N=%d build_ms=%.3f max_over_mean=%.4f moved_on_remove=%.5f\n",
              static_cast<unsigned long long>(m), n, ms[kRuns / 2], max_count / mean,
              static_cast<double>(moved) / m);
}

}  // namespace

int main() {
  RunCase(65537, 1000);
  RunCase(655373, 1000);
  return 0;
}
