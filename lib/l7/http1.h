// Strict HTTP/1.x message framing for lb-l7, over Debian's http-parser 2.9
// (the kept parser; we never parse HTTP/1 by hand). This file adds the
// refusals a proxy needs on top of it (HAProxy-style: refuse ambiguous
// framing before any byte goes upstream) and turns its callbacks into a
// head / body / complete sequence.
//
// Contract:
//   - A message is fed as bytes in any segmentation; Feed() consumes what it
//     may and returns how many bytes it took. It stops after a complete
//     message (pipelined bytes stay with the caller) and takes at most the
//     `n` bytes offered, so the caller bounds how much body moves per call
//     (back-pressure).
//   - The head is checked whole (bounded by Limits::max_header_bytes)
//     before http-parser sees it (a head whole in one Feed where it lies,
//     one cut across Feeds collected first; the same answer either way):
//     no obs-fold, no whitespace before a
//     colon, no control character or NUL in a value, CRLF line ends only, at
//     most max_header_count fields, request line within max_uri_bytes. Then
//     http-parser (strict build) parses it, and the head is checked again for
//     framing: Content-Length with Transfer-Encoding, several or malformed
//     Content-Length, Transfer-Encoding other than exactly "chunked" (400, not
//     501: it may be an obfuscated "chunked"), several
//     or missing (HTTP/1.1) Host, HTTP/0.9 or a major version other than 1,
//     a target that is neither origin-form nor absolute-form (asterisk-form for
//     OPTIONS), an absolute-form authority that disagrees with Host.
//   - Body bytes reach the sink decoded (chunk framing removed); the proxy
//     re-frames them, so framing the client chose never reaches a backend.
//     Trailers are dropped.
//
// Failures: Feed() returns with error() != kNone and status() the HTTP code
// to answer (400, 413, 414, 431, 501, 505; 502 for a response). After an
// error the parser must be Reset() before use.
//
// Threads: an instance belongs to one connection of one worker.
#ifndef LB_LIB_L7_HTTP1_H_
#define LB_LIB_L7_HTTP1_H_

#include <http_parser.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"

namespace lb::l7 {

struct Http1Limits {
  size_t max_header_bytes = 16384;              // request line + fields + CRLFs: 431 above
  size_t max_header_count = 100;                // 431 above
  size_t max_uri_bytes = 8192;                  // request target: 414 above
  uint64_t max_body_bytes = uint64_t{1} << 30;  // decoded body: 413 above; 0 = no limit
};

struct HeaderField {
  absl::string_view name;   // as received (case kept), validated token
  absl::string_view value;  // leading/trailing OWS removed
};

// The fields of a head, in order. The names and values are views into
// bytes the list owns: a parsed head is copied in once, whole, and its
// fields point into that copy (a std::string per name and value cost two
// appends a field, ~1k instructions a request on h1_small); Add() copies a
// field in. The bytes sit in blocks that never move (a swap or a move keeps
// every view valid) and that clear() keeps for the next head, or Release()
// hands to a per-thread pool (HAProxy's buffer pools, for the same reason:
// memory follows the requests in flight, not the connections open): no
// allocation per field, and none per request in the steady state. Iterates,
// indexes and grows like a vector; a copy copies the bytes.
class HeaderList {
 public:
  HeaderList() = default;
  HeaderList(std::initializer_list<HeaderField> l) {
    for (const HeaderField& f : l) push_back(f);
  }
  HeaderList& operator=(std::initializer_list<HeaderField> l) {
    clear();
    for (const HeaderField& f : l) push_back(f);
    return *this;
  }
  HeaderList(const HeaderList& o) {
    for (const HeaderField& f : o) push_back(f);
  }
  HeaderList& operator=(const HeaderList& o) {
    if (this != &o) {
      clear();
      for (const HeaderField& f : o) push_back(f);
    }
    return *this;
  }
  void swap(HeaderList& o) noexcept {
    fields_.swap(o.fields_);
    std::swap(size_, o.size_);
    blocks_.swap(o.blocks_);
    std::swap(block_, o.block_);
    std::swap(used_, o.used_);
  }
  HeaderList(HeaderList&& o) noexcept { swap(o); }
  HeaderList& operator=(HeaderList&& o) noexcept {
    swap(o);
    o.clear();
    return *this;
  }

