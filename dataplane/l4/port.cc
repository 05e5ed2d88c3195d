#include "dataplane/l4/port.h"

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "lib/shm_region.h"

namespace lb::dp {

uint16_t MbufDataRoomFor(uint16_t mtu) {
  const uint32_t frame = uint32_t{mtu} + RTE_ETHER_HDR_LEN + 2 * RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN;
  const uint32_t room = RTE_PKTMBUF_HEADROOM + frame;
  // Round up to 1 KiB: drivers with frame rings (af_packet: blocks of whole
  // frames, a multiple of the page size) need a frame size that divides a
  // block, e.g. 9,216, and an mbuf at least that large.
  const uint32_t rounded = (room + 1023) & ~uint32_t{1023};
  return static_cast<uint16_t>(std::max<uint32_t>(RTE_MBUF_DEFAULT_BUF_SIZE, rounded));
}

namespace {

// Queue and descriptor counts as the device accepted them.
struct PortGeometry {
  uint16_t nrx = 0;
  uint16_t ntx = 0;
  uint16_t rxd = 0;
  uint16_t txd = 0;
};

// rte_eth_dev_configure (RSS over the RX queues, fast-free TX), the MTU if
// asked, and the descriptor counts the device adjusts.
absl::StatusOr<PortGeometry> ConfigurePort(uint16_t port_id, const PortOptions& opt,
                                           const std::string& who) {
  rte_eth_dev_info dev;
  int rc = rte_eth_dev_info_get(port_id, &dev);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": no device info: ", rc));

  // Every worker needs its own TX queue (shared-nothing TX). RX queues beyond
  // what the device has are simply not polled by the extra workers.
  if (dev.max_tx_queues < opt.num_queues) {
    return absl::InvalidArgumentError(absl::StrCat(
        who, ": has ", dev.max_tx_queues, " TX queues but ", opt.num_queues,
        " workers need one each (use fewer lcores, or one vdev per queue for af_xdp)"));
  }
  PortGeometry g;
  g.nrx = std::min<uint16_t>(opt.num_queues, dev.max_rx_queues);
  g.ntx = opt.num_queues;

  rte_eth_conf conf{};
  if (g.nrx > 1) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = nullptr;  // the driver's default key
    conf.rx_adv_conf.rss_conf.rss_hf =
        (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & dev.flow_type_rss_offloads;
  }
  if (dev.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) {
    conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
  }
  rc = rte_eth_dev_configure(port_id, g.nrx, g.ntx, &conf);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": configure with ", g.nrx, " RX / ", g.ntx, " TX queues failed: ", rc));
  }
  if (opt.mtu != 0) {
    rc = rte_eth_dev_set_mtu(port_id, opt.mtu);
    if (rc != 0) {
      return absl::InvalidArgumentError(absl::StrCat(who, ": MTU ", opt.mtu, " refused: ", rc));
    }
  }
  g.rxd = opt.rx_desc;
  g.txd = opt.tx_desc;
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &g.rxd, &g.txd);
  if (rc != 0) return absl::InvalidArgumentError(absl::StrCat(who, ": descriptor counts: ", rc));
  return g;
}

// The port's mbuf pool on its socket; fills info->pool, mtu and data_room.
absl::Status CreatePortPool(uint16_t port_id, const PortOptions& opt, const PortGeometry& g,
                            const std::string& who, PortInfo* info) {
  const int socket = rte_eth_dev_socket_id(port_id);
  uint32_t mbufs = opt.mbufs;
  if (mbufs == 0) {
    // RX rings full + TX rings full + per-lcore caches + in-flight bursts.
    mbufs = static_cast<uint32_t>(g.nrx) * g.rxd + static_cast<uint32_t>(g.ntx) * g.txd +
            static_cast<uint32_t>(g.ntx) * (256 + 2 * 64) + 4096;
  }
  // A frame larger than an mbuf arrives chained (pcap), truncated or dropped
  // (af_packet), depending on the driver: size mbufs for the port's MTU.
  uint16_t mtu = 0;
  const int rc = rte_eth_dev_get_mtu(port_id, &mtu);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": cannot read its MTU: ", rc));
  const uint16_t data_room = MbufDataRoomFor(std::max(mtu, opt.max_ip_len));
  const std::string pool_name = absl::StrCat("mbuf_p", port_id);
  info->pool = rte_pktmbuf_pool_create(pool_name.c_str(), mbufs, 256, 0, data_room,
                                       socket < 0 ? SOCKET_ID_ANY : socket);
  if (info->pool == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        who, ": cannot allocate ", mbufs, " mbufs of ", data_room,
        " bytes: ", rte_strerror(rte_errno), " (more hugepages, or a larger -m with --no-huge)"));
  }
  info->mtu = mtu;
  info->data_room = static_cast<uint16_t>(data_room - RTE_PKTMBUF_HEADROOM);
  return absl::OkStatus();
}

