#include "controlplane/health_checker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <queue>
#include <random>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "controlplane/config.h"

namespace lb {
namespace {

constexpr size_t kMaxObservations = size_t{1} << 20;
// A health endpoint's status line and headers must fit in this much.
constexpr size_t kMaxHeaderBytes = 16384;
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

// The script's environment: fixed, none of the control plane's.
constexpr char kScriptPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Descriptors of a script child after its set-up: 0-2 /dev/null, then
// kScriptFd (inherited across exec: a "#!" interpreter reads the script as
// /dev/fd/3; the kernel refuses to exec a script from a close-on-exec fd)
// and kExecErrorFd (close-on-exec: a failure before exec is written to it).
// Everything else is closed. kChildScratchFd is where the child first moves
// its inputs so that placing one cannot overwrite another.
constexpr int kScriptFd = 3;
constexpr int kExecErrorFd = 4;
constexpr int kChildScratchFd = 10;
// Without close_range (Linux < 5.9) the child closes up to this many fds.
constexpr rlim_t kMaxCloseLoopFds = 65536;

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint64_t UnixMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1'000'000;
}

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r: returns a pointer to the message (maybe not into buf).
  return strerror_r(err, buf, sizeof(buf));
}

// `s` in double quotes, bounded (QuoteBounded, config.h).
std::string Quote(absl::string_view s) { return absl::StrCat("\"", QuoteBounded(s), "\""); }

// "" when `script` is a script name and bounded arguments (the bounds of
// config.h, checked again here because nothing outside them may ever be
// executed, whoever built the target), else why not.
std::string ScriptArgvError(const std::vector<std::string>& script) {
  if (script.empty()) return "script: empty; expected a script name and its arguments";
  if (!IsScriptName(script[0])) {
    return absl::StrCat("script[0]: ", Quote(script[0]),
                        " is not a script name (1-64 characters of [A-Za-z0-9_.-], not "
                        "starting with '.' or '-')");
  }
  if (script.size() - 1 > kMaxScriptArgs) {
    return absl::StrCat("script: ", script.size() - 1, " arguments; at most ", kMaxScriptArgs);
  }
  for (size_t k = 1; k < script.size(); ++k) {
    const std::string& a = script[k];
    if (a.size() > kMaxScriptArgLen) {
      return absl::StrCat("script[", k, "]: ", a.size(), " bytes; at most ", kMaxScriptArgLen);
    }
    if (!IsScriptArg(a)) {
      return absl::StrCat("script[", k, "]: ", Quote(a),
                          " may contain only visible ASCII characters and spaces");
    }
  }
  return "";
}

bool IsCheckedKind(v1::HealthCheckKind kind) {
  return kind == v1::HEALTH_CHECK_KIND_TCP || kind == v1::HEALTH_CHECK_KIND_HTTP ||
         kind == v1::HEALTH_CHECK_KIND_SCRIPT;
}

// A HealthCheck with every zero replaced by its documented default.
struct Settings {
  v1::HealthCheckKind kind = v1::HEALTH_CHECK_KIND_UNSPECIFIED;
  uint32_t interval_ms = 0;
  uint32_t timeout_ms = 0;
  uint32_t healthy_threshold = 0;
  uint32_t unhealthy_threshold = 0;
  int64_t min_state_ns = 0;
  uint64_t max_body_bytes = 0;
  std::string path;
  std::string host;
  std::vector<std::string> script;
};

enum class Phase {
  kIdle,        // waiting for its next slot
  kConnecting,  // TCP/HTTP: non-blocking connect in progress
  kSending,     // HTTP: writing the request
  kReceiving,   // HTTP: reading status line, headers, body
  kRunning,     // script: child running, its pidfd in epoll
};

struct Target {
  HealthTarget spec;
  Settings cfg;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  // Non-empty when the target cannot be checked as configured; every check
  // then fails with this text.
  std::string config_error;
  std::string request;  // HTTP request bytes

  // Threshold / damping state.
  v1::HealthStatus status = v1::HEALTH_STATUS_UNKNOWN;
  uint32_t successes = 0;
  uint32_t failures = 0;
  uint64_t failed_checks = 0;
  bool changed_ever = false;
  int64_t last_change_ns = 0;
  std::string last_error;

  // The current (or next) check.
  Phase phase = Phase::kIdle;
  int64_t slot_ns = 0;   // when this check was scheduled to start
  int64_t start_ns = 0;  // when it actually started
  uint64_t timer_seq = 0;
  uint64_t op = 0;
  int fd = -1;  // socket, or pidfd of the script
  pid_t pid = -1;

  // HTTP response parsing.
  size_t sent = 0;
  std::string rbuf;
  bool have_status = false;
  bool have_headers = false;
  int64_t content_length = -1;
  uint64_t body_bytes = 0;
};

