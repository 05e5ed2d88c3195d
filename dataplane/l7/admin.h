// The admin HTTP server of lb-l7: GET /metrics answers the Prometheus text
// format (version 0.0.4) with the workers' counters summed; anything else is
// 404. One thread of its own, blocking sockets, one request per connection:
// it is off the request path and reads the counters with relaxed loads
// (counters.h). The view (which workers, which configuration) is swapped
// when lb-l7 applies a new configuration.
#ifndef LB_DATAPLANE_L7_ADMIN_H_
#define LB_DATAPLANE_L7_ADMIN_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/l7/access_log.h"
#include "dataplane/l7/counters.h"
#include "lib/l7/balancer.h"
#include "proto/l7_config.h"

namespace lb::l7 {

class TlsStore;

// What the metrics describe: the running configuration's workers. Replaced
// as a whole when a configuration is applied (the counters of the new
// workers start at 0: a Prometheus counter reset). `owner` keeps the
// pointed-to objects alive while a scrape reads them.
struct AdminView {
  const RuntimeConfig* config = nullptr;  // null = nothing applied yet
  std::vector<const WorkerCounters*> workers;
  std::vector<const ActiveCounts*> active;  // per pool, shared by the workers
  const TlsStore* tls = nullptr;            // TLS listeners' contexts
  std::shared_ptr<const void> owner;
};

// The configuration's life, written by the thread that applies
// configurations, read by scrapes (relaxed atomics).
struct ConfigStatus {
  std::atomic<uint64_t> generation{0};
  std::atomic<uint64_t> applies{0};
  std::atomic<uint64_t> refusals{0};
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> retired_workers{0};
  // The control plane's active checks (Runner::SetHealth).
  std::atomic<uint64_t> health_generation{0};
  std::atomic<uint64_t> health_updates{0};
};

class AdminServer {
 public:
  // `access_log`, `status` may be null; both outlive the server.
  explicit AdminServer(const AccessLog* access_log = nullptr, const ConfigStatus* status = nullptr);
  ~AdminServer();
  // Any thread: what the next scrape reads.
  void SetView(std::shared_ptr<const AdminView> view);
  absl::Status Start(const std::string& address, uint32_t port);
  void Stop();
  // The /metrics body.
  std::string RenderMetrics() const;

 private:
  void Loop();
  void Serve(int fd);
  std::shared_ptr<const AdminView> View() const;
  void RenderConfigMetrics(std::string* o) const;
  void RenderTlsMetrics(const AdminView& v, std::string* o) const;
  const AccessLog* access_log_;
  const ConfigStatus* status_;
  mutable std::mutex view_mu_;
  std::shared_ptr<const AdminView> view_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_ADMIN_H_
