// l4_bench: cycles per packet of the real L4 fast path, Worker::ProcessBurst
// (dataplane/l4/worker.h), driven in-process over prebuilt mbufs: no driver,
// TX capture on, the output collected with TakeTx.
//
// Prints exactly one line per (flows, scenario), flows in {1024, 1048576,
// 8388608}, scenarios in this order:
//   scenario=<established|new|mixed|floor> flows=<n> cycles_per_packet=<x> mpps_per_core=<y>
// then lines starting with '#': per-scenario sanity counters (packets timed,
// forwarded, drops by reason, evictions), the per-burst cycles-per-packet
// quantiles (how noisy the run was), the TSC rate and the timer overhead.
//
// Scenarios (each on a fresh Worker whose connection table holds
// next_pow2(2 * n) entries, timeouts far beyond the run):
//   established  n flows warmed up (a SYN and an ACK each, untimed); timed packets pick
//                their flow uniformly at random among the n (a precomputed
//                sequence: at 1M and 8M flows nearly every lookup misses the
//                CPU caches, which is the realistic case).
//   new          n flows warmed up; every timed packet opens a flow never seen
//                before (table miss + Maglev pick + insert). After each burst
//                the new flows are erased again, untimed, so the table keeps
//                holding about n flows: "flows=n" is the occupancy a new flow
//                meets. (An insert that finds both of its buckets full still
//                evicts, about 0.2% of them at this load; the '#' lines count
//                those, and each one leaves the table a flow smaller.)
//   mixed        as new, but each timed packet is new with probability 1/4
//                and otherwise an established flow drawn as in "established"
//                (one whose entry was evicted is simply inserted again).
//   floor        this harness with no load-balancing work: a trivial burst
//                function swaps each packet's MACs and queues it, showing the
//                RX->TX floor that the figures above include.
//
// Method: per burst of 32, the mbufs are reset and filled (64-byte TCP/IPv4
// frames to the VIP, checksums right) OUTSIDE the timed region; only the
// burst function is timed, with rte_rdtsc_precise() before and after. The
// figure is the sum of the timed cycles over the timed packets. mpps_per_core
// is TSC Hz / cycles_per_packet / 1e6: derived from TSC ticks at this
// machine's TSC rate, not a wall-clock packet rate.
//
//   l4_bench [--flows=N[,N...]] [--packets=N] [--scenarios=a[,b...]]
// (defaults: the three flow counts, 2^21 timed packets, all scenarios). Run
// through `perf/run.sh l4` so it is a release build. For a profile, run
// under callgrind with --collect-atstart=no --toggle-collect='*TimedBurst*':
// that collects the timed bursts only.
//
// Errors: any set-up failure prints one line "l4_bench: <what>" to stderr and
// exits 1. Region files live in a mkdtemp directory under /dev/shm that is
// removed at exit (also on SIGINT/SIGTERM).
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "controlplane/config.h"
#include "controlplane/publisher.h"
#include "dataplane/l4/port.h"
#include "dataplane/l4/worker.h"
#include "lib/drop_reasons.h"
#include "lib/flow_hash.h"
#include "lib/packet.h"
#include "lib/shm_region.h"
#include "tests/fixtures/packet_builder.h"