Settings Resolve(const HealthTarget& t) {
  const v1::HealthCheck& c = t.check;
  Settings s;
  s.kind = c.kind();
  s.interval_ms = c.interval_ms() ? c.interval_ms() : 5000;
  s.timeout_ms = c.timeout_ms() ? c.timeout_ms() : 3000;
  s.healthy_threshold = c.healthy_threshold() ? c.healthy_threshold() : 2;
  s.unhealthy_threshold = c.unhealthy_threshold() ? c.unhealthy_threshold() : 3;
  const uint64_t min_state_ms =
      c.min_state_duration_ms() ? c.min_state_duration_ms() : 2 * uint64_t{s.interval_ms};
  s.min_state_ns = int64_t(min_state_ms) * 1'000'000;
  s.max_body_bytes = c.http_max_body_bytes() ? c.http_max_body_bytes() : 4096;
  s.path = !t.http_path_override.empty() ? t.http_path_override
           : !c.http_path().empty()      ? c.http_path()
                                         : "/health";
  if (!c.http_host().empty()) {
    s.host = c.http_host();
  } else {
    s.host = absl::StrContains(t.address, ':') ? absl::StrCat("[", t.address, "]") : t.address;
    if (t.port != 80) absl::StrAppend(&s.host, ":", t.port);
  }
  s.script.assign(c.script().begin(), c.script().end());
  return s;
}

// What a check talks to and how; a target whose identity changes starts over.
bool SameIdentity(const Target& a, const Target& b) {
  return a.spec.address == b.spec.address && a.spec.port == b.spec.port &&
         a.cfg.kind == b.cfg.kind && a.cfg.path == b.cfg.path && a.cfg.host == b.cfg.host &&
         a.cfg.script == b.cfg.script;
}

bool HasCrLf(absl::string_view s) {
  return s.find('\r') != absl::string_view::npos || s.find('\n') != absl::string_view::npos;
}

std::unique_ptr<Target> MakeTarget(const HealthTarget& spec) {
  auto t = std::make_unique<Target>();
  t->spec = spec;
  t->cfg = Resolve(spec);
  if (t->cfg.kind != v1::HEALTH_CHECK_KIND_SCRIPT) {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&t->addr);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&t->addr);
    if (inet_pton(AF_INET, spec.address.c_str(), &in4->sin_addr) == 1) {
      in4->sin_family = AF_INET;
      in4->sin_port = htons(spec.port);
      t->addr_len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, spec.address.c_str(), &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(spec.port);
      t->addr_len = sizeof(sockaddr_in6);
    } else {
      t->config_error =
          absl::StrCat("address: \"", spec.address, "\" is not an IPv4 or IPv6 literal");
    }
  }
  if (t->cfg.kind == v1::HEALTH_CHECK_KIND_HTTP && t->config_error.empty()) {
    if (t->cfg.path.empty() || t->cfg.path[0] != '/' || HasCrLf(t->cfg.path) ||
        absl::StrContains(t->cfg.path, ' ')) {
      t->config_error = absl::StrCat("http_path: \"", absl::CEscape(t->cfg.path),
                                     "\" must start with '/' and contain no space, CR or LF");
    } else if (HasCrLf(t->cfg.host)) {
      t->config_error = "http_host: must not contain CR or LF";
    } else {
      t->request = absl::StrCat("GET ", t->cfg.path, " HTTP/1.1\r\nHost: ", t->cfg.host,
                                "\r\nUser-Agent: lb-healthcheck/1\r\nAccept: */*\r\n"
                                "Connection: close\r\n\r\n");
    }
  }
  if (t->cfg.kind == v1::HEALTH_CHECK_KIND_SCRIPT) t->config_error = ScriptArgvError(t->cfg.script);
  return t;
}

// "HTTP/1.1 503 Service Unavailable" -> 503; nullopt when malformed.
std::optional<int> ParseStatusLine(absl::string_view line) {
  if (!absl::ConsumePrefix(&line, "HTTP/")) return std::nullopt;
  const size_t sp = line.find(' ');
  if (sp == absl::string_view::npos || line.size() < sp + 4) return std::nullopt;
  int code = 0;
  for (size_t i = sp + 1; i < sp + 4; ++i) {
    if (!absl::ascii_isdigit(line[i])) return std::nullopt;
    code = code * 10 + (line[i] - '0');
  }
  if (line.size() > sp + 4 && line[sp + 4] != ' ') return std::nullopt;
  return code;
}

// Content-Length from a header block, -1 when absent or unparsable.
int64_t ParseContentLength(absl::string_view headers) {
  while (!headers.empty()) {
    size_t eol = headers.find('\n');
    absl::string_view line = headers.substr(0, eol);
    headers = eol == absl::string_view::npos ? absl::string_view() : headers.substr(eol + 1);
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)),
                                "content-length")) {
      continue;
    }
    int64_t v = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &v) && v >= 0) {
      return v;
    }
    return -1;
  }
  return -1;
}

