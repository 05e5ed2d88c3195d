#include "lib/l7/client_hello.h"

#include <bitset>
#include <string>

namespace lb::l7 {
namespace {

constexpr uint8_t kRecordHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = 16384;  // RFC 8446 §5.1: 2^14
constexpr size_t kHandshakeHeader = 4;
constexpr uint16_t kExtServerName = 0;
constexpr uint8_t kNameTypeHost = 0;

HelloResult Refuse(HelloStatus s, const char* why) {
  HelloResult r;
  r.status = s;
  r.why = why;
  return r;
}

// A bounds-checked reader over the reassembled ClientHello body.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool U8(uint8_t* v) {
    if (n_ < 1) return false;
    *v = p_[0];
    Skip(1);
    return true;
  }
  bool U16(uint16_t* v) {
    if (n_ < 2) return false;
    *v = static_cast<uint16_t>(p_[0] << 8 | p_[1]);
    Skip(2);
    return true;
  }
  // A length-prefixed vector (1 or 2 byte length) as a sub-reader.
  bool Vec8(Reader* out) {
    uint8_t len;
    return U8(&len) && Take(len, out);
  }
  bool Vec16(Reader* out) {
    uint16_t len;
    return U16(&len) && Take(len, out);
  }
  bool Take(size_t len, Reader* out) {
    if (n_ < len) return false;
    *out = Reader(p_, len);
    Skip(len);
    return true;
  }
  bool Skip(size_t len) {
    if (n_ < len) return false;
    p_ += len;
    n_ -= len;
    return true;
  }
  size_t size() const { return n_; }
  const uint8_t* data() const { return p_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

// RFC 6066 §3: the DNS host name, ASCII, no trailing dot; LDH labels (RFC
// 1123), which also excludes IP literals' brackets and colons. Lowercased.
bool HostName(const uint8_t* p, size_t n, std::string* out) {
  if (n == 0 || n > 255) return false;
  size_t label = 0;
  out->clear();
  out->reserve(n);
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = p[i];
    if (c == '.') {
      if (label == 0 || p[i - 1] == '-') return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c == '-' && label > 0)) {
      if (++label > 63) return false;
      if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c - 'A' + 'a');
    } else {
      return false;
    }
    out->push_back(static_cast<char>(c));
  }
  return label > 0 && p[n - 1] != '-';  // no trailing dot or hyphen
}

// RFC 6066 §3: ServerNameList, at most one name per name_type.
bool ParseServerName(Reader ext, std::string* sni, const char** why) {
  Reader list(nullptr, 0);
  if (!ext.Vec16(&list) || ext.size() != 0) {
    *why = "server_name list length";
    return false;
  }
  if (list.size() == 0) {
    *why = "empty server_name list";
    return false;
  }
  bool have_host = false;
  while (list.size() > 0) {
    uint8_t type;
    Reader name(nullptr, 0);
    if (!list.U8(&type) || !list.Vec16(&name)) {
      *why = "server_name entry length";
      return false;
    }
    if (type != kNameTypeHost) continue;  // unknown name types: skipped
    if (have_host) {
      *why = "two host names";
      return false;
    }
    have_host = true;
    if (!HostName(name.data(), name.size(), sni)) {
      *why = "bad host name";
      return false;
    }
  }
  return true;
}

