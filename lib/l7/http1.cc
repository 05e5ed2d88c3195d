#include "lib/l7/http1.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace lb::l7 {
namespace {

// Byte classes of the head checks, one table lookup per byte (field names
// always; the rest of a line only when the 8-byte scan below flags it).
enum : uint8_t {
  kTchar = 1,  // RFC 9110 §5.6.2 tchar
  kCtl = 2,    // refused in a field value: controls other than HTAB, and DEL
};
struct ByteClass {
  uint8_t c[256] = {};
  constexpr ByteClass() {
    for (int i = 0; i < 256; ++i) {
      const bool alnum = (i >= '0' && i <= '9') || (i >= 'a' && i <= 'z') || (i >= 'A' && i <= 'Z');
      bool t = alnum;
      for (const char* p = "!#$%&'*+-.^_`|~"; *p != 0; ++p) t = t || i == *p;
      if (t) c[i] |= kTchar;
      if ((i < 0x20 && i != '\t') || i == 0x7f) c[i] |= kCtl;
    }
  }
};
constexpr ByteClass kByteClass;

// RFC 9110 §5.6.2 tchar.
bool IsTchar(unsigned char c) { return kByteClass.c[c] & kTchar; }

// The walk over a head looks at 8 bytes at a time (SWAR) for the first byte
// below 0x20 or equal to 0x7f: in a clean line that is the CR of its CRLF,
// so one scan finds the line's end and clears it of controls, NUL, DEL,
// bare CR and LF. Anything else found first (HTAB, which a value may hold,
// or a byte to refuse) sends the line to the byte-table checks.
constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kLow7 = 0x7f * kOnes;
constexpr uint64_t kHigh = 0x80 * kOnes;
// The high bit of every byte of w that is zero, exactly (no carry crosses
// a byte: (x & 0x7f) + 0x7f <= 0xfe).
constexpr uint64_t ZeroBytes(uint64_t w) { return ~(((w & kLow7) + kLow7) | w) & kHigh; }
// The high bit of every byte < 0x20 (its top three bits clear) or == 0x7f.
constexpr uint64_t CtlBytes(uint64_t w) {
  return ZeroBytes(w & (0xe0 * kOnes)) | ZeroBytes(w ^ kLow7);
}
static_assert(CtlBytes(0x2020202020202020ULL) == 0);
static_assert(CtlBytes(0x8080808080808080ULL) == 0);
static_assert(CtlBytes(0xffffffffffffff7fULL) == 0x80);
static_assert(CtlBytes(0x1f20202020202020ULL) == (0x80ULL << 56));
static_assert(CtlBytes(0x2020202000202020ULL) == (0x80ULL << 24));

bool IsCtlOrDel(unsigned char c) { return c < 0x20 || c == 0x7f; }

// The first byte of base[i, size) below 0x20 or equal to 0x7f, or size.
size_t FindCtl(const char* base, size_t i, size_t size) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    std::memcpy(&w, base + i, 8);
    const uint64_t m = CtlBytes(w);
    if (m != 0) return i + static_cast<size_t>(__builtin_ctzll(m) >> 3);
  }
#endif
  for (; i < size; ++i) {
    if (IsCtlOrDel(static_cast<unsigned char>(base[i]))) return i;
  }
  return size;
}

constexpr size_t kNotClean = static_cast<size_t>(-1);

