// Fuzz target: the stored-state decoder (controlplane/store.cc,
// DecodeStoredState), which reads the state file and, with
// --store=etcd://, the value another process put under <prefix>/state in
// etcd: checksum line, then lb.v1.Config wire format. Whatever it accepts
// must encode back to the same bytes (the checksum pins them) and go through
// ValidateConfig without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/store.h"
#include "lib/shm_region.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto config = lb::DecodeStoredState(bytes, "fuzz");
  if (!config.ok()) return 0;
  if (config->version() == 0) std::abort();
  // Re-encoding need not give the same bytes (protobuf accepts non-canonical
  // wire forms), but it must decode to the same message.
  auto again = lb::EncodeStoredState(*config);
  if (!again.ok()) std::abort();
  auto back = lb::DecodeStoredState(*again, "fuzz");
  if (!back.ok() || back->SerializeAsString() != config->SerializeAsString()) std::abort();
  std::vector<std::string> warnings;
  (void)lb::ValidateConfig(*config, lb::TableCapacities(), &warnings);
  return 0;
}
