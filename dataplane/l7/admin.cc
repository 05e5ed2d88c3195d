#include "dataplane/l7/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/l7/tls.h"
#include "dataplane/l7/upstream_tls.h"
#include "lib/l7/headers.h"
#include "lib/l7/http1.h"

namespace lb::l7 {
namespace {

constexpr const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

struct Collect : Http1Sink {
  bool head = false, done = false;
  void OnHead(const MessageHead&) override { head = true; }
  void OnBody(const char*, size_t) override {}
  void OnComplete() override { done = true; }
};

std::string Escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o.push_back('\\');
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o.push_back(c);
  }
  return o;
}

}  // namespace

AdminServer::AdminServer(const AccessLog* access_log, const ConfigStatus* status)
    : access_log_(access_log), status_(status), view_(std::make_shared<const AdminView>()) {}

void AdminServer::SetView(std::shared_ptr<const AdminView> view) {
  std::lock_guard<std::mutex> l(view_mu_);
  view_ = std::move(view);
}

std::shared_ptr<const AdminView> AdminServer::View() const {
  std::lock_guard<std::mutex> l(view_mu_);
  return view_;
}

AdminServer::~AdminServer() { Stop(); }

absl::Status AdminServer::Start(const std::string& address, uint32_t port) {
  sockaddr_storage ss{};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("\"", address, "\" is not an IP address"));
  }
  if (port == 0 || port > 65535) return absl::InvalidArgumentError("not a port");
  fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd_, 16) != 0) {
    const int e = errno;
    close(fd_);
    fd_ = -1;
    return absl::UnavailableError(absl::StrCat(address, ":", port, ": ", strerror(e)));
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void AdminServer::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  thread_.join();
  close(fd_);
  fd_ = -1;
}

void AdminServer::Loop() {
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    Serve(c);
    close(c);
  }
}

