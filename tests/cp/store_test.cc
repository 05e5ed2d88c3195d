// The file store (controlplane/store.h): atomic save/load round trips; the
// checksum line (a hand-sealed golden file loads, a saved file carries the
// SHA-256 of the rest); the text file of format v1 loaded and replaced by the
// first save; a file that was edited (and still parses), written
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

constexpr char kHeaderPrefix[] = "# lb-controlplane state v2 sha256=";
// Format v1: text format in state.textproto (loaded, then replaced).
constexpr char kTextHeaderPrefix[] = "# lb-controlplane state v1 sha256=";

std::string Sealed(const std::string& body) {
  return absl::StrCat(kHeaderPrefix, Sha256Hex(body), "\n", body);
}
std::string SealedText(const std::string& body) {
  return absl::StrCat(kTextHeaderPrefix, Sha256Hex(body), "\n", body);
}
std::string Wire(const v1::Config& c) {
  std::string out;
  EXPECT_TRUE(c.SerializeToString(&out));
  return out;
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
    file_ = dir_ + "/state.binpb";
    text_file_ = dir_ + "/state.textproto";
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
  // `path` is file_ (the current format) or text_file_ (format v1).
  void ExpectRefused(const std::string& bytes, const std::string& why) {
    ExpectRefusedAt(file_, bytes, why);
  }
  void ExpectRefusedAt(const std::string& path, const std::string& bytes, const std::string& why) {
    mkdir(dir_.c_str(), 0750);  // EEXIST after the first call
    // The v1 file is read only when there is no v2 file.
    if (path == text_file_) unlink(file_.c_str());
    WriteFile(path, bytes);
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    const Disk before = Snapshot();
    ASSERT_EQ(before.files.at(path.substr(dir_.size() + 1)), bytes);
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto loaded = (*store)->Load();
      ASSERT_FALSE(loaded.ok()) << "loaded:\n" << bytes;
      const std::string msg(loaded.status().message());
      EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << msg;
      EXPECT_NE(msg.find("stored state " + path), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << "want \"" << why << "\" in: " << msg;
      EXPECT_NE(msg.find("move " + path + " aside"), std::string::npos) << msg;
      EXPECT_NE(msg.find("--config <file> to seed a new store"), std::string::npos) << msg;
      // The fixed text, the path, two digests and a 40-byte escaped quote.
      EXPECT_LT(msg.size(), 1000 + 2 * path.size()) << msg;
      EXPECT_TRUE(Snapshot() == before) << "a refused Load changed the state directory";
    }
  }

  std::string dir_, file_, text_file_;
};

TEST_F(StoreTest, EmptyDirectoryLoadsNothingAndIsCreated) {
  auto store = NewFileStore(dir_ + "/nested/deeper");
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_EQ((*store)->Describe(), "file " + dir_ + "/nested/deeper/state.binpb");
}

TEST_F(StoreTest, SaveLoadRoundTripIsSealedWireFormatAndLeavesNoTempFiles) {
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
  // Line 1 is the checksum of every byte after it; the rest is the config
  // in wire format (what `tail -n +2 | protoc --decode=lb.v1.Config` reads).
  const std::string file = ReadFile(file_);
  const size_t eol = file.find('\n');
  ASSERT_NE(eol, std::string::npos);
  const std::string body = file.substr(eol + 1);
  EXPECT_EQ(file.substr(0, eol), kHeaderPrefix + Sha256Hex(body));
  v1::Config parsed;
  ASSERT_TRUE(parsed.ParseFromString(body));
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, Sample(3, 30)));
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.binpb"}));
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
// line 1 (sha256sum of the body printed by `printf` gives the same). The body
// is {pools {name: "web"} version: 5} in wire format.
TEST_F(StoreTest, GoldenHandSealedFileLoads) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0750), 0);
  const std::string body("\x1a\x05\x0a\x03web\x28\x05", 9);
  WriteFile(file_,
            "# lb-controlplane state v2 "
            "sha256=c5317b5037896ce094dc8b8ea751fe018164cd3ee8c6015685ae866b75e0e200\n" +
                body);
  ASSERT_EQ(ReadFile(file_), Sealed(body)) << "the golden digest is wrong";
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->version(), 5u);
  ASSERT_EQ((*loaded)->pools_size(), 1);
  EXPECT_EQ((*loaded)->pools(0).name(), "web");
}

