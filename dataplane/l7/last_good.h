// The last good configuration: every configuration lb-l7 applied from the
// control plane, kept on disk so that a restart while the control plane is
// away starts serving from it (--last_good_config).
//
// Format: one comment line, then the lb.v1.L7Config text format:
//   # lb-l7 last good configuration: generation 7 sha256 <64 hex digits>
// The digest covers every byte after that line. Being a comment, the line
// leaves the file usable as `lb-l7 --config FILE`.
//
// WriteLastGood: temp file (mode 0600, same directory) + fsync + rename +
// fsync of the directory, so a crash leaves the old file or the new one,
// never a torn one. ReadLastGood refuses a file whose header or digest does
// not match (DataLoss) or that does not parse (InvalidArgument), naming the
// file; NotFound when there is none.
//
// Threads: any; one writer at a time per path (the caller's).
#ifndef LB_DATAPLANE_L7_LAST_GOOD_H_
#define LB_DATAPLANE_L7_LAST_GOOD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lb/v1/l7.pb.h"

namespace lb::l7 {

struct LastGood {
  v1::L7Config config;
  uint64_t generation = 0;
};

absl::Status WriteLastGood(const std::string& path, const v1::L7Config& config,
                           uint64_t generation);
absl::StatusOr<LastGood> ReadLastGood(const std::string& path);

}  // namespace lb::l7

#endif  // LB_DATAPLANE_L7_LAST_GOOD_H_