// The line of base at `pos` when the byte-table checks would find nothing
// in it: returns the index of its LF, or kNotClean when the line is not
// complete in base[0, size) or has anything those checks must look at (they
// then run on it and give the same answer as always). Field lines: a
// non-empty tchar name, a colon, then no control byte before CRLF. The start
// line: no control byte before CRLF (its shape is checked afterwards).
size_t CleanLineEnd(const char* base, size_t pos, size_t size, bool first) {
  size_t i = pos;
  if (!first) {
    // Field names are short: a table lookup per byte costs less here than
    // an 8-byte range test (callgrind: a SWAR name scan made WalkHead ~7%
    // dearer on h1_small).
    while (i < size && (kByteClass.c[static_cast<unsigned char>(base[i])] & kTchar)) ++i;
    if (i == pos || i >= size || base[i] != ':') {
      // The empty line that ends the head.
      if (i == pos && pos + 1 < size && base[pos] == '\r' && base[pos + 1] == '\n') return pos + 1;
      return kNotClean;
    }
    ++i;
  }
  const size_t k = FindCtl(base, i, size);
  if (k + 1 >= size || base[k] != '\r' || base[k + 1] != '\n') return kNotClean;
  return k + 1;
}

// Characters of a Host value we accept: reg-name, IPv4, bracketed IPv6, port.
bool IsHostChar(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == ':' || c == '[' || c == ']' ||
         c == '_' || c == '~';
}

absl::string_view Trim(absl::string_view s) { return absl::StripAsciiWhitespace(s); }

// Trim() of a view, inline for the usual case (nothing to strip).
void TrimInPlace(absl::string_view* s) {
  if (s->empty() || (!absl::ascii_isspace(static_cast<unsigned char>(s->front())) &&
                     !absl::ascii_isspace(static_cast<unsigned char>(s->back())))) {
    return;
  }
  *s = Trim(*s);
}

// "host:80" and "host" name the same authority for http; compare without a
// default port.
std::string NormalizeAuthority(absl::string_view a, absl::string_view scheme) {
  std::string s(a);
  AsciiLower(&s);
  const absl::string_view def = scheme == "https" ? ":443" : ":80";
  if (absl::EndsWith(s, def) && s.find(']', s.size() - def.size()) == std::string::npos) {
    s.resize(s.size() - def.size());
  }
  return s;
}

}  // namespace

void AsciiLower(std::string* s) {
  for (char& c : *s) c = absl::ascii_tolower(static_cast<unsigned char>(c));
}

// Blocks of HeaderList::kBlockBytes given back by this thread's lists
// (Release), for its next head. An lb-l7 worker is one thread, so this is
// a per-worker pool without a lock.
std::vector<std::unique_ptr<char[]>>& HeaderBlockPool() {
  static thread_local std::vector<std::unique_ptr<char[]>> pool;
  return pool;
}

absl::string_view HeaderList::Store(absl::string_view s) {
  if (s.empty()) return absl::string_view();
  while (block_ < blocks_.size() && used_ + s.size() > blocks_[block_].size) {
    ++block_;
    used_ = 0;
  }
  if (block_ == blocks_.size()) {
    std::vector<std::unique_ptr<char[]>>& pool = HeaderBlockPool();
    if (s.size() <= kBlockBytes && !pool.empty()) {
      blocks_.push_back(Block{std::move(pool.back()), kBlockBytes});
      pool.pop_back();
    } else {
      const size_t n = std::max(s.size(), kBlockBytes);
      blocks_.push_back(Block{std::unique_ptr<char[]>(new char[n]), n});
    }
    used_ = 0;
  }
  char* const d = blocks_[block_].bytes.get() + used_;
  std::memcpy(d, s.data(), s.size());
  used_ += s.size();
  return absl::string_view(d, s.size());
}

void HeaderList::Release() {
  clear();
  std::vector<std::unique_ptr<char[]>>& pool = HeaderBlockPool();
  for (Block& b : blocks_) {
    if (b.size == kBlockBytes && pool.size() < kPoolBlocks) pool.push_back(std::move(b.bytes));
  }
  blocks_.clear();
}

const absl::string_view* MessageHead::Find(absl::string_view name) const {
  for (const HeaderField& h : headers) {
    if (h.name.size() == name.size() && absl::EqualsIgnoreCase(h.name, name)) return &h.value;
  }
  return nullptr;
}

