// Port bring-up for lb-dataplane: one RX and one TX queue per worker on every
// port DPDK gives us (PCI NICs, net_af_xdp, net_af_packet, net_pcap, ...),
// RSS across the RX queues when there is more than one, and a mempool per
// port on the port's NUMA socket.
//
// Errors: absl::Status naming the port and what it refused (queue counts,
// descriptor counts, start). Called once from the main lcore at start-up.
#ifndef LB_DATAPLANE_L4_PORT_H_
#define LB_DATAPLANE_L4_PORT_H_

#include <rte_ether.h>
#include <rte_mempool.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace lb::dp {

struct PortOptions {
  uint16_t num_queues = 1;  // RX = TX queues = workers
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  uint32_t mbufs = 0;  // 0 = computed from the descriptor counts
  uint16_t mtu = 0;    // 0 = leave the port's MTU alone
  bool promiscuous = false;
};

struct PortInfo {
  uint16_t port_id = 0;
  std::string name;
  rte_ether_addr mac{};
  uint16_t rx_queues = 0;  // may be fewer than asked when the device has fewer
  rte_mempool* pool = nullptr;
};

absl::StatusOr<PortInfo> SetUpPort(uint16_t port_id, const PortOptions& opt);
void StopPort(uint16_t port_id);

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_PORT_H_
