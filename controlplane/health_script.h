// Script health checks: a check NAMES a script in --health_script_dir, it
// never gives a program, and the script runs as --health_script_user
// (never root), started without blocking the checker's loop.
//
// Contract
//  * script[0] is a file name (1-64 of [A-Za-z0-9_.-], no leading '.' or '-')
//    followed by at most 8 arguments of at most 256 visible-ASCII-or-space
//    bytes (the bounds of CheckHealthCheck in config.cc, checked again here
//    because nothing outside them may ever run, whoever built the target).
//  * Before every run the directory must be owned by root and not writable by
//    group/others, and the script, opened with O_NOFOLLOW relative to the
//    directory, must be a regular file owned by root, not writable by
//    group/others and executable by the script user; otherwise the check
//    fails naming the reason and nothing runs. The descriptor that was
//    checked is the one executed (fexecve, i.e. execveat AT_EMPTY_PATH): no
//    path is resolved twice.
//  * The child runs as the script user (its uid and gid, no supplementary
//    groups, PR_SET_NO_NEW_PRIVS) with argv = name, arguments, address, port;
//    environment PATH, LB_BACKEND_ADDRESS and LB_BACKEND_PORT only; stdin/
//    stdout/stderr on /dev/null, fd 3 = the script itself (how a "#!"
//    interpreter reads it, as /dev/fd/3), no other descriptor; in its own
//    process group; exit 0 = success. Kill() sends SIGKILL to the group.
//  * Launch does not wait for the exec: it forks and returns. The child
//    reports a failure before its exec (with the step and errno) through a
//    close-on-exec pipe; the parent reads that pipe only once the child has
//    exited (pidfd readable), when it holds either one whole record or EOF.
//    So "exec: Exec format error" is still reported by step, and the loop
//    never sleeps on a child.
//  * Children are reaped through pidfds (no SIGCHLD handler; with SIGCHLD
//    set to SIG_IGN the exit status is lost and every check fails). A run
//    holds two descriptors: the pidfd and the pipe. Needs Linux >= 5.3 (5.9
//    for close_range; older kernels close descriptors one by one).
//
// Threads: LookupScriptUser from any thread; the rest on the loop thread.
#ifndef LB_CONTROLPLANE_HEALTH_SCRIPT_H_
#define LB_CONTROLPLANE_HEALTH_SCRIPT_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/health_socket_probe.h"

namespace lb {

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

// "" when `script` is a script name and bounded arguments, else why not.
std::string ScriptArgvError(const std::vector<std::string>& script);

// One running script. Destroying it closes its descriptors; it does not kill
// or reap the child (Kill, then TryReap until true).
class ScriptRun {
 public:
  ScriptRun(pid_t pid, int pidfd, int error_fd) : pid_(pid), pidfd_(pidfd), error_fd_(error_fd) {}
  ~ScriptRun();
  ScriptRun(const ScriptRun&) = delete;
  ScriptRun& operator=(const ScriptRun&) = delete;

  // Readable (EPOLLIN) once the child has exited.
  int pidfd() const { return pidfd_; }
  // After the pidfd fired: kPending (spurious wake-up), kSucceeded (exit 0)
  // or kFailed with `error` ("exit status 1", "killed by signal 9",
  // "setresuid: Operation not permitted", "exec: Exec format error").
  ProbeStatus OnExit(std::string* error);
  // SIGKILL to its process group, then to the child itself.
  void Kill();
  // Collects the exit of a killed child; true once collected.
  bool TryReap();

 private:
  pid_t pid_;
  int pidfd_;
  int error_fd_;  // read end of the exec-error pipe
  bool reaped_ = false;
};

class ScriptLauncher {
 public:
  // `dir` empty or `user` unset: every Launch fails ("script checks are
  // disabled: ...").
  ScriptLauncher(std::string dir, std::optional<ScriptUser> user);

  // Checks and starts target.cfg.script with the target's address and port,
  // registers its pidfd in `epfd` (EPOLLIN) with epoll data `op`. nullptr and
  // `error` when nothing runs.
  std::unique_ptr<ScriptRun> Launch(const PreparedTarget& target, int epfd, uint64_t op,
                                    std::string* error) const;

 private:
  // Opens the script `name` after checking the directory and the file;
  // returns the descriptor (close-on-exec) or -1 and why it must not run.
  int OpenScript(const std::string& name, std::string* error) const;

  const std::string dir_;
  const std::optional<ScriptUser> user_;
  int close_limit_ = 0;  // for the child's close loop when close_range is missing
};

}  // namespace lb

#endif  // LB_CONTROLPLANE_HEALTH_SCRIPT_H_
