// Fuzz target: the real lcore burst function, lb::dp::Worker::ProcessBurst,
// over a small fixed table, in-process without a NIC: the Dataplane of the
// packet fixtures (tests/fixtures/fixture_harness.h), opened once with one
// worker and one published config (hash, round-robin, all-ports, fragment-
// tolerant and empty-pool VIPs over IPv4 and IPv6).
//
// Input: up to kBurst frames, each a 2-byte big-endian length (taken modulo
// kMaxFrame + 1) followed by that many bytes (fewer at the end of the input).
// All frames go to the worker as one burst. Besides crashes and sanitizer
// reports, the harness checks every mbuf comes back (sent or freed) and the
// TX capture is drained; any such failure aborts.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/l4/port.h"
#include "dataplane/l4/worker.h"
#include "tests/fixtures/fixture_harness.h"

namespace {

constexpr size_t kMaxFrame = 1600;  // fits one mbuf's data room

const char* const kConfig = R"(
node { tunnel_source_ipv4: "192.0.2.1" tunnel_source_ipv6: "2001:db8:ffff::1" }
tables { ring_size: 251 }
pools { name: "one" backends { address: "10.1.0.1" port: 80 } }
pools { name: "three"
  backends { address: "10.1.0.1" port: 80 }
  backends { address: "10.1.0.2" port: 80 }
  backends { address: "10.1.0.3" port: 80 } }
pools { name: "v6" backends { address: "2001:db8:1::1" port: 443 } }
pools { name: "empty" }
pools { name: "rr" algorithm: ALGORITHM_ROUND_ROBIN
  backends { address: "10.2.0.1" }
  backends { address: "2001:db8:2::2" } }
vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "one" }
vips { address: "198.51.100.1" protocol: PROTOCOL_UDP port: 53 pool: "one" }
vips { address: "198.51.100.2" protocol: PROTOCOL_TCP port: 80 pool: "three" }
vips { address: "2001:db8:100::1" protocol: PROTOCOL_TCP port: 443 pool: "v6" }
vips { address: "198.51.100.4" protocol: PROTOCOL_TCP port: 0 pool: "one" }
vips { address: "198.51.100.5" protocol: PROTOCOL_UDP port: 0 pool: "three" fragment_tolerant: true }
vips { address: "198.51.100.6" protocol: PROTOCOL_TCP port: 80 pool: "empty" }
vips { address: "2001:db8:100::2" protocol: PROTOCOL_TCP port: 80 pool: "rr" }
)";

void FailIfTestFailed() {
  if (::testing::UnitTest::GetInstance()->ad_hoc_test_result().Failed()) std::abort();
}

// The EAL, a mbuf pool and the published Dataplane, once per process.
lb::testing::Dataplane& TheDataplane() {
  static std::unique_ptr<lb::testing::Dataplane> dp = [] {
    const std::string prefix = "--file-prefix=lbfuzz" + std::to_string(getpid());
    const char* eal[] = {"burst_fuzz",  "--no-huge",     "-m",           "128",
                         "--no-pci",    "--no-shconf",   prefix.c_str(), "--no-telemetry",
                         "--log-level", "lib.eal:error", "-l",           "0"};
    if (rte_eal_init(static_cast<int>(sizeof(eal) / sizeof(eal[0])), const_cast<char**>(eal)) < 0) {
      std::abort();
    }
    lb::dp::RemoveEalRuntimeDirNow();
    // No per-lcore cache, so the harness's in-use count is exact.
    rte_mempool* pool =
        rte_pktmbuf_pool_create("fuzz", 511, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (pool == nullptr) std::abort();
    auto d = std::make_unique<lb::testing::Dataplane>(pool);
    lb::testing::DataplaneOptions options;
    options.num_workers = 1;
    options.conn_capacity = 1024;
    if (!d->Open(options).ok()) std::abort();
    d->PublishAndSwap(kConfig);
    FailIfTestFailed();
    // Nothing of this process stays on disk, even if it crashes.
    d->RemoveFiles();
    return d;
  }();
  return *dp;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lb::testing::Dataplane& dp = TheDataplane();
  std::vector<lb::testing::Bytes> frames;
  while (size >= 2 && frames.size() < lb::dp::kBurst) {
    size_t len = (static_cast<size_t>(data[0]) << 8 | data[1]) % (kMaxFrame + 1);
    data += 2;
    size -= 2;
    if (len > size) len = size;
    // A NIC never delivers an empty frame; and the harness would memcpy from
    // an empty vector's null data() (UB the first run of this target found).
    if (len > 0) frames.emplace_back(data, data + len);
    data += len;
    size -= len;
  }
  if (frames.empty()) return 0;
  dp.Run(0, frames);
  FailIfTestFailed();
  return 0;
}
