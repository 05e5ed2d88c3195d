// lbctl: the admin CLI of lb-controlplane. Every RPC of lb.v1.LoadBalancerAdmin
// (proto/lb/v1/admin.proto) is a subcommand; output is an aligned table by
// default and protobuf JSON (proto field names) with --json. Errors print one
// line, "lbctl: <GRPC_CODE>: <message>", on stderr, and the exit status says
// what went wrong (kExitHelp below; `lbctl --help` prints it).
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/cli/command_line.h"
#include "controlplane/cli/text_table.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "lb/v1/admin.grpc.pb.h"
#include "lb/v1/admin.pb.h"

namespace lb::cli {
namespace {

constexpr char kProgram[] = "lbctl";
constexpr char kDefaultServer[] = "127.0.0.1:50051";
constexpr int kDefaultTimeoutMs = 5000;

// Exit statuses. Scripts rely on these; keep them stable.
enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,
  kExitUsage = 2,
  kExitNotFound = 3,
  kExitInvalidArgument = 4,
  kExitAlreadyExists = 5,
  kExitFailedPrecondition = 6,
  kExitUnauthenticated = 7,
  kExitUnavailable = 8,
  kExitDeadlineExceeded = 9,
};

constexpr char kExitHelp[] =
    "Exit status:\n"
    "  0  ok\n"
    "  1  other error (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...)\n"
    "  2  usage error (bad command, flag or argument syntax)\n"
    "  3  not found (NOT_FOUND)\n"
    "  4  invalid argument (INVALID_ARGUMENT, OUT_OF_RANGE); the message names the field\n"
    "  5  already exists (ALREADY_EXISTS)\n"
    "  6  failed precondition (FAILED_PRECONDITION), e.g. a pool still used by a VIP\n"
    "  7  unauthenticated (UNAUTHENTICATED, PERMISSION_DENIED): check --token_file\n"
    "  8  unavailable (UNAVAILABLE): cannot connect to --server, or its store (etcd) is\n"
    "     unreachable and the change was refused\n"
    "  9  deadline exceeded (--timeout_ms, or watch --timeout before --count events)\n"
    "Errors print one line on stderr: \"lbctl: <CODE>: <message>\".\n";

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kExitInvalidArgument;
    case grpc::StatusCode::ALREADY_EXISTS:
      return kExitAlreadyExists;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return kExitFailedPrecondition;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitUnauthenticated;
    case grpc::StatusCode::UNAVAILABLE:
      return kExitUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitDeadlineExceeded;
    default:
      return kExitOther;
  }
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

// ------------------------------------------------------ argument parsing

absl::StatusOr<uint32_t> ParseU32(const std::string& what, const std::string& text) {
  uint32_t v = 0;
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0])) ||
      !absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", text, "\" is not a number (0..4294967295)"));
  }
  return v;
}

struct HostPort {
  std::string host;
  uint32_t port = 0;
};

// "10.0.0.1:80", "[2001:db8::1]:80", "name.example:80". The port's range is
// the server's to check (it names the field).
absl::StatusOr<HostPort> ParseHostPort(const std::string& what, const std::string& text) {
  HostPort hp;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"", text, "\" is not [ADDRESS]:PORT"));
    }
    hp.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": \"", text, "\" is not ADDRESS:PORT"));
    }
    hp.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (hp.host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": \"", text, "\": write IPv6 addresses as [ADDRESS]:PORT"));
    }
  }
  auto p = ParseU32(absl::StrCat(what, " port"), port);
  if (!p.ok()) return p.status();
  hp.port = *p;
  return hp;
}

// "weighted_round_robin" -> ALGORITHM_WEIGHTED_ROUND_ROBIN, by the proto's
// own enum names (prefix + upper case), so the CLI never falls behind the
// API. UNSPECIFIED is not offered.
template <typename E>
absl::StatusOr<E> ParseEnum(const std::string& what, const std::string& text,
                            const std::string& prefix) {
  const google::protobuf::EnumDescriptor* d = google::protobuf::GetEnumDescriptor<E>();
  std::vector<std::string> names;
  for (int i = 0; i < d->value_count(); ++i) {
    const std::string& full = d->value(i)->name();
    const std::string shortname = absl::AsciiStrToLower(full.substr(prefix.size()));
    if (shortname == "unspecified") continue;
    if (shortname == absl::AsciiStrToLower(text)) return static_cast<E>(d->value(i)->number());
    names.push_back(shortname);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": \"", text, "\" is not one of ", absl::StrJoin(names, ", ")));
}

template <typename E>
std::string EnumShort(E value, const std::string& prefix) {
  const google::protobuf::EnumValueDescriptor* v =
      google::protobuf::GetEnumDescriptor<E>()->FindValueByNumber(static_cast<int>(value));
  if (v == nullptr) return absl::StrCat(static_cast<int>(value));
  return absl::AsciiStrToLower(v->name().substr(prefix.size()));
}

// The proto's zero values mean a default; show the default.
std::string Algo(v1::Algorithm a) {
  return EnumShort(a == v1::ALGORITHM_UNSPECIFIED ? v1::ALGORITHM_MAGLEV : a, "ALGORITHM_");
}
std::string State(v1::BackendState s) {
  return EnumShort(s == v1::BACKEND_STATE_UNSPECIFIED ? v1::BACKEND_STATE_ACTIVE : s,
                   "BACKEND_STATE_");
}
std::string Health(v1::HealthStatus h) { return EnumShort(h, "HEALTH_STATUS_"); }
std::string Proto(v1::Protocol p) { return EnumShort(p, "PROTOCOL_"); }

