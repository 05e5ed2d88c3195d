// lbctl: the admin CLI of lb-controlplane. Every RPC of lb.v1.LoadBalancerAdmin
// (proto/lb/v1/admin.proto) is a subcommand; output is an aligned table by
// default and protobuf JSON (proto field names) with --json. Errors print one
// line, "lbctl: <GRPC_CODE>: <message>", on stderr, and the exit status says
// what went wrong (exit_status.h; `lbctl --help` prints it).
//
// Its rooms: command_table.cc (the grammar: every command, its arguments,
// flags and help), lbctl.cc (dispatch, connection, errors, JSON),
// resource_commands.cc (vip, pool, backend), query_commands.cc (stats,
// tables, node, explain, watch), l7_commands.cc (l7 get/set); helpers arguments (values), render
// (human output), command_line (the parser), text_table, exit_status.
//
// Threads: one object, used by main's thread only.
#ifndef LB_CONTROLPLANE_CLI_LBCTL_H_
#define LB_CONTROLPLANE_CLI_LBCTL_H_

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "controlplane/cli/command_line.h"
#include "controlplane/cli/exit_status.h"
#include "google/protobuf/message.h"
#include "lb/v1/admin.grpc.pb.h"

namespace lb::cli {

inline constexpr char kProgram[] = "lbctl";
inline constexpr char kDefaultServer[] = "127.0.0.1:50051";
inline constexpr int kDefaultTimeoutMs = 5000;

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

  // One unary call with the deadline and token; prints the answer as JSON or
  // through `human`; returns the exit status.
  template <typename Req, typename Resp, typename Human>
  int Call(grpc::Status (v1::LoadBalancerAdmin::Stub::*rpc)(grpc::ClientContext*, const Req&,
                                                            Resp*),
           const Req& req, Human human) {
    Resp resp;
    auto ctx = NewContext();
    return Show((stub_.get()->*rpc)(ctx.get(), req, &resp), resp, human);
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
  int L7Get(const ParsedArgs& a);
  int L7Set(const ParsedArgs& a);
  int L7SetCert(const ParsedArgs& a);
  int L7RotateTicketKeys(const ParsedArgs& a);

  std::vector<FlagDef> global_flags_;
  std::vector<CommandDef> commands_;
  const CommandDef* current_ = nullptr;

  std::string server_ = kDefaultServer;
  std::string token_;
  int timeout_ms_ = kDefaultTimeoutMs;
  bool json_ = false;
  std::unique_ptr<v1::LoadBalancerAdmin::Stub> stub_;
};

}  // namespace lb::cli

#endif  // LB_CONTROLPLANE_CLI_LBCTL_H_
