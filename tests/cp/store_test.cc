// The file store (controlplane/store.h): atomic save/load round trips; the
// checksum line (a hand-sealed golden file loads, a saved file carries the
// SHA-256 of the rest); a file that was edited (and still parses), written
// without a checksum, truncated, corrupt or empty refused with DataLoss
// naming the file and the way out, quoting a bounded prefix at most, and left
// untouched; temp files from a crash ignored and removed; one process per
// state directory; and saves killed with SIGKILL at random moments always
// leaving a file that loads (the previous or the new version).
#include "controlplane/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "controlplane/config.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "openssl/evp.h"

namespace lb {
namespace {

using google::protobuf::util::MessageDifferencer;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Computed here, independently of the store, so that the tests pin the
// on-disk format rather than echo the implementation.
std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr), 1);
  return absl::BytesToHexString(std::string(reinterpret_cast<char*>(md), len));
}

constexpr char kHeaderPrefix[] = "# lb-controlplane state v1 sha256=";

std::string Sealed(const std::string& body) {
  return absl::StrCat(kHeaderPrefix, Sha256Hex(body), "\n", body);
}

// What the file store wrote before checksums (the whole header).
constexpr char kUncheckedHeader[] =
    "# lb-controlplane desired state (lb.v1.Config, protobuf text format).\n"
    "# Written atomically by lb-controlplane; edit only while it is stopped.\n";

v1::Config Sample(uint64_t version, int backends) {
  v1::Config c;
  c.set_version(version);
  c.mutable_node()->set_tunnel_source_ipv4("192.0.2.1");
  v1::Pool* p = c.add_pools();
  p->set_name("web");
  p->set_sticky_sessions(true);
  p->mutable_health_check()->set_kind(v1::HEALTH_CHECK_KIND_HTTP);
  p->mutable_health_check()->set_http_path("/health");
  for (int i = 0; i < backends; ++i) {
    v1::Backend* b = p->add_backends();
    b->set_id(static_cast<uint32_t>(i + 1));
    b->set_address(absl::StrCat("10.0.", i / 250, ".", i % 250 + 1));
    b->set_port(80);
    b->set_weight(static_cast<uint32_t>(i % 3));
  }
  v1::Vip* v = c.add_vips();
  v->set_id(1);
  v->set_address("198.51.100.1");
  v->set_protocol(v1::PROTOCOL_TCP);
  v->set_port(80);
  v->set_pool("web");
  return c;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat("/dev/shm/lb-store-test-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
    file_ = dir_ + "/state.textproto";
  }
  void TearDown() override { ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0); }

  // Every file in the state directory with its bytes, and the state file's
  // inode and mtime: what a refused Load must leave exactly as it was.
  struct Disk {
    std::map<std::string, std::string> files;
    std::tuple<ino_t, time_t, long> state_id{};
    bool operator==(const Disk& o) const { return files == o.files && state_id == o.state_id; }
  };
  Disk Snapshot() {
    Disk d;
    for (const std::string& n : ListDir(dir_)) d.files[n] = ReadFile(dir_ + "/" + n);
    struct stat st;
    if (stat(file_.c_str(), &st) == 0)
      d.state_id = {st.st_ino, st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    return d;
  }

  // Writes `bytes` as the state file and expects a fresh store (a restart)
  // to refuse it: DataLoss, a message naming the file, `why` and the way
  // out, quoting no more than a short prefix of the file; nothing on disk
  // changed, and a second Load refuses the same.
  void ExpectRefused(const std::string& bytes, const std::string& why) {
    mkdir(dir_.c_str(), 0750);  // EEXIST after the first call
    WriteFile(file_, bytes);
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    const Disk before = Snapshot();
    ASSERT_EQ(before.files.at("state.textproto"), bytes);
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto loaded = (*store)->Load();
      ASSERT_FALSE(loaded.ok()) << "loaded:\n" << bytes;
      const std::string msg(loaded.status().message());
      EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << msg;
      EXPECT_NE(msg.find("stored state " + file_), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << "want \"" << why << "\" in: " << msg;
      EXPECT_NE(msg.find("move " + file_ + " aside"), std::string::npos) << msg;
      EXPECT_NE(msg.find("--config <file> to seed a new store"), std::string::npos) << msg;
      // The fixed text, the path, two digests and a 40-byte escaped quote.
      EXPECT_LT(msg.size(), 1000 + 2 * file_.size()) << msg;
      EXPECT_TRUE(Snapshot() == before) << "a refused Load changed the state directory";
    }
  }

  std::string dir_, file_;
};