std::string Num(uint64_t v) { return absl::StrCat(v); }

std::string UnixMsText(uint64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(static_cast<int64_t>(ms)),
                          absl::UTCTimeZone());
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ------------------------------------------------------------ rendering

const std::vector<std::string> kVipHeader = {
    "ID", "ADDRESS", "PORT", "PROTO", "POOL", "MEMBERS", "GENERATION", "FINGERPRINT", "FRAG"};

std::vector<std::string> VipRow(const v1::Vip& v, const v1::VipStatus* status) {
  return {Num(v.id()),
          v.address(),
          Num(v.port()),
          Proto(v.protocol()),
          v.pool(),
          status != nullptr ? Num(status->active_members()) : "-",
          status != nullptr ? Num(status->generation()) : "-",
          status != nullptr ? status->fingerprint() : "-",
          v.fragment_tolerant() ? "yes" : "no"};
}

std::string HealthCheckText(const v1::HealthCheck& hc) {
  switch (hc.kind()) {
    case v1::HEALTH_CHECK_KIND_UNSPECIFIED:
    case v1::HEALTH_CHECK_KIND_NONE:
      return "none";
    default:
      break;
  }
  std::string out = EnumShort(hc.kind(), "HEALTH_CHECK_KIND_");
  if (hc.kind() == v1::HEALTH_CHECK_KIND_HTTP) {
    absl::StrAppend(&out, ":", hc.http_path().empty() ? "/health" : hc.http_path());
  }
  absl::StrAppend(&out, "/", hc.interval_ms() == 0 ? 5000 : hc.interval_ms(), "ms");
  if (hc.through_tunnel()) absl::StrAppend(&out, "/tunnel");
  return out;
}

const std::vector<std::string> kPoolHeader = {"NAME",          "ALGORITHM", "STICKY",
                                              "STICKY_TTL",    "BACKENDS",  "HEALTH_CHECK",
                                              "DRAIN_TIMEOUT", "KIND"};

std::vector<std::string> PoolRow(const v1::Pool& p) {
  return {
      p.name(),
      Algo(p.algorithm()),
      p.sticky_sessions() ? "yes" : "no",
      p.sticky_sessions() ? Num(p.sticky_ttl_seconds() == 0 ? 3600 : p.sticky_ttl_seconds()) : "-",
      Num(static_cast<uint64_t>(p.backends_size())),
      HealthCheckText(p.health_check()),
      Num(p.drain_timeout_seconds() == 0 ? 30 : p.drain_timeout_seconds()),
      p.kind() == v1::POOL_KIND_PROXY ? "proxy" : "dsr"};
}

const std::vector<std::string> kBackendHeader = {"ID",        "POOL",      "ADDRESS", "PORT",
                                                 "WEIGHT",    "MAX_CONNS", "STATE",   "HEALTH",
                                                 "EFFECTIVE", "CONNS",     "PACKETS", "BYTES"};

std::vector<std::string> BackendRow(const v1::BackendStatus& s) {
  const v1::Backend& b = s.backend();
  return {Num(b.id()),
          s.pool(),
          b.address(),
          Num(b.port()),
          Num(b.has_weight() ? b.weight() : 1),
          b.max_connections() == 0 ? "-" : Num(b.max_connections()),
          State(b.state()),
          Health(s.health()),
          State(s.effective_state()),
          Num(s.active_connections()),
          Num(s.packets()),
          Num(s.bytes())};
}

std::string EventLine(const v1::Event& e) {
  std::string line = absl::StrCat(UnixMsText(e.unix_ms()), "  ", e.kind());
  if (e.generation() != 0) absl::StrAppend(&line, "  generation=", e.generation());
  if (e.backend_id() != 0) absl::StrAppend(&line, "  backend=", e.backend_id());
  if (e.health() != v1::HEALTH_STATUS_UNSPECIFIED) {
    absl::StrAppend(&line, "  health=", Health(e.health()));
  }
  if (!e.message().empty()) absl::StrAppend(&line, "  ", e.message());
  return line;
}

// --------------------------------------------------------------- lbctl

class Lbctl {
 public:
  Lbctl();
  int Main(std::vector<std::string> argv);

 private:
  // Prints "lbctl: usage: <msg>" and returns kExitUsage.
  int Usage(absl::string_view msg, const CommandDef* command = nullptr) const;
  int Fail(const grpc::Status& status) const;
  int Connect(const ParsedArgs& args);
  std::unique_ptr<grpc::ClientContext> NewContext(bool with_deadline = true) const;
  void PrintJson(const google::protobuf::Message& m) const;
  std::string Footer() const;

  // Prints `resp` as JSON or through `human`; returns the exit status.
  template <typename Resp, typename Human>
  int Show(const grpc::Status& status, const Resp& resp, Human human) const {
    if (!status.ok()) return Fail(status);
    if (json_) {
      PrintJson(resp);
    } else {
      std::fputs(human(resp).c_str(), stdout);
    }
    return kExitOk;
  }

  int VipAdd(const ParsedArgs& a);
  int VipList(const ParsedArgs& a);
  int VipRm(const ParsedArgs& a);
  int PoolAdd(const ParsedArgs& a);
  int PoolList(const ParsedArgs& a);
  int PoolRm(const ParsedArgs& a);
  int PoolSetAlgorithm(const ParsedArgs& a);
  int PoolSetHealthCheck(const ParsedArgs& a);
  int BackendAdd(const ParsedArgs& a);
  int BackendList(const ParsedArgs& a);
  int BackendUpdate(const ParsedArgs& a);
  int BackendDrain(const ParsedArgs& a);
  int BackendRm(const ParsedArgs& a);
  int BackendHealth(const ParsedArgs& a);
  int Stats(const ParsedArgs& a);
  int Tables(const ParsedArgs& a);
  int NodeShow(const ParsedArgs& a);
  int NodeSet(const ParsedArgs& a);
  int Explain(const ParsedArgs& a);
  int Watch(const ParsedArgs& a);

