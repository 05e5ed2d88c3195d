#include "controlplane/shared_health.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace lb {
namespace {

constexpr size_t kMaxLeaderName = 255;
constexpr size_t kMaxAddress = 64;

absl::Status Refuse(const std::string& where, const std::string& why) {
  return absl::DataLossError(absl::StrCat("shared health in ", where, ": ", why,
                                          " (not written by lb-controlplane; ignored, the "
                                          "current health kept)"));
}

}  // namespace

std::string EncodeSharedHealth(const v1::SharedHealth& doc) {
  std::string out = kSharedHealthHeader;
  doc.AppendToString(&out);
  return out;
}

absl::StatusOr<v1::SharedHealth> DecodeSharedHealth(const std::string& bytes,
                                                    const std::string& where) {
  if (!absl::StartsWith(bytes, kSharedHealthHeader)) {
    return Refuse(where, "no \"# lb-controlplane health v1\" line");
  }
  v1::SharedHealth doc;
  const size_t skip = sizeof(kSharedHealthHeader) - 1;
  if (!doc.ParseFromArray(bytes.data() + skip, static_cast<int>(bytes.size() - skip))) {
    return Refuse(where, "does not parse as lb.v1.SharedHealth");
  }
  if (doc.term() < 1) return Refuse(where, "term: must be >= 1");
  if (doc.leader().size() > kMaxLeaderName) {
    return Refuse(where, absl::StrCat("leader: over ", kMaxLeaderName, " bytes"));
  }
  std::set<uint32_t> seen;
  for (int i = 0; i < doc.backends_size(); ++i) {
    const v1::SharedBackendHealth& b = doc.backends(i);
    const std::string field = absl::StrCat("backends[", i, "]");
    if (b.id() == 0) return Refuse(where, field + ".id: must be >= 1");
    if (!seen.insert(b.id()).second) {
      return Refuse(where, absl::StrCat(field, ".id: ", b.id(), " repeated"));
    }
    if (b.address().size() > kMaxAddress) {
      return Refuse(where, absl::StrCat(field, ".address: over ", kMaxAddress, " bytes"));
    }
    if (b.status() != v1::HEALTH_STATUS_UNKNOWN && b.status() != v1::HEALTH_STATUS_HEALTHY &&
        b.status() != v1::HEALTH_STATUS_UNHEALTHY) {
      return Refuse(where, absl::StrCat(field, ".status: ", static_cast<int>(b.status()),
                                        " is not unknown, healthy or unhealthy"));
    }
  }
  return doc;
}

}  // namespace lb
