// lb-controlplane: the load balancer's control plane. It keeps the desired
// state (a lb.v1.Config) in a store under --state_dir, serves the admin API
// (gRPC on --grpc_listen, the classic REST API and /metrics on
// --http_listen), runs the health checks, and turns every accepted change
// into a table generation in the shared table region lb-dataplane reads.
//
//   server (default)  load the store (or bootstrap it from --config when it is
//                     empty), publish, serve until SIGTERM/SIGINT (exit 0).
//                     SIGHUP re-reads --config and applies it as one
//                     transaction; a refused file is logged by field and the
//                     running state stays.
//   --once            validate --config, publish one generation, exit (no
//                     store, no listeners).
//   --check           validate --config only.
//
// Logs: glog, to stderr unless --logtostderr=false (then files in
// --log_dir). Server mode logs one INFO line per publish,
//   published generation=N vips=V backends=B build_ms=X wait_ms=Y
// and with --v=1 one line per VIP after it,
//   vip <addr>:<port>/<proto> pool=<name> members=<n> fingerprint=<16 hex>
// plus start-up, events, signals and shutdown. Errors (ERROR lines) name the
// flag or the config field at fault. --once prints its report (the same
// lines, the VIP lines always) on stdout, --check its OK line; their errors
// are logged. Exit status: 0 on a clean stop (or --once/--check success),
// 1 on any error.
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "controlplane/bgp_announcer.h"
#include "controlplane/config.h"
#include "controlplane/control_plane.h"
#include "controlplane/etcd_store.h"
#include "controlplane/grpc_service.h"
#include "controlplane/health_checker.h"
#include "controlplane/http_server.h"
#include "controlplane/l7_health.h"
#include "controlplane/leader.h"
#include "controlplane/metrics.h"
#include "controlplane/publisher.h"
#include "controlplane/rest_api.h"
#include "controlplane/rest_guard.h"
#include "controlplane/store.h"
#include "controlplane/store_url.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "lib/process_flags.h"
#include "lib/shm_region.h"

DEFINE_string(config, "",
              "Config file: protobuf text format (*.textproto, *.txtpb, *.pbtxt) or proto3 JSON "
              "(*.json) of lb.v1.Config (proto/lb/v1/config.proto). Server mode: the bootstrap "
              "state, used only while the store in --state_dir is empty, and what SIGHUP "
              "applies. Required with --once and --check.");
DEFINE_string(state_dir, "/var/lib/lb-controlplane",
              "Directory of the persistent desired state (state.binpb, written atomically, "
              "with a version). One lb-controlplane per directory.");
DEFINE_string(store, "",
              "Where the desired state lives: empty or file:///dir = the embedded file store "
              "(--state_dir / dir); etcd://host:port[,host:port...]/prefix = etcd's v3 API on "
              "the members listed (failover between them), key <prefix>/state, shared by every "
              "control plane on that prefix (each watches it and republishes on every "
              "change); etcds://... = the same over TLS (--etcd_ca, --etcd_cert, --etcd_key).");
DEFINE_string(etcd_ca, "",
              "--store=etcds://: PEM CA bundle the etcd members' certificates are verified "
              "against (for the host name or address in --store). Default: the system roots.");
DEFINE_string(etcd_cert, "",
              "--store=etcds://: PEM client certificate (chain) presented to etcd, for an etcd "
              "started with --client-cert-auth; needs --etcd_key.");
DEFINE_string(etcd_key, "", "--store=etcds://: PEM private key of --etcd_cert.");
DEFINE_int32(etcd_timeout_ms, 2000,
             "--store=etcd://: deadline of each etcd call; no answer in time refuses the "
             "change with UNAVAILABLE / 503 and keeps the running state.");
DEFINE_int32(etcd_lease_ttl_s, 3,
             "--store=etcd://: TTL of this control plane's etcd lease (etcd raises it to its "
             "minimum, 2 s by default). The elected leader writes the health every node's "
             "tables apply; when it dies, its lease expires after this long and another "
             "control plane takes over.");
DEFINE_string(node_name, "",
              "--store=etcd://: this control plane's name in the leader election (the value of "
              "<prefix>/leader and the writer of <prefix>/health). Default: <hostname>:<pid>.");
DEFINE_string(grpc_listen, "127.0.0.1:50051",
              "gRPC admin API listen address (host:port, [v6]:port, unix:path; port 0 = any "
              "free port). Empty = no gRPC listener.");
DEFINE_string(http_listen, "127.0.0.1:8080",
              "HTTP listen address of the classic REST API and /metrics (host:port or "
              "[v6]:port; port 0 = any free port). Empty = no HTTP listener.");
