// The gRPC admin API of lb-controlplane: lb.v1.LoadBalancerAdmin
// (proto/lb/v1/admin.proto) over lb::ControlPlane, plus the standard
// grpc.health.v1 service and server reflection so that generic gRPC tools
// (grpcurl, grpc_health_probe) work against it.
//
// Contract:
//  * Every RPC is a thin adapter: check the caller (auth, below), check the
//    request's shape at the edge (a missing message or id is INVALID_ARGUMENT
//    naming the field, e.g. "vip: required"), then call ControlPlane. Each
//    absl::StatusCode becomes the grpc::StatusCode of the same name
//    (InvalidArgument -> INVALID_ARGUMENT, NotFound -> NOT_FOUND, ...) and the
//    message, which names the field, is passed through unchanged. A refused
//    call changes nothing (ControlPlane's transaction guarantees that).
//  * Watch streams ControlPlane events until the client cancels (or the
//    server shuts down with a deadline). The first message is always
//    kind "subscribed" (generation = the current one): after it the client
//    is sure to see every later event. Each stream has a bounded queue
//    (GrpcServerOptions::watch_queue_events); a client too slow to keep up
//    loses the oldest events and then receives one event of kind "dropped",
//    message "dropped N events", before the newer ones.
//  * Auth (when GrpcServerOptions::token is set): every mutating RPC needs
//    metadata `authorization: Bearer <token>`, otherwise UNAUTHENTICATED and
//    nothing changes. Read-only RPCs (List*, Get*, Explain, Watch) are open
//    without the token on a loopback listener (127.0.0.0/8, ::1, localhost,
//    unix:) and need it too on any other listener. Without a token only a
//    loopback listener is accepted: StartGrpcServer refuses to expose an
//    unauthenticated admin API off the host. grpc.health.v1 and reflection
//    are always open: they reveal liveness and the schema, nothing else.
//
// Errors of StartGrpcServer: InvalidArgument naming the option
// (listen_address, tls_cert_file, tls_key_file, token); NotFound when a TLS
// file cannot be read; Unavailable when the address cannot be bound.
//
// Threads: gRPC's sync server runs each call on one of its threads; every
// handler may run concurrently with any other (ControlPlane is thread-safe).
// Each open Watch holds one server thread. Stop the server with
// Shutdown(deadline): open Watch streams end only when cancelled, and gRPC
// cancels them at the deadline (a Shutdown() without a deadline waits for
// every Watch client to hang up).
#ifndef LB_CONTROLPLANE_GRPC_SERVICE_H_
#define LB_CONTROLPLANE_GRPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/control_plane.h"
#include "lb/v1/admin.grpc.pb.h"
#include "lb/v1/admin.pb.h"

namespace lb {

struct GrpcServerOptions {
  // host:port as gRPC takes it ("127.0.0.1:50051", "[::1]:0", "0.0.0.0:50051",
  // "unix:/run/lb/admin.sock"). Port 0 picks a free port (see selected_port).
  std::string listen_address = "127.0.0.1:50051";
  // PEM files; both set = TLS (grpc::SslServerCredentials), both empty =
  // plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The bearer token itself (the caller reads it from its file); empty = no
  // token. Printable ASCII without spaces.
  std::string token;
  // Per-Watch-stream queue bound (events), and how many Watch streams may be
  // open at once (more get RESOURCE_EXHAUSTED).
  size_t watch_queue_events = 1024;
  int max_watchers = 64;
  // Out: when non-null, receives the port actually bound.
  int* selected_port = nullptr;
};

// True for listen addresses only reachable from this host: 127.0.0.0/8,
// ::1, "localhost" and unix: sockets. "0.0.0.0", "[::]" and other hosts are
// not.
bool IsLoopbackListenAddress(absl::string_view listen_address);

// The gRPC status for an absl status: same code, same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The bounded queue between ControlPlane's event callbacks (producers, which
// must never block) and one Watch stream (the consumer). When full, Push
// drops the oldest event and counts it. Thread-safe.
class EventQueue {
 public:
  explicit EventQueue(size_t capacity);

  void Push(const v1::Event& event);
  // Waits up to `timeout` for at least one event, then moves every queued
  // event into `out` (appending). Returns how many events were dropped since
  // the previous call.
  uint64_t PopAll(absl::Duration timeout, std::vector<v1::Event>* out);

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<v1::Event> events_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

class AdminService final : public v1::LoadBalancerAdmin::Service {
 public:
  // `cp` must outlive the service. `reads_need_token`: read-only RPCs need
  // the token too (non-loopback listener); ignored when `token` is empty.
  AdminService(ControlPlane* cp, std::string token, bool reads_need_token,
               size_t watch_queue_events, int max_watchers);

