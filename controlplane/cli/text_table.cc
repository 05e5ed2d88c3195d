#include "controlplane/cli/text_table.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace lb::cli {
namespace {

bool IsNumber(const std::string& s) {
  if (s.empty() || s == "-") return true;
  bool digit = false;
  for (char c : s) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digit = true;
    } else if (c != '.' && c != '-') {
      return false;
    }
  }
  return digit;
}

}  // namespace

void TextTable::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

std::string TextTable::Render() const {
  const size_t n = header_.size();
  std::vector<size_t> width(n);
  std::vector<bool> numeric(n, true);
  for (size_t c = 0; c < n; ++c) {
    width[c] = header_[c].size();
    for (const auto& row : rows_) {
      width[c] = std::max(width[c], row[c].size());
      numeric[c] = numeric[c] && IsNumber(row[c]);
    }
    if (rows_.empty()) numeric[c] = false;
  }
  auto render_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < n; ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c > 0) line += "  ";
      if (numeric[c]) {
        absl::StrAppend(&line, pad, row[c]);
      } else {
        absl::StrAppend(&line, row[c], c + 1 < n ? pad : "");
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string out = render_row(header_);
  for (const auto& row : rows_) out += render_row(row);
  return out;
}

std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& items) {
  size_t width = 0;
  for (const auto& [k, v] : items) width = std::max(width, k.size() + 1);
  std::string out;
  for (const auto& [k, v] : items) {
    absl::StrAppend(&out, k, ":", std::string(width - k.size() - 1 + 2, ' '), v, "\n");
  }
  return out;
}

}  // namespace lb::cli
