// lbctl's commands for lb-l7's configuration: `l7 get` prints it in the
// text format `l7 set FILE` takes back (get, edit, set), with the
// generation as a comment line; --json prints the L7ConfigResponse.
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "controlplane/cli/arguments.h"
#include "controlplane/cli/lbctl.h"
#include "google/protobuf/text_format.h"
#include "proto/text_parse.h"

namespace lb::cli {
namespace {

std::string L7Text(const v1::L7ConfigResponse& r) {
  if (r.generation() == 0) return "# no L7 configuration set yet (generation 0)\n";
  std::string body;
  google::protobuf::TextFormat::PrintToString(r.config(), &body);
  return absl::StrCat("# lb.v1.L7Config generation ", r.generation(), "\n", body);
}

std::string SetText(const v1::L7ConfigResponse& r) {
  return absl::StrCat("L7 configuration at generation ", r.generation(), "\n");
}

}  // namespace

int Lbctl::L7Get(const ParsedArgs& /*a*/) {
  return Call(&v1::LoadBalancerAdmin::Stub::GetL7Config, v1::GetL7ConfigRequest(), L7Text);
}

int Lbctl::L7Set(const ParsedArgs& a) {
  const std::string& path = a.positional[0];
  auto text = ReadSmallFile("FILE", path);
  if (!text.ok()) return Usage(text.status().message());
  v1::SetL7ConfigRequest req;
  if (absl::Status st = ParseTextProto(*text, path, req.mutable_config()); !st.ok()) {
    return Usage(st.message());
  }
  if (a.Has("expected_generation")) {
    uint64_t g = 0;
    if (!absl::SimpleAtoi(a.Get("expected_generation"), &g)) {
      return Usage(absl::StrCat("--expected_generation: \"", a.Get("expected_generation"),
                                "\" is not a number"));
    }
    req.set_expected_generation(g);
  }
  return Call(&v1::LoadBalancerAdmin::Stub::SetL7Config, req, SetText);
}

int Lbctl::L7RotateTicketKeys(const ParsedArgs& a) {
  v1::RotateL7TicketKeysRequest req;
  req.set_drop_previous(a.Switch("drop_previous"));
  return Call(
      &v1::LoadBalancerAdmin::Stub::RotateL7TicketKeys, req, [](const v1::L7ConfigResponse& r) {
        return absl::StrCat("session ticket keys at generation ", r.ticket_key_generation(), "\n");
      });
}

}  // namespace lb::cli
