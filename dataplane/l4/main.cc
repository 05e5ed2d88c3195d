// lb-dataplane: DPDK run-to-completion L4 load balancer.
//
//   lb-dataplane [EAL options] -- [options]
//
// Attaches to the table region published by lb-controlplane, creates its
// stats region, brings up every port DPDK offers with one RX/TX queue per
// lcore, and runs one Worker per lcore until SIGINT/SIGTERM.
#include <arpa/inet.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/l4/port.h"
#include "dataplane/l4/telemetry.h"
#include "dataplane/l4/worker.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "lib/conn_table_shm.h"
#include "lib/numa.h"
#include "lib/process_flags.h"
#include "lib/shm_region.h"
#include "lib/slot_verify.h"
#include "lib/sticky_table_shm.h"

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

bool ParseAddr(const std::string& s, int af, uint8_t* out) {
  return inet_pton(af, s.c_str(), out) == 1;
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

// Counter totals over every lcore.
struct Totals {
  uint64_t rx = 0, tx = 0, forwarded = 0, replies = 0, drops[lb::kNumDropReasons] = {};
};

Totals SumCounters(const lb::StatsRegion& stats, uint16_t lcores) {
  Totals t;
  for (uint16_t i = 0; i < lcores; ++i) {
    const lb::LcoreStats& l = stats.Lcore(i);
    t.rx += l.rx_packets.load(std::memory_order_relaxed);
    t.tx += l.tx_packets.load(std::memory_order_relaxed);
    t.forwarded += l.forwarded.load(std::memory_order_relaxed);
    t.replies += l.replies.load(std::memory_order_relaxed);
    for (int r = 0; r < lb::kNumDropReasons; ++r) {
      t.drops[r] += l.drops[r].load(std::memory_order_relaxed);
    }
  }
  return t;
}

// "rx=N tx=N forwarded=N replies=N drop_<reason>=N..." (non-zero drops only).
std::string FormatTotals(const Totals& t) {
  std::string s =
      absl::StrCat("rx=", t.rx, " tx=", t.tx, " forwarded=", t.forwarded, " replies=", t.replies);
  for (int r = 0; r < lb::kNumDropReasons; ++r) {
    if (t.drops[r] != 0) {
      absl::StrAppend(&s, " drop_", lb::DropReasonName(static_cast<lb::DropReason>(r)), "=",
                      t.drops[r]);
    }
  }
  return s;
}

// The monitor: a DPDK control thread (off the lcores' cores) that logs the
// periodic summary and table generation changes, and in replay mode
// (--idle_exit_ms) stops the process once traffic has come and gone.
struct MonitorArg {
  const lb::TableReader* tables;
  const lb::StatsRegion* stats;
  uint16_t lcores;
  const std::vector<lb::dp::PortInfo>* ports;
};

// The NICs' own counters (rte_eth_stats_get) into the stats region's
// per-port area, entry i for the i-th port, every monitor period.
void CopyPorts(const MonitorArg& a) {
  const uint32_t n =
      std::min<uint32_t>(static_cast<uint32_t>(a.ports->size()), a.stats->header().max_ports);
  for (uint32_t i = 0; i < n; ++i) {
    lb::dp::CopyPortCounters((*a.ports)[i].port_id, &a.stats->Port(i));
  }
}

// "port 0 rx=N tx=N rx_missed=N rx_errors=N rx_nombuf=N tx_errors=N; port 1 ...".
std::string FormatPorts(const MonitorArg& a) {
  std::string s;
  const uint32_t n =
      std::min<uint32_t>(static_cast<uint32_t>(a.ports->size()), a.stats->header().max_ports);
  for (uint32_t i = 0; i < n; ++i) {
    const lb::PortCounters& c = a.stats->Port(i);
    constexpr auto kRelaxed = std::memory_order_relaxed;
    absl::StrAppend(&s, i == 0 ? "" : "; ", "port ", c.port_id, " rx=", c.rx_packets.load(kRelaxed),
                    " tx=", c.tx_packets.load(kRelaxed), " rx_missed=", c.rx_missed.load(kRelaxed),
                    " rx_errors=", c.rx_errors.load(kRelaxed),
                    " rx_nombuf=", c.rx_nombuf.load(kRelaxed),
                    " tx_errors=", c.tx_errors.load(kRelaxed));
  }
  return s;
}

// One line per generation the lcores refused (they do not log).
void LogRefusal(const MonitorArg& a, uint64_t* logged) {
  lb::SlotFault fault;
  const uint64_t r = a.tables->gate().LastRefusal(&fault);
  if (r == 0 || r == *logged) return;
  *logged = r;
  LOG(ERROR) << "table generation " << r << " refused: " << lb::DescribeSlotFault(fault, r)
             << "; lcores keep forwarding with generation "
             << a.stats->Lcore(0).observed_generation.load(std::memory_order_acquire)
             << " (counter tables_refused)";
}

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
  while (!g_quit.load()) {
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
      g_quit.store(true);
    }
  }
  return nullptr;
}

