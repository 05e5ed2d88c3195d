#!/usr/bin/python3
"""Binary test: an idle TLS HTTP/1.1 keep-alive connection and an idle h2c
(HTTP/2 prior knowledge) connection are adopted by the new configuration's
workers (docs/L7.md "Applying"): real lb-l7 (--config, SIGHUP), real nginx
with two backends, a Python ssl client and raw HTTP/2 frames.

Usage: l7_tls_adopt_test.py LB_L7_BINARY
Checks: one TLS keep-alive connection answers from pool "a"; the route is
changed to pool "b" by rewriting the config and SIGHUP; the SAME connection
(same TCP socket, same local port, never closed, no Connection: close) then
answers from pool "b"; likewise an h2c connection and an ALPN h2 TLS
connection (no GOAWAY, same sockets, new streams answered from "b"); 0
failed requests; lb_l7_connections_adopted_total of the new generation
counts all three. Then a
change of the listener's tls block (plus the route back to "a"): the TLS
connection is not adopted (it drains: Connection: close or closed), the
h2c one is.
Bounded at 60 s (about 3 s).
"""
import os
import re
import signal
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import fail, free_port, run  # noqa: E402

H = lib.Harness(sys.argv[1], "l7tlsadopt-", 60)
path = H.path


def check(cond, msg):
    lib.check(cond, msg, H.deadline)


def write_config(port, port2, pool, ba, bb, certs=("c",)):
    cs = " ".join(f'certificates {{ cert_file: "{path(c)}.crt" key_file: "{path(c)}.key" }}'
                  for c in certs)
    return H.write("l7.textproto", f"""
listeners {{ name: "https" address: "127.0.0.1" port: {port} default_pool: "{pool}"
  tls {{ {cs} }} }}
listeners {{ name: "h2c" address: "127.0.0.1" port: {port2} default_pool: "{pool}" }}
pools {{ name: "a" backends {{ address: "127.0.0.1" port: {ba} }} }}
pools {{ name: "b" backends {{ address: "127.0.0.1" port: {bb} }} }}
""")


def get(sk):
    """One GET on the kept connection: (status, headers text, body)."""
    sk.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sk.recv(4096)
        check(chunk, "connection closed while waiting for an answer: %r" % buf)
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    check(m, "no Content-Length: %r" % head)
    while len(body) < int(m.group(1)):
        chunk = sk.recv(4096)
        check(chunk, "connection closed inside a body")
        body += chunk
    status = int(head.split(b" ", 2)[1])
    return status, head.decode(errors="replace"), body.decode()


DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0, 1, 3, 4, 7
END_STREAM, ACK, END_HEADERS = 1, 1, 4


