// lbctl's argument values: numbers, ADDRESS:PORT, proto enum names, small
// files. Each error is InvalidArgument with a one-line message that starts
// with `what` (the flag or placeholder at fault); the caller prints it as a
// usage error. Range checks beyond the syntax are the server's (it names the
// field).
//
// Threads: plain functions over values.
#ifndef LB_CONTROLPLANE_CLI_ARGUMENTS_H_
#define LB_CONTROLPLANE_CLI_ARGUMENTS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/cli/command_line.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/generated_enum_reflection.h"

namespace lb::cli {

// Decimal digits only, 0..4294967295.
absl::StatusOr<uint32_t> ParseU32(const std::string& what, const std::string& text);

struct HostPort {
  std::string host;
  uint32_t port = 0;
};

// "10.0.0.1:80", "[2001:db8::1]:80", "name.example:80". The port's range is
// the server's to check (it names the field).
absl::StatusOr<HostPort> ParseHostPort(const std::string& what, const std::string& text);

// "weighted_round_robin" -> ALGORITHM_WEIGHTED_ROUND_ROBIN, by the proto's
// own enum names (prefix + upper case), so the CLI never falls behind the
// API. UNSPECIFIED is not offered.
template <typename E>
absl::StatusOr<E> ParseEnum(const std::string& what, const std::string& text,
                            const std::string& prefix) {
  const google::protobuf::EnumDescriptor* d = google::protobuf::GetEnumDescriptor<E>();
  std::vector<std::string> names;
  for (int i = 0; i < d->value_count(); ++i) {
    const std::string& full = d->value(i)->name();
    const std::string shortname = absl::AsciiStrToLower(full.substr(prefix.size()));
    if (shortname == "unspecified") continue;
    if (shortname == absl::AsciiStrToLower(text)) return static_cast<E>(d->value(i)->number());
    names.push_back(shortname);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": \"", text, "\" is not one of ", absl::StrJoin(names, ", ")));
}

// A numeric flag and the setter of the message field it fills.
template <typename Msg>
struct U32Field {
  const char* flag;  // without "--"
  void (Msg::*set)(uint32_t);
};

// Each flag of `fields` that was given, parsed as a number and set on `msg`,
// in the order listed; the first bad one is the error ("--flag: ...").
template <typename Msg>
absl::Status SetU32Flags(const ParsedArgs& a, std::initializer_list<U32Field<Msg>> fields,
                         Msg* msg) {
  for (const U32Field<Msg>& f : fields) {
    if (!a.Has(f.flag)) continue;
    auto v = ParseU32(absl::StrCat("--", f.flag), a.Get(f.flag));
    if (!v.ok()) return v.status();
    (msg->*f.set)(*v);
  }
  return absl::OkStatus();
}

// The whole file at `path`; `flag` names it in the error.
absl::StatusOr<std::string> ReadSmallFile(const std::string& flag, const std::string& path);

}  // namespace lb::cli

#endif  // LB_CONTROLPLANE_CLI_ARGUMENTS_H_
