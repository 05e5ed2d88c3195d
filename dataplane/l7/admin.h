// The admin HTTP server of lb-l7: GET /metrics answers the Prometheus text
// format (version 0.0.4) with the workers' counters summed; anything else is
// 404. One thread of its own, blocking sockets, one request per connection:
// it is off the request path and reads the counters with relaxed loads
// (counters.h).
#ifndef LB_DATAPLANE_L7_ADMIN_H_
#define LB_DATAPLANE_L7_ADMIN_H_

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "dataplane/l7/access_log.h"
#include "dataplane/l7/counters.h"
#include "dataplane/l7/l7_config.h"
#include "lib/l7/balancer.h"

namespace lb::l7 {

class TlsStore;

class AdminServer {
 public:
  // `active[p]`: pool p's shared active-request counts (a gauge per backend).
  AdminServer(const RuntimeConfig* config, std::vector<const WorkerCounters*> workers,
              std::vector<const ActiveCounts*> active, const AccessLog* access_log = nullptr);
  ~AdminServer();
  // Before Start(): TLS listeners' contexts (certificate expiry gauges).
  void SetTls(const TlsStore* store) { tls_ = store; }
  absl::Status Start(const std::string& address, uint32_t port);
  void Stop();
  // The /metrics body.
  std::string RenderMetrics() const;

 private:
  void Loop();
  void Serve(int fd);
  void RenderTlsMetrics(std::string* o) const;
  const RuntimeConfig* config_;
  std::vector<const WorkerCounters*> workers_;
  std::vector<const ActiveCounts*> active_;
  const AccessLog* access_log_;
  const TlsStore* tls_ = nullptr;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_ADMIN_H_
