// Fuzz target: the config validator (controlplane/config.cc), which every
// config file and every admin-API change goes through: lb.v1.Config text
// format -> ParseConfigText -> ValidateConfig against the default table
// capacities. An accepted config must fit those capacities, and its
// validated state must name only pools that exist.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "controlplane/config.h"
#include "lib/shm_region.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = lb::ParseConfigText(text, "fuzz");
  if (!config.ok()) return 0;
  const lb::TableCapacities caps;
  std::vector<std::string> warnings;
  auto state = lb::ValidateConfig(*config, caps, &warnings);
  if (!state.ok()) return 0;
  Check(state->vips.size() <= caps.max_vips);
  Check(state->NumBackends() < caps.max_backends);  // slot 0 is reserved
  Check(state->ring_size <= caps.max_ring_size);
  for (const lb::DesiredVip& v : state->vips) Check(state->FindPool(v.pool) != nullptr);
  return 0;
}
