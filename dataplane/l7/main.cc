// lb-l7: the HTTP/1.1 reverse proxy of the L7 tier (docs/L7.md).
//
// Where the configuration comes from, one of:
//  --config FILE        standalone: the file, validated at start-up (one
//                       line naming the field on error); SIGHUP reads it
//                       again and applies it live (runner.h).
//  --controlplane ADDR  lb-controlplane's WatchL7Config stream
//                       (cp_client.h): every generation is validated and
//                       applied live, and written to --last_good_config;
//                       when the control plane cannot be reached at
//                       start-up, lb-l7 starts from that file. SIGHUP
//                       re-reads the running configuration's TLS files.
// A refused configuration changes nothing and says why in one line.
// A backend is drained by setting its `drain` in the next configuration:
// it gets no new requests, its sticky clients are re-pinned, and the old
// workers finish what they have in flight.
// SIGTERM/SIGINT: stop accepting, finish in-flight requests within
// --drain_timeout_ms, exit 0.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "dataplane/l7/admin.h"
#include "dataplane/l7/cp_client.h"
#include "dataplane/l7/last_good.h"
#include "dataplane/l7/runner.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "proto/l7_config.h"

DEFINE_string(config, "",
              "Path of the lb.v1.L7Config text-format file (proto/lb/v1/l7.proto): listeners, "
              "routes, pools, limits, timeouts. Standalone mode; SIGHUP applies it again, live. "
              "Give this or --controlplane.");
DEFINE_string(controlplane, "",
              "lb-controlplane's gRPC address (host:port): subscribe to its L7 configuration "
              "(WatchL7Config) and apply each new generation live. Give this or --config.");
DEFINE_string(controlplane_token_file, "",
              "File holding the admin API's bearer token (lb-controlplane --auth_token_file), "
              "sent with the subscription; needed when the control plane listens off loopback.");
DEFINE_string(controlplane_tls_ca, "",
              "PEM CA certificate(s): reach --controlplane over TLS and verify its certificate "
              "(lb-controlplane --grpc_tls_cert). Empty = plaintext.");
DEFINE_string(controlplane_tls_server_name, "",
              "With --controlplane_tls_ca: the name expected in the control plane's certificate "
              "when it is not the host of --controlplane.");
DEFINE_string(last_good_config, "",
              "With --controlplane: every configuration applied is written here (mode 0600, "
              "temp file + rename, sha256-checked), and lb-l7 starts from it when the control "
              "plane does not answer within --controlplane_start_timeout_ms. Empty = not kept.");
DEFINE_uint32(controlplane_start_timeout_ms, 3000,
              "With --controlplane: how long start-up waits for the control plane's "
              "configuration before it starts from --last_good_config (it keeps subscribing "
              "and applies the control plane's configuration when it arrives).");
DEFINE_uint32(retire_timeout_ms, 60000,
              "On a configuration change: how long the previous configuration's workers may "
              "take to finish the requests and connections they hold; then they are closed.");
DEFINE_uint32(workers, 0,
              "Worker threads, each with its own epoll loop, SO_REUSEPORT listeners, upstream "
              "pools and counters. 0 = one per online CPU.");
DEFINE_uint32(drain_timeout_ms, 10000,
              "On SIGTERM/SIGINT: how long in-flight requests may take to finish after the "
              "listeners close; then the remaining connections are closed.");
DEFINE_uint32(drain_idle_grace_ms, 1000,
              "On SIGTERM/SIGINT: how long a keep-alive connection idle at that moment may "
              "still send one request (answered with Connection: close) before it is closed; "
              "0 closes idle connections at once. A client cannot tell a close from a slow "
              "answer, so closing at once loses a request it sent just then. Capped by "
              "--drain_timeout_ms.");
DEFINE_string(admin_address, "127.0.0.1",
              "Address of the admin HTTP server (GET /metrics in the Prometheus text format).");
DEFINE_uint32(admin_port, 0, "Port of the admin HTTP server; 0 = no admin server.");
DEFINE_string(access_log, "",
              "File that gets one line per answered request (request id, route, pool, backend, "
              "status, bytes, milliseconds), written by a thread of its own; \"\" = none.");
DEFINE_bool(check_config, false, "Validate --config, print the result and exit (0 = valid).");

namespace {

// 1 for what the machine refused (a socket, a thread), 2 for a bad config.
int ExitCode(const absl::Status& st) {
  return st.code() == absl::StatusCode::kUnavailable || st.code() == absl::StatusCode::kInternal
             ? 1
             : 2;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read \"", path, "\""));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t(absl::StripAsciiWhitespace(ss.str()));
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("\"", path, "\" is empty"));
  return t;
}