struct Timer {
  int64_t when_ns;
  uint64_t seq;
  uint32_t backend_id;
  bool operator>(const Timer& o) const {
    return when_ns != o.when_ns ? when_ns > o.when_ns : seq > o.seq;
  }
};

// A killed script whose exit we still have to collect.
struct Orphan {
  pid_t pid;
  int pidfd;
};

// What a script child needs, all prepared before fork: the child only makes
// async-signal-safe calls (another thread may have held a lock at the fork).
struct ScriptChildArgs {
  int script_fd;  // the checked script, close-on-exec in the parent
  int null_fd;    // /dev/null, read-write
  int error_fd;   // write end of the exec-error pipe
  uid_t uid;
  gid_t gid;
  int close_limit;  // for the close loop when close_range is missing
  char* const* argv;
  char* const* envp;
};

// Where a script child failed before its exec, with errno; sent to the
// parent through the exec-error pipe.
enum class ChildStep : int32_t {
  kDescriptors = 1,
  kProcessGroup,
  kGroups,
  kGid,
  kUid,
  kNoNewPrivs,
  kSignalMask,
  kExec,
};

struct ChildFailure {
  ChildStep step;
  int32_t err;
};

const char* StepName(ChildStep step) {
  switch (step) {
    case ChildStep::kDescriptors:
      return "descriptors";
    case ChildStep::kProcessGroup:
      return "setpgid";
    case ChildStep::kGroups:
      return "setgroups";
    case ChildStep::kGid:
      return "setresgid";
    case ChildStep::kUid:
      return "setresuid";
    case ChildStep::kNoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS)";
    case ChildStep::kSignalMask:
      return "sigprocmask";
    case ChildStep::kExec:
      return "exec";
  }
  return "child";
}

[[noreturn]] void ChildFail(int fd, ChildStep step) {
  const ChildFailure f{step, errno};
  ssize_t n = write(fd, &f, sizeof(f));
  (void)n;
  _exit(127);
}

// The forked child of a script check, up to its exec. Async-signal-safe calls
// only; the credential changes are raw syscalls so that no libc wrapper
// (glibc's set*id broadcast to "all threads") runs in the child.
[[noreturn]] void RunScriptChild(const ScriptChildArgs& a) {
  // Move the inputs above everything we are about to place, then place them.
  const int err_fd = fcntl(a.error_fd, F_DUPFD_CLOEXEC, kChildScratchFd);
  if (err_fd < 0) ChildFail(a.error_fd, ChildStep::kDescriptors);
  const int script_fd = fcntl(a.script_fd, F_DUPFD, kChildScratchFd);
  const int null_fd = fcntl(a.null_fd, F_DUPFD, kChildScratchFd);
  if (script_fd < 0 || null_fd < 0) ChildFail(err_fd, ChildStep::kDescriptors);
  // dup2/dup3 onto a different number clears close-on-exec on the new fd
  // (dup3 sets it again for the error pipe).
  if (dup3(err_fd, kExecErrorFd, O_CLOEXEC) < 0) ChildFail(err_fd, ChildStep::kDescriptors);
  if (dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0 ||
      dup2(script_fd, kScriptFd) < 0) {
    ChildFail(kExecErrorFd, ChildStep::kDescriptors);
  }
  // Nothing else crosses the exec: our descriptors are close-on-exec, but
  // another thread's may not be.
#ifdef SYS_close_range
  if (syscall(SYS_close_range, kExecErrorFd + 1, ~0U, 0) != 0)
#endif
  {
    for (int fd = kExecErrorFd + 1; fd < a.close_limit; ++fd) close(fd);
  }

  // Its own process group, so a timeout kills whatever it started too.
  if (setpgid(0, 0) != 0) ChildFail(kExecErrorFd, ChildStep::kProcessGroup);

  // Handlers would be reset by exec anyway; ignored signals would not be.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);  // EINVAL: not ours
  }

  // Drop root for good: groups first (needs CAP_SETGID), then the gid, then
  // the uid, which takes every capability with it.
  if (syscall(SYS_setgroups, 0, nullptr) != 0) ChildFail(kExecErrorFd, ChildStep::kGroups);
  if (syscall(SYS_setresgid, a.gid, a.gid, a.gid) != 0) ChildFail(kExecErrorFd, ChildStep::kGid);
  if (syscall(SYS_setresuid, a.uid, a.uid, a.uid) != 0) ChildFail(kExecErrorFd, ChildStep::kUid);
  // No set-uid/set-gid binary or file capability can take it back.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ChildFail(kExecErrorFd, ChildStep::kNoNewPrivs);

  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) {
    ChildFail(kExecErrorFd, ChildStep::kSignalMask);
  }
  // The very file that was checked: execveat(fd, "", AT_EMPTY_PATH).
  fexecve(kScriptFd, a.argv, a.envp);
  ChildFail(kExecErrorFd, ChildStep::kExec);
}

