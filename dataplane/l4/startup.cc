#include "dataplane/l4/startup.h"

#include <arpa/inet.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "dataplane/l4/flags.h"
#include "glog/logging.h"
#include "lib/conn_table_shm.h"
#include "lib/numa.h"
#include "lib/slot_verify.h"
#include "lib/sticky_table_shm.h"

namespace lb::dp {
namespace {

// DPDK's own log lines (EAL, PMDs; never per packet at the default levels)
// through glog at the matching severity, so that the process has one log
// format. rte_vlog() writes each message and flushes the stream.
ssize_t DpdkLogWrite(void*, const char* buf, size_t size) {
  std::string_view msg(buf, size);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.remove_suffix(1);
  if (msg.empty()) return static_cast<ssize_t>(size);
  const int level = rte_log_cur_msg_loglevel();
  if (level <= static_cast<int>(RTE_LOG_ERR)) {
    LOG(ERROR) << "dpdk: " << msg;
  } else if (level == static_cast<int>(RTE_LOG_WARNING)) {
    LOG(WARNING) << "dpdk: " << msg;
  } else if (level <= static_cast<int>(RTE_LOG_INFO)) {
    LOG(INFO) << "dpdk: " << msg;
  } else {
    VLOG(1) << "dpdk: " << msg;
  }
  return static_cast<ssize_t>(size);
}

// Worker::Create on the worker's own lcore, so that its connection table
// (and the Worker itself) are first touched there: with the default NUMA
// policy the pages come from that lcore's socket (docs/ARCHITECTURE.md).
struct CreateArg {
  const WorkerOptions* options;
  const TableReader* tables;
  StatsRegion* stats;
  NodeState* node;
  rte_mempool* pool;
  absl::StatusOr<std::unique_ptr<Worker>> result = absl::UnknownError("not run");
};

int CreateWorkerOnLcore(void* p) {
  auto* a = static_cast<CreateArg*>(p);
  a->result = Worker::Create(*a->options, a->tables, a->stats, a->node, a->pool);
  return 0;
}

}  // namespace

void RouteDpdkLogsToGlog() {
  cookie_io_functions_t io = {};
  io.write = DpdkLogWrite;
  if (FILE* f = fopencookie(nullptr, "w", io); f != nullptr) {
    setvbuf(f, nullptr, _IOFBF, 4096);
    rte_openlog_stream(f);
  }
}

RegionPaths RegionPathsFromFlags() {
  RegionPaths p;
  RegionDir dir = DefaultRegionDir();
  p.table = FLAGS_table_region.empty() ? dir.path + "/lb-tables" : FLAGS_table_region;
  p.stats = FLAGS_stats_region;
  if (p.stats.empty()) {
    const size_t slash = p.table.rfind('/');
    p.stats =
        (slash == std::string::npos ? std::string(".") : p.table.substr(0, slash)) + "/lb-stats";
  }
  const size_t slash = p.stats.rfind('/');
  p.files = FLAGS_conn_table_dir.empty()
                ? p.stats
                : FLAGS_conn_table_dir + "/" +
                      (slash == std::string::npos ? p.stats : p.stats.substr(slash + 1));
  return p;
}

absl::Status NodeFromFlags(NodeState* node) {
  struct AddressFlag {
    const char* name;
    const std::string& value;
    int af;
    uint8_t* out;
    bool* set;
  };
  const AddressFlag addresses[] = {
      {"ipv4", FLAGS_ipv4, AF_INET, node->ipv4, &node->has_ipv4},
      {"ipv6", FLAGS_ipv6, AF_INET6, node->ipv6, &node->has_ipv6},
      {"gateway_ipv4", FLAGS_gateway_ipv4, AF_INET, node->gw4.ip, &node->gw4.configured},
      {"gateway_ipv6", FLAGS_gateway_ipv6, AF_INET6, node->gw6.ip, &node->gw6.configured},
  };
  for (const AddressFlag& f : addresses) {
    if (f.value.empty()) continue;
    if (inet_pton(f.af, f.value.c_str(), f.out) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("--", f.name, ": \"", f.value,
                                                     "\" is not an IPv",
                                                     f.af == AF_INET ? "4" : "6", " address"));
    }
    *f.set = true;
  }
  if (!FLAGS_gateway_mac.empty()) {
    rte_ether_addr mac;
    if (rte_ether_unformat_addr(FLAGS_gateway_mac.c_str(), &mac) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gateway_mac: \"", FLAGS_gateway_mac, "\" is not a MAC address"));
    }
    for (NextHop* nh : {&node->gw4, &node->gw6}) {
      nh->configured = true;
      nh->is_static = true;
      nh->Set(mac.addr_bytes, MonotonicNs());
    }
  }
  if (!node->gw4.configured && !node->gw6.configured) {
    return absl::InvalidArgumentError(
        "no next hop: set --gateway_ipv4/--gateway_ipv6 (resolved by ARP/NDP) or "
        "--gateway_mac");
  }
  if (node->gw4.configured && !node->gw4.is_static && !node->has_ipv4) {
    return absl::InvalidArgumentError(
        "--gateway_ipv4 needs --ipv4 (the source address of ARP requests)");
  }
  if (node->gw6.configured && !node->gw6.is_static && !node->has_ipv6) {
    return absl::InvalidArgumentError(
        "--gateway_ipv6 needs --ipv6 (the source address of neighbour solicitations)");
  }
  if (FLAGS_mtu < 576 || FLAGS_mtu > 9600) {
    return absl::InvalidArgumentError(absl::StrCat("--mtu: ", FLAGS_mtu, " outside [576, 9600]"));
  }
  node->mtu = static_cast<uint16_t>(FLAGS_mtu);
  node->tsc_hz = rte_get_tsc_hz();
  return absl::OkStatus();
}