// The table verifier: a DPDK control thread that gives each published
// generation too large for an lcore to verify inline its verdict
// (lib/slot_verify.h: about 4.5 ms at the default maximum capacities); the
// lcores verify small ones themselves, at once. It polls every 50 us, so a
// large publish reaches the lcores within that plus the verification time
// (more when this thread shares a CPU with a busy one). It reads the slot
// only while the lcores still hold the previous one, which the control plane
// cannot reuse.
void* Verifier(void* p) {
  const lb::TableReader& t = *static_cast<const lb::TableReader*>(p);
  while (!g_quit.load()) {
    t.gate().VerifyPublished(t, /*only_large=*/true);
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return nullptr;
}

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

void RouteDpdkLogsToGlog() {
  cookie_io_functions_t io = {};
  io.write = DpdkLogWrite;
  if (FILE* f = fopencookie(nullptr, "w", io); f != nullptr) {
    setvbuf(f, nullptr, _IOFBF, 4096);
    rte_openlog_stream(f);
  }
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-help") == 0) return true;
  }
  return false;
}

// Restart with another lcore count: RSS sends some flows to another queue
// than in the previous run, so their entry sits in another lcore's table or
// in the file of an lcore that no longer exists (an orphan, opened read-only
// into *orphans). Every worker then gets a grace period in which a miss looks
// there too (Worker::SetConnGrace). Same lcore count: nothing to do.
void SetUpConnGrace(const std::string& prefix,
                    const std::vector<std::unique_ptr<lb::dp::Worker>>& workers,
                    const lb::ConnTableOptions& conn,
                    std::vector<std::unique_ptr<const lb::ConnTable>>* orphans) {
  bool kept = false;
  bool fresh = false;
  for (const auto& w : workers) {
    kept |= w->conn_attach().attached;
    fresh |= !w->conn_attach().attached;
  }
  for (uint32_t i = static_cast<uint32_t>(workers.size()); i < lb::kMaxLcores; ++i) {
    const std::string path = lb::ConnTableFileName(prefix, i);
    if (access(path.c_str(), F_OK) != 0) continue;
    auto t = lb::ConnTable::OpenForPeek(path, &conn);
    if (!t.ok()) {
      LOG(WARNING) << "connection table of a previous lcore not used: " << t.status().message();
      continue;
    }
    if ((*t)->size() != 0) orphans->push_back(std::move(*t));
  }
  if (orphans->empty() && !(kept && fresh)) return;
  std::vector<const lb::ConnTable*> tables;
  for (const auto& w : workers) tables.push_back(&w->conn());
  for (const auto& t : *orphans) tables.push_back(t.get());
  const uint32_t grace_s =
      FLAGS_conn_table_grace_s != 0 ? FLAGS_conn_table_grace_s : FLAGS_tcp_timeout_s;
  const uint32_t until_ms = static_cast<uint32_t>(lb::MonotonicNs() / 1000000) + grace_s * 1000;
  for (const auto& w : workers) w->SetConnGrace(tables, until_ms);
  LOG(INFO) << "connection tables: the lcore count changed (" << workers.size() << " lcores, "
            << orphans->size() << " table(s) of previous lcores kept read-only): for " << grace_s
            << " s a miss also looks in the other " << tables.size() - 1 << " table(s)";
}

