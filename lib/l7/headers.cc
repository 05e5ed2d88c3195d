#include "lib/l7/headers.h"

#include <algorithm>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace lb::l7 {
namespace {

// The field names the rules below act on. Classify() switches on the
// length first: most fields of a message match no length in the list and
// cost one switch; the others one case-insensitive compare or two.
enum class Name : uint8_t {
  kOther,
  // Hop-by-hop (RFC 9110 §7.6.1), removed both ways.
  kConnection,
  kKeepAlive,
  kProxyConnection,
  kTe,
  kTrailer,
  kTransferEncoding,
  kUpgrade,
  // Written by the proxy on the way up.
  kHost,
  kContentLength,
  kXForwardedProto,
  kXForwardedPort,
  kXRequestId,
  kXClientCertSubject,
  // Appended to on the way up.
  kXForwardedFor,
  kForwarded,
};

bool IsHopByHopName(Name n) { return n >= Name::kConnection && n <= Name::kUpgrade; }

// Two field names, any case: the length first (one compare rules out
// almost every field), then the letters.
bool NameIs(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && absl::EqualsIgnoreCase(a, b);
}

Name Classify(absl::string_view n) {
  switch (n.size()) {
    case 2:
      if (EqualsLowerAscii(n, "te")) return Name::kTe;
      break;
    case 4:
      if (EqualsLowerAscii(n, "host")) return Name::kHost;
      break;
    case 7:
      if (EqualsLowerAscii(n, "upgrade")) return Name::kUpgrade;
      if (EqualsLowerAscii(n, "trailer")) return Name::kTrailer;
      break;
    case 9:
      if (EqualsLowerAscii(n, "forwarded")) return Name::kForwarded;
      break;
    case 10:
      if (EqualsLowerAscii(n, "connection")) return Name::kConnection;
      if (EqualsLowerAscii(n, "keep-alive")) return Name::kKeepAlive;
      break;
    case 12:
      if (EqualsLowerAscii(n, "x-request-id")) return Name::kXRequestId;
      break;
    case 14:
      if (EqualsLowerAscii(n, "content-length")) return Name::kContentLength;
      break;
    case 15:
      if (EqualsLowerAscii(n, "x-forwarded-for")) return Name::kXForwardedFor;
      break;
    case 16:
      if (EqualsLowerAscii(n, "x-forwarded-port")) return Name::kXForwardedPort;
      if (EqualsLowerAscii(n, "proxy-connection")) return Name::kProxyConnection;
      break;
    case 17:
      if (EqualsLowerAscii(n, "transfer-encoding")) return Name::kTransferEncoding;
      if (EqualsLowerAscii(n, "x-forwarded-proto")) return Name::kXForwardedProto;
      break;
    case 21:
      if (EqualsLowerAscii(n, "x-client-cert-subject")) return Name::kXClientCertSubject;
      break;
    default:
      break;
  }
  return Name::kOther;
}

// memcpy without the call for the short pieces most of a head is made of
// (names, values, separators: a call per piece showed in the profiles):
// two overlapping loads and stores cover 1..16 bytes.
inline void CopyShort(char* d, const char* s, size_t n) {
  if (n > 16) {
    std::memcpy(d, s, n);
  } else if (n >= 8) {
    uint64_t a, b;
    std::memcpy(&a, s, 8);
    std::memcpy(&b, s + n - 8, 8);
    std::memcpy(d, &a, 8);
    std::memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, s, 4);
    std::memcpy(&b, s + n - 4, 4);
    std::memcpy(d, &a, 4);
    std::memcpy(d + n - 4, &b, 4);
  } else if (n > 0) {
    d[0] = s[0];
    d[n / 2] = s[n / 2];
    d[n - 1] = s[n - 1];
  }
}

