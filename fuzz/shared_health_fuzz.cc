// Fuzz target: the shared health decoder (controlplane/shared_health.cc,
// DecodeSharedHealth), which reads the value under <prefix>/health in etcd
// (the elected leader's health verdicts, leader.h): anything with access to
// etcd can write it. Whatever it accepts must have a term >= 1, unique
// non-zero ids and known statuses, and encode back to a document that
// decodes to the same message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "controlplane/shared_health.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto doc = lb::DecodeSharedHealth(bytes, "fuzz");
  if (!doc.ok()) return 0;
  if (doc->term() < 1) std::abort();
  std::set<uint32_t> ids;
  for (const auto& b : doc->backends()) {
    if (b.id() == 0 || !ids.insert(b.id()).second) std::abort();
    if (b.status() < lb::v1::HEALTH_STATUS_UNKNOWN ||
        b.status() > lb::v1::HEALTH_STATUS_UNHEALTHY) {
      std::abort();
    }
  }
  auto back = lb::DecodeSharedHealth(lb::EncodeSharedHealth(*doc), "fuzz");
  if (!back.ok() || back->SerializeAsString() != doc->SerializeAsString()) std::abort();
  return 0;
}
