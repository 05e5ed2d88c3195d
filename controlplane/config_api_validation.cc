#include "controlplane/config_api_validation.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "controlplane/config.h"

namespace lb {
namespace {

constexpr uint32_t kMaxPort = 65535;

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status CheckPortRange(absl::string_view field, uint32_t port) {
  if (port > kMaxPort) {
    return Invalid(field, absl::StrCat(port, " is out of range 0..", kMaxPort));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckApiAddress(absl::string_view field, const std::string& text) {
  if (text.empty()) return Invalid(field, "required (an IPv4 or IPv6 literal)");
  auto address = ParseIpAddress(text);
  if (!address.ok()) return Invalid(field, address.status().message());
  if (absl::Status st = CheckUnicastAddress(*address); !st.ok()) {
    return Invalid(field, st.message());
  }
  return absl::OkStatus();
}

absl::Status CheckApiHealthCheckPath(absl::string_view field, const std::string& path) {
  if (path.empty() || path[0] != '/' || path.size() > kMaxHttpPathLen ||
      !std::all_of(path.begin(), path.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return Invalid(field, absl::StrCat("\"", QuoteBounded(path),
                                       "\" is not an HTTP path (starts with '/', printable, at "
                                       "most ",
                                       kMaxHttpPathLen, " characters)"));
  }
  return absl::OkStatus();
}

absl::Status CheckApiBackend(const v1::RestBackendRequest& in) {
  if (absl::Status st = CheckApiAddress("address", in.address()); !st.ok()) return st;
  if (in.port() < 1 || in.port() > kMaxPort) {
    return Invalid("port", absl::StrCat(in.port(), " is out of range (1..", kMaxPort, ")"));
  }
  if (in.has_weight() && (in.weight() < 0 || in.weight() > kMaxBackendWeight)) {
    return Invalid("weight",
                   absl::StrCat(in.weight(), " is out of range (0..", kMaxBackendWeight, ")"));
  }
  if (!in.health_check_path().empty()) {
    return CheckApiHealthCheckPath("health_check_path", in.health_check_path());
  }
  return absl::OkStatus();
}

absl::Status CheckApiStickyTtl(absl::string_view field, int64_t ttl) {
  constexpr uint32_t kMax = std::numeric_limits<uint32_t>::max();
  if (ttl <= 0 || ttl > int64_t{kMax}) {
    return Invalid(field,
                   absl::StrCat(ttl, " is not a positive number of seconds (1..", kMax, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckApiPoolName(absl::string_view field, const std::string& name) {
  if (!IsPoolName(name)) {
    return Invalid(field, absl::StrCat("\"", QuoteBounded(name),
                                       "\" is not a pool name ([A-Za-z0-9_.:-]{1,64})"));
  }
  return absl::OkStatus();
}

absl::Status CheckApiRequest(const v1::CreateVipRequest& req) {
  return req.has_vip() ? absl::OkStatus() : Invalid("vip", "required");
}

absl::Status CheckApiRequest(const v1::DeleteVipRequest& req) {
  return req.id() != 0 ? absl::OkStatus() : Invalid("id", "required (the VIP's id, > 0)");
}

absl::Status CheckApiRequest(const v1::CreatePoolRequest& req) {
  return req.has_pool() ? absl::OkStatus() : Invalid("pool", "required");
}

absl::Status CheckApiRequest(const v1::DeletePoolRequest& req) {
  return req.name().empty() ? Invalid("name", "required") : absl::OkStatus();
}

absl::Status CheckApiRequest(const v1::SetPoolAlgorithmRequest& req) {
  if (!v1::Algorithm_IsValid(req.algorithm())) {
    return Invalid("algorithm", absl::StrCat("unknown value ", static_cast<int>(req.algorithm())));
  }
  return absl::OkStatus();
}

absl::Status CheckApiRequest(const v1::SetHealthCheckRequest& req) {
  if (!req.has_health_check()) return Invalid("health_check", "required");
  if (!v1::HealthCheckKind_IsValid(req.health_check().kind())) {
    return Invalid("health_check.kind",
                   absl::StrCat("unknown value ", static_cast<int>(req.health_check().kind())));
  }
  return absl::OkStatus();
}

absl::Status CheckApiRequest(const v1::AddBackendRequest& req) {
  if (!req.has_backend()) return Invalid("backend", "required");
  if (!v1::BackendState_IsValid(req.backend().state())) {
    return Invalid("backend.state",
                   absl::StrCat("unknown value ", static_cast<int>(req.backend().state())));
  }
  return absl::OkStatus();
}

absl::Status CheckApiRequest(const v1::UpdateBackendRequest& req) {
  if (absl::Status st = CheckApiBackendId(req.id()); !st.ok()) return st;
  if (!req.has_weight() && !req.has_max_connections() && !req.has_state()) {
    return Invalid("weight", "nothing to update; set weight, max_connections or state");
  }
  if (req.has_state() && !v1::BackendState_IsValid(req.state())) {
    return Invalid("state", absl::StrCat("unknown value ", static_cast<int>(req.state())));
  }
  return absl::OkStatus();
}

absl::Status CheckApiRequest(const v1::ExplainRequest& req) {
  if (req.src().empty()) return Invalid("src", "required (the client's address)");
  if (req.dst().empty()) return Invalid("dst", "required (a VIP address)");
  if (req.protocol() != v1::PROTOCOL_TCP && req.protocol() != v1::PROTOCOL_UDP) {
    return Invalid("protocol", "required (PROTOCOL_TCP or PROTOCOL_UDP)");
  }
  if (absl::Status st = CheckPortRange("src_port", req.src_port()); !st.ok()) return st;
  return CheckPortRange("dst_port", req.dst_port());
}

absl::Status CheckApiBackendId(uint32_t id) {
  return id != 0 ? absl::OkStatus() : Invalid("id", "required (the backend's id, > 0)");
}

}  // namespace lb
