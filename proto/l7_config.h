// lb-l7 configuration: the lb.v1.L7Config message (proto/lb/v1/l7.proto)
// checked and turned into what the workers run with.
//
// One validator for both sides: lb-l7 runs it on every config it applies
// (--config, the last good file, each generation streamed by the control
// plane) and lb-controlplane runs it on every SetL7Config, so a config the
// control plane accepted is one lb-l7 accepts (files apart, below).
//
// Contract: LoadL7Config reads a text-format file, ValidateL7Config checks
// the whole message and reports every problem as "<field path>: <what>"
// (the style of controlplane/config.cc), joined by "; ". A RuntimeConfig is
// immutable once built; every worker reads the same instance without locks.
//
// Threads: any thread; a RuntimeConfig is built once and then only read.
#ifndef LB_PROTO_L7_CONFIG_H_
#define LB_PROTO_L7_CONFIG_H_

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
  bool drain = false;           // at start-up; SIGHUP changes ActiveCounts' flag
  int32_t max_connections = 0;  // in flight, all workers; 0 = unlimited
};

// A shared sticky store (Redis; dataplane/l7/redis_store.h).
struct StickyStoreConfig {
  std::string host;  // IP literal, no brackets
  int port = 6379;
  std::string text;  // as configured, for logs
  int64_t timeout_ns = 50'000'000;
  std::string key_prefix = "lb:sticky:";
  int64_t max_backoff_ns = 5'000'000'000;
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
  // kSourceIp with a shared store: index into RuntimeConfig::stores (the
  // pins live there, not in `affinity`); -1 = the in-process table.
  int store = -1;
  // max_connections queue (all workers): places, and the wait before a 503.
  int32_t max_queue = 100;
  int64_t queue_timeout_ns = 1'000'000'000;
  // Retry budget (lib/l7/retry_budget.h), per worker.
  uint32_t retry_budget_percent = 20;
  uint32_t retry_budget_min = 10;
  // TLS to the backends: files are read and checked by BuildUpstreamTls
  // (dataplane/l7/upstream_tls.h), not here.
  bool upstream_tls = false;
  v1::L7UpstreamTls upstream_tls_config;
};

// An SNI passthrough listener's settings (ListenerConfig::router then maps
// the ClientHello's server_name to a pool; its default pool is default_pool).
struct PassthroughConfig {
  int default_pool = -1;  // -1 = close
  bool no_sni_to_default = false;
  bool invalid_to_default = false;
  size_t max_client_hello_bytes = 16384;
  int64_t client_hello_ns = 5'000'000'000;
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
  // SNI passthrough (no TLS termination, no HTTP): route names are the
  // passthrough routes' (last = "default").
  bool passthrough = false;
  PassthroughConfig pt;
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
  // Distinct shared sticky stores the pools use (each worker connects once
  // to each).
  std::vector<StickyStoreConfig> stores;
};

absl::StatusOr<v1::L7Config> LoadL7Config(const std::string& path);
// Checks and converts; InvalidArgumentError names every field at fault,
// each path after `path_prefix` ("config." in lb-controlplane's SetL7Config
// answer). No file is read: TLS files, the sticky secret and upstream CA
// files are checked by lb-l7 when it applies a config (they live on the L7
// node, not on the control plane's host).
absl::StatusOr<RuntimeConfig> ValidateL7Config(const v1::L7Config& config,
                                               const std::string& path_prefix = "");

}  // namespace lb::l7

#endif  // LB_PROTO_L7_CONFIG_H_
