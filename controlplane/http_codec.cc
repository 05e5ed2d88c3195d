#include "controlplane/http_codec.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lb {
namespace {

// Longer than any method we serve; a longer first word is not HTTP.
constexpr size_t kMaxMethodLength = 32;

// strchr would find the terminating NUL: test it apart.
bool IsTchar(char c) {
  return c != '\0' &&
         (absl::ascii_isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c));
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTchar(c)) return false;
  }
  return true;
}

// Field values: visible ASCII, obs-text, SP and HTAB; no other controls.
bool IsFieldValue(absl::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

bool IsTargetChar(unsigned char c) { return c > 0x20 && c < 0x7f; }

// Does the comma-separated header value contain `token` (case-insensitive)?
bool HasToken(absl::string_view value, absl::string_view token) {
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(part), token)) return true;
  }
  return false;
}

// The first word of `bytes` (up to the first space, or all of it) can still
// be the start of a method: tchars only, at most kMaxMethodLength. An empty
// word passes (the request line check names that).
bool MethodPrefixOk(absl::string_view bytes) {
  const absl::string_view method = bytes.substr(0, std::min(bytes.find(' '), bytes.size()));
  return method.size() <= kMaxMethodLength && std::all_of(method.begin(), method.end(), IsTchar);
}

// A parsed request head, or the status to answer with.
struct Head {
  int error = 0;  // 0 = ok, else the status to answer
  std::string error_text;
  HttpRequest req;
  size_t content_length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
};

// request-line = method SP request-target SP HTTP-version. On failure sets
// h->error and returns false.
bool ParseRequestLine(absl::string_view line, Head* hp) {
  Head& h = *hp;
  auto fail = [&h](int status, std::string text) {
    h.error = status;
    h.error_text = std::move(text);
    return false;
  };
  // The method first, on the raw line: the same check a prefix gets
  // (MethodPrefixOk) before the line is complete.
  if (!MethodPrefixOk(line)) return fail(400, "malformed method");
  if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
  if (line.find('\r') != absl::string_view::npos || line.find('\0') != absl::string_view::npos) {
    return fail(400, "stray CR or NUL in the request line");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3) return fail(400, "malformed request line");
  if (!IsToken(parts[0])) return fail(400, "malformed method");
  absl::string_view version = parts[2];
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/") || version[6] != '.' ||
      !absl::ascii_isdigit(version[5]) || !absl::ascii_isdigit(version[7])) {
    return fail(400, "malformed HTTP version");
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return fail(505, absl::StrCat("HTTP version ", version, " is not supported"));
  }
  h.req.version_minor = version[7] - '0';
  absl::string_view target = parts[1];
  for (unsigned char c : target) {
    if (!IsTargetChar(c)) return fail(400, "malformed request target");
  }
  // absolute-form (RFC 9112 3.2.2): keep the path only.
  if (absl::StartsWithIgnoreCase(target, "http://") ||
      absl::StartsWithIgnoreCase(target, "https://")) {
    size_t slash = target.find('/', target.find("//") + 2);
    target = slash == absl::string_view::npos ? absl::string_view("/") : target.substr(slash);
  }
  if (target.empty() || target[0] != '/') return fail(400, "request target must start with '/'");
  h.req.method = std::string(parts[0]);
  if (h.req.method == "HEAD") {
    h.req.method = "GET";
    h.req.head = true;
  }
  h.req.target = std::string(target);
  size_t q = target.find('?');
  h.req.path = std::string(target.substr(0, q));
  if (q != absl::string_view::npos) h.req.query = std::string(target.substr(q + 1));

  return true;
}