absl::StatusOr<TableReader> WaitForTables(const std::string& path, const std::atomic<bool>& quit) {
  absl::StatusOr<TableReader> tables = absl::NotFoundError("not yet attached");
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(FLAGS_wait_for_table_s);
  bool told = false;
  while (true) {
    tables = TableReader::Attach(path);
    if (tables.ok() || !absl::IsNotFound(tables.status())) break;
    if (std::chrono::steady_clock::now() > deadline || quit.load()) break;
    if (!told) {
      LOG(INFO) << "waiting up to " << FLAGS_wait_for_table_s << " s for " << path
                << " (start lb-controlplane)";
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return tables;
}

absl::Status VerifyFirstGeneration(const std::string& path, TableReader* tables) {
  const uint64_t gen = tables->generation();
  if (gen != 0 && tables->gate().VerifyPublished(*tables) == TableGate::Verdict::kRefused) {
    SlotFault fault;
    const uint64_t refused = tables->gate().LastRefusal(&fault);
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": published generation ", refused,
                     " is not valid: ", DescribeSlotFault(fault, refused)));
  }
  tables->gate().UseVerifierThread();
  return absl::OkStatus();
}

absl::StatusOr<StatsRegion> CreateStatsRegion(const std::string& path, const TableReader& tables,
                                              uint16_t num_workers) {
  if (num_workers > kMaxLcores) {
    return absl::InvalidArgumentError(
        absl::StrCat(num_workers, " lcores; at most ", kMaxLcores, " are supported"));
  }
  StatsCapacities sc;
  sc.max_lcores = num_workers;
  sc.max_vips = tables.header().max_vips;
  sc.max_backends = tables.header().max_backends;
  auto stats = StatsRegion::Create(path, sc);
  if (!stats.ok()) {
    return absl::Status(stats.status().code(),
                        absl::StrCat("stats region: ", stats.status().message()));
  }
  return stats;
}

