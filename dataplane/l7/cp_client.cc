#include "dataplane/l7/cp_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "lb/v1/admin.grpc.pb.h"

namespace lb::l7 {

ControlPlaneClient::ControlPlaneClient(ControlPlaneClientOptions options, ConfigFn on_config,
                                       ConfigStatus* status, HealthFn on_health)
    : options_(std::move(options)),
      on_config_(std::move(on_config)),
      on_health_(std::move(on_health)),
      status_(status) {}

ControlPlaneClient::~ControlPlaneClient() { Stop(); }

void ControlPlaneClient::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void ControlPlaneClient::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    if (ctx_ != nullptr) ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ControlPlaneClient::Loop() {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  if (options_.tls_ca_pem.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls_ca_pem;
    creds = grpc::SslCredentials(ssl);
    if (!options_.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options_.tls_server_name);
    }
  }
  // Our own backoff decides when to try again: a fresh channel each time
  // connects at once instead of waiting out gRPC's reconnect backoff.
  int backoff_ms = options_.backoff_min_ms;
  bool outage_logged = false;
  while (true) {
    auto channel = grpc::CreateCustomChannel(options_.address, creds, args);
    auto stub = v1::LoadBalancerAdmin::NewStub(channel);
    grpc::ClientContext ctx;
    if (!options_.token.empty()) {
      ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) break;
      ctx_ = &ctx;
    }
    auto reader = stub->WatchL7Config(&ctx, v1::WatchL7ConfigRequest());
    v1::L7ConfigResponse r;
    bool first = true;
    while (reader->Read(&r)) {
      if (first) {
        first = false;
        backoff_ms = options_.backoff_min_ms;
        outage_logged = false;
        if (status_ != nullptr) status_->connected.store(true);
        LOG(INFO) << "control plane " << options_.address << ": subscribed (its L7 generation "
                  << r.generation() << ")";
      }
      if (r.generation() != 0) on_config_(r.config(), r.generation());
      if (on_health_) on_health_(r.health());
    }
    const grpc::Status st = reader->Finish();
    if (status_ != nullptr) status_->connected.store(false);
    std::unique_lock<std::mutex> l(mu_);
    ctx_ = nullptr;
    if (stop_) break;
    if (!outage_logged || !first) {
      LOG(WARNING) << "control plane " << options_.address << ": "
                   << (first ? "cannot subscribe" : "stream ended") << " (code " << st.error_code()
                   << ": " << st.error_message()
                   << "); serving the configuration in hand, retrying with backoff up to "
                   << options_.backoff_max_ms << " ms";
      outage_logged = true;
    }
    cv_.wait_for(l, std::chrono::milliseconds(backoff_ms), [this] { return stop_; });
    if (stop_) break;
    backoff_ms = std::min(backoff_ms * 2, options_.backoff_max_ms);
  }
}

}  // namespace lb::l7
