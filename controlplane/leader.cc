#include "controlplane/leader.h"

#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/clock.h"
#include "controlplane/etcd_client.h"
#include "controlplane/shared_health.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace lb {
namespace {

constexpr int64_t kRetryNs = 200'000'000;  // after a failed call, and between watch attempts

class Elector : public LeaderElection {
 public:
  Elector(const LeaderOptions& o, LeaderHooks hooks)
      : o_(o),
        hooks_(std::move(hooks)),
        cursor_(o.url, o.tls),
        watch_cursor_(o.url, o.tls),
        leader_key_(o.url.prefix + "/leader"),
        health_key_(o.url.prefix + "/health") {
    Connect();
  }
  ~Elector() override { Stop(); }

  void Begin() {
    elector_ = std::thread([this] { ElectorLoop(); });
    watcher_ = std::thread([this] { WatchLoop(); });
  }

  void LocalHealthChanged() override {
    absl::MutexLock l(&mu_);
    dirty_ = true;
  }

  LeaderStatus Status() const override {
    absl::MutexLock l(&mu_);
    return status_;
  }

  void Stop() override {
    {
      absl::MutexLock l(&mu_);
      if (stopped_) return;
      stopped_ = stop_ = true;
      if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    }
    if (elector_.joinable()) elector_.join();
    if (watcher_.joinable()) watcher_.join();
    // Both threads are gone: lease_ and the stubs are ours now. Not the
    // leader any more before the key goes (no moment with two leaders).
    {
      absl::MutexLock l(&mu_);
      status_.leader = false;
    }
    if (lease_ != 0) {
      etcdserverpb::LeaseRevokeRequest req;
      req.set_id(lease_);
      etcdserverpb::LeaseRevokeResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(&ctx);
      grpc::Status s = lease_stub_->LeaseRevoke(&ctx, req, &resp);
      LOG(INFO) << "leader election: lease " << lease_ << (s.ok() ? " revoked" : " not revoked (")
                << (s.ok() ? "" : s.error_message() + "; it expires by itself)")
                << (leader_ ? ", leadership handed over" : "");
      lease_ = 0;
    }
  }

 private:
  // ---------------------------------------------------------- elector ---
  // Owns lease_, leader_, term_, lease_expiry_ns_ and the stubs.

  // Stubs on the current member (etcd_client.h: channels of their own, so
  // a member that came back is reached at once).
  void Connect() {
    auto ch = cursor_.Channel();
    kv_ = etcdserverpb::KV::NewStub(ch);
    lease_stub_ = etcdserverpb::Lease::NewStub(ch);
  }

  void SetDeadline(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(o_.timeout_ms));
  }

  // After a failure that is the member's, the next call (retried after
  // kRetryNs by the loop) goes to the next member: leases and keys are the
  // cluster's, any member serves them.
  void Failed(const char* what, const grpc::Status& s) {
    LOG_EVERY_N(WARNING, 20) << "leader election: etcd at " << cursor_.Target() << " " << what
                             << " failed: " << s.error_message() << " (retrying"
                             << (EtcdRetryOnNext(s) && cursor_.size() > 1 ? " on the next member"
                                                                          : "")
                             << ")";
    if (EtcdRetryOnNext(s)) cursor_.Next();
    Connect();
  }

  bool Grant() {
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(o_.ttl_s);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    const int64_t sent = SteadyNs();
    grpc::Status s = lease_stub_->LeaseGrant(&ctx, req, &resp);
    if (!s.ok()) {
      Failed("LeaseGrant", s);
      return false;
    }
    if (!resp.error().empty() || resp.id() == 0) {
      LOG(WARNING) << "leader election: LeaseGrant refused: " << resp.error();
      return false;
    }
    lease_ = resp.id();
    lease_ttl_ns_ = resp.ttl() * 1'000'000'000;
    lease_expiry_ns_ = sent + lease_ttl_ns_;
    VLOG(1) << "leader election: lease " << lease_ << " granted, TTL " << resp.ttl() << " s";
    return true;
  }

  enum class Renewal { kOk, kExpired, kFailed };