  std::vector<FlagDef> global_flags_;
  std::vector<CommandDef> commands_;
  const CommandDef* current_ = nullptr;

  std::string server_ = kDefaultServer;
  std::string token_;
  int timeout_ms_ = kDefaultTimeoutMs;
  bool json_ = false;
  std::unique_ptr<v1::LoadBalancerAdmin::Stub> stub_;
};

int Lbctl::Usage(absl::string_view msg, const CommandDef* command) const {
  if (command == nullptr) command = current_;
  std::fprintf(
      stderr, "%s: usage: %s (see '%s%s --help')\n", kProgram, std::string(msg).c_str(), kProgram,
      command == nullptr ? "" : absl::StrCat(" ", absl::StrJoin(command->words, " ")).c_str());
  return kExitUsage;
}

int Lbctl::Fail(const grpc::Status& status) const {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat(server_, ": ", message);
  }
  std::fprintf(stderr, "%s: %s: %s\n", kProgram, CodeName(status.error_code()), message.c_str());
  return ExitCodeFor(status.error_code());
}

std::string Lbctl::Footer() const {
  return absl::StrCat("\nGlobal flags (anywhere on the line):\n", FlagsHelp(global_flags_), "\n",
                      kExitHelp);
}

int Lbctl::Connect(const ParsedArgs& args) {
  server_ = args.Get("server", kDefaultServer);
  json_ = args.Switch("json");
  auto timeout = ParseU32("--timeout_ms", args.Get("timeout_ms", Num(kDefaultTimeoutMs)));
  if (!timeout.ok() || *timeout == 0 || *timeout > 3'600'000) {
    return Usage("--timeout_ms: must be 1..3600000");
  }
  timeout_ms_ = static_cast<int>(*timeout);
  if (args.Has("token_file")) {
    auto token = ReadSmallFile("--token_file", args.Get("token_file"));
    if (!token.ok()) return Usage(token.status().message());
    token_ = std::string(absl::StripAsciiWhitespace(*token));
    if (token_.empty())
      return Usage(absl::StrCat("--token_file: \"", args.Get("token_file"), "\" is empty"));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments channel_args;
  if (args.Has("tls_ca")) {
    auto ca = ReadSmallFile("--tls_ca", args.Get("tls_ca"));
    if (!ca.ok()) return Usage(ca.status().message());
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    creds = grpc::SslCredentials(ssl);
    if (args.Has("tls_server_name")) {
      channel_args.SetSslTargetNameOverride(args.Get("tls_server_name"));
    }
  } else if (args.Has("tls_server_name")) {
    return Usage("--tls_server_name: needs --tls_ca");
  }
  stub_ = v1::LoadBalancerAdmin::NewStub(grpc::CreateCustomChannel(server_, creds, channel_args));
  return kExitOk;
}

std::unique_ptr<grpc::ClientContext> Lbctl::NewContext(bool with_deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (with_deadline) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms_));
  }
  if (!token_.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  return ctx;
}

void Lbctl::PrintJson(const google::protobuf::Message& m) const {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(m, &out, opts);
  if (!status.ok()) out = "{}";
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
}

// ------------------------------------------------------------- commands

int Lbctl::VipAdd(const ParsedArgs& a) {
  auto hp = ParseHostPort("ADDRESS:PORT", a.positional[0]);
  if (!hp.ok()) return Usage(hp.status().message());
  auto proto = ParseEnum<v1::Protocol>("protocol", a.positional[1], "PROTOCOL_");
  if (!proto.ok()) return Usage(proto.status().message());
  v1::CreateVipRequest req;
  v1::Vip* vip = req.mutable_vip();
  vip->set_address(hp->host);
  vip->set_port(hp->port);
  vip->set_protocol(*proto);
  vip->set_pool(a.Get("pool"));
  vip->set_fragment_tolerant(a.Switch("fragment_tolerant"));
  if (a.Has("id")) {
    auto id = ParseU32("--id", a.Get("id"));
    if (!id.ok()) return Usage(id.status().message());
    vip->set_id(*id);
  }
  v1::Vip resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->CreateVip(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::Vip& v) {
    TextTable t(kVipHeader);
    t.AddRow(VipRow(v, nullptr));
    return t.Render();
  });
}

int Lbctl::VipList(const ParsedArgs& /*a*/) {
  v1::ListVipsResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->ListVips(ctx.get(), v1::ListVipsRequest(), &resp);
  return Show(s, resp, [](const v1::ListVipsResponse& r) {
    TextTable t(kVipHeader);
    for (const v1::VipStatus& v : r.vips()) t.AddRow(VipRow(v.vip(), &v));
    return t.Render();
  });
}

int Lbctl::VipRm(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::DeleteVipRequest req;
  req.set_id(*id);
  v1::DeleteVipResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->DeleteVip(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::DeleteVipResponse& r) {
    return absl::StrCat("removed vip ", r.id(), "\n");
  });
}

