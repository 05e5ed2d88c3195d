#include "proto/text_parse.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace lb {
namespace {

// Collects text-format syntax errors with their position. The tokenizer
// reports 0-based lines and columns.
class TextErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit TextErrorCollector(absl::string_view source) : source_(source) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message));
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    AddError(line, column, message);
  }

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string source_;
  std::vector<std::string> errors_;
};

}  // namespace

absl::Status ParseTextProto(absl::string_view text, absl::string_view source,
                            google::protobuf::Message* out) {
  google::protobuf::TextFormat::Parser parser;
  TextErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  const bool ok = parser.ParseFromString(std::string(text), out);
  if (ok && errors.errors().empty()) return absl::OkStatus();
  if (errors.errors().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a valid ", out->GetDescriptor()->full_name()));
  }
  return absl::InvalidArgumentError(absl::StrJoin(errors.errors(), "; "));
}

}  // namespace lb
