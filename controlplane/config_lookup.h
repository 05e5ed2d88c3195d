// Lookups and names over a lb.v1.Config that the control plane's rooms
// share: finding a pool, backend or VIP, an entity's identity (what makes two
// backends or VIPs "the same"), and the renaming of validation paths to a
// request's field names. Pure functions; any thread.
#ifndef LB_CONTROLPLANE_CONFIG_LOOKUP_H_
#define LB_CONTROLPLANE_CONFIG_LOOKUP_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "lb/v1/config.pb.h"

namespace lb {

// Canonical text of an address literal, or "" when it is not one.
std::string Canonical(const std::string& text);

// Index of the pool named `name`, or -1.
int FindPoolIndex(const v1::Config& c, const std::string& name);
// Index of the VIP with id `id` (never 0), or -1.
int FindVipIndex(const v1::Config& c, uint32_t id);

struct BackendRef {
  int pool = -1;
  int backend = -1;
  bool found() const { return pool >= 0; }
};
// Where the backend with id `id` (never 0) is configured.
BackendRef FindBackendRef(const v1::Config& c, uint32_t id);

size_t NumBackends(const v1::Config& c);
bool IsProxy(const v1::Pool& p);
// TCP, HTTP or script checks configured (other pools report no health).
bool HealthChecked(const v1::Pool& p);

// A backend's identity in its pool: the canonical address, with the port in
// a proxy pool (config.proto PoolKind).
std::string BackendIdentity(const v1::Pool& p, const v1::Backend& b);
// "address:port (id N)", for messages.
std::string BackendName(const v1::Backend& b);
// IPPROTO_TCP / IPPROTO_UDP, or 0.
uint8_t ProtoNumber(v1::Protocol p);
// "address:port/proto" of a configured VIP; "" when its fields are invalid
// (validation reports those).
std::string VipKeyOf(const v1::Vip& v);

// "pools[i].backends[j]", the validation path of a backend.
std::string BackendPath(int pool, int backend);
// Renames config paths of the entity a request edits to the request's own
// field names ("pools[2].backends[5].port" -> "backend.port"). A plain
// substring replace is exact here: "pools[1]" never occurs inside
// "pools[10]" (the character after the digits differs).
using Renames = std::vector<std::pair<std::string, std::string>>;
absl::Status Rename(const absl::Status& st, const Renames& renames);

// RFC 3339 UTC with milliseconds; "" for 0.
std::string Rfc3339(uint64_t unix_ms);

}  // namespace lb

#endif  // LB_CONTROLPLANE_CONFIG_LOOKUP_H_