namespace {

using lb::dp::kBurst;

constexpr uint32_t kDefaultFlowCounts[] = {1u << 10, 1u << 20, 8u << 20};
constexpr uint64_t kDefaultTimedPackets = 1u << 21;
constexpr uint16_t kPort = 0;
constexpr uint32_t kNowMs = 1000;          // the clock never moves: nothing expires
constexpr uint32_t kTimeoutMs = 1u << 30;  // ConnTable accepts < 2^31
constexpr uint32_t kRingBursts = 8;        // mbuf sets cycled through
constexpr uint32_t kNumBackends = 16;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpAck = 0x10;
constexpr uint32_t kNewFlowBit = 1u << 31;  // marks a "new flow" entry of a sequence
constexpr uint32_t kMixedNewPercent = 25;

// Frame layout: Ethernet 14 + IPv4 20 + TCP 20 + 10 bytes payload = 64.
constexpr size_t kIpOff = 14;
constexpr size_t kTcpOff = kIpOff + 20;
constexpr size_t kPayloadLen = 10;
constexpr size_t kFrameLen = kTcpOff + 20 + kPayloadLen;
constexpr size_t kTcpLen = 20 + kPayloadLen;

// Clients live in 100.64.0.0/10; flow i is address base + i/16, port
// 20000 + i%16, so up to 2^26 flows are distinct.
constexpr uint32_t kClientBase = 0x64400000;
constexpr const char kVip[] = "198.51.100.10";
constexpr const char kTunnelSource[] = "192.0.2.1";

enum class Scenario { kEstablished, kNew, kMixed, kFloor };
constexpr Scenario kAllScenarios[] = {Scenario::kEstablished, Scenario::kNew, Scenario::kMixed,
                                      Scenario::kFloor};

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kEstablished:
      return "established";
    case Scenario::kNew:
      return "new";
    case Scenario::kMixed:
      return "mixed";
    case Scenario::kFloor:
      return "floor";
  }
  return "?";
}

// --- clean-up of the region directory, also from a signal handler ---

char g_dir[64] = {};
char g_table_path[128] = {};
char g_stats_path[128] = {};

void RemoveRegions() {
  if (g_table_path[0] != '\0') unlink(g_table_path);
  if (g_stats_path[0] != '\0') unlink(g_stats_path);
  if (g_dir[0] != '\0') rmdir(g_dir);
}

void OnSignal(int sig) {
  RemoveRegions();  // unlink/rmdir are async-signal-safe
  _exit(128 + sig);
}

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "l4_bench: %s\n", msg.c_str());
  RemoveRegions();
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) Die(absl::StrCat(what, ": ", v.status().ToString()));
  return *std::move(v);
}

uint32_t NextPow2(uint64_t v) {
  uint64_t p = 16;
  while (p < v) p <<= 1;
  return static_cast<uint32_t>(p);
}

// --- the frames ---

// The template frame (flow 0, ACK) and the per-flow patch: source address,
// source port, TCP flags, both checksums.
class FrameMaker {
 public:
  // Written out by hand (the checksums are filled in by Write): the fixture
  // builder's std::vector code trips GCC 12 -Warray-bounds false positives
  // once inlined here.
  FrameMaker() {
    const lb::testing::Mac dst = lb::testing::MacOf("02:00:00:00:00:01");
    const lb::testing::Mac src = lb::testing::MacOf("02:00:00:00:00:aa");
    const lb::testing::Bytes vip = lb::testing::V4(kVip);
    uint8_t* d = tmpl_;
    std::memset(d, 0, kFrameLen);
    std::memcpy(d, dst.b, 6);
    std::memcpy(d + 6, src.b, 6);
    d[12] = 0x08;  // IPv4
    uint8_t* ip = d + kIpOff;
    ip[0] = 0x45;
    ip[3] = static_cast<uint8_t>(20 + kTcpLen);  // total length < 256
    ip[5] = 1;                                   // id
    ip[6] = 0x40;                                // DF
    ip[8] = 64;                                  // TTL
    ip[9] = 6;                                   // TCP
    std::memcpy(ip + 16, vip.data(), 4);
    uint8_t* tcp = d + kTcpOff;
    tcp[3] = 80;                   // dport
    tcp[6] = 0x03, tcp[7] = 0xe8;  // seq 1000
    tcp[12] = 5 << 4;              // data offset
    tcp[14] = tcp[15] = 0xff;      // window
    std::memset(tcp + 20, 0xab, kPayloadLen);
  }

