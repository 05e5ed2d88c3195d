// lb-dataplane: DPDK run-to-completion L4 load balancer.
//
//   lb-dataplane [EAL options] -- [options]
//
// Attaches to the table region published by lb-controlplane, creates its
// stats region, brings up every port DPDK offers with one RX/TX queue per
// lcore, and runs one Worker per lcore until SIGINT/SIGTERM.
//
// This file: the flags, signals, main() as a list of steps, the run and the
// shutdown. The steps live in startup.{h,cc}; the control threads (monitor,
// table verifier) in monitor.{h,cc}; the fast path in worker*.cc.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/l4/exception_path.h"
#include "dataplane/l4/monitor.h"
#include "dataplane/l4/port.h"
#include "dataplane/l4/startup.h"
#include "dataplane/l4/telemetry.h"
#include "dataplane/l4/worker.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "lib/process_flags.h"

DEFINE_string(table_region, "",
              "Table region file published by lb-controlplane (default: <hugetlbfs mount or "
              "/dev/shm>/lb-tables).");
DEFINE_string(stats_region, "",
              "Stats region file this process creates (default: next to the table region, "
              "lb-stats).");
DEFINE_int32(wait_for_table_s, 30,
             "Seconds to wait at start-up for the table region to appear before giving up.");
DEFINE_string(ipv4, "",
              "This node's IPv4 address on its ports: answers ARP and ICMP echo, and is the "
              "outer source of IPv4 tunnels unless the config sets node.tunnel_source_ipv4.");
DEFINE_string(ipv6, "", "This node's IPv6 address (NDP, ICMPv6 echo, IPv6 tunnel source).");
DEFINE_string(gateway_ipv4, "",
              "IPv4 next hop for encapsulated traffic; its MAC is resolved by ARP.");
DEFINE_string(gateway_ipv6, "",
              "IPv6 next hop for encapsulated traffic; its MAC is resolved by NDP.");
DEFINE_string(gateway_mac, "",
              "Static next-hop MAC (aa:bb:cc:dd:ee:ff) for both families; disables ARP/NDP "
              "resolution.");
DEFINE_int32(mtu, 1500,
             "Egress IP MTU. A packet that would exceed it once encapsulated gets ICMP "
             "frag-needed / packet-too-big back (DF set) or is dropped (reason too_big).");
DEFINE_bool(set_port_mtu, false,
            "Also program --mtu + 48 (the largest encapsulation overhead, GUE over IPv6) "
            "into the ports.");
DEFINE_uint32(conn_table_size, 1u << 20, "Connection-table entries per lcore (fixed memory).");
DEFINE_bool(conn_table_persist, true,
            "Keep each lcore's connection table in a shared file (<prefix>.conn.<lcore>) that a "
            "restarted lb-dataplane with the same --conn_table_size attaches, so established "
            "flows keep their backend across restarts and upgrades (docs/OPERATIONS.md).");
DEFINE_string(conn_table_dir, "",
              "Directory of the connection-table and sticky-table files (default: beside the "
              "stats region, named after it).");
DEFINE_uint32(conn_table_grace_s, 0,
              "After a restart with another lcore count: how long a connection-table miss also "
              "looks in the other lcores' tables and the previous run's (0 = --tcp_timeout_s).");
DEFINE_uint32(sticky_table_size, 1u << 18,
              "Client entries of the session-persistence table shared by all lcores (sticky "
              "VIPs).");
DEFINE_bool(sticky_table_persist, true,
            "Keep the session-persistence table in a shared file (<prefix>.sticky, beside the "
            "connection tables) that a restarted lb-dataplane with the same --sticky_table_size "
            "attaches, so a sticky client's next connection keeps its backend across restarts "
            "(docs/OPERATIONS.md).");
