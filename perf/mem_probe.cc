// mem_probe: what this machine charges for the connection table's memory
// pattern, without the table. l4_bench's established packet at 1M and 8M
// flows costs its 1K-flow compute plus the misses of its lookups; this probe
// gives the second part's floor on the host at hand, so that the l4 targets
// ("8M no worse than 2x 1K") can be read against the hardware.
//
// For each buffer size (MiB, on transparent huge pages as the connection
// table asks for) it times batches of --burst independent chains, as
// ProcessBurst does with its 32 packets: prefetch every chain's next line,
// then load them all; --levels dependent steps per chain (2 = a bucket
// header, then the entry line it points to). The lines are random 64-byte
// lines of the buffer, the addresses precomputed, so the figure is memory
// (cache, TLB and page-walk) cost at full overlap, not compute.
//
// --work=N puts N steps of a dependent multiply-xorshift chain (about 3
// cycles each) before each first-level prefetch, the line's address
// depending on the chain's result, as a bucket header's address depends on
// the flow hash computed from the parse: it shows what spreading the first
// misses between per-packet work costs. Compare with the same --work on the
// 1 MiB buffer, where the chain's own cost is all there is.
//
// --same_page makes the second step of every chain a random line of the
// same 4 KiB page as the first (where a layout grouping a bucket header with
// its entries would put the entry; perf/RESULTS.md, 2026-12-07), instead of
// any line: it shows what a second dependent line costs without a second
// TLB miss.
//
// --pair makes every step read the 128-byte aligned pair of lines its line
// belongs to (both prefetched, both loaded): a lookup of a 128-byte bucket
// that holds keys and values inline, the layout RESULTS.md (2026-12-08)
// proposes for issue 9.
//
//   mem_probe [--mib=N[,N...]] [--levels=N[,N...]] [--burst=N] [--work=N[,N...]]
//             [--same_page] [--pair]
// (defaults: 1,144,1200 MiB — an L2-sized buffer, the 1M-flow table, the
// 8M-flow table —, levels 1,2, burst 32, work 0). One line per (size,
// levels, work):
//   mem_probe mib=<n> levels=<l> burst=<b> work=<w> same_page=<0|1> pair=<0|1>
//             cycles_per_chain=<x> anon_huge_mib=<h>
// where cycles are TSC ticks per chain (per packet, for the table) and
// anon_huge_mib is how much of the process was on THP when it ran.
//
// Errors: a bad flag or a failed mapping prints "mem_probe: <what>" to
// stderr and exits 1.
#include <sys/mman.h>
#include <x86intrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace {

constexpr size_t kLine = 64;
constexpr size_t kChains = size_t{1} << 21;  // chains timed per (size, levels)

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "mem_probe: %s\n", what.c_str());
  std::exit(1);
}

std::vector<uint64_t> ParseList(absl::string_view flag, absl::string_view text, uint64_t min,
                                uint64_t max) {
  std::vector<uint64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < min || v > max) {
      Die(std::string(flag) + ": \"" + std::string(part) + "\" is not a count in [" +
          std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    out.push_back(v);
  }
  return out;
}

uint64_t AnonHugeMib() {
  std::ifstream f("/proc/self/smaps_rollup");
  std::string key;
  uint64_t kb = 0;
  while (f >> key) {
    if (key == "AnonHugePages:" && f >> kb) return kb / 1024;
  }
  return 0;
}