// "" when `st` is owned by root and not writable by group or others.
std::string RootOnlyError(const struct stat& st, absl::string_view what) {
  if (st.st_uid != 0) return absl::StrCat(what, ": owned by uid ", st.st_uid, ", not root");
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    return absl::StrFormat("%s: writable by group/others (mode %04o)", what, st.st_mode & 07777);
  }
  return "";
}

}  // namespace

// Everything the loop thread owns. Only the members under mu_/obs_mu_ and the
// atomics are touched by other threads.
class HealthChecker::Loop {
 public:
  Loop(ReportFn on_report, HealthCheckerOptions options, int epfd, int wakefd)
      : on_report_(std::move(on_report)),
        options_(std::move(options)),
        epfd_(epfd),
        wakefd_(wakefd),
        rng_(std::random_device{}() ^ uint64_t(MonoNs())) {
    rlimit rl{};
    close_limit_ = int(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < kMaxCloseLoopFds
                           ? rl.rlim_cur
                           : kMaxCloseLoopFds);
  }

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

  // Returns true when the loop must stop.
  bool ApplyPending();
  int NextTimeoutMs(int64_t now);
  void RunTimers();
  void HandleEvent(uint64_t op, uint32_t events);

  void ScheduleFirst(Target& t, int64_t now);
  void SetTimer(Target& t, int64_t when_ns);
  void StartCheck(Target& t, int64_t slot_ns);
  void StartSocketCheck(Target& t);
  void StartScript(Target& t);
  // Opens the script `name` after checking the directory and the file;
  // returns the descriptor (close-on-exec) or the reason it must not run.
  int OpenScript(const std::string& name, std::string* error) const;
  void OnSocket(Target& t, uint32_t events);
  void SendRequest(Target& t);
  void Receive(Target& t);
  // Returns true when the check completed.
  bool ConsumeHttp(Target& t, const char* data, size_t n);
  void OnChildExit(Target& t);
  void OnTimeout(Target& t);
  void Complete(Target& t, bool ok, std::string error);
  // Drops whatever the target has in flight, without a report.
  void Abandon(Target& t);
  void KillScript(Target& t);
  void ReapOrphan(uint64_t op);
  void Shutdown();

  const ReportFn on_report_;
  const HealthCheckerOptions options_;
  int close_limit_ = 0;
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
  std::unordered_map<uint64_t, Orphan> orphans_;
};

void HealthChecker::Loop::Run(std::atomic<pid_t>* tid, absl::Notification* started) {
  tid->store(pid_t(syscall(SYS_gettid)), std::memory_order_release);
  pthread_setname_np(pthread_self(), "lb-health");
  started->Notify();

  epoll_event events[kMaxEvents];
  for (;;) {
    int n = epoll_wait(epfd_, events, kMaxEvents, NextTimeoutMs(MonoNs()));
    if (n < 0 && errno != EINTR) break;  // EBADF/EINVAL: our own bug; stop checking
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
    if (wake && ApplyPending()) break;
    RunTimers();
  }
  Shutdown();

  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  const int64_t ns = (int64_t{ru.ru_utime.tv_sec} + ru.ru_stime.tv_sec) * 1'000'000'000 +
                     (int64_t{ru.ru_utime.tv_usec} + ru.ru_stime.tv_usec) * 1000;
  final_cpu_ns_.store(ns, std::memory_order_release);
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
  const int64_t now = MonoNs();
  std::unordered_map<uint32_t, std::unique_ptr<Target>> next;
  next.reserve(specs->size());
  for (HealthTarget& spec : *specs) {
    if (!IsCheckedKind(spec.check.kind())) continue;
    if (next.count(spec.backend_id)) continue;  // duplicate id: the first wins
    std::unique_ptr<Target> fresh = MakeTarget(spec);
    auto it = targets_.find(spec.backend_id);
    if (it != targets_.end() && SameIdentity(*it->second, *fresh)) {
      std::unique_ptr<Target> kept = std::move(it->second);
      targets_.erase(it);
      const bool interval_changed = kept->cfg.interval_ms != fresh->cfg.interval_ms;
      kept->spec = std::move(fresh->spec);
      kept->cfg = std::move(fresh->cfg);
      if (interval_changed && kept->phase == Phase::kIdle) ScheduleFirst(*kept, now);
      next.emplace(spec.backend_id, std::move(kept));
    } else {
      ScheduleFirst(*fresh, now);
      next.emplace(spec.backend_id, std::move(fresh));
    }
  }
  for (auto& [id, t] : targets_) Abandon(*t);
  targets_.swap(next);
  int64_t min_interval_ns = kMaxTickNs * kTicksPerInterval;
  for (auto& [id, t] : targets_) {
    min_interval_ns = std::min(min_interval_ns, int64_t{t->cfg.interval_ms} * 1'000'000);
  }
  tick_ns_ = std::clamp(min_interval_ns / kTicksPerInterval, kMinTickNs, kMaxTickNs);
  return false;
}

