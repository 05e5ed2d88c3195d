// lb-dataplane's two DPDK control threads (off the lcores' cores) and the
// counter summary they and the shutdown log.
//
// - The monitor logs the periodic summary (--summary_interval_s) and table
//   generation changes, copies the NICs' counters into the stats region, and
//   in replay mode (--idle_exit_ms) stops the process once traffic has come
//   and gone (it sets *quit).
// - The table verifier gives each published generation too large for an
//   lcore to verify inline its verdict (lib/slot_verify.h: about 4.5 ms at
//   the default maximum capacities); the lcores verify small ones
//   themselves, at once. It polls every 50 us, so a large publish reaches
//   the lcores within that plus the verification time (more when this thread
//   shares a CPU with a busy one). It reads the slot only while the lcores
//   still hold the previous one, which the control plane cannot reuse.
//
// Both run until *quit; they only read the regions (the monitor writes the
// per-port area, which has no other writer).
#ifndef LB_DATAPLANE_L4_MONITOR_H_
#define LB_DATAPLANE_L4_MONITOR_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/l4/port.h"
#include "lib/shm_region.h"
#include "lib/slot_verify.h"

namespace lb::dp {

// Counter totals over every lcore.
struct Totals {
  uint64_t rx = 0, tx = 0, forwarded = 0, replies = 0, drops[kNumDropReasons] = {};
  uint64_t to_kernel = 0, from_kernel = 0;
};

Totals SumCounters(const StatsRegion& stats, uint16_t lcores);
// "rx=N tx=N forwarded=N replies=N drop_<reason>=N..." (non-zero drops only).
std::string FormatTotals(const Totals& t);

struct MonitorArg {
  const TableReader* tables;
  const StatsRegion* stats;
  uint16_t lcores;
  const std::vector<PortInfo>* ports;
  std::atomic<bool>* quit;
};

// The NICs' own counters (rte_eth_stats_get) into the stats region's
// per-port area, entry i for the i-th port, every monitor period.
void CopyPorts(const MonitorArg& a);
// "port 0 rx=N tx=N rx_missed=N rx_errors=N rx_nombuf=N tx_errors=N; port 1 ...".
std::string FormatPorts(const MonitorArg& a);

// The thread bodies (rte_ctrl_thread_create): `p` is a MonitorArg* /
// VerifierArg* that outlives the thread.
void* Monitor(void* p);

struct VerifierArg {
  const TableReader* tables;
  const std::atomic<bool>* quit;
};
void* Verifier(void* p);

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_MONITOR_H_
