#include "controlplane/health_script.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controlplane/config.h"
#include "controlplane/health_target.h"

namespace lb {
namespace {

using health::ErrnoText;
using health::Quote;

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

// What a script child needs, all prepared before fork: the child only makes
// async-signal-safe calls (another thread may have held a lock at the fork).
struct ScriptChildArgs {
  int script_fd;  // the checked script, close-on-exec in the parent
  int null_fd;    // /dev/null, read-write
  int error_fd;   // write end of the exec-error pipe
  uid_t uid;
  gid_t gid;
  int close_limit;
  char* const* argv;
  char* const* envp;
};

// Where a script child failed before its exec, with errno; sent to the
// parent through the exec-error pipe (8 bytes: one atomic pipe write).
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

// Places the child's descriptors (see kScriptFd) and closes every other one.
void PlaceChildDescriptors(const ScriptChildArgs& a) {
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
}

// The forked child of a script check, up to its exec. Async-signal-safe calls
// only; the credential changes are raw syscalls so that no libc wrapper
// (glibc's set*id broadcast to "all threads") runs in the child.
[[noreturn]] void RunScriptChild(const ScriptChildArgs& a) {
  PlaceChildDescriptors(a);
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

// argv/envp strings of one run, and the pointer arrays execve wants.
struct ScriptCommand {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

void BuildCommand(const PreparedTarget& t, ScriptCommand* c) {
  c->args = t.cfg.script;
  c->args.push_back(t.spec.address);
  c->args.push_back(absl::StrCat(t.spec.port));
  c->env = {kScriptPath, absl::StrCat("LB_BACKEND_ADDRESS=", t.spec.address),
            absl::StrCat("LB_BACKEND_PORT=", t.spec.port)};
  for (std::string& a : c->args) c->argv.push_back(a.data());
  c->argv.push_back(nullptr);
  for (std::string& e : c->env) c->envp.push_back(e.data());
  c->envp.push_back(nullptr);
}

// Forks the child with every signal blocked (no handler of ours may run in
// the child before it resets the dispositions). Returns the pid or -1/errno.
pid_t ForkChild(const ScriptChildArgs& child) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = fork();
  if (pid == 0) RunScriptChild(child);
  const int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = fork_err;
  return pid;
}

}  // namespace

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

// ---------------------------------------------------------------- ScriptRun

ScriptRun::~ScriptRun() {
  if (pidfd_ >= 0) close(pidfd_);  // also leaves epoll
  if (error_fd_ >= 0) close(error_fd_);
}

ProbeStatus ScriptRun::OnExit(std::string* error) {
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return ProbeStatus::kPending;  // spurious wake-up: still running
  if (r < 0) {
    *error = "waitpid: " + ErrnoText(errno);
    Kill();
    return ProbeStatus::kFailed;
  }
  reaped_ = true;
  // The child has exited: the pipe holds its whole failure record or nothing
  // (EOF, closed by the exec or the exit). Non-blocking either way.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = read(error_fd_, &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  if (n == ssize_t(sizeof(failure))) {
    *error = absl::StrCat(StepName(failure.step), ": ", ErrnoText(failure.err));
    return ProbeStatus::kFailed;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ProbeStatus::kSucceeded;
  if (WIFEXITED(status)) {
    *error = absl::StrCat("exit status ", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    *error = absl::StrCat("killed by signal ", WTERMSIG(status));
  } else {
    *error = absl::StrCat("wait status ", status);
  }
  return ProbeStatus::kFailed;
}

void ScriptRun::Kill() {
  // The group first (anything the script started), then the child itself in
  // case it left its group. Never after the reap: the pid may be reused.
  if (reaped_) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
}

bool ScriptRun::TryReap() {
  if (reaped_) return true;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == 0) return false;
  reaped_ = true;  // or ECHILD: nothing left to collect
  return true;
}

// ----------------------------------------------------------- ScriptLauncher

ScriptLauncher::ScriptLauncher(std::string dir, std::optional<ScriptUser> user)
    : dir_(std::move(dir)), user_(user) {
  rlimit rl{};
  close_limit_ =
      int(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < kMaxCloseLoopFds ? rl.rlim_cur
                                                                               : kMaxCloseLoopFds);
}

int ScriptLauncher::OpenScript(const std::string& name, std::string* error) const {
  const std::string what = absl::StrCat("script ", Quote(name));
  const int dir = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    *error = absl::StrCat("script directory ", dir_, ": ", ErrnoText(errno));
    return -1;
  }
  struct stat st {};
  if (fstat(dir, &st) != 0) {
    *error = absl::StrCat("script directory ", dir_, ": fstat: ", ErrnoText(errno));
  } else {
    *error = RootOnlyError(st, absl::StrCat("script directory ", dir_));
  }
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
      *error = absl::StrCat(what, ": not found in ", dir_);
    } else if (open_err == ELOOP) {
      *error = absl::StrCat(what, ": is a symbolic link in ", dir_, " (links are not followed)");
    } else {
      *error = absl::StrCat(what, ": open: ", ErrnoText(open_err));
    }
    return -1;
  }
  if (fstat(fd, &st) != 0) {
    *error = absl::StrCat(what, ": fstat: ", ErrnoText(errno));
  } else if (!S_ISREG(st.st_mode)) {
    *error = absl::StrCat(what, ": not a regular file in ", dir_);
  } else {
    *error = RootOnlyError(st, what);
    // The script runs without supplementary groups: only its gid counts.
    const mode_t exec_bit = st.st_gid == user_->gid ? S_IXGRP : S_IXOTH;
    if (error->empty() && !(st.st_mode & exec_bit)) {
      *error = absl::StrFormat("%s: not executable by uid %u (mode %04o)", what, user_->uid,
                               st.st_mode & 07777);
    }
  }
  if (!error->empty()) {
    close(fd);
    return -1;
  }
  return fd;
}

