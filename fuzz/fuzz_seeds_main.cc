// Runs a fuzz target over files instead of under libFuzzer: every regular
// file of each directory given (recursively, dot-files skipped) is passed to
// LLVMFuzzerTestOneInput once, in a heap buffer of exactly its size. Built
// per target in the ordinary build (fuzz/meson.build) so each seed and each
// crash regression is also an ordinary test: a crash, a sanitizer report or
// an abort fails it. Exit 1 if the directories hold no input at all (a
// missing corpus must not pass silently).
#include <glog/logging.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::filesystem::path> InputsUnder(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().filename().string()[0] == '.') continue;
    out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());  // a stable order, for a reproducible run
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  size_t total = 0;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    if (!std::filesystem::is_directory(argv[i], ec)) {
      LOG(ERROR) << argv[i] << ": not a directory";
      return 1;
    }
    for (const auto& path : InputsUnder(argv[i])) {
      std::ifstream in(path, std::ios::binary);
      const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      // Exactly the input's size on the heap, so an overread is caught the
      // way libFuzzer's own buffer catches it.
      auto buf = std::make_unique<uint8_t[]>(bytes.size());
      std::copy(bytes.begin(), bytes.end(), buf.get());
      VLOG(1) << path.string() << " (" << bytes.size() << " bytes)";
      LLVMFuzzerTestOneInput(buf.get(), bytes.size());
      ++total;
    }
  }
  LOG(INFO) << total << " inputs run";
  return total == 0 ? 1 : 0;
}
