// lb-l7's subscription to lb-controlplane (--controlplane): one thread
// holds a WatchL7Config stream (proto/lb/v1/admin.proto) and hands every
// configuration it receives to `on_config`, on that thread, in order.
//
// The stream's first message is the control plane's current configuration
// (generation 0 = none set yet: `on_config` is not called); then one per
// new generation. Every message also carries the control plane's active
// health of the L7 backends (L7Health, its own generation): `on_health`
// gets it after `on_config`, also when only the health changed. When the stream ends (control plane
// stopped, network, refused token) the thread logs the reason once per outage and reconnects with
// exponential backoff (200 ms doubling to 5 s; back to 200 ms after a stream delivered its first
// message). `connected` in ConfigStatus is 1 while a stream is open. What runs meanwhile is the
// Runner's business: lb-l7 keeps serving the configuration it has.
//
// Auth: the token (from --controlplane_token_file) goes as metadata
// `authorization: Bearer <token>`, as lbctl sends it; the admin API needs
// it for reads off loopback. TLS: with a CA file the channel is TLS and
// verifies the control plane's certificate.
//
// Threads: Start/Stop from one thread (main); on_config on the client's.
#ifndef LB_DATAPLANE_L7_CP_CLIENT_H_
#define LB_DATAPLANE_L7_CP_CLIENT_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "dataplane/l7/admin.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/l7.pb.h"

namespace grpc {
class ClientContext;
}

namespace lb::l7 {

struct ControlPlaneClientOptions {
  std::string address;          // host:port as gRPC takes it
  std::string token;            // "" = none
  std::string tls_ca_pem;       // "" = plaintext
  std::string tls_server_name;  // overrides the name checked in the certificate
  int backoff_min_ms = 200;
  int backoff_max_ms = 5000;
};

class ControlPlaneClient {
 public:
  using ConfigFn = std::function<void(const v1::L7Config& config, uint64_t generation)>;
  using HealthFn = std::function<void(const v1::L7Health& health)>;
  ControlPlaneClient(ControlPlaneClientOptions options, ConfigFn on_config, ConfigStatus* status,
                     HealthFn on_health = nullptr);
  ~ControlPlaneClient();  // Stop()
  void Start();
  // Cancels the stream and joins the thread.
  void Stop();

 private:
  void Loop();

  const ControlPlaneClientOptions options_;
  const ConfigFn on_config_;
  const HealthFn on_health_;
  ConfigStatus* const status_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  grpc::ClientContext* ctx_ = nullptr;  // the open stream's, guarded by mu_
  std::thread thread_;
};

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_CP_CLIENT_H_