void MessageHead::Swap(MessageHead& o) {
  method.swap(o.method);
  target.swap(o.target);
  origin_form.swap(o.origin_form);
  host.swap(o.host);
  std::swap(status, o.status);
  reason.swap(o.reason);
  std::swap(major, o.major);
  std::swap(minor, o.minor);
  headers.swap(o.headers);
  std::swap(chunked, o.chunked);
  std::swap(content_length, o.content_length);
  std::swap(keep_alive, o.keep_alive);
  std::swap(body_until_close, o.body_until_close);
  std::swap(upgrade, o.upgrade);
}

void MessageHead::Clear() {
  method.clear();
  target.clear();
  origin_form.clear();
  host.clear();
  status = 0;
  reason.clear();
  major = minor = 1;
  headers.clear();
  chunked = false;
  content_length = -1;
  keep_alive = true;
  body_until_close = false;
  upgrade = false;
}

Http1Parser::Http1Parser(Kind kind, const Http1Limits& limits) : kind_(kind), limits_(limits) {
  http_parser_settings_init(&settings_);
  settings_.on_url = &OnUrl;
  settings_.on_status = &OnStatus;
  settings_.on_header_field = &OnHeaderField;
  settings_.on_header_value = &OnHeaderValue;
  settings_.on_headers_complete = &OnHeadersComplete;
  settings_.on_body = &OnBodyCb;
  settings_.on_message_complete = &OnMessageComplete;
  Reset();
}

void Http1Parser::Reset() {
  http_parser_init(&parser_, kind_ == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE);
  parser_.data = this;
  phase_ = Phase::kHead;
  error_ = Http1Error::kNone;
  detail_.clear();
  head_buf_.clear();
  leading_skipped_ = 0;
  line_start_ = 0;
  lf_from_ = 0;
  line_partial_ = false;
  fields_ = 0;
  deferred_ = Http1Error::kNone;
  deferred_detail_ = nullptr;
  head_.Clear();
  in_value_ = false;
  headers_done_ = false;
  message_done_ = false;
  request_was_head_ = false;
  body_bytes_ = 0;
  sink_ = nullptr;
}

void Http1Parser::ReleaseIdleMemory() {
  head_.headers.Release();
  if (head_buf_.capacity() > std::string().capacity()) std::string().swap(head_buf_);
}

int Http1Parser::status() const {
  const bool req = kind_ == Kind::kRequest;
  switch (error_) {
    case Http1Error::kNone:
      return 0;
    case Http1Error::kBadRequest:
      return req ? 400 : 502;
    case Http1Error::kHeaderTooLarge:
      return req ? 431 : 502;
    case Http1Error::kUriTooLong:
      return 414;
    case Http1Error::kBodyTooLarge:
      return req ? 413 : 502;
    case Http1Error::kNotImplemented:
      return req ? 501 : 502;
    case Http1Error::kBadVersion:
      return req ? 505 : 502;
  }
  return 400;
}

bool Http1Parser::Fail(Http1Error e, absl::string_view detail) {
  if (error_ == Http1Error::kNone) {
    error_ = e;
    detail_ = std::string(detail);
  }
  phase_ = Phase::kError;
  return false;
}

size_t Http1Parser::Feed(const char* data, size_t n, Http1Sink* sink) {
  switch (phase_) {
    case Phase::kHead:
      return FeedHead(data, n, sink);
    case Phase::kDone:
    case Phase::kError:
      return 0;
    case Phase::kBody:
      break;
  }
  if (n == 0) return 0;
  sink_ = sink;
  const size_t used = http_parser_execute(&parser_, &settings_, data, n);
  sink_ = nullptr;
  const http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (phase_ == Phase::kError) return used;  // a callback failed (limit)
  if (err != HPE_OK && err != HPE_PAUSED) {
    Fail(Http1Error::kBadRequest, http_errno_name(err));
    return used;
  }
  if (message_done_) {
    phase_ = Phase::kDone;
    sink->OnComplete();
  }
  return used;
}

