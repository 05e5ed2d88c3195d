#include "controlplane/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "controlplane/config.h"
#include "openssl/evp.h"

namespace lb {
namespace {

constexpr char kStateFile[] = "state.binpb";
// What stores before format v2 wrote (text format, header "v1"): loaded once,
// replaced by kStateFile at the next save.
constexpr char kLegacyStateFile[] = "state.textproto";
// Temp files are "<kStateFile><kTempInfix><pid>.<n>": a crash between write
// and rename leaves one behind; the next open removes it.
constexpr char kTempInfix[] = ".tmp.";
constexpr char kLockFile[] = ".lock";
constexpr size_t kMaxStateBytes = 64u << 20;

// The first line of the file: kHeaderMagic, the format, kHeaderDigest, then
// the SHA-256 of every byte after the line's '\n' as lowercase hex.
constexpr absl::string_view kHeaderMagic = "# lb-controlplane state ";
constexpr absl::string_view kFormatBinary = "v2";  // kStateFile: protobuf wire format
constexpr absl::string_view kFormatText = "v1";    // kLegacyStateFile: protobuf text format
constexpr absl::string_view kHeaderDigest = " sha256=";
constexpr size_t kSha256HexLen = 64;
// At most this many bytes of the file are quoted in an error (escaped): the
// file is not trusted, and it may be large.
constexpr size_t kMaxQuoted = 40;
constexpr size_t kMaxParseError = 300;

// SHA-256 of `data` as lowercase hex (OpenSSL; stable across builds and
// hosts, unlike absl::Hash).
absl::StatusOr<std::string> Sha256Hex(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    return absl::InternalError("cannot compute SHA-256 (OpenSSL EVP_Digest failed)");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), static_cast<size_t>(len)));
}

std::string Quote(absl::string_view bytes) {
  const bool cut = bytes.size() > kMaxQuoted;
  return absl::StrCat("\"", absl::CHexEscape(bytes.substr(0, kMaxQuoted)), cut ? "...\"" : "\"");
}

// The way out, for every refusal: nothing is repaired or replaced silently.
std::string Refusal(const std::string& path) {
  return absl::StrCat(
      "; refusing to load it (only a file lb-controlplane wrote itself is loaded). To recover "
      "deliberately: move ",
      path,
      " aside (keep it to inspect) and start lb-controlplane with --config <file> to seed "
      "a new store");
}

// Checks the checksum line of `file` (the whole state file, non-empty, in
// `format`) and returns OK only when the rest of it is exactly what Save wrote.
absl::Status VerifyChecksum(absl::string_view file, absl::string_view format,
                            const std::string& path) {
  const size_t eol = file.find('\n');
  const absl::string_view first = file.substr(0, eol);
  if (!absl::StartsWith(first, kHeaderMagic)) {
    return absl::DataLossError(absl::StrCat(
        "stored state ", path,
        ":1: no checksum line (the file was written without a checksum: "
        "by hand, or by an lb-controlplane older than the checksummed format; there are no "
        "deployments to migrate, so it is not converted); it starts with ",
        Quote(first), ", expected \"", kHeaderMagic, format, kHeaderDigest, "<hex>\"",
        Refusal(path)));
  }
  absl::string_view rest = first.substr(kHeaderMagic.size());
  if (!absl::ConsumePrefix(&rest, format) || !absl::ConsumePrefix(&rest, kHeaderDigest)) {
    return absl::DataLossError(
        absl::StrCat("stored state ", path, ":1: unknown state format ", Quote(first),
                     " (this lb-controlplane reads \"", kHeaderMagic, format, kHeaderDigest,
                     "<hex>\" only: edited, or written by a newer version?)", Refusal(path)));
  }
  if (rest.size() != kSha256HexLen || !std::all_of(rest.begin(), rest.end(), [](char c) {
        return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
      })) {
    return absl::DataLossError(absl::StrCat(
        "stored state ", path, ":1: malformed checksum line ", Quote(first), " (want ",
        kSha256HexLen, " lowercase hex digits after \"sha256=\": edited, corrupted or truncated)",
        Refusal(path)));
  }
  if (eol == absl::string_view::npos) {
    return absl::DataLossError(absl::StrCat("stored state ", path,
                                            ": the file ends after its checksum line (truncated)",
                                            Refusal(path)));
  }
  auto actual = Sha256Hex(file.substr(eol + 1));
  if (!actual.ok()) return actual.status();
  if (*actual != rest) {
    return absl::DataLossError(absl::StrCat(
        "stored state ", path,
        ": checksum mismatch: the file was edited or corrupted after "
        "lb-controlplane wrote it",
        format == kFormatText && !absl::EndsWith(file, "\n") ? " (it ends mid-line: truncated?)"
                                                             : "",
        " (line 1 says sha256=", rest, ", the ", file.size() - eol - 1, " bytes after it hash to ",
        *actual, ")", Refusal(path)));
  }
  return absl::OkStatus();
}

