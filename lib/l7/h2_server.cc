#include "lib/l7/h2_server.h"

#include <http_parser.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lb::l7 {

PrefaceMatch MatchH2Preface(absl::string_view b) {
  if (b.size() >= kH2Preface.size()) {
    return b.substr(0, kH2Preface.size()) == kH2Preface ? PrefaceMatch::kYes : PrefaceMatch::kNo;
  }
  return kH2Preface.substr(0, b.size()) == b ? PrefaceMatch::kPartial : PrefaceMatch::kNo;
}

namespace {

bool IsHostChar(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == ':' || c == '[' || c == ']' ||
         c == '_' || c == '~';
}

std::string WithoutDefaultPort(std::string s) {
  AsciiLower(&s);
  for (absl::string_view def : {":80", ":443"}) {
    if (absl::EndsWith(s, def)) s.resize(s.size() - def.size());
  }
  return s;
}

// A method the HTTP/1 side knows (http-parser's list): upstream requests
// are HTTP/1.1, and an HTTP/1 client could not send any other either.
bool KnownMethod(absl::string_view m) {
#define LB_H2_METHOD(num, name, string) \
  if (m == #string) return true;
  HTTP_METHOD_MAP(LB_H2_METHOD)
#undef LB_H2_METHOD
  return false;
}

// Fields HTTP/2 forbids in a response (RFC 9113 §8.2.2).
bool ConnectionSpecific(absl::string_view lower) {
  return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
         lower == "transfer-encoding" || lower == "upgrade" || lower == "te";
}

}  // namespace

struct H2Server::Stream {
  MessageHead head;
  std::string authority, host, cookie, content_length;
  int hosts = 0, lengths = 0;
  size_t bytes = 0, count = 0;
  int refuse = 0;          // status decided while the head came in (431)
  bool notified = false;   // the sink knows this stream
  bool head_done = false;  // the request's header block has ended
  bool delivered = false;  // OnRequest happened and no refusal since
  bool ended = false;
  uint64_t body = 0;
  void* user = nullptr;
  Stream* prev = nullptr;  // H2Server::live_ (freed with the session)
  Stream* next = nullptr;
};

struct H2Callbacks {
  static H2Server::Stream* Get(nghttp2_session* s, int32_t id) {
    return static_cast<H2Server::Stream*>(nghttp2_session_get_stream_user_data(s, id));
  }

  static int OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
    auto* h = static_cast<H2Server*>(ud);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto* st = new H2Server::Stream;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    st->next = h->live_;
    if (h->live_ != nullptr) h->live_->prev = st;
    h->live_ = st;
    ++h->open_;
    ++h->heads_pending_;
    return 0;
  }

  static int OnHeader(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    auto* h = static_cast<H2Server*>(ud);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    H2Server::Stream* st = Get(s, f->hd.stream_id);
    if (st == nullptr || st->refuse != 0) return 0;
    st->bytes += namelen + valuelen + 32;
    ++st->count;
    if (st->bytes > h->settings_.limits.max_header_bytes ||
        st->count > h->settings_.limits.max_header_count + 4) {
      st->refuse = 431;
      return 0;
    }
    const absl::string_view n(reinterpret_cast<const char*>(name), namelen);
    const absl::string_view v(reinterpret_cast<const char*>(value), valuelen);
    MessageHead& m = st->head;
    if (!n.empty() && n[0] == ':') {
      // nghttp2 checked the pseudo-headers (known, once each, first).
      if (n == ":method") m.method = std::string(v);
      if (n == ":path") m.target = std::string(v);
      if (n == ":authority") st->authority = std::string(v);
      return 0;
    }
    if (n == "host") {
      ++st->hosts;
      st->host = std::string(v);
      return 0;
    }
    if (n == "content-length") {
      ++st->lengths;
      st->content_length = std::string(v);
      return 0;
    }
    if (n == "cookie") {
      // RFC 9113 §8.2.3: crumbs joined for an HTTP/1.1 hop.
      absl::StrAppend(&st->cookie, st->cookie.empty() ? "" : "; ", v);
      return 0;
    }
    if (m.headers.size() >= h->settings_.limits.max_header_count) {
      st->refuse = 431;
      return 0;
    }
    m.headers.Add(n, v);
    return 0;
  }

