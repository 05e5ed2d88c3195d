#include "controlplane/health_checker.h"

#include "controlplane/clock.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/health_policy.h"
#include "controlplane/health_socket_probe.h"
#include "controlplane/health_tunnel_map.h"

namespace lb {
namespace {

using health::ErrnoText;
using health::Quote;

constexpr size_t kMaxObservations = size_t{1} << 20;
constexpr int kMaxEvents = 256;
// epoll data of the wake-up eventfd; check operations are numbered from 1.
constexpr uint64_t kWakeOp = 0;
// How long Stop waits for killed scripts to be reaped.
constexpr int64_t kReapOnStopNs = 2'000'000'000;
// Timer coalescing: checks start and time out up to one tick late, the tick
// being 1/20 of the shortest interval, within [1 ms, 50 ms]. On a VM a
// wake-up from epoll_wait costs tens of microseconds, more than a TCP check
// itself; at 1,000 checks/s a 50 ms tick turns 1,000 wake-ups into 20 (the
// CPU cost falls from ~8.5% to ~4% of a core, perf/healthcheck_bench.cc).
constexpr int64_t kMinTickNs = 1'000'000;
constexpr int64_t kMaxTickNs = 50'000'000;
constexpr int64_t kTicksPerInterval = 20;

// One target and the check it has in flight (at most one of socket/script).
struct Target {
  PreparedTarget prep;
  HealthState state;
  int64_t slot_ns = 0;   // when this check was scheduled to start
  int64_t start_ns = 0;  // when it actually started
  uint64_t timer_seq = 0;
  uint64_t op = 0;
  std::unique_ptr<SocketProbe> socket;
  std::unique_ptr<ScriptRun> script;

  bool idle() const { return !socket && !script; }
  HealthPolicy policy() const {
    return HealthPolicy{prep.cfg.healthy_threshold, prep.cfg.unhealthy_threshold,
                        prep.cfg.min_state_ns};
  }
};

struct Timer {
  int64_t when_ns;
  uint64_t seq;
  uint32_t backend_id;
  bool operator>(const Timer& o) const {
    return when_ns != o.when_ns ? when_ns > o.when_ns : seq > o.seq;
  }
};

// Fixed cadence from the scheduled slot. Slots already past (a check that ran
// longer than its interval, a stalled loop) are skipped rather than caught up
// in a burst.
int64_t NextSlotNs(int64_t slot_ns, int64_t interval_ns, int64_t now) {
  int64_t next = slot_ns + interval_ns;
  if (next <= now) next += ((now - next) / interval_ns + 1) * interval_ns;
  return next;
}

}  // namespace

// Everything the loop thread owns. Only the members under mu_/obs_mu_ and the
// atomics are touched by other threads.
class HealthChecker::Loop {
 public:
  Loop(ReportFn on_report, const HealthCheckerOptions& options,
       std::unique_ptr<HealthTunnelMap> tunnel_map, int epfd, int wakefd)
      : on_report_(std::move(on_report)),
        scripts_(options.script_dir, options.script_user),
        tunnel_map_(std::move(tunnel_map)),
        tunnel_mark_base_(options.tunnel_mark_base),
        epfd_(epfd),
        wakefd_(wakefd),
        rng_(std::random_device{}() ^ uint64_t(SteadyNs())) {}

  ~Loop() {
    close(epfd_);
    close(wakefd_);
  }

  void Run(std::atomic<pid_t>* tid, absl::Notification* started);

  void Post(std::vector<HealthTarget> targets) {
    {
      absl::MutexLock l(&mu_);
      pending_ = std::move(targets);
    }
    Wake();
  }

  void RequestStop() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    Wake();
  }

  std::vector<double> DrainObservations() {
    std::vector<double> out;
    absl::MutexLock l(&obs_mu_);
    out.swap(observations_);
    return out;
  }

  int64_t final_cpu_ns() const { return final_cpu_ns_.load(std::memory_order_acquire); }

 private:
  void Wake() {
    const uint64_t one = 1;
    // The eventfd counter cannot overflow in practice; EAGAIN would mean a
    // wake-up is already pending, which is all we need.
    ssize_t n = write(wakefd_, &one, sizeof(one));
    (void)n;
  }

