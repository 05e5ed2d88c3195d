// lbctl's commands that read the running node: stats, tables, node,
// explain, and the event stream (watch).
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/cli/arguments.h"
#include "controlplane/cli/lbctl.h"
#include "controlplane/cli/render.h"

namespace lb::cli {

int Lbctl::Stats(const ParsedArgs& /*a*/) {
  return Call(&v1::LoadBalancerAdmin::Stub::GetStats, v1::GetStatsRequest(), StatsText);
}

int Lbctl::NodeShow(const ParsedArgs& /*a*/) {
  return Call(&v1::LoadBalancerAdmin::Stub::GetNode, v1::GetNodeRequest(), NodeText);
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
  return Call(&v1::LoadBalancerAdmin::Stub::SetNode, req, NodeText);
}

int Lbctl::Tables(const ParsedArgs& /*a*/) {
  return Call(&v1::LoadBalancerAdmin::Stub::GetTables, v1::GetTablesRequest(), TablesText);
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
  return Call(&v1::LoadBalancerAdmin::Stub::Explain, req, ExplainText);
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

}  // namespace lb::cli
