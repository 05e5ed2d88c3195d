// ParseStrictJson (controlplane/strict_json.h) and the API checks of
// controlplane/config_api_validation.h, without a server.
#include "controlplane/strict_json.h"

#include <string>

#include "controlplane/config_api_validation.h"
#include "gtest/gtest.h"
#include "lb/v1/admin.pb.h"

namespace lb {
namespace {

std::string Refusal(const std::string& body) {
  v1::RestBackendRequest m;
  absl::Status s = ParseStrictJson(body, &m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << body.substr(0, 80);
  return std::string(s.message());
}

TEST(StrictJson, Accepts) {
  v1::RestBackendRequest m;
  ASSERT_TRUE(ParseStrictJson(R"({"address":"10.0.0.1","port":80,"weight":2})", &m).ok());
  EXPECT_EQ(m.address(), "10.0.0.1");
  EXPECT_EQ(m.port(), 80);
  EXPECT_EQ(m.weight(), 2);
}

TEST(StrictJson, RefusesWhatProtobufTakes) {
  EXPECT_EQ(Refusal(R"({"port":80,"port":81})"), "port: given more than once");
  EXPECT_EQ(Refusal(R"({"bogus":1})"), "bogus: unknown field");
  EXPECT_EQ(Refusal(R"({"port":"80x"})").substr(0, 5), "port:");
  EXPECT_EQ(Refusal(R"({"port":true})"), "port: expected a number, got a boolean");
  EXPECT_EQ(Refusal("{'port':80}").substr(0, 5), "body:");
  EXPECT_EQ(Refusal(R"({"port":80,})").substr(0, 5), "body:");
  EXPECT_EQ(Refusal(""), "body: expected a JSON object, got an empty body");
}

// A lost attempt found the unknown key echoed whole: a megabyte key came back
// in the error (and the log line). It is cut to kMaxQuotedBytes now.
TEST(StrictJson, UnknownKeyEchoIsBounded) {
  const std::string key(1 << 20, 'k');
  const std::string message = Refusal("{\"" + key + "\":1}");
  EXPECT_LT(message.size(), 200u);
  EXPECT_NE(message.find("unknown field"), std::string::npos);
  EXPECT_NE(message.find("..."), std::string::npos);
  const std::string dup = Refusal("{\"port\":1,\"port\":2,\"" + key + "\":1}");
  EXPECT_EQ(dup, "port: given more than once");
}

// Found by fuzz/rest_json_fuzz.cc: an unknown key that is not shaped like
// a field path ("addre{ss") came back with an empty RestError.field.
TEST(StrictJson, OddUnknownKeyIsNamed) {
  const std::string message = Refusal(R"({"addre{ss":"10.1.0.5"})");
  EXPECT_EQ(message, "addre{ss: unknown field");
  EXPECT_EQ(FieldOfError(message), "addre{ss");
  // Found next: a key with spaces named only its first word.
  const std::string spaced = Refusal(R"({"a: b c":1})");
  EXPECT_EQ(FieldOfError(spaced), "a:\\x20b\\x20c");
  // And then: the empty key named nothing.
  EXPECT_EQ(Refusal(R"({"":2})"), "\"\": unknown field");
}

TEST(StrictJson, FieldOfError) {
  EXPECT_EQ(FieldOfError("backends[0].port: out of range"), "backends[0].port");
  EXPECT_EQ(FieldOfError("no field here"), "");
  EXPECT_EQ(FieldOfError("has space: x"), "");
}

TEST(ApiValidation, Backend) {
  v1::RestBackendRequest b;
  EXPECT_EQ(CheckApiBackend(b).message(), "address: required (an IPv4 or IPv6 literal)");
  b.set_address("127.0.0.1");
  EXPECT_EQ(FieldOfError(CheckApiBackend(b).message()), "address");
  b.set_address("10.0.0.1");
  EXPECT_EQ(CheckApiBackend(b).message(), "port: 0 is out of range (1..65535)");
  b.set_port(80);
  EXPECT_TRUE(CheckApiBackend(b).ok());
  b.set_weight(70000);
  EXPECT_EQ(CheckApiBackend(b).message(), "weight: 70000 is out of range (0..65535)");
  b.set_weight(0);
  b.set_health_check_path("no-slash");
  EXPECT_EQ(FieldOfError(CheckApiBackend(b).message()), "health_check_path");
}

TEST(ApiValidation, StickyTtlAndPoolName) {
  EXPECT_TRUE(CheckApiStickyTtl("ttl", 1).ok());
  EXPECT_FALSE(CheckApiStickyTtl("ttl", 0).ok());
  EXPECT_FALSE(CheckApiStickyTtl("ttl", int64_t{1} << 32).ok());
  EXPECT_TRUE(CheckApiPoolName("name", "web-1.a:b").ok());
  EXPECT_FALSE(CheckApiPoolName("name", "").ok());
  EXPECT_FALSE(CheckApiPoolName("name", std::string(65, 'a')).ok());
  EXPECT_EQ(FieldOfError(CheckApiPoolName("pool", "a b").message()), "pool");
}

TEST(ApiValidation, GrpcRequests) {
  v1::ExplainRequest e;
  EXPECT_EQ(CheckApiRequest(e).message(), "src: required (the client's address)");
  e.set_src("10.0.0.1");
  e.set_dst("10.0.0.2");
  e.set_protocol(v1::PROTOCOL_TCP);
  e.set_dst_port(65536);
  EXPECT_EQ(CheckApiRequest(e).message(), "dst_port: 65536 is out of range 0..65535");
  e.set_dst_port(80);
  EXPECT_TRUE(CheckApiRequest(e).ok());

  v1::UpdateBackendRequest u;
  EXPECT_EQ(FieldOfError(CheckApiRequest(u).message()), "id");
  u.set_id(3);
  EXPECT_EQ(FieldOfError(CheckApiRequest(u).message()), "weight");
  u.set_state(static_cast<v1::BackendState>(99));
  EXPECT_EQ(CheckApiRequest(u).message(), "state: unknown value 99");

  v1::SetPoolAlgorithmRequest a;
  a.set_algorithm(static_cast<v1::Algorithm>(99));
  EXPECT_EQ(CheckApiRequest(a).message(), "algorithm: unknown value 99");
  EXPECT_FALSE(CheckApiBackendId(0).ok());
  EXPECT_TRUE(CheckApiBackendId(1).ok());
}

}  // namespace
}  // namespace lb