std::string Errno(const std::string& what, const std::string& path) {
  return absl::StrCat(what, " ", path, ": ", std::strerror(errno));
}

// Creates `dir` and its missing parents (mode 0750).
absl::Status MakeDirs(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("state directory: empty path");
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    if (mkdir(partial.c_str(), 0750) != 0 && errno != EEXIST) {
      return absl::UnavailableError(Errno("cannot create state directory", partial));
    }
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return absl::UnavailableError(Errno("cannot stat", dir));
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("state directory ", dir, " is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(Errno("cannot write", path));
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

class FileStore : public Store {
 public:
  FileStore(std::string dir, int lock_fd)
      : dir_(std::move(dir)),
        path_(dir_ + "/" + kStateFile),
        legacy_path_(dir_ + "/" + kLegacyStateFile),
        lock_fd_(lock_fd) {}
  ~FileStore() override {
    if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
  }

  absl::StatusOr<std::optional<v1::Config>> Load() override {
    auto file = ReadState(path_);
    if (!file.ok()) return file.status();
    if (file->has_value()) return Decode(**file, kFormatBinary, path_);
    // Nothing in the current format: a state directory written before v2
    // still holds its text file. It loads as it is and the next Save
    // replaces it, so an upgrade loses nothing.
    auto legacy = ReadState(legacy_path_);
    if (!legacy.ok()) return legacy.status();
    if (!legacy->has_value()) return std::optional<v1::Config>();
    return Decode(**legacy, kFormatText, legacy_path_);
  }

  absl::Status Save(const v1::Config& config) override {
    if (config.version() == 0) {
      return absl::InvalidArgumentError("Store::Save: config.version must be >= 1");
    }
    auto encoded = EncodeStoredState(config);
    if (!encoded.ok()) return encoded.status();
    const std::string& file = *encoded;

    static std::atomic<uint64_t> counter{0};
    const std::string tmp =
        absl::StrCat(path_, kTempInfix, getpid(), ".", counter.fetch_add(1) + 1);
    // 0600: the state holds lb-l7's session ticket keys (ticket_keys.h).
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return absl::UnavailableError(Errno("cannot create", tmp));
    absl::Status st = WriteAll(fd, file, tmp);
    if (st.ok() && fsync(fd) != 0) st = absl::UnavailableError(Errno("cannot fsync", tmp));
    if (close(fd) != 0 && st.ok()) st = absl::UnavailableError(Errno("cannot close", tmp));
    if (st.ok() && rename(tmp.c_str(), path_.c_str()) != 0) {
      st = absl::UnavailableError(Errno("cannot rename temp file onto", path_));
    }
    if (!st.ok()) {
      unlink(tmp.c_str());
      return st;
    }
    // The rename is durable only once the directory entry is. The legacy
    // file goes only after that: a crash in between leaves both, and Load
    // prefers the new one.
    if (st = SyncDir(); !st.ok()) return st;
    if (unlink(legacy_path_.c_str()) == 0) return SyncDir();
    if (errno != ENOENT) return absl::UnavailableError(Errno("cannot remove", legacy_path_));
    return absl::OkStatus();
  }

  std::string Describe() const override { return absl::StrCat("file ", path_); }

  // `file` as Save wrote it in `format`, or DataLoss naming `path`.
  static absl::StatusOr<std::optional<v1::Config>> Decode(const std::string& file,
                                                          absl::string_view format,
                                                          const std::string& path);

  // Removes temp files a crash left behind; they never hold acknowledged
  // state (the rename is the commit point).
  absl::Status RemoveLeftovers() {
    DIR* d = opendir(dir_.c_str());
    if (d == nullptr) return absl::UnavailableError(Errno("cannot list", dir_));
    const std::string prefix = absl::StrCat(kStateFile, kTempInfix);
    const std::string legacy_prefix = absl::StrCat(kLegacyStateFile, kTempInfix);
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      if (absl::StartsWith(e->d_name, prefix) || absl::StartsWith(e->d_name, legacy_prefix)) {
        stale.push_back(e->d_name);
      }
    }
    closedir(d);
    for (const std::string& name : stale) {
      const std::string p = dir_ + "/" + name;
      if (unlink(p.c_str()) != 0 && errno != ENOENT) {
        return absl::UnavailableError(Errno("cannot remove stale temp file", p));
      }
    }
    return stale.empty() ? absl::OkStatus() : SyncDir();
  }

 private:
  // The whole file, nullopt when there is none; bounded by kMaxStateBytes.
  static absl::StatusOr<std::optional<std::string>> ReadState(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return std::optional<std::string>();
      return absl::UnavailableError(Errno("cannot open stored state", path));
    }
    std::string data;
    char buf[65536];
    while (true) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        close(fd);
        return absl::UnavailableError(Errno("cannot read stored state", path));
      }
      if (n == 0) break;
      data.append(buf, static_cast<size_t>(n));
      if (data.size() > kMaxStateBytes) {
        close(fd);
        return absl::DataLossError(absl::StrCat("stored state ", path, " is larger than ",
                                                kMaxStateBytes, " bytes; refusing to load it"));
      }
    }
    close(fd);
    return std::optional<std::string>(std::move(data));
  }

  absl::Status SyncDir() {
    int dfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return absl::UnavailableError(Errno("cannot open directory", dir_));
    absl::Status st;
    if (fsync(dfd) != 0) st = absl::UnavailableError(Errno("cannot fsync directory", dir_));
    close(dfd);
    return st;
  }

  std::string dir_;
  std::string path_;
  std::string legacy_path_;
  int lock_fd_;
};