void AdminServer::Serve(int fd) {
  Http1Limits limits;
  limits.max_header_bytes = 8192;
  limits.max_body_bytes = 0;
  Http1Parser parser(Http1Parser::Kind::kRequest, limits);
  Collect sink;
  char buf[4096];
  while (!sink.head && parser.error() == Http1Error::kNone) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return;
    parser.Feed(buf, static_cast<size_t>(n), &sink);
  }
  std::string out;
  if (parser.error() != Http1Error::kNone) {
    BuildErrorResponse(parser.status(), ReasonPhrase(parser.status()), true, &out);
  } else if (parser.head().method == "GET" &&
             (parser.head().origin_form == "/metrics" ||
              parser.head().origin_form.rfind("/metrics?", 0) == 0)) {
    const std::string body = RenderMetrics();
    out = absl::StrCat(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        "Content-Length: ",
        body.size(), "\r\nConnection: close\r\n\r\n", body);
  } else {
    BuildErrorResponse(404, "not found (try GET /metrics)", true, &out);
  }
  size_t off = 0;
  while (off < out.size()) {
    const ssize_t n = send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

namespace {

// TLS to backends (all pools with upstream_tls together).
void AppendUpstreamTlsMetrics(const std::vector<const WorkerCounters*>& workers, std::string* o) {
  auto per_worker = [&workers](auto get) {
    uint64_t v = 0;
    for (const WorkerCounters* w : workers) v += get(*w);
    return v;
  };
  absl::StrAppend(o,
                  "# HELP lb_l7_upstream_tls_handshakes_total TLS handshakes with backends, full "
                  "or resumed from the backend's last session.\n"
                  "# TYPE lb_l7_upstream_tls_handshakes_total counter\n");
  for (int k = 0; k < 2; ++k) {
    absl::StrAppend(
        o, "lb_l7_upstream_tls_handshakes_total{kind=\"", k == 0 ? "full" : "resumed", "\"} ",
        per_worker([k](const WorkerCounters& w) { return w.upstream_tls_handshakes[k].Get(); }),
        "\n");
  }
  absl::StrAppend(o,
                  "# HELP lb_l7_upstream_tls_failures_total Failed TLS handshakes with backends, "
                  "by reason.\n# TYPE lb_l7_upstream_tls_failures_total counter\n");
  for (int k = 0; k < kUpstreamTlsFailCount; ++k) {
    absl::StrAppend(
        o, "lb_l7_upstream_tls_failures_total{reason=\"", UpstreamTlsFailName(k), "\"} ",
        per_worker([k](const WorkerCounters& w) { return w.upstream_tls_failures[k].Get(); }),
        "\n");
  }
}

// One histogram per pool: the workers' buckets added, then made cumulative.
void AppendLatencyHistogram(const RuntimeConfig& config,
                            const std::vector<const WorkerCounters*>& workers, const char* name,
                            const char* help, const LatencyHistogram WorkerCounters::*field,
                            std::string* o) {
  absl::StrAppend(o, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  for (size_t p = 0; p < config.pools.size(); ++p) {
    const std::string pool = Escape(config.pools[p].name);
    uint64_t cumulative = 0, sum_ns = 0;
    for (int k = 0; k < kLatencySlots; ++k) {
      for (const WorkerCounters* w : workers) {
        cumulative += (w->*field).buckets[p * kLatencySlots + k].Get();
      }
      absl::StrAppend(o, name, "_bucket{pool=\"", pool, "\",le=\"",
                      k < kLatencyBounds ? kLatencyLe[k] : "+Inf", "\"} ", cumulative, "\n");
    }
    for (const WorkerCounters* w : workers) sum_ns += (w->*field).sum_ns[p].Get();
    absl::StrAppend(o, name, "_sum{pool=\"", pool, "\"} ", absl::StrFormat("%.9f", sum_ns / 1e9),
                    "\n", name, "_count{pool=\"", pool, "\"} ", cumulative, "\n");
  }
}

}  // namespace

namespace {

using Workers = std::vector<const WorkerCounters*>;

// SNI passthrough listeners: connections relayed by pool (the pools the
// listener's routes and default name), failures by reason.
void AppendPassthroughMetrics(const RuntimeConfig& config, const Workers& workers, std::string* o) {
  auto sum = [&](const std::vector<Counter> WorkerCounters::*field, size_t i) {
    uint64_t v = 0;
    for (const WorkerCounters* w : workers) v += (w->*field)[i].Get();
    return v;
  };
  bool any = false;
  for (const ListenerConfig& l : config.listeners) any |= l.passthrough;
  if (!any) return;
  absl::StrAppend(o,
                  "# HELP lb_l7_passthrough_connections_total Connections an SNI passthrough "
                  "listener relayed to a pool (counted when the backend connect starts).\n"
                  "# TYPE lb_l7_passthrough_connections_total counter\n");
  const size_t npools = config.pools.size();
  for (size_t l = 0; l < config.listeners.size(); ++l) {
    const ListenerConfig& lc = config.listeners[l];
    if (!lc.passthrough) continue;
    std::vector<bool> used(npools, false);
    for (const RouteSpec& r : lc.router.routes()) used[r.pool] = true;
    if (lc.pt.default_pool >= 0) used[lc.pt.default_pool] = true;
    for (size_t p = 0; p < npools; ++p) {
      if (!used[p]) continue;
      absl::StrAppend(o, "lb_l7_passthrough_connections_total{listener=\"", Escape(lc.name),
                      "\",pool=\"", Escape(config.pools[p].name), "\"} ",
                      sum(&WorkerCounters::passthrough_conns, l * npools + p), "\n");
    }
  }
  absl::StrAppend(o,
                  "# HELP lb_l7_passthrough_failures_total SNI passthrough connections not "
                  "relayed as their name asked, by reason.\n"
                  "# TYPE lb_l7_passthrough_failures_total counter\n");
  for (size_t l = 0; l < config.listeners.size(); ++l) {
    const ListenerConfig& lc = config.listeners[l];
    if (!lc.passthrough) continue;
    for (int k = 0; k < kPassthroughFailCount; ++k) {
      absl::StrAppend(o, "lb_l7_passthrough_failures_total{listener=\"", Escape(lc.name),
                      "\",reason=\"", kPassthroughFailNames[k], "\"} ",
                      sum(&WorkerCounters::passthrough_failures, l * kPassthroughFailCount + k),
                      "\n");
    }
  }
}

template <typename Get>
uint64_t SumOver(const Workers& workers, Get get) {
  uint64_t v = 0;
  for (const WorkerCounters* w : workers) v += get(*w);
  return v;
}

// Requests answered, by listener, route, pool and status class.
void AppendRouteRequests(const RuntimeConfig& config, const Workers& workers, std::string* o) {
  absl::StrAppend(o,
                  "# HELP lb_l7_requests_total Requests answered, by listener, route, pool and "
                  "status class.\n# TYPE lb_l7_requests_total counter\n");
  int slot = 0;
  for (const ListenerConfig& l : config.listeners) {
    for (size_t r = 0; r < l.route_names.size(); ++r, ++slot) {
      const int pool = l.router.PoolOf(static_cast<int>(r));
      const std::string pool_name = pool >= 0 ? config.pools[pool].name : "";
      for (int k = 0; k < 5; ++k) {
        absl::StrAppend(
            o, "lb_l7_requests_total{listener=\"", Escape(l.name), "\",route=\"",
            Escape(l.route_names[r]), "\",pool=\"", Escape(pool_name), "\",class=\"", kClass[k],
            "\"} ",
            SumOver(workers,
                    [&](const WorkerCounters& w) { return w.route_requests[slot * 5 + k].Get(); }),
            "\n");
      }
    }
  }
}

// Per-backend counters (each worker's vector, indexed by backend in pool
// order, times 5 status classes where by_class).
void AppendBackendCounters(const RuntimeConfig& config, const Workers& workers, std::string* o) {
  struct PerBackend {
    const char* name;
    const char* help;
    bool by_class;
    const std::vector<Counter> WorkerCounters::*field;
  };
  static constexpr PerBackend kPerBackend[] = {
      {"lb_l7_backend_requests_total", "Requests answered by a backend, by status class.", true,
       &WorkerCounters::backend_requests},
      {"lb_l7_backend_connect_failures_total", "Failed connects to a backend.", false,
       &WorkerCounters::backend_connect_failures},
      {"lb_l7_backend_ejections_total",
       "Times a backend was ejected by passive health (per worker).", false,
       &WorkerCounters::backend_ejections},
  };
  for (const PerBackend& m : kPerBackend) {
    absl::StrAppend(o, "# HELP ", m.name, " ", m.help, "\n# TYPE ", m.name, " counter\n");
    int b = 0;
    for (const PoolConfig& p : config.pools) {
      for (const BackendConfig& bc : p.backends) {
        for (int k = 0; k < (m.by_class ? 5 : 1); ++k) {
          const int idx = m.by_class ? b * 5 + k : b;
          absl::StrAppend(
              o, m.name, "{pool=\"", Escape(p.name), "\",backend=\"", Escape(bc.addr.text), "\"",
              m.by_class ? absl::StrCat(",class=\"", kClass[k], "\"") : "", "} ",
              SumOver(workers, [&](const WorkerCounters& w) { return (w.*m.field)[idx].Get(); }),
              "\n");
        }
        ++b;
      }
    }
  }
}

// The process-wide counters and gauges: one sample each, summed over workers.
void AppendScalars(const Workers& workers, std::string* o) {
  struct Scalar {
    const char* name;
    const char* type;
    const char* help;
    Counter WorkerCounters::*field;
  };
  static constexpr Scalar kScalars[] = {
      {"lb_l7_connections_open", "gauge", "Client connections open.",
       &WorkerCounters::connections_open},
      {"lb_l7_connections_accepted_total", "counter", "Client connections accepted.",
       &WorkerCounters::connections_accepted},
      {"lb_l7_connections_adopted_total", "counter",
       "Keep-alive client connections taken over from the previous configuration's workers "
       "(a configuration change closes none of them).",
       &WorkerCounters::connections_adopted},
      {"lb_l7_upstream_connects_total", "counter", "New upstream connections opened.",
       &WorkerCounters::upstream_connects},
      {"lb_l7_upstream_reused_total", "counter",
       "Requests sent on a pooled keep-alive upstream connection.",
       &WorkerCounters::upstream_reused},
      {"lb_l7_upstream_retries_total", "counter",
       "Requests sent again to another backend after a connect failure.",
       &WorkerCounters::upstream_retries},
      {"lb_l7_refused_requests_total", "counter",
       "Requests refused before any upstream (400, 413, 414, 431, 501, 505; HTTP/1 and HTTP/2).",
       &WorkerCounters::refused_requests},
      {"lb_l7_client_timeouts_total", "counter", "Client header or body timeouts (408).",
       &WorkerCounters::client_timeouts},
      {"lb_l7_upstream_timeouts_total", "counter", "Upstream response timeouts (504).",
       &WorkerCounters::upstream_timeouts},
      {"lb_l7_no_backend_total", "counter", "Requests answered 503: no backend available.",
       &WorkerCounters::no_backend},
      {"lb_l7_sticky_hits_total", "counter",
       "Answers from the backend a sticky cookie or source-IP pin named.",
       &WorkerCounters::sticky_hits},
      {"lb_l7_h2_connections_total", "counter",
       "Client connections that spoke HTTP/2 (h2c prior knowledge or ALPN h2).",
       &WorkerCounters::h2_connections},
      {"lb_l7_sticky_repins_total", "counter",
       "Pinned requests answered by another backend (the pinned one unavailable).",
       &WorkerCounters::sticky_repins},
      {"lb_l7_sticky_store_lookups_total", "counter",
       "Source-IP pins looked up in the shared sticky store (Redis).",
       &WorkerCounters::sticky_store_lookups},
      {"lb_l7_sticky_store_writes_total", "counter",
       "Source-IP pins written to the shared sticky store (SET EX).",
       &WorkerCounters::sticky_store_writes},
      {"lb_l7_sticky_store_connected", "gauge",
       "Workers connected to their shared sticky store (one connection per worker and store).",
       &WorkerCounters::sticky_store_connected},
      {"lb_l7_queued_requests", "gauge",
       "Requests waiting for a backend under its max_connections.",
       &WorkerCounters::queued_requests},
      {"lb_l7_queue_overflows_total", "counter",
       "Requests answered 503 because the pool's queue (max_queue) was full.",
       &WorkerCounters::queue_overflows},
      {"lb_l7_queue_timeouts_total", "counter",
       "Requests answered 503 after queue_timeout_ms in the pool's queue.",
       &WorkerCounters::queue_timeouts},
      {"lb_l7_retry_budget_exhausted_total", "counter",
       "Retries refused by the pool's retry budget (answered 502).",
       &WorkerCounters::retry_budget_exhausted},
  };
  for (const Scalar& m : kScalars) {
    absl::StrAppend(
        o, "# HELP ", m.name, " ", m.help, "\n# TYPE ", m.name, " ", m.type, "\n", m.name, " ",
        SumOver(workers, [&](const WorkerCounters& w) { return (w.*m.field).Get(); }), "\n");
  }
  absl::StrAppend(o,
                  "# HELP lb_l7_requests_by_protocol_total Request heads accepted, by client "
                  "protocol.\n# TYPE lb_l7_requests_by_protocol_total counter\n");
  static constexpr const char* kProtocols[] = {"http/1.1", "h2"};
  for (int p = 0; p < 2; ++p) {
    absl::StrAppend(
        o, "lb_l7_requests_by_protocol_total{protocol=\"", kProtocols[p], "\"} ",
        SumOver(workers, [p](const WorkerCounters& w) { return w.protocol_requests[p].Get(); }),
        "\n");
  }
  absl::StrAppend(o,
                  "# HELP lb_l7_sticky_invalid_cookies_total Sticky cookies ignored, by "
                  "reason.\n# TYPE lb_l7_sticky_invalid_cookies_total counter\n");
  for (int r = 0; r < 4; ++r) {
    absl::StrAppend(
        o, "lb_l7_sticky_invalid_cookies_total{reason=\"", kStickyReasons[r], "\"} ",
        SumOver(workers, [r](const WorkerCounters& w) { return w.sticky_invalid[r].Get(); }), "\n");
  }
  absl::StrAppend(o,
                  "# HELP lb_l7_sticky_store_fallbacks_total Sticky store lookups that fell back "
                  "to the pool's own pick, by reason.\n# TYPE lb_l7_sticky_store_fallbacks_total "
                  "counter\n");
  for (int r = 0; r < 3; ++r) {
    absl::StrAppend(
        o, "lb_l7_sticky_store_fallbacks_total{reason=\"", kStoreFallbackReasons[r], "\"} ",
        SumOver(workers,
                [r](const WorkerCounters& w) { return w.sticky_store_fallbacks[r].Get(); }),
        "\n");
  }
}

}  // namespace

std::string AdminServer::RenderMetrics() const {
  std::string o;
  RenderConfigMetrics(&o);
  const std::shared_ptr<const AdminView> view = View();
  const AdminView& v = *view;
  if (v.config == nullptr) return o;  // no configuration applied yet
  AppendRouteRequests(*v.config, v.workers, &o);
  AppendBackendCounters(*v.config, v.workers, &o);
  absl::StrAppend(&o,
                  "# HELP lb_l7_backend_active_requests Requests in flight on a backend (all "
                  "workers).\n# TYPE lb_l7_backend_active_requests gauge\n");
  for (size_t p = 0; p < v.config->pools.size(); ++p) {
    for (size_t b = 0; b < v.config->pools[p].backends.size(); ++b) {
      absl::StrAppend(&o, "lb_l7_backend_active_requests{pool=\"", Escape(v.config->pools[p].name),
                      "\",backend=\"", Escape(v.config->pools[p].backends[b].addr.text), "\"} ",
                      v.active[p]->Get(static_cast<int>(b)), "\n");
    }
  }
  absl::StrAppend(&o,
                  "# HELP lb_l7_backend_draining 1 while a backend is draining (no new "
                  "requests).\n# TYPE lb_l7_backend_draining gauge\n");
  for (size_t p = 0; p < v.config->pools.size(); ++p) {
    for (size_t b = 0; b < v.config->pools[p].backends.size(); ++b) {
      absl::StrAppend(&o, "lb_l7_backend_draining{pool=\"", Escape(v.config->pools[p].name),
                      "\",backend=\"", Escape(v.config->pools[p].backends[b].addr.text), "\"} ",
                      v.active[p]->Draining(static_cast<int>(b)) ? 1 : 0, "\n");
    }
  }
  absl::StrAppend(&o,
                  "# HELP lb_l7_backend_down 1 while the control plane's active checks hold a "
                  "backend down (no new requests).\n# TYPE lb_l7_backend_down gauge\n");
  for (size_t p = 0; p < v.config->pools.size(); ++p) {
    for (size_t b = 0; b < v.config->pools[p].backends.size(); ++b) {
      absl::StrAppend(&o, "lb_l7_backend_down{pool=\"", Escape(v.config->pools[p].name),
                      "\",backend=\"", Escape(v.config->pools[p].backends[b].addr.text), "\"} ",
                      v.active[p]->Down(static_cast<int>(b)) ? 1 : 0, "\n");
    }
  }
  AppendScalars(v.workers, &o);
  AppendUpstreamTlsMetrics(v.workers, &o);
  AppendPassthroughMetrics(*v.config, v.workers, &o);
  AppendLatencyHistogram(*v.config, v.workers, "lb_l7_request_duration_seconds",
                         "Request head accepted to response queued (the access log's ms=), "
                         "requests routed to a pool.",
                         &WorkerCounters::request_duration, &o);
  AppendLatencyHistogram(*v.config, v.workers, "lb_l7_upstream_response_seconds",
                         "Request handed to the backend (after connect and TLS) to its first "
                         "response head.",
                         &WorkerCounters::upstream_response, &o);
  absl::StrAppend(&o,
                  "# HELP lb_l7_access_log_dropped_lines_total Access log lines dropped because "
                  "the writer was 8 MiB behind.\n# TYPE lb_l7_access_log_dropped_lines_total "
                  "counter\nlb_l7_access_log_dropped_lines_total ",
                  access_log_ != nullptr ? access_log_->dropped_lines() : 0, "\n");
  RenderTlsMetrics(v, &o);
  return o;
}

void AdminServer::RenderConfigMetrics(std::string* o) const {
  if (status_ == nullptr) return;
  absl::StrAppend(
      o,
      "# HELP lb_l7_config_generation Generation of the configuration the workers run (0 = "
      "a --config file, or none yet).\n# TYPE lb_l7_config_generation gauge\n"
      "lb_l7_config_generation ",
      status_->generation.load(std::memory_order_relaxed), "\n",
      "# HELP lb_l7_config_applies_total Configurations applied (start-up included).\n"
      "# TYPE lb_l7_config_applies_total counter\nlb_l7_config_applies_total ",
      status_->applies.load(std::memory_order_relaxed), "\n",
      "# HELP lb_l7_config_refusals_total Configurations refused (invalid, files missing, "
      "listeners that cannot be opened); the running one was kept.\n"
      "# TYPE lb_l7_config_refusals_total counter\nlb_l7_config_refusals_total ",
      status_->refusals.load(std::memory_order_relaxed), "\n",
      "# HELP lb_l7_controlplane_connected 1 while the control plane's configuration stream "
      "is open (--controlplane).\n# TYPE lb_l7_controlplane_connected gauge\n"
      "lb_l7_controlplane_connected ",
      status_->connected.load(std::memory_order_relaxed) ? 1 : 0, "\n",
      "# HELP lb_l7_retired_workers Workers of earlier configurations still finishing their "
      "connections.\n# TYPE lb_l7_retired_workers gauge\nlb_l7_retired_workers ",
      status_->retired_workers.load(std::memory_order_relaxed), "\n",
      "# HELP lb_l7_health_generation Generation of the control plane's active health "
      "applied (0 = none).\n# TYPE lb_l7_health_generation gauge\nlb_l7_health_generation ",
      status_->health_generation.load(std::memory_order_relaxed), "\n",
      "# HELP lb_l7_health_updates_total Active health documents from the control plane "
      "applied.\n# TYPE lb_l7_health_updates_total counter\nlb_l7_health_updates_total ",
      status_->health_updates.load(std::memory_order_relaxed), "\n");
}

void AdminServer::RenderTlsMetrics(const AdminView& v, std::string* o) const {
  if (v.tls == nullptr) return;
  const std::vector<std::shared_ptr<TlsContext>> ctxs = v.tls->Get();
  auto sum = [&v](const std::vector<Counter> WorkerCounters::*field, size_t i) {
    uint64_t total = 0;
    for (const WorkerCounters* w : v.workers) total += (w->*field)[i].Get();
    return total;
  };
  auto header = [o](const char* name, const char* type, const char* help) {
    absl::StrAppend(o, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  // Every listener configured with TLS shows its counters, also before its
  // context is in place (right after start): a scrape never lacks a series.
  auto ctx = [&ctxs](size_t l) { return l < ctxs.size() ? ctxs[l].get() : nullptr; };
  std::vector<size_t> tls_listeners;
  for (size_t l = 0; l < v.config->listeners.size(); ++l) {
    if (ctx(l) != nullptr || v.config->listeners[l].tls) tls_listeners.push_back(l);
  }
  if (tls_listeners.empty()) return;
  header("lb_l7_tls_handshakes_total", "counter",
         "Completed TLS handshakes, full or resumed (session ticket or cache).");
  for (size_t l : tls_listeners) {
    const std::string ln = Escape(v.config->listeners[l].name);
    for (int k = 0; k < 2; ++k) {
      absl::StrAppend(o, "lb_l7_tls_handshakes_total{listener=\"", ln, "\",kind=\"",
                      k == 0 ? "full" : "resumed", "\"} ",
                      sum(&WorkerCounters::tls_handshakes, l * 2 + k), "\n");
    }
  }
  header("lb_l7_tls_handshake_failures_total", "counter", "Failed TLS handshakes, by reason.");
  for (size_t l : tls_listeners) {
    const std::string ln = Escape(v.config->listeners[l].name);
    for (int k = 0; k < kTlsFailCount; ++k) {
      absl::StrAppend(o, "lb_l7_tls_handshake_failures_total{listener=\"", ln, "\",reason=\"",
                      TlsFailName(k), "\"} ",
                      sum(&WorkerCounters::tls_failures, l * kTlsFailCount + k), "\n");
    }
  }
  header("lb_l7_tls_versions_total", "counter", "Handshakes by negotiated TLS version.");
  for (size_t l : tls_listeners) {
    const std::string ln = Escape(v.config->listeners[l].name);
    for (int k = 0; k < 2; ++k) {
      absl::StrAppend(o, "lb_l7_tls_versions_total{listener=\"", ln, "\",version=\"",
                      k == 0 ? "TLSv1.2" : "TLSv1.3", "\"} ",
                      sum(&WorkerCounters::tls_versions, l * 2 + k), "\n");
    }
  }
  header("lb_l7_tls_ciphers_total", "counter", "Handshakes by negotiated cipher.");
  for (size_t l : tls_listeners) {
    const std::string ln = Escape(v.config->listeners[l].name);
    for (int k = 0; k < kTlsCipherCount; ++k) {
      absl::StrAppend(o, "lb_l7_tls_ciphers_total{listener=\"", ln, "\",cipher=\"",
                      TlsCipherName(k), "\"} ",
                      sum(&WorkerCounters::tls_ciphers, l * kTlsCipherCount + k), "\n");
    }
  }
  header("lb_l7_tls_certificate_expiry_seconds", "gauge",
         "Seconds until the certificate's notAfter (negative: expired), certificates in use.");
  const int64_t now = time(nullptr);
  for (size_t l : tls_listeners) {
    if (ctx(l) == nullptr) continue;
    for (const TlsCertInfo& c : ctx(l)->certs()) {
      absl::StrAppend(o, "lb_l7_tls_certificate_expiry_seconds{listener=\"",
                      Escape(v.config->listeners[l].name), "\",name=\"", Escape(c.subject),
                      "\",file=\"", Escape(c.file), "\"} ", c.not_after - now, "\n");
    }
  }
}

}  // namespace lb::l7