// The control plane's configurations: applied, then kept as the last good.
void OnControlPlaneConfig(lb::l7::Runner* runner, const lb::v1::L7Config& config,
                          uint64_t generation) {
  if (runner->Runs(config, generation)) return;  // in hand already (a reconnect)
  const uint64_t running = runner->generation();
  // Only TLS differs (the control plane rotated the session ticket keys,
  // same generation; or a new generation changed certificates and keys,
  // e.g. `lbctl l7 set-cert`): Reload swaps the TLS contexts of the running
  // workers, no connection is touched. Anything else: Apply (new workers).
  if (absl::Status st = runner->running() ? runner->Reload(config, generation)
                                          : runner->Apply(config, generation);
      !st.ok()) {
    LOG(ERROR) << "control plane generation " << generation << " refused, "
               << (running != 0 ? absl::StrCat("generation ", running, " kept")
                                : std::string("nothing running yet"))
               << ": " << st.message();
    return;
  }
  if (FLAGS_last_good_config.empty()) return;
  if (absl::Status st = lb::l7::WriteLastGood(FLAGS_last_good_config, config, generation);
      !st.ok()) {
    LOG(ERROR) << "--last_good_config: " << st.message();
  }
}

// With --controlplane: waits for its first configuration, else starts from
// the last good file.
void StartFromControlPlane(lb::l7::Runner* runner) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(FLAGS_controlplane_start_timeout_ms);
  while (!runner->running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (runner->running()) return;
  if (FLAGS_last_good_config.empty()) {
    LOG(WARNING) << "no configuration from the control plane yet and no --last_good_config: "
                    "not serving until the control plane answers";
    return;
  }
  auto last = lb::l7::ReadLastGood(FLAGS_last_good_config);
  if (!last.ok()) {
    LOG(WARNING) << "--last_good_config: " << last.status().message()
                 << "; not serving until the control plane answers";
    return;
  }
  LOG(INFO) << "control plane " << FLAGS_controlplane << " did not answer within "
            << FLAGS_controlplane_start_timeout_ms << " ms: starting from "
            << FLAGS_last_good_config << " (generation " << last->generation << ")";
  if (absl::Status st = runner->Apply(last->config, last->generation, /*only_if_none=*/true);
      !st.ok()) {
    LOG(ERROR) << "--last_good_config " << FLAGS_last_good_config << ": " << st.message()
               << "; not serving until the control plane answers";
  }
}

// --check_config: validates --config, prints a one-line verdict, exits.
int CheckConfigOnly(const lb::v1::L7Config& file_config) {
  if (FLAGS_config.empty()) {
    LOG(ERROR) << "--check_config: needs --config";
    return 2;
  }
  if (absl::Status st = lb::l7::Runner::Check(file_config); !st.ok()) {
    LOG(ERROR) << "--config " << FLAGS_config << ": " << st.message();
    return 2;
  }
  std::printf("%s: valid (%d listener(s), %d pool(s))\n", FLAGS_config.c_str(),
              file_config.listeners_size(), file_config.pools_size());
  return 0;
}

// The subscription's settings from the --controlplane* flags; the error
// names the flag.
absl::StatusOr<lb::l7::ControlPlaneClientOptions> ClientOptionsFromFlags() {
  lb::l7::ControlPlaneClientOptions cp_options;
  cp_options.address = FLAGS_controlplane;
  if (!FLAGS_controlplane_token_file.empty()) {
    auto token = ReadToken(FLAGS_controlplane_token_file);
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--controlplane_token_file: ", token.status().message()));
    }
    cp_options.token = *std::move(token);
  }
  if (!FLAGS_controlplane_tls_ca.empty()) {
    auto ca = ReadToken(FLAGS_controlplane_tls_ca);
    if (!ca.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--controlplane_tls_ca: ", ca.status().message()));
    }
    cp_options.tls_ca_pem = *std::move(ca);
    cp_options.tls_server_name = FLAGS_controlplane_tls_server_name;
  }
  return cp_options;
}

// SIGHUP: standalone, --config is read again and applied live (the
// generation counts the applications that changed something); under a
// control plane, the running configuration's TLS files are read again.
void OnSighup(lb::l7::Runner* runner, uint64_t* file_generation) {
  if (!FLAGS_config.empty()) {
    auto proto = lb::l7::LoadL7Config(FLAGS_config);
    absl::Status st = proto.status();
    if (st.ok()) st = runner->Reload(*proto, *file_generation + 1);
    if (!st.ok()) {
      LOG(ERROR) << "SIGHUP: --config " << FLAGS_config
                 << " refused, running state kept: " << st.message();
      return;
    }
    ++*file_generation;
    LOG(INFO) << "SIGHUP: " << FLAGS_config << " applied (generation " << *file_generation << ")";
  } else if (absl::Status st = runner->ReloadTlsFiles(); !st.ok()) {
    LOG(ERROR) << "SIGHUP: TLS files refused, running state kept: " << st.message();
  } else {
    LOG(INFO) << "SIGHUP: TLS certificates and keys of generation " << runner->generation()
              << " read again";
  }
}

