// Findings: "<field path>: <what>" messages gathered by a config validator,
// so that one pass reports every problem of a config, not just the first
// (lb-controlplane's ValidateConfig, lb-l7's ValidateL7Config).
#ifndef LB_LIB_FINDINGS_H_
#define LB_LIB_FINDINGS_H_

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace lb {

class Findings {
 public:
  // ToStatus shows the first `max_reported` errors, then "... and N more".
  // `prefix` goes before every path: "config." makes "pools[0].name" of a
  // nested message read "config.pools[0].name" in an API's answer.
  explicit Findings(size_t max_reported = 10, std::string prefix = "")
      : max_reported_(max_reported), prefix_(std::move(prefix)) {}

  template <typename... Args>
  void Error(absl::string_view path, const absl::FormatSpec<Args...>& fmt, const Args&... args) {
    errors_.push_back(absl::StrCat(prefix_, path, ": ", absl::StrFormat(fmt, args...)));
  }
  template <typename... Args>
  void Warning(absl::string_view path, const absl::FormatSpec<Args...>& fmt, const Args&... args) {
    warnings_.push_back(absl::StrCat(prefix_, path, ": ", absl::StrFormat(fmt, args...)));
  }

  bool ok() const { return errors_.empty(); }

  // OK without errors; else InvalidArgument with the errors joined by "; ".
  absl::Status ToStatus() const {
    if (errors_.empty()) return absl::OkStatus();
    const size_t n = std::min(errors_.size(), max_reported_);
    std::string msg = absl::StrJoin(errors_.begin(), errors_.begin() + n, "; ");
    if (errors_.size() > n) absl::StrAppend(&msg, "; ... and ", errors_.size() - n, " more");
    return absl::InvalidArgumentError(msg);
  }

  std::vector<std::string>& warnings() { return warnings_; }

 private:
  size_t max_reported_;
  std::string prefix_;
  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
};

}  // namespace lb

#endif  // LB_LIB_FINDINGS_H_
