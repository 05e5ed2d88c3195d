#include "dataplane/l7/last_good.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/text_format.h"
#include "proto/text_parse.h"

namespace lb::l7 {
namespace {

constexpr absl::string_view kHeader = "# lb-l7 last good configuration: generation ";
constexpr size_t kMaxBytes = 16 << 20;

std::string Sha256Hex(absl::string_view body) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), md);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), sizeof(md)));
}

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

absl::Status WriteLastGood(const std::string& path, const v1::L7Config& config,
                           uint64_t generation) {
  std::string body;
  if (!google::protobuf::TextFormat::PrintToString(config, &body)) {
    return absl::InternalError("cannot print the configuration");
  }
  const std::string file =
      absl::StrCat(kHeader, generation, " sha256 ", Sha256Hex(body), "\n", body);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("create", tmp);
  // O_CREAT's mode only applies to a new file: a leftover temp file keeps
  // its own, so set it.
  if (fchmod(fd, 0600) != 0 || !WriteAll(fd, file) || fsync(fd) != 0) {
    absl::Status st = Errno("write", tmp);
    close(fd);
    unlink(tmp.c_str());
    return st;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = Errno("rename to", path);
    unlink(tmp.c_str());
    return st;
  }
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  // the rename itself survives a crash
    close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<LastGood> ReadLastGood(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.size() > kMaxBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": larger than ", kMaxBytes, " bytes"));
  }
  const size_t eol = text.find('\n');
  absl::string_view line = absl::string_view(text).substr(0, eol);
  if (eol == std::string::npos || !absl::ConsumePrefix(&line, kHeader)) {
    return absl::DataLossError(
        absl::StrCat(path, ": first line is not \"", kHeader, "N sha256 HEX\""));
  }
  const size_t sp = line.find(" sha256 ");
  LastGood out;
  if (sp == absl::string_view::npos || !absl::SimpleAtoi(line.substr(0, sp), &out.generation)) {
    return absl::DataLossError(absl::StrCat(path, ": header has no generation"));
  }
  const absl::string_view body = absl::string_view(text).substr(eol + 1);
  if (line.substr(sp + 8) != Sha256Hex(body)) {
    return absl::DataLossError(
        absl::StrCat(path, ": sha256 does not match the contents (torn or edited file)"));
  }
  if (absl::Status st = ParseTextProto(body, path, &out.config); !st.ok()) return st;
  return out;
}

}  // namespace lb::l7