  // The head is complete: check it and hand it to the sink (or refuse it).
  static void FinishHead(H2Server* h, int32_t id, H2Server::Stream* st, bool end_stream) {
    st->head_done = true;
    --h->heads_pending_;
    const Http1Limits& lim = h->settings_.limits;
    MessageHead& m = st->head;
    int status = st->refuse;
    const char* why = "request header fields too large";
    auto fail = [&](int s, const char* w) {
      if (status == 0) {
        status = s;
        why = w;
      }
    };
    if (m.method == "CONNECT") fail(501, "CONNECT");
    if (!KnownMethod(m.method)) fail(501, "unknown method");
    if (m.target.size() > lim.max_uri_bytes) fail(414, "path too long");
    if (!m.target.empty() && m.target[0] == '/') {
      m.origin_form = m.target;
    } else if (m.target == "*" && m.method == "OPTIONS") {
      m.origin_form = m.target;
    } else {
      fail(400, "path neither origin-form nor *");
    }
    if (st->hosts > 1) fail(400, "several Host");
    std::string host = st->authority.empty() ? st->host : st->authority;
    if (!st->authority.empty() && st->hosts == 1 &&
        WithoutDefaultPort(st->host) != WithoutDefaultPort(st->authority)) {
      fail(400, "Host disagrees with :authority");
    }
    if (host.empty()) fail(400, "no :authority and no Host");
    for (unsigned char c : host) {
      if (!IsHostChar(c)) {
        fail(400, "bad character in authority");
        break;
      }
    }
    AsciiLower(&host);
    m.host = host;
    m.content_length = -1;
    if (st->lengths > 1) fail(400, "several Content-Length");
    if (st->lengths == 1) {
      uint64_t cl = 0;
      const std::string& v = st->content_length;
      bool digits = !v.empty() && v.size() <= 18;
      for (unsigned char c : v) digits = digits && absl::ascii_isdigit(c);
      if (!digits || !absl::SimpleAtoi(v, &cl)) {
        fail(400, "bad Content-Length");
      } else if (lim.max_body_bytes != 0 && cl > lim.max_body_bytes) {
        fail(413, "Content-Length above the limit");
      } else {
        m.content_length = static_cast<int64_t>(cl);
      }
    }
    if (end_stream && m.content_length < 0 && m.method != "GET" && m.method != "HEAD" &&
        m.method != "OPTIONS" && m.method != "DELETE" && m.method != "TRACE") {
      m.content_length = 0;  // a POST without a body: say so upstream
    }
    m.chunked = !end_stream && m.content_length < 0;
    if (!st->cookie.empty()) m.headers.Add("cookie", st->cookie);
    m.major = 2;
    m.minor = 1;
    m.keep_alive = true;
    m.upgrade = false;
    st->notified = true;
    if (status != 0) {
      h->sink_->OnRefused(id, status, why);
      return;
    }
    st->delivered = true;
    h->sink_->OnRequest(id, &m, end_stream);
  }

  static int OnFrameRecv(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
    auto* h = static_cast<H2Server*>(ud);
    const int32_t id = f->hd.stream_id;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    H2Server::Stream* st = Get(s, id);
    if (st == nullptr) return 0;
    const bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
      FinishHead(h, id, st, end);
      st = Get(s, id);
      if (st == nullptr) return 0;
    }
    if (end && st->delivered && !st->ended) {
      st->ended = true;
      h->sink_->OnRequestEnd(id);
    }
    return 0;
  }

  static int OnDataChunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len,
                         void* ud) {
    auto* h = static_cast<H2Server*>(ud);
    H2Server::Stream* st = Get(s, id);
    if (st == nullptr || !st->delivered) {
      nghttp2_session_consume(s, id, len);  // nobody wants it: window back at once
      return 0;
    }
    st->body += len;
    const uint64_t max = h->settings_.limits.max_body_bytes;
    if (max != 0 && st->body > max) {
      st->delivered = false;
      nghttp2_session_consume(s, id, len);
      h->sink_->OnRefused(id, 413, "body above the limit");
      return 0;
    }
    h->sink_->OnData(id, reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int OnStreamClose(nghttp2_session* s, int32_t id, uint32_t code, void* ud) {
    auto* h = static_cast<H2Server*>(ud);
    H2Server::Stream* st = Get(s, id);
    if (st == nullptr) return 0;
    if (st->notified) h->sink_->OnStreamClose(id, code);  // User(id) still answers
    nghttp2_session_set_stream_user_data(s, id, nullptr);
    if (st->prev != nullptr) st->prev->next = st->next;
    if (st->next != nullptr) st->next->prev = st->prev;
    if (h->live_ == st) h->live_ = st->next;
    --h->open_;
    if (!st->head_done) --h->heads_pending_;
    delete st;
    return 0;
  }

  static ssize_t ReadBody(nghttp2_session*, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                          nghttp2_data_source*, void* ud) {
    auto* h = static_cast<H2Server*>(ud);
    bool eof = false;
    const ssize_t n = h->sink_->ReadBody(id, buf, len, &eof);
    if (n < 0) return NGHTTP2_ERR_DEFERRED;
    if (eof) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return n;
  }
};

H2Server::H2Server(const H2Settings& settings, H2Sink* sink) : sink_(sink), settings_(settings) {
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, H2Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, H2Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, H2Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, H2Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, H2Callbacks::OnStreamClose);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  const nghttp2_settings_entry iv[] = {
      {static_cast<int32_t>(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
       settings_.max_concurrent_streams},
      {static_cast<int32_t>(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), settings_.stream_window},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 2);
  const uint64_t conn_window =
      std::min<uint64_t>(uint64_t{settings_.max_concurrent_streams} * settings_.stream_window,
                         (uint64_t{1} << 31) - 1);
  if (conn_window > 65535) {
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(conn_window));
  }
}

