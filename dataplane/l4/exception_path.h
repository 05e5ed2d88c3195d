// The exception path (--exception_path=IFACE): with DPDK owning the NIC, the
// kernel of the node still needs its own traffic (BGP and BFD to the router,
// ARP for the kernel's addresses, ICMP, ssh). lb-dataplane creates a DPDK
// net_tap port whose kernel side is the interface IFACE (same MAC as the
// first data port) in the process's network namespace; the operator puts the
// node's kernel addresses on it.
//
//   data port --RX--> worker (not a VIP, not answered by the dataplane)
//       --to_kernel ring (MP/SC)--> service thread --tx_burst--> tap --> kernel
//   kernel --> tap --rx_burst--> service thread --from_kernel ring (SP/SC)-->
//       worker 0 (drain period) --> TX queue 0 of the first data port
//
// Why net_tap (and not virtio_user + vhost-net): the machine has /dev/net/tun
// but no /dev/vhost-net, and net_tap needs nothing else; its per-packet cost
// (one read/write system call) is paid by the service thread, a DPDK control
// thread, never by an lcore. Workers only enqueue to a ring (and worker 0
// dequeues at most a burst per drain period), so the VIP fast path pays
// nothing: the exception path is reached only where the packet used to be
// dropped (not_for_us, arp_ignored, icmp_ignored, icmp_unmatched).
//
// Counters: LcoreStats::to_kernel (by the lcore that enqueued),
// from_kernel (worker 0, what it queued for TX); drops when the ring is full
// or the lcore's --exception_path_pps budget is spent: exception_full.
#ifndef LB_DATAPLANE_L4_EXCEPTION_PATH_H_
#define LB_DATAPLANE_L4_EXCEPTION_PATH_H_

#include <rte_ether.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace lb::dp {

// What a Worker sees of the exception path (worker.h): two rings and the
// data port kernel frames leave by. Plain pointers; owned by ExceptionPath.
struct ExceptionQueues {
  rte_ring* to_kernel = nullptr;    // MP/SC: lcores -> service thread
  rte_ring* from_kernel = nullptr;  // SP/SC: service thread -> worker 0
  uint16_t egress_port = 0;         // data port for kernel frames (worker 0's TX queue 0)
  uint32_t pps_per_lcore = 0;       // packets per second an lcore may hand over; 0 = no limit
};

class ExceptionPath {
 public:
  // Creates the tap port `iface` (net_tap vdev, kernel MAC `mac`), its rings
  // and starts it; RX on `pool` (the data port's, so worker 0 transmits
  // mbufs of one pool). Errors name the interface and what failed.
  static absl::StatusOr<std::unique_ptr<ExceptionPath>> Create(const std::string& iface,
                                                               const rte_ether_addr& mac,
                                                               rte_mempool* pool,
                                                               uint16_t egress_port,
                                                               uint32_t pps_per_lcore);
  ~ExceptionPath();

  const ExceptionQueues* queues() const { return &q_; }
  uint16_t tap_port() const { return tap_port_; }
  // Starts / stops the service thread (control thread, not an lcore).
  void Start();
  void Stop();
  // Frames the ring could not take, in either direction (service thread).
  uint64_t ring_drops() const { return ring_drops_.load(std::memory_order_relaxed); }

 private:
  ExceptionPath() = default;
  void Serve();

  ExceptionQueues q_;
  uint16_t tap_port_ = 0;
  bool port_started_ = false;
  std::string iface_;
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> ring_drops_{0};
  std::thread thread_;
};

}  // namespace lb::dp

#endif  // LB_DATAPLANE_L4_EXCEPTION_PATH_H_