  void Write(uint8_t* d, uint32_t flow, uint8_t tcp_flags) const {
    using lb::testing::Fold;
    using lb::testing::SumWords;
    std::memcpy(d, tmpl_, kFrameLen);
    const uint32_t src = kClientBase + (flow >> 4);
    const uint16_t sport = static_cast<uint16_t>(20000 + (flow & 15));
    d[kIpOff + 12] = static_cast<uint8_t>(src >> 24);
    d[kIpOff + 13] = static_cast<uint8_t>(src >> 16);
    d[kIpOff + 14] = static_cast<uint8_t>(src >> 8);
    d[kIpOff + 15] = static_cast<uint8_t>(src);
    d[kTcpOff + 0] = static_cast<uint8_t>(sport >> 8);
    d[kTcpOff + 1] = static_cast<uint8_t>(sport);
    d[kTcpOff + 13] = tcp_flags;
    d[kIpOff + 10] = d[kIpOff + 11] = 0;
    const uint16_t ipc = Fold(SumWords(d + kIpOff, 20));
    d[kIpOff + 10] = static_cast<uint8_t>(ipc >> 8);
    d[kIpOff + 11] = static_cast<uint8_t>(ipc);
    d[kTcpOff + 16] = d[kTcpOff + 17] = 0;
    uint32_t pseudo = SumWords(d + kIpOff + 12, 8) + 6 + static_cast<uint32_t>(kTcpLen);
    const uint16_t tc = Fold(SumWords(d + kTcpOff, kTcpLen, pseudo));
    d[kTcpOff + 16] = static_cast<uint8_t>(tc >> 8);
    d[kTcpOff + 17] = static_cast<uint8_t>(tc);
  }

 private:
  uint8_t tmpl_[kFrameLen];
};

void ResetMbuf(rte_mbuf* m) {
  m->data_off = RTE_PKTMBUF_HEADROOM;
  m->data_len = static_cast<uint16_t>(kFrameLen);
  m->pkt_len = static_cast<uint32_t>(kFrameLen);
  m->nb_segs = 1;
  m->next = nullptr;
  m->ol_flags = 0;
  m->port = kPort;
}

// --- the environment: EAL, regions with one published table, node state ---

struct Env {
  rte_mempool* pool = nullptr;
  std::unique_ptr<lb::TableReader> tables;
  std::unique_ptr<lb::StatsRegion> stats;
  std::unique_ptr<lb::dp::NodeState> node;
  uint64_t tsc_hz = 0;
};

std::string ConfigText() {
  std::string c = absl::StrCat("node { tunnel_source_ipv4: \"", kTunnelSource,
                               "\" }\n"
                               "tables { ring_size: 65537 }\n"
                               "pools {\n  name: \"web\"\n  algorithm: ALGORITHM_MAGLEV\n");
  for (uint32_t i = 1; i <= kNumBackends; ++i) {
    absl::StrAppend(&c, "  backends { address: \"10.1.0.", i, "\" port: 80 }\n");
  }
  absl::StrAppend(&c, "}\nvips { address: \"", kVip,
                  "\" protocol: PROTOCOL_TCP port: 80 pool: \"web\" }\n");
  return c;
}

