// lb-l7 configuration: the lb.v1.L7Config message (proto/lb/v1/l7.proto)
// checked and turned into what the workers run with.
//
// Contract: LoadL7Config reads a text-format file, ValidateL7Config checks
// the whole message and reports every problem as "<field path>: <what>"
// (the style of controlplane/config.cc), joined by "; ". A RuntimeConfig is
// immutable once built; every worker reads the same instance without locks.
//
// Threads: build on the main thread before the workers start.
#ifndef LB_DATAPLANE_L7_L7_CONFIG_H_
#define LB_DATAPLANE_L7_L7_CONFIG_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lb/v1/l7.pb.h"
#include "lib/l7/balancer.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"
#include "lib/l7/router.h"
#include "lib/l7/source_affinity.h"

namespace lb::l7 {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string text;  // "10.0.0.1:80" / "[::1]:80"
};

struct BackendConfig {
  SockAddr addr;
  uint32_t weight = 1;
};

// What consistent hashing (kMaglev) hashes.
enum class HashOn { kClientAddress, kHeader, kCookie, kPath };
// How a sticky pool pins a client.
enum class StickyMode { kNone, kCookie, kSourceIp };

struct PoolConfig {
  std::string name;
  BalanceAlgorithm algorithm = BalanceAlgorithm::kRoundRobin;
  std::vector<BackendConfig> backends;
  uint32_t max_idle_per_backend = 32;
  PassiveHealth health;
  uint32_t connect_retries = 2;
  HashOn hash_on = HashOn::kClientAddress;
  std::string hash_name;  // header or cookie name
  // kMaglev: the ring (lib/l7/balancer.h BuildMaglevRing), read by every worker.
  std::shared_ptr<const std::vector<uint32_t>> ring;
  StickyMode sticky = StickyMode::kNone;
  int64_t sticky_ttl_s = 3600;
  std::string sticky_cookie = "lb_sticky";
  // kSourceIp: the pins, shared by every worker (lock-free, the one mutable
  // object a RuntimeConfig points to; lib/l7/source_affinity.h).
  std::shared_ptr<SourceAffinity> affinity;
  // TLS to the backends: files are read and checked by BuildUpstreamTls
  // (dataplane/l7/upstream_tls.h), not here.
  bool upstream_tls = false;
  v1::L7UpstreamTls upstream_tls_config;
};

struct ListenerConfig {
  std::string name;
  SockAddr addr;
  uint16_t port = 0;
  Router router;
  std::vector<std::string> route_names;  // index = route; last = "default"
  // TLS termination: files are read and checked by BuildTlsContexts
  // (dataplane/l7/tls.h), not here, so validation stays free of I/O.
  bool tls = false;
  v1::L7Tls tls_config;
};

struct Timeouts {
  int64_t client_header_ns;
  int64_t idle_ns;
  int64_t upstream_connect_ns;
  int64_t upstream_response_ns;
  int64_t client_body_ns;
};

struct RuntimeConfig {
  std::vector<ListenerConfig> listeners;
  std::vector<PoolConfig> pools;
  Http1Limits limits;
  uint32_t buffer_bytes = 65536;
  uint32_t max_connections = 10000;
  uint32_t h2_max_concurrent_streams = 100;
  Timeouts timeouts{};
  // HMAC key of the sticky cookies: LoadStickyKey (dataplane/l7/sticky_key.h)
  // fills it after validation (file I/O stays out of ValidateL7Config).
  std::string sticky_secret_file;
  std::string sticky_key;
};

absl::StatusOr<v1::L7Config> LoadL7Config(const std::string& path);
// Checks and converts; InvalidArgumentError names every field at fault.
absl::StatusOr<RuntimeConfig> ValidateL7Config(const v1::L7Config& config);

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_L7_CONFIG_H_