  // One keep-alive on a stream of its own, so the call has a deadline.
  Renewal KeepAlive() {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    const int64_t sent = SteadyNs();
    auto stream = lease_stub_->LeaseKeepAlive(&ctx);
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(lease_);
    etcdserverpb::LeaseKeepAliveResponse resp;
    const bool ok = stream->Write(req) && stream->Read(&resp);
    if (ok) stream->WritesDone();
    if (!ok) ctx.TryCancel();
    grpc::Status s = stream->Finish();
    if (!ok) {
      Failed("LeaseKeepAlive", s);
      return Renewal::kFailed;
    }
    if (resp.ttl() <= 0) return Renewal::kExpired;
    // etcd renewed at some time after `sent`: our expiry is never later
    // than etcd's.
    lease_expiry_ns_ = sent + resp.ttl() * 1'000'000'000;
    return Renewal::kOk;
  }

  void BecomeLeader(int64_t term) {
    leader_ = true;
    term_ = term;
    absl::MutexLock l(&mu_);
    status_.leader = true;
    dirty_ = true;  // publish this node's view at once
    LOG(INFO) << "leader election: " << o_.node_name << " is the leader (term " << term
              << ", lease " << lease_ << "); its health verdicts are now everyone's";
  }

  void StepDown(const std::string& why) {
    if (!leader_) return;
    leader_ = false;
    absl::MutexLock l(&mu_);
    status_.leader = false;
    LOG(WARNING) << "leader election: " << o_.node_name << " steps down (term " << term_
                 << "): " << why;
  }

  void Campaign() {
    {
      absl::MutexLock l(&mu_);
      campaign_ = false;
    }
    etcdserverpb::TxnRequest req;
    etcdserverpb::Compare* cmp = req.add_compare();
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_target(etcdserverpb::Compare::CREATE);
    cmp->set_key(leader_key_);
    cmp->set_create_revision(0);  // the key does not exist
    etcdserverpb::PutRequest* put = req.add_success()->mutable_request_put();
    put->set_key(leader_key_);
    put->set_value(o_.node_name);
    put->set_lease(lease_);
    req.add_failure()->mutable_request_range()->set_key(leader_key_);
    etcdserverpb::TxnResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status s = kv_->Txn(&ctx, req, &resp);
    if (!s.ok()) {
      Failed("campaign Txn", s);
      RetrySoon(/*campaign=*/true, /*dirty=*/false);
      return;
    }
    if (resp.succeeded()) {
      BecomeLeader(resp.header().revision());
      return;
    }
    const auto& kvs = resp.responses_size() > 0
                          ? resp.responses(0).response_range().kvs()
                          : google::protobuf::RepeatedPtrField<mvccpb::KeyValue>();
    if (kvs.empty()) {
      RetrySoon(true, false);  // it went between the compare and the range
    } else if (kvs[0].lease() == lease_) {
      BecomeLeader(kvs[0].create_revision());  // an earlier Txn of ours that timed out
    }
  }

  void WriteHealth() {
    {
      absl::MutexLock l(&mu_);
      dirty_ = false;
    }
    v1::SharedHealth doc = hooks_.local_view();
    doc.set_leader(o_.node_name);
    doc.set_term(term_);
    doc.set_written_unix_ms(NowUnixMs());
    etcdserverpb::TxnRequest req;
    etcdserverpb::Compare* cmp = req.add_compare();
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_target(etcdserverpb::Compare::LEASE);
    cmp->set_key(leader_key_);
    cmp->set_lease(lease_);  // the fence: only the lease that holds the leader key writes
    etcdserverpb::PutRequest* put = req.add_success()->mutable_request_put();
    put->set_key(health_key_);
    put->set_value(EncodeSharedHealth(doc));
    req.add_failure()->mutable_request_range()->set_key(leader_key_);
    etcdserverpb::TxnResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::Status s = kv_->Txn(&ctx, req, &resp);
    if (!s.ok()) {
      {
        absl::MutexLock l(&mu_);
        ++status_.health_write_failures;
      }
      Failed("health Txn", s);
      RetrySoon(false, true);
      return;
    }
    {
      absl::MutexLock l(&mu_);
      if (resp.succeeded()) {
        ++status_.health_writes;
        return;
      }
      ++status_.health_write_failures;
      campaign_ = true;
    }
    StepDown("the leader key is no longer held by this node's lease");
  }

  void RetrySoon(bool campaign, bool dirty) {
    absl::MutexLock l(&mu_);
    retry_at_ns_ = SteadyNs() + kRetryNs;
    retry_campaign_ = retry_campaign_ || campaign;
    retry_dirty_ = retry_dirty_ || dirty;
  }