absl::StatusOr<std::optional<v1::Config>> FileStore::Decode(const std::string& file,
                                                            absl::string_view format,
                                                            const std::string& path) {
  // Atomic replacement never leaves an empty or version-less file; one
  // that is must not be mistaken for "nothing stored".
  if (file.empty()) {
    return absl::DataLossError(
        absl::StrCat("stored state ", path, ":1: file is empty", Refusal(path)));
  }
  if (absl::Status st = VerifyChecksum(file, format, path); !st.ok()) return st;
  // What Save wrote always parses and has a version; these catch a bug, or
  // a file sealed by hand.
  v1::Config config;
  if (format == kFormatBinary) {
    if (!config.ParseFromArray(file.data() + file.find('\n') + 1,
                               static_cast<int>(file.size() - file.find('\n') - 1))) {
      return absl::DataLossError(absl::StrCat(
          "stored state ", path, " does not parse as lb.v1.Config (wire format)", Refusal(path)));
    }
  } else {
    // The whole file is parsed (line 1 is a comment) so that line numbers
    // in errors are the file's.
    auto text = ParseConfigText(file, path);
    if (!text.ok()) {
      absl::string_view why = text.status().message();
      return absl::DataLossError(
          absl::StrCat("stored state ", path, " does not parse: ", why.substr(0, kMaxParseError),
                       why.size() > kMaxParseError ? "..." : "", Refusal(path)));
    }
    config = *std::move(text);
  }
  if (config.version() == 0) {
    return absl::DataLossError(
        absl::StrCat("stored state ", path, ":1: no version field", Refusal(path)));
  }
  return std::optional<v1::Config>(std::move(config));
}

}  // namespace

absl::StatusOr<std::string> EncodeStoredState(const v1::Config& config) {
  // Wire format, not text: printing 1,000 backends as text took a fifth of
  // an API call's time (perf/RESULTS.md, control plane). Config has no map
  // fields, so the encoding is deterministic.
  std::string body;
  if (!config.SerializeToString(&body)) {
    return absl::InternalError("cannot serialize the desired state");
  }
  auto digest = Sha256Hex(body);
  if (!digest.ok()) return digest.status();
  return absl::StrCat(kHeaderMagic, kFormatBinary, kHeaderDigest, *digest, "\n", body);
}

absl::StatusOr<v1::Config> DecodeStoredState(const std::string& bytes, const std::string& where) {
  auto d = FileStore::Decode(bytes, kFormatBinary, where);
  if (!d.ok()) return d.status();
  return **std::move(d);
}

absl::StatusOr<std::unique_ptr<Store>> NewFileStore(const std::string& dir_in) {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (absl::Status st = MakeDirs(dir); !st.ok()) return st;
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(Errno("state directory not writable:", dir));
  }
  // One control plane per state directory: two writers would each believe
  // their version is the latest. The kernel drops the lock when the process
  // dies, kill -9 included.
  const std::string lock = dir + "/" + kLockFile;
  int lock_fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock_fd < 0) return absl::UnavailableError(Errno("cannot open", lock));
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(lock_fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "state directory ", dir, " is in use by another lb-controlplane (", lock, " is locked)"));
    }
    errno = err;
    return absl::UnavailableError(Errno("cannot lock", lock));
  }
  auto store = std::make_unique<FileStore>(dir, lock_fd);
  if (absl::Status st = store->RemoveLeftovers(); !st.ok()) return st;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace lb