bool Http1Parser::FeedEof(Http1Sink* sink) {
  if (phase_ != Phase::kBody) {
    if (phase_ == Phase::kHead && !head_buf_.empty())
      Fail(Http1Error::kBadRequest, "truncated head");
    return false;
  }
  sink_ = sink;
  http_parser_execute(&parser_, &settings_, nullptr, 0);
  sink_ = nullptr;
  if (message_done_) {
    phase_ = Phase::kDone;
    sink->OnComplete();
    return true;
  }
  Fail(Http1Error::kBadRequest, "truncated body");
  return false;
}

size_t Http1Parser::FeedHead(const char* data, size_t n, Http1Sink* sink) {
  size_t skipped = 0;
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
  // the request line (left over after a body by old clients).
  // Counted across calls, so the answer does not depend on segmentation.
  while (head_buf_.empty() && skipped < n && leading_skipped_ < 4 &&
         (data[skipped] == '\r' || data[skipped] == '\n')) {
    ++skipped;
    ++leading_skipped_;
  }
  data += skipped;
  n -= skipped;
  const size_t old = head_buf_.size();
  // Never hold more than the limit (plus the terminator) of a head.
  const size_t room = limits_.max_header_bytes + 4 > old ? limits_.max_header_bytes + 4 - old : 0;
  const size_t take = std::min(n, room);
  // The first bytes of a head are walked where they lie; collected only
  // when the head does not end in them.
  const bool in_place = old == 0;
  if (!in_place) head_buf_.append(data, take);
  const char* const base = in_place ? data : head_buf_.data();
  const size_t size = old + take;
  const Walk walk = WalkHead(base, size);
  if (walk == Walk::kFailed) return skipped + take;
  if (walk == Walk::kMore) {
    if (in_place) head_buf_.append(data, take);
    if (size > limits_.max_header_bytes) {
      Fail(Http1Error::kHeaderTooLarge, "header section too large");
    }
    return skipped + take;
  }
  const size_t head_size = line_start_;
  const size_t used = skipped + (head_size - old);
  if (!in_place) head_buf_.resize(head_size);
  if (head_size > limits_.max_header_bytes) {
    Fail(Http1Error::kHeaderTooLarge, "header section too large");
    return used;
  }
  if (deferred_ != Http1Error::kNone) {
    Fail(deferred_, deferred_detail_);
    return used;
  }
  // http-parser runs on the head's copy in the field list, so that the
  // fields it reports are views into bytes the head owns.
  const absl::string_view own = head_.headers.Store(absl::string_view(base, head_size));
  sink_ = sink;
  const size_t parsed = http_parser_execute(&parser_, &settings_, own.data(), head_size);
  sink_ = nullptr;
  if (phase_ == Phase::kError) return used;
  const http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if ((err != HPE_OK && err != HPE_PAUSED) || !headers_done_ ||
      (parsed != head_size && !message_done_)) {
    Fail(Http1Error::kBadRequest, err != HPE_OK ? http_errno_name(err) : "incomplete head");
    return used;
  }
  if (!CheckFraming()) return used;
  if (kind_ == Kind::kRequest && !CheckRequestHead()) return used;
  phase_ = message_done_ ? Phase::kDone : Phase::kBody;
  sink->OnHead(head_);
  if (message_done_) sink->OnComplete();
  return used;
}