  // Handles one batch of epoll events; returns true when woken by Post/Stop.
  bool HandleEvents(epoll_event* events, int n);
  // Returns true when the loop must stop.
  bool ApplyPending();
  // Makes the tunnel map hold the marks of the current tunnelled targets.
  void SyncTunnelMap();
  void SetTickFromIntervals();
  int NextTimeoutMs(int64_t now);
  void RunTimers();
  void HandleEvent(uint64_t op, uint32_t events);

  void ScheduleFirst(Target& t, int64_t now);
  void SetTimer(Target& t, int64_t when_ns);
  void StartCheck(Target& t, int64_t slot_ns);
  void OnTimeout(Target& t);
  void Complete(Target& t, bool ok, std::string error);
  // Ends whatever the target has in flight, without a report: a socket is
  // closed, a script killed and kept until reaped.
  void Abandon(Target& t);
  void Report(const Target& t, double latency_ms);
  void Shutdown();

  const ReportFn on_report_;
  const ScriptLauncher scripts_;
  std::unique_ptr<HealthTunnelMap> tunnel_map_;  // null without --health_tunnel_map
  const uint32_t tunnel_mark_base_;
  const int epfd_;
  const int wakefd_;

  absl::Mutex mu_;
  std::optional<std::vector<HealthTarget>> pending_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex obs_mu_;
  std::vector<double> observations_ ABSL_GUARDED_BY(obs_mu_);

  std::atomic<int64_t> final_cpu_ns_{-1};

  // Loop-thread state.
  std::mt19937_64 rng_;
  std::unordered_map<uint32_t, std::unique_ptr<Target>> targets_;
  // Lazy-deletion min-heap: an entry is live only while it matches its
  // target's timer_seq, so rescheduling never searches the heap.
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t timer_seq_ = 0;
  int64_t tick_ns_ = kMinTickNs;
  // epoll data is an operation number, never a pointer: a target removed
  // while its events are still queued is simply not found.
  uint64_t op_seq_ = kWakeOp;
  std::unordered_map<uint64_t, uint32_t> op_owner_;
  // Killed scripts whose exit is still to be collected, by operation.
  std::unordered_map<uint64_t, std::unique_ptr<ScriptRun>> orphans_;
};

void HealthChecker::Loop::Run(std::atomic<pid_t>* tid, absl::Notification* started) {
  tid->store(pid_t(syscall(SYS_gettid)), std::memory_order_release);
  pthread_setname_np(pthread_self(), "lb-health");
  started->Notify();

  epoll_event events[kMaxEvents];
  for (;;) {
    const int n = epoll_wait(epfd_, events, kMaxEvents, NextTimeoutMs(SteadyNs()));
    if (n < 0 && errno != EINTR) break;  // EBADF/EINVAL: our own bug; stop checking
    if (HandleEvents(events, n) && ApplyPending()) break;
    RunTimers();
  }
  Shutdown();

  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  const int64_t ns = (int64_t{ru.ru_utime.tv_sec} + ru.ru_stime.tv_sec) * 1'000'000'000 +
                     (int64_t{ru.ru_utime.tv_usec} + ru.ru_stime.tv_usec) * 1000;
  final_cpu_ns_.store(ns, std::memory_order_release);
}

bool HealthChecker::Loop::HandleEvents(epoll_event* events, int n) {
  bool wake = false;
  while (n > 0) {
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeOp) {
        uint64_t v;
        ssize_t r = read(wakefd_, &v, sizeof(v));
        (void)r;
        wake = true;
      } else {
        HandleEvent(events[i].data.u64, events[i].events);
      }
    }
    // Ready I/O is handled before timers so that a loop delayed by a slow
    // on_report does not turn answered checks into timeouts.
    if (n < kMaxEvents) break;
    n = epoll_wait(epfd_, events, kMaxEvents, 0);
  }
  return wake;
}

