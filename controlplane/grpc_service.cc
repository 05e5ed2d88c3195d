#include "controlplane/grpc_service.h"

#include "controlplane/clock.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "controlplane/config_api_validation.h"

namespace lb {
namespace {

constexpr char kBearerPrefix[] = "Bearer ";
// How often a Watch handler looks at its context for a cancellation (client
// gone, or the server's shutdown deadline passed) while no event arrives.
constexpr absl::Duration kWatchPoll = absl::Milliseconds(100);

// Compares without an early exit, so response time says nothing about how
// much of a guessed token was right.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

absl::StatusOr<std::string> ReadFile(const char* field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(field, ": cannot read \"", path, "\": ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"", path, "\" is empty"));
  }
  return ss.str();
}

// grpc::Server owns its interceptor factories and destroys them after its
// request threads and its health service (member order in grpcpp/server.h).
// This factory creates no interceptor; it owns the AdminService, so the
// service lives exactly as long as the server that dispatches to it.
class ServiceOwner final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ServiceOwner(std::unique_ptr<AdminService> service) : service_(std::move(service)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* /*info*/) override {
    return nullptr;
  }

 private:
  std::unique_ptr<AdminService> service_;
};

}  // namespace

bool IsLoopbackListenAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  for (absl::string_view scheme : {"ipv4:", "ipv6:", "dns:///", "dns:"}) {
    if (absl::StartsWith(address, scheme)) {
      address.remove_prefix(scheme.size());
      break;
    }
  }
  absl::string_view host;
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) return false;
    host = address.substr(1, close - 1);
  } else {
    const size_t colon = address.rfind(':');
    host = colon == absl::string_view::npos ? address : address.substr(0, colon);
  }
  if (host == "localhost") return true;
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return grpc::Status::OK;
    case absl::StatusCode::kCancelled:
      code = grpc::StatusCode::CANCELLED;
      break;
    case absl::StatusCode::kUnknown:
      code = grpc::StatusCode::UNKNOWN;
      break;
    case absl::StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case absl::StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case absl::StatusCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case absl::StatusCode::kPermissionDenied:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case absl::StatusCode::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case absl::StatusCode::kAborted:
      code = grpc::StatusCode::ABORTED;
      break;
    case absl::StatusCode::kOutOfRange:
      code = grpc::StatusCode::OUT_OF_RANGE;
      break;
    case absl::StatusCode::kUnimplemented:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case absl::StatusCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
    case absl::StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case absl::StatusCode::kDataLoss:
      code = grpc::StatusCode::DATA_LOSS;
      break;
    case absl::StatusCode::kUnauthenticated:
      code = grpc::StatusCode::UNAUTHENTICATED;
      break;
    default:
      code = grpc::StatusCode::UNKNOWN;
      break;
  }
  return grpc::Status(code, std::string(status.message()));
}

// --------------------------------------------------------------- EventQueue

EventQueue::EventQueue(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

void EventQueue::Push(const v1::Event& event) {
  absl::MutexLock lock(&mu_);
  if (events_.size() >= capacity_) {
    events_.pop_front();
    ++dropped_;
  }
  events_.push_back(event);
}

uint64_t EventQueue::PopAll(absl::Duration timeout, std::vector<v1::Event>* out) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]()
                   ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !events_.empty() || dropped_ > 0; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  for (v1::Event& e : events_) out->push_back(std::move(e));
  events_.clear();
  const uint64_t dropped = dropped_;
  dropped_ = 0;
  return dropped;
}

// ------------------------------------------------------------- AdminService

AdminService::AdminService(ControlPlane* cp, std::string token, bool reads_need_token,
                           size_t watch_queue_events, int max_watchers)
    : cp_(cp),
      token_(std::move(token)),
      reads_need_token_(reads_need_token),
      watch_queue_events_(watch_queue_events),
      max_watchers_(max_watchers) {}

grpc::Status AdminService::Authorize(const grpc::ServerContext& ctx, Access access) const {
  if (token_.empty()) return grpc::Status::OK;
  if (access == Access::kRead && !reads_need_token_) return grpc::Status::OK;
  const auto& md = ctx.client_metadata();
  auto range = md.equal_range("authorization");
  if (range.first == range.second) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization: metadata missing; send \"authorization: Bearer <token>\"");
  }
  for (auto it = range.first; it != range.second; ++it) {
    absl::string_view value(it->second.data(), it->second.size());
    if (absl::StartsWith(value, kBearerPrefix) &&
        ConstantTimeEquals(value.substr(sizeof(kBearerPrefix) - 1), token_)) {
      return grpc::Status::OK;
    }
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "authorization: bearer token does not match");
}