  void ElectorLoop() {
    int64_t next_keepalive = 0;
    while (true) {
      bool campaign = false, dirty = false;
      {
        absl::MutexLock l(&mu_);
        if (stop_) return;
        if (retry_at_ns_ != 0 && SteadyNs() >= retry_at_ns_) {
          retry_at_ns_ = 0;
          campaign_ = campaign_ || retry_campaign_;
          dirty_ = dirty_ || retry_dirty_;
          retry_campaign_ = retry_dirty_ = false;
        }
        campaign = campaign_;
        dirty = dirty_;
      }
      int64_t now = SteadyNs();
      if (lease_ == 0) {
        if (!Grant()) {
          Wait(now + kRetryNs);
          continue;
        }
        next_keepalive = now + lease_ttl_ns_ / 3;
        campaign = true;
      } else if (now >= next_keepalive) {
        switch (KeepAlive()) {
          case Renewal::kOk:
            next_keepalive = now + lease_ttl_ns_ / 3;
            break;
          case Renewal::kExpired:
            StepDown("etcd says the lease expired");
            lease_ = 0;
            continue;
          case Renewal::kFailed:
            next_keepalive = now + kRetryNs;
            break;
        }
      }
      if (leader_ && SteadyNs() >= lease_expiry_ns_) {
        StepDown("no keep-alive answered within the lease TTL");
        lease_ = 0;  // a new lease once etcd answers; the old one expires there
        continue;
      }
      if (leader_ && campaign) {
        // The watch saw the leader key deleted (by hand, or its lease
        // revoked): whatever the lease says, this term is over.
        StepDown("the leader key was deleted");
      }
      if (!leader_ && campaign) Campaign();
      if (leader_ && dirty) WriteHealth();
      Wait(leader_ ? std::min(next_keepalive, lease_expiry_ns_) : next_keepalive);
    }
  }

  // Until `deadline` (steady ns), or earlier when there is work or a stop.
  void Wait(int64_t deadline) {
    absl::MutexLock l(&mu_);
    if (retry_at_ns_ != 0) deadline = std::min(deadline, retry_at_ns_);
    const bool leader = leader_;
    auto work = [this, leader]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return stop_ || campaign_ || (leader && dirty_);
    };
    const int64_t left = deadline - SteadyNs();
    if (left <= 0) return;
    mu_.AwaitWithTimeout(absl::Condition(&work), absl::Nanoseconds(left));
  }

  // ---------------------------------------------------------- watcher ---

  void NoLeader() {
    absl::MutexLock l(&mu_);
    if (!status_.leader_name.empty()) {
      LOG(INFO) << "leader election: " << status_.leader_name << " (term " << status_.term
                << ") is gone; campaigning";
    }
    status_.leader_name.clear();
    campaign_ = true;
  }

  void Apply(const mvccpb::KeyValue& kv) {
    if (kv.key() == leader_key_) {
      absl::MutexLock l(&mu_);
      if (kv.create_revision() != status_.term) {
        ++status_.leader_changes;
        LOG(INFO) << "leader election: the leader is " << kv.value() << " (term "
                  << kv.create_revision() << ")";
      }
      status_.leader_name = kv.value();
      status_.term = kv.create_revision();
      return;
    }
    if (kv.key() != health_key_) return;
    auto doc = DecodeSharedHealth(kv.value(), o_.url.Describe() + "/health");
    if (!doc.ok()) {
      {
        absl::MutexLock l(&mu_);
        ++status_.health_refused;
      }
      LOG(WARNING) << doc.status().message();
      return;
    }
    hooks_.on_shared_health(*doc);
  }

  // A Range of both keys, then a watch from the revision after it (so
  // nothing between the two is missed); until the stream breaks. The next
  // attempt goes to the next member.
  void WatchOnce() {
    auto ch = watch_cursor_.Channel();
    watch_cursor_.Next();  // whatever happens below, the next attempt's member
    auto kv = etcdserverpb::KV::NewStub(ch);
    const std::string range_end = leader_key_ + std::string(1, '\0');  // [health, leader]
    etcdserverpb::RangeRequest rreq;
    rreq.set_key(health_key_);
    rreq.set_range_end(range_end);
    etcdserverpb::RangeResponse rresp;
    {
      grpc::ClientContext ctx;
      SetDeadline(&ctx);
      if (!kv->Range(&ctx, rreq, &rresp).ok()) return;
    }
    bool leader_seen = false;
    for (const mvccpb::KeyValue& k : rresp.kvs()) {
      Apply(k);
      leader_seen = leader_seen || k.key() == leader_key_;
    }
    if (!leader_seen) NoLeader();

    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
      watch_ctx_ = &ctx;
    }
    ctx.AddMetadata("hasleader", "true");  // a member cut off from the others ends it
    auto stub = etcdserverpb::Watch::NewStub(ch);
    auto stream = stub->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    req.mutable_create_request()->set_key(health_key_);
    req.mutable_create_request()->set_range_end(range_end);
    req.mutable_create_request()->set_start_revision(rresp.header().revision() + 1);
    if (stream->Write(req)) {
      etcdserverpb::WatchResponse resp;
      while (stream->Read(&resp)) {
        for (const mvccpb::Event& e : resp.events()) {
          if (e.type() == mvccpb::Event::DELETE) {
            if (e.kv().key() == leader_key_) NoLeader();
          } else {
            Apply(e.kv());
          }
        }
        if (resp.canceled()) {
          ctx.TryCancel();
          break;
        }
      }
    } else {
      ctx.TryCancel();
    }
    (void)stream->Finish();
    absl::MutexLock l(&mu_);
    watch_ctx_ = nullptr;
  }

  void WatchLoop() {
    while (true) {
      WatchOnce();
      absl::MutexLock l(&mu_);
      if (stop_) return;
      auto stopped = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Nanoseconds(kRetryNs));
      if (stop_) return;
    }
  }

  const LeaderOptions o_;
  const LeaderHooks hooks_;
  EtcdCursor cursor_;        // the elector thread's (then Stop's)
  EtcdCursor watch_cursor_;  // the watcher thread's
  const std::string leader_key_;
  const std::string health_key_;

  // The elector thread's own (then Stop's).
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_stub_;
  int64_t lease_ = 0;
  int64_t lease_ttl_ns_ = 0;
  int64_t lease_expiry_ns_ = 0;  // steady ns: no later than etcd's expiry of lease_
  bool leader_ = false;
  int64_t term_ = 0;

  std::thread elector_;
  std::thread watcher_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool campaign_ ABSL_GUARDED_BY(mu_) = true;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  int64_t retry_at_ns_ ABSL_GUARDED_BY(mu_) = 0;
  bool retry_campaign_ ABSL_GUARDED_BY(mu_) = false;
  bool retry_dirty_ ABSL_GUARDED_BY(mu_) = false;
  LeaderStatus status_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace

