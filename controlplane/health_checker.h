// Active health checks for backends: TCP connect, HTTP GET and custom scripts,
// all driven by ONE event-loop thread (epoll, non-blocking sockets, pidfds, a
// min-heap of deadlines), never a thread per backend. 1,000 backends at 1 s
// intervals cost a few percent of one core (perf/healthcheck_bench.cc).
//
// Contract
//  * Every completed check (success, failure or timeout) produces one
//    HealthReport through on_report, carrying the consecutive counts, the
//    total failed checks, the latency, the last failure's error and the status
//    decided by the rise/fall thresholds and damping of health_policy.h.
//    The ControlPlane applies the status; it does not re-derive it.
//  * The first check of a new target runs at a uniformly random point within
//    its first interval, so 1,000 backends added together do not fire
//    together. Afterwards checks start every interval_ms (fixed cadence; the
//    slots a check overran, e.g. a 3 s timeout at a 1 s interval, are
//    skipped, never caught up in a burst). Timers are coalesced: a check
//    starts, and a timeout fires, up to one tick late, the tick being 1/20 of
//    the shortest interval, within [1 ms, 50 ms].
//  * The rooms: health_target.h (targets, defaults, prepared addresses and
//    requests), health_socket_probe.h (TCP and HTTP checks),
//    health_response.h (the HTTP response parser), health_script.h (named
//    scripts run as the script user, every security property listed there),
//    health_policy.h (thresholds and damping). At the timeout a socket is
//    closed and a script's whole process group gets SIGKILL; killed scripts
//    are reaped on the loop through their pidfds. Starting a script never
//    waits for the child: the loop only pays for the fork.
//  * Failure texts (HealthReport::last_error, which keeps the most recent
//    failure's text after recovery): "connect: Connection refused",
//    "timeout after 3000 ms", "HTTP 503", "exit status 1", "script \"x\": not
//    found in /dir", "script \"x\": writable by group/others (mode 0775)",
//    "script directory /dir: owned by uid 1000, not root", "address: \"x\" is
//    not an IPv4 or IPv6 literal", ...
//  * Each check in flight holds one descriptor (a script check two):
//    RLIMIT_NOFILE must cover the checks that can be in flight at once (all
//    targets, when every backend times out); beyond it checks fail with
//    "socket: Too many open files".
//
// Failure: Start fails with InvalidArgument when the options are unsafe
// (script_user uid 0, a relative script_dir) and with Internal when the loop
// cannot be created (epoll/eventfd/thread). Everything that goes wrong with a
// backend is a failed check, never an error of the checker.
//
// Threads: Start, SetTargets, DrainLatencyObservationsMs, CpuTime and Stop
// may be called from any thread. on_report runs on the loop thread: it must be
// quick and must not call Stop (SetTargets is fine).
#ifndef LB_CONTROLPLANE_HEALTH_CHECKER_H_
#define LB_CONTROLPLANE_HEALTH_CHECKER_H_

#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "controlplane/control_plane.h"
#include "controlplane/health_script.h"
#include "controlplane/health_target.h"
#include "controlplane/health_tunnel.h"
#include "lb/v1/config.pb.h"

namespace lb {

struct HealthCheckerOptions {
  // Absolute directory that script names resolve in (--health_script_dir).
  // Empty: every script check fails ("script checks are disabled ...").
  std::string script_dir;
  // Who scripts run as (--health_script_user); never uid 0. Unset: every
  // script check fails.
  std::optional<ScriptUser> script_user;
  // Pinned hc_reals map of lb-hc-encap (--health_tunnel_map); "" = checks
  // through the tunnel fail ("through_tunnel: ... no --health_tunnel_map").
  // Start opens it and fails when it cannot (NotFound/FailedPrecondition).
  std::string tunnel_map_path;
  // SO_MARK of a tunnelled check = base + backend id.
  uint32_t tunnel_mark_base = kDefaultHealthTunnelMarkBase;
};

class HealthChecker {
 public:
  using ReportFn = std::function<void(const HealthReport&)>;

  // Creates the loop and starts its thread (named "lb-health").
  static absl::StatusOr<std::unique_ptr<HealthChecker>> Start(ReportFn on_report,
                                                              HealthCheckerOptions options = {});

  // Replaces the set of targets, keyed by backend_id. A target whose address,
  // port, kind, HTTP path/host or script is unchanged keeps its status and
  // counts (new timing and thresholds apply from its next check); any other
  // target starts UNKNOWN; targets no longer listed stop; the tunnel map
  // (tunnel_map_path) is made to hold exactly the marks of the tunnelled
  // targets before their checks start (an in-flight check
  // is abandoned without a report; a running script is killed and reaped).
  void SetTargets(std::vector<HealthTarget> targets);

  // Latencies (ms) of the checks completed since the last call, successes and
  // failures alike (a timeout counts as its timeout). Holds at most 2^20
  // values between calls; beyond that new ones are dropped.
  std::vector<double> DrainLatencyObservationsMs();

  // CPU time (user + system) used by the loop thread so far: its thread CPU
  // clock while running; after Stop, getrusage(RUSAGE_THREAD) taken by the
  // thread as it exits.
  absl::Duration CpuTime() const;

  // Kernel thread id of the loop thread (for tests and diagnostics).
  pid_t loop_tid() const { return loop_tid_.load(std::memory_order_acquire); }

  // Stops the loop, closes every socket, kills and reaps running scripts,
  // joins the thread. Idempotent. No report is delivered after it returns.
  void Stop();

  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

 private:
  class Loop;
  explicit HealthChecker(std::unique_ptr<Loop> loop);

  std::unique_ptr<Loop> loop_;
  std::thread thread_;
  std::atomic<pid_t> loop_tid_{0};
  // Set by the loop thread once running; a member (not a local of Start) so
  // that Notify never touches a destroyed object.
  absl::Notification started_;
  clockid_t cpu_clock_{};
  bool has_cpu_clock_ = false;
  mutable absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_CHECKER_H_
