// NUMA placement checks for lb-dataplane's start-up: which lcore polls a
// port attached to another socket (every packet then crosses the
// interconnect twice: the NIC's DMA and the lcore's reads).
//
// Pure functions over socket ids, so they run in unit tests with fake ids on
// a one-node machine; dataplane/l4/main.cc feeds them rte_lcore_to_socket_id
// and rte_eth_dev_socket_id. A negative socket id means unknown (DPDK's
// SOCKET_ID_ANY, e.g. a vdev): no warning is possible then.
//
// Threads: any.
#ifndef LB_LIB_NUMA_H_
#define LB_LIB_NUMA_H_

#include <cstdint>
#include <string>
#include <vector>

namespace lb {

// One lcore polling one port.
struct LcorePortPoll {
  uint32_t worker = 0;  // worker index (its RX/TX queue)
  uint32_t lcore = 0;   // DPDK lcore id
  int lcore_socket = -1;
  uint16_t port = 0;
  int port_socket = -1;
};

// One line per pair whose sockets are both known and differ, in input order:
// "worker 1 (lcore 3, socket 1) polls port 0 on socket 0: ...".
std::vector<std::string> CrossSocketPolls(const std::vector<LcorePortPoll>& polls);

}  // namespace lb

#endif  // LB_LIB_NUMA_H_
