#include "controlplane/etcd_store.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/etcd_client.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace lb {
namespace {

constexpr int kWatchRetryMs = 200;

// One member's failure, for the message. `hint`: what an operator can act
// on when every member failed that way (set for TLS-looking failures only:
// a member killed mid-call closes its connections the same way).
std::string FailureReason(const grpc::Status& s, int timeout_ms, bool tls, std::string* hint) {
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::StrCat("did not answer within ", timeout_ms, " ms");
  }
  const std::string lower = absl::AsciiStrToLower(s.error_message());
  if (absl::StrContains(lower, "ssl") || absl::StrContains(lower, "handshake") ||
      absl::StrContains(lower, "certificate")) {
    *hint = tls ? "TLS handshake failed: check --etcd_ca against the members' certificates, and "
                  "--etcd_cert/--etcd_key when etcd runs with --client-cert-auth"
                : "TLS handshake failed: the members speak TLS: use etcds:// with --etcd_ca";
  } else if (absl::StrContains(lower, "endpoint read failed") ||
             absl::StrContains(lower, "socket closed")) {
    // How a member closes a connection it will not serve: after the TLS
    // handshake for a client certificate it refuses (TLS 1.3 checks it
    // after the client considers the handshake done), or a TLS member
    // reading a plain HTTP/2 preface.
    *hint = tls ? "connection closed by the members: with TLS, this is how a member refuses the "
                  "client certificate (none given, or not signed by its --trusted-ca-file): "
                  "check --etcd_cert/--etcd_key"
                : "connection closed by the members: if they serve TLS, use etcds:// with "
                  "--etcd_ca";
  }
  return s.error_message();
}

// The failure of a call that no member answered, as the status the control
// plane answers with: Unavailable (the API maps it to 503). `tried` lists
// each member's reason. A Txn refused because the connection failed was
// never applied; one that got no answer may still be applied by etcd, and
// the message says so.
absl::Status Unreachable(const std::string& what, const std::string& tried, const std::string& hint,
                         bool maybe_applied) {
  return absl::UnavailableError(absl::StrCat(
      "etcd unreachable (", what, " failed on every member: ", tried, ")", hint.empty() ? "" : "; ",
      hint, maybe_applied ? "; etcd may still apply it, then every node adopts it" : ""));
}

class EtcdStore : public Store {
 public:
  explicit EtcdStore(const EtcdStoreOptions& o)
      : options_(o),
        key_(o.url.StateKey()),
        kv_cursor_(o.url, o.tls),
        watch_cursor_(o.url, o.tls) {}
  ~EtcdStore() override { StopWatch(); }

  absl::StatusOr<std::optional<v1::Config>> Load() override {
    etcdserverpb::RangeRequest req;
    req.set_key(key_);
    etcdserverpb::RangeResponse resp;
    bool maybe_applied = false;
    absl::Status st = Call(
        "Range",
        [&](etcdserverpb::KV::Stub* kv, grpc::ClientContext* ctx) {
          return kv->Range(ctx, req, &resp);
        },
        &maybe_applied);
    if (!st.ok()) return st;
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
    put->set_value(*value);
    req.add_failure()->mutable_request_range()->set_key(key_);
    etcdserverpb::TxnResponse resp;
    bool maybe_applied = false;
    absl::Status st = Call(
        "Txn",
        [&](etcdserverpb::KV::Stub* kv, grpc::ClientContext* ctx) {
          return kv->Txn(ctx, req, &resp);
        },
        &maybe_applied);
    if (!st.ok()) return st;
    if (resp.succeeded()) {
      revision_ = resp.header().revision();
      return absl::OkStatus();
    }
    int64_t now = 0;
    if (resp.responses_size() > 0 && resp.responses(0).response_range().kvs_size() > 0) {
      const mvccpb::KeyValue& kv = resp.responses(0).response_range().kvs(0);
      now = kv.mod_revision();
    }
    // A member that took the Txn and died (or answered too late) before we
    // heard back: the Txn may have been applied, then the compare of the
    // retry fails on our own write (or on a later one made on top of it).
    // The compare guaranteed ours would be the key's first change after
    // revision_: look at that change in etcd's history. Ours: it was
    // applied once, say so instead of making the control plane redo the
    // change (which would then fail, e.g. "already exists").
    if (maybe_applied) {
      if (int64_t applied = AppliedAt(revision_, *value); applied > 0) {
        LOG(INFO) << "etcd store: the Txn a lost member took was applied (revision " << applied
                  << ")";
        revision_ = applied;
        return absl::OkStatus();
      }
    }
    conflicts_.fetch_add(1, std::memory_order_relaxed);
    return absl::AbortedError(absl::StrCat("another control plane changed the state in ",
                                           Describe(), " (revision ", revision_, " -> ", now,
                                           ") since this one read it; nothing was written"));
  }

