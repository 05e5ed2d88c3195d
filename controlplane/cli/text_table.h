// Aligned plain-text tables for lbctl's human output.
//
// Columns are separated by two spaces; a column whose cells are all numbers
// (or "-") is right-aligned, others left-aligned; no trailing spaces. An empty
// table renders its header only, so "no rows" is still visible.
//
// Threads: a plain value type.
#ifndef LB_CONTROLPLANE_CLI_TEXT_TABLE_H_
#define LB_CONTROLPLANE_CLI_TEXT_TABLE_H_

#include <string>
#include <utility>
#include <vector>

namespace lb::cli {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}

  // Missing cells render empty; extra cells are an error of the caller and
  // are dropped.
  void AddRow(std::vector<std::string> row);
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "key:  value" lines with the values aligned.
std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& items);

}  // namespace lb::cli

#endif  // LB_CONTROLPLANE_CLI_TEXT_TABLE_H_