DEFINE_string(http_allowed_hosts, "",
              "Comma-separated names (name or name:port) REST clients may use in Host and "
              "Origin besides the listen address itself (and localhost on loopback), e.g. "
              "\"lb1.example.net\" behind a DNS name. Any other Host gets 421: DNS rebinding "
              "cannot reach the API.");
DEFINE_uint32(http_max_connections_per_client, 32,
              "Open connections to the HTTP listener per client IP address; the next one gets "
              "503 at once. 0 = no limit.");
DEFINE_string(auth_token_file, "",
              "File holding the bearer token that mutations (REST and gRPC) must present as "
              "\"Authorization: Bearer <token>\". Required when a listener is not on loopback; "
              "off loopback every REST request but GET /healthz needs it, reads included.");
DEFINE_string(grpc_tls_cert, "",
              "PEM certificate chain for the gRPC listener (with --grpc_tls_key).");
DEFINE_string(grpc_tls_key, "", "PEM private key for the gRPC listener (with --grpc_tls_cert).");
DEFINE_string(table_region, "",
              "Table region file the dataplane reads. Default: <first writable hugetlbfs "
              "mount, else /dev/shm>/lb-tables.");
DEFINE_string(stats_region, "",
              "Stats region file the dataplane writes (read here to know when a table slot is "
              "free to reuse). A missing file means no dataplane has run: publish at once. "
              "Default: <same directory as the default table region>/lb-stats.");
DEFINE_bool(recreate_tables, false,
            "Replace an existing table region whose capacities or ABI differ instead of "
            "refusing to start. Forgets slot numbers and incarnations: a running dataplane "
            "must be restarted.");
DEFINE_uint32(max_vips, 64, "Table region capacity: VIPs (1..4096).");
DEFINE_uint32(max_backends, 4096,
              "Table region capacity: backend slots including the reserved slot 0, so at most "
              "max_backends - 1 backends across all pools.");
DEFINE_uint32(max_members, 16384,
              "Table region capacity: the sum over VIPs of their active backends.");
DEFINE_uint32(max_ring_size, 65537,
              "Table region capacity: Maglev ring entries per VIP; must be >= the config's "
              "tables.ring_size.");
DEFINE_uint32(l7_ticket_key_rotate_s, 3600,
              "lb-l7's session ticket keys (shared by every L7 node, streamed by WatchL7Config): "
              "a new key every this many seconds (1..86400). The next key is distributed one "
              "period ahead and previous keys are kept for the longest ticket lifetime "
              "(session_timeout_s) plus one period, so rotations never refuse a live ticket.");
DEFINE_uint32(reclaim_timeout_ms, 2000,
              "How long a publish waits for every live dataplane lcore to leave the table slot "
              "it is about to overwrite. On timeout the publish is refused (the table stays as "
              "it was) and the lcores still holding the slot are named.");
DEFINE_uint32(stuck_lcore_ms, 500,
              "An lcore whose heartbeat is older than this while it still holds the slot is "
              "reported as stuck.");
DEFINE_string(health_script_dir, "/etc/lb-controlplane/health-scripts",
              "Absolute directory of the scripts HEALTH_CHECK_KIND_SCRIPT checks name: script[0] "
              "is a file name in it, never a path. The directory and each script must be owned "
              "by root and not writable by group/others, or the script is never run.");
DEFINE_string(health_script_user, "nobody",
              "User that health-check scripts run as (its uid and gid, no supplementary groups, "
              "no new privileges). Must exist and must not be root (uid 0).");
DEFINE_string(health_tunnel_map, "",
              "Pinned map of lb-hc-encap (e.g. /sys/fs/bpf/lb-hc-encap/hc_reals): enables "
              "health_check.through_tunnel, checks that connect to the pool's VIP with "
              "SO_MARK = --health_tunnel_mark_base + backend id and are tunnelled to the backend "
              "by lb-hc-encap's tc egress program. Empty: such configs are refused. The map must "
              "exist at start (attach lb-hc-encap first).");
DEFINE_uint32(health_tunnel_mark_base, lb::kDefaultHealthTunnelMarkBase,
              "SO_MARK of a tunnelled health check = this + backend id. Pick a range no other "
              "firewall/routing mark on the checker's host uses.");
DEFINE_string(bgp_routes_file, "",
              "BGP through BIRD: the BIRD include file (absolute path) this process owns; it "
              "holds `protocol static lb_vips4/lb_vips6` with a route per VIP address announced "
              "(dataplane heartbeat fresh and a healthy backend). Empty = no announcer. See "
              "docs/OPERATIONS.md.");