void HealthChecker::Loop::SetTimer(Target& t, int64_t when_ns) {
  t.timer_seq = ++timer_seq_;
  timers_.push(Timer{when_ns, t.timer_seq, t.spec.backend_id});
}

void HealthChecker::Loop::ScheduleFirst(Target& t, int64_t now) {
  // Spread first checks uniformly over one interval.
  std::uniform_int_distribution<int64_t> jitter(0, int64_t{t.cfg.interval_ms} * 1'000'000 - 1);
  SetTimer(t, now + jitter(rng_));
}

void HealthChecker::Loop::RunTimers() {
  const int64_t now = MonoNs();
  while (!timers_.empty() && timers_.top().when_ns <= now) {
    const Timer timer = timers_.top();
    timers_.pop();
    auto it = targets_.find(timer.backend_id);
    if (it == targets_.end() || it->second->timer_seq != timer.seq) continue;  // stale
    Target& t = *it->second;
    if (t.phase == Phase::kIdle) {
      StartCheck(t, timer.when_ns);
    } else {
      OnTimeout(t);
    }
  }
}

void HealthChecker::Loop::StartCheck(Target& t, int64_t slot_ns) {
  t.slot_ns = slot_ns;
  t.start_ns = MonoNs();
  t.op = ++op_seq_;
  t.sent = 0;
  t.rbuf.clear();
  t.have_status = t.have_headers = false;
  t.content_length = -1;
  t.body_bytes = 0;
  // The timeout timer goes first: a check that completes synchronously
  // replaces it with its next slot.
  SetTimer(t, t.start_ns + int64_t{t.cfg.timeout_ms} * 1'000'000);
  if (!t.config_error.empty()) {
    Complete(t, false, t.config_error);
    return;
  }
  if (t.cfg.kind == v1::HEALTH_CHECK_KIND_SCRIPT) {
    StartScript(t);
  } else {
    StartSocketCheck(t);
  }
}

void HealthChecker::Loop::StartSocketCheck(Target& t) {
  t.fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (t.fd < 0) {
    Complete(t, false, "socket: " + ErrnoText(errno));
    return;
  }
  // Close with RST: no TIME_WAIT per check on this host.
  const linger lg{1, 0};
  setsockopt(t.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  if (connect(t.fd, reinterpret_cast<const sockaddr*>(&t.addr), t.addr_len) != 0 &&
      errno != EINPROGRESS) {
    Complete(t, false, "connect: " + ErrnoText(errno));
    return;
  }
  // Registered after connect() so that the first readiness seen is the
  // connect's (an unconnected socket polls as writable). Edge-triggered on
  // both directions: no EPOLL_CTL_MOD between the connect, send and receive
  // steps; each step runs until EAGAIN.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = t.op;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, t.fd, &ev) != 0) {
    Complete(t, false, "epoll_ctl: " + ErrnoText(errno));
    return;
  }
  op_owner_.emplace(t.op, t.spec.backend_id);
  t.phase = Phase::kConnecting;
}

int HealthChecker::Loop::OpenScript(const std::string& name, std::string* error) const {
  const std::string& dir_path = options_.script_dir;
  const std::string what = absl::StrCat("script ", Quote(name));
  const int dir = open(dir_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    *error = absl::StrCat("script directory ", dir_path, ": ", ErrnoText(errno));
    return -1;
  }
  struct stat st {};
  if (fstat(dir, &st) != 0) {
    *error = absl::StrCat("script directory ", dir_path, ": fstat: ", ErrnoText(errno));
    close(dir);
    return -1;
  }
  *error = RootOnlyError(st, absl::StrCat("script directory ", dir_path));
  if (!error->empty()) {
    close(dir);
    return -1;
  }
  // Relative to the directory just checked, never through a symbolic link.
  // O_NONBLOCK: a FIFO planted there must not hang the loop.
  const int fd =
      openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  const int open_err = errno;
  close(dir);
  if (fd < 0) {
    if (open_err == ENOENT) {
      *error = absl::StrCat(what, ": not found in ", dir_path);
    } else if (open_err == ELOOP) {
      *error =
          absl::StrCat(what, ": is a symbolic link in ", dir_path, " (links are not followed)");
    } else {
      *error = absl::StrCat(what, ": open: ", ErrnoText(open_err));
    }
    return -1;
  }
  if (fstat(fd, &st) != 0) {
    *error = absl::StrCat(what, ": fstat: ", ErrnoText(errno));
  } else if (!S_ISREG(st.st_mode)) {
    *error = absl::StrCat(what, ": not a regular file in ", dir_path);
  } else {
    *error = RootOnlyError(st, what);
    // The script runs without supplementary groups: only its gid counts.
    const ScriptUser& user = *options_.script_user;
    const mode_t exec_bit = st.st_gid == user.gid ? S_IXGRP : S_IXOTH;
    if (error->empty() && !(st.st_mode & exec_bit)) {
      *error = absl::StrFormat("%s: not executable by uid %u (mode %04o)", what, user.uid,
                               st.st_mode & 07777);
    }
  }
  if (!error->empty()) {
    close(fd);
    return -1;
  }
  return fd;
}