// ------------------------------------------------------------------- VIPs

grpc::Status AdminService::CreateVip(grpc::ServerContext* ctx, const v1::CreateVipRequest* req,
                                     v1::Vip* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto vip = cp_->CreateVip(req->vip());
  if (!vip.ok()) return ToGrpcStatus(vip.status());
  *resp = *std::move(vip);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListVips(grpc::ServerContext* ctx, const v1::ListVipsRequest* /*req*/,
                                    v1::ListVipsResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  for (v1::VipStatus& v : cp_->ListVips()) *resp->add_vips() = std::move(v);
  return grpc::Status::OK;
}

grpc::Status AdminService::DeleteVip(grpc::ServerContext* ctx, const v1::DeleteVipRequest* req,
                                     v1::DeleteVipResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = cp_->DeleteVip(req->id()); !s.ok()) return ToGrpcStatus(s);
  resp->set_id(req->id());
  return grpc::Status::OK;
}

// ------------------------------------------------------------------ pools

grpc::Status AdminService::CreatePool(grpc::ServerContext* ctx, const v1::CreatePoolRequest* req,
                                      v1::Pool* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto pool = cp_->CreatePool(req->pool());
  if (!pool.ok()) return ToGrpcStatus(pool.status());
  *resp = *std::move(pool);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListPools(grpc::ServerContext* ctx, const v1::ListPoolsRequest* /*req*/,
                                     v1::ListPoolsResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  v1::Config config = cp_->config();
  resp->mutable_pools()->Swap(config.mutable_pools());
  return grpc::Status::OK;
}

grpc::Status AdminService::DeletePool(grpc::ServerContext* ctx, const v1::DeletePoolRequest* req,
                                      v1::DeletePoolResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  if (absl::Status s = cp_->DeletePool(req->name()); !s.ok()) return ToGrpcStatus(s);
  resp->set_name(req->name());
  return grpc::Status::OK;
}

grpc::Status AdminService::SetPoolAlgorithm(grpc::ServerContext* ctx,
                                            const v1::SetPoolAlgorithmRequest* req,
                                            v1::Pool* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto pool = cp_->SetPoolAlgorithm(req->pool(), req->algorithm(), req->sticky_sessions(),
                                    req->sticky_ttl_seconds());
  if (!pool.ok()) return ToGrpcStatus(pool.status());
  *resp = *std::move(pool);
  return grpc::Status::OK;
}

grpc::Status AdminService::SetHealthCheck(grpc::ServerContext* ctx,
                                          const v1::SetHealthCheckRequest* req, v1::Pool* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto pool = cp_->SetHealthCheck(req->pool(), req->health_check());
  if (!pool.ok()) return ToGrpcStatus(pool.status());
  *resp = *std::move(pool);
  return grpc::Status::OK;
}

// --------------------------------------------------------------- backends

grpc::Status AdminService::AddBackend(grpc::ServerContext* ctx, const v1::AddBackendRequest* req,
                                      v1::BackendStatus* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto backend = cp_->AddBackend(req->pool(), req->backend());
  if (!backend.ok()) return ToGrpcStatus(backend.status());
  *resp = *std::move(backend);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListBackends(grpc::ServerContext* ctx,
                                        const v1::ListBackendsRequest* req,
                                        v1::ListBackendsResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  if (!req->pool().empty()) {
    // An unknown pool is NOT_FOUND rather than an empty list, so that a typo
    // in a script does not read as "no backends".
    const v1::Config config = cp_->config();
    bool found = false;
    for (const v1::Pool& p : config.pools()) found = found || p.name() == req->pool();
    if (!found) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("pool: no pool named \"", req->pool(), "\""));
    }
  }
  for (v1::BackendStatus& b : cp_->ListBackends(req->pool())) *resp->add_backends() = std::move(b);
  return grpc::Status::OK;
}

grpc::Status AdminService::UpdateBackend(grpc::ServerContext* ctx,
                                         const v1::UpdateBackendRequest* req,
                                         v1::BackendStatus* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto backend = cp_->UpdateBackend(*req);
  if (!backend.ok()) return ToGrpcStatus(backend.status());
  *resp = *std::move(backend);
  return grpc::Status::OK;
}