// One walk over the lines, in order, so that which refusal wins does not
// depend on how the bytes were segmented: at once, a bare LF (it never ends
// a head we look for, CRLF CRLF: refused now rather than at the header
// timeout) and a request line already too long (414); the other line checks
// are deferred (Defer) to the end of the head. A line is looked at once:
// CleanLineEnd when it is whole in the bytes first walked, else memchr for
// its LF (resumed across reads) and CheckLine when it completes. Bytes after
// the head (the body) are not looked at.
Http1Parser::Walk Http1Parser::WalkHead(const char* base, size_t size) {
  // The request-line limit: the first position past max_uri_bytes + 32
  // before the first LF.
  const size_t uri_limit = limits_.max_uri_bytes + 32;
  const bool check_uri = kind_ == Kind::kRequest;
  while (true) {
    const size_t pos = line_start_;
    const bool first = pos == 0;
    size_t eol = line_partial_ ? kNotClean : CleanLineEnd(base, pos, size, first);
    const bool clean = eol != kNotClean;
    if (!clean) {
      const size_t from = std::max(pos, lf_from_);
      const void* lf = from < size ? std::memchr(base + from, '\n', size - from) : nullptr;
      if (lf == nullptr) {
        if (first && check_uri && uri_limit < size) {
          Fail(Http1Error::kUriTooLong, "request line too long");
          return Walk::kFailed;
        }
        lf_from_ = size;
        line_partial_ = true;
        return Walk::kMore;
      }
      eol = static_cast<size_t>(static_cast<const char*>(lf) - base);
    }
    if (first && check_uri && uri_limit < eol) {
      Fail(Http1Error::kUriTooLong, "request line too long");
      return Walk::kFailed;
    }
    if (!clean && (eol == 0 || base[eol - 1] != '\r')) {
      Fail(Http1Error::kBadRequest, "bare LF in head");
      return Walk::kFailed;
    }
    line_start_ = eol + 1;
    lf_from_ = eol + 1;
    line_partial_ = false;
    const size_t len = eol - 1 - pos;
    // An empty line ends the head, unless it is the first: more empty lines
    // before the request line than we skip (http-parser would skip them
    // too and parse a head these checks never saw).
    if (len == 0 && !first) return Walk::kEnd;
    if (deferred_ != Http1Error::kNone) continue;  // the first refusal is kept
    if (!clean) {
      CheckLine(base + pos, len, first);
    } else if (len == 0) {
      Defer(Http1Error::kBadRequest, "empty lines before the start line");
    } else if (first) {
      CheckStartLine(absl::string_view(base + pos, len));
    }
    // A field line that passed its checks (clean, or by the byte table).
    if (!first && deferred_ == Http1Error::kNone && ++fields_ > limits_.max_header_count) {
      Defer(Http1Error::kHeaderTooLarge, "too many header fields");
    }
  }
}

void Http1Parser::Defer(Http1Error e, const char* detail) {
  if (deferred_ != Http1Error::kNone) return;
  deferred_ = e;
  deferred_detail_ = detail;
}

// The byte-table checks of a line, for the lines CleanLineEnd did not clear.
void Http1Parser::CheckLine(const char* line, size_t len, bool first) {
  if (std::memchr(line, '\r', len) != nullptr) {
    return Defer(Http1Error::kBadRequest, "bare CR in head");
  }
  if (len == 0) return Defer(Http1Error::kBadRequest, "empty lines before the start line");
  if (first) {
    for (size_t k = 0; k < len; ++k) {
      if (IsCtlOrDel(static_cast<unsigned char>(line[k]))) {
        return Defer(Http1Error::kBadRequest, "control character in start line");
      }
    }
    return CheckStartLine(absl::string_view(line, len));
  }
  if (line[0] == ' ' || line[0] == '\t') return Defer(Http1Error::kBadRequest, "obs-fold");
  const void* cp = std::memchr(line, ':', len);
  const size_t colon = cp == nullptr ? len : static_cast<const char*>(cp) - line;
  if (cp == nullptr || colon == 0) {
    return Defer(Http1Error::kBadRequest, "field without name or colon");
  }
  for (size_t k = 0; k < colon; ++k) {
    if (!(kByteClass.c[static_cast<unsigned char>(line[k])] & kTchar)) {
      return Defer(Http1Error::kBadRequest, line[k] == ' ' || line[k] == '\t'
                                                ? "whitespace before colon"
                                                : "bad character in field name");
    }
  }
  for (size_t k = colon + 1; k < len; ++k) {
    if (kByteClass.c[static_cast<unsigned char>(line[k])] & kCtl) {
      return Defer(Http1Error::kBadRequest, "control character in field value");
    }
  }
}