void HealthChecker::Loop::StartScript(Target& t) {
  if (options_.script_dir.empty() || !options_.script_user) {
    Complete(t, false,
             options_.script_dir.empty()
                 ? "script checks are disabled: no script directory configured"
                 : "script checks are disabled: no script user configured");
    return;
  }
  std::string error;
  const int script_fd = OpenScript(t.cfg.script[0], &error);
  if (script_fd < 0) {
    Complete(t, false, std::move(error));
    return;
  }

  std::vector<std::string> args = t.cfg.script;
  args.push_back(t.spec.address);
  args.push_back(absl::StrCat(t.spec.port));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = {
      kScriptPath,
      absl::StrCat("LB_BACKEND_ADDRESS=", t.spec.address),
      absl::StrCat("LB_BACKEND_PORT=", t.spec.port),
  };
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) {
    const int err = errno;
    close(script_fd);
    Complete(t, false, "open /dev/null: " + ErrnoText(err));
    return;
  }
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(script_fd);
    close(null_fd);
    Complete(t, false, "pipe: " + ErrnoText(err));
    return;
  }
  const ScriptChildArgs child{script_fd,
                              null_fd,
                              error_pipe[1],
                              options_.script_user->uid,
                              options_.script_user->gid,
                              close_limit_,
                              argv.data(),
                              envp.data()};
  // Every signal blocked across the fork: no handler of ours may run in the
  // child before it resets the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = fork();
  if (pid == 0) RunScriptChild(child);
  const int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(script_fd);
  close(null_fd);
  close(error_pipe[1]);
  if (pid < 0) {
    close(error_pipe[0]);
    Complete(t, false, "fork: " + ErrnoText(fork_err));
    return;
  }
  // Wait for the exec, like posix_spawn: EOF = the pipe closed on exec (or
  // the child died, which its exit status tells); a record = a failed step.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = read(error_pipe[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n == ssize_t(sizeof(failure))) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    Complete(t, false, absl::StrCat(StepName(failure.step), ": ", ErrnoText(failure.err)));
    return;
  }
  t.pid = pid;
  t.phase = Phase::kRunning;
  // The pidfd becomes readable when the child exits: reaping is an epoll
  // event like any other, without SIGCHLD.
  t.fd = int(syscall(SYS_pidfd_open, pid, 0));
  if (t.fd < 0) {
    const int err = errno;
    KillScript(t);
    int status;
    waitpid(pid, &status, 0);  // just killed: returns at once
    t.pid = -1;
    Complete(t, false, "pidfd_open: " + ErrnoText(err));
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = t.op;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, t.fd, &ev) != 0) {
    const int err = errno;
    KillScript(t);
    int status;
    waitpid(pid, &status, 0);
    t.pid = -1;
    Complete(t, false, "epoll_ctl: " + ErrnoText(err));
    return;
  }
  op_owner_.emplace(t.op, t.spec.backend_id);
}

void HealthChecker::Loop::HandleEvent(uint64_t op, uint32_t events) {
  if (!orphans_.empty() && orphans_.count(op)) {
    ReapOrphan(op);
    return;
  }
  auto owner = op_owner_.find(op);
  if (owner == op_owner_.end()) return;  // finished or abandoned earlier
  auto it = targets_.find(owner->second);
  if (it == targets_.end() || it->second->op != op) return;
  Target& t = *it->second;
  if (t.phase == Phase::kRunning) {
    OnChildExit(t);
  } else if (t.phase != Phase::kIdle) {
    OnSocket(t, events);
  }
}

void HealthChecker::Loop::OnSocket(Target& t, uint32_t events) {
  if (t.phase == Phase::kConnecting) {
    // Writable without error/hang-up is a completed connect; only the error
    // case costs a getsockopt.
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(t.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      Complete(t, false, "connect: " + ErrnoText(err != 0 ? err : ECONNRESET));
      return;
    }
    if (!(events & EPOLLOUT)) return;  // not connected yet
    if (t.cfg.kind == v1::HEALTH_CHECK_KIND_TCP) {
      Complete(t, true, "");
      return;
    }
    t.phase = Phase::kSending;
  }
  if (t.phase == Phase::kSending) {
    SendRequest(t);
    if (t.phase != Phase::kReceiving) return;
  }
  if (t.phase == Phase::kReceiving) Receive(t);
}

