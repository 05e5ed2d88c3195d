#include "dataplane/l7/runner.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "dataplane/l7/counters.h"
#include "dataplane/l7/sticky_key.h"
#include "dataplane/l7/tls.h"
#include "dataplane/l7/upstream_tls.h"
#include "dataplane/l7/worker.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/l7_config.h"

namespace lb::l7 {

// Everything one configuration runs with. Owned by shared_ptr: the Runner
// (current or retired) and the admin server's view (while a scrape reads).
struct Runner::Generation {
  uint64_t number = 0;
  v1::L7Config proto;
  RuntimeConfig config;
  std::unique_ptr<TlsStore> tls;
  std::vector<std::shared_ptr<UpstreamTls>> upstream_tls;  // per pool
  std::vector<std::unique_ptr<ActiveCounts>> active;       // per pool
  std::vector<std::unique_ptr<WorkerCounters>> counters;   // per worker
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  std::atomic<size_t> exited{0};

  ~Generation() {
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }
};

namespace {

// The listeners' tls blocks cleared: two configs equal here differ in TLS
// material only.
bool SameButTls(const v1::L7Config& a, const v1::L7Config& b) {
  v1::L7Config x = a, y = b;
  // Whether a listener terminates TLS stays compared (its contexts exist or not).
  for (auto* c : {&x, &y}) {
    for (auto& l : *c->mutable_listeners()) {
      const bool tls = l.has_tls();
      l.clear_tls();
      if (tls) l.mutable_tls();
    }
  }
  return google::protobuf::util::MessageDifferencer::Equals(x, y);
}

// What survives a configuration change although the workers do not: the
// source-IP pins of a pool whose backends are unchanged (same name, same
// backends in the same order: the pins name backends by index), and the
// random sticky-cookie key drawn when no sticky_secret_file is set (a new
// key would re-pin every client).
void CarryOver(const RuntimeConfig& old, RuntimeConfig* next) {
  for (PoolConfig& p : next->pools) {
    if (p.sticky != StickyMode::kSourceIp) continue;
    for (const PoolConfig& o : old.pools) {
      if (o.name != p.name || o.sticky != StickyMode::kSourceIp || !o.affinity ||
          o.backends.size() != p.backends.size()) {
        continue;
      }
      bool same = true;
      for (size_t i = 0; i < p.backends.size() && same; ++i) {
        same = p.backends[i].addr.text == o.backends[i].addr.text;
      }
      if (same) p.affinity = o.affinity;
    }
  }
  if (next->sticky_secret_file.empty() && old.sticky_secret_file.empty() &&
      !old.sticky_key.empty()) {
    next->sticky_key = old.sticky_key;
  }
}

struct Prepared {
  RuntimeConfig config;
  std::vector<std::shared_ptr<TlsContext>> tls;
  std::vector<std::shared_ptr<UpstreamTls>> upstream_tls;
};

absl::Status Prepare(const v1::L7Config& proto, const RuntimeConfig* old, Prepared* out) {
  auto config = ValidateL7Config(proto);
  if (!config.ok()) return config.status();
  if (old != nullptr) CarryOver(*old, &*config);
  if (!config->sticky_key.empty() && config->sticky_secret_file.empty()) {
    // Carried over: LoadStickyKey would draw (and warn about) a new one.
  } else if (absl::Status st = LoadStickyKey(&*config); !st.ok()) {
    return st;
  }
  auto tls = BuildTlsContexts(*config);
  if (!tls.ok()) return tls.status();
  auto upstream_tls = BuildUpstreamTls(*config);
  if (!upstream_tls.ok()) return upstream_tls.status();
  out->config = *std::move(config);
  out->tls = *std::move(tls);
  out->upstream_tls = *std::move(upstream_tls);
  return absl::OkStatus();
}

}  // namespace

Runner::Runner(RunnerOptions options) : options_(std::move(options)) {}

Runner::~Runner() { Stop(); }

absl::Status Runner::Check(const v1::L7Config& config) {
  Prepared p;
  return Prepare(config, nullptr, &p);
}

bool Runner::running() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_ != nullptr;
}

bool Runner::Runs(const v1::L7Config& config, uint64_t generation) const {
  std::lock_guard<std::mutex> l(mu_);
  return current_ != nullptr && current_->number == generation &&
         google::protobuf::util::MessageDifferencer::Equals(current_->proto, config);
}

uint64_t Runner::generation() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_ != nullptr ? current_->number : 0;
}

