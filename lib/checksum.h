// The Internet checksum (RFC 1071), its incremental update (RFC 1624) and the
// pseudo-header sums that TCP, UDP and ICMPv6 checksums cover.
//
// Representation. A "partial sum" is a 32-bit one's-complement accumulator of
// data read as big-endian 16-bit words, so host-order numbers (a protocol, a
// length) can be added to it with ChecksumAdd(). ChecksumFold() turns a partial
// sum into the value that goes into a checksum field: host order, to be stored
// big-endian. Summing bytes that already hold a correct checksum folds to 0,
// which is how a checksum is verified.
//
// A buffer may be summed in several ChecksumPartial() calls only if every chunk
// but the last has an even length: an odd chunk is padded with one zero byte,
// as RFC 1071 pads the end of the data.
//
// Speed: ChecksumPartial() adds 8 bytes per step (unaligned loads through
// memcpy). Byte order never matters inside the loop (RFC 1071 §2(B)); the
// result is swapped once at the end.
//
// Failure: none. Thread-safety: pure functions on caller-owned bytes, callable
// from any thread, per packet (no allocation, no branches on data contents).
#ifndef LB_LIB_CHECKSUM_H_
#define LB_LIB_CHECKSUM_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lb {

namespace checksum_internal {

// a + b with the carry out of bit 63 added back in (one's-complement add).
inline uint64_t AddWithCarry(uint64_t a, uint64_t b) {
  a += b;
  return a + (a < b ? 1 : 0);
}

// Native-order 16-bit one's-complement sum -> the same sum over big-endian
// words (a byte swap commutes with the one's-complement sum).
inline uint32_t NativeToBig16(uint32_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return v;
#else
  return ((v & 0xff) << 8) | (v >> 8);
#endif
}

}  // namespace checksum_internal

// sum + value with end-around carry; value is a host-order number (e.g. the
// protocol or length of a pseudo-header).
inline uint32_t ChecksumAdd(uint32_t sum, uint32_t value) {
  const uint64_t s = static_cast<uint64_t>(sum) + value;
  return static_cast<uint32_t>((s & 0xffffffffu) + (s >> 32));
}

// Adds the bytes [data, data + len) to the partial sum `sum` (0 to start).
inline uint32_t ChecksumPartial(const void* data, size_t len, uint32_t sum) {
  using checksum_internal::AddWithCarry;
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t acc = 0;
  // Every load starts at an even offset, so each 64-, 32- or 16-bit word
  // contributes the same as its 16-bit words would (2^16 == 1 mod 2^16 - 1).
  while (len >= 32) {
    uint64_t w[4];
    std::memcpy(w, p, sizeof(w));
    acc = AddWithCarry(acc, w[0]);
    acc = AddWithCarry(acc, w[1]);
    acc = AddWithCarry(acc, w[2]);
    acc = AddWithCarry(acc, w[3]);
    p += 32;
    len -= 32;
  }
  while (len >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc = AddWithCarry(acc, w);
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc = AddWithCarry(acc, w);
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    acc = AddWithCarry(acc, w);
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    // The odd byte is the first byte of a zero-padded word, in either order.
    uint16_t w = 0;
    std::memcpy(&w, p, 1);
    acc = AddWithCarry(acc, w);
  }
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffu) + (acc >> 16);
  acc = (acc & 0xffffu) + (acc >> 16);
  acc = (acc & 0xffffu) + (acc >> 16);
  return ChecksumAdd(sum, checksum_internal::NativeToBig16(static_cast<uint32_t>(acc)));
}

// The checksum field value (host order) for a partial sum: folded to 16 bits
// and complemented. 0 when the summed bytes include a correct checksum.
inline uint16_t ChecksumFold(uint32_t sum) {
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffffu);
}

// RFC 1071 checksum of one buffer.
inline uint16_t Checksum(const void* data, size_t len) {
  return ChecksumFold(ChecksumPartial(data, len, 0));
}

// IPv4 header checksum over `header_len` bytes (IHL * 4). Zero the checksum
// field first to compute it; over a header with a correct checksum it is 0.
inline uint16_t Ipv4HeaderChecksum(const void* header, size_t header_len) {
  return Checksum(header, header_len);
}

// RFC 1624 eqn. 3: the new checksum after one 16-bit word covered by
// `old_checksum` changes from old_word to new_word (all host order).
// HC' = ~(~HC + ~m + m'); never turns a valid checksum into an invalid one.
inline uint16_t ChecksumUpdate16(uint16_t old_checksum, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = static_cast<uint16_t>(~old_checksum);
  sum += static_cast<uint16_t>(~old_word);
  sum += new_word;
  return ChecksumFold(sum);
}

// Same for a 32-bit field (an IPv4 address), as two 16-bit words.
inline uint16_t ChecksumUpdate32(uint16_t old_checksum, uint32_t old_value, uint32_t new_value) {
  uint32_t sum = static_cast<uint16_t>(~old_checksum);
  sum += static_cast<uint16_t>(~(old_value >> 16));
  sum += static_cast<uint16_t>(~old_value);
  sum += new_value >> 16;
  sum += new_value & 0xffffu;
  return ChecksumFold(sum);
}

// Partial sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source,
// destination, zero, protocol, upper-layer length.
inline uint32_t Ipv4PseudoHeaderSum(const uint8_t src[4], const uint8_t dst[4], uint8_t protocol,
                                    uint16_t upper_len) {
  uint32_t sum = ChecksumPartial(src, 4, 0);
  sum = ChecksumPartial(dst, 4, sum);
  return ChecksumAdd(sum, static_cast<uint32_t>(protocol) + upper_len);
}

// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
// 32-bit upper-layer length, three zero bytes, next header.
inline uint32_t Ipv6PseudoHeaderSum(const uint8_t src[16], const uint8_t dst[16],
                                    uint8_t next_header, uint32_t upper_len) {
  uint32_t sum = ChecksumPartial(src, 16, 0);
  sum = ChecksumPartial(dst, 16, sum);
  sum = ChecksumAdd(sum, upper_len >> 16);
  sum = ChecksumAdd(sum, upper_len & 0xffffu);
  return ChecksumAdd(sum, next_header);
}

inline constexpr uint8_t kIpProtoIcmpv6 = 58;

// ICMPv6 checksum (RFC 4443 §2.3) of the message [msg, msg + len) sent from
// src to dst. Zero the message's checksum field first to compute it; over a
// message with a correct checksum it is 0.
inline uint16_t Icmpv6Checksum(const uint8_t src[16], const uint8_t dst[16], const void* msg,
                               size_t len) {
  const uint32_t pseudo = Ipv6PseudoHeaderSum(src, dst, kIpProtoIcmpv6, static_cast<uint32_t>(len));
  return ChecksumFold(ChecksumPartial(msg, len, pseudo));
}

}  // namespace lb

#endif  // LB_LIB_CHECKSUM_H_