// The sticky table, in its shared file when `prefix` is set: one line saying
// whether the previous run's clients were kept, and why not (the counter is
// the file header's `discards`, as for the connection tables).
absl::StatusOr<std::unique_ptr<lb::StickyTable>> CreateStickyTable(const std::string& prefix) {
  if (prefix.empty()) return lb::StickyTable::Create(FLAGS_sticky_table_size);
  const std::string path = lb::StickyTableFileName(prefix);
  lb::SharedFileAttach a;
  auto t = lb::StickyTable::CreateShared(FLAGS_sticky_table_size, path, &a);
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

// Worker::Create on the worker's own lcore, so that its connection table
// (and the Worker itself) are first touched there: with the default NUMA
// policy the pages come from that lcore's socket (docs/ARCHITECTURE.md).
struct CreateArg {
  const lb::dp::WorkerOptions* options;
  const lb::TableReader* tables;
  lb::StatsRegion* stats;
  lb::dp::NodeState* node;
  rte_mempool* pool;
  absl::StatusOr<std::unique_ptr<lb::dp::Worker>> result = absl::UnknownError("not run");
};

int CreateWorkerOnLcore(void* p) {
  auto* a = static_cast<CreateArg*>(p);
  a->result = lb::dp::Worker::Create(*a->options, a->tables, a->stats, a->node, a->pool);
  return 0;
}

// One WARNING per (lcore, port) pair on different known sockets.
void WarnCrossSocket(const std::vector<unsigned>& lcore_of,
                     const std::vector<lb::dp::PortInfo>& ports) {
  std::vector<lb::LcorePortPoll> polls;
  for (uint32_t i = 0; i < lcore_of.size(); ++i) {
    for (const auto& p : ports) {
      if (i >= p.rx_queues) continue;
      lb::LcorePortPoll q;
      q.worker = i;
      q.lcore = lcore_of[i];
      q.lcore_socket = static_cast<int>(rte_lcore_to_socket_id(lcore_of[i]));
      q.port = p.port_id;
      q.port_socket = rte_eth_dev_socket_id(p.port_id);
      polls.push_back(q);
    }
  }
  for (const std::string& w : lb::CrossSocketPolls(polls)) LOG(WARNING) << "NUMA: " << w;
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
  RouteDpdkLogsToGlog();
  const int eal = rte_eal_init(argc, argv);
  if (eal < 0) {
    return Fail(absl::StrCat("EAL init failed: ", rte_strerror(rte_errno),
                             " (try --no-huge -m 256 without hugepages)"));
  }
  argc -= eal;
  argv += eal;
  if (!lb::ParseFlags(&argc, &argv)) return 1;
  if (argc > 1) return Fail(absl::StrCat("unexpected argument: ", argv[1]));

  lb::RegionDir dir = lb::DefaultRegionDir();
  const std::string table_path =
      FLAGS_table_region.empty() ? dir.path + "/lb-tables" : FLAGS_table_region;
  std::string stats_path = FLAGS_stats_region;
  if (stats_path.empty()) {
    const size_t slash = table_path.rfind('/');
    stats_path =
        (slash == std::string::npos ? std::string(".") : table_path.substr(0, slash)) + "/lb-stats";
  }

  // --- node state from flags ---
  auto node = std::make_unique<lb::dp::NodeState>();
  if (!FLAGS_ipv4.empty()) {
    if (!ParseAddr(FLAGS_ipv4, AF_INET, node->ipv4)) {
      return Fail(absl::StrCat("--ipv4: \"", FLAGS_ipv4, "\" is not an IPv4 address"));
    }
    node->has_ipv4 = true;
  }
  if (!FLAGS_ipv6.empty()) {
    if (!ParseAddr(FLAGS_ipv6, AF_INET6, node->ipv6)) {
      return Fail(absl::StrCat("--ipv6: \"", FLAGS_ipv6, "\" is not an IPv6 address"));
    }
    node->has_ipv6 = true;
  }
  if (!FLAGS_gateway_ipv4.empty()) {
    if (!ParseAddr(FLAGS_gateway_ipv4, AF_INET, node->gw4.ip)) {
      return Fail(
          absl::StrCat("--gateway_ipv4: \"", FLAGS_gateway_ipv4, "\" is not an IPv4 address"));
    }
    node->gw4.configured = true;
  }
  if (!FLAGS_gateway_ipv6.empty()) {
    if (!ParseAddr(FLAGS_gateway_ipv6, AF_INET6, node->gw6.ip)) {
      return Fail(
          absl::StrCat("--gateway_ipv6: \"", FLAGS_gateway_ipv6, "\" is not an IPv6 address"));
    }
    node->gw6.configured = true;
  }
  if (!FLAGS_gateway_mac.empty()) {
    rte_ether_addr mac;
    if (rte_ether_unformat_addr(FLAGS_gateway_mac.c_str(), &mac) != 0) {
      return Fail(absl::StrCat("--gateway_mac: \"", FLAGS_gateway_mac, "\" is not a MAC address"));
    }
    for (lb::dp::NextHop* nh : {&node->gw4, &node->gw6}) {
      nh->configured = true;
      nh->is_static = true;
      nh->Set(mac.addr_bytes, lb::MonotonicNs());
    }
  }
  if (!node->gw4.configured && !node->gw6.configured) {
    return Fail(
        "no next hop: set --gateway_ipv4/--gateway_ipv6 (resolved by ARP/NDP) or "
        "--gateway_mac");
  }
  if (node->gw4.configured && !node->gw4.is_static && !node->has_ipv4) {
    return Fail("--gateway_ipv4 needs --ipv4 (the source address of ARP requests)");
  }
  if (node->gw6.configured && !node->gw6.is_static && !node->has_ipv6) {
    return Fail("--gateway_ipv6 needs --ipv6 (the source address of neighbour solicitations)");
  }
  if (FLAGS_mtu < 576 || FLAGS_mtu > 9600) {
    return Fail(absl::StrCat("--mtu: ", FLAGS_mtu, " outside [576, 9600]"));
  }
  node->mtu = static_cast<uint16_t>(FLAGS_mtu);
  node->tsc_hz = rte_get_tsc_hz();

  // --- the table region: wait for the control plane's first publish ---
  absl::StatusOr<lb::TableReader> tables = absl::NotFoundError("not yet attached");
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(FLAGS_wait_for_table_s);
  bool told = false;
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  while (true) {
    tables = lb::TableReader::Attach(table_path);
    if (tables.ok() || !absl::IsNotFound(tables.status())) break;
    if (std::chrono::steady_clock::now() > deadline || g_quit.load()) break;
    if (!told) {
      LOG(INFO) << "waiting up to " << FLAGS_wait_for_table_s << " s for " << table_path
                << " (start lb-controlplane)";
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!tables.ok()) {
    if (const int sig = g_signal.load(); sig != 0) {
      LOG(INFO) << "signal " << sig << " (" << strsignal(sig) << ") received while waiting";
    }
    return Fail(absl::StrCat("table region: ", tables.status().message()));
  }
  // The same verification as every later swap, through the gate the lcores
  // share, so that they do not verify this generation again.
  const uint64_t gen = tables->generation();
  if (gen != 0 && tables->gate().VerifyPublished(*tables) == lb::TableGate::Verdict::kRefused) {
    lb::SlotFault fault;
    const uint64_t refused = tables->gate().LastRefusal(&fault);
    return Fail(absl::StrCat(table_path, ": published generation ", refused,
                             " is not valid: ", lb::DescribeSlotFault(fault, refused)));
  }
  // From here on the lcores only read verdicts; the verifier thread gives them.
  tables->gate().UseVerifierThread();

  const uint16_t num_workers = static_cast<uint16_t>(rte_lcore_count());
  if (num_workers > lb::kMaxLcores) {
    return Fail(absl::StrCat(num_workers, " lcores; at most ", lb::kMaxLcores, " are supported"));
  }
  lb::StatsCapacities sc;
  sc.max_lcores = num_workers;
  sc.max_vips = tables->header().max_vips;
  sc.max_backends = tables->header().max_backends;
  auto stats = lb::StatsRegion::Create(stats_path, sc);
  if (!stats.ok()) return Fail(absl::StrCat("stats region: ", stats.status().message()));

  // --- ports ---
  const uint16_t num_ports = rte_eth_dev_count_avail();
  if (num_ports == 0) {
    return Fail("no ports: give DPDK a NIC or a vdev (e.g. --vdev=net_af_xdp0,iface=eth0)");
  }
  if (num_ports > lb::dp::kMaxPorts) {
    return Fail(absl::StrCat(num_ports, " ports; at most ", lb::dp::kMaxPorts));
  }
  lb::dp::PortOptions po;
  po.num_queues = num_workers;
  po.rx_desc = static_cast<uint16_t>(FLAGS_rx_desc);
  po.tx_desc = static_cast<uint16_t>(FLAGS_tx_desc);
  po.mbufs = FLAGS_mbufs;
  po.promiscuous = FLAGS_promiscuous;
  // The largest overhead: GUE over IPv6 (40 + 8 bytes).
  if (FLAGS_set_port_mtu) po.mtu = static_cast<uint16_t>(FLAGS_mtu + 48);
  po.max_ip_len = static_cast<uint16_t>(FLAGS_mtu);
  std::vector<lb::dp::PortInfo> ports;
  uint16_t pid;
  RTE_ETH_FOREACH_DEV(pid) {
    if (pid >= lb::dp::kMaxPorts) return Fail(absl::StrCat("port id ", pid, " too large"));
    auto pi = lb::dp::SetUpPort(pid, po);
    if (!pi.ok()) return Fail(std::string(pi.status().message()));
    node->port_mac[pid] = pi->mac;
    ports.push_back(*pi);
  }
  node->num_ports = static_cast<uint16_t>(ports.size());

  // --- workers: worker i polls RX queue i of every port, owns TX queue i ---
  lb::dp::WorkerOptions wo;
  wo.conn_capacity = FLAGS_conn_table_size;
  wo.conn.tcp_timeout_ms = FLAGS_tcp_timeout_s * 1000;
  wo.conn.tcp_closing_timeout_ms = FLAGS_tcp_closing_timeout_s * 1000;
  wo.conn.udp_timeout_ms = FLAGS_udp_timeout_s * 1000;
  wo.conn.tcp_syn_timeout_ms = FLAGS_tcp_syn_timeout_s * 1000;
  wo.new_flow_rate_limit = FLAGS_new_flow_rate_limit;
  wo.drain_us = FLAGS_drain_us;
  // The files that survive a restart: <prefix>.conn.<lcore> and <prefix>.sticky.
  const size_t slash = stats_path.rfind('/');
  const std::string file_prefix =
      FLAGS_conn_table_dir.empty()
          ? stats_path
          : FLAGS_conn_table_dir + "/" +
                (slash == std::string::npos ? stats_path : stats_path.substr(slash + 1));
  const std::string conn_prefix = FLAGS_conn_table_persist ? file_prefix : "";
  auto sticky = CreateStickyTable(FLAGS_sticky_table_persist ? file_prefix : "");
  if (!sticky.ok()) return Fail(absl::StrCat("--sticky_table_size: ", sticky.status().message()));
  node->sticky = sticky->get();
  // Worker i runs on lcore_of[i]: 0 on the main lcore, then the others in
  // EAL order (the launch below uses the same order).
  std::vector<unsigned> lcore_of{rte_get_main_lcore()};
  {
    unsigned l;
    RTE_LCORE_FOREACH_WORKER(l) lcore_of.push_back(l);
  }
  WarnCrossSocket(lcore_of, ports);
  std::vector<std::unique_ptr<lb::dp::Worker>> workers;
  std::vector<lb::dp::Worker*> peers;
  for (uint16_t i = 0; i < num_workers; ++i) {
    wo.index = i;
    wo.conn_file = conn_prefix.empty() ? "" : lb::ConnTableFileName(conn_prefix, i);
    CreateArg ca{&wo, &*tables, &*stats, node.get(), ports[0].pool};
    if (i == 0) {
      CreateWorkerOnLcore(&ca);
    } else if (rte_eal_remote_launch(CreateWorkerOnLcore, &ca, lcore_of[i]) != 0 ||
               rte_eal_wait_lcore(lcore_of[i]) != 0) {
      return Fail(absl::StrCat("worker ", i, ": cannot run its set-up on lcore ", lcore_of[i]));
    }
    auto& w = ca.result;
    if (!w.ok()) return Fail(absl::StrCat("worker ", i, ": ", w.status().message()));
    for (const auto& p : ports) {
      if (i < p.rx_queues) (*w)->AddRxQueue(p.port_id, i);
    }
    peers.push_back(w->get());
    workers.push_back(std::move(*w));
  }
  for (auto& w : workers) w->SetPeers(peers);
  std::vector<std::unique_ptr<const lb::ConnTable>> orphan_tables;  // outlive the lcores
  if (!conn_prefix.empty()) SetUpConnGrace(conn_prefix, workers, wo.conn, &orphan_tables);
  stats->control().num_lcores.store(num_workers, std::memory_order_release);

  LogStartup(table_path, gen, stats_path, num_workers, ports);
  lb::dp::RegisterTelemetry(&*stats, &*tables, num_workers);

  // --- run ---
  MonitorArg monitor_arg{&*tables, &*stats, num_workers, &ports};
  pthread_t monitor;
  if (int rc = rte_ctrl_thread_create(&monitor, "lb-monitor", nullptr, Monitor, &monitor_arg);
      rc != 0) {
    return Fail(absl::StrCat("monitor thread: ", std::strerror(-rc)));
  }
  pthread_t verifier;
  if (int rc = rte_ctrl_thread_create(&verifier, "lb-verify", nullptr, Verifier, &*tables);
      rc != 0) {
    return Fail(absl::StrCat("verifier thread: ", std::strerror(-rc)));
  }
  std::vector<LaunchArg> args(num_workers);
  unsigned lcore;
  uint16_t wi = 1;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    args[wi].worker = workers[wi].get();
    rte_eal_remote_launch(WorkerMain, &args[wi], lcore);
    ++wi;
  }
  LOG(INFO) << "running; SIGINT/SIGTERM stops";
  args[0].worker = workers[0].get();
  WorkerMain(&args[0]);
  rte_eal_mp_wait_lcore();
  pthread_join(monitor, nullptr);
  pthread_join(verifier, nullptr);
  if (const int sig = g_signal.load(); sig != 0) {
    LOG(INFO) << "signal " << sig << " (" << strsignal(sig) << ") received: stopping";
  }

  // --- shutdown: summary, ports (pcap writes its file on close), regions ---
  CopyPorts(monitor_arg);  // final device counters, before the ports close
  LOG(INFO) << "stopped: generation " << tables->generation() << " "
            << FormatTotals(SumCounters(*stats, num_workers)) << "; " << FormatPorts(monitor_arg);
  for (const auto& p : ports) lb::dp::StopPort(p.port_id);
  stats->control().writer_pid.store(0, std::memory_order_release);
  workers.clear();
  rte_eal_cleanup();
  LOG(INFO) << "ports stopped, stats region released; exiting";
  return 0;
}