// One (size, levels) measurement over a buffer whose every line holds, in
// its first word, the index of a random line: the chain's next step (with
// same_page, the first step takes the second word instead: a line of the
// same 4 KiB page). Word 2 of every line is zero: with pair, a step adds
// word 2 of its line's neighbour (index ^ 1), which loads that line without
// changing the chain.
double CyclesPerChain(const uint64_t* words, int levels, size_t burst, uint64_t work,
                      bool same_page, bool pair, const std::vector<uint64_t>& starts) {
  const size_t hop = same_page ? 1 : 0;
  const uint64_t twin = pair ? 1 : 0;  // with pair, a line's neighbour; else itself
  auto line = [words](uint64_t i) { return words + i * (kLine / sizeof(uint64_t)); };
  std::vector<uint64_t> next(burst);
  uint64_t sink = 0, x = 1;
  const uint64_t t0 = __rdtsc();
  for (size_t b = 0; b + burst <= starts.size(); b += burst) {
    for (size_t i = 0; i < burst; ++i) {
      for (uint64_t w = 0; w < work; ++w) x = (x * 0x9E3779B97F4A7C15ull) ^ (x >> 29);
      // Zero that the compiler cannot see through: the address waits for x.
      uint64_t zero = x;
      asm volatile("xor %0, %0" : "+r"(zero));
      __builtin_prefetch(line(starts[b + i] + zero));
      if (pair) __builtin_prefetch(line((starts[b + i] + zero) ^ twin));
    }
    for (size_t i = 0; i < burst; ++i) {
      next[i] = line(starts[b + i])[hop] + line(starts[b + i] ^ twin)[2];
    }
    for (int l = 1; l < levels; ++l) {
      for (size_t i = 0; i < burst; ++i) {
        __builtin_prefetch(line(next[i]));
        if (pair) __builtin_prefetch(line(next[i] ^ twin));
      }
      for (size_t i = 0; i < burst; ++i) next[i] = *line(next[i]) + line(next[i] ^ twin)[2];
    }
    for (size_t i = 0; i < burst; ++i) sink += next[i];
  }
  const uint64_t t1 = __rdtsc();
  asm volatile("" : : "r"(sink), "r"(x));
  return static_cast<double>(t1 - t0) / static_cast<double>(starts.size() / burst * burst);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint64_t> mibs = {1, 144, 1200}, levels = {1, 2}, works = {0};
  uint64_t burst = 32;
  bool same_page = false, pair = false;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view a = argv[i];
    if (absl::StartsWith(a, "--mib=")) {
      mibs = ParseList("--mib", a.substr(6), 1, 16384);
    } else if (absl::StartsWith(a, "--levels=")) {
      levels = ParseList("--levels", a.substr(9), 1, 8);
    } else if (absl::StartsWith(a, "--work=")) {
      works = ParseList("--work", a.substr(7), 0, 1000);
    } else if (a == "--same_page") {
      same_page = true;
    } else if (a == "--pair") {
      pair = true;
    } else if (absl::StartsWith(a, "--burst=")) {
      burst = ParseList("--burst", a.substr(8), 1, 256).front();
    } else {
      Die("unknown argument \"" + std::string(a) +
          "\" (usage: mem_probe [--mib=N,...] [--levels=N,...] [--burst=N] "
          "[--work=N,...] [--same_page] [--pair])");
    }
  }
  std::mt19937_64 rng(1);
  for (uint64_t mib : mibs) {
    const size_t bytes = mib << 20, lines = bytes / kLine;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) Die("mmap of " + std::to_string(mib) + " MiB: " + std::strerror(errno));
    madvise(p, bytes, MADV_HUGEPAGE);  // best effort, as lib/conn_table.cc
    auto* words = static_cast<uint64_t*>(p);
    constexpr size_t kLinesPerPage = 4096 / kLine;
    for (size_t i = 0; i < lines; ++i) words[i * (kLine / sizeof(uint64_t))] = rng() % lines;
    if (same_page) {  // after word 0, so the default chains are as they always were
      for (size_t i = 0; i < lines; ++i) {
        words[i * (kLine / sizeof(uint64_t)) + 1] =
            (i & ~(kLinesPerPage - 1)) + rng() % kLinesPerPage;
      }
    }
    std::vector<uint64_t> starts(kChains);
    for (uint64_t& s : starts) s = rng() % lines;
    const uint64_t huge = AnonHugeMib();
    for (uint64_t w : works) {
      for (uint64_t l : levels) {
        const double c =
            CyclesPerChain(words, static_cast<int>(l), burst, w, same_page, pair, starts);
        std::printf(
            "mem_probe mib=%lu levels=%lu burst=%lu work=%lu same_page=%d pair=%d "
            "cycles_per_chain=%.1f anon_huge_mib=%lu\n",
            static_cast<unsigned long>(mib), static_cast<unsigned long>(l),
            static_cast<unsigned long>(burst), static_cast<unsigned long>(w), same_page ? 1 : 0,
            pair ? 1 : 0, c, static_cast<unsigned long>(huge));
      }
    }
    munmap(p, bytes);
  }
  return 0;
}