absl::StatusOr<std::vector<PortInfo>> SetUpPorts(uint16_t num_queues, NodeState* node) {
  const uint16_t num_ports = rte_eth_dev_count_avail();
  if (num_ports == 0) {
    return absl::FailedPreconditionError(
        "no ports: give DPDK a NIC or a vdev (e.g. --vdev=net_af_xdp0,iface=eth0)");
  }
  if (num_ports > kMaxPorts) {
    return absl::FailedPreconditionError(absl::StrCat(num_ports, " ports; at most ", kMaxPorts));
  }
  PortOptions po;
  po.num_queues = num_queues;
  po.rx_desc = static_cast<uint16_t>(FLAGS_rx_desc);
  po.tx_desc = static_cast<uint16_t>(FLAGS_tx_desc);
  po.mbufs = FLAGS_mbufs;
  po.promiscuous = FLAGS_promiscuous;
  // The largest overhead: GUE over IPv6 (40 + 8 bytes).
  if (FLAGS_set_port_mtu) po.mtu = static_cast<uint16_t>(FLAGS_mtu + 48);
  po.max_ip_len = static_cast<uint16_t>(FLAGS_mtu);
  std::vector<PortInfo> ports;
  uint16_t pid;
  RTE_ETH_FOREACH_DEV(pid) {
    if (pid >= kMaxPorts) {
      return absl::FailedPreconditionError(absl::StrCat("port id ", pid, " too large"));
    }
    auto pi = SetUpPort(pid, po);
    if (!pi.ok()) return pi.status();
    node->port_mac[pid] = pi->mac;
    ports.push_back(*pi);
  }
  node->num_ports = static_cast<uint16_t>(ports.size());
  return ports;
}

WorkerOptions WorkerOptionsFromFlags() {
  WorkerOptions wo;
  wo.conn_capacity = FLAGS_conn_table_size;
  wo.conn.tcp_timeout_ms = FLAGS_tcp_timeout_s * 1000;
  wo.conn.tcp_closing_timeout_ms = FLAGS_tcp_closing_timeout_s * 1000;
  wo.conn.udp_timeout_ms = FLAGS_udp_timeout_s * 1000;
  wo.conn.tcp_syn_timeout_ms = FLAGS_tcp_syn_timeout_s * 1000;
  wo.new_flow_rate_limit = FLAGS_new_flow_rate_limit;
  wo.drain_us = FLAGS_drain_us;
  return wo;
}

std::vector<unsigned> WorkerLcores() {
  std::vector<unsigned> lcore_of{rte_get_main_lcore()};
  unsigned l;
  RTE_LCORE_FOREACH_WORKER(l) lcore_of.push_back(l);
  return lcore_of;
}

absl::StatusOr<std::vector<std::unique_ptr<Worker>>> CreateWorkers(
    WorkerOptions wo, const std::string& conn_prefix, const std::vector<unsigned>& lcore_of,
    const WorkerResources& r) {
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Worker*> peers;
  for (uint16_t i = 0; i < lcore_of.size(); ++i) {
    wo.index = i;
    wo.conn_file = conn_prefix.empty() ? "" : ConnTableFileName(conn_prefix, i);
    CreateArg ca{&wo, r.tables, r.stats, r.node, (*r.ports)[0].pool};
    if (i == 0) {
      CreateWorkerOnLcore(&ca);
    } else if (rte_eal_remote_launch(CreateWorkerOnLcore, &ca, lcore_of[i]) != 0 ||
               rte_eal_wait_lcore(lcore_of[i]) != 0) {
      return absl::InternalError(
          absl::StrCat("worker ", i, ": cannot run its set-up on lcore ", lcore_of[i]));
    }
    auto& w = ca.result;
    if (!w.ok())
      return absl::Status(w.status().code(),
                          absl::StrCat("worker ", i, ": ", w.status().message()));
    for (const auto& p : *r.ports) {
      if (i < p.rx_queues) (*w)->AddRxQueue(p.port_id, i);
    }
    peers.push_back(w->get());
    workers.push_back(std::move(*w));
  }
  for (auto& w : workers) w->SetPeers(peers);
  return workers;
}

