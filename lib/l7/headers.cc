#include "lib/l7/headers.h"

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"

namespace lb::l7 {
namespace {

constexpr absl::string_view kHopByHop[] = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
};

// Fields the proxy writes itself on the way up.
constexpr absl::string_view kRewrittenUp[] = {
    "host",         "content-length",        "x-forwarded-proto", "x-forwarded-port",
    "x-request-id", "x-client-cert-subject",
};

bool InList(absl::string_view name, absl::Span<const absl::string_view> list) {
  for (absl::string_view l : list) {
    if (absl::EqualsIgnoreCase(name, l)) return true;
  }
  return false;
}

void AppendField(absl::string_view name, absl::string_view value, std::string* out) {
  absl::StrAppend(out, name, ": ", value, "\r\n");
}

}  // namespace

bool IsProtectedHeader(absl::string_view name) {
  static constexpr absl::string_view kProtected[] = {
      "host",
      "content-length",
      "transfer-encoding",
      "connection",
      "keep-alive",
      "proxy-connection",
      "te",
      "trailer",
      "upgrade",
      "x-forwarded-for",
      "x-forwarded-proto",
      "x-forwarded-port",
      "forwarded",
      "x-request-id",
      "x-client-cert-subject",
  };
  return InList(name, kProtected);
}

namespace {

bool Removed(const std::vector<std::string>* remove, absl::string_view name) {
  if (remove == nullptr) return false;
  for (const std::string& r : *remove) {
    if (absl::EqualsIgnoreCase(r, name)) return true;
  }
  return false;
}

}  // namespace

namespace {

// The tokens of every Connection field of a head, gathered once per head
// (a message rarely names more than a few; they point into `head`).
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const MessageHead& head) {
    for (const HeaderField& f : head.headers) {
      if (!absl::EqualsIgnoreCase(f.name, "connection")) continue;
      for (absl::string_view tok : absl::StrSplit(f.value, ',')) {
        tok = absl::StripAsciiWhitespace(tok);
        if (!tok.empty()) tokens_.push_back(tok);
      }
    }
  }
  bool HopByHop(absl::string_view name) const {
    if (InList(name, kHopByHop)) return true;
    for (absl::string_view t : tokens_) {
      if (absl::EqualsIgnoreCase(t, name)) return true;
    }
    return false;
  }

 private:
  absl::InlinedVector<absl::string_view, 4> tokens_;
};

}  // namespace

bool IsHopByHop(const MessageHead& head, absl::string_view name) {
  return ConnectionTokens(head).HopByHop(name);
}

bool IsValidRequestId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (unsigned char c : id) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

std::string BuildUpstreamRequest(const MessageHead& head, const ForwardInfo& info, std::string* out,
                                 const HeaderRules* rules) {
  absl::StrAppend(out, head.method, " ", head.origin_form, " HTTP/1.1\r\n");
  AppendField("Host", head.host.empty() ? info.fallback_host : head.host, out);
  std::string xff, fwd, request_id;
  const ConnectionTokens hop(head);
  for (const HeaderField& f : head.headers) {
    if (hop.HopByHop(f.name)) continue;
    if (absl::EqualsIgnoreCase(f.name, "x-request-id")) {
      if (request_id.empty() && IsValidRequestId(f.value)) request_id = f.value;
      continue;
    }
    if (InList(f.name, kRewrittenUp)) continue;
    if (rules != nullptr && Removed(&rules->request_remove, f.name)) continue;
    if (absl::EqualsIgnoreCase(f.name, "x-forwarded-for")) {
      absl::StrAppend(&xff, xff.empty() ? "" : ", ", f.value);
      continue;
    }
    if (absl::EqualsIgnoreCase(f.name, "forwarded")) {
      absl::StrAppend(&fwd, fwd.empty() ? "" : ", ", f.value);
      continue;
    }
    AppendField(f.name, f.value, out);
  }
  if (request_id.empty()) request_id = std::string(info.request_id);
  absl::StrAppend(&xff, xff.empty() ? "" : ", ", info.client_ip);
  // RFC 7239 §6: an IPv6 node is bracketed and the value quoted.
  const std::string node =
      info.client_ipv6 ? absl::StrCat("\"[", info.client_ip, "]\"") : info.client_ip;
  absl::StrAppend(&fwd, fwd.empty() ? "" : ", ", "for=", node, ";proto=", info.proto);
  if (!head.host.empty()) {
    bool token = true;
    for (unsigned char c : head.host) token = token && c != ':' && c != '[' && c != ']';
    absl::StrAppend(&fwd, ";host=", token ? head.host : absl::StrCat("\"", head.host, "\""));
  }
  AppendField("X-Forwarded-For", xff, out);
  AppendField("X-Forwarded-Proto", info.proto, out);
  AppendField("X-Forwarded-Port", absl::StrCat(info.listener_port), out);
  AppendField("Forwarded", fwd, out);
  AppendField("X-Request-ID", request_id, out);
  if (!info.client_cert_subject.empty()) {
    AppendField("X-Client-Cert-Subject", info.client_cert_subject, out);
  }
  if (rules != nullptr) {
    for (const auto& [name, value] : rules->request_add) AppendField(name, value, out);
  }
  if (head.upgrade) {
    // The one hop-by-hop pair passed on: the handshake the client asked for.
    AppendField("Upgrade", *head.Find("upgrade"), out);
    AppendField("Connection", "upgrade", out);
  }
  if (head.chunked) {
    AppendField("Transfer-Encoding", "chunked", out);
  } else if (head.content_length >= 0) {
    AppendField("Content-Length", absl::StrCat(head.content_length), out);
  }
  out->append("\r\n");
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
  absl::StrAppend(out, "HTTP/1.1 ", resp.status, " ",
                  resp.reason.empty() ? ReasonPhrase(resp.status) : resp.reason, "\r\n");
  const ConnectionTokens hop(resp);
  for (const HeaderField& f : resp.headers) {
    if (hop.HopByHop(f.name)) continue;
    if (rules != nullptr && Removed(&rules->response_remove, f.name)) continue;
    // Content-Length passes for HEAD/304 (informational) and for a length
    // framed body; never next to our own chunking.
    if (absl::EqualsIgnoreCase(f.name, "content-length") &&
        (framing == ClientFraming::kChunked || framing == ClientFraming::kClose)) {
      continue;
    }
    AppendField(f.name, f.value, out);
  }
  if (rules != nullptr && resp.status >= 200) {
    for (const auto& [name, value] : rules->response_add) AppendField(name, value, out);
  }
  if (framing == ClientFraming::kChunked) AppendField("Transfer-Encoding", "chunked", out);
  if (resp.status == 101 && resp.Find("upgrade") != nullptr) {
    AppendField("Upgrade", *resp.Find("upgrade"), out);
    AppendField("Connection", "upgrade", out);
  }
  if (resp.status >= 200) {
    if (!keep_alive) {
      AppendField("Connection", "close", out);
    } else if (req.minor == 0) {
      AppendField("Connection", "keep-alive", out);
    }
  }
  out->append("\r\n");
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
