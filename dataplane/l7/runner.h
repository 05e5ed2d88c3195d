// Runner: the configuration lb-l7 runs, and how it changes while serving.
//
// A configuration runs as a *generation of workers*: the validated
// RuntimeConfig, its TLS contexts, one Worker (thread, epoll loop, pools,
// counters) per --workers. Applying a new configuration (the control
// plane's next generation, or SIGHUP with --config) is all or nothing:
//
//   validate (proto/l7_config.h, the control plane's own validator) ->
//   sticky key, TLS and upstream TLS files -> new workers Open(), each
//   taking a duplicate of its predecessor's listening socket for every
//   listener address both configurations have (so no socket closes and no
//   accept queue is lost) -> new workers start -> the admin server's view
//   switches -> the previous generation is retired.
//
// Any refusal (invalid config, unreadable file, a new listener address that
// cannot be bound) happens before the new workers start: nothing changed,
// the running generation serves on, the error names the field.
//
// Retiring (worker.h RequestRetire): the old workers stop accepting (their
// copies of the shared listening sockets are closed, the new workers accept
// on them) and finish the requests in flight. A plain HTTP/1.1 keep-alive
// connection is then handed, between two requests, to the new worker with
// the same index, which serves its next requests with the new
// configuration: a configuration change closes no such connection and
// sends no Connection: close. Connections that cannot move (TLS, HTTP/2,
// tunnels, a listener the new configuration lacks) end as on SIGTERM:
// Connection: close on the answer in flight, one more request on idle ones
// within --drain_idle_grace_ms. The old workers exit when no connection is
// left, at the latest after `retire_timeout_ms`. Their upstream keep-alive
// pools close with them: connections to backends the new configuration
// removed drain that way. Generations are reaped oldest first (a retiring
// worker's successor outlives it).
//
// A change of `listeners[].tls` only (certificates, keys, ticket keys:
// SIGHUP after a renewal) swaps the TLS contexts of the running workers
// instead (tls.h TlsStore): no worker is replaced.
//
// Threads: every method may be called from any thread; calls are
// serialised by one mutex. Workers run on their own threads.
#ifndef LB_DATAPLANE_L7_RUNNER_H_
#define LB_DATAPLANE_L7_RUNNER_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/l7/access_log.h"
#include "dataplane/l7/admin.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/l7.pb.h"

namespace lb::l7 {

struct RunnerOptions {
  unsigned workers = 1;
  // SIGTERM: how long in-flight work may take; idle keep-alive grace.
  uint32_t drain_timeout_ms = 10000;
  uint32_t idle_grace_ms = 1000;
  // A configuration change: how long the old workers may take.
  uint32_t retire_timeout_ms = 60000;
  AccessLog* access_log = nullptr;  // outlives the Runner; may be null
  AdminServer* admin = nullptr;     // view switched on every apply; may be null
  ConfigStatus* status = nullptr;   // counts applies and refusals; may be null
};

class Runner {
 public:
  explicit Runner(RunnerOptions options);
  ~Runner();  // Stop()
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Applies `config` as generation `generation` (see above). The error is
  // the one line to log; the running generation is untouched by it.
  // only_if_none: do nothing (OK) when a configuration already runs (the
  // last good file must not replace what the control plane sent first).
  absl::Status Apply(const v1::L7Config& config, uint64_t generation, bool only_if_none = false);
  // TLS-only difference: swap the contexts (same generation number kept
  // unless `generation` differs); else Apply.
  absl::Status Reload(const v1::L7Config& config, uint64_t generation);
  // SIGHUP with --controlplane: the running configuration's TLS files read
  // again (certificates, keys, ticket keys, OCSP, CAs) and swapped in.
  absl::Status ReloadTlsFiles();
  // The control plane's active health (admin.proto L7Health): backends
  // listed `down` (matched by pool name, address and port) get no new
  // requests in any algorithm, now and in every later generation, until a
  // health document says otherwise. No new workers: a health change drops
  // no connection. An older generation than the one held is ignored.
  void SetHealth(const v1::L7Health& health);
  // Checks a configuration as Apply would (files included), nothing started.
  static absl::Status Check(const v1::L7Config& config);

  bool running() const;
  // True when `config` as `generation` is what runs already.
  bool Runs(const v1::L7Config& config, uint64_t generation) const;
  uint64_t generation() const;  // of the running configuration; 0 = none
  // Joins retired generations whose workers have all exited.
  void Reap();
  // SIGTERM: every generation drains (drain_timeout_ms); returns when all
  // workers exited.
  void Stop();

 private:
  struct Generation;
  absl::Status ApplyLocked(const v1::L7Config& config, uint64_t generation);
  void ReapLocked();
  void PublishStatusLocked();
  void ApplyHealthLocked(Generation* g);

  const RunnerOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<Generation> current_;
  std::vector<std::shared_ptr<Generation>> retired_;
  v1::L7Health health_;
  bool has_health_ = false;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_RUNNER_H_