def frame(typ, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", sid) + payload


def hpack(fields):
    """Literal fields without indexing, no Huffman; names/values < 127 bytes."""
    return b"".join(b"\x00" + bytes([len(n)]) + n.encode() + bytes([len(v)]) + v.encode()
                    for n, v in fields)


class H2:
    """One h2c connection of raw frames; get() opens the next stream."""

    def __init__(self, port, ctx=None):
        self.port = port
        self.sk = socket.create_connection(("127.0.0.1", port), timeout=5)
        if ctx is not None:  # ALPN h2 over TLS
            self.sk = ctx.wrap_socket(self.sk, server_hostname="a.example.com")
            check(self.sk.selected_alpn_protocol() == "h2", "ALPN did not pick h2")
        self.sk.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
        self.buf = b""
        self.sid = 1

    def frames(self):
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                if f[0] == SETTINGS and not f[1] & ACK:
                    self.sk.sendall(frame(SETTINGS, ACK, 0))
                yield f
            chunk = self.sk.recv(65536)
            check(chunk, "h2c connection closed")
            self.buf += chunk

    def get(self):
        sid, self.sid = self.sid, self.sid + 2
        self.sk.sendall(frame(HEADERS, END_STREAM | END_HEADERS, sid, hpack(
            [(":method", "GET"), (":scheme", "http"), (":authority", "a.example.com"),
             (":path", "/")])))
        body = b""
        for t, fl, i, p in self.frames():
            check(t != GOAWAY, "GOAWAY on the h2c connection: %r" % p)
            check(not (t == RST_STREAM and i == sid), "stream %d reset" % sid)
            if i == sid and t == DATA:
                body += p
            if i == sid and t in (DATA, HEADERS) and fl & END_STREAM:
                return body.decode()


def main():
    try:
        signal.signal(signal.SIGALRM, lambda *_: fail("timeout"))
        signal.alarm(60)
        for c, cn in (("c", "a.example.com"), ("d", "d.example.com")):
            r = run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-keyout", path(c + ".key"), "-out",
                     path(c + ".crt"), "-days", "30", "-subj", "/CN=" + cn,
                     "-addext", "subjectAltName=DNS:" + cn], timeout=30)
            check(r.returncode == 0, "openssl req: " + r.stderr)
            os.chmod(path(c + ".key"), 0o600)
        port, port2, ba, bb, admin = free_port(), free_port(), free_port(), free_port(), free_port()
        nd = path("nginx")
        H.start_nginx(nd, f"""
  access_log off;
  server {{ listen 127.0.0.1:{ba}; location / {{ default_type text/plain; return 200 "a\\n"; }} }}
  server {{ listen 127.0.0.1:{bb}; location / {{ default_type text/plain; return 200 "b\\n"; }} }}""",
                      stop=lib.quit_nginx)
        conf = write_config(port, port2, "a", ba, bb)
        lb, _ = H.start_lb("lb", conf, admin)
        lib.wait_port(port, 10)
        lib.wait_port(port2, 10)
        lib.wait_port(admin, 10)

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        sk = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="a.example.com")
        local = sk.getsockname()
        ok = 0
        for _ in range(3):
            st, head, body = get(sk)
            check(st == 200 and body == "a\n", f"before the change: {st} {body!r}")
            ok += 1
        h2 = H2(port2)
        h2local = h2.sk.getsockname()
        h2ctx = ssl.create_default_context()
        h2ctx.check_hostname = False
        h2ctx.verify_mode = ssl.CERT_NONE
        h2ctx.set_alpn_protocols(["h2"])
        h2s = H2(port, h2ctx)
        h2slocal = h2s.sk.getsockname()
        for _ in range(3):
            body = h2.get()
            check(body == "a\n", f"h2c before the change: {body!r}")
            body = h2s.get()
            check(body == "a\n", f"TLS h2 before the change: {body!r}")
            ok += 2
        before = lib.metric_sum(lib.scrape(admin), "lb_l7_connections_adopted_total")

        write_config(port, port2, "b", ba, bb)
        lb.send_signal(signal.SIGHUP)
        t_end = time.time() + 15
        switched = False
        while time.time() < t_end:
            st, head, body = get(sk)
            check(st == 200 and body in ("a\n", "b\n"), f"during the change: {st} {body!r}")
            check("connection: close" not in head.lower(),
                  "the old generation closed the TLS keep-alive connection: " + head)
            ok += 1
            if body == "b\n":
                switched = True
                break
            time.sleep(0.1)
        check(switched, "the kept TLS connection never answered from the new route")
        for _ in range(3):
            st, head, body = get(sk)
            check(st == 200 and body == "b\n", f"after the change: {st} {body!r}")
            check("connection: close" not in head.lower(), "Connection: close after adoption")
            ok += 1
        check(sk.getsockname() == local, "not the same TCP connection")
        t_end = time.time() + 15
        while time.time() < t_end:
            body = h2.get()
            check(body in ("a\n", "b\n"), f"h2c during the change: {body!r}")
            ok += 1
            if body == "b\n":
                break
            time.sleep(0.1)
        check(body == "b\n", "the kept h2c connection never answered from the new route")
        for _ in range(3):
            body = h2.get()
            check(body == "b\n", f"h2c after the change: {body!r}")
            ok += 1
        check(h2.sk.getsockname() == h2local, "not the same h2c connection")
        for _ in range(3):
            body = h2s.get()
            check(body == "b\n", f"TLS h2 after the change: {body!r}")
            ok += 1
        check(h2s.sk.getsockname() == h2slocal, "not the same TLS h2 connection")
        h2s.sk.close()
        after = lib.metric_sum(lib.scrape(admin), "lb_l7_connections_adopted_total")
        check(after >= 3 and after >= before + 3,
              f"lb_l7_connections_adopted_total {before} -> {after}: not all three adopted")
        print(f"ok TLS keep-alive connection (local port {local[1]}), h2c connection (local "
              f"port {h2local[1]}) and TLS h2 connection (local port {h2slocal[1]}) adopted "
              f"across a route "
              f"change: {ok} requests, 0 failures, answers from the new pool after it, "
              f"adopted_total {before:.0f} -> {after:.0f}", flush=True)

        # Other TLS settings on the listener: the TLS connection must not
        # skip them by moving with its old SSL_CTX; it drains instead.
        write_config(port, port2, "a", ba, bb, certs=("c", "d"))
        lb.send_signal(signal.SIGHUP)
        t_end = time.time() + 15
        while time.time() < t_end:
            body = h2.get()
            if body == "a\n":
                break
            time.sleep(0.1)
        check(body == "a\n", "the h2c connection never answered from the third configuration")
        third = lib.metric_sum(lib.scrape(admin), "lb_l7_connections_adopted_total")
        check(third in (1, after + 1), f"adopted_total {third} after a tls change: only the h2c "
              "connection may move")
        # Drained: closed (the idle grace passed), or the answer says
        # Connection: close. A timeout means neither: it did not drain.
        got = b""
        try:
            sk.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            while b"\r\n\r\n" not in got:
                chunk = sk.recv(4096)
                if not chunk:
                    break
                got += chunk
            closed = b"\r\n\r\n" not in got
        except (ConnectionError, ssl.SSLError):
            closed = True
        drained = closed or b"\r\nconnection: close" in got.lower()
        check(drained, "the TLS connection kept serving after its listener's tls block changed")
        sk.close()
        h2.sk.close()
        print("ok a changed tls block: the TLS connection drains instead of moving, h2c moves",
              flush=True)
        lb.send_signal(signal.SIGTERM)
        check(lb.wait(timeout=15) == 0, "lb-l7 did not exit 0 on SIGTERM")
        print("PASS", flush=True)
    finally:
        H.cleanup()


if __name__ == "__main__":
    main()