void HealthChecker::Loop::SendRequest(Target& t) {
  while (t.sent < t.request.size()) {
    const ssize_t n =
        send(t.fd, t.request.data() + t.sent, t.request.size() - t.sent, MSG_NOSIGNAL);
    if (n >= 0) {
      t.sent += size_t(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;  // the next EPOLLOUT edge resumes
    } else {
      Complete(t, false, "send: " + ErrnoText(errno));
      return;
    }
  }
  t.phase = Phase::kReceiving;
}

void HealthChecker::Loop::Receive(Target& t) {
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(t.fd, buf, sizeof(buf), 0);
    if (n > 0) {
      if (ConsumeHttp(t, buf, size_t(n))) return;
    } else if (n == 0) {
      if (t.have_status) {
        Complete(t, true, "");  // 2xx, body shorter than announced or unannounced
      } else {
        Complete(t, false, "connection closed before the status line");
      }
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      Complete(t, false, "recv: " + ErrnoText(errno));
      return;
    }
  }
}

bool HealthChecker::Loop::ConsumeHttp(Target& t, const char* data, size_t n) {
  if (!t.have_headers) {
    const size_t old = t.rbuf.size();
    t.rbuf.append(data, n);
    if (!t.have_status) {
      const size_t eol = t.rbuf.find('\n');
      if (eol == std::string::npos) {
        if (t.rbuf.size() > kMaxHeaderBytes) {
          Complete(t, false, absl::StrCat("status line exceeds ", kMaxHeaderBytes, " bytes"));
          return true;
        }
        return false;
      }
      absl::string_view line(t.rbuf.data(), eol);
      absl::ConsumeSuffix(&line, "\r");
      const std::optional<int> code = ParseStatusLine(line);
      if (!code) {
        Complete(
            t, false,
            absl::StrCat("malformed status line \"", absl::CHexEscape(line.substr(0, 64)), "\""));
        return true;
      }
      if (*code < 200 || *code > 299) {
        Complete(t, false, absl::StrCat("HTTP ", *code));
        return true;
      }
      t.have_status = true;
    }
    // The end of the headers may straddle reads: search from 3 bytes back.
    const size_t from = old >= 3 ? old - 3 : 0;
    size_t end = t.rbuf.find("\r\n\r\n", from);
    size_t sep = 4;
    if (end == std::string::npos) {
      end = t.rbuf.find("\n\n", from);
      sep = 2;
    }
    if (end == std::string::npos) {
      if (t.rbuf.size() > kMaxHeaderBytes) {
        Complete(t, false, absl::StrCat("response headers exceed ", kMaxHeaderBytes, " bytes"));
        return true;
      }
      return false;
    }
    t.have_headers = true;
    t.content_length = ParseContentLength(absl::string_view(t.rbuf.data(), end));
    t.body_bytes = t.rbuf.size() - (end + sep);
    t.rbuf.clear();
  } else {
    t.body_bytes += n;
  }
  // The body is read, never stored, up to the configured limit.
  if (t.body_bytes >= t.cfg.max_body_bytes ||
      (t.content_length >= 0 && t.body_bytes >= uint64_t(t.content_length))) {
    Complete(t, true, "");
    return true;
  }
  return false;
}

void HealthChecker::Loop::OnChildExit(Target& t) {
  int status = 0;
  const pid_t r = waitpid(t.pid, &status, WNOHANG);
  if (r == 0) return;  // spurious wake-up: still running
  if (r < 0) {
    const int err = errno;
    KillScript(t);
    t.pid = -1;
    Complete(t, false, "waitpid: " + ErrnoText(err));
    return;
  }
  t.pid = -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    Complete(t, true, "");
  } else if (WIFEXITED(status)) {
    Complete(t, false, absl::StrCat("exit status ", WEXITSTATUS(status)));
  } else if (WIFSIGNALED(status)) {
    Complete(t, false, absl::StrCat("killed by signal ", WTERMSIG(status)));
  } else {
    Complete(t, false, absl::StrCat("wait status ", status));
  }
}

void HealthChecker::Loop::KillScript(Target& t) {
  // The group first (anything the script started), then the child itself in
  // case it left its group.
  if (t.pid > 0) {
    kill(-t.pid, SIGKILL);
    kill(t.pid, SIGKILL);
  }
}

void HealthChecker::Loop::OnTimeout(Target& t) {
  std::string error = absl::StrCat("timeout after ", t.cfg.timeout_ms, " ms");
  if (t.phase == Phase::kRunning) {
    KillScript(t);
    // Its exit is collected later through the pidfd, off this check.
    orphans_.emplace(t.op, Orphan{t.pid, t.fd});
    op_owner_.erase(t.op);
    t.pid = -1;
    t.fd = -1;
  }
  Complete(t, false, std::move(error));
}