// Restart with another lcore count: RSS sends some flows to another queue
// than in the previous run, so their entry sits in another lcore's table or
// in the file of an lcore that no longer exists (an orphan, opened read-only
// into *orphans). Every worker then gets a grace period in which a miss looks
// there too (Worker::SetConnGrace). Same lcore count: nothing to do.
void SetUpConnGrace(const std::string& prefix, const std::vector<std::unique_ptr<Worker>>& workers,
                    const ConnTableOptions& conn,
                    std::vector<std::unique_ptr<const ConnTable>>* orphans) {
  bool kept = false;
  bool fresh = false;
  for (const auto& w : workers) {
    kept |= w->conn_attach().attached;
    fresh |= !w->conn_attach().attached;
  }
  for (uint32_t i = static_cast<uint32_t>(workers.size()); i < kMaxLcores; ++i) {
    const std::string path = ConnTableFileName(prefix, i);
    if (access(path.c_str(), F_OK) != 0) continue;
    auto t = ConnTable::OpenForPeek(path, &conn);
    if (!t.ok()) {
      LOG(WARNING) << "connection table of a previous lcore not used: " << t.status().message();
      continue;
    }
    if ((*t)->size() != 0) orphans->push_back(std::move(*t));
  }
  if (orphans->empty() && !(kept && fresh)) return;
  std::vector<const ConnTable*> tables;
  for (const auto& w : workers) tables.push_back(&w->conn());
  for (const auto& t : *orphans) tables.push_back(t.get());
  const uint32_t grace_s =
      FLAGS_conn_table_grace_s != 0 ? FLAGS_conn_table_grace_s : FLAGS_tcp_timeout_s;
  const uint32_t until_ms = static_cast<uint32_t>(MonotonicNs() / 1000000) + grace_s * 1000;
  for (const auto& w : workers) w->SetConnGrace(tables, until_ms);
  LOG(INFO) << "connection tables: the lcore count changed (" << workers.size() << " lcores, "
            << orphans->size() << " table(s) of previous lcores kept read-only): for " << grace_s
            << " s a miss also looks in the other " << tables.size() - 1 << " table(s)";
}

// The sticky table, in its shared file when `prefix` is set: one line saying
// whether the previous run's clients were kept, and why not (the counter is
// the file header's `discards`, as for the connection tables).
absl::StatusOr<std::unique_ptr<StickyTable>> CreateStickyTable(const std::string& prefix) {
  if (prefix.empty()) return StickyTable::Create(FLAGS_sticky_table_size);
  const std::string path = StickyTableFileName(prefix);
  SharedFileAttach a;
  auto t = StickyTable::CreateShared(FLAGS_sticky_table_size, path, &a);
  if (!t.ok()) return t;
  if (a.attached) {
    LOG(INFO) << "sticky table " << path << " attached, " << a.entries << " clients kept"
              << (a.was_dirty ? " (previous owner did not close it)" : "");
  } else if (a.discarded) {
    LOG(WARNING) << "sticky table " << path << " started empty: " << a.reason << " (discard #"
                 << a.discards << ")";
  } else {
    VLOG(1) << "sticky table " << path << " created";
  }
  return t;
}

// One WARNING per (lcore, port) pair on different known sockets.
void WarnCrossSocket(const std::vector<unsigned>& lcore_of, const std::vector<PortInfo>& ports) {
  std::vector<LcorePortPoll> polls;
  for (uint32_t i = 0; i < lcore_of.size(); ++i) {
    for (const auto& p : ports) {
      if (i >= p.rx_queues) continue;
      LcorePortPoll q;
      q.worker = i;
      q.lcore = lcore_of[i];
      q.lcore_socket = static_cast<int>(rte_lcore_to_socket_id(lcore_of[i]));
      q.port = p.port_id;
      q.port_socket = rte_eth_dev_socket_id(p.port_id);
      polls.push_back(q);
    }
  }
  for (const std::string& w : CrossSocketPolls(polls)) LOG(WARNING) << "NUMA: " << w;
}

}  // namespace lb::dp
