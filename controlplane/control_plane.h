// The dynamic control plane's core: the one place that owns the desired state
// (a lb.v1.Config) and turns every accepted change into a published table
// generation and a persisted version. The gRPC service, the REST API, the
// health checker and the drain timer all go through it.
//
// Every mutation runs, under one mutex, as a transaction:
//   candidate = current config + change      (NotFound / AlreadyExists here)
//   ids for entries given with id 0          (kept by identity, else lowest free)
//   ValidateConfig(candidate)                (InvalidArgument naming the field)
//   effective = candidate + runtime health   (unhealthy backends published DOWN)
//   Publisher::Prepare(effective)            (FailedPrecondition: stuck lcore)
//   Store::Save(candidate, version + 1)      (Internal / Unavailable / DataLoss)
//   Publisher::Commit()                      (the lcores see the new generation)
// and only then becomes the current config. Persist first, publish second: a
// change the store refuses was written only into a slot that no generation
// names, so it never reaches an lcore. Ids are stored, so the API can return
// them and restarts keep them; assigning them costs O(n log n) whatever the
// number of new entries. Any failure leaves the running tables and the
// stored state exactly as they were. A call that changes nothing (same
// weight, already draining, ...) succeeds without a transaction: no publish,
// no version bump. Requests larger than the tables can hold are refused
// (ResourceExhausted) before any per-entry work.
//
// Codes: NotFound (unknown id or pool), AlreadyExists (a VIP's address/
// protocol/port, a backend's identity in its pool: its address in a DSR
// pool, address:port in a proxy pool; a pool name, an explicit id),
// ResourceExhausted (a pool bigger than the tables), InvalidArgument (validation; the config path
// of the edited entity is renamed to the request's: "backend.port", "vip.address",
// "pool.health_check .interval_ms", "weight"), FailedPrecondition (deleting a pool a VIP uses,
// changing the state of a backend being removed, a publish refused because
// an lcore still holds the slot), and the store's codes for a failed save.
//
// Errors carry absl status codes that the gRPC layer maps 1:1 and REST maps
// to 400 / 404 / 409 / 412 / 500; messages name the field at fault.
//
// Queries (config(), GetBackend, ListVips, GetTables, ...) read a snapshot
// taken at the last commit and never wait for a transaction in progress;
// counters come from the dataplane's stats region through one DataplaneView
// (attached lazily, and again when the dataplane restarts), shared with the
// publisher.
//
// The implementation is in rooms (control_plane_impl.h lists them and the
// mutex map).
//
// Threads: every public method is thread-safe. Event callbacks run on the
// thread that caused the event, without the mutex held; they must not block.
#ifndef LB_CONTROLPLANE_CONTROL_PLANE_H_
#define LB_CONTROLPLANE_CONTROL_PLANE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/config.h"
#include "controlplane/dataplane_view.h"
#include "controlplane/publisher.h"
#include "controlplane/store.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/cluster.pb.h"
#include "lb/v1/config.pb.h"

