// Strict JSON (RFC 8259) decoding of a request body into a proto message,
// for the REST API. protobuf's JSON parser (3.21) is lenient: it takes
// single-quoted strings, unquoted keys, trailing commas and "yes" for a
// bool. ParseStrictJson first runs a recognizer over the body that refuses
// what is not JSON, a key given twice in one object, keys the message does
// not have, and values whose JSON type cannot be the field's type; then
// protobuf maps the (now known strict) JSON into the message.
//
// Errors: InvalidArgument whose message starts with the field path at fault,
// "backends[0].port: expected a number, got a string", or "body: ..." for
// syntax. Echoed keys and protobuf's messages are bounded (QuoteBounded,
// config.h): a megabyte key never comes back whole.
//
// Threads: pure functions, any thread.
#ifndef LB_CONTROLPLANE_STRICT_JSON_H_
#define LB_CONTROLPLANE_STRICT_JSON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace lb {

// Parses `body` into `m` as described above. `m` may be partly filled on
// failure.
absl::Status ParseStrictJson(absl::string_view body, google::protobuf::Message* m);

// The field path a "field.path: problem" message starts with, or "" when the
// message names no field.
std::string FieldOfError(absl::string_view message);

}  // namespace lb

#endif  // LB_CONTROLPLANE_STRICT_JSON_H_
