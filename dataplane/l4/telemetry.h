// DPDK telemetry commands of lb-dataplane, beside DPDK's own (/ethdev/...),
// on the same socket (/var/run/dpdk/<file-prefix>/dpdk_telemetry.v2; query
// with dpdk-telemetry.py -f <file-prefix>):
//
//   /lb/lcores          every worker's counters: {"<i>": {lcore, rx_packets,
//                       tx_packets, forwarded, replies, new_flows,
//                       conn_entries, conn_evictions, table_swaps,
//                       observed_generation, drops}}
//   /lb/lcores,<i>      worker i only, with its drops by reason
//   /lb/vips            the VIPs of the published table with their counters
//                       summed over the workers: {"<vip id>": {vip:
//                       "<addr>:<port>/<proto>", members, packets, bytes,
//                       new_flows, drops}}
//
// Threads: DPDK runs the callbacks on its telemetry thread. They read the
// stats region (relaxed atomic loads: a counter may be a burst late, never
// torn) and the published table slot, which the control plane may recycle
// under the reader: /lb/vips reads the generation before and after and
// retries a few times when it changed, and checks every index against the
// region's capacities, so a racing publish costs a retry, never a bad read.
#ifndef LB_DATAPLANE_L4_TELEMETRY_H_
#define LB_DATAPLANE_L4_TELEMETRY_H_

#include <cstdint>

#include "lib/shm_region.h"

namespace lb::dp {

// Registers the commands; call once after the regions are attached, before
// the workers start. Both regions must outlive every telemetry callback
// (that is, the process: DPDK offers no unregister).
void RegisterTelemetry(const StatsRegion* stats, const TableReader* tables, uint16_t workers);

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_TELEMETRY_H_