// Waits for SIGTERM/SIGINT (returned), serving SIGHUP and reaping retired
// generations once a second.
int ServeSignals(const sigset_t& sigs, lb::l7::Runner* runner, uint64_t* file_generation) {
  while (true) {
    timespec tick{1, 0};
    const int sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig < 0) {
      runner->Reap();  // retired generations whose workers have exited
      continue;
    }
    if (sig != SIGHUP) return sig;
    OnSighup(runner, file_generation);
  }
}

lb::l7::RunnerOptions RunnerOptionsFromFlags(unsigned nworkers, lb::l7::AccessLog* access_log,
                                             lb::l7::AdminServer* admin,
                                             lb::l7::ConfigStatus* status) {
  lb::l7::RunnerOptions ro;
  ro.workers = nworkers;
  ro.drain_timeout_ms = FLAGS_drain_timeout_ms;
  ro.idle_grace_ms = FLAGS_drain_idle_grace_ms;
  ro.retire_timeout_ms = FLAGS_retire_timeout_ms;
  ro.access_log = FLAGS_access_log.empty() ? nullptr : access_log;
  ro.admin = admin;
  ro.status = status;
  return ro;
}

// Signals go to the main thread only (sigtimedwait); workers never see them.
sigset_t BlockSignals() {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return sigs;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "HTTP/1.1 reverse proxy of the L7 tier.\n"
      "  lb-l7 --config l7.textproto [--workers N] [--admin_port P]\n"
      "  lb-l7 --controlplane HOST:PORT --last_good_config /var/lib/lb-l7/last_good "
      "[--controlplane_token_file F]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;

  if (FLAGS_config.empty() == FLAGS_controlplane.empty()) {
    LOG(ERROR) << "--config / --controlplane: give exactly one (a file, or lb-controlplane's "
                  "address)";
    return 2;
  }
  lb::v1::L7Config file_config;
  if (!FLAGS_config.empty()) {
    auto proto = lb::l7::LoadL7Config(FLAGS_config);
    if (!proto.ok()) {
      LOG(ERROR) << "--config: " << proto.status().message();
      return 2;
    }
    file_config = *std::move(proto);
  }
  if (FLAGS_check_config) return CheckConfigOnly(file_config);
  auto cp_options = ClientOptionsFromFlags();
  if (!cp_options.ok()) {
    LOG(ERROR) << cp_options.status().message();
    return 2;
  }
  const unsigned nworkers =
      FLAGS_workers != 0 ? FLAGS_workers : std::max(1u, std::thread::hardware_concurrency());
  if (nworkers > 256) {
    LOG(ERROR) << "--workers: " << nworkers << " is more than 256";
    return 2;
  }
  const sigset_t sigs = BlockSignals();

  lb::l7::ConfigStatus status;
  lb::l7::AccessLog access_log;
  if (!FLAGS_access_log.empty()) {
    if (absl::Status st = access_log.Open(FLAGS_access_log); !st.ok()) {
      LOG(ERROR) << "--access_log: " << st.message();
      return 1;
    }
  }
  std::unique_ptr<lb::l7::AdminServer> admin;
  if (FLAGS_admin_port != 0) {
    admin = std::make_unique<lb::l7::AdminServer>(&access_log, &status);
    if (absl::Status st = admin->Start(FLAGS_admin_address, FLAGS_admin_port); !st.ok()) {
      LOG(ERROR) << "--admin_port: " << st.message();
      return 1;
    }
  }
  lb::l7::Runner runner(RunnerOptionsFromFlags(nworkers, &access_log, admin.get(), &status));

  std::unique_ptr<lb::l7::ControlPlaneClient> client;
  // Standalone generations count the file's applications: 1, then +1 per
  // SIGHUP that changed something.
  uint64_t file_generation = 1;
  if (!FLAGS_config.empty()) {
    if (absl::Status st = runner.Apply(file_config, file_generation); !st.ok()) {
      LOG(ERROR) << "--config " << FLAGS_config << ": " << st.message();
      return ExitCode(st);
    }
  } else {
    client = std::make_unique<lb::l7::ControlPlaneClient>(
        *cp_options,
        [&runner](const lb::v1::L7Config& c, uint64_t g) { OnControlPlaneConfig(&runner, c, g); },
        &status, [&runner](const lb::v1::L7Health& h) { runner.SetHealth(h); });
    client->Start();
    StartFromControlPlane(&runner);
  }
  LOG(INFO) << "lb-l7 ready: " << nworkers << " worker(s)";

  const int sig = ServeSignals(sigs, &runner, &file_generation);
  LOG(INFO) << "signal " << sig << ": draining (up to " << FLAGS_drain_timeout_ms << " ms)";
  if (client) client->Stop();
  runner.Stop();
  if (admin) admin->Stop();
  access_log.Stop();
  LOG(INFO) << "lb-l7 stopped";
  return 0;
}
