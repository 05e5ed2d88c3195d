#include "dataplane/l4/monitor.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "dataplane/l4/flags.h"
#include "glog/logging.h"

namespace lb::dp {

Totals SumCounters(const StatsRegion& stats, uint16_t lcores) {
  Totals t;
  for (uint16_t i = 0; i < lcores; ++i) {
    const LcoreStats& l = stats.Lcore(i);
    t.rx += l.rx_packets.load(std::memory_order_relaxed);
    t.tx += l.tx_packets.load(std::memory_order_relaxed);
    t.forwarded += l.forwarded.load(std::memory_order_relaxed);
    t.replies += l.replies.load(std::memory_order_relaxed);
    t.to_kernel += l.to_kernel.load(std::memory_order_relaxed);
    t.from_kernel += l.from_kernel.load(std::memory_order_relaxed);
    for (int r = 0; r < kNumDropReasons; ++r) {
      t.drops[r] += l.drops[r].load(std::memory_order_relaxed);
    }
  }
  return t;
}

std::string FormatTotals(const Totals& t) {
  std::string s =
      absl::StrCat("rx=", t.rx, " tx=", t.tx, " forwarded=", t.forwarded, " replies=", t.replies);
  if (t.to_kernel != 0 || t.from_kernel != 0) {
    absl::StrAppend(&s, " to_kernel=", t.to_kernel, " from_kernel=", t.from_kernel);
  }
  for (int r = 0; r < kNumDropReasons; ++r) {
    if (t.drops[r] != 0) {
      absl::StrAppend(&s, " drop_", DropReasonName(static_cast<DropReason>(r)), "=", t.drops[r]);
    }
  }
  return s;
}

void CopyPorts(const MonitorArg& a) {
  const uint32_t n =
      std::min<uint32_t>(static_cast<uint32_t>(a.ports->size()), a.stats->header().max_ports);
  for (uint32_t i = 0; i < n; ++i) {
    CopyPortCounters((*a.ports)[i].port_id, &a.stats->Port(i));
  }
}

std::string FormatPorts(const MonitorArg& a) {
  std::string s;
  const uint32_t n =
      std::min<uint32_t>(static_cast<uint32_t>(a.ports->size()), a.stats->header().max_ports);
  for (uint32_t i = 0; i < n; ++i) {
    const PortCounters& c = a.stats->Port(i);
    constexpr auto kRelaxed = std::memory_order_relaxed;
    absl::StrAppend(&s, i == 0 ? "" : "; ", "port ", c.port_id, " rx=", c.rx_packets.load(kRelaxed),
                    " tx=", c.tx_packets.load(kRelaxed), " rx_missed=", c.rx_missed.load(kRelaxed),
                    " rx_errors=", c.rx_errors.load(kRelaxed),
                    " rx_nombuf=", c.rx_nombuf.load(kRelaxed),
                    " tx_errors=", c.tx_errors.load(kRelaxed));
  }
  return s;
}

namespace {

// One line per generation the lcores refused (they do not log).
void LogRefusal(const MonitorArg& a, uint64_t* logged) {
  SlotFault fault;
  const uint64_t r = a.tables->gate().LastRefusal(&fault);
  if (r == 0 || r == *logged) return;
  *logged = r;
  LOG(ERROR) << "table generation " << r << " refused: " << DescribeSlotFault(fault, r)
             << "; lcores keep forwarding with generation "
             << a.stats->Lcore(0).observed_generation.load(std::memory_order_acquire)
             << " (counter tables_refused)";
}

}  // namespace

void* Monitor(void* p) {
  const MonitorArg& a = *static_cast<MonitorArg*>(p);
  using Clock = std::chrono::steady_clock;
  const auto period = std::chrono::milliseconds(FLAGS_idle_exit_ms != 0 ? 10 : 100);
  const auto interval = std::chrono::seconds(FLAGS_summary_interval_s);
  uint64_t generation = a.tables->generation();
  uint64_t refused = 0;
  uint64_t last_rx = 0;
  auto last_change = Clock::now();
  auto next_summary = Clock::now() + interval;
  while (!a.quit->load()) {
    std::this_thread::sleep_for(period);
    const auto now = Clock::now();
    if (const uint64_t g = a.tables->generation(); g != generation) {
      VLOG(1) << "table generation " << g << " published (was " << generation << ")";
      generation = g;
    }
    LogRefusal(a, &refused);
    CopyPorts(a);
    if (FLAGS_summary_interval_s != 0 && now >= next_summary) {
      LOG(INFO) << "summary: generation " << generation << " "
                << FormatTotals(SumCounters(*a.stats, a.lcores)) << "; " << FormatPorts(a);
      next_summary = now + interval;
    }
    if (FLAGS_idle_exit_ms == 0) continue;
    const uint64_t rx = SumCounters(*a.stats, a.lcores).rx;
    if (rx != last_rx) {
      last_rx = rx;
      last_change = now;
    } else if (rx != 0 && now - last_change > std::chrono::milliseconds(FLAGS_idle_exit_ms)) {
      LOG(INFO) << "idle for " << FLAGS_idle_exit_ms << " ms after traffic (--idle_exit_ms): "
                << "stopping";
      a.quit->store(true);
    }
  }
  return nullptr;
}

void* Verifier(void* p) {
  const VerifierArg& a = *static_cast<const VerifierArg*>(p);
  const TableReader& t = *a.tables;
  while (!a.quit->load()) {
    t.gate().VerifyPublished(t, /*only_large=*/true);
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return nullptr;
}

}  // namespace lb::dp