DEFINE_string(bgp_bird_socket, "",
              "BIRD's control socket: `birdc -s SOCKET configure` after each change of "
              "--bgp_routes_file.");
DEFINE_string(bgp_birdc, "birdc", "The birdc program.");
DEFINE_string(bgp_drain_file, "",
              "When this file exists every VIP is withdrawn (drain the node before stopping it).");
DEFINE_uint32(bgp_heartbeat_max_ms, 200,
              "The dataplane counts as dead (its VIPs withdrawn) when an online lcore's "
              "heartbeat in the stats region is older than this, or its process is gone.");
DEFINE_uint32(bgp_poll_ms, 50, "How often the BGP announcer re-decides.");
DEFINE_bool(bgp_withdraw_on_exit, true,
            "Withdraw every VIP when lb-controlplane stops (nothing would track health).");
DEFINE_bool(once, false,
            "Validate --config, publish one generation and exit: 0 on success, 1 on any error. "
            "Uses no store and opens no listener.");
DEFINE_bool(check, false,
            "Validate the config against the --max_* capacities, print OK or the errors, and exit "
            "0/1. Touches no region.");

namespace lb {
namespace {

TableCapacities CapacitiesFromFlags() {
  TableCapacities c;
  c.max_vips = FLAGS_max_vips;
  c.max_backends = FLAGS_max_backends;
  c.max_members = FLAGS_max_members;
  c.max_ring_size = FLAGS_max_ring_size;
  return c;
}

// Loads --config and validates it (printing warnings); on failure the
// message names the file and the field.
absl::StatusOr<v1::Config> LoadConfig(const TableCapacities& caps, DesiredState* desired_out) {
  auto config = LoadConfigFile(FLAGS_config);
  if (!config.ok()) return config.status();
  std::vector<std::string> warnings;
  auto desired = ValidateConfig(*config, caps, &warnings);
  for (const std::string& w : warnings) LOG(WARNING) << FLAGS_config << ": " << w;
  if (!desired.ok()) {
    return absl::Status(
        desired.status().code(),
        absl::StrCat("config ", FLAGS_config, " refused: ", desired.status().message()));
  }
  if (desired_out != nullptr) *desired_out = *std::move(desired);
  return config;
}

// --once: the publish report is the command's output, on stdout.
void PrintReport(const PublishReport& r) {
  std::printf("published generation=%" PRIu64 " vips=%zu backends=%u build_ms=%.2f wait_ms=%.2f\n",
              r.generation, r.build.vips.size(), r.build.backends_in_use, r.build_ms, r.wait_ms);
  for (const VipSummary& v : r.build.vips) {
    std::printf("vip %s pool=%s members=%u fingerprint=%016" PRIx64 "\n", v.key.c_str(),
                v.pool.c_str(), v.members, v.fingerprint);
  }
  std::fflush(stdout);
}

// Server: one INFO line per publish; the per-VIP lines at --v=1 (a change
// through the API publishes, and a table may hold thousands of VIPs).
void LogReport(const PublishReport& r) {
  LOG(INFO) << "published generation=" << r.generation << " vips=" << r.build.vips.size()
            << " backends=" << r.build.backends_in_use << std::fixed << std::setprecision(2)
            << " build_ms=" << r.build_ms << " wait_ms=" << r.wait_ms;
  if (!VLOG_IS_ON(1)) return;
  for (const VipSummary& v : r.build.vips) {
    VLOG(1) << "vip " << v.key << " pool=" << v.pool << " members=" << v.members
            << " fingerprint=" << absl::StrCat(absl::Hex(v.fingerprint, absl::kZeroPad16));
  }
}

PublisherOptions PublisherOptionsFromFlags(const TableCapacities& caps, RegionDir* dir_out) {
  const RegionDir dir = DefaultRegionDir();
  PublisherOptions opts;
  opts.table_path = FLAGS_table_region.empty() ? dir.path + "/lb-tables" : FLAGS_table_region;
  opts.stats_path = FLAGS_stats_region.empty() ? dir.path + "/lb-stats" : FLAGS_stats_region;
  opts.caps = caps;
  opts.recreate_tables = FLAGS_recreate_tables;
  opts.reclaim_timeout_ns = uint64_t{FLAGS_reclaim_timeout_ms} * 1'000'000;
  opts.stuck_after_ns = uint64_t{FLAGS_stuck_lcore_ms} * 1'000'000;
  *dir_out = dir;
  return opts;
}

std::string RegionNote(const RegionDir& dir) {
  return FLAGS_table_region.empty() ? (dir.hugetlbfs ? " (hugetlbfs)" : " (tmpfs)") : "";
}

// --once: publish the file once, as before the server existed.
int RunOnce(const TableCapacities& caps, const DesiredState& desired) {
  RegionDir dir;
  const PublisherOptions opts = PublisherOptionsFromFlags(caps, &dir);
  auto publisher = Publisher::Open(opts);
  if (!publisher.ok()) {
    LOG(ERROR) << publisher.status().message();
    return 1;
  }
  LOG(INFO) << "table region " << opts.table_path << RegionNote(dir) << " at generation "
            << publisher->published_generation() << "; stats region " << opts.stats_path;
  auto report = publisher->Publish(desired);
  if (!report.ok()) {
    LOG(ERROR) << report.status().message();
    return 1;
  }
  PrintReport(*report);
  return 0;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().size() > (1u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is over 1 MiB"));
  }
  return ss.str();
}

// The server: store, ControlPlane, listeners, health checker, Tick thread,
// signals.
// What the server flags say once checked: the bearer token, whether the
// REST listener is loopback only, the hosts REST answers to, the health
// checker's options. Each refusal names its flag.
struct ServerSettings {
  std::string token;
  bool http_loopback = true;
  std::vector<AllowedHost> http_allowed_hosts;
  HealthCheckerOptions health;
};

absl::StatusOr<ServerSettings> CheckServerFlags() {
  ServerSettings s;
  if (!FLAGS_auth_token_file.empty()) {
    auto t = ReadSmallFile(FLAGS_auth_token_file, "auth_token_file");
    if (!t.ok()) return t.status();
    s.token = std::string(absl::StripAsciiWhitespace(*t));
    if (s.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_token_file: ", FLAGS_auth_token_file, " holds no token"));
    }
  }
  if (!FLAGS_http_listen.empty()) {
    auto a = ParseListenAddress(FLAGS_http_listen, "--http_listen");
    if (!a.ok()) return a.status();
    s.http_loopback = a->loopback;
  }
  auto hosts = ParseAllowedHosts(FLAGS_http_allowed_hosts);
  if (!hosts.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http_allowed_hosts: ", hosts.status().message()));
  }
  s.http_allowed_hosts = *std::move(hosts);
  const bool grpc_loopback =
      FLAGS_grpc_listen.empty() || IsLoopbackListenAddress(FLAGS_grpc_listen);
  if (s.token.empty() && (!s.http_loopback || !grpc_loopback)) {
    return absl::InvalidArgumentError(
        absl::StrCat(!grpc_loopback ? "--grpc_listen " + FLAGS_grpc_listen
                                    : "--http_listen " + FLAGS_http_listen,
                     " is not a loopback address: mutations off this host need a bearer token; "
                     "give --auth_token_file (or listen on 127.0.0.1 / ::1)"));
  }
  if (FLAGS_grpc_tls_cert.empty() != FLAGS_grpc_tls_key.empty()) {
    return absl::InvalidArgumentError(FLAGS_grpc_tls_cert.empty()
                                          ? "--grpc_tls_cert is required with --grpc_tls_key"
                                          : "--grpc_tls_key is required with --grpc_tls_cert");
  }
  if (FLAGS_health_script_dir.empty() || FLAGS_health_script_dir[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("--health_script_dir: \"",
                                                   absl::CHexEscape(FLAGS_health_script_dir),
                                                   "\" is not an absolute path"));
  }
  s.health.script_dir = FLAGS_health_script_dir;
  s.health.tunnel_map_path = FLAGS_health_tunnel_map;
  s.health.tunnel_mark_base = FLAGS_health_tunnel_mark_base;
  auto user = LookupScriptUser(FLAGS_health_script_user);
  if (!user.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--health_script_user: ", user.status().message()));
  }
  s.health.script_user = *user;
  return s;
}

// The gRPC admin API on --grpc_listen (nullptr when it is empty).
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpc(ControlPlane* cp,
                                                        const std::string& token) {
  if (FLAGS_grpc_listen.empty()) return std::unique_ptr<grpc::Server>();
  GrpcServerOptions g;
  g.listen_address = FLAGS_grpc_listen;
  g.tls_cert_file = FLAGS_grpc_tls_cert;
  g.tls_key_file = FLAGS_grpc_tls_key;
  g.token = token;
  int port = 0;
  g.selected_port = &port;
  auto s = StartGrpcServer(g, cp);
  if (!s.ok()) {
    return absl::Status(s.status().code(), absl::StrCat("--grpc_listen ", FLAGS_grpc_listen, ": ",
                                                        s.status().message()));
  }
  LOG(INFO) << "gRPC admin API on " << FLAGS_grpc_listen << " (port " << port << ")"
            << (FLAGS_grpc_tls_cert.empty() ? "" : ", TLS")
            << (token.empty() ? "" : ", bearer token required");
  return s;
}

// The REST API and /metrics on --http_listen (nullptr when it is empty).
absl::StatusOr<std::unique_ptr<HttpServer>> StartHttp(ControlPlane* cp, const ServerSettings& s,
                                                      const MetricsInputs& inputs) {
  if (FLAGS_http_listen.empty()) return std::unique_ptr<HttpServer>();
  HttpServerOptions h;
  h.listen = FLAGS_http_listen;
  h.max_connections_per_client = FLAGS_http_max_connections_per_client;
  RestApiOptions rest;
  rest.guard.bearer_token = s.token;
  rest.guard.allowed_hosts = s.http_allowed_hosts;
  rest.render_metrics = [cp, inputs]() { return RenderMetrics(*cp, inputs); };
  auto server = StartRestServer(h, rest, cp);
  if (!server.ok()) {
    return absl::Status(server.status().code(), absl::StrCat("--http_listen ", FLAGS_http_listen,
                                                             ": ", server.status().message()));
  }
  LOG(INFO) << "REST API and /metrics on http://" << (*server)->address()
            << (s.token.empty()    ? ""
                : !s.http_loopback ? " (bearer token required for all but GET /healthz)"
                                   : " (bearer token required for changes)");
  return server;
}

// Until SIGTERM/SIGINT: SIGHUP reloads --config (a refused file keeps what
// runs, saying why).
void ServeSignals(const sigset_t& signals, const TableCapacities& caps, ControlPlane& cp) {
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGTERM || sig == SIGINT) {
      LOG(INFO) << "signal " << sig << " (" << strsignal(sig) << "): exiting; generation "
                << cp.generation() << " stays published, state version " << cp.version()
                << " stored";
      return;
    }
    if (FLAGS_config.empty()) {
      LOG(INFO) << "SIGHUP: no --config to reload";
      continue;
    }
    LOG(INFO) << "SIGHUP: reloading " << FLAGS_config;
    auto next = LoadConfig(caps, nullptr);
    absl::Status st = next.ok() ? cp.ReplaceConfig(*next) : next.status();
    if (!st.ok()) {
      LOG(ERROR) << st.message() << "; keeping generation " << cp.generation() << " (version "
                 << cp.version() << ")";
      continue;
    }
    LOG(INFO) << "SIGHUP: committed version=" << cp.version() << " generation=" << cp.generation();
  }
}