int Lbctl::PoolAdd(const ParsedArgs& a) {
  v1::CreatePoolRequest req;
  v1::Pool* pool = req.mutable_pool();
  pool->set_name(a.positional[0]);
  if (a.Has("algorithm")) {
    auto algo = ParseEnum<v1::Algorithm>("--algorithm", a.Get("algorithm"), "ALGORITHM_");
    if (!algo.ok()) return Usage(algo.status().message());
    pool->set_algorithm(*algo);
  }
  pool->set_sticky_sessions(a.Switch("sticky"));
  if (a.Has("sticky_ttl")) {
    auto ttl = ParseU32("--sticky_ttl", a.Get("sticky_ttl"));
    if (!ttl.ok()) return Usage(ttl.status().message());
    pool->set_sticky_ttl_seconds(*ttl);
  }
  if (a.Has("drain_timeout")) {
    auto t = ParseU32("--drain_timeout", a.Get("drain_timeout"));
    if (!t.ok()) return Usage(t.status().message());
    pool->set_drain_timeout_seconds(*t);
  }
  if (a.Has("kind")) {
    auto kind = ParseEnum<v1::PoolKind>("--kind", a.Get("kind"), "POOL_KIND_");
    if (!kind.ok()) return Usage(kind.status().message());
    pool->set_kind(*kind);
  }
  v1::Pool resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->CreatePool(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::Pool& p) {
    TextTable t(kPoolHeader);
    t.AddRow(PoolRow(p));
    return t.Render();
  });
}

int Lbctl::PoolList(const ParsedArgs& /*a*/) {
  v1::ListPoolsResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->ListPools(ctx.get(), v1::ListPoolsRequest(), &resp);
  return Show(s, resp, [](const v1::ListPoolsResponse& r) {
    TextTable t(kPoolHeader);
    for (const v1::Pool& p : r.pools()) t.AddRow(PoolRow(p));
    return t.Render();
  });
}

int Lbctl::PoolRm(const ParsedArgs& a) {
  v1::DeletePoolRequest req;
  req.set_name(a.positional[0]);
  v1::DeletePoolResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->DeletePool(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::DeletePoolResponse& r) {
    return absl::StrCat("removed pool ", r.name(), "\n");
  });
}

int Lbctl::PoolSetAlgorithm(const ParsedArgs& a) {
  auto algo = ParseEnum<v1::Algorithm>("ALGORITHM", a.positional[1], "ALGORITHM_");
  if (!algo.ok()) return Usage(algo.status().message());
  v1::SetPoolAlgorithmRequest req;
  req.set_pool(a.positional[0]);
  req.set_algorithm(*algo);
  req.set_sticky_sessions(a.Switch("sticky"));
  if (a.Has("sticky_ttl")) {
    auto ttl = ParseU32("--sticky_ttl", a.Get("sticky_ttl"));
    if (!ttl.ok()) return Usage(ttl.status().message());
    req.set_sticky_ttl_seconds(*ttl);
  }
  v1::Pool resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->SetPoolAlgorithm(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::Pool& p) {
    TextTable t(kPoolHeader);
    t.AddRow(PoolRow(p));
    return t.Render();
  });
}

int Lbctl::PoolSetHealthCheck(const ParsedArgs& a) {
  auto kind = ParseEnum<v1::HealthCheckKind>("KIND", a.positional[1], "HEALTH_CHECK_KIND_");
  if (!kind.ok()) return Usage(kind.status().message());
  v1::SetHealthCheckRequest req;
  req.set_pool(a.positional[0]);
  v1::HealthCheck* hc = req.mutable_health_check();
  hc->set_kind(*kind);
  struct U32Flag {
    const char* name;
    void (v1::HealthCheck::*set)(uint32_t);
  };
  const U32Flag numbers[] = {
      {"interval_ms", &v1::HealthCheck::set_interval_ms},
      {"timeout_ms", &v1::HealthCheck::set_timeout_ms},
      {"healthy_threshold", &v1::HealthCheck::set_healthy_threshold},
      {"unhealthy_threshold", &v1::HealthCheck::set_unhealthy_threshold},
      {"http_max_body_bytes", &v1::HealthCheck::set_http_max_body_bytes},
      {"min_state_duration_ms", &v1::HealthCheck::set_min_state_duration_ms},
  };
  for (const U32Flag& f : numbers) {
    if (!a.Has(f.name)) continue;
    auto v = ParseU32(absl::StrCat("--", f.name), a.Get(f.name));
    if (!v.ok()) return Usage(v.status().message());
    (hc->*f.set)(*v);
  }
  hc->set_http_path(a.Get("http_path"));
  hc->set_http_host(a.Get("http_host"));
  for (const std::string& arg : a.GetAll("script")) hc->add_script(arg);
  hc->set_through_tunnel(a.Switch("through_tunnel"));
  v1::Pool resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->SetHealthCheck(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::Pool& p) {
    TextTable t(kPoolHeader);
    t.AddRow(PoolRow(p));
    return t.Render();
  });
}