int HealthChecker::Loop::NextTimeoutMs(int64_t now) {
  // Drop stale entries (e.g. the timeout of a check that completed) so they
  // cause no wake-up.
  while (!timers_.empty()) {
    const Timer& top = timers_.top();
    auto it = targets_.find(top.backend_id);
    if (it != targets_.end() && it->second->timer_seq == top.seq) break;
    timers_.pop();
  }
  if (timers_.empty()) return -1;
  // Wake at the end of the tick the first deadline falls in, so that one
  // wake-up serves every check due in that tick (never early).
  const int64_t due = timers_.top().when_ns;
  const int64_t wake = (due / tick_ns_ + 1) * tick_ns_;
  const int64_t d = wake - now;
  if (due <= now || d <= 0) return 0;
  const int64_t ms = (d + 999'999) / 1'000'000;
  return ms > 3'600'000 ? 3'600'000 : int(ms);
}

bool HealthChecker::Loop::ApplyPending() {
  std::optional<std::vector<HealthTarget>> specs;
  {
    absl::MutexLock l(&mu_);
    if (stop_) return true;
    specs.swap(pending_);
  }
  if (!specs) return false;
  const int64_t now = SteadyNs();
  std::unordered_map<uint32_t, std::unique_ptr<Target>> next;
  next.reserve(specs->size());
  for (HealthTarget& spec : *specs) {
    if (!IsCheckedHealthKind(spec.check.kind())) continue;
    if (next.count(spec.backend_id)) continue;  // duplicate id: the first wins
    auto fresh = std::make_unique<Target>();
    fresh->prep = PrepareTarget(spec, tunnel_mark_base_);
    auto it = targets_.find(spec.backend_id);
    if (it != targets_.end() && SameCheckIdentity(it->second->prep, fresh->prep)) {
      std::unique_ptr<Target> kept = std::move(it->second);
      targets_.erase(it);
      const bool interval_changed = kept->prep.cfg.interval_ms != fresh->prep.cfg.interval_ms;
      // A probe in flight reads prep's address and request: same identity,
      // same bytes.
      kept->prep = std::move(fresh->prep);
      if (interval_changed && kept->idle()) ScheduleFirst(*kept, now);
      next.emplace(spec.backend_id, std::move(kept));
    } else {
      ScheduleFirst(*fresh, now);
      next.emplace(spec.backend_id, std::move(fresh));
    }
  }
  for (auto& [id, t] : targets_) Abandon(*t);
  targets_.swap(next);
  SyncTunnelMap();
  SetTickFromIntervals();
  return false;
}

void HealthChecker::Loop::SyncTunnelMap() {
  std::map<uint32_t, TunnelReal> entries;
  for (auto& [id, t] : targets_) {
    if (t->prep.mark != 0 && t->prep.config_error.empty()) {
      entries.emplace(t->prep.mark, t->prep.tunnel_real);
    }
  }
  std::string error;
  if (!tunnel_map_) {
    if (entries.empty()) return;
    error = "through_tunnel: lb-controlplane has no --health_tunnel_map";
  } else if (absl::Status st = tunnel_map_->Sync(entries); !st.ok()) {
    error = absl::StrCat("through_tunnel: ", st.message());
  }
  if (error.empty()) return;
  // Every tunnelled check fails with the reason (the checker does not log).
  for (auto& [id, t] : targets_) {
    if (t->prep.mark != 0 && t->prep.config_error.empty()) t->prep.config_error = error;
  }
}

void HealthChecker::Loop::SetTickFromIntervals() {
  int64_t min_interval_ns = kMaxTickNs * kTicksPerInterval;
  for (auto& [id, t] : targets_) {
    min_interval_ns = std::min(min_interval_ns, int64_t{t->prep.cfg.interval_ms} * 1'000'000);
  }
  tick_ns_ = std::clamp(min_interval_ns / kTicksPerInterval, kMinTickNs, kMaxTickNs);
}

void HealthChecker::Loop::SetTimer(Target& t, int64_t when_ns) {
  t.timer_seq = ++timer_seq_;
  timers_.push(Timer{when_ns, t.timer_seq, t.prep.spec.backend_id});
}

void HealthChecker::Loop::ScheduleFirst(Target& t, int64_t now) {
  // Spread first checks uniformly over one interval.
  std::uniform_int_distribution<int64_t> jitter(0, int64_t{t.prep.cfg.interval_ms} * 1'000'000 - 1);
  SetTimer(t, now + jitter(rng_));
}

void HealthChecker::Loop::RunTimers() {
  const int64_t now = SteadyNs();
  while (!timers_.empty() && timers_.top().when_ns <= now) {
    const Timer timer = timers_.top();
    timers_.pop();
    auto it = targets_.find(timer.backend_id);
    if (it == targets_.end() || it->second->timer_seq != timer.seq) continue;  // stale
    Target& t = *it->second;
    if (t.idle()) {
      StartCheck(t, timer.when_ns);
    } else {
      OnTimeout(t);
    }
  }
}

void HealthChecker::Loop::StartCheck(Target& t, int64_t slot_ns) {
  t.slot_ns = slot_ns;
  t.start_ns = SteadyNs();
  t.op = ++op_seq_;
  // The timeout timer goes first: a check that completes synchronously
  // replaces it with its next slot.
  SetTimer(t, t.start_ns + int64_t{t.prep.cfg.timeout_ms} * 1'000'000);
  if (!t.prep.config_error.empty()) {
    Complete(t, false, t.prep.config_error);
    return;
  }
  std::string error;
  if (t.prep.cfg.kind == v1::HEALTH_CHECK_KIND_SCRIPT) {
    t.script = scripts_.Launch(t.prep, epfd_, t.op, &error);
    if (!t.script) {
      Complete(t, false, std::move(error));
      return;
    }
  } else {
    t.socket = std::make_unique<SocketProbe>(t.prep);
    if (t.socket->Start(epfd_, t.op) == ProbeStatus::kFailed) {
      Complete(t, false, t.socket->error());
      return;
    }
  }
  op_owner_.emplace(t.op, t.prep.spec.backend_id);
}

void HealthChecker::Loop::HandleEvent(uint64_t op, uint32_t events) {
  if (!orphans_.empty()) {
    auto orphan = orphans_.find(op);
    if (orphan != orphans_.end()) {
      if (orphan->second->TryReap()) orphans_.erase(orphan);
      return;
    }
  }
  auto owner = op_owner_.find(op);
  if (owner == op_owner_.end()) return;  // finished or abandoned earlier
  auto it = targets_.find(owner->second);
  if (it == targets_.end() || it->second->op != op) return;
  Target& t = *it->second;
  std::string error;
  ProbeStatus s = ProbeStatus::kPending;
  if (t.script) {
    s = t.script->OnExit(&error);
  } else if (t.socket) {
    s = t.socket->OnEvents(events);
    if (s == ProbeStatus::kFailed) error = t.socket->error();
  }
  if (s != ProbeStatus::kPending) Complete(t, s == ProbeStatus::kSucceeded, std::move(error));
}

void HealthChecker::Loop::OnTimeout(Target& t) {
  std::string error = absl::StrCat("timeout after ", t.prep.cfg.timeout_ms, " ms");
  Abandon(t);
  Complete(t, false, std::move(error));
}

void HealthChecker::Loop::Abandon(Target& t) {
  if (t.script) {
    t.script->Kill();
    // Its exit is collected later through the pidfd, off this check.
    if (!t.script->TryReap()) orphans_.emplace(t.op, std::move(t.script));
    t.script.reset();
  }
  t.socket.reset();
  op_owner_.erase(t.op);
}

void HealthChecker::Loop::Complete(Target& t, bool ok, std::string error) {
  // A script that completed was reaped by OnExit (or, if waitpid failed,
  // killed): nothing to keep.
  if (t.script && !t.script->TryReap()) orphans_.emplace(t.op, std::move(t.script));
  t.script.reset();
  t.socket.reset();
  op_owner_.erase(t.op);
  const int64_t now = SteadyNs();
  t.state.Record(ok, std::move(error), now, t.policy());
  const int64_t interval_ns = int64_t{t.prep.cfg.interval_ms} * 1'000'000;
  SetTimer(t, NextSlotNs(t.slot_ns, interval_ns, now));
  Report(t, double(now - t.start_ns) / 1e6);
}

void HealthChecker::Loop::Report(const Target& t, double latency_ms) {
  {
    absl::MutexLock l(&obs_mu_);
    if (observations_.size() < kMaxObservations) observations_.push_back(latency_ms);
  }
  HealthReport report;
  report.backend_id = t.prep.spec.backend_id;
  report.status = t.state.status();
  report.check_unix_ms = NowUnixMs();
  report.latency_ms = latency_ms;
  report.consecutive_successes = t.state.consecutive_successes();
  report.consecutive_failures = t.state.consecutive_failures();
  report.failed_checks = t.state.failed_checks();
  report.last_error = t.state.last_error();
  if (on_report_) on_report_(report);
}

void HealthChecker::Loop::Shutdown() {
  for (auto& [id, t] : targets_) Abandon(*t);
  targets_.clear();
  // Killed scripts exit promptly; collect them so no zombie outlives us.
  const int64_t deadline = SteadyNs() + kReapOnStopNs;
  while (!orphans_.empty() && SteadyNs() < deadline) {
    for (auto it = orphans_.begin(); it != orphans_.end();) {
      it = it->second->TryReap() ? orphans_.erase(it) : std::next(it);
    }
    if (!orphans_.empty()) usleep(1000);
  }
  orphans_.clear();
}

// ------------------------------------------------------------ HealthChecker

HealthChecker::HealthChecker(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}

HealthChecker::~HealthChecker() { Stop(); }

absl::StatusOr<std::unique_ptr<HealthChecker>> HealthChecker::Start(ReportFn on_report,
                                                                    HealthCheckerOptions options) {
  if (options.script_user && options.script_user->uid == 0) {
    return absl::InvalidArgumentError("health checker: scripts must not run as uid 0");
  }
  if (!options.script_dir.empty() && options.script_dir[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("health checker: script directory ",
                                                   Quote(options.script_dir), " is not absolute"));
  }
  std::unique_ptr<HealthTunnelMap> tunnel_map;
  if (!options.tunnel_map_path.empty()) {
    auto opened = HealthTunnelMap::Open(options.tunnel_map_path);
    if (!opened.ok()) return opened.status();
    tunnel_map = std::move(*opened);
  }
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return absl::InternalError("health checker: epoll_create1: " + ErrnoText(errno));
  const int wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd < 0) {
    const int err = errno;
    close(epfd);
    return absl::InternalError("health checker: eventfd: " + ErrnoText(err));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeOp;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev) != 0) {
    const int err = errno;
    close(epfd);
    close(wakefd);
    return absl::InternalError("health checker: epoll_ctl: " + ErrnoText(err));
  }
  std::unique_ptr<HealthChecker> hc(new HealthChecker(
      std::make_unique<Loop>(std::move(on_report), options, std::move(tunnel_map), epfd, wakefd)));
  try {
    HealthChecker* self = hc.get();
    hc->thread_ = std::thread([self] { self->loop_->Run(&self->loop_tid_, &self->started_); });
  } catch (const std::system_error& e) {
    absl::MutexLock l(&hc->stop_mu_);
    hc->stopped_ = true;  // nothing to join
    return absl::InternalError(absl::StrCat("health checker: starting its thread: ", e.what()));
  }
  hc->started_.WaitForNotification();
  hc->has_cpu_clock_ = pthread_getcpuclockid(hc->thread_.native_handle(), &hc->cpu_clock_) == 0;
  return hc;
}

void HealthChecker::SetTargets(std::vector<HealthTarget> targets) {
  loop_->Post(std::move(targets));
}

std::vector<double> HealthChecker::DrainLatencyObservationsMs() {
  return loop_->DrainObservations();
}

absl::Duration HealthChecker::CpuTime() const {
  int64_t ns = loop_->final_cpu_ns();
  if (ns >= 0) return absl::Nanoseconds(ns);
  timespec ts;
  if (has_cpu_clock_ && clock_gettime(cpu_clock_, &ts) == 0) {
    return absl::Seconds(ts.tv_sec) + absl::Nanoseconds(ts.tv_nsec);
  }
  ns = loop_->final_cpu_ns();  // the thread exited in between
  return ns >= 0 ? absl::Nanoseconds(ns) : absl::ZeroDuration();
}

void HealthChecker::Stop() {
  {
    absl::MutexLock l(&stop_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  loop_->RequestStop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace lb