Head ParseHead(absl::string_view head) {
  Head h;
  auto fail = [&h](int status, std::string text) {
    h.error = status;
    h.error_text = std::move(text);
    return h;
  };
  std::vector<absl::string_view> lines = absl::StrSplit(head, '\n');
  // The head ends with an empty line; drop the trailing empties.
  while (!lines.empty() && (lines.back().empty() || lines.back() == "\r")) lines.pop_back();
  if (lines.empty()) return fail(400, "empty request");
  // In byte order: the request line, then each header line (a split of the
  // bytes across reads must not change which error is reported).
  if (!ParseRequestLine(lines[0], &h)) return h;
  bool have_length = false;
  bool have_host = false;
  bool have_te = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view l = lines[i];
    if (absl::EndsWith(l, "\r")) l.remove_suffix(1);
    if (l.find('\r') != absl::string_view::npos || l.find('\0') != absl::string_view::npos) {
      return fail(400, "stray CR or NUL in the request head");
    }
    if (l.empty()) return fail(400, "empty line inside the header section");
    if (l[0] == ' ' || l[0] == '\t') return fail(400, "obsolete header line folding");
    size_t colon = l.find(':');
    if (colon == absl::string_view::npos) return fail(400, "header line without ':'");
    absl::string_view name = l.substr(0, colon);
    if (!IsToken(name)) return fail(400, "malformed header name");
    absl::string_view value = absl::StripAsciiWhitespace(l.substr(colon + 1));
    if (!IsFieldValue(value)) return fail(400, "control character in a header value");
    std::string lname = absl::AsciiStrToLower(name);
    if (lname == "content-length") {
      uint64_t n = 0;
      if (value.empty() || value.size() > 18 ||
          !std::all_of(value.begin(), value.end(),
                       [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
          !absl::SimpleAtoi(value, &n)) {
        return fail(400, "malformed Content-Length");
      }
      if (have_length && n != h.content_length) return fail(400, "conflicting Content-Length");
      have_length = true;
      h.content_length = n;
    } else if (lname == "transfer-encoding") {
      have_te = true;
    } else if (lname == "host") {
      if (have_host) return fail(400, "more than one Host header");
      have_host = true;
    }
    h.req.headers.emplace_back(std::move(lname), std::string(value));
  }
  if (have_te) {
    if (have_length) return fail(400, "both Transfer-Encoding and Content-Length");
    return fail(501, "Transfer-Encoding is not supported; send a Content-Length");
  }
  if (h.req.version_minor == 1 && !have_host) return fail(400, "HTTP/1.1 request without Host");

  const std::string* conn = h.req.Header("connection");
  if (h.req.version_minor == 0) {
    h.keep_alive = conn != nullptr && HasToken(*conn, "keep-alive");
  } else {
    h.keep_alive = conn == nullptr || !HasToken(*conn, "close");
  }
  const std::string* expect = h.req.Header("expect");
  h.expect_continue = expect != nullptr && h.req.version_minor == 1 &&
                      absl::EqualsIgnoreCase(*expect, "100-continue");
  return h;
}

}  // namespace