grpc::Status AdminService::DrainBackend(grpc::ServerContext* ctx,
                                        const v1::DrainBackendRequest* req,
                                        v1::BackendStatus* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiBackendId(req->id()); !s.ok()) return ToGrpcStatus(s);
  auto backend = cp_->DrainBackend(req->id());
  if (!backend.ok()) return ToGrpcStatus(backend.status());
  *resp = *std::move(backend);
  return grpc::Status::OK;
}

grpc::Status AdminService::RemoveBackend(grpc::ServerContext* ctx,
                                         const v1::RemoveBackendRequest* req,
                                         v1::RemoveBackendResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (absl::Status s = CheckApiBackendId(req->id()); !s.ok()) return ToGrpcStatus(s);
  auto removed = cp_->RemoveBackend(req->id());
  if (!removed.ok()) return ToGrpcStatus(removed.status());
  *resp = *std::move(removed);
  return grpc::Status::OK;
}

grpc::Status AdminService::GetBackendHealth(grpc::ServerContext* ctx,
                                            const v1::GetBackendHealthRequest* req,
                                            v1::BackendHealth* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  if (absl::Status s = CheckApiBackendId(req->id()); !s.ok()) return ToGrpcStatus(s);
  auto health = cp_->GetBackendHealth(req->id());
  if (!health.ok()) return ToGrpcStatus(health.status());
  *resp = *std::move(health);
  return grpc::Status::OK;
}

// ------------------------------------------------------------------ node

grpc::Status AdminService::GetNode(grpc::ServerContext* ctx, const v1::GetNodeRequest* /*req*/,
                                   v1::Node* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  *resp = cp_->config().node();
  return grpc::Status::OK;
}

grpc::Status AdminService::SetNode(grpc::ServerContext* ctx, const v1::SetNodeRequest* req,
                                   v1::Node* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  auto node = cp_->SetNode(req->node());
  if (!node.ok()) return ToGrpcStatus(node.status());
  *resp = *std::move(node);
  return grpc::Status::OK;
}

// ---------------------------------------------------------- observability

grpc::Status AdminService::GetStats(grpc::ServerContext* ctx, const v1::GetStatsRequest* /*req*/,
                                    v1::Stats* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  *resp = cp_->GetStats();
  return grpc::Status::OK;
}

grpc::Status AdminService::GetTables(grpc::ServerContext* ctx, const v1::GetTablesRequest* /*req*/,
                                     v1::TablesInfo* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  *resp = cp_->GetTables();
  return grpc::Status::OK;
}

grpc::Status AdminService::Explain(grpc::ServerContext* ctx, const v1::ExplainRequest* req,
                                   v1::ExplainResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  if (absl::Status s = CheckApiRequest(*req); !s.ok()) return ToGrpcStatus(s);
  auto explained = cp_->Explain(*req);
  if (!explained.ok()) return ToGrpcStatus(explained.status());
  *resp = *std::move(explained);
  return grpc::Status::OK;
}

grpc::Status AdminService::Watch(grpc::ServerContext* ctx, const v1::WatchRequest* /*req*/,
                                 grpc::ServerWriter<v1::Event>* writer) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  if (watchers_.fetch_add(1) >= max_watchers_) {
    watchers_.fetch_sub(1);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("watch: ", max_watchers_, " streams already open"));
  }
  // Shared with the callback: ControlPlane may still be running it on
  // another thread when Unsubscribe returns.
  auto queue = std::make_shared<EventQueue>(watch_queue_events_);
  const uint64_t subscription = cp_->Subscribe([queue](const v1::Event& e) { queue->Push(e); });

  v1::Event hello;
  hello.set_unix_ms(NowUnixMs());
  hello.set_kind("subscribed");
  hello.set_generation(cp_->generation());
  hello.set_message(absl::StrCat("watching from generation ", hello.generation()));
  bool open = writer->Write(hello);

  std::vector<v1::Event> batch;
  while (open && !ctx->IsCancelled()) {
    batch.clear();
    const uint64_t dropped = queue->PopAll(kWatchPoll, &batch);
    if (dropped > 0) {
      v1::Event note;
      note.set_unix_ms(NowUnixMs());
      note.set_kind("dropped");
      note.set_generation(cp_->generation());
      note.set_message(absl::StrCat("dropped ", dropped, " events"));
      open = writer->Write(note);
    }
    for (size_t i = 0; open && i < batch.size(); ++i) open = writer->Write(batch[i]);
  }
  cp_->Unsubscribe(subscription);
  watchers_.fetch_sub(1);
  return grpc::Status(grpc::StatusCode::CANCELLED, "watch: ended");
}