// Every RX queue on `pool`, every TX queue, then start.
absl::Status StartQueues(uint16_t port_id, const PortGeometry& g, rte_mempool* pool,
                         const std::string& who) {
  const int socket = rte_eth_dev_socket_id(port_id);
  for (uint16_t q = 0; q < g.nrx; ++q) {
    const int rc = rte_eth_rx_queue_setup(port_id, q, g.rxd, socket, nullptr, pool);
    if (rc != 0) return absl::InvalidArgumentError(absl::StrCat(who, ": RX queue ", q, ": ", rc));
  }
  for (uint16_t q = 0; q < g.ntx; ++q) {
    const int rc = rte_eth_tx_queue_setup(port_id, q, g.txd, socket, nullptr);
    if (rc != 0) return absl::InvalidArgumentError(absl::StrCat(who, ": TX queue ", q, ": ", rc));
  }
  const int rc = rte_eth_dev_start(port_id);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": start failed: ", rc));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PortInfo> SetUpPort(uint16_t port_id, const PortOptions& opt) {
  PortInfo info;
  info.port_id = port_id;
  char name[RTE_ETH_NAME_MAX_LEN];
  if (rte_eth_dev_get_name_by_port(port_id, name) == 0) info.name = name;
  const std::string who = absl::StrCat("port ", port_id, " (", info.name, ")");

  absl::StatusOr<PortGeometry> g = ConfigurePort(port_id, opt, who);
  if (!g.ok()) return g.status();
  if (absl::Status s = CreatePortPool(port_id, opt, *g, who, &info); !s.ok()) return s;
  if (absl::Status s = StartQueues(port_id, *g, info.pool, who); !s.ok()) return s;
  if (opt.promiscuous) rte_eth_promiscuous_enable(port_id);
  rte_eth_macaddr_get(port_id, &info.mac);
  info.rx_queues = g->nrx;
  return info;
}

void StopPort(uint16_t port_id) {
  rte_eth_dev_stop(port_id);
  rte_eth_dev_close(port_id);
}

}  // namespace lb::dp

namespace lb::dp {

bool CopyPortCounters(uint16_t port_id, PortCounters* out) {
  rte_eth_stats st;
  if (rte_eth_stats_get(port_id, &st) != 0) return false;
  constexpr auto kRelaxed = std::memory_order_relaxed;
  out->port_id = port_id;
  out->rx_packets.store(st.ipackets, kRelaxed);
  out->tx_packets.store(st.opackets, kRelaxed);
  out->rx_bytes.store(st.ibytes, kRelaxed);
  out->tx_bytes.store(st.obytes, kRelaxed);
  out->rx_missed.store(st.imissed, kRelaxed);
  out->rx_errors.store(st.ierrors, kRelaxed);
  out->tx_errors.store(st.oerrors, kRelaxed);
  out->rx_nombuf.store(st.rx_nombuf, kRelaxed);
  static_assert(kPortStatQueues <= RTE_ETHDEV_QUEUE_STAT_CNTRS, "per-queue counters");
  for (uint32_t q = 0; q < kPortStatQueues; ++q) {
    out->queue_rx_packets[q].store(st.q_ipackets[q], kRelaxed);
    out->queue_tx_packets[q].store(st.q_opackets[q], kRelaxed);
  }
  out->updated_ns.store(MonotonicNs(), kRelaxed);
  // Release: a reader that sees in_use sees port_id.
  out->in_use.store(1, std::memory_order_release);
  return true;
}

namespace {

// The runtime directory of a primary process ("" otherwise): a secondary
// shares its primary's and must leave it.
std::string PrimaryRuntimeDir() {
  if (rte_eal_process_type() != RTE_PROC_PRIMARY) return "";
  const char* dir = rte_eal_get_runtime_dir();
  return dir == nullptr ? "" : dir;
}

void RemoveDir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;  // best effort: nothing to report at exit
  std::filesystem::remove_all(dir, ec);
}

}  // namespace

void EalCleanup() {
  const std::string dir = PrimaryRuntimeDir();
  rte_eal_cleanup();
  RemoveDir(dir);
}

void RemoveEalRuntimeDirAtExit() {
  static std::string dir;
  dir = PrimaryRuntimeDir();
  std::atexit([] { RemoveDir(dir); });
}

void RemoveEalRuntimeDirNow() { RemoveDir(PrimaryRuntimeDir()); }

}  // namespace lb::dp