  // The state key as a URL: etcd://h1:2379,h2:2379/lb/prod/state.
  std::string Describe() const override { return options_.url.Describe() + "/state"; }

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
  // One KV call on the current member, then on each other member once
  // while the failure is a member's (etcd_client.h). `maybe_applied`: some
  // attempt may have reached etcd without an answer coming back (anything
  // but a refused connection).
  template <typename Fn>
  absl::Status Call(const char* what, Fn fn, bool* maybe_applied) {
    std::string tried;
    std::string hint;
    for (size_t attempt = 0; attempt < kv_cursor_.size(); ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(options_.timeout_ms));
      auto stub = etcdserverpb::KV::NewStub(kv_cursor_.Channel());
      grpc::Status s = fn(stub.get(), &ctx);
      if (s.ok()) {
        call_ok_.store(true, std::memory_order_relaxed);
        if (attempt > 0) {
          LOG(WARNING) << "etcd store: " << what << " answered by " << kv_cursor_.Target()
                       << " after " << tried;
        }
        return absl::OkStatus();
      }
      const std::string reason = FailureReason(s, options_.timeout_ms, options_.url.tls, &hint);
      absl::StrAppend(&tried, tried.empty() ? "" : "; ", kv_cursor_.Target(), ": ", reason);
      if (!EtcdRetryOnNext(s)) {
        // etcd's own answer (a refused request), not a member's failure.
        return absl::UnavailableError(absl::StrCat("etcd at ", kv_cursor_.Target(), " refused ",
                                                   what, ": ", s.error_message()));
      }
      // "failed to connect": the request never left; anything else (reset,
      // closed, no answer in time) may have reached etcd.
      if (!absl::StrContains(absl::AsciiStrToLower(s.error_message()), "failed to connect")) {
        *maybe_applied = true;
      }
      kv_cursor_.Next();
    }
    call_ok_.store(false, std::memory_order_relaxed);
    return Unreachable(what, tried, hint, *maybe_applied && std::string(what) == "Txn");
  }

  // The revision at which the key's first change after `base` wrote
  // exactly `value`; 0 when it wrote something else, deleted the key, or
  // the history is not available (compacted, no member answers). A watch
  // from base + 1 replays that change first.
  int64_t AppliedAt(int64_t base, const std::string& value) {
    for (size_t attempt = 0; attempt < kv_cursor_.size(); ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(options_.timeout_ms));
      auto stub = etcdserverpb::Watch::NewStub(kv_cursor_.Channel());
      auto stream = stub->Watch(&ctx);
      etcdserverpb::WatchRequest req;
      req.mutable_create_request()->set_key(key_);
      req.mutable_create_request()->set_start_revision(base + 1);
      int64_t found = -1;  // -1: no answer from this member
      etcdserverpb::WatchResponse resp;
      if (stream->Write(req)) {
        while (found < 0 && stream->Read(&resp)) {
          if (resp.canceled()) {
            found = 0;
          } else if (resp.events_size() > 0) {
            const mvccpb::Event& ev = resp.events(0);
            found = ev.type() == mvccpb::Event::PUT && ev.kv().value() == value
                        ? ev.kv().mod_revision()
                        : 0;
          }
        }
      }
      ctx.TryCancel();
      (void)stream->Finish();
      if (found >= 0) return found;
      kv_cursor_.Next();
    }
    return 0;
  }

  // One stream until it breaks; true when it was established.
  bool WatchOnce() {
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stop_) return false;
      ctx_ = &ctx;
    }
    // A member cut off from the others (no raft leader) ends the stream
    // instead of serving a watch that no longer sees writes; the loop then
    // tries the next member.
    ctx.AddMetadata("hasleader", "true");
    bool created = false;
    const std::string target = watch_cursor_.Target();
    auto stub = etcdserverpb::Watch::NewStub(watch_cursor_.Channel());
    auto stream = stub->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    // The state key only: <prefix>/leader and <prefix>/health change far
    // more often and are leader.cc's.
    req.mutable_create_request()->set_key(key_);
    // Resume where the last stream ended: etcd replays every change after
    // the last revision seen (from its history, on any member), so nothing
    // made while switching members is missed.
    const bool resume = watch_rev_ > 0;
    if (resume) req.mutable_create_request()->set_start_revision(watch_rev_ + 1);
    if (stream->Write(req)) {
      etcdserverpb::WatchResponse resp;
      while (stream->Read(&resp)) {
        if (resp.canceled()) {
          if (resp.compact_revision() > 0) {
            // The history was compacted past watch_rev_: reload instead.
            LOG(WARNING) << "etcd store: revision " << watch_rev_ + 1 << " compacted on " << target
                         << "; reloading the state";
            watch_rev_ = 0;
          }
          ctx.TryCancel();  // etcd ended the watch; end the stream too
          break;
        }
        if (resp.created()) {
          created = true;
          watching_.store(true, std::memory_order_relaxed);
          LOG(INFO) << "etcd store: watching " << key_ << " on " << target
                    << (resume ? absl::StrCat(" from revision ", watch_rev_ + 1) : "");
          if (!resume) {
            watch_rev_ = resp.header().revision();
            on_change_();  // catch up with what happened while not watching
          }
        }
        if (resp.events_size() > 0) {
          for (const auto& ev : resp.events()) {
            watch_rev_ = std::max(watch_rev_, ev.kv().mod_revision());
          }
          on_change_();
        }
      }
    } else {
      ctx.TryCancel();
    }
    watching_.store(false, std::memory_order_relaxed);
    grpc::Status s = stream->Finish();
    absl::MutexLock l(&mu_);
    ctx_ = nullptr;
    if (!stop_) {
      watch_cursor_.Next();
      if (created) {
        LOG(WARNING) << "etcd store: watch on " << target << " lost (" << s.error_message()
                     << "); serving the last good state, resuming on " << watch_cursor_.Target()
                     << " in " << kWatchRetryMs << " ms";
      }
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
  const std::string key_;
  EtcdCursor kv_cursor_;     // serialized by the caller (Load, Save)
  int64_t revision_ = 0;     // mod_revision of what the last Load/Save saw
  EtcdCursor watch_cursor_;  // watch thread
  int64_t watch_rev_ = 0;    // watch thread: last revision the watch delivered
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
  if (options.url.kind != StoreUrl::Kind::kEtcd || options.url.endpoints.empty()) {
    return absl::InvalidArgumentError("NewEtcdStore: not an etcd:// URL");
  }
  if (options.timeout_ms <= 0) return absl::InvalidArgumentError("timeout_ms must be > 0");
  return std::unique_ptr<Store>(new EtcdStore(options));
}

}  // namespace lb