grpc::Status AdminService::GetL7Config(grpc::ServerContext* ctx,
                                       const v1::GetL7ConfigRequest* /*req*/,
                                       v1::L7ConfigResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  *resp = cp_->GetL7Config();
  return grpc::Status::OK;
}

grpc::Status AdminService::SetL7Config(grpc::ServerContext* ctx, const v1::SetL7ConfigRequest* req,
                                       v1::L7ConfigResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  if (!req->has_config()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "config: required");
  }
  auto r = cp_->SetL7Config(req->config(), req->expected_generation());
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status AdminService::RotateL7TicketKeys(grpc::ServerContext* ctx,
                                              const v1::RotateL7TicketKeysRequest* req,
                                              v1::L7ConfigResponse* resp) {
  if (grpc::Status s = Authorize(*ctx, Access::kMutate); !s.ok()) return s;
  auto r = cp_->RotateL7TicketKeys(/*only_if_due=*/false, req->drop_previous());
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = cp_->GetL7Config();  // the key generation, never the keys
  return grpc::Status::OK;
}

grpc::Status AdminService::WatchL7Config(grpc::ServerContext* ctx,
                                         const v1::WatchL7ConfigRequest* /*req*/,
                                         grpc::ServerWriter<v1::L7ConfigResponse>* writer) {
  if (grpc::Status s = Authorize(*ctx, Access::kRead); !s.ok()) return s;
  if (watchers_.fetch_add(1) >= max_watchers_) {
    watchers_.fetch_sub(1);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("watch: ", max_watchers_, " streams already open"));
  }
  // The current one first (even generation 0: the client learns the stream
  // is up), then whenever the generation differs from the last one sent.
  // The stream carries the session ticket keys (GetL7Config never does):
  // a message also when only their generation moved (a rotation), or the
  // health generation (active checks, l7_health.h).
  v1::L7ConfigResponse r = cp_->L7ConfigForNodes();
  uint64_t sent = r.generation(), sent_keys = r.ticket_key_generation(),
           sent_health = r.health().generation();
  bool open = writer->Write(r);
  while (open && !ctx->IsCancelled()) {
    r = cp_->WaitL7Config(sent, sent_keys, kWatchPoll, sent_health);
    if (r.generation() == sent && r.ticket_key_generation() == sent_keys &&
        r.health().generation() == sent_health) {
      continue;
    }
    sent = r.generation();
    sent_keys = r.ticket_key_generation();
    sent_health = r.health().generation();
    open = writer->Write(r);
  }
  watchers_.fetch_sub(1);
  return grpc::Status(grpc::StatusCode::CANCELLED, "watch: ended");
}

// ----------------------------------------------------------------- server

absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(const GrpcServerOptions& options,
                                                              ControlPlane* cp) {
  if (options.listen_address.empty()) {
    return absl::InvalidArgumentError("listen_address: required");
  }
  for (char c : options.token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "token: must be printable ASCII without spaces (it travels as gRPC metadata)");
    }
  }
  const bool loopback = IsLoopbackListenAddress(options.listen_address);
  if (!loopback && options.token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen_address: \"", options.listen_address,
                     "\" is reachable from other hosts; a token is required there "
                     "(or listen on 127.0.0.1 / [::1])"));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(options.tls_cert_file.empty()
                                          ? "tls_cert_file: required with tls_key_file"
                                          : "tls_key_file: required with tls_cert_file");
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty()) {
    auto cert = ReadFile("tls_cert_file", options.tls_cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadFile("tls_key_file", options.tls_key_file);
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  }

  // Process-wide switches; both must be set before the builder exists.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  auto service = std::make_unique<AdminService>(cp, options.token, /*reads_need_token=*/!loopback,
                                                options.watch_queue_events, options.max_watchers);
  AdminService* service_ptr = service.get();

  int port = 0;
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, which would let a second server
  // silently share a taken port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.listen_address, creds, &port);
  builder.RegisterService(service_ptr);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> owners;
  owners.push_back(std::make_unique<ServiceOwner>(std::move(service)));
  builder.experimental().SetInterceptorCreators(std::move(owners));

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("listen_address: cannot listen on \"",
                                               options.listen_address,
                                               "\" (address in use, or not an address here)"));
  }
  if (grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus(v1::LoadBalancerAdmin::service_full_name(), true);
  }
  if (options.selected_port != nullptr) *options.selected_port = port;
  return server;
}

}  // namespace lb
