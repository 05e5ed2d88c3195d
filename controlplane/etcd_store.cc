#include "controlplane/etcd_store.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace lb {
namespace {

constexpr int kWatchRetryMs = 200;

// A gRPC failure as the status the control plane answers with: whatever
// kept us from an answer is Unavailable (the API maps it to 503). A Txn
// refused because the connection failed was never applied; one that got no
// answer in time may still be applied by etcd, and the message says so.
absl::Status FromGrpc(const grpc::Status& s, const std::string& what, const std::string& target,
                      int timeout_ms) {
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(
        absl::StrCat("etcd at ", target, " did not answer ", what, " within ", timeout_ms, " ms",
                     what == "Txn" ? " (etcd may still apply it; then every node adopts it)" : ""));
  }
  return absl::UnavailableError(
      absl::StrCat("etcd at ", target, " unreachable (", what, ": ", s.error_message(), ")"));
}

class EtcdStore : public Store {
 public:
  explicit EtcdStore(const EtcdStoreOptions& o)
      : options_(o), target_(o.url.Target()), key_(o.url.StateKey()) {
    kv_ = etcdserverpb::KV::NewStub(NewChannel());
  }
  ~EtcdStore() override { StopWatch(); }

  absl::StatusOr<std::optional<v1::Config>> Load() override {
    etcdserverpb::RangeRequest req;
    req.set_key(key_);
    etcdserverpb::RangeResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status s = kv_->Range(&ctx, req, &resp);
    if (!s.ok()) return Failed(s, "Range");
    call_ok_.store(true, std::memory_order_relaxed);
    if (resp.kvs_size() == 0) {
      revision_ = 0;
      return std::optional<v1::Config>();
    }
    auto config = DecodeStoredState(resp.kvs(0).value(), Describe());
    if (!config.ok()) return config.status();
    revision_ = resp.kvs(0).mod_revision();
    return std::optional<v1::Config>(*std::move(config));
  }

  absl::Status Save(const v1::Config& config) override {
    if (config.version() == 0) {
      return absl::InvalidArgumentError("Store::Save: config.version must be >= 1");
    }
    auto value = EncodeStoredState(config);
    if (!value.ok()) return value.status();
    etcdserverpb::TxnRequest req;
    etcdserverpb::Compare* cmp = req.add_compare();
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_target(etcdserverpb::Compare::MOD);
    cmp->set_key(key_);
    cmp->set_mod_revision(revision_);  // 0: the key must not exist yet
    etcdserverpb::PutRequest* put = req.add_success()->mutable_request_put();
    put->set_key(key_);
    put->set_value(*std::move(value));
    req.add_failure()->mutable_request_range()->set_key(key_);
    etcdserverpb::TxnResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status s = kv_->Txn(&ctx, req, &resp);
    if (!s.ok()) return Failed(s, "Txn");
    call_ok_.store(true, std::memory_order_relaxed);
    if (resp.succeeded()) {
      revision_ = resp.header().revision();
      return absl::OkStatus();
    }
    conflicts_.fetch_add(1, std::memory_order_relaxed);
    int64_t now = 0;
    if (resp.responses_size() > 0 && resp.responses(0).response_range().kvs_size() > 0) {
      now = resp.responses(0).response_range().kvs(0).mod_revision();
    }
    return absl::AbortedError(absl::StrCat("another control plane changed the state in ",
                                           Describe(), " (revision ", revision_, " -> ", now,
                                           ") since this one read it; nothing was written"));
  }

  std::string Describe() const override { return absl::StrCat("etcd://", target_, key_); }

  StoreHealth Health() const override {
    StoreHealth h;
    // Relaxed: independent gauges for /metrics, no ordering with the state.
    h.up = call_ok_.load(std::memory_order_relaxed) &&
           (!watch_started_.load(std::memory_order_relaxed) ||
            watching_.load(std::memory_order_relaxed));
    h.conflicts = conflicts_.load(std::memory_order_relaxed);
    return h;
  }

  void Watch(std::function<void()> on_change) override {
    watch_started_.store(true, std::memory_order_relaxed);
    on_change_ = std::move(on_change);
    thread_ = std::thread([this] { WatchLoop(); });
  }

  void StopWatch() override {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  // A channel of its own (local subchannel pool): after etcd was away, a
  // new channel connects at once instead of waiting out gRPC's reconnect
  // backoff, which in practice took up to 9 s here.
  std::shared_ptr<grpc::Channel> NewChannel() const {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // A watch on an etcd that vanished without a FIN/RST (a partition, a
    // frozen host) would wait forever: ping the connection, and drop it when
    // etcd does not answer (etcd accepts pings every 5 s and more rarely:
    // --grpc-keepalive-min-time).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    return grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args);
  }

  // After a failed call the next one starts on a new channel.
  absl::Status Failed(const grpc::Status& s, const std::string& what) {
    call_ok_.store(false, std::memory_order_relaxed);
    kv_ = etcdserverpb::KV::NewStub(NewChannel());
    return FromGrpc(s, what, target_, options_.timeout_ms);
  }

  void SetDeadline(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(options_.timeout_ms));
  }

  // One stream until it breaks; true when it was established.
  bool WatchOnce() {
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stop_) return false;
      ctx_ = &ctx;
    }
    bool created = false;
    auto stub = etcdserverpb::Watch::NewStub(NewChannel());  // see NewChannel
    auto stream = stub->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    // The state key only: <prefix>/leader and <prefix>/health change far
    // more often and are leader.cc's.
    req.mutable_create_request()->set_key(key_);
    if (stream->Write(req)) {
      etcdserverpb::WatchResponse resp;
      while (stream->Read(&resp)) {
        if (resp.created()) {
          created = true;
          watching_.store(true, std::memory_order_relaxed);
          LOG(INFO) << "etcd store: watching " << key_ << " on " << target_;
          on_change_();  // catch up with what happened while not watching
        } else if (resp.events_size() > 0) {
          on_change_();
        }
        if (resp.canceled()) {
          ctx.TryCancel();  // etcd ended the watch; end the stream too
          break;
        }
      }
    } else {
      ctx.TryCancel();
    }
    watching_.store(false, std::memory_order_relaxed);
    grpc::Status s = stream->Finish();
    absl::MutexLock l(&mu_);
    ctx_ = nullptr;
    if (created && !stop_) {
      LOG(WARNING) << "etcd store: watch on " << target_ << " lost (" << s.error_message()
                   << "); serving the last good state, retrying every " << kWatchRetryMs << " ms";
    }
    return created;
  }

  void WatchLoop() {
    while (true) {
      WatchOnce();
      absl::MutexLock l(&mu_);
      if (stop_) return;
      auto stopped = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Milliseconds(kWatchRetryMs));
      if (stop_) return;
    }
  }

  const EtcdStoreOptions options_;
  const std::string target_;
  const std::string key_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;  // serialized by the caller
  int64_t revision_ = 0;                        // mod_revision of what the last Load/Save saw
  std::atomic<bool> call_ok_{true};
  std::atomic<bool> watch_started_{false};
  std::atomic<bool> watching_{false};
  std::atomic<uint64_t> conflicts_{0};

  std::function<void()> on_change_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> NewEtcdStore(const EtcdStoreOptions& options) {
  if (options.url.kind != StoreUrl::Kind::kEtcd) {
    return absl::InvalidArgumentError("NewEtcdStore: not an etcd:// URL");
  }
  if (options.timeout_ms <= 0) return absl::InvalidArgumentError("timeout_ms must be > 0");
  return std::unique_ptr<Store>(new EtcdStore(options));
}

}  // namespace lb