DEFINE_uint32(tcp_timeout_s, 300, "Idle timeout of an established TCP flow.");
DEFINE_uint32(tcp_closing_timeout_s, 10, "Idle timeout of a TCP flow after FIN or RST.");
DEFINE_uint32(udp_timeout_s, 30, "Idle timeout of a UDP (or other) flow.");
DEFINE_uint32(tcp_syn_timeout_s, 5,
              "Idle timeout of a half-open TCP flow (first packet seen, no ACK after it).");
DEFINE_uint32(new_flow_rate_limit, 0,
              "SYN-flood guard: new flows per second each lcore inserts into its connection "
              "table; above it, new flows are forwarded by the consistent (Maglev) pick "
              "without an entry. 0 = no limit.");
DEFINE_uint32(rx_desc, 1024, "RX descriptors per queue.");
DEFINE_uint32(tx_desc, 1024, "TX descriptors per queue.");
DEFINE_uint32(mbufs, 0, "mbufs per port pool (0 = sized from descriptors and lcores).");
DEFINE_bool(promiscuous, false, "Put the ports in promiscuous mode.");
DEFINE_uint32(idle_exit_ms, 0,
              "Exit after this many ms without a received packet, once one has been received "
              "(for pcap replay runs). 0 = run until SIGINT/SIGTERM.");
DEFINE_uint32(drain_us, 100, "TX drain period in microseconds.");
DEFINE_string(exception_path, "",
              "Exception path: create this kernel interface (a DPDK net_tap port with the first "
              "port's MAC) and hand it what is not for a VIP and not answered here (BGP, BFD, "
              "ARP for the kernel's addresses, ICMP, ssh); send what the kernel emits out the "
              "first port. Put the node's kernel addresses on it. Empty = off: such packets "
              "are dropped and counted by reason (docs/OPERATIONS.md).");
DEFINE_uint32(exception_path_pps, 20000,
              "Packets per second each lcore may hand to the kernel on the exception path; "
              "above it they drop as exception_full. 0 = no limit.");
DEFINE_uint32(summary_interval_s, 60,
              "Log a counter summary (packets, drops by reason, table generation) this often, "
              "and at once when the table generation changes. 0 = only at exit.");

namespace {

std::atomic<bool> g_quit{false};
std::atomic<int> g_signal{0};  // the signal that stopped the process, logged by main

void OnSignal(int sig) {
  g_signal.store(sig);
  g_quit.store(true);
}

int Fail(const std::string& msg) {
  LOG(ERROR) << msg;
  return 1;
}

struct LaunchArg {
  lb::dp::Worker* worker;
};

int WorkerMain(void* arg) {
  static_cast<LaunchArg*>(arg)->worker->Run(&g_quit);
  return 0;
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-help") == 0) return true;
  }
  return false;
}

// The start-up summary: one INFO line for the regions, one per port; --v=1
// adds the lcore map.
void LogStartup(const std::string& table_path, uint64_t gen, const std::string& stats_path,
                uint16_t lcores, const std::vector<lb::dp::PortInfo>& ports) {
  LOG(INFO) << "table " << table_path << " (generation " << gen
            << (gen == 0 ? ", waiting for the first publish" : "") << "), stats " << stats_path
            << ", " << lcores << " lcores, mtu " << FLAGS_mtu;
  unsigned lcore;
  uint16_t worker = 0;
  RTE_LCORE_FOREACH(lcore) {
    VLOG(1) << "worker " << worker << " on lcore " << lcore << " (socket "
            << rte_lcore_to_socket_id(lcore) << "): RX/TX queue " << worker << " of every port";
    ++worker;
  }
  for (const auto& p : ports) {
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof(mac), &p.mac);
    LOG(INFO) << "port " << p.port_id << " " << p.name << " mac " << mac << " rx_queues "
              << p.rx_queues << " mtu " << p.mtu << " mbuf_data " << p.data_room;
  }
}

