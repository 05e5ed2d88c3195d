// ParseTextProto: a text-format message (a config file) parsed with every
// syntax error reported where it is, for the two config files the project
// reads (lb.v1.Config in lb-controlplane, lb.v1.L7Config in lb-l7).
#ifndef LB_PROTO_TEXT_PARSE_H_
#define LB_PROTO_TEXT_PARSE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace lb {

// Parses `text` into *out. On failure: InvalidArgument with every error as
// "<source>:<line>:<column>: <what>" (1-based, as people and editors count),
// joined by "; ", or "<source>: not a valid <message type>" when the parser
// gave no position. Warnings (e.g. a deprecated field) count as errors.
absl::Status ParseTextProto(absl::string_view text, absl::string_view source,
                            google::protobuf::Message* out);

}  // namespace lb

#endif  // LB_PROTO_TEXT_PARSE_H_