// Appends into a string through a cursor: one resize up front (and when an
// estimate was short), then plain memcpy, one resize down at the end.
// std::string::append per piece (out of line in libstdc++) and
// absl::StrAppend (zero fill before the copy) showed in the profiles: a
// head is built from some 40 pieces per request.
class Writer {
 public:
  Writer(std::string* s, size_t estimate) : s_(s), pos_(s->size()) { s_->resize(pos_ + estimate); }
  ~Writer() { s_->resize(pos_); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  Writer& Put(absl::string_view v) {
    if (pos_ + v.size() > s_->size()) s_->resize(std::max(2 * s_->size(), pos_ + v.size()));
    CopyShort(&(*s_)[pos_], v.data(), v.size());
    pos_ += v.size();
    return *this;
  }
  Writer& Field(absl::string_view name, absl::string_view value) {
    return Put(name).Put(": ").Put(value).Put("\r\n");
  }
  Writer& Uint(uint64_t v) {
    char buf[24];
    char* p = buf + sizeof(buf);
    do {
      *--p = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    return Put(absl::string_view(p, static_cast<size_t>(buf + sizeof(buf) - p)));
  }

 private:
  std::string* const s_;
  size_t pos_;
};

// Room for a head built from `head` plus `extra` bytes the proxy adds.
size_t EstimateFor(const MessageHead& head, size_t extra) {
  size_t n =
      head.method.size() + head.origin_form.size() + head.host.size() + head.reason.size() + extra;
  for (const HeaderField& f : head.headers) n += f.name.size() + f.value.size() + 4;
  return n;
}

}  // namespace

// Every name Classify knows: Host, framing, hop-by-hop, forwarding, request id.
bool IsProtectedHeader(absl::string_view name) { return Classify(name) != Name::kOther; }

namespace {

bool Removed(const std::vector<std::string>* remove, absl::string_view name) {
  if (remove == nullptr) return false;
  for (const std::string& r : *remove) {
    if (NameIs(r, name)) return true;
  }
  return false;
}

}  // namespace

namespace {

// The tokens of every Connection field of a head, gathered once per head
// (a message rarely names more than a few; they point into `head`). Split
// by hand: one pass, no allocation.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const MessageHead& head) {
    for (const HeaderField& f : head.headers) {
      if (!EqualsLowerAscii(f.name, "connection")) continue;
      const absl::string_view v = f.value;
      size_t i = 0;
      while (i <= v.size()) {
        size_t j = i;
        while (j < v.size() && v[j] != ',') ++j;
        const absl::string_view tok = absl::StripAsciiWhitespace(v.substr(i, j - i));
        if (!tok.empty()) tokens_.push_back(tok);
        i = j + 1;
      }
    }
  }
  // `name` named by a Connection field (the fixed hop-by-hop list aside).
  bool Named(absl::string_view name) const {
    for (absl::string_view t : tokens_) {
      if (NameIs(name, t)) return true;
    }
    return false;
  }

 private:
  absl::InlinedVector<absl::string_view, 4> tokens_;
};

}  // namespace

bool IsHopByHop(const MessageHead& head, absl::string_view name) {
  return IsHopByHopName(Classify(name)) || ConnectionTokens(head).Named(name);
}

bool IsValidRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

absl::string_view BuildUpstreamRequest(const MessageHead& head, const ForwardInfo& info,
                                       std::string* out, const HeaderRules* rules) {
  Writer w(out, EstimateFor(head, 256 + 2 * info.client_ip.size() + info.fallback_host.size() +
                                      info.client_cert_subject.size()));
  w.Put(head.method).Put(" ").Put(head.origin_form).Put(" HTTP/1.1\r\n");
  w.Field("Host", head.host.empty() ? info.fallback_host : absl::string_view(head.host));
  std::string xff, fwd;
  absl::string_view request_id;
  const ConnectionTokens hop(head);
  for (const HeaderField& f : head.headers) {
    const Name id = Classify(f.name);
    if (IsHopByHopName(id) || hop.Named(f.name)) continue;
    switch (id) {
      case Name::kXRequestId:
        if (request_id.empty() && IsValidRequestId(f.value)) request_id = f.value;
        continue;
      case Name::kHost:
      case Name::kContentLength:
      case Name::kXForwardedProto:
      case Name::kXForwardedPort:
      case Name::kXClientCertSubject:
        continue;  // written below
      default:
        break;
    }
    if (rules != nullptr && Removed(&rules->request_remove, f.name)) continue;
    if (id == Name::kXForwardedFor) {
      if (!xff.empty()) xff.append(", ", 2);
      xff.append(f.value.data(), f.value.size());
      continue;
    }
    if (id == Name::kForwarded) {
      if (!fwd.empty()) fwd.append(", ", 2);
      fwd.append(f.value.data(), f.value.size());
      continue;
    }
    w.Field(f.name, f.value);
  }
  if (request_id.empty()) request_id = info.request_id;
  // X-Forwarded-For: what came in, then the client.
  w.Put("X-Forwarded-For: ");
  if (!xff.empty()) w.Put(xff).Put(", ");
  w.Put(info.client_ip).Put("\r\nX-Forwarded-Proto: ").Put(info.proto);
  w.Put("\r\nX-Forwarded-Port: ").Uint(info.listener_port);
  // Forwarded: what came in, then our element. RFC 7239 §6: an IPv6 node is
  // bracketed and the value quoted.
  w.Put("\r\nForwarded: ");
  if (!fwd.empty()) w.Put(fwd).Put(", ");
  w.Put("for=");
  if (info.client_ipv6) w.Put("\"[");
  w.Put(info.client_ip);
  if (info.client_ipv6) w.Put("]\"");
  w.Put(";proto=").Put(info.proto);
  if (!head.host.empty()) {
    bool token = true;
    for (unsigned char c : head.host) token = token && c != ':' && c != '[' && c != ']';
    w.Put(";host=");
    if (!token) w.Put("\"");
    w.Put(head.host);
    if (!token) w.Put("\"");
  }
  w.Put("\r\n").Field("X-Request-ID", request_id);
  if (!info.client_cert_subject.empty()) {
    w.Field("X-Client-Cert-Subject", info.client_cert_subject);
  }
  if (rules != nullptr) {
    for (const auto& [name, value] : rules->request_add) w.Field(name, value);
  }
  if (head.upgrade) {
    // The one hop-by-hop pair passed on: the handshake the client asked for.
    w.Field("Upgrade", *head.Find("upgrade")).Field("Connection", "upgrade");
  }
  if (head.chunked) {
    w.Field("Transfer-Encoding", "chunked");
  } else if (head.content_length >= 0) {
    w.Put("Content-Length: ").Uint(static_cast<uint64_t>(head.content_length)).Put("\r\n");
  }
  w.Put("\r\n");
  return request_id;
}