// RFC 8446 §4.1.2 (and TLS 1.2's, the same wire shape).
HelloResult ParseBody(Reader body, size_t hello_end) {
  uint16_t legacy_version;
  Reader skip(nullptr, 0);
  if (!body.U16(&legacy_version) || (legacy_version >> 8) != 3) {
    return Refuse(HelloStatus::kMalformed, "client_version");
  }
  if (!body.Skip(32)) return Refuse(HelloStatus::kMalformed, "random");
  if (!body.Vec8(&skip) || skip.size() > 32) return Refuse(HelloStatus::kMalformed, "session_id");
  if (!body.Vec16(&skip) || skip.size() < 2 || skip.size() % 2 != 0) {
    return Refuse(HelloStatus::kMalformed, "cipher_suites");
  }
  if (!body.Vec8(&skip) || skip.size() < 1) {
    return Refuse(HelloStatus::kMalformed, "compression_methods");
  }
  HelloResult r;
  r.status = HelloStatus::kOk;
  r.hello_end = hello_end;
  if (body.size() == 0) return r;  // no extensions (TLS 1.2 allows it): no SNI
  Reader exts(nullptr, 0);
  if (!body.Vec16(&exts) || body.size() != 0) {
    return Refuse(HelloStatus::kMalformed, "extensions length");
  }
  std::bitset<65536> seen;  // RFC 8446 §4.2: one extension of each type
  while (exts.size() > 0) {
    uint16_t type;
    Reader ext(nullptr, 0);
    if (!exts.U16(&type) || !exts.Vec16(&ext)) {
      return Refuse(HelloStatus::kMalformed, "extension length");
    }
    if (seen.test(type)) return Refuse(HelloStatus::kMalformed, "duplicate extension");
    seen.set(type);
    if (type == kExtServerName) {
      const char* why = "";
      if (!ParseServerName(ext, &r.sni, &why)) return Refuse(HelloStatus::kMalformed, why);
    }
  }
  return r;
}

}  // namespace

HelloResult ParseClientHello(const uint8_t* data, size_t n, size_t max_bytes) {
  // First pass over the record headers, without copying: how much handshake
  // payload has arrived, and the message's length once its 4-byte header
  // is in. Only a complete message is copied and parsed.
  uint8_t hs_header[kHandshakeHeader];
  size_t hs_have = 0;   // handshake payload bytes in complete records so far
  size_t hs_total = 0;  // header + body length once known
  size_t off = 0;
  while (true) {
    if (hs_total != 0 && hs_have >= hs_total) break;
    if (off > max_bytes) return Refuse(HelloStatus::kTooLarge, "records above the limit");
    if (n - off < kRecordHeader) {
      // A record header not complete yet; the first byte already tells
      // whether this can be TLS at all (an HTTP request fails here).
      if (n > off && data[off] != kRecordHandshake) {
        return Refuse(HelloStatus::kMalformed, "not a handshake record");
      }
      if (n - off >= 2 && data[off + 1] != 3)
        return Refuse(HelloStatus::kMalformed, "record version");
      return HelloResult{};
    }
    const uint8_t* h = data + off;
    const size_t len = static_cast<size_t>(h[3] << 8 | h[4]);
    if (h[0] != kRecordHandshake) return Refuse(HelloStatus::kMalformed, "not a handshake record");
    if (h[1] != 3) return Refuse(HelloStatus::kMalformed, "record version");
    if (len == 0 || len > kMaxRecordPayload)
      return Refuse(HelloStatus::kMalformed, "record length");
    if (off + kRecordHeader + len > max_bytes) {
      return Refuse(HelloStatus::kTooLarge, "records above the limit");
    }
    if (n - off - kRecordHeader < len) return HelloResult{};  // record incomplete
    const uint8_t* payload = h + kRecordHeader;
    for (size_t i = 0; hs_have + i < kHandshakeHeader && i < len; ++i) {
      hs_header[hs_have + i] = payload[i];
    }
    hs_have += len;
    off += kRecordHeader + len;
    if (hs_total == 0 && hs_have >= kHandshakeHeader) {
      if (hs_header[0] != kHandshakeClientHello) {
        return Refuse(HelloStatus::kMalformed, "not a ClientHello");
      }
      const size_t body = size_t{hs_header[1]} << 16 | size_t{hs_header[2]} << 8 | hs_header[3];
      hs_total = kHandshakeHeader + body;
      if (hs_total > max_bytes)
        return Refuse(HelloStatus::kTooLarge, "ClientHello above the limit");
    }
  }
  if (hs_have != hs_total) return Refuse(HelloStatus::kMalformed, "bytes after the ClientHello");
  // Second pass: reassemble the message from the records' payloads.
  std::string msg;
  msg.reserve(hs_total);
  for (size_t o = 0; o < off;) {
    const size_t len = static_cast<size_t>(data[o + 3] << 8 | data[o + 4]);
    msg.append(reinterpret_cast<const char*>(data + o + kRecordHeader), len);
    o += kRecordHeader + len;
  }
  const auto* m = reinterpret_cast<const uint8_t*>(msg.data());
  return ParseBody(Reader(m + kHandshakeHeader, hs_total - kHandshakeHeader), off);
}

}  // namespace lb::l7