  const HeaderField* begin() const { return fields_.data(); }
  const HeaderField* end() const { return fields_.data() + size_; }
  HeaderField* begin() { return fields_.data(); }
  HeaderField* end() { return fields_.data() + size_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const HeaderField& operator[](size_t i) const { return fields_[i]; }
  HeaderField& operator[](size_t i) { return fields_[i]; }
  HeaderField& back() { return fields_[size_ - 1]; }
  const HeaderField& back() const { return fields_[size_ - 1]; }
  // A new last field, empty; its views may point into Store()d bytes.
  HeaderField& emplace_back() {
    if (size_ == fields_.size()) fields_.emplace_back();
    HeaderField& f = fields_[size_++];
    f = HeaderField();
    return f;
  }
  void Add(absl::string_view name, absl::string_view value) {
    const absl::string_view n = Store(name);
    const absl::string_view v = Store(value);
    HeaderField& f = emplace_back();
    f.name = n;
    f.value = v;
  }
  void push_back(const HeaderField& f) { Add(f.name, f.value); }
  // Drops the fields and their bytes (the blocks stay for the next head).
  void clear() {
    size_ = 0;
    block_ = 0;
    used_ = 0;
  }
  // A copy of `s` in the list's bytes, valid until clear() (or the list's
  // end), wherever the list is moved or swapped to.
  absl::string_view Store(absl::string_view s);
  // clear(), and the blocks go back to this thread's pool (at most
  // kPoolBlocks are kept there) for the next list on the thread that
  // needs one: an idle keep-alive connection then holds no head bytes, and
  // a busy one takes a pooled block instead of allocating.
  void Release();

 private:
  struct Block {
    std::unique_ptr<char[]> bytes;
    size_t size = 0;
  };
  static constexpr size_t kBlockBytes = 1024;
  static constexpr size_t kPoolBlocks = 256;  // 256 KiB per thread at most
  std::vector<HeaderField> fields_;           // [size_, end) are spare slots
  size_t size_ = 0;
  std::vector<Block> blocks_;  // [block_] is being filled, up to used_
  size_t block_ = 0;
  size_t used_ = 0;
};

// The head of a request or response, as parsed and checked. A member added
// here belongs in Clear() and Swap() too.
struct MessageHead {
  // Request.
  std::string method;
  std::string target;       // as received
  std::string origin_form;  // path + query to send upstream
  std::string host;         // Host (or absolute-form authority), lowercased, port kept
  // Response.
  int status = 0;
  std::string reason;
  // Both.
  int major = 1, minor = 1;
  HeaderList headers;
  bool chunked = false;
  int64_t content_length = -1;    // -1: none
  bool keep_alive = true;         // http_should_keep_alive
  bool body_until_close = false;  // response with neither length nor chunked
  // Request: a bodyless GET with Upgrade and Connection: upgrade (a
  // WebSocket handshake); after a 101 the connection becomes a tunnel.
  bool upgrade = false;

  // The first value of header `name` (case-insensitive), or nullptr.
  const absl::string_view* Find(absl::string_view name) const;
  void Clear();
  // Member by member: no temporary head (std::swap moves every string
  // three times), every buffer keeps its capacity on one side or the other.
  void Swap(MessageHead& o);
};

enum class Http1Error {
  kNone,
  kBadRequest,      // 400 (502 for a response)
  kHeaderTooLarge,  // 431
  kUriTooLong,      // 414
  kBodyTooLarge,    // 413
  kNotImplemented,  // 501 (CONNECT, unknown transfer coding)
  kBadVersion,      // 505
};

class Http1Sink {
 public:
  virtual ~Http1Sink() = default;
  virtual void OnHead(const MessageHead& head) = 0;
  virtual void OnBody(const char* data, size_t n) = 0;
  virtual void OnComplete() = 0;
};

class Http1Parser {
 public:
  enum class Kind { kRequest, kResponse };
  Http1Parser(Kind kind, const Http1Limits& limits);
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  // Ready for the next message (keeps buffer capacity).
  void Reset();
  // After Reset(), while no next message has begun: gives back the memory
  // the last head used (HeaderList::Release, the split-head buffer), so an
  // idle connection does not keep it.
  void ReleaseIdleMemory();
  // Response parsing only: the request was HEAD (no body follows the head).
  void SetRequestWasHead(bool v) { request_was_head_ = v; }