std::unique_ptr<ScriptRun> ScriptLauncher::Launch(const PreparedTarget& t, int epfd, uint64_t op,
                                                  std::string* error) const {
  if (dir_.empty()) {
    *error = "script checks are disabled: no script directory configured";
    return nullptr;
  }
  if (!user_) {
    *error = "script checks are disabled: no script user configured";
    return nullptr;
  }
  const int script_fd = OpenScript(t.cfg.script[0], error);
  if (script_fd < 0) return nullptr;
  ScriptCommand cmd;
  BuildCommand(t, &cmd);
  const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  int pipe_fds[2] = {-1, -1};
  if (null_fd < 0 || pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    *error = absl::StrCat(null_fd < 0 ? "open /dev/null: " : "pipe: ", ErrnoText(errno));
    close(script_fd);
    if (null_fd >= 0) close(null_fd);
    return nullptr;
  }
  const ScriptChildArgs child{script_fd,  null_fd,      pipe_fds[1],     user_->uid,
                              user_->gid, close_limit_, cmd.argv.data(), cmd.envp.data()};
  const pid_t pid = ForkChild(child);
  const int fork_err = errno;
  close(script_fd);
  close(null_fd);
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    *error = "fork: " + ErrnoText(fork_err);
    return nullptr;
  }
  // The pidfd becomes readable when the child exits: reaping is an epoll
  // event like any other, without SIGCHLD.
  const int pidfd = int(syscall(SYS_pidfd_open, pid, 0));
  const char* failed = pidfd < 0 ? "pidfd_open: " : nullptr;
  int err = errno;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = op;
  if (!failed && epoll_ctl(epfd, EPOLL_CTL_ADD, pidfd, &ev) != 0) {
    failed = "epoll_ctl: ";
    err = errno;
  }
  auto run = std::make_unique<ScriptRun>(pid, pidfd, pipe_fds[0]);
  if (failed) {
    *error = absl::StrCat(failed, ErrnoText(err));
    run->Kill();
    int status;
    waitpid(pid, &status, 0);  // just killed: returns at once
    return nullptr;
  }
  return run;
}

}  // namespace lb