  grpc::Status CreateVip(grpc::ServerContext* ctx, const v1::CreateVipRequest* req,
                         v1::Vip* resp) override;
  grpc::Status ListVips(grpc::ServerContext* ctx, const v1::ListVipsRequest* req,
                        v1::ListVipsResponse* resp) override;
  grpc::Status DeleteVip(grpc::ServerContext* ctx, const v1::DeleteVipRequest* req,
                         v1::DeleteVipResponse* resp) override;

  grpc::Status CreatePool(grpc::ServerContext* ctx, const v1::CreatePoolRequest* req,
                          v1::Pool* resp) override;
  grpc::Status ListPools(grpc::ServerContext* ctx, const v1::ListPoolsRequest* req,
                         v1::ListPoolsResponse* resp) override;
  grpc::Status DeletePool(grpc::ServerContext* ctx, const v1::DeletePoolRequest* req,
                          v1::DeletePoolResponse* resp) override;
  grpc::Status SetPoolAlgorithm(grpc::ServerContext* ctx, const v1::SetPoolAlgorithmRequest* req,
                                v1::Pool* resp) override;
  grpc::Status SetHealthCheck(grpc::ServerContext* ctx, const v1::SetHealthCheckRequest* req,
                              v1::Pool* resp) override;

  grpc::Status AddBackend(grpc::ServerContext* ctx, const v1::AddBackendRequest* req,
                          v1::BackendStatus* resp) override;
  grpc::Status ListBackends(grpc::ServerContext* ctx, const v1::ListBackendsRequest* req,
                            v1::ListBackendsResponse* resp) override;
  grpc::Status UpdateBackend(grpc::ServerContext* ctx, const v1::UpdateBackendRequest* req,
                             v1::BackendStatus* resp) override;
  grpc::Status DrainBackend(grpc::ServerContext* ctx, const v1::DrainBackendRequest* req,
                            v1::BackendStatus* resp) override;
  grpc::Status RemoveBackend(grpc::ServerContext* ctx, const v1::RemoveBackendRequest* req,
                             v1::RemoveBackendResponse* resp) override;
  grpc::Status GetBackendHealth(grpc::ServerContext* ctx, const v1::GetBackendHealthRequest* req,
                                v1::BackendHealth* resp) override;

  grpc::Status GetNode(grpc::ServerContext* ctx, const v1::GetNodeRequest* req,
                       v1::Node* resp) override;
  grpc::Status SetNode(grpc::ServerContext* ctx, const v1::SetNodeRequest* req,
                       v1::Node* resp) override;

  grpc::Status GetStats(grpc::ServerContext* ctx, const v1::GetStatsRequest* req,
                        v1::Stats* resp) override;
  grpc::Status GetTables(grpc::ServerContext* ctx, const v1::GetTablesRequest* req,
                         v1::TablesInfo* resp) override;
  grpc::Status Explain(grpc::ServerContext* ctx, const v1::ExplainRequest* req,
                       v1::ExplainResponse* resp) override;
  grpc::Status GetL7Config(grpc::ServerContext* ctx, const v1::GetL7ConfigRequest* req,
                           v1::L7ConfigResponse* resp) override;
  grpc::Status SetL7Config(grpc::ServerContext* ctx, const v1::SetL7ConfigRequest* req,
                           v1::L7ConfigResponse* resp) override;
  // Counts against max_watchers like Watch.
  grpc::Status RotateL7TicketKeys(grpc::ServerContext* ctx,
                                  const v1::RotateL7TicketKeysRequest* req,
                                  v1::L7ConfigResponse* resp) override;
  grpc::Status WatchL7Config(grpc::ServerContext* ctx, const v1::WatchL7ConfigRequest* req,
                             grpc::ServerWriter<v1::L7ConfigResponse>* writer) override;
  grpc::Status Watch(grpc::ServerContext* ctx, const v1::WatchRequest* req,
                     grpc::ServerWriter<v1::Event>* writer) override;

 private:
  enum class Access { kRead, kMutate };
  grpc::Status Authorize(const grpc::ServerContext& ctx, Access access) const;

  ControlPlane* const cp_;
  const std::string token_;
  const bool reads_need_token_;
  const size_t watch_queue_events_;
  const int max_watchers_;
  std::atomic<int> watchers_{0};
};

// Builds and starts the server: AdminService on options.listen_address (TLS
// when configured; SO_REUSEPORT off so a taken port is an error), the default
// grpc.health.v1 service (status SERVING) and reflection. The returned server
// owns the AdminService; `cp` must outlive it.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(const GrpcServerOptions& options,
                                                              ControlPlane* cp);

}  // namespace lb

#endif  // LB_CONTROLPLANE_GRPC_SERVICE_H_
