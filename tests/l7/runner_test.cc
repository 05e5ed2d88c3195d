// dataplane/l7/runner.h and last_good.h: a configuration applied live keeps
// its listening socket (the same socket, inherited), a refused one (invalid,
// a TLS file missing, an address that cannot be bound) changes nothing, and
// the last good file round-trips, is 0600 and refuses a torn or edited copy.
#include "dataplane/l7/runner.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "dataplane/l7/last_good.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/text_parse.h"

namespace lb::l7 {
namespace {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool Connects(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

v1::L7Config Config(int port, const std::string& extra = "") {
  // Plain strings: clang-format 14 re-indents a raw "pb" string that is
  // split around `port` differently on every run.
  const std::string text =
      absl::StrCat("listeners { name: \"main\" address: \"127.0.0.1\" port: ", port,
                   " default_pool: \"web\" }\n",
                   "pools { name: \"web\" backends { address: \"127.0.0.1\" port: 9 } }\n", extra);
  v1::L7Config c;
  EXPECT_TRUE(ParseTextProto(text, "test", &c).ok());
  return c;
}

TEST(RunnerTest, AppliesLiveKeepsTheSocketAndRefusesWithoutChange) {
  const int port = FreePort();
  ConfigStatus status;
  RunnerOptions o;
  o.workers = 2;
  o.retire_timeout_ms = 2000;
  o.status = &status;
  Runner runner(o);
  ASSERT_TRUE(runner.Apply(Config(port), 1).ok());
  EXPECT_TRUE(Connects(port));
  // A client that connected before the change and sends after it is
  // answered (by an old worker within its idle grace, or by a new one that
  // accepted it from the shared socket): no connection is lost.
  const int waiting = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(waiting, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_TRUE(runner
                  .Apply(Config(port, R"pb(pools {
                                             name: "other"
                                             backends { address: "127.0.0.1" port: 10 }
                                           })pb"),
                         2)
                  .ok());
  EXPECT_EQ(runner.generation(), 2u);
  EXPECT_TRUE(Connects(port));
  const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(waiting, req, sizeof(req) - 1), static_cast<ssize_t>(sizeof(req) - 1));
  char buf[256] = {};
  timeval tv{5, 0};
  setsockopt(waiting, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  EXPECT_GT(read(waiting, buf, sizeof(buf) - 1), 0) << "the queued connection was lost";
  EXPECT_NE(std::string(buf).find("HTTP/1.1 5"), std::string::npos) << buf;  // backend :9 is closed
  close(waiting);

  // Invalid: refused naming the field; generation 2 serves on.
  absl::Status st = runner.Apply(Config(0), 3);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("listeners[0].port"), std::string::npos) << st;
  // A TLS file the node does not have.
  v1::L7Config tls = Config(port);
  auto* cert = tls.mutable_listeners(0)->mutable_tls()->add_certificates();
  cert->set_cert_file("/nonexistent/x.crt");
  cert->set_key_file("/nonexistent/x.key");
  st = runner.Apply(tls, 3);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cert_file"), std::string::npos) << st;
  // A new address that is taken (no SO_REUSEPORT on the squatter).
  const int squat = socket(AF_INET, SOCK_STREAM, 0);
  const int port2 = FreePort();
  a.sin_port = htons(static_cast<uint16_t>(port2));
  ASSERT_EQ(bind(squat, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(squat, 1), 0);
  v1::L7Config two = Config(port);
  auto* l2 = two.add_listeners();
  l2->set_name("second");
  l2->set_address("127.0.0.1");
  l2->set_port(port2);
  l2->set_default_pool("web");
  st = runner.Apply(two, 3);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  close(squat);
  EXPECT_EQ(runner.generation(), 2u);
  EXPECT_EQ(status.generation.load(), 2u);
  EXPECT_EQ(status.applies.load(), 2u);
  EXPECT_EQ(status.refusals.load(), 3u);
  EXPECT_TRUE(Connects(port));
  runner.Stop();
  EXPECT_FALSE(Connects(port));
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(LastGoodTest, RoundTripMode0600AndTamperRefused) {
  const std::string path = absl::StrCat(testing::TempDir(), "/l7cp-last-good-", getpid());
  const v1::L7Config c = Config(8080);
  ASSERT_TRUE(WriteLastGood(path, c, 7).ok());
  struct stat sb;
  ASSERT_EQ(stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
  auto back = ReadLastGood(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->generation, 7u);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back->config, c));
  // Usable as --config: the header is a comment.
  v1::L7Config as_file;
  EXPECT_TRUE(ParseTextProto(Slurp(path), path, &as_file).ok());
  // Edited: one byte of the body changed.
  std::string text = Slurp(path);
  text[text.size() - 3] ^= 1;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  EXPECT_EQ(ReadLastGood(path).status().code(), absl::StatusCode::kDataLoss);
  // Torn: cut in half.
  ASSERT_TRUE(WriteLastGood(path, c, 8).ok());
  text = Slurp(path);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text.substr(0, text.size() / 2);
  EXPECT_EQ(ReadLastGood(path).status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "pools {}\n";
  EXPECT_EQ(ReadLastGood(path).status().code(), absl::StatusCode::kDataLoss);
  std::remove(path.c_str());
  EXPECT_EQ(ReadLastGood(path).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lb::l7