absl::StatusOr<std::optional<v1::SharedHealth>> LoadSharedHealth(const StoreUrl& url,
                                                                 const EtcdTls& tls,
                                                                 int timeout_ms) {
  const std::string key = url.prefix + "/health";
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  std::string tried;
  bool ok = false;
  for (size_t i = 0; i < url.endpoints.size() && !ok; ++i) {
    auto kv = etcdserverpb::KV::NewStub(NewEtcdChannel(url, i, tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    grpc::Status s = kv->Range(&ctx, req, &resp);
    ok = s.ok();
    if (!ok)
      absl::StrAppend(&tried, tried.empty() ? "" : "; ", url.Target(i), ": ", s.error_message());
    if (!ok && !EtcdRetryOnNext(s)) break;
  }
  if (!ok) return absl::UnavailableError(absl::StrCat("etcd (Range ", key, "): ", tried));
  if (resp.kvs_size() == 0) return std::optional<v1::SharedHealth>();
  auto doc = DecodeSharedHealth(resp.kvs(0).value(), url.Describe() + "/health");
  if (!doc.ok()) return doc.status();
  return std::optional<v1::SharedHealth>(*std::move(doc));
}

absl::StatusOr<std::unique_ptr<LeaderElection>> StartLeaderElection(const LeaderOptions& options,
                                                                    LeaderHooks hooks) {
  if (options.url.kind != StoreUrl::Kind::kEtcd || options.url.endpoints.empty()) {
    return absl::InvalidArgumentError("leader election needs an etcd:// store");
  }
  if (options.timeout_ms <= 0) return absl::InvalidArgumentError("timeout_ms must be > 0");
  if (options.ttl_s < 1) return absl::InvalidArgumentError("--etcd_lease_ttl_s must be >= 1");
  if (options.node_name.empty() || options.node_name.size() > 255) {
    return absl::InvalidArgumentError("--node_name must be 1..255 bytes");
  }
  if (!hooks.local_view || !hooks.on_shared_health) {
    return absl::InvalidArgumentError("leader election: both hooks are required");
  }
  auto e = std::make_unique<Elector>(options, std::move(hooks));
  e->Begin();
  return std::unique_ptr<LeaderElection>(std::move(e));
}

}  // namespace lb