// The process after start-up: the control threads, every worker on its lcore
// (worker 0 on this one) until a signal or --idle_exit_ms, then the shutdown:
// summary, ports (pcap writes its file on close), regions.
int RunAndShutDown(const lb::dp::MonitorArg& monitor_arg, lb::TableReader* tables,
                   lb::StatsRegion* stats, std::vector<std::unique_ptr<lb::dp::Worker>>* workers,
                   std::unique_ptr<lb::dp::ExceptionPath> exception_path) {
  pthread_t monitor;
  if (int rc = rte_ctrl_thread_create(&monitor, "lb-monitor", nullptr, lb::dp::Monitor,
                                      const_cast<lb::dp::MonitorArg*>(&monitor_arg));
      rc != 0) {
    return Fail(absl::StrCat("monitor thread: ", std::strerror(-rc)));
  }
  lb::dp::VerifierArg verifier_arg{tables, &g_quit};
  pthread_t verifier;
  if (int rc =
          rte_ctrl_thread_create(&verifier, "lb-verify", nullptr, lb::dp::Verifier, &verifier_arg);
      rc != 0) {
    return Fail(absl::StrCat("verifier thread: ", std::strerror(-rc)));
  }
  const uint16_t num_workers = static_cast<uint16_t>(workers->size());
  std::vector<LaunchArg> args(num_workers);
  unsigned lcore;
  uint16_t wi = 1;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    args[wi].worker = (*workers)[wi].get();
    rte_eal_remote_launch(WorkerMain, &args[wi], lcore);
    ++wi;
  }
  LOG(INFO) << "running; SIGINT/SIGTERM stops";
  args[0].worker = (*workers)[0].get();
  WorkerMain(&args[0]);
  rte_eal_mp_wait_lcore();
  if (exception_path != nullptr) {
    LOG(INFO) << "exception path: " << exception_path->ring_drops()
              << " frames lost between the rings and the tap";
    exception_path.reset();  // service thread, tap port, rings: before the mempools go
  }
  pthread_join(monitor, nullptr);
  pthread_join(verifier, nullptr);
  if (const int sig = g_signal.load(); sig != 0) {
    LOG(INFO) << "signal " << sig << " (" << strsignal(sig) << ") received: stopping";
  }

  lb::dp::CopyPorts(monitor_arg);  // final device counters, before the ports close
  LOG(INFO) << "stopped: generation " << tables->generation() << " "
            << lb::dp::FormatTotals(lb::dp::SumCounters(*stats, num_workers)) << "; "
            << lb::dp::FormatPorts(monitor_arg);
  for (const auto& p : *monitor_arg.ports) lb::dp::StopPort(p.port_id);
  stats->control().writer_pid.store(0, std::memory_order_release);
  workers->clear();
  rte_eal_cleanup();  // the runtime directory goes at exit (RemoveEalRuntimeDirAtExit)
  LOG(INFO) << "ports stopped, stats region released; exiting";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "lb-dataplane [EAL options] -- [options]\n\n"
      "DPDK L4 load balancer: matches VIPs, pins flows per lcore, picks backends with the\n"
      "tables lb-controlplane publishes, and forwards by IP-in-IP / IPv6-in-IPv6 (DSR).\n\n"
      "Examples:\n"
      "  lb-dataplane -l 0-1 --vdev=net_af_xdp0,iface=eth0 -- --ipv4 10.0.0.2 "
      "--gateway_ipv4 10.0.0.1\n"
      "  lb-dataplane -l 0 --no-huge -m 256 --no-pci "
      "--vdev=net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap -- --gateway_mac 02:00:00:00:00:01 "
      "--ipv4 10.0.0.2 --idle_exit_ms 500");
  if (WantsHelp(argc, argv)) {
    gflags::ShowUsageWithFlagsRestrict(argv[0], "dataplane/l4");
    lb::PrintLoggingFlagsHelp();
    return 0;
  }
  lb::StartLogging(argv[0]);
  lb::dp::RouteDpdkLogsToGlog();
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    return Fail(absl::StrCat("EAL init failed: ", rte_strerror(rte_errno),
                             " (try --no-huge -m 256 without hugepages)"));
  }
  // Every return below (a refused flag, region or port) leaves no EAL
  // runtime directory behind either.
  lb::dp::RemoveEalRuntimeDirAtExit();
  argc -= eal;
  argv += eal;
  if (!lb::ParseFlags(&argc, &argv)) return 1;
  if (argc > 1) return Fail(absl::StrCat("unexpected argument: ", argv[1]));

  const lb::dp::RegionPaths paths = lb::dp::RegionPathsFromFlags();
  auto node = std::make_unique<lb::dp::NodeState>();
  if (absl::Status s = lb::dp::NodeFromFlags(node.get()); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  // --- the table region: wait for the control plane's first publish ---
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  absl::StatusOr<lb::TableReader> tables = lb::dp::WaitForTables(paths.table, g_quit);
  if (!tables.ok()) {
    if (const int sig = g_signal.load(); sig != 0) {
      LOG(INFO) << "signal " << sig << " (" << strsignal(sig) << ") received while waiting";
    }
    return Fail(absl::StrCat("table region: ", tables.status().message()));
  }
  const uint64_t gen = tables->generation();
  if (absl::Status s = lb::dp::VerifyFirstGeneration(paths.table, &*tables); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  const uint16_t num_workers = static_cast<uint16_t>(rte_lcore_count());
  auto stats = lb::dp::CreateStatsRegion(paths.stats, *tables, num_workers);
  if (!stats.ok()) return Fail(std::string(stats.status().message()));

  auto ports = lb::dp::SetUpPorts(num_workers, node.get());
  if (!ports.ok()) return Fail(std::string(ports.status().message()));

  // --- workers: worker i polls RX queue i of every port, owns TX queue i ---
  const lb::dp::WorkerOptions wo = lb::dp::WorkerOptionsFromFlags();
  const std::string conn_prefix = FLAGS_conn_table_persist ? paths.files : "";
  auto sticky = lb::dp::CreateStickyTable(FLAGS_sticky_table_persist ? paths.files : "");
  if (!sticky.ok()) return Fail(absl::StrCat("--sticky_table_size: ", sticky.status().message()));
  node->sticky = sticky->get();
  const std::vector<unsigned> lcore_of = lb::dp::WorkerLcores();
  lb::dp::WarnCrossSocket(lcore_of, *ports);
  auto workers =
      lb::dp::CreateWorkers(wo, conn_prefix, lcore_of, {&*tables, &*stats, node.get(), &*ports});
  if (!workers.ok()) return Fail(std::string(workers.status().message()));
  std::vector<std::unique_ptr<const lb::ConnTable>> orphan_tables;  // outlive the lcores
  if (!conn_prefix.empty()) lb::dp::SetUpConnGrace(conn_prefix, *workers, wo.conn, &orphan_tables);
  stats->control().num_lcores.store(num_workers, std::memory_order_release);

  // --- the exception path to the kernel (--exception_path) ---
  std::unique_ptr<lb::dp::ExceptionPath> exception_path;
  if (!FLAGS_exception_path.empty()) {
    const lb::dp::PortInfo& first = (*ports)[0];
    auto x = lb::dp::ExceptionPath::Create(FLAGS_exception_path, first.mac, first.pool,
                                           first.port_id, FLAGS_exception_path_pps);
    if (!x.ok()) return Fail(std::string(x.status().message()));
    exception_path = std::move(*x);
    for (auto& w : *workers) w->SetExceptionPath(exception_path->queues());
    exception_path->Start();
  }

  LogStartup(paths.table, gen, paths.stats, num_workers, *ports);
  lb::dp::RegisterTelemetry(&*stats, &*tables, num_workers);

  const lb::dp::MonitorArg monitor_arg{&*tables, &*stats, num_workers, &*ports, &g_quit};
  return RunAndShutDown(monitor_arg, &*tables, &*stats, &*workers, std::move(exception_path));
}