int Lbctl::BackendAdd(const ParsedArgs& a) {
  auto hp = ParseHostPort("ADDRESS:PORT", a.positional[0]);
  if (!hp.ok()) return Usage(hp.status().message());
  v1::AddBackendRequest req;
  req.set_pool(a.Get("pool"));
  v1::Backend* b = req.mutable_backend();
  b->set_address(hp->host);
  b->set_port(hp->port);
  if (a.Has("weight")) {
    auto w = ParseU32("--weight", a.Get("weight"));
    if (!w.ok()) return Usage(w.status().message());
    b->set_weight(*w);
  }
  if (a.Has("max_connections")) {
    auto m = ParseU32("--max_connections", a.Get("max_connections"));
    if (!m.ok()) return Usage(m.status().message());
    b->set_max_connections(*m);
  }
  if (a.Has("id")) {
    auto id = ParseU32("--id", a.Get("id"));
    if (!id.ok()) return Usage(id.status().message());
    b->set_id(*id);
  }
  if (a.Has("state")) {
    auto st = ParseEnum<v1::BackendState>("--state", a.Get("state"), "BACKEND_STATE_");
    if (!st.ok()) return Usage(st.status().message());
    b->set_state(*st);
  }
  b->set_health_check_path(a.Get("health_check_path"));
  v1::BackendStatus resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->AddBackend(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::BackendStatus& r) {
    TextTable t(kBackendHeader);
    t.AddRow(BackendRow(r));
    return t.Render();
  });
}

int Lbctl::BackendList(const ParsedArgs& a) {
  v1::ListBackendsRequest req;
  req.set_pool(a.Get("pool"));
  v1::ListBackendsResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->ListBackends(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::ListBackendsResponse& r) {
    TextTable t(kBackendHeader);
    for (const v1::BackendStatus& b : r.backends()) t.AddRow(BackendRow(b));
    return t.Render();
  });
}

int Lbctl::BackendUpdate(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::UpdateBackendRequest req;
  req.set_id(*id);
  if (a.Has("weight")) {
    auto w = ParseU32("--weight", a.Get("weight"));
    if (!w.ok()) return Usage(w.status().message());
    req.set_weight(*w);
  }
  if (a.Has("max_connections")) {
    auto m = ParseU32("--max_connections", a.Get("max_connections"));
    if (!m.ok()) return Usage(m.status().message());
    req.set_max_connections(*m);
  }
  if (a.Has("state")) {
    auto st = ParseEnum<v1::BackendState>("--state", a.Get("state"), "BACKEND_STATE_");
    if (!st.ok()) return Usage(st.status().message());
    req.set_state(*st);
  }
  if (!req.has_weight() && !req.has_max_connections() && !req.has_state()) {
    return Usage("nothing to update: give --weight, --max_connections or --state");
  }
  v1::BackendStatus resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->UpdateBackend(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::BackendStatus& r) {
    TextTable t(kBackendHeader);
    t.AddRow(BackendRow(r));
    return t.Render();
  });
}

int Lbctl::BackendDrain(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::DrainBackendRequest req;
  req.set_id(*id);
  v1::BackendStatus resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->DrainBackend(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::BackendStatus& r) {
    TextTable t(kBackendHeader);
    t.AddRow(BackendRow(r));
    return t.Render();
  });
}

int Lbctl::BackendRm(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::RemoveBackendRequest req;
  req.set_id(*id);
  v1::RemoveBackendResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->RemoveBackend(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::RemoveBackendResponse& r) {
    return absl::StrCat("removed backend ", r.id(),
                        " (drained_connections=", r.drained_connections(), ")\n");
  });
}

int Lbctl::BackendHealth(const ParsedArgs& a) {
  auto id = ParseU32("ID", a.positional[0]);
  if (!id.ok()) return Usage(id.status().message());
  v1::GetBackendHealthRequest req;
  req.set_id(*id);
  v1::BackendHealth resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->GetBackendHealth(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::BackendHealth& h) {
    return RenderKeyValues({
        {"id", Num(h.id())},
        {"status", h.status()},
        {"last_check", h.last_check().empty() ? "-" : h.last_check()},
        {"last_latency_ms", absl::StrFormat("%.3f", h.last_latency_ms())},
        {"consecutive_successes", Num(h.consecutive_successes())},
        {"consecutive_failures", Num(h.consecutive_failures())},
        {"active_connections", Num(h.active_connections())},
        {"total_requests", Num(h.total_requests())},
        {"failed_checks", Num(h.failed_checks())},
        {"last_error", h.last_error().empty() ? "-" : h.last_error()},
    });
  });
}

int Lbctl::Stats(const ParsedArgs& /*a*/) {
  v1::Stats resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->GetStats(ctx.get(), v1::GetStatsRequest(), &resp);
  return Show(s, resp, [](const v1::Stats& st) {
    std::string out = RenderKeyValues({
        {"generation", Num(st.generation())},
        {"dataplane_running", st.dataplane_running() ? "yes" : "no"},
        {"lcores", Num(static_cast<uint64_t>(st.lcores_size()))},
    });
    if (st.lcores_size() == 0) return out;
    TextTable t({"LCORE", "ONLINE", "GENERATION", "RX_PACKETS", "RX_BYTES", "TX_PACKETS",
                 "TX_BYTES", "FORWARDED", "NEW_FLOWS", "CONN_ENTRIES", "CONN_EVICTIONS", "DROPS"});
    for (const v1::LcoreCounters& l : st.lcores()) {
      // Sorted by reason name so the column is stable across runs.
      std::map<std::string, uint64_t> drops(l.drops().begin(), l.drops().end());
      std::vector<std::string> nonzero;
      for (const auto& [reason, n] : drops) {
        if (n != 0) nonzero.push_back(absl::StrCat(reason, "=", n));
      }
      t.AddRow({Num(l.lcore()), l.online() ? "yes" : "no", Num(l.observed_generation()),
                Num(l.rx_packets()), Num(l.rx_bytes()), Num(l.tx_packets()), Num(l.tx_bytes()),
                Num(l.forwarded()), Num(l.new_flows()), Num(l.conn_entries()),
                Num(l.conn_evictions()), nonzero.empty() ? "none" : absl::StrJoin(nonzero, ",")});
    }
    return absl::StrCat(out, "\n", t.Render());
  });
}

