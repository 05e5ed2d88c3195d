// lib/l7/client_hello.h: the ClientHello/SNI parser of SNI passthrough.
// Hand-built ClientHellos (fragmented records, SNI absent, several names,
// bad lengths, GREASE) and real ones written by OpenSSL's client (TLS 1.3
// with key shares, TLS 1.2), fed whole and at every split point.
#include "lib/l7/client_hello.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace lb::l7 {
namespace {

using Bytes = std::vector<uint8_t>;

void Put16(Bytes* b, size_t v) {
  b->push_back(static_cast<uint8_t>(v >> 8));
  b->push_back(static_cast<uint8_t>(v));
}
void Append(Bytes* b, const Bytes& x) { b->insert(b->end(), x.begin(), x.end()); }

Bytes Ext(uint16_t type, const Bytes& body) {
  Bytes e;
  Put16(&e, type);
  Put16(&e, body.size());
  Append(&e, body);
  return e;
}

// server_name extension body with (name_type, name) entries.
Bytes SniBody(const std::vector<std::pair<uint8_t, std::string>>& names) {
  Bytes list;
  for (const auto& [type, name] : names) {
    list.push_back(type);
    Put16(&list, name.size());
    list.insert(list.end(), name.begin(), name.end());
  }
  Bytes b;
  Put16(&b, list.size());
  Append(&b, list);
  return b;
}

Bytes Sni(const std::string& name) { return Ext(0, SniBody({{0, name}})); }

// A ClientHello handshake message (type, 3-byte length, body).
Bytes Hello(const std::vector<Bytes>& exts, bool with_ext_block = true) {
  Bytes body;
  Put16(&body, 0x0303);
  body.insert(body.end(), 32, 0x11);  // random
  body.push_back(32);                 // session_id
  body.insert(body.end(), 32, 0x22);
  Put16(&body, 4);  // two suites
  Put16(&body, 0x1301);
  Put16(&body, 0xc02b);
  body.push_back(1);  // compression: null
  body.push_back(0);
  if (with_ext_block) {
    Bytes all;
    for (const Bytes& e : exts) Append(&all, e);
    Put16(&body, all.size());
    Append(&body, all);
  }
  // Reserved first: GCC 12 -O3 misreads an insert() after a 4-byte
  // initializer list as out of bounds (-Warray-bounds, --buildtype=release).
  Bytes m;
  m.reserve(4 + body.size());
  m.push_back(1);
  m.push_back(static_cast<uint8_t>(body.size() >> 16));
  Put16(&m, body.size());
  Append(&m, body);
  return m;
}

// The message cut into records of at most `chunk` payload bytes.
Bytes Records(const Bytes& msg, size_t chunk = 16384) {
  Bytes out;
  for (size_t o = 0; o < msg.size(); o += chunk) {
    const size_t len = std::min(chunk, msg.size() - o);
    out.push_back(22);
    Put16(&out, 0x0301);
    Put16(&out, len);
    out.insert(out.end(), msg.begin() + o, msg.begin() + o + len);
  }
  return out;
}

HelloResult Parse(const Bytes& b, size_t max = kDefaultMaxClientHelloBytes) {
  return ParseClientHello(b.data(), b.size(), max);
}

// Every strict prefix needs more bytes (or is already refused, for inputs
// that are refused whole), and the whole gives `want`.
void ExpectPrefixes(const Bytes& b, HelloStatus whole) {
  for (size_t i = 0; i < b.size(); ++i) {
    const HelloResult r = ParseClientHello(b.data(), i);
    if (whole == HelloStatus::kOk) {
      ASSERT_EQ(r.status, HelloStatus::kNeedMore) << "prefix " << i << ": " << r.why;
    } else {
      ASSERT_TRUE(r.status == HelloStatus::kNeedMore || r.status == whole) << "prefix " << i;
    }
  }
  EXPECT_EQ(Parse(b).status, whole);
}

TEST(ClientHello, OneRecordWithSni) {
  const Bytes b = Records(Hello({Ext(0x000a, {0, 2, 0, 0x1d}), Sni("Api.Example.COM")}));
  const HelloResult r = Parse(b);
  ASSERT_EQ(r.status, HelloStatus::kOk) << r.why;
  EXPECT_EQ(r.sni, "api.example.com");
  EXPECT_EQ(r.hello_end, b.size());
  ExpectPrefixes(b, HelloStatus::kOk);
}

TEST(ClientHello, FragmentedOverManyRecords) {
  const Bytes msg = Hello({Sni("a.example.com")});
  for (size_t chunk : {1, 2, 3, 4, 5, 7, 64}) {
    const Bytes b = Records(msg, chunk);
    const HelloResult r = Parse(b);
    ASSERT_EQ(r.status, HelloStatus::kOk) << "chunk " << chunk << ": " << r.why;
    EXPECT_EQ(r.sni, "a.example.com");
    if (chunk <= 3) ExpectPrefixes(b, HelloStatus::kOk);
  }
}

TEST(ClientHello, SniAbsent) {
  HelloResult r = Parse(Records(Hello({Ext(0x000a, {0, 2, 0, 0x1d})})));
  ASSERT_EQ(r.status, HelloStatus::kOk);
  EXPECT_EQ(r.sni, "");
  r = Parse(Records(Hello({}, /*with_ext_block=*/false)));  // TLS 1.2 without extensions
  ASSERT_EQ(r.status, HelloStatus::kOk);
  EXPECT_EQ(r.sni, "");
  r = Parse(Records(Hello({})));  // empty extension block
  ASSERT_EQ(r.status, HelloStatus::kOk);
  EXPECT_EQ(r.sni, "");
}

TEST(ClientHello, MultipleNames) {
  // Two host names: RFC 6066 forbids it; refused rather than guessing.
  EXPECT_EQ(Parse(Records(Hello({Ext(0, SniBody({{0, "a.com"}, {0, "b.com"}}))}))).status,
            HelloStatus::kMalformed);
  // Another name type beside the host name: skipped.
  HelloResult r = Parse(Records(Hello({Ext(0, SniBody({{7, "opaque"}, {0, "b.com"}}))})));
  ASSERT_EQ(r.status, HelloStatus::kOk) << r.why;
  EXPECT_EQ(r.sni, "b.com");
  // Only an unknown name type: no host name.
  r = Parse(Records(Hello({Ext(0, SniBody({{7, "opaque"}}))})));
  ASSERT_EQ(r.status, HelloStatus::kOk);
  EXPECT_EQ(r.sni, "");
  // Two server_name extensions.
  EXPECT_EQ(Parse(Records(Hello({Sni("a.com"), Sni("b.com")}))).status, HelloStatus::kMalformed);
  // An empty list.
  EXPECT_EQ(Parse(Records(Hello({Ext(0, {0, 0})}))).status, HelloStatus::kMalformed);
}

TEST(ClientHello, Grease) {
  // RFC 8701: reserved values in cipher suites, extensions (two different
  // ones, one empty, one with a byte) are skipped.
  const Bytes b = Records(Hello({Ext(0x0a0a, {}), Sni("g.example"), Ext(0xfafa, {0})}));
  const HelloResult r = Parse(b);
  ASSERT_EQ(r.status, HelloStatus::kOk) << r.why;
  EXPECT_EQ(r.sni, "g.example");
}

TEST(ClientHello, BadHostNames) {
  for (const char* bad : {"", "a..b", ".a", "a.", "-a.com", "a-.com", "a_b.com", "[::1]",
                          "1.2.3.4:443", "a b", "caf\xc3\xa9.com"}) {
    EXPECT_EQ(Parse(Records(Hello({Sni(bad)}))).status, HelloStatus::kMalformed) << bad;
  }
  EXPECT_EQ(Parse(Records(Hello({Sni(std::string(64, 'a') + ".com")}))).status,
            HelloStatus::kMalformed);
  std::string long_name;
  for (int i = 0; i < 4; ++i) long_name += std::string(63, 'a') + ".";
  long_name += "abc";  // 259 bytes
  EXPECT_EQ(Parse(Records(Hello({Sni(long_name)}))).status, HelloStatus::kMalformed);
  EXPECT_EQ(Parse(Records(Hello({Sni(std::string(63, 'a') + ".b")}))).status, HelloStatus::kOk);
  EXPECT_EQ(Parse(Records(Hello({Sni("1.2.3.4")}))).sni, "1.2.3.4");  // LDH-valid
}

TEST(ClientHello, BadLengths) {
  const Bytes good = Records(Hello({Sni("x.example")}));
  ASSERT_EQ(Parse(good).status, HelloStatus::kOk);
  // Handshake length one more / one less than the body.
  for (int delta : {-1, +1}) {
    Bytes msg = Hello({Sni("x.example")});
    msg[3] = static_cast<uint8_t>(msg[3] + delta);
    Bytes b = Records(msg);
    if (delta > 0) {
      // One byte short: waits for it; then the extra byte is refused.
      EXPECT_EQ(Parse(b).status, HelloStatus::kNeedMore);
      b = Records(Hello({Sni("x.example")}));
      b[8] = static_cast<uint8_t>(b[8] + 1);  // handshake length +1 inside one record
      b[4] = static_cast<uint8_t>(b[4] + 1);  // record length +1 with a trailing byte
      b.push_back(0);
      EXPECT_EQ(Parse(b).status, HelloStatus::kMalformed);
    } else {
      EXPECT_EQ(Parse(b).status, HelloStatus::kMalformed);  // bytes after the ClientHello
    }
  }
  // Extension block length off by one.
  {
    Bytes msg = Hello({Sni("x.example")});
    const size_t ext_len_at = 4 + 2 + 32 + 1 + 32 + 2 + 4 + 2;
    msg[ext_len_at + 1] = static_cast<uint8_t>(msg[ext_len_at + 1] + 1);
    EXPECT_EQ(Parse(Records(msg)).status, HelloStatus::kMalformed);
  }
  // server_name list length larger than the extension.
  EXPECT_EQ(Parse(Records(Hello({Ext(0, {0, 9, 0, 0, 1, 'a'})}))).status, HelloStatus::kMalformed);
  // Name length beyond the list.
  EXPECT_EQ(Parse(Records(Hello({Ext(0, {0, 4, 0, 0, 9, 'a'})}))).status, HelloStatus::kMalformed);
  // Session id of 33 bytes; odd cipher suites length; no compression method.
  {
    Bytes msg = Hello({});
    msg[4 + 2 + 32] = 33;
    EXPECT_EQ(Parse(Records(msg)).status, HelloStatus::kMalformed);
  }
  // Record length 0 and above 2^14.
  EXPECT_EQ(Parse({22, 3, 1, 0, 0}).status, HelloStatus::kMalformed);
  EXPECT_EQ(Parse({22, 3, 1, 0x40, 0x01}).status, HelloStatus::kMalformed);
}

TEST(ClientHello, NotTls) {
  const std::vector<std::string> inputs = {"GET / HTTP/1.1\r\n", "\x16\x02", "\x17\x03\x03\x00\x05",
                                           std::string("\x80\x2e\x01\x00\x02", 5)};
  for (const std::string& s : inputs) {
    const Bytes b(s.begin(), s.end());
    EXPECT_EQ(Parse(b).status, HelloStatus::kMalformed) << s;
  }
  // A ServerHello (type 2) where a ClientHello belongs.
  Bytes msg = Hello({});
  msg[0] = 2;
  EXPECT_EQ(Parse(Records(msg)).status, HelloStatus::kMalformed);
  // A ChangeCipherSpec record between two fragments.
  Bytes b = Records(Hello({Sni("a.b")}), 10);
  const Bytes ccs = {20, 3, 3, 0, 1, 1};
  b.insert(b.begin() + 15, ccs.begin(), ccs.end());
  EXPECT_EQ(Parse(b).status, HelloStatus::kMalformed);
  EXPECT_EQ(Parse({}).status, HelloStatus::kNeedMore);
}

TEST(ClientHello, Oversized) {
  const Bytes big = Records(Hello({Ext(0x1234, Bytes(3000, 0)), Sni("big.example")}));
  EXPECT_EQ(Parse(big).status, HelloStatus::kOk);
  EXPECT_EQ(Parse(big, 2048).status, HelloStatus::kTooLarge);
  // Known from the handshake header alone, before the body arrives.
  const Bytes split = Records(Hello({Ext(0x1234, Bytes(3000, 0))}), 4);
  EXPECT_EQ(Parse(Bytes(split.begin(), split.begin() + 9), 2048).status, HelloStatus::kTooLarge);
  // Tiny records: the record bytes count, not only the message.
  const Bytes tiny = Records(Hello({Sni("t.example")}), 1);
  EXPECT_EQ(Parse(tiny, 256).status, HelloStatus::kTooLarge);
}

// A ClientHello written by OpenSSL's own client into a memory BIO.
Bytes OpenSslHello(const char* sni, int max_version) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  if (sni != nullptr) SSL_set_tlsext_host_name(ssl, sni);
  SSL_connect(ssl);  // WANT_READ after writing the ClientHello
  char* p = nullptr;
  const long n = BIO_get_mem_data(wbio, &p);
  Bytes out(p, p + n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

TEST(ClientHello, FromOpenSsl) {
  for (int v : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    const Bytes b = OpenSslHello("Backend-A.example.test", v);
    ASSERT_GT(b.size(), 100u);
    const HelloResult r = Parse(b);
    ASSERT_EQ(r.status, HelloStatus::kOk) << r.why;
    EXPECT_EQ(r.sni, "backend-a.example.test");
    EXPECT_EQ(r.hello_end, b.size());
    ExpectPrefixes(b, HelloStatus::kOk);
    const HelloResult none = Parse(OpenSslHello(nullptr, v));
    ASSERT_EQ(none.status, HelloStatus::kOk);
    EXPECT_EQ(none.sni, "");
  }
}

}  // namespace
}  // namespace lb::l7
