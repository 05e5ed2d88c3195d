#include "controlplane/bgp_announcer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/clock.h"
#include "glog/logging.h"

extern char** environ;

namespace lb {
namespace {

// "a.b.c.d/32" or "x::y/128"; empty for an address that does not parse.
std::string HostPrefix(const std::string& address) {
  in_addr a4;
  in6_addr a6;
  char buf[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, address.c_str(), &a4) == 1) {
    inet_ntop(AF_INET, &a4, buf, sizeof(buf));
    return absl::StrCat(buf, "/32");
  }
  if (inet_pton(AF_INET6, address.c_str(), &a6) == 1) {
    inet_ntop(AF_INET6, &a6, buf, sizeof(buf));
    return absl::StrCat(buf, "/128");
  }
  return "";
}

bool FileExists(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0;
}

// Runs argv, returns its exit status (-1 when it could not run) and its
// stdout + stderr in *out.
int RunCapture(const std::vector<std::string>& args, std::string* out) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *out = absl::StrCat("pipe: ", std::strerror(errno));
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    *out = absl::StrCat("cannot run ", args[0], ": ", std::strerror(rc));
    return -1;
  }
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0 && out->size() < 4096) out->append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

Announcement DecideAnnouncement(bool dataplane_alive, const std::string& dataplane_why,
                                bool drained, const std::vector<v1::VipStatus>& vips) {
  Announcement a;
  if (drained) {
    a.why_none = "node drained";
    return a;
  }
  if (!dataplane_alive) {
    a.why_none = absl::StrCat("dataplane not alive: ", dataplane_why);
    return a;
  }
  for (const v1::VipStatus& v : vips) {
    if (v.active_members() == 0) continue;
    std::string p = HostPrefix(v.vip().address());
    if (!p.empty()) a.prefixes.insert(std::move(p));
  }
  if (a.prefixes.empty()) a.why_none = vips.empty() ? "no VIPs" : "no VIP has a healthy backend";
  return a;
}

std::string RenderBirdRoutes(const std::string& protocol, const std::set<std::string>& prefixes) {
  std::string v4, v6;
  for (const std::string& p : prefixes) {
    absl::StrAppend(absl::StrContains(p, ':') ? &v6 : &v4, "  route ", p, " blackhole;\n");
  }
  return absl::StrCat(
      "# Written by lb-controlplane (BGP announcer); do not edit: replaced on every change.\n"
      "# The VIPs this node announces: its dataplane is alive and each has a healthy backend.\n"
      "protocol static ",
      protocol, "4 {\n  ipv4;\n", v4, "}\nprotocol static ", protocol, "6 {\n  ipv6;\n", v6, "}\n");
}

BgpAnnouncer::BgpAnnouncer(BgpAnnouncerOptions options, VipSource vips, const DataplaneView* view)
    : opt_(std::move(options)), vips_(std::move(vips)), view_(view) {}

BgpAnnouncer::~BgpAnnouncer() { Stop(false); }

absl::Status BgpAnnouncer::Start() {
  if (opt_.routes_file.empty() || opt_.routes_file[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--bgp_routes_file: \"", opt_.routes_file, "\" is not an absolute path"));
  }
  if (opt_.bird_socket.empty()) {
    return absl::InvalidArgumentError(
        "--bgp_bird_socket is required with --bgp_routes_file (BIRD's control socket, birdc -s)");
  }
  if (opt_.poll_ns == 0 || opt_.heartbeat_max_age_ns == 0) {
    return absl::InvalidArgumentError("--bgp_poll_ms and --bgp_heartbeat_max_ms must be > 0");
  }
  LOG(INFO) << "bgp: announcing healthy VIPs through " << opt_.routes_file << " (birdc -s "
            << opt_.bird_socket << "), dataplane heartbeat limit "
            << opt_.heartbeat_max_age_ns / 1000000 << " ms, poll " << opt_.poll_ns / 1000000
            << " ms" << (opt_.drain_file.empty() ? "" : ", drain file " + opt_.drain_file);
  thread_ = std::thread([this] {
    do {
      Step();
    } while (!stop_.WaitForNotificationWithTimeout(
        absl::Nanoseconds(static_cast<int64_t>(opt_.poll_ns))));
  });
  return absl::OkStatus();
}

void BgpAnnouncer::Stop(bool withdraw) {
  if (!thread_.joinable()) return;
  stop_.Notify();
  thread_.join();
  if (withdraw && (!applied_valid_ || !applied_.empty())) {
    LOG(INFO) << "bgp: withdrawing every VIP (control plane stopping)";
    Apply({});
  }
}

void BgpAnnouncer::Step() {
  const DataplaneLiveness live = view_->Liveness(opt_.heartbeat_max_age_ns);
  const Announcement a =
      DecideAnnouncement(live.alive, live.why, FileExists(opt_.drain_file), vips_());
  if (applied_valid_ && a.prefixes == applied_) {
    change_seen_ns_ = 0;
    return;
  }
  const uint64_t now = MonotonicNs();
  if (change_seen_ns_ == 0) change_seen_ns_ = now;
  if (!Apply(a.prefixes)) return;  // logged; retried next period
  const uint64_t took_us = (MonotonicNs() - change_seen_ns_) / 1000;
  change_seen_ns_ = 0;
  if (a.prefixes.empty()) {
    LOG(INFO) << "bgp: announcing nothing (" << a.why_none << "); BIRD reconfigured in " << took_us
              << " us";
  } else {
    LOG(INFO) << "bgp: announcing " << absl::StrJoin(a.prefixes, " ") << "; BIRD reconfigured in "
              << took_us << " us";
  }
}

bool BgpAnnouncer::Apply(const std::set<std::string>& prefixes) {
  const std::string text = RenderBirdRoutes(opt_.protocol, prefixes);
  const std::string tmp = opt_.routes_file + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  bool ok = f != nullptr && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (f != nullptr) ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), opt_.routes_file.c_str()) != 0) {
    LOG(ERROR) << "bgp: cannot write " << opt_.routes_file << ": " << std::strerror(errno);
    applied_valid_ = false;
    return false;
  }
  std::string out;
  const int rc = RunCapture({opt_.birdc, "-s", opt_.bird_socket, "configure"}, &out);
  // BIRD answers "Reconfigured", "Reconfiguration in progress" or "...
  // queueing new config"; a refused file says where it failed.
  const bool taken = rc == 0 && absl::StrContains(out, "econfigur") &&
                     !absl::StrContains(out, "rror") && !absl::StrContains(out, "ailed");
  if (!taken) {
    const std::string why = OneLine(out);
    if (why != last_why_) {
      LOG(WARNING) << "bgp: birdc -s " << opt_.bird_socket << " configure did not take "
                   << opt_.routes_file << " (exit " << rc << "): " << why << "; retrying";
      last_why_ = why;
    }
    applied_valid_ = false;
    return false;
  }
  last_why_.clear();
  applied_ = prefixes;
  applied_valid_ = true;
  return true;
}

}  // namespace lb