absl::Status Runner::Apply(const v1::L7Config& config, uint64_t generation, bool only_if_none) {
  std::lock_guard<std::mutex> l(mu_);
  if (only_if_none && current_ != nullptr) return absl::OkStatus();
  absl::Status st = ApplyLocked(config, generation);
  if (options_.status != nullptr)
    (st.ok() ? options_.status->applies : options_.status->refusals)++;
  return st;
}

absl::Status Runner::Reload(const v1::L7Config& config, uint64_t generation) {
  std::lock_guard<std::mutex> l(mu_);
  absl::Status st;
  if (current_ != nullptr && SameButTls(current_->proto, config)) {
    Prepared p;
    st = Prepare(config, &current_->config, &p);
    if (st.ok()) {
      current_->tls->Set(std::move(p.tls));
      current_->proto = config;
      current_->number = generation;
      PublishStatusLocked();
      LOG(INFO) << "configuration generation " << generation
                << ": TLS certificates and keys replaced (workers kept)";
    }
  } else {
    st = ApplyLocked(config, generation);
  }
  if (options_.status != nullptr)
    (st.ok() ? options_.status->applies : options_.status->refusals)++;
  return st;
}

absl::Status Runner::ReloadTlsFiles() {
  std::lock_guard<std::mutex> l(mu_);
  if (current_ == nullptr) return absl::OkStatus();
  Prepared p;
  absl::Status st = Prepare(current_->proto, &current_->config, &p);
  if (st.ok()) current_->tls->Set(std::move(p.tls));
  if (options_.status != nullptr)
    (st.ok() ? options_.status->applies : options_.status->refusals)++;
  return st;
}

absl::Status Runner::ApplyLocked(const v1::L7Config& proto, uint64_t number) {
  ReapLocked();
  auto g = std::make_shared<Generation>();
  g->number = number;
  g->proto = proto;
  {
    Prepared p;
    if (absl::Status st = Prepare(proto, current_ ? &current_->config : nullptr, &p); !st.ok()) {
      return st;
    }
    g->config = std::move(p.config);
    g->tls = std::make_unique<TlsStore>(std::move(p.tls));
    g->upstream_tls = std::move(p.upstream_tls);
  }
  const RuntimeConfig& config = g->config;
  size_t nroutes = 0, nbackends = 0;
  for (const auto& l : config.listeners) nroutes += l.route_names.size();
  for (const auto& p : config.pools) nbackends += p.backends.size();
  // Active requests per backend and the drain flags, shared by this
  // generation's workers (relaxed atomics, lib/l7/balancer.h).
  std::vector<ActiveCounts*> active;
  for (const auto& p : config.pools) {
    g->active.push_back(std::make_unique<ActiveCounts>(p.backends.size()));
    active.push_back(g->active.back().get());
    for (size_t k = 0; k < p.backends.size(); ++k) {
      active.back()->SetDraining(static_cast<int>(k), p.backends[k].drain);
    }
  }
  ApplyHealthLocked(g.get());
  for (unsigned i = 0; i < options_.workers; ++i) {
    g->counters.push_back(std::make_unique<WorkerCounters>(
        nroutes, nbackends, config.listeners.size(), config.pools.size()));
    g->workers.push_back(std::make_unique<Worker>(i, &config, g->counters.back().get(), active));
    Worker& w = *g->workers.back();
    w.SetTls(g->tls.get());
    w.SetUpstreamTls(&g->upstream_tls);
    if (options_.access_log != nullptr) w.SetAccessLog(options_.access_log);
    const Worker* predecessor = current_ != nullptr ? current_->workers[i].get() : nullptr;
    if (absl::Status st = w.Open(predecessor); !st.ok()) return st;  // g's workers close theirs
  }
  Generation* raw = g.get();
  for (auto& w : g->workers) {
    Worker* wp = w.get();
    g->threads.emplace_back([wp, raw] {
      wp->Run();
      raw->exited.fetch_add(1, std::memory_order_release);
    });
  }
  if (options_.admin != nullptr) {
    auto view = std::make_shared<AdminView>();
    view->config = &g->config;
    for (auto& c : g->counters) view->workers.push_back(c.get());
    view->active.assign(active.begin(), active.end());
    view->tls = g->tls.get();
    view->owner = g;
    options_.admin->SetView(std::move(view));
  }
  std::shared_ptr<Generation> old = std::move(current_);
  current_ = std::move(g);
  for (const auto& l : config.listeners) {
    LOG(INFO) << "generation " << number << ": listening on " << l.addr.text << " (" << l.name
              << ")";
  }
  if (old != nullptr) {
    // HTTP/1.1 keep-alive connections (plain or TLS) move to the new workers between
    // requests (worker.h RequestRetire): a configuration change drops none.
    for (size_t i = 0; i < old->workers.size(); ++i) {
      Worker* successor = i < current_->workers.size() ? current_->workers[i].get() : nullptr;
      old->workers[i]->RequestRetire(successor, options_.retire_timeout_ms, options_.idle_grace_ms);
    }
    LOG(INFO) << "configuration generation " << number << " applied: " << options_.workers
              << " new worker(s), " << config.listeners.size() << " listener(s), "
              << config.pools.size() << " pool(s); generation " << old->number
              << " retiring (up to " << options_.retire_timeout_ms << " ms)";
    retired_.push_back(std::move(old));
  } else {
    LOG(INFO) << "configuration generation " << number << " applied: " << options_.workers
              << " worker(s), " << config.listeners.size() << " listener(s), "
              << config.pools.size() << " pool(s)";
  }
  PublishStatusLocked();
  return absl::OkStatus();
}