// The start line's shape, exactly (the Debian build of http-parser lets
// some of it through, e.g. "H^TP/1.0"): request-line = method SP target SP
// HTTP-version (RFC 9112 §3), status-line = HTTP-version SP 3DIGIT [SP reason].
void Http1Parser::CheckStartLine(absl::string_view line) {
  auto is_version = [](absl::string_view v) {
    return v.size() == 8 && absl::StartsWith(v, "HTTP/") && absl::ascii_isdigit(v[5]) &&
           v[6] == '.' && absl::ascii_isdigit(v[7]);
  };
  if (kind_ == Kind::kRequest) {
    const size_t sp1 = line.find(' ');
    if (sp1 == 0 || sp1 == absl::string_view::npos) {
      return Defer(Http1Error::kBadRequest, "request line without method and target");
    }
    const size_t sp2 = line.find(' ', sp1 + 1);
    for (size_t i = 0; i < sp1; ++i) {
      if (!IsTchar(static_cast<unsigned char>(line[i]))) {
        return Defer(Http1Error::kBadRequest, "bad method");
      }
    }
    if (sp2 == absl::string_view::npos) {
      return Defer(Http1Error::kBadRequest, "HTTP/0.9 request line");  // "GET /" alone
    }
    if (sp2 == sp1 + 1 || line.find(' ', sp2 + 1) != absl::string_view::npos ||
        !is_version(line.substr(sp2 + 1))) {
      return Defer(Http1Error::kBadRequest, "malformed request line");
    }
    return;
  }
  if (line.size() < 12 || !is_version(line.substr(0, 8)) || line[8] != ' ' ||
      !absl::ascii_isdigit(line[9]) || !absl::ascii_isdigit(line[10]) ||
      !absl::ascii_isdigit(line[11]) || (line.size() > 12 && line[12] != ' ')) {
    return Defer(Http1Error::kBadRequest, "malformed status line");
  }
}

bool Http1Parser::CheckFraming() {
  int cl = 0, te = 0;
  for (HeaderField& f : head_.headers) {
    TrimInPlace(&f.value);
    if (EqualsLowerAscii(f.name, "content-length")) {
      ++cl;
      // 1..18 digits, nothing else (no sign, no list): cannot overflow.
      uint64_t v = 0;
      bool digits = !f.value.empty() && f.value.size() <= 18;
      for (size_t i = 0; digits && i < f.value.size(); ++i) {
        const unsigned d = static_cast<unsigned char>(f.value[i]) - unsigned{'0'};
        digits = d <= 9;
        v = v * 10 + d;
      }
      if (!digits) return Fail(Http1Error::kBadRequest, "malformed Content-Length");
      head_.content_length = static_cast<int64_t>(v);
    } else if (EqualsLowerAscii(f.name, "transfer-encoding")) {
      ++te;
      if (!absl::EqualsIgnoreCase(f.value, "chunked")) {
        // RFC 9112 §6.1 allows 501 here; a proxy cannot tell an unknown
        // coding from an obfuscated "chunked" meant for the next hop, so it
        // is refused as bad framing.
        return Fail(Http1Error::kBadRequest, "transfer coding other than chunked");
      }
    }
  }
  if (cl > 1) return Fail(Http1Error::kBadRequest, "several Content-Length");
  if (te > 1) return Fail(Http1Error::kBadRequest, "several Transfer-Encoding");
  if (cl && te) return Fail(Http1Error::kBadRequest, "Content-Length with Transfer-Encoding");
  if (te && head_.major == 1 && head_.minor == 0 && kind_ == Kind::kRequest) {
    return Fail(Http1Error::kBadRequest, "Transfer-Encoding in HTTP/1.0");
  }
  head_.chunked = te > 0;
  if (kind_ == Kind::kRequest && limits_.max_body_bytes != 0 && head_.content_length > 0 &&
      static_cast<uint64_t>(head_.content_length) > limits_.max_body_bytes) {
    return Fail(Http1Error::kBodyTooLarge, "Content-Length over the body limit");
  }
  if (kind_ == Kind::kResponse) {
    head_.body_until_close = !head_.chunked && head_.content_length < 0 && !request_was_head_ &&
                             head_.status >= 200 && head_.status != 204 && head_.status != 304;
  }
  return true;
}

