// Validation of admin API requests (REST and gRPC), next to the config
// validation in config.h: the API layers only translate the wire form into
// a proto and call these. Each refusal is InvalidArgument with a message
// that starts with the field at fault ("port: 70000 is out of range
// (1..65535)"), so REST can fill RestError.field and gRPC returns the message
// as is. Values a client sent are echoed through QuoteBounded (config.h).
//
// What is checked here is what a request alone can show; whatever needs the
// running state (an unknown pool, a duplicate backend, capacity) is
// ControlPlane's, which validates the resulting config with ValidateConfig.
//
// Threads: pure functions, any thread.
#ifndef LB_CONTROLPLANE_CONFIG_API_VALIDATION_H_
#define LB_CONTROLPLANE_CONFIG_API_VALIDATION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lb/v1/admin.pb.h"

namespace lb {

// A unicast IPv4 or IPv6 literal (ParseIpAddress + CheckUnicastAddress);
// empty is "required".
absl::Status CheckApiAddress(absl::string_view field, const std::string& text);

// POST /backends: address, port 1..65535, weight 0..kMaxBackendWeight when
// given, health_check_path an HTTP path when given.
absl::Status CheckApiBackend(const v1::RestBackendRequest& in);

// The REST form of a health check path: starts with '/', visible ASCII, at
// most kMaxHttpPathLen characters.
absl::Status CheckApiHealthCheckPath(absl::string_view field, const std::string& path);

// Sticky TTL in seconds, 1..UINT32_MAX (REST takes an int64).
absl::Status CheckApiStickyTtl(absl::string_view field, int64_t ttl);

// A pool name, [A-Za-z0-9_.:-]{1,64} (config.h IsPoolName).
absl::Status CheckApiPoolName(absl::string_view field, const std::string& name);

// The gRPC requests, one overload each: required fields present ("vip:
// required"), ids non-zero, enum values the proto knows ("state: unknown
// value 9"), Explain's protocol TCP or UDP and ports 0..65535.
absl::Status CheckApiRequest(const v1::CreateVipRequest& req);
absl::Status CheckApiRequest(const v1::DeleteVipRequest& req);
absl::Status CheckApiRequest(const v1::CreatePoolRequest& req);
absl::Status CheckApiRequest(const v1::DeletePoolRequest& req);
absl::Status CheckApiRequest(const v1::SetPoolAlgorithmRequest& req);
absl::Status CheckApiRequest(const v1::SetHealthCheckRequest& req);
absl::Status CheckApiRequest(const v1::AddBackendRequest& req);
absl::Status CheckApiRequest(const v1::UpdateBackendRequest& req);
absl::Status CheckApiRequest(const v1::ExplainRequest& req);
// Drain, Remove, GetBackendHealth: a backend id, > 0.
absl::Status CheckApiBackendId(uint32_t id);

}  // namespace lb

#endif  // LB_CONTROLPLANE_CONFIG_API_VALIDATION_H_
