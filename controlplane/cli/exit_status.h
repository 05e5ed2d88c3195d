// lbctl's exit statuses and gRPC code names. Scripts rely on the numbers;
// keep them stable. `kExitHelp` is the text `lbctl --help` prints for them.
//
// Threads: plain functions and constants.
#ifndef LB_CONTROLPLANE_CLI_EXIT_STATUS_H_
#define LB_CONTROLPLANE_CLI_EXIT_STATUS_H_

#include <grpcpp/grpcpp.h>

namespace lb::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,
  kExitUsage = 2,
  kExitNotFound = 3,
  kExitInvalidArgument = 4,
  kExitAlreadyExists = 5,
  kExitFailedPrecondition = 6,
  kExitUnauthenticated = 7,
  kExitUnavailable = 8,
  kExitDeadlineExceeded = 9,
};

extern const char kExitHelp[];

// The exit status for a gRPC status code (kExitOther for codes not named).
int ExitCodeFor(grpc::StatusCode code);
// "NOT_FOUND" for NOT_FOUND; "UNKNOWN" for a code it does not know.
const char* CodeName(grpc::StatusCode code);

}  // namespace lb::cli

#endif  // LB_CONTROLPLANE_CLI_EXIT_STATUS_H_