bool Http1Parser::CheckRequestHead() {
  if (head_.major == 0) return Fail(Http1Error::kBadRequest, "HTTP/0.9");
  if (head_.major != 1) return Fail(Http1Error::kBadVersion, "HTTP version not 1.x");
  if (parser_.method == HTTP_CONNECT) return Fail(Http1Error::kNotImplemented, "CONNECT");
  int hosts = 0;
  std::string host;
  for (const HeaderField& f : head_.headers) {
    if (EqualsLowerAscii(f.name, "host")) {
      ++hosts;
      host.assign(f.value.data(), f.value.size());
    }
  }
  if (hosts > 1) return Fail(Http1Error::kBadRequest, "several Host");
  if (hosts == 0 && head_.minor >= 1) return Fail(Http1Error::kBadRequest, "HTTP/1.1 without Host");
  if (hosts == 1 && host.empty()) return Fail(Http1Error::kBadRequest, "empty Host");
  for (unsigned char c : host) {
    if (!IsHostChar(c)) return Fail(Http1Error::kBadRequest, "bad character in Host");
  }
  AsciiLower(&host);
  const std::string& t = head_.target;
  if (t.size() > limits_.max_uri_bytes) return Fail(Http1Error::kUriTooLong, "target too long");
  if (!t.empty() && t[0] == '/') {
    head_.origin_form = t;
  } else if (t == "*") {
    if (parser_.method != HTTP_OPTIONS) return Fail(Http1Error::kBadRequest, "* target");
    head_.origin_form = t;
  } else {
    http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(t.data(), t.size(), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST)) ||
        (u.field_set & (1 << UF_USERINFO))) {
      return Fail(Http1Error::kBadRequest, "target neither origin-form nor absolute-form");
    }
    std::string scheme = t.substr(u.field_data[UF_SCHEMA].off, u.field_data[UF_SCHEMA].len);
    AsciiLower(&scheme);
    if (scheme != "http" && scheme != "https") return Fail(Http1Error::kBadRequest, "scheme");
    // Authority: from the host to the end of the port (brackets of an IPv6
    // literal included).
    const size_t a_begin = t.find("//") + 2;
    size_t a_end = t.find_first_of("/?#", a_begin);
    if (a_end == std::string::npos) a_end = t.size();
    const std::string authority = NormalizeAuthority(t.substr(a_begin, a_end - a_begin), scheme);
    if (authority.empty()) return Fail(Http1Error::kBadRequest, "empty authority");
    for (unsigned char c : authority) {
      if (!IsHostChar(c)) return Fail(Http1Error::kBadRequest, "bad character in authority");
    }
    if (hosts == 1 && NormalizeAuthority(host, scheme) != authority) {
      return Fail(Http1Error::kBadRequest, "Host disagrees with absolute-form target");
    }
    host = authority;
    head_.origin_form = a_end < t.size() && t[a_end] != '#' ? t.substr(a_end) : "/";
    if (head_.origin_form[0] == '?') head_.origin_form.insert(0, "/");
    const size_t hash = head_.origin_form.find('#');
    if (hash != std::string::npos) head_.origin_form.resize(hash);
  }
  head_.host = host;
  head_.upgrade = parser_.upgrade && parser_.method == HTTP_GET && !head_.chunked &&
                  head_.content_length <= 0 && head_.Find("upgrade") != nullptr;
  return true;
}