std::string NodeText(const v1::Node& n) {
  return RenderKeyValues({
      {"tunnel_source_ipv4",
       n.tunnel_source_ipv4().empty() ? "(lb-dataplane --ipv4)" : n.tunnel_source_ipv4()},
      {"tunnel_source_ipv6",
       n.tunnel_source_ipv6().empty() ? "(lb-dataplane --ipv6)" : n.tunnel_source_ipv6()},
  });
}

int Lbctl::NodeShow(const ParsedArgs& /*a*/) {
  v1::Node resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->GetNode(ctx.get(), v1::GetNodeRequest(), &resp);
  return Show(s, resp, NodeText);
}

int Lbctl::NodeSet(const ParsedArgs& a) {
  // Unnamed settings keep their value: read, change, write back.
  v1::SetNodeRequest req;
  {
    auto ctx = NewContext();
    grpc::Status s = stub_->GetNode(ctx.get(), v1::GetNodeRequest(), req.mutable_node());
    if (!s.ok()) return Show(s, *req.mutable_node(), NodeText);
  }
  if (a.Has("tunnel_source_ipv4"))
    req.mutable_node()->set_tunnel_source_ipv4(a.Get("tunnel_source_ipv4"));
  if (a.Has("tunnel_source_ipv6"))
    req.mutable_node()->set_tunnel_source_ipv6(a.Get("tunnel_source_ipv6"));
  v1::Node resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->SetNode(ctx.get(), req, &resp);
  return Show(s, resp, NodeText);
}

int Lbctl::Tables(const ParsedArgs& /*a*/) {
  v1::TablesInfo resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->GetTables(ctx.get(), v1::GetTablesRequest(), &resp);
  return Show(s, resp, [](const v1::TablesInfo& ti) {
    std::string out = RenderKeyValues({
        {"generation", Num(ti.generation())},
        {"config_version", Num(ti.config_version())},
        {"last_publish_ms", absl::StrFormat("%.3f", ti.last_publish_ms())},
        {"stuck_lcores",
         ti.stuck_lcores().empty() ? "none" : absl::StrJoin(ti.stuck_lcores(), ",")},
    });
    TextTable t(kVipHeader);
    for (const v1::VipStatus& v : ti.vips()) t.AddRow(VipRow(v.vip(), &v));
    return absl::StrCat(out, "\n", t.Render());
  });
}

int Lbctl::Explain(const ParsedArgs& a) {
  auto src = ParseHostPort("SRC:PORT", a.positional[0]);
  if (!src.ok()) return Usage(src.status().message());
  auto dst = ParseHostPort("DST:PORT", a.positional[1]);
  if (!dst.ok()) return Usage(dst.status().message());
  auto proto = ParseEnum<v1::Protocol>("protocol", a.positional[2], "PROTOCOL_");
  if (!proto.ok()) return Usage(proto.status().message());
  v1::ExplainRequest req;
  req.set_src(src->host);
  req.set_src_port(src->port);
  req.set_dst(dst->host);
  req.set_dst_port(dst->port);
  req.set_protocol(*proto);
  v1::ExplainResponse resp;
  auto ctx = NewContext();
  grpc::Status s = stub_->Explain(ctx.get(), req, &resp);
  return Show(s, resp, [](const v1::ExplainResponse& r) {
    return RenderKeyValues({
        {"vip", absl::StrCat(r.vip_id(), " (", r.vip(), ")")},
        {"backend", r.backend_id() != 0   ? absl::StrCat(r.backend_id(), " (", r.backend(), ")")
                    : r.backend().empty() ? "none (see reason)"
                                          : absl::StrCat("none (", r.backend(), ")")},
        {"algorithm", r.algorithm()},
        {"reason", r.reason()},
        {"generation", Num(r.generation())},
    });
  });
}

int Lbctl::Watch(const ParsedArgs& a) {
  uint32_t count = 0;
  if (a.Has("count")) {
    auto c = ParseU32("--count", a.Get("count"));
    if (!c.ok()) return Usage(c.status().message());
    count = *c;
  }
  absl::Duration timeout = absl::ZeroDuration();
  if (a.Has("timeout")) {
    std::string text = a.Get("timeout");
    // A bare number is seconds.
    if (!text.empty() && absl::ascii_isdigit(static_cast<unsigned char>(text.back()))) {
      text += "s";
    }
    if (!absl::ParseDuration(text, &timeout) || timeout <= absl::ZeroDuration()) {
      return Usage(absl::StrCat("--timeout: \"", a.Get("timeout"),
                                "\" is not a positive duration (30, 30s, 500ms, 2m)"));
    }
  }
  auto ctx = NewContext(/*with_deadline=*/false);
  if (timeout > absl::ZeroDuration()) ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader =
      stub_->Watch(ctx.get(), v1::WatchRequest());
  v1::Event event;
  uint32_t seen = 0;
  while (reader->Read(&event)) {
    if (json_) {
      PrintJson(event);
    } else {
      std::printf("%s\n", EventLine(event).c_str());
      std::fflush(stdout);
    }
    if (event.kind() != "subscribed") ++seen;
    if (count > 0 && seen >= count) {
      ctx->TryCancel();
      break;
    }
  }
  grpc::Status s = reader->Finish();
  if (count > 0 && seen >= count) return kExitOk;
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && timeout > absl::ZeroDuration()) {
    if (count == 0) return kExitOk;  // --timeout alone: the watch ran its course
    return Fail(
        grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                     absl::StrCat("watch: ", seen, " of ", count, " events before --timeout")));
  }
  return Fail(s);
}