void SetUpEnv(Env* env) {
  // DPDK 22.11 refuses --in-memory together with --no-huge ("--legacy-mem
  // is not compatible with --in-memory"); --no-shconf plus a per-process
  // file prefix gives the same: no shared config, no clash with other EAL
  // processes on this machine.
  const std::string prefix = absl::StrCat("--file-prefix=l4_bench_", getpid());
  const char* eal_args[] = {"l4_bench",    "--no-huge",      "-m",           "1024", "--no-pci",
                            "--no-shconf", "--no-telemetry", prefix.c_str(), "-l",   "0",
                            "--log-level", "lib.eal:error"};
  int eal_argc = static_cast<int>(sizeof(eal_args) / sizeof(eal_args[0]));
  if (rte_eal_init(eal_argc, const_cast<char**>(eal_args)) < 0) {
    Die(absl::StrCat("EAL init failed: ", rte_strerror(rte_errno)));
  }
  env->tsc_hz = rte_get_tsc_hz();
  env->pool =
      rte_pktmbuf_pool_create("l4_bench", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (env->pool == nullptr) Die(absl::StrCat("mbuf pool: ", rte_strerror(rte_errno)));

  std::snprintf(g_dir, sizeof(g_dir), "/dev/shm/l4_bench.XXXXXX");
  if (mkdtemp(g_dir) == nullptr) {
    g_dir[0] = '\0';
    Die("mkdtemp under /dev/shm failed");
  }
  std::snprintf(g_table_path, sizeof(g_table_path), "%s/tables", g_dir);
  std::snprintf(g_stats_path, sizeof(g_stats_path), "%s/stats", g_dir);

  lb::TableCapacities caps;
  auto config = Check(lb::ParseConfigText(ConfigText(), "l4_bench config"), "config");
  auto desired = Check(lb::ValidateConfig(config, caps, nullptr), "config");
  lb::PublisherOptions po;
  po.table_path = g_table_path;
  po.stats_path = g_stats_path;
  po.caps = caps;
  po.recreate_tables = true;
  auto publisher = Check(lb::Publisher::Open(po), "publisher");
  Check(publisher.Publish(desired), "publish");

  env->tables = std::make_unique<lb::TableReader>(
      Check(lb::TableReader::Attach(g_table_path), "table region"));
  lb::StatsCapacities sc;
  sc.max_lcores = 1;
  sc.max_vips = env->tables->header().max_vips;
  sc.max_backends = env->tables->header().max_backends;
  env->stats = std::make_unique<lb::StatsRegion>(
      Check(lb::StatsRegion::Create(g_stats_path, sc), "stats region"));

  env->node = std::make_unique<lb::dp::NodeState>();
  lb::dp::NodeState& n = *env->node;
  n.has_ipv4 = true;
  lb::testing::Bytes me = lb::testing::V4("192.0.2.2");
  std::memcpy(n.ipv4, me.data(), 4);
  n.mtu = 1500;
  n.num_ports = 1;
  lb::testing::Mac port_mac = lb::testing::MacOf("02:00:00:00:00:01");
  std::memcpy(n.port_mac[0].addr_bytes, port_mac.b, 6);
  lb::testing::Mac gw = lb::testing::MacOf("02:00:00:00:00:fe");
  n.gw4.configured = true;
  n.gw4.is_static = true;
  n.gw4.Set(gw.b, lb::MonotonicNs());
  n.tsc_hz = env->tsc_hz;
}

// --- the burst functions ---

// Kept out of line and named so that callgrind can collect exactly the timed
// bursts (--toggle-collect='*TimedBurst*').
__attribute__((noinline)) void TimedBurst(lb::dp::Worker* w, rte_mbuf** pkts, uint16_t n) {
  w->ProcessBurst(kPort, pkts, n);
}

// The floor: what any burst function must do at least in this harness (read
// and write each packet's first line, queue it for TX).
struct FloorTx {
  uint16_t count = 0;
  rte_mbuf* pkts[kBurst];
};

__attribute__((noinline)) void FloorBurst(FloorTx* tx, rte_mbuf** pkts, uint16_t n) {
  for (uint16_t i = 0; i < n; ++i) {
    auto* eth = rte_pktmbuf_mtod(pkts[i], rte_ether_hdr*);
    rte_ether_addr tmp = eth->dst_addr;
    eth->dst_addr = eth->src_addr;
    eth->src_addr = tmp;
    tx->pkts[tx->count++] = pkts[i];
  }
}

// --- one scenario ---

struct Counters {
  uint64_t timed_packets = 0;
  uint64_t timed_cycles = 0;
  std::vector<uint32_t> burst_cycles;  // one sample per timed burst, for the spread
  uint64_t new_packets = 0;            // timed packets that opened a flow
  uint64_t missing_tx = 0;             // packets not returned by TakeTx (dropped)
  uint64_t bad_output = 0;             // returned with an unexpected length
  uint64_t new_evicted_in_burst = 0;   // new flows evicted before their erase
  uint64_t warm_entries = 0;           // table size after warm-up (< flows if it evicted)
  uint64_t warm_evictions = 0;
  uint64_t forwarded = 0;  // lcore counter delta
  uint64_t drops[lb::kNumDropReasons] = {};
  uint64_t evictions = 0;  // since the table was created: warm-up included
  uint64_t conn_entries = 0;
  double wall_s = 0;
};

class Runner {
 public:
  Runner(Env* env, uint32_t flows) : env_(env), flows_(flows) {
    for (uint32_t i = 0; i < kRingBursts * kBurst; ++i) {
      ring_[i] = rte_pktmbuf_alloc(env_->pool);
      if (ring_[i] == nullptr) Die("mbuf pool exhausted");
    }
  }
  ~Runner() {
    for (rte_mbuf* m : ring_) rte_pktmbuf_free(m);
  }
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // New flows get ids from f on; the caller picks f beyond every warm flow.
  void SetFirstNewFlow(uint32_t f) { next_new_flow_ = f; }

  // `seq`: per timed packet, an established flow id in [0, flows) or
  // kNewFlowBit (a flow never seen before).
  Counters Run(Scenario s, const std::vector<uint32_t>& seq) {
    const auto start = std::chrono::steady_clock::now();
    Counters c;
    c.burst_cycles.reserve(seq.size() / kBurst);
    lb::LcoreStats& ls = env_->stats->Lcore(0);
    const uint64_t fwd0 = ls.forwarded.load();
    uint64_t drops0[lb::kNumDropReasons];
    for (int r = 0; r < lb::kNumDropReasons; ++r) drops0[r] = ls.drops[r].load();

    if (s == Scenario::kFloor) {
      RunFloor(seq, &c);
    } else {
      lb::dp::WorkerOptions wo;
      wo.index = 0;
      wo.conn_capacity = NextPow2(2ull * flows_);
      wo.conn.tcp_timeout_ms = kTimeoutMs;
      wo.conn.tcp_closing_timeout_ms = kTimeoutMs;
      wo.conn.udp_timeout_ms = kTimeoutMs;
      worker_ = Check(lb::dp::Worker::Create(wo, env_->tables.get(), env_->stats.get(),
                                             env_->node.get(), env_->pool),
                      "worker");
      worker_->SetCaptureTx(true);
      worker_->SetNowMs(kNowMs);
      worker_->GoOnline();
      if (worker_->generation() == 0) Die("worker did not attach to the published table");
      Warm();
      c.warm_entries = worker_->conn().size();
      c.warm_evictions = worker_->conn().evictions();
      RunTimed(seq, &c);
      c.evictions = worker_->conn().evictions();
      c.conn_entries = worker_->conn().size();
      worker_->GoOffline();
      worker_.reset();
    }
    c.forwarded = ls.forwarded.load() - fwd0;
    for (int r = 0; r < lb::kNumDropReasons; ++r) c.drops[r] = ls.drops[r].load() - drops0[r];
    c.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return c;
  }

 private:
  rte_mbuf** Burst(uint32_t b) { return &ring_[(b % kRingBursts) * kBurst]; }

  // Collects the burst's output and puts mbufs back into its ring slots.
  // Forwarded mbufs come back (prepended by the encapsulation; Prepare
  // resets them); a dropped one went back to the pool and is replaced.
  void Recycle(rte_mbuf** burst, uint16_t n, Counters* c) {
    rte_mbuf* out[lb::dp::kTxBufferCap];
    const uint16_t got = worker_->TakeTx(kPort, out, lb::dp::kTxBufferCap);
    for (uint16_t i = 0; i < got; ++i) {
      if (out[i]->pkt_len != kFrameLen + 20) ++c->bad_output;
      burst[i] = out[i];
    }
    for (uint16_t i = got; i < n; ++i) {
      burst[i] = rte_pktmbuf_alloc(env_->pool);
      if (burst[i] == nullptr) Die("mbuf pool exhausted");
    }
    if (got < n) c->missing_tx += n - got;
  }

  // Flows 0..flows-1 opened and confirmed, untimed: a SYN, then an ACK, so
  // that every warm flow is established (not a half-open entry that its
  // first timed packet would confirm).
  void Warm() {
    Counters ignored;
    uint32_t b = 0;
    for (uint32_t f = 0; f < flows_; f += kBurst, ++b) {
      rte_mbuf** burst = Burst(b);
      const uint16_t n = static_cast<uint16_t>(std::min<uint32_t>(kBurst, flows_ - f));
      for (uint8_t flags : {kTcpSyn, kTcpAck}) {
        for (uint16_t i = 0; i < n; ++i) Prepare(burst[i], f + i, flags);
        worker_->MaybeSwapTable();
        worker_->ProcessBurst(kPort, burst, n);
        Recycle(burst, n, &ignored);
      }
    }
    if (ignored.missing_tx != 0) {
      Die(absl::StrCat("warm-up dropped ", ignored.missing_tx, " packets"));
    }
  }

  void RunTimed(const std::vector<uint32_t>& seq, Counters* c) {
    lb::FlowKey new_keys[kBurst];
    uint64_t new_hashes[kBurst];
    uint32_t b = 0;
    for (size_t k = 0; k + kBurst <= seq.size(); k += kBurst, ++b) {
      rte_mbuf** burst = Burst(b);
      uint16_t num_new = 0;
      for (uint16_t i = 0; i < kBurst; ++i) {
        const uint32_t f = seq[k + i];
        if (f & kNewFlowBit) {
          Prepare(burst[i], next_new_flow_++, kTcpSyn);
          // The key and hash the worker will derive, to erase the flow later.
          lb::ParsedPacket p;
          lb::DropReason why;
          if (lb::ParsePacket(rte_pktmbuf_mtod(burst[i], const uint8_t*), kFrameLen, &p, &why) !=
              lb::ParseStatus::kOk) {
            Die("a benchmark frame does not parse");
          }
          new_keys[num_new] = p.key;
          new_hashes[num_new++] = lb::HashFlow(p.key);
        } else {
          Prepare(burst[i], f, kTcpAck);
        }
      }
      worker_->MaybeSwapTable();
      const uint64_t t0 = rte_rdtsc_precise();
      TimedBurst(worker_.get(), burst, kBurst);
      const uint64_t t1 = rte_rdtsc_precise();
      c->timed_cycles += t1 - t0;
      c->burst_cycles.push_back(static_cast<uint32_t>(std::min<uint64_t>(t1 - t0, UINT32_MAX)));
      c->timed_packets += kBurst;
      c->new_packets += num_new;
      Recycle(burst, kBurst, c);
      // Keep the table at `flows` entries (see "new" in the header comment).
      for (uint16_t i = 0; i < num_new; ++i) {
        lb::ConnValue v;
        const uint32_t e = worker_->conn().Lookup(new_keys[i], new_hashes[i], kNowMs, 0, &v);
        if (e == lb::ConnTable::kNoEntry) {
          // Evicted by a later insert of the same burst (both of its buckets
          // were full): already gone.
          ++c->new_evicted_in_burst;
          continue;
        }
        worker_->conn().Erase(e);
      }
    }
  }

  void RunFloor(const std::vector<uint32_t>& seq, Counters* c) {
    FloorTx tx;
    uint32_t b = 0;
    for (size_t k = 0; k + kBurst <= seq.size(); k += kBurst, ++b) {
      rte_mbuf** burst = Burst(b);
      for (uint16_t i = 0; i < kBurst; ++i) Prepare(burst[i], seq[k + i] & ~kNewFlowBit, kTcpAck);
      tx.count = 0;
      const uint64_t t0 = rte_rdtsc_precise();
      FloorBurst(&tx, burst, kBurst);
      const uint64_t t1 = rte_rdtsc_precise();
      c->timed_cycles += t1 - t0;
      c->burst_cycles.push_back(static_cast<uint32_t>(std::min<uint64_t>(t1 - t0, UINT32_MAX)));
      c->timed_packets += kBurst;
      if (tx.count != kBurst) c->missing_tx += kBurst - tx.count;
      for (uint16_t i = 0; i < tx.count; ++i) {
        if (tx.pkts[i]->pkt_len != kFrameLen) ++c->bad_output;
        burst[i] = tx.pkts[i];
      }
    }
  }

  void Prepare(rte_mbuf* m, uint32_t flow, uint8_t tcp_flags) {
    ResetMbuf(m);
    frames_.Write(rte_pktmbuf_mtod(m, uint8_t*), flow, tcp_flags);
  }

  Env* env_;
  uint32_t flows_;
  uint32_t next_new_flow_ = 0;
  FrameMaker frames_;
  std::unique_ptr<lb::dp::Worker> worker_;
  rte_mbuf* ring_[kRingBursts * kBurst];
};

// Cycles per packet of the burst at quantile q (0..1) of the burst samples.
double BurstQuantile(std::vector<uint32_t> v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / kBurst;
}

std::vector<uint32_t> MakeSequence(Scenario s, uint32_t flows, uint64_t packets, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint32_t> pick(0, flows - 1);
  std::uniform_int_distribution<uint32_t> percent(0, 99);
  std::vector<uint32_t> seq(packets);
  for (uint32_t& v : seq) {
    switch (s) {
      case Scenario::kNew:
        v = kNewFlowBit;
        break;
      case Scenario::kMixed:
        v = percent(rng) < kMixedNewPercent ? kNewFlowBit : pick(rng);
        break;
      case Scenario::kEstablished:
      case Scenario::kFloor:
        v = pick(rng);
        break;
    }
  }
  return seq;
}

// Cycles rte_rdtsc_precise() pairs cost around an empty region (median of
// many); included in every figure, floor too.
uint64_t TimerOverhead() {
  std::vector<uint64_t> d(10001);
  for (uint64_t& x : d) {
    const uint64_t t0 = rte_rdtsc_precise();
    const uint64_t t1 = rte_rdtsc_precise();
    x = t1 - t0;
  }
  std::nth_element(d.begin(), d.begin() + d.size() / 2, d.end());
  return d[d.size() / 2];
}

struct Options {
  std::vector<uint32_t> flows;
  uint64_t packets = kDefaultTimedPackets;
  std::vector<Scenario> scenarios;
};

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      const size_t n = std::strlen(name);
      return a.compare(0, n, name) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--flows=")) {
      for (absl::string_view f : absl::StrSplit(v, ',')) {
        uint32_t n = 0;
        if (!absl::SimpleAtoi(f, &n) || n == 0 || n > (1u << 26)) {
          Die(absl::StrCat("--flows: \"", f, "\" is not a count in [1, 2^26]"));
        }
        o.flows.push_back(n);
      }
    } else if (const char* v2 = value("--packets=")) {
      if (!absl::SimpleAtoi(v2, &o.packets) || o.packets < kBurst) {
        Die(absl::StrCat("--packets: \"", v2, "\" is not a count >= ", kBurst));
      }
    } else if (const char* v3 = value("--scenarios=")) {
      for (absl::string_view s : absl::StrSplit(v3, ',')) {
        bool found = false;
        for (Scenario sc : kAllScenarios) {
          if (s == ScenarioName(sc)) {
            o.scenarios.push_back(sc);
            found = true;
          }
        }
        if (!found) Die(absl::StrCat("--scenarios: unknown scenario \"", s, "\""));
      }
    } else {
      Die(absl::StrCat("unknown argument \"", a,
                       "\" (usage: l4_bench [--flows=N,...] [--packets=N] [--scenarios=a,...])"));
    }
  }
  if (o.flows.empty()) o.flows.assign(std::begin(kDefaultFlowCounts), std::end(kDefaultFlowCounts));
  for (uint32_t f : o.flows) {
    // Warm flows and new flows together must stay below 2^26 (distinct keys).
    if (f + o.packets > (1u << 26)) Die("--flows plus --packets must stay below 2^26");
  }
  if (o.scenarios.empty()) {
    o.scenarios.assign(std::begin(kAllScenarios), std::end(kAllScenarios));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseArgs(argc, argv);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  const auto start = std::chrono::steady_clock::now();
  Env env;
  SetUpEnv(&env);
  const uint64_t overhead = TimerOverhead();

  std::vector<std::string> notes;
  for (uint32_t flows : opt.flows) {
    Runner runner(&env, flows);
    for (Scenario s : opt.scenarios) {
      const std::vector<uint32_t> seq =
          MakeSequence(s, flows, opt.packets / kBurst * kBurst, 0x5EED0000u + flows);
      // New flows are numbered after the warm ones: never seen by this table.
      runner.SetFirstNewFlow(flows);
      const Counters c = runner.Run(s, seq);
      const double cpp = static_cast<double>(c.timed_cycles) / static_cast<double>(c.timed_packets);
      std::printf("scenario=%s flows=%" PRIu32 " cycles_per_packet=%.1f mpps_per_core=%.2f\n",
                  ScenarioName(s), flows, cpp, static_cast<double>(env.tsc_hz) / cpp / 1e6);
      std::fflush(stdout);

      uint64_t total_drops = 0;
      std::string drops;
      for (int r = 0; r < lb::kNumDropReasons; ++r) {
        if (c.drops[r] == 0) continue;
        total_drops += c.drops[r];
        absl::StrAppend(&drops, " drop_", lb::DropReasonName(static_cast<lb::DropReason>(r)), "=",
                        c.drops[r]);
      }
      std::string note = absl::StrCat("# scenario=", ScenarioName(s), " flows=", flows,
                                      " timed_packets=", c.timed_packets);
      if (s != Scenario::kFloor) {
        absl::StrAppend(&note, " new_flow_packets=", c.new_packets, " forwarded=", c.forwarded,
                        " conn_capacity=", NextPow2(2ull * flows), " warm_entries=", c.warm_entries,
                        " warm_evictions=", c.warm_evictions,
                        " conn_entries_at_end=", c.conn_entries, " conn_evictions=", c.evictions,
                        " new_flows_evicted_within_burst=", c.new_evicted_in_burst);
      }
      absl::StrAppend(&note, absl::StrFormat(" burst_cpp_p50=%.1f p90=%.1f p99=%.1f",
                                             BurstQuantile(c.burst_cycles, 0.5),
                                             BurstQuantile(c.burst_cycles, 0.9),
                                             BurstQuantile(c.burst_cycles, 0.99)));
      absl::StrAppend(&note, " not_returned=", c.missing_tx, " bad_output=", c.bad_output,
                      " drops=", total_drops, drops, absl::StrFormat(" wall_s=%.1f", c.wall_s));
      notes.push_back(std::move(note));
    }
  }
  for (const std::string& n : notes) std::printf("%s\n", n.c_str());
  std::printf("# tsc_hz=%" PRIu64 " timer_overhead_cycles_per_burst=%" PRIu64
              " (included; /32 per packet) burst=%u frame_bytes=%zu backends=%u ring=65537 "
              "total_wall_s=%.1f\n",
              env.tsc_hz, overhead, kBurst, kFrameLen, kNumBackends,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  RemoveRegions();
  lb::dp::EalCleanup();
  return 0;
}