const std::string* HttpRequest::Header(absl::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

void HttpRequestDecoder::Append(absl::string_view bytes) {
  if (error_status_ == 0) in_.append(bytes.data(), bytes.size());
}

HttpDecodeResult HttpRequestDecoder::Refuse(int status, std::string why) {
  error_status_ = status;
  error_ = std::move(why);
  in_.clear();
  HttpDecodeResult r;
  r.kind = HttpDecodeResult::Kind::kError;
  r.status = error_status_;
  r.error = error_;
  return r;
}

// The head ends at the first "\n\n" or "\n\r\n" that lies wholly in the
// window. Resumes two bytes before where the last search stopped: a
// terminator may straddle reads.
bool HttpRequestDecoder::FindHeadEnd(absl::string_view window, size_t* end) {
  for (size_t i = scan_; i < window.size(); ++i) {
    if (window[i] != '\n') continue;
    if (i + 1 < window.size() && window[i + 1] == '\n') {
      *end = i + 2;
      return true;
    }
    if (i + 2 < window.size() && window[i + 1] == '\r' && window[i + 2] == '\n') {
      *end = i + 3;
      return true;
    }
  }
  scan_ = window.size() > 2 ? window.size() - 2 : 0;
  return false;
}

HttpDecodeResult HttpRequestDecoder::Next() {
  if (error_status_ != 0) return Refuse(error_status_, error_);
  HttpDecodeResult more;
  if (!have_head_) {
    if (!in_request_) {
      // Empty lines before a request line are ignored (RFC 9112 2.2).
      const size_t skip = std::min(in_.find_first_not_of("\r\n"), in_.size());
      in_.erase(0, skip);
      if (in_.empty()) return more;
      in_request_ = true;
      line_checked_ = false;
      scan_ = 0;
    }
    // Everything below looks at the same window, whatever the reads were.
    const absl::string_view window =
        absl::string_view(in_).substr(0, std::min(in_.size(), limits_.max_header_bytes));
    if (!line_checked_) {
      // A garbage method or request line is refused as soon as it is seen,
      // not when the client finally sends a blank line (or never).
      const size_t eol = window.find('\n');
      if (eol != absl::string_view::npos) {
        line_checked_ = true;
        Head probe;
        if (!ParseRequestLine(window.substr(0, eol), &probe)) {
          return Refuse(probe.error, probe.error_text);
        }
      } else if (!MethodPrefixOk(window)) {
        return Refuse(400, "malformed method");  // binary garbage, a TLS ClientHello
      }
    }
    size_t end = 0;
    if (!FindHeadEnd(window, &end)) {
      if (in_.size() >= limits_.max_header_bytes) {
        return Refuse(
            431, absl::StrCat("request head larger than ", limits_.max_header_bytes, " bytes"));
      }
      return more;
    }
    Head h = ParseHead(window.substr(0, end));
    if (h.error != 0) return Refuse(h.error, h.error_text);
    if (h.content_length > limits_.max_body_bytes) {
      return Refuse(413, absl::StrCat("body: ", h.content_length,
                                      " bytes is more than the limit of ", limits_.max_body_bytes));
    }
    have_head_ = true;
    head_len_ = end;
    content_length_ = h.content_length;
    keep_alive_ = h.keep_alive;
    expect_continue_ = h.expect_continue;
    continue_taken_ = false;
    request_ = std::move(h.req);
  }
  const size_t need = head_len_ + content_length_;
  if (in_.size() < need) return more;
  HttpDecodeResult r;
  r.kind = HttpDecodeResult::Kind::kRequest;
  r.request = std::move(request_);
  r.request.body = in_.substr(head_len_, content_length_);
  r.keep_alive = keep_alive_;
  in_.erase(0, need);
  request_ = HttpRequest();
  have_head_ = false;
  in_request_ = false;
  expect_continue_ = false;
  return r;
}

bool HttpRequestDecoder::TakeContinue() {
  if (!have_head_ || !expect_continue_ || continue_taken_) return false;
  if (in_.size() >= head_len_ + content_length_) return false;
  continue_taken_ = true;
  return true;
}

std::vector<HttpDecodeResult> DecodeHttpChunks(const std::vector<absl::string_view>& chunks,
                                               HttpCodecLimits limits) {
  HttpRequestDecoder d(limits);
  std::vector<HttpDecodeResult> out;
  for (absl::string_view chunk : chunks) {
    d.Append(chunk);
    while (true) {
      HttpDecodeResult r = d.Next();
      if (r.kind == HttpDecodeResult::Kind::kNeedMore) break;
      const bool error = r.kind == HttpDecodeResult::Kind::kError;
      out.push_back(std::move(r));
      if (error) return out;
    }
  }
  out.emplace_back();  // kNeedMore: what is left waits for more bytes
  return out;
}

void AppendHttpResponse(const HttpResponse& r, bool head_only, bool keep_alive, int version_minor,
                        absl::string_view date, std::string* out) {
  std::string& o = *out;
  absl::StrAppend(&o, "HTTP/1.1 ", r.status, " ", HttpReason(r.status), "\r\nDate: ", date, "\r\n");
  if (!r.content_type.empty()) absl::StrAppend(&o, "Content-Type: ", r.content_type, "\r\n");
  absl::StrAppend(&o, "Content-Length: ", r.body.size(), "\r\n");
  for (const auto& [name, value] : r.headers) absl::StrAppend(&o, name, ": ", value, "\r\n");
  if (!keep_alive) {
    o += "Connection: close\r\n";
  } else if (version_minor == 0) {
    o += "Connection: keep-alive\r\n";
  }
  o += "\r\n";
  if (!head_only) o += r.body;
}

std::string HttpErrorBody(absl::string_view why) {
  std::string escaped;
  for (char ch : why) {
    if (ch == '"' || ch == '\\') escaped += '\\';
    escaped += ch;
  }
  return absl::StrCat("{\"error\":\"", escaped, "\",\"field\":\"\"}\n");
}

const char* HttpReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 421:
      return "Misdirected Request";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace lb
