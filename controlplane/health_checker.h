// Active health checks for backends: TCP connect, HTTP GET and custom scripts,
// all driven by ONE event-loop thread (epoll, non-blocking sockets, pidfds, a
// min-heap of deadlines), never a thread per backend. 1,000 backends at 1 s
// intervals cost a few percent of one core (perf/healthcheck_bench.cc).
//
// Contract
//  * Every completed check (success, failure or timeout) produces one
//    HealthReport through on_report, carrying the consecutive counts, the
//    total failed checks, the latency, the last failure's error and the status
//    decided here by the threshold and damping rules:
//      - UNKNOWN/UNHEALTHY -> HEALTHY after healthy_threshold consecutive
//        successes; UNKNOWN/HEALTHY -> UNHEALTHY after unhealthy_threshold
//        consecutive failures.
//      - Damping: a backend whose status changed less than
//        min_state_duration_ms ago does not change again until that time has
//        passed; its counts keep running, so the first check after the
//        damping window that still meets the threshold flips it. The first
//        change away from UNKNOWN is never damped.
//    The ControlPlane applies the status; it does not re-derive it.
//  * The first check of a new target runs at a uniformly random point within
//    its first interval, so 1,000 backends added together do not fire
//    together. Afterwards checks start every interval_ms (fixed cadence; the
//    slots a check overran, e.g. a 3 s timeout at a 1 s interval, are
//    skipped, never caught up in a burst). Timers are coalesced: a check
//    starts, and a timeout fires, up to one tick late, the tick being 1/20 of
//    the shortest interval, within [1 ms, 50 ms].
//  * Defaults for zero fields are those of lb.v1.HealthCheck: interval 5000,
//    timeout 3000, thresholds 2/3, path "/health", Host = the backend address
//    (":port" appended unless 80), body limit 4096, damping 2 * interval.
//  * TCP: success = the connection is established; it is then closed with an
//    RST (SO_LINGER 0) so 10k checks/s leave no TIME_WAIT behind.
//    HTTP: "GET <path> HTTP/1.1" with Host and "Connection: close"; success =
//    a 2xx status line; at most http_max_body_bytes of the body are read.
//    Script: the check NAMES a script, it never gives a program: script[0]
//    is a file name (1-64 of [A-Za-z0-9_.-], no leading '.' or '-') in
//    HealthCheckerOptions::script_dir, followed by at most 8 arguments of at
//    most 256 visible-ASCII-or-space bytes (the same bounds as
//    CheckHealthCheck in config.cc, checked again here). Before every run
//    the directory must be owned by root and not writable by group/others,
//    and the script, opened with O_NOFOLLOW relative to the directory, must
//    be a regular file owned by root, not writable by group/others and
//    executable by the script user; otherwise the check fails naming the
//    reason and nothing runs. The descriptor that was checked is the one
//    executed (fexecve, i.e. execveat AT_EMPTY_PATH): no path is resolved
//    twice. The child runs as script_user (its uid and gid, no
//    supplementary groups, PR_SET_NO_NEW_PRIVS) with argv = name,
//    arguments, address, port; environment PATH, LB_BACKEND_ADDRESS and
//    LB_BACKEND_PORT only (none of the control plane's); stdin/stdout/stderr
//    on /dev/null, fd 3 = the script itself (how a "#!" interpreter reads
//    it, as /dev/fd/3), no other descriptor; in its own process group; exit
//    0 = success; at the timeout the whole group gets SIGKILL. The loop
//    thread waits for the exec itself (as posix_spawn does) so that a
//    failure before it is reported by step ("exec: Exec format error").
//    Children are reaped through pidfds on the loop (no SIGCHLD
//    handler is installed or needed; if the process sets SIGCHLD to SIG_IGN
//    the exit status is lost and every script check fails). Needs Linux >= 5.3
//    (5.9 for close_range; older kernels close descriptors one by one).
//  * Failure texts (HealthReport::last_error, which keeps the most recent
//    failure's text after recovery): "connect: Connection refused",
//    "timeout after 3000 ms", "HTTP 503", "exit status 1", "script \"x\": not
//    found in /dir", "script \"x\": writable by group/others (mode 0775)",
//    "script directory /dir: owned by uid 1000, not root", "address: \"x\" is
//    not an IPv4 or IPv6 literal", ...
//  * Each check in flight holds one descriptor: RLIMIT_NOFILE must cover the
//    checks that can be in flight at once (all targets, when every backend
//    times out); beyond it checks fail with "socket: Too many open files".
//
// Failure: Start fails with InvalidArgument when the options are unsafe
// (script_user uid 0, a relative script_dir) and with Internal when the loop
// cannot be created (epoll/eventfd/thread). Everything that goes wrong with a backend is a
// failed check, never an error of the checker.
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
#include "lb/v1/config.pb.h"

namespace lb {

// One backend to check, with its pool's settings.
struct HealthTarget {
  uint32_t backend_id = 0;
  std::string address;  // IPv4 or IPv6 literal
  uint16_t port = 0;
  v1::HealthCheck check;           // kind NONE/UNSPECIFIED = not checked
  std::string http_path_override;  // the backend's health_check_path; "" = the pool's
};

// Targets for every backend (id != 0) of every pool whose health check kind
// is TCP, HTTP or SCRIPT. Pools with NONE/UNSPECIFIED are not checked.
std::vector<HealthTarget> TargetsFromConfig(const v1::Config& config);

// The identity health-check scripts run as.
struct ScriptUser {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Resolves a user name (lb-controlplane's --health_script_user) with
// getpwnam_r. NotFound when there is no such user; InvalidArgument when it is
// uid 0 (scripts never run as root); Internal when the lookup itself fails.
// The message does not name the flag. Any thread.
absl::StatusOr<ScriptUser> LookupScriptUser(const std::string& name);

struct HealthCheckerOptions {
  // Absolute directory that script names resolve in (--health_script_dir).
  // Empty: every script check fails ("script checks are disabled ...").
  std::string script_dir;
  // Who scripts run as (--health_script_user); never uid 0. Unset: every
  // script check fails.
  std::optional<ScriptUser> script_user;
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
  // target starts UNKNOWN; targets no longer listed stop (an in-flight check
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