// --store (or --state_dir): the file store, or the etcd store.
absl::StatusOr<std::unique_ptr<Store>> OpenStore() {
  if (FLAGS_store.empty()) {
    auto store = NewFileStore(FLAGS_state_dir);
    if (!store.ok()) {
      return absl::Status(store.status().code(),
                          absl::StrCat("--state_dir: ", store.status().message()));
    }
    return store;
  }
  auto url = ParseStoreUrl(FLAGS_store);
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--store: ", url.status().message()));
  }
  absl::StatusOr<std::unique_ptr<Store>> store;
  if (url->kind == StoreUrl::Kind::kFile) {
    store = NewFileStore(url->dir);
  } else {
    auto tls = LoadEtcdTls(*url, FLAGS_etcd_ca, FLAGS_etcd_cert, FLAGS_etcd_key);
    if (!tls.ok()) return tls.status();
    EtcdStoreOptions o;
    o.url = *url;
    o.tls = *std::move(tls);
    o.timeout_ms = FLAGS_etcd_timeout_ms;
    store = NewEtcdStore(o);
  }
  if (!store.ok()) {
    return absl::Status(store.status().code(), absl::StrCat("--store: ", store.status().message()));
  }
  return store;
}

// The store, the bootstrap config and the control plane over them.
absl::StatusOr<std::unique_ptr<ControlPlane>> OpenControlPlane(const TableCapacities& caps,
                                                               LatencyHistogram* publish_latency,
                                                               MetricsInputs* inputs) {
  auto store = OpenStore();
  if (!store.ok()) return store.status();
  const std::string store_name = (*store)->Describe();
  RegionDir dir;
  ControlPlaneOptions options;
  options.publisher = PublisherOptionsFromFlags(caps, &dir);
  if (FLAGS_l7_ticket_key_rotate_s < 1 || FLAGS_l7_ticket_key_rotate_s > 86400) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--l7_ticket_key_rotate_s: ", FLAGS_l7_ticket_key_rotate_s, " is not in 1..86400 seconds"));
  }
  options.l7_ticket_key_rotate_s = FLAGS_l7_ticket_key_rotate_s;
  // Several control planes share one health view, the elected leader's
  // (leader.h), so every node publishes the same tables.
  auto store_url = ParseStoreUrl(FLAGS_store);
  options.shared_health =
      !FLAGS_store.empty() && store_url.ok() && store_url->kind == StoreUrl::Kind::kEtcd;
  if (options.shared_health) {
    // The stored verdicts, so the first generation already applies them
    // (otherwise it would bring every down backend back until the watch
    // delivers the document a few ms later). Best effort: the watch
    // delivers it anyway.
    // OpenStore read the TLS files already: they are valid.
    auto tls = LoadEtcdTls(*store_url, FLAGS_etcd_ca, FLAGS_etcd_cert, FLAGS_etcd_key);
    auto doc = tls.ok() ? LoadSharedHealth(*store_url, *tls, FLAGS_etcd_timeout_ms)
                        : absl::StatusOr<std::optional<v1::SharedHealth>>(tls.status());
    if (doc.ok()) {
      options.initial_shared_health = *std::move(doc);
    } else {
      LOG(WARNING) << "shared health not read at start (" << doc.status().message()
                   << "); the watch brings it";
    }
  }
  options.on_publish = LogReport;
  // Cumulative since start (a Prometheus histogram must never decrease).
  options.on_publish_latency = [publish_latency](double publish_ms, double) {
    publish_latency->Observe(publish_ms / 1e3);
  };
  if (!FLAGS_config.empty()) {
    auto boot = LoadConfig(caps, nullptr);
    if (!boot.ok()) return boot.status();
    options.bootstrap = *std::move(boot);
  }
  inputs->table_path = options.publisher.table_path;
  inputs->stats_path = options.publisher.stats_path;
  LOG(INFO) << "table region " << inputs->table_path << RegionNote(dir) << "; stats region "
            << inputs->stats_path << "; state " << store_name;
  auto cp = ControlPlane::Create(options, *std::move(store));
  if (!cp.ok()) {
    return absl::Status(cp.status().code(),
                        absl::StrCat("state ", store_name, ": ", cp.status().message()));
  }
  (*cp)->WatchStore();  // a no-op for the file store
  LOG(INFO) << "state version " << (*cp)->version() << " at generation " << (*cp)->generation()
            << (FLAGS_config.empty() || (*cp)->version() <= 1
                    ? ""
                    : absl::StrCat(" (--config ", FLAGS_config,
                                   " is applied on SIGHUP only: the store is not empty)"));
  return cp;
}

