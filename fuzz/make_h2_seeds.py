#!/usr/bin/python3
"""Writes the seeds of fuzz/corpus/h2_request/: client byte streams of an
HTTP/2 connection (preface, SETTINGS, requests), each after the target's 2
parameter bytes (the split point). HPACK literals without Huffman, written
here by hand so the seeds need nothing but Python. Deterministic: re-running
it changes nothing in the tree. Run: /usr/bin/python3 fuzz/make_h2_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "h2_request")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINDOW, CONT = 0, 1, 2, 3, 4, 6, 7, 8, 9
ES, EH, ACK = 1, 4, 1


def hint(v, bits, first=0):
    top = (1 << bits) - 1
    if v < top:
        return bytes([first | v])
    out = [first | top]
    v -= top
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    return bytes(out + [v])


def hpack(fields, index=False):
    b = b""
    for n, v in fields:
        b += (b"\x40" if index else b"\x00") + hint(len(n), 7) + n.encode() + hint(len(v), 7) + v.encode()
    return b


def frame(t, flags, sid, p=b""):
    return struct.pack(">I", len(p))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + p


def req(path="/", method="GET", extra=(), authority="example.com"):
    f = [(":method", method), (":scheme", "http"), (":path", path)]
    if authority is not None:
        f.append((":authority", authority))
    return f + list(extra)


START = PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535)) + frame(SETTINGS, ACK, 0)


def seeds():
    yield "get", START + frame(HEADERS, ES | EH, 1, hpack(req()))
    yield "get_indexed", START + frame(HEADERS, ES | EH, 1, hpack(req("/a?b=c"), True)) + \
        frame(HEADERS, ES | EH, 3, b"\xbe\xbf\xc0\xc1")
    yield "static_table", START + frame(HEADERS, ES | EH, 1, b"\x82\x86\x84\x41\x0bexample.com")
    yield "post_cl", START + frame(HEADERS, EH, 1, hpack(req("/up", "POST", [("content-length", "10")]))) + \
        frame(DATA, 0, 1, b"01234") + frame(DATA, ES, 1, b"56789")
    yield "post_chunked", START + frame(HEADERS, EH, 1, hpack(req("/up", "POST"))) + \
        frame(DATA, 0, 1, b"a" * 300) + frame(DATA, ES, 1, b"b" * 10)
    yield "post_trailers", START + frame(HEADERS, EH, 1, hpack(req("/up", "PUT"))) + \
        frame(DATA, 0, 1, b"abc") + frame(HEADERS, ES | EH, 1, hpack([("x-trailer", "1")]))
    yield "post_padded", START + frame(HEADERS, EH | 8, 1, b"\x03" + hpack(req("/p", "POST")) + b"\0\0\0") + \
        frame(DATA, ES | 8, 1, b"\x02xy\0\0")
    yield "cl_mismatch", START + frame(HEADERS, EH, 1, hpack(req("/up", "POST", [("content-length", "3")]))) + \
        frame(DATA, ES, 1, b"too long")
    yield "body_too_large", START + frame(HEADERS, EH, 1, hpack(req("/up", "POST"))) + \
        b"".join(frame(DATA, 0, 1, b"z" * 1500) for _ in range(4)) + frame(DATA, ES, 1, b"z")
    yield "cl_too_large", START + frame(HEADERS, ES | EH, 1, hpack(req("/", "POST", [("content-length", "99999")])))
    yield "many_streams", START + b"".join(
        frame(HEADERS, ES | EH, i, hpack(req("/s%d" % i, extra=[("x-n", str(i))]))) for i in range(1, 24, 2))
    yield "continuation", START + frame(HEADERS, ES, 1, hpack(req()[:2])) + frame(CONT, 0, 1, hpack(req()[2:3])) + \
        frame(CONT, EH, 1, hpack(req()[3:] + [("cookie", "a=1"), ("cookie", "b=2")]))
    yield "connection_header", START + frame(HEADERS, ES | EH, 1, hpack(req(extra=[("connection", "close")]))) + \
        frame(HEADERS, ES | EH, 3, hpack(req()))
    yield "te_header", START + frame(HEADERS, ES | EH, 1, hpack(req(extra=[("te", "gzip")]))) + \
        frame(HEADERS, ES | EH, 3, hpack(req(extra=[("te", "trailers")])))
    yield "upper_case", START + frame(HEADERS, ES | EH, 1, hpack(req(extra=[("X-Up", "1")])))
    yield "no_authority", START + frame(HEADERS, ES | EH, 1, hpack(req(authority=None))) + \
        frame(HEADERS, ES | EH, 3, hpack(req(authority=None, extra=[("host", "h.example")])))
    yield "host_disagrees", START + frame(HEADERS, ES | EH, 1, hpack(req(extra=[("host", "other.example")])))
    yield "bad_authority", START + frame(HEADERS, ES | EH, 1, hpack(req(authority="a b")))
    yield "asterisk", START + frame(HEADERS, ES | EH, 1, hpack(req("*", "OPTIONS"))) + \
        frame(HEADERS, ES | EH, 3, hpack(req("*", "GET")))
    yield "connect", START + frame(HEADERS, ES | EH, 1, hpack([(":method", "CONNECT"), (":authority", "x:443")]))
    yield "unknown_method", START + frame(HEADERS, ES | EH, 1, hpack(req(method="BREW")))
    yield "big_header", START + frame(HEADERS, ES | EH, 1, hpack(req(extra=[("x-big", "v" * 2100)])))
    yield "many_headers", START + frame(HEADERS, ES | EH, 1, hpack(req(extra=[("x-%d" % i, "1") for i in range(40)])))
    yield "long_path", START + frame(HEADERS, ES | EH, 1, hpack(req("/" + "p" * 600)))
    yield "control", START + frame(PING, 0, 0, b"12345678") + frame(WINDOW, 0, 0, struct.pack(">I", 1 << 20)) + \
        frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16)) + frame(HEADERS, ES | EH | 0x20, 1,
                                                                 struct.pack(">IB", 0, 16) + hpack(req()))
    yield "rst_mid_body", START + frame(HEADERS, EH, 1, hpack(req("/up", "POST"))) + frame(DATA, 0, 1, b"x") + \
        frame(RST, 0, 1, struct.pack(">I", 8)) + frame(HEADERS, ES | EH, 3, hpack(req()))
    yield "goaway", START + frame(HEADERS, ES | EH, 1, hpack(req())) + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0))
    yield "small_window", PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 10)) + \
        frame(HEADERS, ES | EH, 1, hpack(req())) + frame(WINDOW, 0, 1, struct.pack(">I", 100))
    yield "bad_preface", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(SETTINGS, 0, 0)
    yield "http1", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, payload in seeds():
        split = (len(payload) // 2) & 0xFFFF
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(struct.pack("<H", split) + payload)


if __name__ == "__main__":
    main()