void HealthChecker::Loop::ReapOrphan(uint64_t op) {
  auto it = orphans_.find(op);
  int status;
  const pid_t r = waitpid(it->second.pid, &status, WNOHANG);
  if (r == 0) return;
  close(it->second.pidfd);
  orphans_.erase(it);
}

void HealthChecker::Loop::Abandon(Target& t) {
  if (t.phase == Phase::kRunning && t.pid > 0) {
    KillScript(t);
    orphans_.emplace(t.op, Orphan{t.pid, t.fd});
    t.pid = -1;
    t.fd = -1;
  }
  if (t.fd >= 0) {
    close(t.fd);
    t.fd = -1;
  }
  op_owner_.erase(t.op);
  t.phase = Phase::kIdle;
}

void HealthChecker::Loop::Complete(Target& t, bool ok, std::string error) {
  if (t.fd >= 0) {
    close(t.fd);  // also leaves epoll
    t.fd = -1;
  }
  op_owner_.erase(t.op);
  t.phase = Phase::kIdle;
  t.rbuf.clear();
  const int64_t now = MonoNs();
  const double latency_ms = double(now - t.start_ns) / 1e6;

  if (ok) {
    ++t.successes;
    t.failures = 0;
  } else {
    ++t.failures;
    t.successes = 0;
    ++t.failed_checks;
    t.last_error = std::move(error);
  }
  // Damping: no second change within min_state_duration of the previous one;
  // the counts keep running meanwhile.
  const bool damped = t.changed_ever && now - t.last_change_ns < t.cfg.min_state_ns;
  if (!damped) {
    v1::HealthStatus next = t.status;
    if (ok && t.successes >= t.cfg.healthy_threshold) next = v1::HEALTH_STATUS_HEALTHY;
    if (!ok && t.failures >= t.cfg.unhealthy_threshold) next = v1::HEALTH_STATUS_UNHEALTHY;
    if (next != t.status) {
      t.status = next;
      t.changed_ever = true;
      t.last_change_ns = now;
    }
  }

  // Fixed cadence from the scheduled slot. Slots already past (a check that
  // ran longer than its interval, a stalled loop) are skipped rather than
  // caught up in a burst.
  const int64_t interval_ns = int64_t{t.cfg.interval_ms} * 1'000'000;
  int64_t next_slot = t.slot_ns + interval_ns;
  if (next_slot <= now) next_slot += ((now - next_slot) / interval_ns + 1) * interval_ns;
  SetTimer(t, next_slot);

  {
    absl::MutexLock l(&obs_mu_);
    if (observations_.size() < kMaxObservations) observations_.push_back(latency_ms);
  }

  HealthReport report;
  report.backend_id = t.spec.backend_id;
  report.status = t.status;
  report.check_unix_ms = UnixMs();
  report.latency_ms = latency_ms;
  report.consecutive_successes = t.successes;
  report.consecutive_failures = t.failures;
  report.failed_checks = t.failed_checks;
  report.last_error = t.last_error;
  if (on_report_) on_report_(report);
}

void HealthChecker::Loop::Shutdown() {
  for (auto& [id, t] : targets_) Abandon(*t);
  targets_.clear();
  // Killed scripts exit promptly; collect them so no zombie outlives us.
  const int64_t deadline = MonoNs() + kReapOnStopNs;
  while (!orphans_.empty() && MonoNs() < deadline) {
    for (auto it = orphans_.begin(); it != orphans_.end();) {
      int status;
      if (waitpid(it->second.pid, &status, WNOHANG) != 0) {
        close(it->second.pidfd);
        it = orphans_.erase(it);
      } else {
        ++it;
      }
    }
    if (!orphans_.empty()) usleep(1000);
  }
  for (auto& [op, o] : orphans_) close(o.pidfd);
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
      std::make_unique<Loop>(std::move(on_report), std::move(options), epfd, wakefd)));
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

absl::StatusOr<ScriptUser> LookupScriptUser(const std::string& name) {
  long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(hint > 0 ? size_t(hint) : 16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc;
  while ((rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found)) == ERANGE &&
         buf.size() < (size_t{1} << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("looking up user ", Quote(name), ": ", ErrnoText(rc)));
  }
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("no user ", Quote(name)));
  if (pw.pw_uid == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("user ", Quote(name), " is uid 0: health-check scripts never run as root"));
  }
  return ScriptUser{pw.pw_uid, pw.pw_gid};
}

std::vector<HealthTarget> TargetsFromConfig(const v1::Config& config) {
  std::vector<HealthTarget> out;
  for (const v1::Pool& pool : config.pools()) {
    if (!IsCheckedKind(pool.health_check().kind())) continue;
    for (const v1::Backend& b : pool.backends()) {
      if (b.id() == 0) continue;
      HealthTarget t;
      t.backend_id = b.id();
      t.address = b.address();
      t.port = uint16_t(b.port());
      t.check = pool.health_check();
      t.http_path_override = b.health_check_path();
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace lb