// --store=etcd://: the leader election and the shared health (leader.h);
// nullptr with the file store.
absl::StatusOr<std::unique_ptr<LeaderElection>> StartElection(ControlPlane* cp) {
  if (FLAGS_store.empty()) return std::unique_ptr<LeaderElection>();
  auto url = ParseStoreUrl(FLAGS_store);
  if (!url.ok() || url->kind != StoreUrl::Kind::kEtcd) return std::unique_ptr<LeaderElection>();
  auto tls = LoadEtcdTls(*url, FLAGS_etcd_ca, FLAGS_etcd_cert, FLAGS_etcd_key);
  if (!tls.ok()) return tls.status();
  LeaderOptions o;
  o.url = *url;
  o.tls = *std::move(tls);
  o.timeout_ms = FLAGS_etcd_timeout_ms;
  o.ttl_s = FLAGS_etcd_lease_ttl_s;
  o.node_name = FLAGS_node_name;
  if (o.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    o.node_name = absl::StrCat(host, ":", getpid());
  }
  LeaderHooks hooks;
  hooks.local_view = [cp] { return cp->LocalHealthView(); };
  hooks.on_shared_health = [cp](const v1::SharedHealth& doc) { cp->AdoptSharedHealth(doc); };
  auto e = StartLeaderElection(o, std::move(hooks));
  if (!e.ok()) return absl::InvalidArgumentError(absl::StrCat(e.status().message()));
  LOG(INFO) << "leader election on " << FLAGS_store << " as \"" << o.node_name << "\", lease TTL "
            << o.ttl_s << " s";
  return e;
}