int Http1Parser::OnUrl(http_parser* p, const char* at, size_t n) {
  auto* self = static_cast<Http1Parser*>(p->data);
  self->head_.target.append(at, n);
  if (self->head_.target.size() > self->limits_.max_uri_bytes) {
    self->Fail(Http1Error::kUriTooLong, "target too long");
    return -1;
  }
  return 0;
}

int Http1Parser::OnStatus(http_parser* p, const char* at, size_t n) {
  static_cast<Http1Parser*>(p->data)->head_.reason.append(at, n);
  return 0;
}

// `at` points into the head's copy in head_.headers (FeedHead), so a field
// is two views, set where a piece starts. A piece reported in parts (never
// seen: the head is parsed in one call) grows its view, or is joined in a
// new copy should the parts not be adjacent.
void Http1Parser::Extend(absl::string_view* v, const char* at, size_t n) {
  if (v->empty()) {
    *v = absl::string_view(at, n);
  } else if (v->data() + v->size() == at) {
    *v = absl::string_view(v->data(), v->size() + n);
  } else {
    std::string joined(*v);
    joined.append(at, n);
    *v = head_.headers.Store(joined);
  }
}

int Http1Parser::OnHeaderField(http_parser* p, const char* at, size_t n) {
  auto* self = static_cast<Http1Parser*>(p->data);
  if (self->headers_done_) return 0;  // trailer: dropped
  HeaderList& fields = self->head_.headers;
  if (self->in_value_ || fields.empty()) {
    fields.emplace_back().name = absl::string_view(at, n);
    self->in_value_ = false;
    return 0;
  }
  self->Extend(&fields.back().name, at, n);
  return 0;
}

int Http1Parser::OnHeaderValue(http_parser* p, const char* at, size_t n) {
  auto* self = static_cast<Http1Parser*>(p->data);
  if (self->headers_done_) return 0;
  HeaderList& fields = self->head_.headers;
  if (fields.empty()) return -1;
  if (!self->in_value_) {
    // The first piece of this field's value (emplace_back left it empty).
    fields.back().value = absl::string_view(at, n);
    self->in_value_ = true;
    return 0;
  }
  self->Extend(&fields.back().value, at, n);
  return 0;
}

int Http1Parser::OnHeadersComplete(http_parser* p) {
  auto* self = static_cast<Http1Parser*>(p->data);
  MessageHead& h = self->head_;
  self->headers_done_ = true;
  h.major = p->http_major;
  h.minor = p->http_minor;
  h.keep_alive = http_should_keep_alive(p) != 0;
  if (self->kind_ == Kind::kRequest) {
    h.method = http_method_str(static_cast<http_method>(p->method));
  } else {
    h.status = p->status_code;
    // A response to HEAD has no body whatever its head says.
    if (self->request_was_head_) return 1;
  }
  return 0;
}

int Http1Parser::OnBodyCb(http_parser* p, const char* at, size_t n) {
  auto* self = static_cast<Http1Parser*>(p->data);
  self->body_bytes_ += n;
  if (self->kind_ == Kind::kRequest && self->limits_.max_body_bytes != 0 &&
      self->body_bytes_ > self->limits_.max_body_bytes) {
    self->Fail(Http1Error::kBodyTooLarge, "body over the limit");
    return -1;
  }
  if (self->sink_ != nullptr) self->sink_->OnBody(at, n);
  return 0;
}

int Http1Parser::OnMessageComplete(http_parser* p) {
  auto* self = static_cast<Http1Parser*>(p->data);
  self->message_done_ = true;
  // One message per Feed: pipelined bytes stay with the caller until this
  // request is answered (responses go out in order).
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace lb::l7
