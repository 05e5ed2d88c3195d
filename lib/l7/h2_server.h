// The server side of a downstream HTTP/2 connection for lb-l7, over
// Debian's nghttp2 (the kept library; no hand-written HTTP/2 framing). It
// turns client bytes into checked request heads, body chunks and stream
// ends, and takes responses written as HTTP/1.1 heads (what the shared
// response pipeline of lb-l7 produces) back out as HTTP/2 frames.
//
// Contract:
//   - nghttp2's HTTP messaging checks stay on (RFC 9113 §8): a malformed
//     request (missing or duplicate pseudo-headers, upper-case or invalid
//     field names, connection-specific fields such as Connection,
//     Transfer-Encoding, Upgrade, Keep-Alive, TE other than "trailers", a
//     Content-Length that disagrees with the DATA) is a stream error
//     (RST_STREAM PROTOCOL_ERROR) that never reaches the sink. A bad client
//     preface or a frame-level error is a connection error (GOAWAY).
//   - On top: an :authority / Host with characters outside reg-name / IP /
//     port, a :path that is neither origin-form nor `*` (OPTIONS), a bad
//     Content-Length are answered 400 through the sink (OnRefused); CONNECT
//     and methods HTTP/1 does not know (http-parser's list) are 501; fields above
//     Http1Limits::max_header_bytes (name + value + 32 each, RFC 9113 §6.5.2) or max_header_count
//     are 431, a :path above max_uri_bytes 414, a Content-Length or a body above max_body_bytes
//     413.
//   - Requests reach the sink as MessageHead in HTTP/1.1 terms: major 2,
//     minor 1, origin_form = :path, host = :authority (else Host), lower
//     case; Cookie fields joined by "; " (RFC 9113 §8.2.3); a body without
//     Content-Length is marked `chunked` (the upstream request is then
//     chunked); trailers are dropped.
//   - Flow control: windows are not updated automatically. The caller says
//     how many body bytes it has passed on (Consume), so a slow backend
//     stops the client through the stream window; the connection window is
//     streams x stream window, so one stalled stream cannot block others.
//   - Responses: SubmitResponse takes an HTTP/1.1 head ("HTTP/1.1 200 OK\r\n
//     Name: value\r\n...\r\n\r\n"), drops the fields HTTP/2 forbids
//     (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
//     Upgrade, TE) and lowercases names. With a body, the bytes come from
//     H2Sink::ReadBody when nghttp2 has window for them.
//   - Send() must not be called from inside a sink callback (nghttp2 is not
//     re-entrant); in_callback() tells. Everything else may be.
//
// Threads: an instance belongs to one connection of one worker.
#ifndef LB_LIB_L7_H2_SERVER_H_
#define LB_LIB_L7_H2_SERVER_H_

#include <nghttp2/nghttp2.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "lib/l7/http1.h"

namespace lb::l7 {

// The client connection preface (RFC 9113 §3.4).
inline constexpr absl::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum class PrefaceMatch { kNo, kPartial, kYes };
// Whether the first bytes of a plaintext connection are an HTTP/2 client
// preface (prior knowledge): kPartial while they are a proper prefix of it.
PrefaceMatch MatchH2Preface(absl::string_view first_bytes);

struct H2Settings {
  uint32_t max_concurrent_streams = 100;
  uint32_t stream_window = 65535;  // initial stream window (client -> us)
  Http1Limits limits;
};

class H2Sink {
 public:
  virtual ~H2Sink() = default;
  // A request head, checked. `end_stream`: it has no body (OnRequestEnd
  // follows anyway). The caller may attach its stream object (SetUser).
  virtual void OnRequest(int32_t id, MessageHead* head, bool end_stream) = 0;
  // The request is refused with `status` (400, 413, 414, 431, 501). Before
  // OnRequest (the head was bad), or after it (413: the body grew too
  // large); the caller answers and the stream's DATA is discarded.
  virtual void OnRefused(int32_t id, int status, absl::string_view why) = 0;
  virtual void OnData(int32_t id, const char* data, size_t n) = 0;
  virtual void OnRequestEnd(int32_t id) = 0;
  // The stream is gone (answered and ended, reset by either side, or the
  // connection ends): its user pointer is forgotten after this.
  virtual void OnStreamClose(int32_t id, uint32_t error_code) = 0;
  // Response body bytes of stream `id`: copy at most `n` into `buf` and
  // return how many; set *eof when the body ends with them. Return -1 when
  // none is ready yet (ResumeData says when there is).
  virtual ssize_t ReadBody(int32_t id, uint8_t* buf, size_t n, bool* eof) = 0;
};

class H2Server {
 public:
  H2Server(const H2Settings& settings, H2Sink* sink);
  ~H2Server();
  H2Server(const H2Server&) = delete;
  H2Server& operator=(const H2Server&) = delete;

  // Client bytes. False on a connection error (bad preface, protocol
  // violation): Send() what is queued (a GOAWAY) and close.
  bool Recv(const char* data, size_t n);
  // Appends frames to `out` while out->size() < cap. Not from a callback.
  void Send(std::string* out, size_t cap);
  bool WantsWrite() const;
  // False once the session is over (GOAWAY both ways or an error, no
  // stream left): close after writing what is queued.
  bool Alive() const;
  bool in_callback() const { return depth_ > 0; }
  size_t open_streams() const { return open_; }
  // A request header block has begun and not ended (HEADERS without
  // END_HEADERS, CONTINUATION to come): the caller's header timeout runs.
  bool head_pending() const { return heads_pending_ > 0; }

  void SetUser(int32_t id, void* user);
  void* User(int32_t id) const;
  // `head`: an HTTP/1.1 response head. False if the stream is gone.
  bool SubmitResponse(int32_t id, absl::string_view head, bool with_body);
  // An interim response (1xx other than 101), :status only.
  bool SubmitInterim(int32_t id, int status);
  void ResumeData(int32_t id);
  void ResetStream(int32_t id, uint32_t error_code);
  // `n` body bytes of stream `id` have been passed on: window for more.
  void Consume(int32_t id, size_t n);
  // Graceful shutdown: GOAWAY with the last stream seen; streams already
  // open finish, new ones are refused.
  void Shutdown();
  bool shutting_down() const { return goaway_; }

 private:
  struct Stream;
  friend struct H2Callbacks;

  nghttp2_session* session_ = nullptr;
  H2Sink* const sink_;
  const H2Settings settings_;
  int depth_ = 0;
  size_t open_ = 0;
  size_t heads_pending_ = 0;
  bool goaway_ = false;
  Stream* live_ = nullptr;  // every Stream not yet closed
};

}  // namespace lb::l7

#endif  // LB_LIB_L7_H2_SERVER_H_