// The two health checkers: the L4 backends', and lb-l7's pools
// (L7Pool.health_check), whose ids are those of the L7HealthBook and whose
// results stream with WatchL7Config. The L7 one has no tunnel map: it would
// otherwise empty the L4 one's marks.
class HealthCheckers {
 public:
  absl::Status Start(ControlPlane* cp, const HealthCheckerOptions& options) {
    cp_ = cp;
    auto l4 = HealthChecker::Start([cp](const HealthReport& r) { cp->ReportHealth(r); }, options);
    if (!l4.ok())
      return absl::Status(l4.status().code(),
                          absl::StrCat("health checker: ", l4.status().message()));
    l4_ = *std::move(l4);
    HealthCheckerOptions l7_options = options;
    l7_options.tunnel_map_path.clear();
    auto l7 = HealthChecker::Start(
        [this](const HealthReport& r) {
          if (l7_book_.Report(r)) cp_->SetL7Health(l7_book_.Health());
        },
        l7_options);
    if (!l7.ok()) {
      l4_->Stop();
      return absl::Status(l7.status().code(),
                          absl::StrCat("L7 health checker: ", l7.status().message()));
    }
    l7_ = *std::move(l7);
    SetTargets();
    return absl::OkStatus();
  }

  // Called by the ticker: new targets when the configuration changed, and
  // the checks' latencies into the histogram.
  void Tick(LatencyHistogram* latency) {
    if (cp_->version() != targets_version_) SetTargets();
    for (HealthChecker* c : {l4_.get(), l7_.get()}) {
      for (double ms : c->DrainLatencyObservationsMs()) latency->Observe(ms / 1e3);
    }
  }