TEST_F(StoreTest, EmptyDirectoryLoadsNothingAndIsCreated) {
  auto store = NewFileStore(dir_ + "/nested/deeper");
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_EQ((*store)->Describe(), "file " + dir_ + "/nested/deeper/state.textproto");
}

TEST_F(StoreTest, SaveLoadRoundTripIsHumanReadableAndLeavesNoTempFiles) {
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  for (uint64_t v = 1; v <= 3; ++v) {
    const v1::Config c = Sample(v, static_cast<int>(v * 10));
    ASSERT_TRUE((*store)->Save(c).ok());
    auto loaded = (*store)->Load();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->has_value());
    EXPECT_TRUE(MessageDifferencer::Equals(**loaded, c)) << (*loaded)->DebugString();
  }
  const std::string text = ReadFile(file_);
  EXPECT_NE(text.find("version: 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("name: \"web\""), std::string::npos) << text;
  // Line 1 is the checksum of every byte after it; the rest is the text
  // proto (with comments), readable as is.
  const size_t eol = text.find('\n');
  ASSERT_NE(eol, std::string::npos);
  const std::string body = text.substr(eol + 1);
  EXPECT_EQ(text.substr(0, eol), kHeaderPrefix + Sha256Hex(body)) << text;
  auto parsed = ParseConfigText(body, "body");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*parsed, Sample(3, 30)));
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.textproto"}));
  // A fresh store over the same directory (a restart) reads the same.
  store->reset();
  auto again = NewFileStore(dir_);
  ASSERT_TRUE(again.ok()) << again.status();
  auto loaded = (*again)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->version(), 3u);
  EXPECT_EQ((*loaded)->pools(0).backends_size(), 30);
}

TEST_F(StoreTest, VersionZeroIsNotSaved) {
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Save(Sample(0, 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(access(file_.c_str(), F_OK), -1);
}

// The format written out by hand: the checksum is SHA-256 of the bytes after
// line 1 (sha256sum of the body printed by `printf` gives the same).
TEST_F(StoreTest, GoldenHandSealedFileLoads) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0750), 0);
  WriteFile(file_,
            "# lb-controlplane state v1 "
            "sha256=e99029385dc995d1c1460c0ba9b22810a48dcca24d9384a6b70084e3ed5f59b2\n"
            "version: 5\n"
            "pools {\n"
            "  name: \"web\"\n"
            "}\n");
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->version(), 5u);
  ASSERT_EQ((*loaded)->pools_size(), 1);
  EXPECT_EQ((*loaded)->pools(0).name(), "web");
}

// An edit that still parses (and would validate) is exactly what the
// checksum is for: the control plane never accepted it.
TEST_F(StoreTest, EditedFileThatStillParsesIsRefused) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(4, 9)).ok());
  }
  const std::string good = ReadFile(file_);

  std::string reweighted = good;
  const size_t at = reweighted.find("weight: 2\n");
  ASSERT_NE(at, std::string::npos) << good;
  reweighted.replace(at, 9, "weight: 1");
  auto parsed = ParseConfigText(reweighted, file_);
  ASSERT_TRUE(parsed.ok()) << "the edit must still parse for this test to mean anything: "
                           << parsed.status();
  EXPECT_FALSE(MessageDifferencer::Equals(*parsed, Sample(4, 9)));
  ExpectRefused(reweighted, "checksum mismatch: the file was edited or corrupted");

  // The checksum covers the comments too, and a byte added at the end.
  std::string comment = good;
  const size_t hash = comment.find("\n# ") + 3;
  comment[hash] = static_cast<char>(comment[hash] ^ 0x20);
  ExpectRefused(comment, "checksum mismatch");
  ExpectRefused(good + "\n", "checksum mismatch");

  // A digit of the checksum itself changed.
  std::string digest = good;
  const size_t d = std::string(kHeaderPrefix).size();
  digest[d] = digest[d] == '0' ? '1' : '0';
  ExpectRefused(digest, "checksum mismatch");

  // The store still serves the original, restored byte for byte.
  WriteFile(file_, good);
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok());
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  EXPECT_TRUE(MessageDifferencer::Equals(**loaded, Sample(4, 9)));
}