// ---------------------------------------------------------- the grammar

Lbctl::Lbctl() {
  global_flags_ = {
      {"server", "HOST:PORT",
       absl::StrCat("lb-controlplane's gRPC address (default ", kDefaultServer, ")")},
      {"token_file", "PATH",
       "file holding the bearer token (sent as \"authorization: Bearer <token>\")"},
      {"tls_ca", "PATH", "PEM CA certificate(s): connect with TLS and verify the server"},
      {"tls_server_name", "NAME", "expect this name in the server certificate (with --tls_ca)"},
      {"timeout_ms", "N", absl::StrCat("deadline of each call (default ", kDefaultTimeoutMs, ")")},
      {"json", "", "print protobuf JSON (proto field names), one document per line"},
      {"help", "", "help for lbctl or the command given"},
  };
  auto bind = [this](int (Lbctl::*fn)(const ParsedArgs&)) {
    return [this, fn](const ParsedArgs& a) { return (this->*fn)(a); };
  };
  const FlagDef pool_flag{"pool", "NAME", "the pool (default: the default pool)"};
  const FlagDef weight_flag{"weight", "N", "relative share of new flows, 0..65535 (default 1)"};
  const FlagDef maxconn_flag{"max_connections", "N", "connection limit, 0 = unlimited"};
  const FlagDef state_flag{"state", "STATE", "active | draining | down"};
  const FlagDef sticky_flag{"sticky", "", "sticky sessions: a client keeps its backend"};
  const FlagDef ttl_flag{"sticky_ttl", "SECONDS",
                         "sticky entry lifetime after the last packet "
                         "(default 3600)"};
  commands_ = {
      {{"vip", "add"},
       "ADDRESS:PORT tcp|udp",
       2,
       2,
       "Create a VIP",
       "PORT 0 = every port of the address. Write IPv6 as [ADDRESS]:PORT.\n"
       "Example: lbctl vip add 192.0.2.10:443 tcp --pool web",
       {{"pool", "NAME", "the pool serving it (required)"},
        {"id", "N", "the VIP id (default: the lowest unused)"},
        {"fragment_tolerant", "", "hash on addresses and protocol only, so fragments follow"}},
       bind(&Lbctl::VipAdd)},
      {{"vip", "list"},
       "",
       0,
       0,
       "List VIPs with their table generation and fingerprint",
       "",
       {},
       bind(&Lbctl::VipList)},
      {{"vip", "rm"}, "ID", 1, 1, "Delete a VIP", "", {}, bind(&Lbctl::VipRm)},

      {{"pool", "add"},
       "NAME",
       1,
       1,
       "Create a pool",
       "NAME: [A-Za-z0-9_.:-]{1,64}. Backends are added with 'lbctl backend add --pool NAME'.",
       {{"algorithm", "ALGORITHM",
         "maglev (default) | ip_hash | round_robin | weighted_round_robin | random | "
         "least_connections | weighted_least_connections"},
        sticky_flag,
        ttl_flag,
        {"drain_timeout", "SECONDS", "how long a removed backend drains (default 30)"},
        {"kind", "KIND",
         "dsr (default: lb-dataplane tunnels to the address; one backend per address) | proxy "
         "(lb-l7 connects to address:port)"}},
       bind(&Lbctl::PoolAdd)},
      {{"pool", "list"}, "", 0, 0, "List pools and their settings", "", {}, bind(&Lbctl::PoolList)},
      {{"pool", "rm"},
       "NAME",
       1,
       1,
       "Delete a pool (refused while a VIP uses it)",
       "",
       {},
       bind(&Lbctl::PoolRm)},
      {{"pool", "set-algorithm"},
       "NAME ALGORITHM",
       2,
       2,
       "Set a pool's algorithm and sticky sessions (new flows only)",
       "ALGORITHM: maglev | ip_hash | round_robin | weighted_round_robin | random |\n"
       "least_connections | weighted_least_connections.",
       {sticky_flag, ttl_flag},
       bind(&Lbctl::PoolSetAlgorithm)},
      {{"pool", "set-health-check"},
       "NAME KIND",
       2,
       2,
       "Set a pool's health check",
       "KIND: none | tcp | http | script. Unset numbers take the defaults (interval 5000 ms,\n"
       "timeout 3000 ms, healthy 2, unhealthy 3). The first --script is a script's name in\n"
       "the control plane's --health_script_dir, the rest its arguments (at most 8 of at most\n"
       "256 bytes); the backend's address and port are appended; exit 0 = healthy.\n"
       "Example: lbctl pool set-health-check web http --http_path /healthz --interval_ms 1000",
       {{"interval_ms", "N", "time between checks"},
        {"timeout_ms", "N", "time a check may take"},
        {"healthy_threshold", "N", "consecutive successes to become healthy"},
        {"unhealthy_threshold", "N", "consecutive failures to become unhealthy"},
        {"http_path", "PATH", "HTTP path (default /health)"},
        {"http_host", "HOST", "HTTP Host header (default the backend address)"},
        {"http_max_body_bytes", "N", "response body size limit (default 4096)"},
        {"script", "ARG", "script name in --health_script_dir, then its arguments, one per flag",
         true},
        {"min_state_duration_ms", "N", "damping: minimum time between transitions"},
        {"through_tunnel", "",
         "check through the tunnel: connect to the pool's VIP, marked per backend, for "
         "lb-hc-encap to tunnel (needs lb-controlplane --health_tunnel_map)"}},
       bind(&Lbctl::PoolSetHealthCheck)},

      {{"backend", "add"},
       "ADDRESS:PORT",
       1,
       1,
       "Add a backend to a pool",
       "PORT is the service port (health checks); tunnelled packets keep the VIP's port.\n"
       "Write IPv6 as [ADDRESS]:PORT. The pool is created if it is the default one.\n"
       "Example: lbctl backend add 10.1.0.7:8080 --pool web --weight 2",
       {pool_flag,
        weight_flag,
        maxconn_flag,
        {"id", "N", "the backend id (default: the lowest unused)"},
        {"state", "STATE", "active (default) | draining | down"},
        {"health_check_path", "PATH", "HTTP health-check path for this backend"}},
       bind(&Lbctl::BackendAdd)},
      {{"backend", "list"},
       "",
       0,
       0,
       "List backends: configured and effective state, health, live flows",
       "",
       {{"pool", "NAME", "only this pool (default: every pool)"}},
       bind(&Lbctl::BackendList)},
      {{"backend", "update"},
       "ID",
       1,
       1,
       "Change a backend's weight, limit or state",
       "",
       {weight_flag, maxconn_flag, state_flag},
       bind(&Lbctl::BackendUpdate)},
      {{"backend", "drain"},
       "ID",
       1,
       1,
       "Drain a backend: no new flows, existing flows continue",
       "",
       {},
       bind(&Lbctl::BackendDrain)},
      {{"backend", "rm"},
       "ID",
       1,
       1,
       "Remove a backend (drains first, then leaves)",
       "It leaves when its flows end or after the pool's drain timeout; the output says how\n"
       "many live flows it had.",
       {},
       bind(&Lbctl::BackendRm)},
      {{"backend", "health"},
       "ID",
       1,
       1,
       "Show a backend's health-check state",
       "",
       {},
       bind(&Lbctl::BackendHealth)},

      {{"stats"},
       "",
       0,
       0,
       "Show per-lcore counters from the dataplane",
       "",
       {},
       bind(&Lbctl::Stats)},
      {{"node", "show"},
       "",
       0,
       0,
       "Show this node's settings (tunnel sources)",
       "",
       {},
       bind(&Lbctl::NodeShow)},
      {{"node", "set"},
       "",
       0,
       0,
       "Set this node's tunnel sources",
       "The outer source address of IPv4 / IPv6 tunnel packets. \"\" = lb-dataplane's own\n"
       "--ipv4 / --ipv6. Settings not named keep their value.\n"
       "Example: lbctl node set --tunnel_source_ipv4 192.0.2.1",
       {{"tunnel_source_ipv4", "ADDRESS", "outer source of IPv4 tunnels"},
        {"tunnel_source_ipv6", "ADDRESS", "outer source of IPv6 tunnels"}},
       bind(&Lbctl::NodeSet)},
      {{"tables"},
       "",
       0,
       0,
       "Show the published table generation, per-VIP fingerprints, stuck lcores",
       "",
       {},
       bind(&Lbctl::Tables)},
      {{"explain"},
       "SRC:PORT DST:PORT tcp|udp",
       3,
       3,
       "Which backend this node would pick for a flow, and why",
       "Example: lbctl explain 198.51.100.7:40000 192.0.2.10:443 tcp",
       {},
       bind(&Lbctl::Explain)},
      {{"watch"},
       "",
       0,
       0,
       "Stream events: publishes, health transitions, refusals",
       "The first event is \"subscribed\"; after it no event is lost silently: a client too\n"
       "slow to keep up gets a \"dropped N events\" event in place of the oldest ones.\n"
       "Runs until Ctrl-C, --count or --timeout (--timeout_ms does not apply).\n"
       "With --json: one event per line.",
       {{"count", "N", "exit 0 after N events following \"subscribed\""},
        {"timeout", "DURATION",
         "stop after this long (30, 30s, 500ms, 2m); exit 0, or 9 if "
         "--count events did not arrive"}},
       bind(&Lbctl::Watch)},
  };
}

