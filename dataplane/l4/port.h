// Port bring-up for lb-dataplane: one RX and one TX queue per worker on every
// port DPDK gives us (PCI NICs, net_af_xdp, net_af_packet, net_pcap, ...),
// RSS across the RX queues when there is more than one, and a mempool per
// port on the port's NUMA socket whose mbufs hold the largest frame the
// port's MTU (or --mtu, the larger) admits in one segment (jumbo frames: MTU 9000 gives ~9.2 KiB
// mbufs; the fast path parses and encapsulates the first segment only).
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

#include "lib/table_format.h"

namespace lb::dp {

struct PortOptions {
  uint16_t num_queues = 1;  // RX = TX queues = workers
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  uint32_t mbufs = 0;  // 0 = computed from the descriptor counts
  uint16_t mtu = 0;    // 0 = leave the port's MTU alone
  // The largest IP packet the dataplane must receive whole (--mtu): mbufs
  // hold it even when the driver reports a smaller MTU (af_packet says 1500
  // whatever the interface's; its frames are as large as framesz allows).
  uint16_t max_ip_len = 1500;
  bool promiscuous = false;
};

struct PortInfo {
  uint16_t port_id = 0;
  std::string name;
  rte_ether_addr mac{};
  uint16_t rx_queues = 0;  // may be fewer than asked when the device has fewer
  rte_mempool* pool = nullptr;
  uint16_t mtu = 0;        // the port's MTU once started
  uint16_t data_room = 0;  // bytes per mbuf after the headroom
};

// Mbuf data room (headroom included, what rte_pktmbuf_pool_create takes) for
// a port whose MTU is `mtu`: the DPDK default (2 KiB + headroom) unless a
// frame of that MTU (Ethernet, two VLAN tags, CRC) would not fit.
uint16_t MbufDataRoomFor(uint16_t mtu);

absl::StatusOr<PortInfo> SetUpPort(uint16_t port_id, const PortOptions& opt);
void StopPort(uint16_t port_id);

// Copies rte_eth_stats_get of `port_id` into *out (the stats region's
// per-port area; lib/table_format.h PortCounters). Control threads only
// (the monitor): it may take the device's lock or read registers. Returns
// false, leaving *out untouched, when the device does not answer.
bool CopyPortCounters(uint16_t port_id, PortCounters* out);

// rte_eal_cleanup, then, in a primary process, the EAL runtime directory
// (/var/run/dpdk/<file-prefix>: config, fbarray files, sockets), which DPDK
// leaves behind: about 3 MB per file prefix, and every test run uses new
// prefixes. Call it once, at exit, instead of rte_eal_cleanup.
void EalCleanup();

// Registers (atexit) the removal of this primary process's EAL runtime
// directory, for processes that return from main without EalCleanup.
void RemoveEalRuntimeDirAtExit();

// Removes this primary process's EAL runtime directory now, for a process
// started with --no-shconf (the EAL keeps nothing in it then) that may never
// reach EalCleanup: a libFuzzer target _Exits on a crash, past any atexit
// handler, and would leave the directory behind.
void RemoveEalRuntimeDirNow();

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_PORT_H_
