// libFuzzer target: REST request body decoding (controlplane/strict_json.h)
// and the validation a route runs on the decoded request
// (controlplane/config_api_validation.h, config.h ValidateConfig).
//
// Input: 1 byte choosing the route's body type, then the JSON body.
//   0 POST /backends          RestBackendRequest -> CheckApiBackend
//   1 PUT  /config/algorithm  RestAlgorithmConfig -> CheckApiStickyTtl
//   2 POST /pools             Pool -> CheckApiPoolName + ValidateConfig
//   3 POST /vips              Vip -> ValidateConfig
//   4 PUT  /config/node       Node -> ValidateConfig
// Asserts: a refusal is InvalidArgument, its message is bounded (a client's
// megabyte never comes back) and names a field or "body"; what decodes
// prints back to JSON.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "controlplane/config.h"
#include "controlplane/config_api_validation.h"
#include "controlplane/strict_json.h"
#include "google/protobuf/util/json_util.h"
#include "lb/v1/admin.pb.h"
#include "lb/v1/config.pb.h"

namespace {

// Depth 32 of bounded keys plus a bounded protobuf message fits easily.
constexpr size_t kMaxErrorBytes = 4096;

void CheckRefusal(const absl::Status& s, absl::string_view body) {
  if (s.ok()) return;
  if (s.code() != absl::StatusCode::kInvalidArgument || s.message().size() > kMaxErrorBytes ||
      lb::FieldOfError(s.message()).empty()) {
    fprintf(stderr, "bad refusal (%zu bytes of body): %s\n", body.size(),
            std::string(s.message().substr(0, 300)).c_str());
    abort();
  }
}

std::unique_ptr<google::protobuf::Message> BodyType(uint8_t selector) {
  switch (selector % 5) {
    case 0:
      return std::make_unique<lb::v1::RestBackendRequest>();
    case 1:
      return std::make_unique<lb::v1::RestAlgorithmConfig>();
    case 2:
      return std::make_unique<lb::v1::Pool>();
    case 3:
      return std::make_unique<lb::v1::Vip>();
    default:
      return std::make_unique<lb::v1::Node>();
  }
}

// The route's own checks on a decoded body.
absl::Status Validate(const google::protobuf::Message& m) {
  lb::v1::Config config;
  if (const auto* b = dynamic_cast<const lb::v1::RestBackendRequest*>(&m)) {
    absl::Status s = lb::CheckApiBackend(*b);
    CheckRefusal(s, b->address());
    return s;
  }
  if (const auto* a = dynamic_cast<const lb::v1::RestAlgorithmConfig*>(&m)) {
    absl::Status s = lb::CheckApiStickyTtl(
        "sticky_ttl_seconds", a->has_sticky_ttl_seconds() ? a->sticky_ttl_seconds() : 3600);
    CheckRefusal(s, a->algorithm());
    return s;
  }
  if (const auto* p = dynamic_cast<const lb::v1::Pool*>(&m)) {
    if (absl::Status s = lb::CheckApiPoolName("name", p->name()); !s.ok()) return s;
    *config.add_pools() = *p;
  } else if (const auto* v = dynamic_cast<const lb::v1::Vip*>(&m)) {
    *config.add_vips() = *v;
  } else if (const auto* n = dynamic_cast<const lb::v1::Node*>(&m)) {
    *config.mutable_node() = *n;
  }
  auto validated = lb::ValidateConfig(config, lb::TableCapacities(), nullptr);
  return validated.status();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::unique_ptr<google::protobuf::Message> m = BodyType(data[0]);
  const absl::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::Status parsed = lb::ParseStrictJson(body, m.get());
  CheckRefusal(parsed, body);
  if (!parsed.ok()) return 0;
  std::string echo;
  if (!google::protobuf::util::MessageToJsonString(*m, &echo).ok()) {
    fprintf(stderr, "decoded message does not print\n");
    abort();
  }
  (void)Validate(*m);  // config errors name config paths; only crashes matter
  return 0;
}