namespace lb {

// The pool the classic REST API acts on; created on first use.
inline constexpr char kDefaultPool[] = "default";

struct ControlPlaneOptions {
  PublisherOptions publisher;
  // Used when the store is empty (first start): the initial config. Empty =
  // start with no VIPs.
  std::optional<v1::Config> bootstrap;
  // Called after every successful publish (API change, health republish,
  // drain completion, start-up), with the mutex held: for the one-line
  // publish log. It must not block or call back into the ControlPlane.
  std::function<void(const PublishReport&)> on_publish;
  // Called after every successful publish with its latencies in ms (API call
  // accepted -> generation stored; -> every live lcore observed it), same
  // rules as on_publish: feeds the cumulative Prometheus histogram, which a
  // bounded sample ring cannot.
  std::function<void(double publish_ms, double api_to_lcores_ms)> on_publish_latency;
  // Publish latencies kept for PublishLatenciesMs / ApiToLcoresLatenciesMs.
  size_t latency_samples = 4096;
  // After a publish, how long to wait for every live lcore to observe the
  // new generation before the call returns (api_to_lcores_ms). The next
  // publish waits for that anyway (slot reclamation); this bounds the call.
  uint64_t observe_timeout_ns = 100'000'000;
  // Several control planes on one etcd (leader.h): the tables are built
  // from the shared health document the elected leader stores
  // (AdoptSharedHealth), never from this node's own checker, so every node
  // publishes the same tables. This node's reports still feed its local
  // view (GetBackendHealth, the leader's document when it leads).
  bool shared_health = false;
  // With shared_health: the document stored when the process starts
  // (LoadSharedHealth), so that the first generation already applies it.
  std::optional<v1::SharedHealth> initial_shared_health;
  // lb-l7's session ticket keys: a new generation every this many seconds
  // (ticket_keys.h; --l7_ticket_key_rotate_s). At least 1.
  uint32_t l7_ticket_key_rotate_s = 3600;
};

// "healthy" | "unhealthy" | "unknown": the REST status and metrics label.
const char* HealthStatusName(v1::HealthStatus h);

// Runtime health of one backend, as the health checker reports it.
struct HealthReport {
  uint32_t backend_id = 0;
  v1::HealthStatus status = v1::HEALTH_STATUS_UNKNOWN;
  uint64_t check_unix_ms = 0;
  double latency_ms = 0;
  uint32_t consecutive_successes = 0;
  uint32_t consecutive_failures = 0;
  uint64_t failed_checks = 0;
  std::string last_error;
};

class ControlPlane {
 public:
  // Loads the store (or takes options.bootstrap when it is empty), validates,
  // publishes. A stored state that no longer validates is refused with
  // FailedPrecondition (the process must not forward a config nobody
  // accepted); a stored file that does not parse with the store's DataLoss
  // (it is never replaced by the bootstrap). A bootstrap is stored as
  // version 1; without one, an empty store stays empty until the first
  // change. When an lcore holds the slot at start-up, the stored state is
  // kept and Tick publishes it once it can.
  static absl::StatusOr<std::unique_ptr<ControlPlane>> Create(ControlPlaneOptions options,
                                                              std::unique_ptr<Store> store);

  // --- mutations (each a transaction as described above) ---
  absl::StatusOr<v1::Vip> CreateVip(const v1::Vip& vip);
  absl::Status DeleteVip(uint32_t id);
  absl::StatusOr<v1::Pool> CreatePool(const v1::Pool& pool);
  absl::Status DeletePool(const std::string& name);  // FailedPrecondition while a VIP uses it
  absl::StatusOr<v1::Pool> SetPoolAlgorithm(const std::string& pool, v1::Algorithm algorithm,
                                            bool sticky, uint32_t sticky_ttl_seconds);
  absl::StatusOr<v1::Pool> SetHealthCheck(const std::string& pool, const v1::HealthCheck& hc);
  // pool "" = kDefaultPool (created if missing); the address is stored in
  // canonical form. AlreadyExists for an address:port already in the pool,
  // and, in a DSR pool, for the same address with another port (there the
  // backend's identity and Maglev key is its address: tunnelled packets keep
  // the VIP's port). A proxy pool takes several ports of one address.
  absl::StatusOr<v1::BackendStatus> AddBackend(const std::string& pool, const v1::Backend& b);
  // Replaces the node settings (tunnel sources; "" = the dataplane's own
  // address). InvalidArgument names "node.tunnel_source_ipv4" etc.
  absl::StatusOr<v1::Node> SetNode(const v1::Node& node);
  absl::StatusOr<v1::BackendStatus> UpdateBackend(const v1::UpdateBackendRequest& req);
  // state DRAINING: no new flows, existing ones continue. Idempotent.
  absl::StatusOr<v1::BackendStatus> DrainBackend(uint32_t id);
  // Marks the backend draining with remove_at = now + the pool's drain
  // timeout; it leaves (a further transaction) when its flows reach zero or
  // at that time (see Tick). Returns the live flows it had (sum over lcores
  // of the stats region's active_flows for its slot; 0 without a running
  // dataplane). Calling it again for a backend being removed changes
  // nothing and reports its live flows now.
  absl::StatusOr<v1::RemoveBackendResponse> RemoveBackend(uint32_t id);