H2Server::~H2Server() {
  // nghttp2_session_del frees its streams without callbacks: ours here.
  while (live_ != nullptr) {
    Stream* st = live_;
    live_ = st->next;
    delete st;
  }
  nghttp2_session_del(session_);
}

bool H2Server::Recv(const char* data, size_t n) {
  ++depth_;
  const ssize_t r = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), n);
  --depth_;
  return r >= 0;
}

void H2Server::Send(std::string* out, size_t cap) {
  ++depth_;
  while (out->size() < cap) {
    const uint8_t* d = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &d);
    if (n <= 0) break;
    out->append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
  }
  --depth_;
}

bool H2Server::WantsWrite() const { return nghttp2_session_want_write(session_) != 0; }

bool H2Server::Alive() const {
  return nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0;
}

void H2Server::SetUser(int32_t id, void* user) {
  auto* st = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id));
  if (st != nullptr) st->user = user;
}

void* H2Server::User(int32_t id) const {
  auto* st = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session_, id));
  return st != nullptr ? st->user : nullptr;
}

bool H2Server::SubmitResponse(int32_t id, absl::string_view head, bool with_body) {
  // "HTTP/1.1 200 OK\r\n" then "Name: value\r\n" lines, then "\r\n": written
  // by lb-l7 itself (lib/l7/headers.cc), never by a peer.
  std::vector<std::string> store;
  std::vector<nghttp2_nv> nv;
  size_t eol = head.find("\r\n");
  if (eol == absl::string_view::npos || head.size() < 12) return false;
  store.reserve(64);
  store.emplace_back(head.substr(9, 3));
  size_t pos = eol + 2;
  std::vector<std::pair<size_t, size_t>> pairs;  // indexes into store
  pairs.emplace_back(SIZE_MAX, 0);
  while (pos < head.size()) {
    eol = head.find("\r\n", pos);
    if (eol == absl::string_view::npos || eol == pos) break;
    const absl::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    AsciiLower(&name);
    if (ConnectionSpecific(name)) continue;
    absl::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    store.push_back(std::move(name));
    store.emplace_back(value);
    pairs.emplace_back(store.size() - 2, store.size() - 1);
  }
  static const char kStatus[] = ":status";
  for (const auto& [n, v] : pairs) {
    nghttp2_nv e;
    if (n == SIZE_MAX) {
      e.name = reinterpret_cast<uint8_t*>(const_cast<char*>(kStatus));
      e.namelen = sizeof(kStatus) - 1;
      e.value = reinterpret_cast<uint8_t*>(store[0].data());
      e.valuelen = store[0].size();
    } else {
      e.name = reinterpret_cast<uint8_t*>(store[n].data());
      e.namelen = store[n].size();
      e.value = reinterpret_cast<uint8_t*>(store[v].data());
      e.valuelen = store[v].size();
    }
    e.flags = NGHTTP2_NV_FLAG_NONE;
    nv.push_back(e);
  }
  nghttp2_data_provider prd;
  prd.source.ptr = nullptr;
  prd.read_callback = H2Callbacks::ReadBody;
  return nghttp2_submit_response(session_, id, nv.data(), nv.size(), with_body ? &prd : nullptr) ==
         0;
}

bool H2Server::SubmitInterim(int32_t id, int status) {
  std::string code = absl::StrCat(status);
  static const char kStatus[] = ":status";
  nghttp2_nv nv;
  nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(kStatus));
  nv.namelen = sizeof(kStatus) - 1;
  nv.value = reinterpret_cast<uint8_t*>(code.data());
  nv.valuelen = code.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;
  return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, id, nullptr, &nv, 1, nullptr) >= 0;
}

void H2Server::ResumeData(int32_t id) { nghttp2_session_resume_data(session_, id); }

void H2Server::ResetStream(int32_t id, uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
}

void H2Server::Consume(int32_t id, size_t n) {
  if (n > 0) nghttp2_session_consume(session_, id, n);
}

void H2Server::Shutdown() {
  if (goaway_) return;
  goaway_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

}  // namespace lb::l7
