// A strict parser of the first bytes of a TLS connection: the records that
// carry the ClientHello, and the server_name extension inside it (RFC 8446
// §4.1.2, §5.1; RFC 6066 §3). lb-l7's SNI passthrough listeners route on the
// name without terminating TLS (docs/L7.md "SNI passthrough").
//
// Contract: ParseClientHello looks at everything the client sent so far
// (from the first byte of the connection) and says whether it is a complete,
// well-formed ClientHello (then `sni` is the host name, lowercased, or empty
// when the client sent none), needs more bytes, or is refused. It never reads
// outside [data, data + n) and never allocates beyond the handshake message
// it reassembles (at most `max_bytes`). Records: handshake type (22) only,
// version 3.x, 1..16384 bytes each; the handshake message may span records
// and a record boundary may fall anywhere in it (also inside its 4-byte
// header). Refused (kMalformed): another record type before the ClientHello
// is complete, a first handshake message that is not a ClientHello, any
// length that disagrees with its container, bytes after the ClientHello in
// its last record, a duplicate extension, a server_name list that is empty,
// has two host names, or a host name that is not LDH labels of 1..63 bytes,
// 1..255 bytes in all, without a trailing dot. Unknown extensions and
// unknown name types are skipped (GREASE, RFC 8701). kTooLarge: the
// handshake message, or the bytes needed to see its end, exceed max_bytes.
//
// Threads: a pure function of its arguments.
#ifndef LB_LIB_L7_CLIENT_HELLO_H_
#define LB_LIB_L7_CLIENT_HELLO_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace lb::l7 {

enum class HelloStatus {
  kNeedMore,   // a prefix of a possibly valid ClientHello
  kOk,         // complete; `sni` set (empty = no server_name extension)
  kMalformed,  // not TLS, or a ClientHello this parser refuses
  kTooLarge,   // above max_bytes
};

struct HelloResult {
  HelloStatus status = HelloStatus::kNeedMore;
  std::string sni;       // kOk only: the host_name, lowercased; "" = none
  size_t hello_end = 0;  // kOk only: bytes of `data` up to the end of the last record used
  const char* why = "";  // kMalformed / kTooLarge: a short static reason (tests, logs)
};

// The default bound on the record bytes buffered to find the ClientHello.
inline constexpr size_t kDefaultMaxClientHelloBytes = 16384;

HelloResult ParseClientHello(const uint8_t* data, size_t n,
                             size_t max_bytes = kDefaultMaxClientHelloBytes);

}  // namespace lb::l7

#endif  // LB_LIB_L7_CLIENT_HELLO_H_
