#include "controlplane/cli/exit_status.h"

namespace lb::cli {

const char kExitHelp[] =
    "Exit status:\n"
    "  0  ok\n"
    "  1  other error (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...)\n"
    "  2  usage error (bad command, flag or argument syntax)\n"
    "  3  not found (NOT_FOUND)\n"
    "  4  invalid argument (INVALID_ARGUMENT, OUT_OF_RANGE); the message names the field\n"
    "  5  already exists (ALREADY_EXISTS)\n"
    "  6  failed precondition (FAILED_PRECONDITION), e.g. a pool still used by a VIP\n"
    "  7  unauthenticated (UNAUTHENTICATED, PERMISSION_DENIED): check --token_file\n"
    "  8  unavailable (UNAVAILABLE): cannot connect to --server, or its store (etcd) is\n"
    "     unreachable and the change was refused\n"
    "  9  deadline exceeded (--timeout_ms, or watch --timeout before --count events)\n"
    "Errors print one line on stderr: \"lbctl: <CODE>: <message>\".\n";

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kExitInvalidArgument;
    case grpc::StatusCode::ALREADY_EXISTS:
      return kExitAlreadyExists;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return kExitFailedPrecondition;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitUnauthenticated;
    case grpc::StatusCode::UNAVAILABLE:
      return kExitUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitDeadlineExceeded;
    default:
      return kExitOther;
  }
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

}  // namespace lb::cli