void Runner::ReapLocked() {
  // Oldest first, and only while every older one is gone: a retiring
  // worker may still hand connections to its successor (the next
  // generation's worker), which must outlive it.
  while (!retired_.empty()) {
    Generation& g = *retired_.front();
    if (g.exited.load(std::memory_order_acquire) != g.threads.size()) break;
    for (auto& t : g.threads) t.join();
    VLOG(1) << "generation " << g.number << " retired";
    retired_.erase(retired_.begin());
  }
  PublishStatusLocked();
}

void Runner::PublishStatusLocked() {
  if (options_.status == nullptr) return;
  if (current_ != nullptr) options_.status->generation.store(current_->number);
  uint64_t n = 0;
  for (const auto& g : retired_) n += g->threads.size() - g->exited.load();
  options_.status->retired_workers.store(n);
}

void Runner::SetHealth(const v1::L7Health& health) {
  std::lock_guard<std::mutex> l(mu_);
  if (has_health_ && health.generation() == health_.generation()) return;
  if (has_health_ && health.generation() < health_.generation()) {
    // A control plane restarted (its generations start over): take it.
    LOG(INFO) << "active health generation " << health.generation() << " after "
              << health_.generation() << ": the control plane started over";
  }
  health_ = health;
  has_health_ = true;
  if (current_ != nullptr) ApplyHealthLocked(current_.get());
  if (options_.status != nullptr) {
    options_.status->health_generation.store(health.generation());
    options_.status->health_updates.fetch_add(1);
  }
}

void Runner::ApplyHealthLocked(Generation* g) {
  if (!has_health_) return;
  absl::flat_hash_map<std::string, bool> down;
  for (const v1::L7BackendHealth& b : health_.backends()) {
    down[absl::StrCat(b.pool(), "\n", b.address(), "\n", b.port())] = b.down();
  }
  size_t n = 0;
  for (int p = 0; p < g->proto.pools_size() && static_cast<size_t>(p) < g->active.size(); ++p) {
    const v1::L7Pool& pool = g->proto.pools(p);
    for (int k = 0; k < pool.backends_size(); ++k) {
      const v1::L7Backend& b = pool.backends(k);
      auto it = down.find(absl::StrCat(pool.name(), "\n", b.address(), "\n", b.port()));
      const bool is_down = it != down.end() && it->second;
      if (g->active[p]->Down(k) != is_down) {
        LOG(INFO) << "pool " << pool.name() << " backend " << b.address() << ":" << b.port()
                  << (is_down ? " down" : " up") << " (control plane's active checks, health "
                  << "generation " << health_.generation() << ")";
      }
      g->active[p]->SetDown(k, is_down);
      n += is_down;
    }
  }
  VLOG(1) << "active health generation " << health_.generation() << ": " << n << " down";
}

void Runner::Reap() {
  std::lock_guard<std::mutex> l(mu_);
  ReapLocked();
}

void Runner::Stop() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::shared_ptr<Generation>> all = std::move(retired_);
  retired_.clear();
  if (current_ != nullptr) all.push_back(std::move(current_));
  const uint32_t grace = std::min(options_.idle_grace_ms, options_.drain_timeout_ms);
  for (auto& g : all) {
    for (auto& w : g->workers) w->RequestStop(options_.drain_timeout_ms, grace);
  }
  for (auto& g : all) {
    for (auto& t : g->threads) t.join();
  }
  if (options_.admin != nullptr) options_.admin->SetView(std::make_shared<const AdminView>());
}

}  // namespace lb::l7
