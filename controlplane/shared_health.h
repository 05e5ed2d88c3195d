// The shared health document (lb.v1.SharedHealth, proto/lb/v1/cluster.proto):
// what the elected leader of several control planes on one etcd prefix
// stores under <prefix>/health, and what every control plane builds its
// tables from (leader.h; docs/ARCHITECTURE.md, "Whose health view counts").
//
// Bytes: the line "# lb-controlplane health v1\n", then the message in
// protobuf wire format. Decode trusts nothing (the value sits in etcd, where
// anything with access can write): a missing line, bytes that do not parse,
// a term < 1, a leader name over 255 bytes, a backend id 0 or repeated, an
// address over 64 bytes or a status outside UNKNOWN/HEALTHY/UNHEALTHY are
// refused with DataLoss naming `where` and the field (fuzz/
// shared_health_fuzz.cc). Pure functions; any thread.
#ifndef LB_CONTROLPLANE_SHARED_HEALTH_H_
#define LB_CONTROLPLANE_SHARED_HEALTH_H_

#include <string>

#include "absl/status/statusor.h"
#include "lb/v1/cluster.pb.h"

namespace lb {

inline constexpr char kSharedHealthHeader[] = "# lb-controlplane health v1\n";

std::string EncodeSharedHealth(const v1::SharedHealth& doc);
absl::StatusOr<v1::SharedHealth> DecodeSharedHealth(const std::string& bytes,
                                                    const std::string& where);

}  // namespace lb

#endif  // LB_CONTROLPLANE_SHARED_HEALTH_H_