// What the previous version wrote (its own comment header, no checksum), a
// bare text proto, and a saved file with its checksum line cut off: all
// refused the same way. There are no deployments to migrate.
TEST_F(StoreTest, FileWithoutChecksumLineIsRefused) {
  std::string text;
  ASSERT_TRUE(google::protobuf::TextFormat::PrintToString(Sample(6, 4), &text));
  ExpectRefused(kUncheckedHeader + text, "written without a checksum");
  ExpectRefused(text, "no checksum line");
  ExpectRefused(text, "it starts with \"node {\"");

  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(6, 4)).ok());
  }
  const std::string saved = ReadFile(file_);
  ExpectRefused(saved.substr(saved.find('\n') + 1), "written without a checksum");
}

// Cut anywhere (what a non-atomic copy or a full disk leaves): refused.
TEST_F(StoreTest, TruncatedFileIsRefused) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(9, 200)).ok());
  }
  const std::string good = ReadFile(file_);
  const size_t header = good.find('\n') + 1;
  ASSERT_EQ(header, std::string(kHeaderPrefix).size() + 64 + 1);

  ExpectRefused(good.substr(0, good.size() - 1), "(it ends mid-line: truncated?)");
  ExpectRefused(good.substr(0, good.size() / 2), "checksum mismatch");
  // Every cut at a line boundary still parses as far as text format goes.
  const size_t line_cut = good.rfind("\n  backends {", good.size() / 2) + 1;
  ExpectRefused(good.substr(0, line_cut), "checksum mismatch");
  ExpectRefused(good.substr(0, header), "checksum mismatch");
  ExpectRefused(good.substr(0, header - 1), "ends after its checksum line (truncated)");
  ExpectRefused(good.substr(0, header - 10), "malformed checksum line");
  ExpectRefused(good.substr(0, 10), "no checksum line");
  ExpectRefused("", "file is empty");
}

TEST_F(StoreTest, MalformedChecksumLinesAreRefused) {
  const std::string body = "version: 2\n";
  const std::string digest = Sha256Hex(body);
  std::string upper = digest;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  ExpectRefused(absl::StrCat(kHeaderPrefix, upper, "\n", body), "malformed checksum line");
  ExpectRefused(absl::StrCat(kHeaderPrefix, digest, "\r\n", body), "malformed checksum line");
  ExpectRefused(absl::StrCat(kHeaderPrefix, digest, " \n", body), "malformed checksum line");
  ExpectRefused(absl::StrCat("# lb-controlplane state v2 sha256=", digest, "\n", body),
                "unknown state format");
  ExpectRefused(absl::StrCat("# lb-controlplane state v1 sha1=", digest, "\n", body),
                "unknown state format");
  ExpectRefused(absl::StrCat(" ", kHeaderPrefix, digest, "\n", body), "no checksum line");
  // The same body, correctly sealed, loads (so the refusals above are about
  // the line alone).
  WriteFile(file_, Sealed(body));
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok());
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  EXPECT_EQ((*loaded)->version(), 2u);
}

// The file is not trusted and may be large (or hold what should not be in a
// log): a refusal quotes at most a short, escaped prefix of it.
TEST_F(StoreTest, RefusalQuotesABoundedPrefixOnly) {
  const std::string secret(1 << 20, 'S');
  ExpectRefused(secret, "it starts with \"SSSSSSSSSSSSSSSS");
  ExpectRefused("\x01\x02\xff" + secret, "it starts with \"\\x01\\x02\\xff");
  ExpectRefused(absl::StrCat(kHeaderPrefix, Sha256Hex("x"), "\n", secret), "checksum mismatch");
  ExpectRefused(absl::StrCat(kHeaderPrefix, secret), "malformed checksum line");
  for (const std::string& bytes : {secret, absl::StrCat(kHeaderPrefix, secret)}) {
    WriteFile(file_, bytes);
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    auto loaded = (*store)->Load();
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(std::string(loaded.status().message()).find(std::string(41, 'S')), std::string::npos)
        << loaded.status();
  }
}

// The way out the message gives works: moved aside, the store is empty and
// a new state can be seeded.
TEST_F(StoreTest, MovingARefusedFileAsideStartsAnEmptyStore) {
  ExpectRefused(kUncheckedHeader + Sample(3, 2).DebugString(), "written without a checksum");
  ASSERT_EQ(rename(file_.c_str(), (dir_ + "/state.textproto.refused").c_str()), 0);
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok());
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_TRUE((*store)->Save(Sample(1, 2)).ok());
  loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  EXPECT_EQ((*loaded)->version(), 1u);
  EXPECT_EQ(ListDir(dir_),
            (std::vector<std::string>{".lock", "state.textproto", "state.textproto.refused"}));
}