// A state directory from before format v2 (text, state.textproto) loads as
// it is; the first save writes state.binpb and removes the text file, so an
// upgrade loses nothing and leaves one state file.
TEST_F(StoreTest, TextFormatV1FileLoadsAndTheFirstSaveReplacesIt) {
  ASSERT_EQ(mkdir(dir_.c_str(), 0750), 0);
  WriteFile(text_file_,
            "# lb-controlplane state v1 "
            "sha256=e99029385dc995d1c1460c0ba9b22810a48dcca24d9384a6b70084e3ed5f59b2\n"
            "version: 5\n"
            "pools {\n"
            "  name: \"web\"\n"
            "}\n");
  WriteFile(text_file_ + ".tmp.999999.1", "pools { name: \"half-writ");
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.textproto"}));
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->version(), 5u);
  EXPECT_EQ((*loaded)->pools(0).name(), "web");
  v1::Config next = **loaded;
  next.set_version(6);
  ASSERT_TRUE((*store)->Save(next).ok());
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.binpb"}));
  store->reset();
  auto again = NewFileStore(dir_);
  ASSERT_TRUE(again.ok());
  loaded = (*again)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  EXPECT_TRUE(MessageDifferencer::Equals(**loaded, next));
  again->reset();
  // A v1 file is refused on the same terms as a v2 one, naming its own path
  // and, when it is text, the line.
  ExpectRefusedAt(text_file_, SealedText("version: 2\n  bogus_field: 1\n"), text_file_ + ":3:");
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
  const size_t eol = good.find('\n');

  // Another weight under the original checksum line: still a valid config.
  v1::Config edited = Sample(4, 9);
  edited.mutable_pools(0)->mutable_backends(2)->set_weight(1);
  const std::string reweighted = good.substr(0, eol + 1) + Wire(edited);
  v1::Config parsed;
  ASSERT_TRUE(parsed.ParseFromString(reweighted.substr(eol + 1)));
  EXPECT_FALSE(MessageDifferencer::Equals(parsed, Sample(4, 9)));
  ExpectRefused(reweighted, "checksum mismatch: the file was edited or corrupted");

  // One flipped bit anywhere in the body, and a byte added at the end.
  std::string flipped = good;
  flipped[eol + 1 + (good.size() - eol) / 2] ^= 0x01;
  ExpectRefused(flipped, "checksum mismatch");
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
  ExpectRefusedAt(text_file_, kUncheckedHeader + text, "written without a checksum");
  ExpectRefusedAt(text_file_, text, "it starts with \"node {\"");
  ASSERT_EQ(unlink(text_file_.c_str()), 0);
  ExpectRefused(text, "no checksum line");

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

  ExpectRefused(good.substr(0, good.size() - 1), "checksum mismatch");
  ExpectRefused(good.substr(0, good.size() / 2), "checksum mismatch");
  ExpectRefused(good.substr(0, header), "checksum mismatch");
  ExpectRefused(good.substr(0, header - 1), "ends after its checksum line (truncated)");
  ExpectRefused(good.substr(0, header - 10), "malformed checksum line");
  ExpectRefused(good.substr(0, 10), "no checksum line");
  ExpectRefused("", "file is empty");
}

TEST_F(StoreTest, MalformedChecksumLinesAreRefused) {
  v1::Config two;
  two.set_version(2);
  const std::string body = Wire(two);
  const std::string digest = Sha256Hex(body);
  std::string upper = digest;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  ExpectRefused(absl::StrCat(kHeaderPrefix, upper, "\n", body), "malformed checksum line");
  ExpectRefused(absl::StrCat(kHeaderPrefix, digest, "\r\n", body), "malformed checksum line");
  ExpectRefused(absl::StrCat(kHeaderPrefix, digest, " \n", body), "malformed checksum line");
  ExpectRefused(absl::StrCat("# lb-controlplane state v3 sha256=", digest, "\n", body),
                "unknown state format");
  ExpectRefused(absl::StrCat("# lb-controlplane state v2 sha1=", digest, "\n", body),
                "unknown state format");
  // A text (v1) file under the wire-format name, and the other way round.
  ExpectRefused(SealedText(body), "unknown state format");
  ExpectRefusedAt(text_file_, Sealed(body), "unknown state format");
  ASSERT_EQ(unlink(text_file_.c_str()), 0);
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
  ASSERT_EQ(rename(file_.c_str(), (dir_ + "/state.binpb.refused").c_str()), 0);
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
            (std::vector<std::string>{".lock", "state.binpb", "state.binpb.refused"}));
}

// Behind a valid checksum (a bug, or a file sealed by hand), a body that
// does not parse or has no version is still refused.
TEST_F(StoreTest, SealedButUnusableFileIsRefused) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(4, 3)).ok());
  }
  const std::string file = ReadFile(file_);
  const std::string body = file.substr(file.find('\n') + 1);
  ExpectRefused(Sealed(body.substr(0, body.size() / 2)), "does not parse as lb.v1.Config");
  ExpectRefused(Sealed("\xff\xff\xff"), "does not parse");
  v1::Config unversioned = Sample(4, 3);
  unversioned.clear_version();
  ExpectRefused(Sealed(Wire(unversioned)), "no version field");
}

TEST_F(StoreTest, TempLeftoversAreIgnoredAndRemoved) {
  {
    auto store = NewFileStore(dir_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(Sample(7, 2)).ok());
  }
  WriteFile(dir_ + "/state.binpb.tmp.999999.1", "pools { name: \"half-writ");
  WriteFile(dir_ + "/state.binpb.tmp.999999.2", Sealed(Wire(Sample(8, 5))));
  WriteFile(dir_ + "/unrelated", "kept");
  auto store = NewFileStore(dir_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto loaded = (*store)->Load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  // Only the renamed file is the state: an unrenamed temp file was never
  // acknowledged, even when it is complete.
  EXPECT_EQ((*loaded)->version(), 7u);
  EXPECT_EQ(ListDir(dir_), (std::vector<std::string>{".lock", "state.binpb", "unrelated"}));
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

// The bytes the etcd store keeps under <prefix>/state are the file's:
// EncodeStoredState / DecodeStoredState round-trip, and a value edited by
// any other etcd client is refused naming where it came from.
TEST(StoredStateCodec, RoundTripAndTamperRefused) {
  v1::Config c;
  c.set_version(42);
  c.add_pools()->set_name("web");
  auto bytes = EncodeStoredState(c);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->rfind("# lb-controlplane state v2 sha256=", 0), 0u);
  auto back = DecodeStoredState(*bytes, "etcd://h:1/p/state");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*back, c));
  std::string edited = *bytes;
  edited.back() ^= 1;
  auto refused = DecodeStoredState(edited, "etcd://h:1/p/state");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("etcd://h:1/p/state"), absl::string_view::npos);
  EXPECT_FALSE(DecodeStoredState("", "x").ok());
  EXPECT_FALSE(DecodeStoredState("version: 1\n", "x").ok());
}

}  // namespace
}  // namespace lb
