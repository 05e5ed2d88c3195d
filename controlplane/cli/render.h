// lbctl's human output: one room for every table header, row and key-value
// block, so a resource looks the same whichever command prints it. The
// proto's zero values mean a default; these functions show the default.
// (--json output is protobuf JSON and does not come through here.)
//
// Threads: plain functions over values.
#ifndef LB_CONTROLPLANE_CLI_RENDER_H_
#define LB_CONTROLPLANE_CLI_RENDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/generated_enum_reflection.h"
#include "lb/v1/admin.pb.h"

namespace lb::cli {

// ALGORITHM_IP_HASH -> "ip_hash"; a number with no name prints as the number.
template <typename E>
std::string EnumShort(E value, const std::string& prefix) {
  const google::protobuf::EnumValueDescriptor* v =
      google::protobuf::GetEnumDescriptor<E>()->FindValueByNumber(static_cast<int>(value));
  if (v == nullptr) return absl::StrCat(static_cast<int>(value));
  return absl::AsciiStrToLower(v->name().substr(prefix.size()));
}

std::string Algo(v1::Algorithm a);
std::string State(v1::BackendState s);
std::string Health(v1::HealthStatus h);
std::string Proto(v1::Protocol p);
std::string Num(uint64_t v);
// 2024-01-02T03:04:05.678Z
std::string UnixMsText(uint64_t ms);

extern const std::vector<std::string> kVipHeader;
// `status` null: a VIP just created, no table columns yet ("-").
std::vector<std::string> VipRow(const v1::Vip& v, const v1::VipStatus* status);
std::string HealthCheckText(const v1::HealthCheck& hc);
extern const std::vector<std::string> kPoolHeader;
std::vector<std::string> PoolRow(const v1::Pool& p);
extern const std::vector<std::string> kBackendHeader;
std::vector<std::string> BackendRow(const v1::BackendStatus& s);

// A one-row table: what a create or update returns.
std::string VipText(const v1::Vip& v);
std::string PoolText(const v1::Pool& p);
std::string BackendText(const v1::BackendStatus& s);
// A table of what a list returns (the header alone when it is empty).
std::string VipsText(const google::protobuf::RepeatedPtrField<v1::VipStatus>& vips);
std::string PoolsText(const v1::ListPoolsResponse& r);
std::string BackendsText(const v1::ListBackendsResponse& r);

// One line per event, for `watch`.
std::string EventLine(const v1::Event& e);
std::string NodeText(const v1::Node& n);
std::string BackendHealthText(const v1::BackendHealth& h);
// Totals, then one row per lcore (drop reasons sorted by name).
std::string StatsText(const v1::Stats& st);
std::string TablesText(const v1::TablesInfo& ti);
std::string ExplainText(const v1::ExplainResponse& r);

}  // namespace lb::cli

#endif  // LB_CONTROLPLANE_CLI_RENDER_H_
