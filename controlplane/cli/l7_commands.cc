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

int Lbctl::L7SetCert(const ParsedArgs& a) {
  const std::string listener = a.Get("listener");
  if (listener.empty()) return Usage("--listener: required (a listeners[].name)");
  if (a.Get("cert").empty()) return Usage("--cert: required (a PEM file: certificate, then chain)");
  if (a.Get("key").empty()) return Usage("--key: required (a PEM file: the private key)");
  auto cert = ReadSmallFile("--cert", a.Get("cert"));
  if (!cert.ok()) return Usage(cert.status().message());
  // The key only ever from a file (never a flag value: argv is visible to
  // every user of the host); it goes to the control plane and nowhere else.
  auto key = ReadSmallFile("--key", a.Get("key"));
  if (!key.ok()) return Usage(key.status().message());
  if (a.Has("chain")) {
    auto chain = ReadSmallFile("--chain", a.Get("chain"));
    if (!chain.ok()) return Usage(chain.status().message());
    if (!cert->empty() && cert->back() != '\n') cert->push_back('\n');
    *cert += *chain;
  }
  int index = -1;
  if (a.Has("index") && (!absl::SimpleAtoi(a.Get("index"), &index) || index < 0)) {
    return Usage(absl::StrCat("--index: \"", a.Get("index"), "\" is not a certificate index"));
  }
  // Read, edit, set with the generation read: a concurrent change is refused
  // (FAILED_PRECONDITION), never overwritten. The keys of the other
  // certificates come back as their markers, which keep them.
  v1::L7ConfigResponse got;
  {
    auto ctx = NewContext();
    grpc::Status st = stub_->GetL7Config(ctx.get(), v1::GetL7ConfigRequest(), &got);
    if (!st.ok()) return Fail(st);
  }
  v1::SetL7ConfigRequest req;
  *req.mutable_config() = got.config();
  req.set_expected_generation(got.generation());
  v1::L7Listener* l = nullptr;
  for (v1::L7Listener& x : *req.mutable_config()->mutable_listeners()) {
    if (x.name() == listener) l = &x;
  }
  if (l == nullptr) {
    return Usage(absl::StrCat("--listener: no L7 listener named \"", listener,
                              "\" (lbctl l7 get lists them)"));
  }
  if (!l->has_tls()) {
    return Usage(absl::StrCat("--listener: \"", listener,
                              "\" does not terminate TLS (give it a tls block with lbctl l7 set)"));
  }
  const int n = l->tls().certificates_size();
  if (index < 0) index = 0;
  if (index > n) {
    return Usage(
        absl::StrCat("--index: ", index, " is beyond certificates (0..", n, "; ", n, " appends)"));
  }
  v1::L7Certificate* c = index == n ? l->mutable_tls()->add_certificates()
                                    : l->mutable_tls()->mutable_certificates(index);
  // A new certificate: the old one's files and OCSP response are not its own.
  c->Clear();
  c->set_cert_pem(*std::move(cert));
  c->set_key_pem(*std::move(key));
  const std::string where = absl::StrCat("listener \"", listener, "\" certificates[", index, "]");
  return Call(
      &v1::LoadBalancerAdmin::Stub::SetL7Config, req, [&where](const v1::L7ConfigResponse& r) {
        return absl::StrCat(where, " set; L7 configuration at generation ", r.generation(), "\n");
      });
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