int Lbctl::Main(std::vector<std::string> argv) {
  Invocation parsed;
  const absl::Status status = ParseCommandLine(argv, global_flags_, commands_, &parsed);
  current_ = parsed.command;
  if (!status.ok()) return Usage(status.message());
  const Invocation* inv = &parsed;
  if (inv->command == nullptr) {
    // Nothing or only a group ("lbctl backend"): list what there is.
    const std::string list = CommandList(kProgram, commands_, inv->words);
    std::string text;
    if (inv->words.empty()) {
      text = absl::StrCat(
          "lbctl: the admin CLI of lb-controlplane (gRPC lb.v1.LoadBalancerAdmin).\n\n"
          "Usage: lbctl [global flags] <command> [arguments] [flags]\n\nCommands:\n",
          list, "\n'lbctl <command> --help' (or 'lbctl help <command>') describes one command.\n",
          Footer());
    } else {
      text = absl::StrCat("Usage: lbctl ", absl::StrJoin(inv->words, " "),
                          " <command> ...\n\nCommands:\n", list, Footer());
    }
    std::fputs(text.c_str(), inv->help ? stdout : stderr);
    return inv->help ? kExitOk : kExitUsage;
  }
  if (inv->help) {
    std::fputs(CommandHelp(kProgram, *inv->command, Footer()).c_str(), stdout);
    return kExitOk;
  }
  if (int rc = Connect(inv->args); rc != kExitOk) return rc;
  return inv->command->run(inv->args);
}

}  // namespace
}  // namespace lb::cli

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  lb::cli::Lbctl lbctl;
  return lbctl.Main(std::move(args));
}
