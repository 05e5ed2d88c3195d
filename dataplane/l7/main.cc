// lb-l7: the HTTP/1.1 reverse proxy of the L7 tier (docs/L7.md).
//
// Start-up: load and validate --config (one line naming the field on
// error), open every worker's listeners (one line naming the listener on
// error), start the workers and, with --admin_port, the /metrics server.
// SIGTERM/SIGINT: stop accepting, finish in-flight requests within
// --drain_timeout_ms, exit 0. SIGHUP: read --config again and replace the
// TLS certificates, keys and ticket keys for new connections (existing ones
// keep theirs) and the backends' drain flags; a refused file changes
// nothing and says why in one line.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/l7/admin.h"
#include "dataplane/l7/counters.h"
#include "dataplane/l7/l7_config.h"
#include "dataplane/l7/sticky_key.h"
#include "dataplane/l7/tls.h"
#include "dataplane/l7/upstream_tls.h"
#include "dataplane/l7/worker.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"

DEFINE_string(config, "",
              "Path of the lb.v1.L7Config text-format file (proto/lb/v1/l7.proto): listeners, "
              "routes, pools, limits, timeouts. Required.");
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

// SIGHUP: only the listeners' tls blocks and the backends' drain flags may
// change (routes, pools and sockets are fixed for the life of the process:
// a restart drains). Drain flags go to the shared ActiveCounts: every
// worker sees them on its next pick (lib/l7/balancer.h).
absl::Status Reload(const lb::v1::L7Config& running, lb::l7::TlsStore* store,
                    const std::vector<lb::l7::ActiveCounts*>& active) {
  auto proto = lb::l7::LoadL7Config(FLAGS_config);
  if (!proto.ok()) return proto.status();
  auto config = lb::l7::ValidateL7Config(*proto);
  if (!config.ok()) return config.status();
  lb::v1::L7Config a = running, b = *proto;
  for (auto* m : {&a, &b}) {
    for (auto& l : *m->mutable_listeners()) l.clear_tls();
    for (auto& p : *m->mutable_pools()) {
      for (auto& be : *p.mutable_backends()) be.clear_drain();
    }
  }
  if (!google::protobuf::util::MessageDifferencer::Equals(a, b)) {
    return absl::FailedPreconditionError(
        "fields outside listeners[].tls and pools[].backends[].drain changed; SIGHUP reloads "
        "only those (restart for the rest)");
  }
  auto ctxs = lb::l7::BuildTlsContexts(*config);
  if (!ctxs.ok()) return ctxs.status();
  store->Set(*std::move(ctxs));
  for (size_t p = 0; p < config->pools.size(); ++p) {
    for (size_t k = 0; k < config->pools[p].backends.size(); ++k) {
      const bool drain = config->pools[p].backends[k].drain;
      if (active[p]->Draining(static_cast<int>(k)) != drain) {
        LOG(INFO) << "SIGHUP: backend " << config->pools[p].backends[k].addr.text << " of pool "
                  << config->pools[p].name << (drain ? " draining" : " active again");
      }
      active[p]->SetDraining(static_cast<int>(k), drain);
    }
  }
  return absl::OkStatus();
}

struct Startup {
  lb::v1::L7Config proto;
  lb::l7::RuntimeConfig config;
  std::vector<std::shared_ptr<lb::l7::TlsContext>> tls;
  std::vector<std::shared_ptr<lb::l7::UpstreamTls>> upstream_tls;  // per pool
};

// --config read, validated and its TLS files loaded; the error is the one
// line to log.
absl::Status LoadStartup(Startup* s) {
  auto proto = lb::l7::LoadL7Config(FLAGS_config);
  if (!proto.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--config: ", proto.status().message()));
  }
  auto config = lb::l7::ValidateL7Config(*proto);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--config ", FLAGS_config, ": ", config.status().message()));
  }
  if (absl::Status st = lb::l7::LoadStickyKey(&*config); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--config ", FLAGS_config, ": ", st.message()));
  }
  auto tls = lb::l7::BuildTlsContexts(*config);
  if (!tls.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--config ", FLAGS_config, ": ", tls.status().message()));
  }
  auto upstream_tls = lb::l7::BuildUpstreamTls(*config);
  if (!upstream_tls.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--config ", FLAGS_config, ": ", upstream_tls.status().message()));
  }
  s->upstream_tls = *std::move(upstream_tls);
  s->proto = *std::move(proto);
  s->config = *std::move(config);
  s->tls = *std::move(tls);
  return absl::OkStatus();
}

