// lb-dataplane's start-up, in the order main() runs it: region paths and
// node state from the flags, the wait for the control plane's first publish,
// the ports, the sticky table, one Worker per lcore (created on its own
// lcore) and the connection-table grace after an lcore-count change. (The
// start-up summary lines stay in main.cc: tests read them as main.cc's.)
//
// Errors: absl::Status with one line that names the flag or the thing at
// fault; main() logs it and exits 1 (fail fast). Called from the main lcore
// before any worker runs.
#ifndef LB_DATAPLANE_L4_STARTUP_H_
#define LB_DATAPLANE_L4_STARTUP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/l4/port.h"
#include "dataplane/l4/worker.h"
#include "lib/conn_table.h"
#include "lib/shm_region.h"
#include "lib/sticky_table.h"

namespace lb::dp {

// DPDK's own log lines (EAL, PMDs) through glog at the matching severity.
void RouteDpdkLogsToGlog();

struct RegionPaths {
  std::string table;  // --table_region, or <hugetlbfs or /dev/shm>/lb-tables
  std::string stats;  // --stats_region, or lb-stats beside the table region
  // The files that survive a restart: <files>.conn.<lcore> and <files>.sticky.
  std::string files;
};
RegionPaths RegionPathsFromFlags();

// --ipv4, --ipv6, --gateway_*, --mtu into `node`.
absl::Status NodeFromFlags(NodeState* node);

// Attaches the table region, waiting up to --wait_for_table_s for it to
// appear (NotFound then), or until `quit`.
absl::StatusOr<TableReader> WaitForTables(const std::string& path, const std::atomic<bool>& quit);
// The same verification as every later swap, through the gate the lcores
// share, so that they do not verify this generation again; from then on the
// lcores only read verdicts, the verifier thread gives them.
absl::Status VerifyFirstGeneration(const std::string& path, TableReader* tables);

// The stats region, one slice per worker (at most kMaxLcores), sized for
// the table region's capacities.
absl::StatusOr<StatsRegion> CreateStatsRegion(const std::string& path, const TableReader& tables,
                                              uint16_t num_workers);

// Every port DPDK offers, `num_queues` RX/TX queues each; fills the node's
// port MACs.
absl::StatusOr<std::vector<PortInfo>> SetUpPorts(uint16_t num_queues, NodeState* node);

absl::StatusOr<std::unique_ptr<StickyTable>> CreateStickyTable(const std::string& prefix);

WorkerOptions WorkerOptionsFromFlags();
// Worker i runs on WorkerLcores()[i]: 0 on the main lcore, then the others
// in EAL order (the launch uses the same order).
std::vector<unsigned> WorkerLcores();
// One WARNING per (lcore, port) pair on different known sockets.
void WarnCrossSocket(const std::vector<unsigned>& lcore_of, const std::vector<PortInfo>& ports);

struct WorkerResources {
  const TableReader* tables;
  StatsRegion* stats;
  NodeState* node;
  const std::vector<PortInfo>* ports;
};
// Worker i polls RX queue i of every port and owns TX queue i; each is
// created on its own lcore (first touch: its pages on that lcore's socket).
// `conn_prefix` empty: private connection tables.
absl::StatusOr<std::vector<std::unique_ptr<Worker>>> CreateWorkers(
    WorkerOptions wo, const std::string& conn_prefix, const std::vector<unsigned>& lcore_of,
    const WorkerResources& r);

void SetUpConnGrace(const std::string& prefix, const std::vector<std::unique_ptr<Worker>>& workers,
                    const ConnTableOptions& conn,
                    std::vector<std::unique_ptr<const ConnTable>>* orphans);

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_STARTUP_H_