  void Stop() {
    if (l4_) l4_->Stop();
    if (l7_) l7_->Stop();
  }

  L7HealthBook* l7_book() { return &l7_book_; }

 private:
  void SetTargets() {
    targets_version_ = cp_->version();
    l4_->SetTargets(TargetsFromConfig(cp_->config()));
    l7_->SetTargets(l7_book_.Targets(cp_->config().l7()));
    cp_->SetL7Health(l7_book_.Health());
  }

  ControlPlane* cp_ = nullptr;
  L7HealthBook l7_book_;
  std::unique_ptr<HealthChecker> l4_, l7_;
  uint64_t targets_version_ = 0;
};

// Routes that follow health (--bgp_routes_file): its own view of the stats
// region, so that its heartbeat checks never wait on the publisher.
struct Announcer {
  std::unique_ptr<DataplaneView> view;
  std::unique_ptr<BgpAnnouncer> announcer;
};

absl::StatusOr<Announcer> StartAnnouncer(ControlPlane* cp, const std::string& stats_path) {
  Announcer a;
  if (FLAGS_bgp_routes_file.empty()) return a;
  a.view = std::make_unique<DataplaneView>(stats_path, uint64_t{FLAGS_stuck_lcore_ms} * 1000000);
  BgpAnnouncerOptions bo;
  bo.routes_file = FLAGS_bgp_routes_file;
  bo.bird_socket = FLAGS_bgp_bird_socket;
  bo.birdc = FLAGS_bgp_birdc;
  bo.drain_file = FLAGS_bgp_drain_file;
  bo.heartbeat_max_age_ns = uint64_t{FLAGS_bgp_heartbeat_max_ms} * 1000000;
  bo.poll_ns = uint64_t{FLAGS_bgp_poll_ms} * 1000000;
  a.announcer = std::make_unique<BgpAnnouncer>(
      bo, [cp] { return cp->ListVips(); }, a.view.get());
  if (absl::Status s = a.announcer->Start(); !s.ok()) return s;
  return a;
}