// Serves SIGHUP (TLS and drain reload) until SIGTERM/SIGINT, which it
// returns.
int WaitForStop(const sigset_t* sigs, lb::v1::L7Config running, lb::l7::TlsStore* store,
                const std::vector<lb::l7::ActiveCounts*>& active) {
  int sig = 0;
  while (sigwait(sigs, &sig) == 0 && sig == SIGHUP) {
    if (absl::Status st = Reload(running, store, active); !st.ok()) {
      LOG(ERROR) << "SIGHUP: --config " << FLAGS_config
                 << " refused, running state kept: " << st.message();
      continue;
    }
    LOG(INFO) << "SIGHUP: TLS certificates, keys and drain flags reloaded from " << FLAGS_config;
  }
  return sig;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "HTTP/1.1 reverse proxy of the L7 tier.\n"
      "  lb-l7 --config l7.textproto [--workers N] [--admin_port P]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;

  if (FLAGS_config.empty()) {
    LOG(ERROR) << "--config: required (an lb.v1.L7Config text-format file)";
    return 2;
  }
  Startup start;
  if (absl::Status st = LoadStartup(&start); !st.ok()) {
    LOG(ERROR) << st.message();
    return 2;
  }
  const lb::v1::L7Config& proto = start.proto;
  const lb::l7::RuntimeConfig* config = &start.config;
  lb::l7::TlsStore tls_store(std::move(start.tls));
  if (FLAGS_check_config) {
    std::printf("%s: valid (%zu listener(s), %zu pool(s))\n", FLAGS_config.c_str(),
                config->listeners.size(), config->pools.size());
    return 0;
  }
  unsigned nworkers = FLAGS_workers;
  if (nworkers == 0) nworkers = std::max(1u, std::thread::hardware_concurrency());
  if (nworkers > 256) {
    LOG(ERROR) << "--workers: " << nworkers << " is more than 256";
    return 2;
  }

  // Signals go to the main thread only (sigwait below); workers never see them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  size_t nroutes = 0, nbackends = 0;
  for (const auto& l : config->listeners) nroutes += l.route_names.size();
  for (const auto& p : config->pools) nbackends += p.backends.size();
  // Active requests per backend, shared by the workers (relaxed atomics,
  // lib/l7/balancer.h): least connections is across the whole process.
  std::vector<std::unique_ptr<lb::l7::ActiveCounts>> active_storage;
  std::vector<lb::l7::ActiveCounts*> active;
  for (const auto& p : config->pools) {
    active_storage.push_back(std::make_unique<lb::l7::ActiveCounts>(p.backends.size()));
    active.push_back(active_storage.back().get());
    for (size_t k = 0; k < p.backends.size(); ++k) {
      active.back()->SetDraining(static_cast<int>(k), p.backends[k].drain);
    }
  }
  std::vector<std::unique_ptr<lb::l7::WorkerCounters>> counters;
  std::vector<std::unique_ptr<lb::l7::Worker>> workers;
  for (unsigned i = 0; i < nworkers; ++i) {
    counters.push_back(std::make_unique<lb::l7::WorkerCounters>(
        nroutes, nbackends, config->listeners.size(), config->pools.size()));
    workers.push_back(std::make_unique<lb::l7::Worker>(i, config, counters.back().get(), active));
    workers.back()->SetTls(&tls_store);
    workers.back()->SetUpstreamTls(&start.upstream_tls);
    if (absl::Status st = workers.back()->Open(); !st.ok()) {
      LOG(ERROR) << "--config " << FLAGS_config << ": " << st.message();
      return 1;
    }
  }
  lb::l7::AccessLog access_log;
  if (!FLAGS_access_log.empty()) {
    if (absl::Status st = access_log.Open(FLAGS_access_log); !st.ok()) {
      LOG(ERROR) << "--access_log: " << st.message();
      return 1;
    }
    for (auto& w : workers) w->SetAccessLog(&access_log);
  }
  std::unique_ptr<lb::l7::AdminServer> admin;
  if (FLAGS_admin_port != 0) {
    std::vector<const lb::l7::WorkerCounters*> view;
    for (auto& c : counters) view.push_back(c.get());
    std::vector<const lb::l7::ActiveCounts*> active_view(active.begin(), active.end());
    admin = std::make_unique<lb::l7::AdminServer>(config, std::move(view), std::move(active_view),
                                                  &access_log);
    admin->SetTls(&tls_store);
    if (absl::Status st = admin->Start(FLAGS_admin_address, FLAGS_admin_port); !st.ok()) {
      LOG(ERROR) << "--admin_port: " << st.message();
      return 1;
    }
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->Run(); });
  for (const auto& l : config->listeners) {
    LOG(INFO) << "lb-l7 listening on " << l.addr.text << " (" << l.name << ")";
  }
  LOG(INFO) << "lb-l7 ready: " << nworkers << " worker(s)";

  const int sig = WaitForStop(&sigs, proto, &tls_store, active);
  LOG(INFO) << "signal " << sig << ": draining (up to " << FLAGS_drain_timeout_ms << " ms)";
  const uint32_t grace = std::min(FLAGS_drain_idle_grace_ms, FLAGS_drain_timeout_ms);
  for (auto& w : workers) w->RequestStop(FLAGS_drain_timeout_ms, grace);
  for (auto& t : threads) t.join();
  if (admin) admin->Stop();
  access_log.Stop();
  LOG(INFO) << "lb-l7 stopped";
  return 0;
}