  // Replaces node, tables, pools and VIPs with `config` (SIGHUP reload) as
  // one transaction. Backends and VIPs given with id 0 keep the id their
  // identity (pool + address, resp. address/protocol/port) has now; new ones
  // get the lowest free id. config.version is ignored. Always publishes,
  // even when nothing changed (an operator asked for it).
  absl::Status ReplaceConfig(const v1::Config& config);

  // --- lb-l7's configuration (control_plane_l7.cc) ---
  // Replaces the whole L7 document after ValidateL7Config (the validator
  // lb-l7 runs, proto/l7_config.h): InvalidArgument naming "config.<field>".
  // expected_generation != 0 and not the current one: FailedPrecondition,
  // nothing changed. Accepted: generation + 1 and version + 1, stored (the
  // store's codes when it refuses, nothing changed); the L4 tables are not
  // republished. The same document again changes nothing.
  absl::StatusOr<v1::L7ConfigResponse> SetL7Config(const v1::L7Config& config,
                                                   uint64_t expected_generation);
  // For operators (GetL7Config, lbctl, REST): the document as set, with the
  // ticket key generation and never the keys.
  v1::L7ConfigResponse GetL7Config() const;
  // For lb-l7 (WatchL7Config): the document with the session ticket keys in
  // every TLS listener that takes them (ticket_keys.h InjectTicketKeys).
  v1::L7ConfigResponse L7ConfigForNodes() const;
  // Waits up to `timeout` for the L7 generation to differ from `known`, the
  // ticket key generation from `known_keys` (a local SetL7Config or
  // rotation, or a state adopted from the store) or the L7 health generation
  // from `known_health` (SetL7Health), then returns L7ConfigForNodes (the
  // same generations on a timeout). Any thread; never waits for a
  // transaction.
  v1::L7ConfigResponse WaitL7Config(uint64_t known, uint64_t known_keys, absl::Duration timeout,
                                    uint64_t known_health = 0) const;
  // The active checks' view of the L7 backends (l7_health.h), streamed with
  // every L7ConfigResponse; not stored (each control plane checks for
  // itself). Kept only when its generation is newer than the one held.
  void SetL7Health(v1::L7Health health);
  // lb-l7's session ticket keys (ticket_keys.h): a new generation when
  // `only_if_due` is false or the current one is
  // options.l7_ticket_key_rotate_s old; nothing before the first
  // SetL7Config (which generates the first keys). Stored like any change
  // (version + 1, no table publish); an event names the key generation.
  // Returns the key generation now in force. Called by Tick.
  // drop_previous: every key replaced by fresh ones (after a leak; every
  // ticket issued so far is refused). FailedPrecondition when asked
  // (only_if_due false) before the first SetL7Config.
  absl::StatusOr<uint64_t> RotateL7TicketKeys(bool only_if_due, bool drop_previous = false);
  // Rotations this process stored (a metric).
  uint64_t l7_ticket_key_rotations() const;

  // Health checker input, for backends of pools with a health check (other
  // reports are ignored). Republishes when the effective state changes
  // (healthy <-> unhealthy); no version bump, nothing stored. When the
  // publish cannot proceed right now (an lcore holds the slot) it is retried
  // by Tick.
  // With options.shared_health it only records this node's view (and calls
  // the local health listener when a status changed); the tables follow
  // AdoptSharedHealth instead.
  void ReportHealth(const HealthReport& report);