ClientFraming ChooseClientFraming(const MessageHead& resp, const MessageHead& req) {
  if (req.method == "HEAD" || resp.status < 200 || resp.status == 204 || resp.status == 304) {
    return ClientFraming::kNone;
  }
  if (!resp.chunked && resp.content_length >= 0) return ClientFraming::kLength;
  // Chunked or close-delimited upstream: chunked to an HTTP/1.1 client, close
  // delimited to an HTTP/1.0 one.
  return req.minor >= 1 ? ClientFraming::kChunked : ClientFraming::kClose;
}

void BuildClientResponse(const MessageHead& resp, const MessageHead& req, bool keep_alive,
                         ClientFraming framing, std::string* out, const HeaderRules* rules) {
  Writer w(out, EstimateFor(resp, 96));
  w.Put("HTTP/1.1 ").Uint(static_cast<uint64_t>(resp.status)).Put(" ");
  w.Put(resp.reason.empty() ? ReasonPhrase(resp.status) : absl::string_view(resp.reason));
  w.Put("\r\n");
  const ConnectionTokens hop(resp);
  for (const HeaderField& f : resp.headers) {
    const Name id = Classify(f.name);
    if (IsHopByHopName(id) || hop.Named(f.name)) continue;
    if (rules != nullptr && Removed(&rules->response_remove, f.name)) continue;
    // Content-Length passes for HEAD/304 (informational) and for a length
    // framed body; never next to our own chunking.
    if (id == Name::kContentLength &&
        (framing == ClientFraming::kChunked || framing == ClientFraming::kClose)) {
      continue;
    }
    w.Field(f.name, f.value);
  }
  if (rules != nullptr && resp.status >= 200) {
    for (const auto& [name, value] : rules->response_add) w.Field(name, value);
  }
  if (framing == ClientFraming::kChunked) w.Field("Transfer-Encoding", "chunked");
  if (resp.status == 101 && resp.Find("upgrade") != nullptr) {
    w.Field("Upgrade", *resp.Find("upgrade")).Field("Connection", "upgrade");
  }
  if (resp.status >= 200) {
    if (!keep_alive) {
      w.Field("Connection", "close");
    } else if (req.minor == 0) {
      w.Field("Connection", "keep-alive");
    }
  }
  w.Put("\r\n");
}

void BuildErrorResponse(int status, absl::string_view body, bool close, std::string* out) {
  absl::StrAppend(out, "HTTP/1.1 ", status, " ", ReasonPhrase(status),
                  "\r\nContent-Type: text/plain\r\nContent-Length: ", body.size() + 1, "\r\n",
                  close ? "Connection: close\r\n" : "", "\r\n", body, "\n");
}

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

}  // namespace lb::l7
