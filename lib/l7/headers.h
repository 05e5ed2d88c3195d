// Header rules of lb-l7: what a request head looks like when it leaves for a
// backend, and what a response head looks like when it leaves for the client.
//
// Contract:
//   - Hop-by-hop fields are removed both ways: Connection, Keep-Alive,
//     Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, and every
//     field that a Connection header names (RFC 9110 §7.6.1). Framing
//     (Host, Content-Length, Transfer-Encoding, Connection) is always written
//     by the proxy from the parsed head, so no Connection token can remove or
//     alter it.
//   - Requests gain X-Forwarded-For (the client address appended to what came
//     in), X-Forwarded-Proto and X-Forwarded-Port (replaced), Forwarded
//     (RFC 7239: an element appended), X-Request-ID (kept when it is 1..128
//     visible characters, else replaced by the generated one).
//   - Upstream requests are always HTTP/1.1 with origin-form targets.
//   - Upgrade (WebSocket): a request with head.upgrade keeps its Upgrade
//     value and gets Connection: upgrade; so does a 101 response.
//
// Pure functions, no I/O: any thread.
#ifndef LB_LIB_L7_HEADERS_H_
#define LB_LIB_L7_HEADERS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

// Per-route header rules (config: L7Route.*_headers_to_*). Names are
// compared case-insensitively; removal happens before addition. The config
// refuses rules on framing, hop-by-hop and forwarding fields (see
// IsProtectedHeader), so a rule can never change how a message is framed.
struct HeaderRules {
  std::vector<std::pair<std::string, std::string>> request_add;
  std::vector<std::string> request_remove;
  std::vector<std::pair<std::string, std::string>> response_add;
  std::vector<std::string> response_remove;
};

// Fields the proxy owns: Host, framing, hop-by-hop, forwarding, request id.
bool IsProtectedHeader(absl::string_view name);

struct ForwardInfo {
  absl::string_view client_ip;  // textual, no brackets
  bool client_ipv6 = false;
  absl::string_view proto = "http";
  uint16_t listener_port = 0;
  absl::string_view request_id;  // used when the client sent none (or a bad one)
  // Host for an HTTP/1.0 request that had none (upstream requests are
  // HTTP/1.1, which requires one): the listener's address:port.
  absl::string_view fallback_host;
  // The verified client certificate's subject (mTLS listeners): sent as
  // X-Client-Cert-Subject when set. A client's own field of that name is
  // always removed, so a backend can trust it.
  absl::string_view client_cert_subject;
};

// True when `name` is hop-by-hop for `head` (fixed list or named by a
// Connection header of `head`).
bool IsHopByHop(const MessageHead& head, absl::string_view name);

// Appends the upstream request head (request line, fields, CRLF CRLF) to
// `out`. `chunked` selects Transfer-Encoding: chunked, else a Content-Length
// of head.content_length when >= 0. Returns the X-Request-ID that was sent:
// a view into `head` or into info.request_id, valid as long as they are.
absl::string_view BuildUpstreamRequest(const MessageHead& head, const ForwardInfo& info,
                                       std::string* out, const HeaderRules* rules = nullptr);

// How the response body will reach the client.
enum class ClientFraming { kNone, kLength, kChunked, kClose };

// Appends the response head for the client. `keep_alive` is whether the
// proxy keeps the client connection open after this response; `framing` is
// how the body goes out (from ChooseClientFraming).
void BuildClientResponse(const MessageHead& resp, const MessageHead& req, bool keep_alive,
                         ClientFraming framing, std::string* out,
                         const HeaderRules* rules = nullptr);

// Body framing towards the client for `resp` answering `req`.
ClientFraming ChooseClientFraming(const MessageHead& resp, const MessageHead& req);

// A complete locally generated response (400, 502, ...) with a short text
// body and Connection: close when `close`.
void BuildErrorResponse(int status, absl::string_view body, bool close, std::string* out);

absl::string_view ReasonPhrase(int status);

// A valid incoming X-Request-ID worth keeping.
bool IsValidRequestId(absl::string_view id);

}  // namespace lb::l7

#endif  // LB_LIB_L7_HEADERS_H_
