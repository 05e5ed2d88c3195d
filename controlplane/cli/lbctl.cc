// lbctl's dispatch and session: parse the line, print help or a usage error,
// connect (server, deadline, token, TLS), run the command; every command's
// errors and JSON go through here. The class and its rooms: lbctl.h.
#include "controlplane/cli/lbctl.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "controlplane/cli/arguments.h"
#include "controlplane/cli/render.h"
#include "google/protobuf/util/json_util.h"

namespace lb::cli {

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

}  // namespace lb::cli

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  lb::cli::Lbctl lbctl;
  return lbctl.Main(std::move(args));
}
