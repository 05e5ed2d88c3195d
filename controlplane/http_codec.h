// HTTP/1.1 request framing for the admin HTTP server (http_server.h), kept
// apart from sockets so that it is a pure function of the bytes received:
// unit tests and a fuzzer drive it directly.
//
// HttpRequestDecoder takes the bytes of one connection as they arrive
// (Append) and hands out complete requests (Next). Framing (RFC 9112): empty
// lines before a request line are skipped; the head ends at the first blank
// line; a body is exactly Content-Length bytes. Refused, with the status the
// server answers (the decoder then stays refused):
//   400 malformed request line, header or Content-Length (stray CR/NUL,
//       obsolete line folding, conflicting lengths, no Host on 1.1, ...)
//   413 Content-Length above max_body_bytes (decided from the head)
//   431 no end of the head within max_header_bytes
//   501 Transfer-Encoding
//   505 an HTTP version other than 1.0/1.1
// A garbage method or request line is refused as soon as it is seen, not when
// the head is complete.
//
// Invariant (the fuzzer checks it): the sequence of results depends only on
// the bytes, never on how they were split across Append calls. Every check
// runs in byte order over the same window (the first max_header_bytes of the
// request), so a refusal decided early on a prefix is the refusal the whole
// head would get.
//
// Threads: one decoder per connection, used by one thread.
#ifndef LB_CONTROLPLANE_HTTP_CODEC_H_
#define LB_CONTROLPLANE_HTTP_CODEC_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace lb {

struct HttpRequest {
  std::string method;     // as sent, e.g. "GET" (HEAD arrives as "GET", see head)
  std::string target;     // raw request target, e.g. "/backends/7?x=1"
  std::string path;       // target before '?', not decoded
  std::string query;      // after '?', not decoded
  int version_minor = 1;  // HTTP/1.<minor>
  bool head = false;      // the client sent HEAD: the body will not be sent
  // Header names lower-cased, values trimmed, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer;   // the client, "127.0.0.1:53412" (set by the server)
  std::string local;  // the address the client reached, "127.0.0.1:8080" (for Host checks)

  // The first header with this (lower-case) name, or nullptr.
  const std::string* Header(absl::string_view lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers (e.g. Allow, WWW-Authenticate, Location). The server adds
  // Date, Content-Length, Content-Type and Connection itself.
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
};

struct HttpCodecLimits {
  size_t max_header_bytes = 16 * 1024;  // request line + headers + blank line
  size_t max_body_bytes = 1024 * 1024;
};

struct HttpDecodeResult {
  enum class Kind { kNeedMore, kRequest, kError };
  Kind kind = Kind::kNeedMore;
  HttpRequest request;     // kRequest
  bool keep_alive = true;  // kRequest: the connection may carry another request
  int status = 0;          // kError: the status to answer
  std::string error;       // kError: why, for the response body
};

class HttpRequestDecoder {
 public:
  explicit HttpRequestDecoder(HttpCodecLimits limits = HttpCodecLimits()) : limits_(limits) {}

  void Append(absl::string_view bytes);
  // The next complete request (consumed from the buffer), a refusal (sticky:
  // every later call returns it again), or kNeedMore.
  HttpDecodeResult Next();

  // A request has started: a byte other than CR/LF arrived since the last
  // complete request.
  bool in_request() const { return in_request_; }
  // True once per request whose head asked "Expect: 100-continue" (HTTP/1.1)
  // while its body is not complete yet: the server answers 100 Continue.
  bool TakeContinue();
  size_t buffered() const { return in_.size(); }
  // Drops the buffered input (the connection is closing).
  void Clear() { in_.clear(); }

 private:
  HttpDecodeResult Refuse(int status, std::string why);
  bool FindHeadEnd(absl::string_view window, size_t* end);

  HttpCodecLimits limits_;
  std::string in_;
  size_t scan_ = 0;  // bytes of the window already searched for the head end
  bool in_request_ = false;
  bool line_checked_ = false;
  bool have_head_ = false;
  bool expect_continue_ = false;
  bool continue_taken_ = false;
  size_t head_len_ = 0;
  size_t content_length_ = 0;
  bool keep_alive_ = true;
  HttpRequest request_;
  int error_status_ = 0;
  std::string error_;
};

// Feeds `chunks` in order to one decoder and collects every result up to the
// first kNeedMore or kError (which is included). What the fuzzer compares.
std::vector<HttpDecodeResult> DecodeHttpChunks(const std::vector<absl::string_view>& chunks,
                                               HttpCodecLimits limits);

// Appends `r` to `out`: status line, Date (`date`), Content-Type,
// Content-Length, r.headers, Connection (close, or keep-alive for 1.0) and,
// unless head_only, the body.
void AppendHttpResponse(const HttpResponse& r, bool head_only, bool keep_alive, int version_minor,
                        absl::string_view date, std::string* out);

// The body of an error the server answers by itself:
// {"error":"<why>","field":""}, with '"' and '\' escaped.
std::string HttpErrorBody(absl::string_view why);

// "200 OK" style reason phrases; "Unknown" for codes we never send.
const char* HttpReason(int status);

}  // namespace lb

#endif  // LB_CONTROLPLANE_HTTP_CODEC_H_