  // --- several control planes: the shared health (options.shared_health) ---
  // The leader's stored document (every node, the leader included): the
  // health the tables are built from from now on. Republishes when a
  // backend's effective state changes (a backend is matched by id and
  // address, in a health-checked pool, as for local reports); no version
  // bump. Ignored without options.shared_health.
  void AdoptSharedHealth(const v1::SharedHealth& doc);
  // This node's own checker's verdicts (what it stores when it leads).
  v1::SharedHealth LocalHealthView() const;
  // Called (without the mutex held, on the reporting thread) after a
  // report changed a backend's status in the local view. Set it before the
  // health checker starts; it must not block.
  void SetLocalHealthListener(std::function<void()> fn);

  // Several control planes on one store (etcd): loads the stored state and,
  // when another control plane changed it, validates and publishes it as
  // this node's state (no version bump, nothing stored). Unavailable when
  // the store cannot be read (the running state is kept), FailedPrecondition
  // when the stored state does not validate here.
  absl::Status SyncFromStore();
  // Starts the store's watch (Store::Watch): SyncFromStore on every change
  // and after every reconnect. The destructor stops it first.
  void WatchStore();
  // For /metrics: the store's name (Store::Describe) and health. Any thread.
  std::string StoreName() const;
  StoreHealth StoreStatus() const;

  // Periodic work (call every ~100 ms): completes drains whose flows ended or
  // whose deadline passed; retries a publish that failed on a stuck lcore.
  void Tick();

  // --- queries ---
  v1::Config config() const;  // a copy of the current desired state
  uint64_t version() const;
  uint64_t generation() const;
  absl::StatusOr<v1::BackendStatus> GetBackend(uint32_t id) const;
  std::vector<v1::BackendStatus> ListBackends(const std::string& pool) const;
  std::vector<v1::VipStatus> ListVips() const;
  absl::StatusOr<v1::BackendHealth> GetBackendHealth(uint32_t id) const;
  v1::Stats GetStats() const;
  v1::TablesInfo GetTables() const;
  // Which backend the published table gives a 5-tuple (hash-based
  // algorithms), or the candidates (per-lcore algorithms). The dataplane's
  // connection tables are not consulted. InvalidArgument naming the request
  // field, NotFound when no VIP matches, FailedPrecondition before the first
  // publish.
  absl::StatusOr<v1::ExplainResponse> Explain(const v1::ExplainRequest& req) const;
  // Per-VIP and per-backend traffic of the published generation, summed
  // over the lcores (metrics); empty without a dataplane or a publish. Never
  // waits for a transaction.
  TrafficSnapshot Traffic() const;

  // --- events (Watch, logs, metrics) ---
  using EventFn = std::function<void(const v1::Event&)>;
  // Returns a token for Unsubscribe. `fn` runs on the thread that caused the
  // event, without the ControlPlane mutex held, one event at a time per
  // subscriber; it must not block and must not call Unsubscribe.
  uint64_t Subscribe(EventFn fn);
  // After it returns, `fn` is not running and is never called again.
  void Unsubscribe(uint64_t token);

  // The last options.latency_samples publishes (oldest first), in ms:
  // API call accepted -> Publish returned (the new generation is stored in
  // the table region)...
  std::vector<double> PublishLatenciesMs() const;
  // ... and API call accepted -> every live lcore observed the new
  // generation (equal to the above when no dataplane runs; capped at
  // observe_timeout_ns).
  std::vector<double> ApiToLcoresLatenciesMs() const;

 private:
  explicit ControlPlane(ControlPlaneOptions options);
  absl::StatusOr<v1::Pool> UpdatePoolSettings(const char* what, const std::string& pool,
                                              const std::function<bool(v1::Pool*)>& apply);

 public:
  ~ControlPlane();

 private:
  // ... implementation state (config, version, publisher, store, health map,
  // subscribers) lives in control_plane_impl.h's Impl.
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_CONTROL_PLANE_H_