// Signals are taken synchronously with sigwait(); they are blocked before
// any thread starts (threads inherit the mask) so none is lost or delivered
// elsewhere.
sigset_t BlockServerSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int RunServer(const TableCapacities& caps) {
  const sigset_t signals = BlockServerSignals();
  auto settings = CheckServerFlags();  // before any state is touched
  if (!settings.ok()) {
    LOG(ERROR) << settings.status().message();
    return 1;
  }
  LatencyHistogram publish_latency, health_latency;
  MetricsInputs inputs;
  inputs.version = gflags::VersionString();
  inputs.health_check_latency = &health_latency;
  inputs.publish_latency = &publish_latency;
  auto created = OpenControlPlane(caps, &publish_latency, &inputs);
  if (!created.ok()) {
    LOG(ERROR) << created.status().message();
    return 1;
  }
  std::unique_ptr<ControlPlane> cp = *std::move(created);
  ControlPlane* cpp = cp.get();
  auto election = StartElection(cpp);
  if (!election.ok()) {
    LOG(ERROR) << election.status().message();
    return 1;
  }
  LeaderElection* leader = election->get();
  if (leader != nullptr) {
    cp->SetLocalHealthListener([leader] { leader->LocalHealthChanged(); });
    inputs.leader_status = [leader] { return leader->Status(); };
  }
  // Events worth a log line (publishes are printed by on_publish).
  const uint64_t log_token = cp->Subscribe([](const v1::Event& e) {
    if (e.kind() != "publish") LOG(INFO) << e.kind() << ": " << e.message();
  });
  HealthCheckers checkers;
  if (absl::Status s = checkers.Start(cpp, settings->health); !s.ok()) {
    LOG(ERROR) << s.message();
    return 1;
  }
  inputs.l7_health = checkers.l7_book();
  auto grpc_server = StartGrpc(cpp, settings->token);
  if (!grpc_server.ok()) {
    LOG(ERROR) << grpc_server.status().message();
    return 1;
  }
  auto http_server = StartHttp(cpp, *settings, inputs);
  if (!http_server.ok()) {
    LOG(ERROR) << http_server.status().message();
    return 1;
  }

  // Periodic work: drains, publish retries, health targets.
  absl::Notification stop;
  std::thread ticker([&] {
    while (!stop.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
      cpp->Tick();
      checkers.Tick(&health_latency);
    }
  });
  auto announcer = StartAnnouncer(cpp, inputs.stats_path);
  if (announcer.ok()) ServeSignals(signals, caps, *cp);
  if (!announcer.ok()) LOG(ERROR) << announcer.status().message();
  if (announcer.ok() && announcer->announcer != nullptr) {
    announcer->announcer->Stop(FLAGS_bgp_withdraw_on_exit);
  }

  // Stop taking requests first, then the periodic work, then the checkers.
  if (*http_server) (*http_server)->Stop();
  if (*grpc_server)
    (*grpc_server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  stop.Notify();
  ticker.join();
  checkers.Stop();
  if (leader != nullptr) leader->Stop();  // revokes the lease: another node takes over now
  cp->Unsubscribe(log_token);
  if (!announcer.ok()) return 1;
  LOG(INFO) << "stopped: listeners closed, health checks ended";
  return 0;
}

int Run() {
  // Before any config is validated: through_tunnel needs the map.
  SetHealthTunnelAvailable(!FLAGS_health_tunnel_map.empty());
  const TableCapacities caps = CapacitiesFromFlags();
  if (auto layout = ComputeTableLayout(caps); !layout.ok()) {
    LOG(ERROR) << "--" << layout.status().message();
    return 1;
  }
  if (FLAGS_once || FLAGS_check) {
    if (FLAGS_config.empty()) {
      LOG(ERROR) << "--config is required with --once and --check (see --help)";
      return 1;
    }
    DesiredState desired;
    auto config = LoadConfig(caps, &desired);
    if (!config.ok()) {
      LOG(ERROR) << config.status().message();
      return 1;
    }
    if (FLAGS_check) {
      std::printf("OK %s: %zu pools, %zu backends, %zu vips, ring_size %u\n", FLAGS_config.c_str(),
                  desired.pools.size(), desired.NumBackends(), desired.vips.size(),
                  desired.ring_size);
      return 0;
    }
    return RunOnce(caps, desired);
  }
  return RunServer(caps);
}

}  // namespace
}  // namespace lb

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "the load balancer's control plane: admin API (gRPC + REST), health checks, persistent "
      "desired state, and the forwarding tables it publishes into shared memory for "
      "lb-dataplane.\n"
      "  lb-controlplane --config=lb.textproto            serve: the store in --state_dir, or\n"
      "                                                   the config when the store is empty;\n"
      "                                                   SIGHUP reloads the config,\n"
      "                                                   SIGTERM/SIGINT exit 0\n"
      "  lb-controlplane --config=lb.textproto --once     publish once and exit\n"
      "  lb-controlplane --config=lb.json --check         validate only\n"
      "Logs (glog) go to stderr: --v=1 adds one line per VIP on each publish;\n"
      "--minloglevel=1 keeps warnings and errors only.");
  gflags::SetVersionString("0.1.0");
  lb::StartLogging(argv[0]);
  if (!lb::ParseFlags(&argc, &argv)) return 1;
  if (argc > 1) {
    LOG(ERROR) << "unexpected argument \"" << argv[1] << "\" (flags only; see --help)";
    return 1;
  }
  return lb::Run();
}
