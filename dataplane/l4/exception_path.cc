#include "dataplane/l4/exception_path.h"

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace lb::dp {
namespace {

constexpr char kVdevName[] = "net_tap_lbexc";
constexpr unsigned kRingSize = 1024;
constexpr uint16_t kTapDesc = 256;
constexpr uint16_t kBurst = 32;
// The service thread sleeps this long when both directions were idle: BGP,
// BFD (100 ms intervals and up), ARP and ssh do not notice 200 us.
constexpr auto kIdleSleep = std::chrono::microseconds(200);

void FreeRing(rte_ring* r) {
  if (r == nullptr) return;
  void* m;
  while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  rte_ring_free(r);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExceptionPath>> ExceptionPath::Create(const std::string& iface,
                                                                     const rte_ether_addr& mac,
                                                                     rte_mempool* pool,
                                                                     uint16_t egress_port,
                                                                     uint32_t pps_per_lcore) {
  if (iface.empty() || iface.size() >= 16 || iface.find_first_of(",= /") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--exception_path: '", iface, "' is not an interface name (1-15 characters, no ',= /')"));
  }
  const std::string who = absl::StrCat("--exception_path ", iface);
  std::unique_ptr<ExceptionPath> x(new ExceptionPath());
  x->iface_ = iface;
  char mac_s[RTE_ETHER_ADDR_FMT_SIZE];
  rte_ether_format_addr(mac_s, sizeof(mac_s), &mac);
  const std::string args = absl::StrCat("iface=", iface, ",mac=", mac_s);
  if (int rc = rte_eal_hotplug_add("vdev", kVdevName, args.c_str()); rc != 0) {
    return absl::UnavailableError(absl::StrCat(who, ": cannot create the net_tap port (", args,
                                               "): ", rc,
                                               " (needs /dev/net/tun and CAP_NET_ADMIN)"));
  }
  if (rte_eth_dev_get_port_by_name(kVdevName, &x->tap_port_) != 0) {
    return absl::InternalError(absl::StrCat(who, ": net_tap port not found after creation"));
  }
  rte_eth_conf conf{};
  int rc = rte_eth_dev_configure(x->tap_port_, 1, 1, &conf);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": configure: ", rc));
  const int socket = rte_eth_dev_socket_id(x->tap_port_);
  rc = rte_eth_rx_queue_setup(x->tap_port_, 0, kTapDesc, socket, nullptr, pool);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": RX queue: ", rc));
  rc = rte_eth_tx_queue_setup(x->tap_port_, 0, kTapDesc, socket, nullptr);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": TX queue: ", rc));
  rc = rte_eth_dev_start(x->tap_port_);
  if (rc != 0) return absl::UnavailableError(absl::StrCat(who, ": start: ", rc));
  x->port_started_ = true;
  x->q_.to_kernel = rte_ring_create("lb_exc_to_kernel", kRingSize, socket, RING_F_SC_DEQ);
  x->q_.from_kernel =
      rte_ring_create("lb_exc_from_kernel", kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (x->q_.to_kernel == nullptr || x->q_.from_kernel == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(who, ": rings: ", rte_strerror(rte_errno)));
  }
  x->q_.egress_port = egress_port;
  x->q_.pps_per_lcore = pps_per_lcore;
  LOG(INFO) << "exception path: kernel interface " << iface << " (net_tap port " << x->tap_port_
            << ", mac " << mac_s << "), kernel frames leave by port " << egress_port << ", at most "
            << pps_per_lcore << " packets/s per lcore to the kernel";
  return x;
}

ExceptionPath::~ExceptionPath() {
  Stop();
  if (port_started_) {
    rte_eth_dev_stop(tap_port_);
    rte_eth_dev_close(tap_port_);
    rte_eal_hotplug_remove("vdev", kVdevName);  // the kernel interface goes with it
  }
  FreeRing(q_.to_kernel);
  FreeRing(q_.from_kernel);
}

void ExceptionPath::Start() {
  quit_.store(false);
  thread_ = std::thread([this] { Serve(); });
}

void ExceptionPath::Stop() {
  quit_.store(true);
  if (thread_.joinable()) thread_.join();
}

// The service thread: kernel -> ring for worker 0, ring from the lcores ->
// kernel. The only caller of the tap's rx_burst / tx_burst (queue 0 of each).
void ExceptionPath::Serve() {
  rte_mbuf* b[kBurst];
  while (!quit_.load(std::memory_order_relaxed)) {
    bool busy = false;
    const uint16_t n = rte_eth_rx_burst(tap_port_, 0, b, kBurst);
    if (n != 0) {
      busy = true;
      const unsigned k =
          rte_ring_sp_enqueue_burst(q_.from_kernel, reinterpret_cast<void**>(b), n, nullptr);
      for (unsigned i = k; i < n; ++i) rte_pktmbuf_free(b[i]);
      if (k < n) ring_drops_.fetch_add(n - k, std::memory_order_relaxed);
    }
    const unsigned m =
        rte_ring_sc_dequeue_burst(q_.to_kernel, reinterpret_cast<void**>(b), kBurst, nullptr);
    if (m != 0) {
      busy = true;
      const uint16_t sent = rte_eth_tx_burst(tap_port_, 0, b, static_cast<uint16_t>(m));
      for (unsigned i = sent; i < m; ++i) rte_pktmbuf_free(b[i]);
      if (sent < m) ring_drops_.fetch_add(m - sent, std::memory_order_relaxed);
    }
    if (!busy) std::this_thread::sleep_for(kIdleSleep);
  }
}

}  // namespace lb::dp