  // Consumes bytes of the current message, calling `sink`. Returns the number
  // of bytes taken (<= n). Stops after OnComplete or on error.
  size_t Feed(const char* data, size_t n, Http1Sink* sink);
  // The peer closed: ends a close-delimited response body (OnComplete) or
  // marks a truncated message as an error. Returns true when that completed
  // the message.
  bool FeedEof(Http1Sink* sink);

  bool in_head() const { return phase_ == Phase::kHead; }
  bool started() const { return phase_ != Phase::kHead || !head_buf_.empty(); }
  bool complete() const { return phase_ == Phase::kDone; }
  Http1Error error() const { return error_; }
  const std::string& error_detail() const { return detail_; }
  // HTTP status to answer for error(): 400/413/414/431/501/505.
  int status() const;
  const MessageHead& head() const { return head_; }
  // The head, for a caller that keeps it beyond OnHead (it stays as it is
  // until Reset(), body and trailers parsed meanwhile do not touch it) or
  // swaps it out (and an old head in) to keep both buffers' capacity. The
  // address is the parser's for its lifetime. Changes by the caller only in
  // or after OnHead, or after an error; the parser does not read its head
  // again until Reset().
  MessageHead* mutable_head() { return &head_; }
  uint64_t body_bytes() const { return body_bytes_; }

 private:
  enum class Phase { kHead, kBody, kDone, kError };
  enum class Walk { kMore, kEnd, kFailed };
  size_t FeedHead(const char* data, size_t n, Http1Sink* sink);
  bool Fail(Http1Error e, absl::string_view detail);
  // Lexical checks of the head before http-parser sees it, in one walk over
  // its lines (head bytes base[0, size), from line_start_ on). kEnd: the
  // head ends at line_start_.
  Walk WalkHead(const char* base, size_t size);
  // The checks of one complete line (without its CRLF); the first failure
  // is kept in deferred_ (reported once the head is complete).
  void CheckLine(const char* line, size_t len, bool first);
  void CheckStartLine(absl::string_view line);
  void Defer(Http1Error e, const char* detail);
  bool CheckRequestHead();
  bool CheckFraming();

  void Extend(absl::string_view* v, const char* at, size_t n);
  static int OnUrl(http_parser* p, const char* at, size_t n);
  static int OnStatus(http_parser* p, const char* at, size_t n);
  static int OnHeaderField(http_parser* p, const char* at, size_t n);
  static int OnHeaderValue(http_parser* p, const char* at, size_t n);
  static int OnHeadersComplete(http_parser* p);
  static int OnBodyCb(http_parser* p, const char* at, size_t n);
  static int OnMessageComplete(http_parser* p);

  const Kind kind_;
  const Http1Limits limits_;
  http_parser parser_;
  http_parser_settings settings_;
  Phase phase_ = Phase::kHead;
  Http1Error error_ = Http1Error::kNone;
  std::string detail_;
  // A head that came in several reads, collected. A head whole in one
  // read is walked and parsed where it lies (no copy).
  std::string head_buf_;
  size_t leading_skipped_ = 0;  // empty-line bytes skipped before the request line
  // Walk state, offsets from the head's first byte (so the same whether
  // the head is in head_buf_ or in the caller's bytes).
  size_t line_start_ = 0;      // first line not yet walked (> 0: the start line is)
  size_t lf_from_ = 0;         // where to resume looking for that line's LF
  bool line_partial_ = false;  // that line was seen incomplete
  size_t fields_ = 0;          // field lines walked
  // The first refusal of a line check: reported only when the head is
  // complete and within max_header_bytes, as a bare LF or an over-long
  // request line anywhere in the head is refused first (the same answer
  // whatever the segmentation).
  Http1Error deferred_ = Http1Error::kNone;
  const char* deferred_detail_ = nullptr;
  MessageHead head_;
  bool in_value_ = false;
  bool headers_done_ = false;
  bool message_done_ = false;
  bool request_was_head_ = false;
  uint64_t body_bytes_ = 0;
  Http1Sink* sink_ = nullptr;
};

// Lowercases ASCII in place.
void AsciiLower(std::string* s);

// `s` equals `lower` (all lowercase) ignoring ASCII case. Inline: the field
// name checks call it for every field of every message, mostly on names of
// a few bytes (absl::EqualsIgnoreCase is two calls deep).
inline bool EqualsLowerAscii(absl::string_view s, absl::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(s[i])) != lower[i]) return false;
  }
  return true;
}

}  // namespace lb::l7

#endif  // LB_LIB_L7_HTTP1_H_