// Behind a valid checksum (a bug, or a file sealed by hand), a body that
// does not parse or has no version is still refused, naming the line of the
// file (the checksum line counts).
TEST_F(StoreTest, SealedButUnusableFileIsRefusedNamingFileAndLine) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(4, 3)).ok());
  }
  const std::string text = ReadFile(file_);
  const std::string body = text.substr(text.find('\n') + 1);
  const std::string torn = Sealed(body.substr(0, body.size() / 2) + "\n  bogus_field: 1\n");
  // "<file>:<line>:<column>:" with the 1-based line of the bad field.
  const int bad_line = static_cast<int>(std::count(torn.begin(), torn.end(), '\n'));
  ExpectRefused(torn, absl::StrCat(file_, ":", bad_line, ":"));
  ExpectRefused(torn, "does not parse");
  ExpectRefused(Sealed("pools { name: \"web\" }\n"), "no version field");
}

TEST_F(StoreTest, TempLeftoversAreIgnoredAndRemoved) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(7, 2)).ok());
  }
  WriteFile(dir_ + "/state.textproto.tmp.999999.1", "pools { name: \"half-writ");
  WriteFile(dir_ + "/state.textproto.tmp.999999.2", Sample(8, 5).DebugString());
  WriteFile(dir_ + "/unrelated", "kept");
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  // Only the renamed file is the state: an unrenamed temp file was never
  // acknowledged, even when it is complete.
  EXPECT_EQ((*loaded)->version(), 7u);
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.textproto", "unrelated"}));
}

TEST_F(StoreTest, OneProcessPerDirectory) {
  auto first = NewFileStore(dir_);
  ASSERT_TRUE(first.ok());
  auto second = NewFileStore(dir_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status();
  first->reset();
  EXPECT_TRUE(NewFileStore(dir_).ok());
}

TEST_F(StoreTest, NotADirectoryIsRefused) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0750), 0);
  WriteFile(dir_ + "/file", "x");
  auto store = NewFileStore(dir_ + "/file");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find(dir_ + "/file"), std::string::npos) << store.status();
}

// A child saves versions 1, 2, 3, ... as fast as it can (large configs, so a
// kill often lands mid-write) and reports each acknowledged version on a
// pipe; the parent SIGKILLs it at a random moment. The file must then load,
// with the last acknowledged version or the one after it (saved but not yet
// reported).
TEST_F(StoreTest, KillNineDuringSavesAlwaysLeavesALoadableVersion) {
  std::mt19937 rng(12345);
  uint64_t last_seen = 0;
  for (int round = 0; round < 25; ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      auto store = NewFileStore(dir_);
      if (!store.ok()) _exit(3);
      auto loaded = (*store)->Load();
      if (!loaded.ok()) _exit(4);
      uint64_t v = loaded->has_value() ? (*loaded)->version() : 0;
      while (true) {
        ++v;
        if (!(*store)->Save(Sample(v, 300 + static_cast<int>(v % 200))).ok()) _exit(5);
        if (write(fds[1], &v, sizeof(v)) != sizeof(v)) _exit(6);
      }
    }
    close(fds[1]);
    usleep(std::uniform_int_distribution<int>(2000, 40000)(rng));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
    uint64_t acked = last_seen, v = 0;
    while (read(fds[0], &v, sizeof(v)) == sizeof(v)) acked = v;
    close(fds[0]);

    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    auto loaded = (*store)->Load();
    ASSERT_TRUE(loaded.ok()) << "round " << round << ": " << loaded.status();
    if (acked == 0 && !loaded->has_value()) continue;
    ASSERT_TRUE(loaded->has_value()) << "round " << round;
    const uint64_t got = (*loaded)->version();
    EXPECT_TRUE(got == acked || got == acked + 1)
        << "round " << round << ": loaded " << got << ", last acknowledged " << acked;
    EXPECT_TRUE(
        MessageDifferencer::Equals(**loaded, Sample(got, 300 + static_cast<int>(got % 200))));
    last_seen = got;
    for (const std::string& n : ListDir(dir_)) {
      EXPECT_EQ(n.find(".tmp."), std::string::npos) << "leftover " << n << " not removed";
    }
  }
  EXPECT_GT(last_seen, 25u) << "the child hardly saved anything; the test proved little";
}

}  // namespace
}  // namespace lb
