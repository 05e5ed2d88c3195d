#!/usr/bin/python3
"""Binary test of lb-l7's downstream HTTP/2 (docs/L7.md "HTTP/2"): two real
nginx backends (HTTP/1.1), lb-l7 with a plaintext listener (h2c by prior
knowledge) and a TLS listener (ALPN h2), real curl, h2load and raw frames
from Python for what no client sends.

Usage: l7_h2_test.py LB_L7_BINARY
Checks (each prints "ok <name>"):
  h2c GET through the HTTP/1 pipeline (round robin over both nginx, header
  rules, X-Forwarded-*, Forwarded, X-Request-ID, route rules); HTTP/1.1 on
  the same listener still works; a 24 MiB POST streamed up (nginx received
  it all) and a 24 MiB download streamed down (same bytes) with lb-l7's peak
  RSS growing less than 16 MiB; Expect: 100-continue answered with an
  interim :status 100 from nginx; curl -Z with 100 transfers multiplexed
  over TLS h2 connections; h2load with 2000 requests over 4
  connections x 50 concurrent streams, 0 failed; curl --http2 over TLS
  negotiating h2 by ALPN (X-Forwarded-Proto: https); a request with a
  connection-specific field (Connection, Transfer-Encoding) and one with an
  upper-case name refused with RST_STREAM PROTOCOL_ERROR while the
  connection goes on serving, a path that is not origin-form answered 400,
  and none of them reaching nginx; 431 for a head above the limit; a body
  above max_body_bytes 413; a header block that never ends closed after
  client_header_ms although PINGs keep coming; the access log has one line per stream with
  proto=h2; metrics by protocol; SIGTERM: an idle h2 connection gets GOAWAY,
  a download in flight completes, exit 0. Bounded at 60 s.
"""
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import fail, free_port, run  # noqa: E402

H = lib.Harness(sys.argv[1], "l7h2-", 60)
WORK = H.work


def check(cond, msg):
    lib.check(cond, msg, H.deadline)


# ------------------------------------------------------------ raw frames ---
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 7, 8
END_STREAM, END_HEADERS, ACK = 1, 4, 1


def hpack_int(v, bits, first=0):
    top = (1 << bits) - 1
    if v < top:
        return bytes([first | v])
    out = [first | top]
    v -= top
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack(fields):
    """Literal fields without indexing, new names, no Huffman (RFC 7541 6.2.2)."""
    b = b""
    for n, v in fields:
        b += b"\x00" + hpack_int(len(n), 7) + n.encode() + hpack_int(len(v), 7) + v.encode()
    return b


def frame(typ, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", sid) + payload


def h2_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return s


def read_frames(s, until, timeout=5):
    """Frames (type, flags, stream, payload) until until(frames) or timeout/EOF."""
    frames, buf = [], b""
    end = time.time() + timeout
    while time.time() < end and not until(frames):
        s.settimeout(max(0.05, end - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n])
            buf = buf[9 + n:]
            if f[0] == SETTINGS and not f[1] & ACK:
                s.sendall(frame(SETTINGS, ACK, 0))
            frames.append(f)
    return frames


def request_fields(path="/echo", extra=(), port=0):
    return [(":method", "GET"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
            (":path", path)] + list(extra)


def stream_outcome(frames, sid):
    """'rst:<code>', 'status:<first header block byte>' or None."""
    for t, _, i, p in frames:
        if i != sid:
            continue
        if t == RST_STREAM:
            return "rst:%d" % int.from_bytes(p[:4], "big")
        if t == HEADERS:
            return "headers:%02x" % p[0]
    return None


# ------------------------------------------------------------------ setup ---
def make_cert():
    key, crt = H.path("lb.key"), H.path("lb.crt")
    r = run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-keyout", key, "-out", crt, "-days", "30",
             "-subj", "/CN=h2.test", "-addext", "subjectAltName=DNS:h2.test"], timeout=60)
    check(r.returncode == 0, "openssl req: " + r.stderr)
    os.chmod(key, 0o600)
    return crt, key


def start_nginx(name, port):
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "html"))
    H.start_nginx(d, f"""
  log_format h2t '$request_method $request_uri $request_length $status';
  access_log {d}/access.log h2t;
  keepalive_requests 100000;
  client_max_body_size 100m;
  server {{
    listen 127.0.0.1:{port};
    root {d}/html;
    location ~ ^/(echo|ruled)$ {{ default_type text/plain; return 200 "be={name} uri=$request_uri xff=$http_x_forwarded_for proto=$http_x_forwarded_proto fwd=$http_forwarded rid=$http_x_request_id host=$host added=$http_x_added cookie=$http_cookie\\n"; }}
    location = /upload {{ client_body_buffer_size 1m; proxy_pass http://127.0.0.1:{port}/sink; }}
    location = /sink {{ default_type text/plain; return 200 "stored\\n"; }}
    location = /hello {{ default_type text/plain; return 200 "hello\\n"; }}
  }}""")
    return d


def nginx_lines(d):
    try:
        return open(os.path.join(d, "access.log")).read().splitlines()
    except OSError:
        return []


def rss_kb(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main():
    crt, key = make_cert()
    p1, p2 = free_port(), free_port()
    n1, n2 = start_nginx("be1", p1), start_nginx("be2", p2)
    big = os.urandom(24 << 20)
    for d in (n1, n2):
        with open(os.path.join(d, "html", "big.bin"), "wb") as f:
            f.write(big)
    big_sha = hashlib.sha256(big).hexdigest()
    upload = H.path("upload.bin")
    with open(upload, "wb") as f:
        f.write(big)
    lport, tport, admin = free_port(), free_port(), free_port()
    conf = H.write("lb.textproto", f"""
listeners {{ name: "plain" address: "127.0.0.1" port: {lport} default_pool: "web"
  routes {{ name: "ruled" path {{ exact: "/ruled" }} pool: "web"
           request_headers_to_add {{ name: "X-Added" value: "yes" }} }} }}
listeners {{ name: "tls" address: "127.0.0.1" port: {tport} default_pool: "web"
  tls {{ certificates {{ cert_file: "{crt}" key_file: "{key}" }} }} }}
pools {{ name: "web" algorithm: ALGORITHM_ROUND_ROBIN
  backends {{ address: "127.0.0.1" port: {p1} }} backends {{ address: "127.0.0.1" port: {p2} }} }}
limits {{ max_header_bytes: 8192 max_body_bytes: 33554432 h2_max_concurrent_streams: 64 }}
""")
    access = H.path("access.log")
    lb, log = H.start("lb", [H.lb, "--config", conf, "--workers", "2", "--admin_port", str(admin),
                             "--access_log", access])
    if not lib.wait_ready(lb, log, 20):
        fail("lb-l7 did not start: " + open(log).read())
    base = f"http://127.0.0.1:{lport}"

    # h2c GET by prior knowledge, through the HTTP/1 pipeline.
    bes = set()
    for _ in range(4):
        r = run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-H", "Cookie: a=1",
                 "-H", "Cookie: b=2", f"{base}/echo"])
        check(r.returncode == 0 and r.stdout.startswith("HTTP/2 200"), "h2c GET: " + r.stdout + r.stderr)
        m = re.search(r"be=(\w+) uri=/echo xff=127\.0\.0\.1 proto=http fwd=for=127\.0\.0\.1;proto=http;"
                      r"host=\"127\.0\.0\.1:%d\" rid=([0-9a-f]{32}) host=127\.0\.0\.1 added= "
                      r"cookie=a=1; b=2" % lport, r.stdout)
        check(m is not None, "h2c forwarded headers: " + r.stdout)
        bes.add(m.group(1))
    check(bes == {"be1", "be2"}, f"round robin over h2: {bes}")
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-H", "X-Request-ID: keep-me-1",
             f"{base}/ruled"])
    check("added=yes " in r.stdout, "route rule (request_headers_to_add): " + r.stdout)
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-H", "X-Request-ID: keep-me-1",
             f"{base}/echo"])
    check("rid=keep-me-1 " in r.stdout, "X-Request-ID kept: " + r.stdout)
    r = run(["curl", "-sS", "--http1.1", "-D", "-", f"{base}/echo"])
    check(r.stdout.startswith("HTTP/1.1 200") and "be=" in r.stdout, "HTTP/1.1 beside h2c: " + r.stdout)
    print("ok h2c_get", flush=True)

    # Large bodies streamed both ways.
    rss0 = rss_kb(lb.pid, "VmHWM")
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
             "--data-binary", "@" + upload, f"{base}/upload"], timeout=30)
    check(r.stdout == "200 2", "h2c POST 24 MiB: " + r.stdout + r.stderr)
    ups = [l for d in (n1, n2) for l in nginx_lines(d) if l.startswith("POST /upload ")]
    check(len(ups) == 1 and int(ups[0].split()[2]) >= len(big), f"nginx got the upload: {ups}")
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", f"{base}/big.bin"],
                       capture_output=True, timeout=30)
    check(r.returncode == 0 and hashlib.sha256(r.stdout).hexdigest() == big_sha,
          f"h2c download 24 MiB: {len(r.stdout)} bytes {r.stderr}")
    r = run(["curl", "-sSv", "--http2-prior-knowledge", "-H", "Expect: 100-continue",
             "--data-binary", "@" + upload, "-o", "/dev/null", f"{base}/upload"], timeout=30)
    check(r.returncode == 0 and "< HTTP/2 100" in r.stderr and "< HTTP/2 200" in r.stderr,
          "Expect: 100-continue over h2: " + r.stderr[-1500:])
    grew = rss_kb(lb.pid, "VmHWM") - rss0
    check(grew < 16 * 1024, f"lb-l7 peak RSS grew {grew} KiB over 24 MiB each way")
    print(f"ok h2c_bodies (peak RSS +{grew} KiB)", flush=True)

    # Many concurrent streams: curl multiplexes 100 transfers on one TLS
    # connection (ALPN h2; curl 7.88's -Z fails its later transfers with
    # prior knowledge, against HAProxy too, so h2c concurrency is h2load's).
    urls = [f"https://127.0.0.1:{tport}/echo?n={i}" for i in range(100)]
    r = run(["curl", "-sSk", "--http2", "-Z", "--parallel-max", "100",
             "-w", "%{http_version} %{num_connects}\n", *urls], timeout=30)
    got = sorted(int(m) for m in re.findall(r"\?n=(\d+)", r.stdout))
    check(r.returncode == 0 and got == list(range(100)), "curl -Z: " + r.stdout[-500:] + r.stderr)
    conns = [l.split()[1] for l in r.stdout.splitlines() if re.fullmatch(r"2 \d+", l)]
    # curl opens a few connections before it learns (SETTINGS) that it may
    # multiplex; the rest of the transfers share them as streams.
    check(len(conns) == 100 and conns.count("0") >= 20,
          f"100 parallel transfers multiplexed over h2: connects {conns}")
    r = run(["h2load", "-n", "2000", "-c", "4", "-m", "50", f"{base}/hello"], timeout=40)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", r.stdout)
    check(m and m.group(4) == "2000" and m.group(5) == "0", "h2load: " + r.stdout[-800:] + r.stderr)
    check(re.search(r"status codes: 2000 2xx", r.stdout), "h2load statuses: " + r.stdout[-400:])
    print(f"ok concurrent_streams (curl -Z: 100 transfers on {100 - conns.count('0')} "
          "connections; h2load: 2000 requests, 4 x 50 streams, 0 failed)", flush=True)

    # TLS: h2 by ALPN.
    r = run(["curl", "-sS", "-k", "--http2", "-w", " v=%{http_version}",
             f"https://127.0.0.1:{tport}/echo"])
    check(r.returncode == 0 and "proto=https" in r.stdout and r.stdout.endswith("v=2"),
          "ALPN h2: " + r.stdout + r.stderr)
    r = run(["curl", "-sS", "-k", "--http1.1", "-w", " v=%{http_version}",
             f"https://127.0.0.1:{tport}/echo"])
    check(r.returncode == 0 and r.stdout.endswith("v=1.1"), "ALPN http/1.1: " + r.stdout + r.stderr)
    print("ok alpn_h2", flush=True)

    # Malformed requests: stream errors; the connection serves on.
    before = sum(len(nginx_lines(d)) for d in (n1, n2))
    s = h2_connect(lport)
    bad = {1: [("connection", "close")], 3: [("transfer-encoding", "chunked")], 5: [("X-Upper", "1")]}
    for sid, extra in bad.items():
        s.sendall(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                        hpack(request_fields("/bad%d" % sid, extra, lport))))
    s.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 7, hpack(request_fields("nopath", (), lport))))
    s.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 9, hpack(request_fields("/echo", (), lport))))
    fr = read_frames(s, lambda f: all(stream_outcome(f, i) for i in (1, 3, 5, 7, 9)))
    s.close()
    out = {i: stream_outcome(fr, i) for i in (1, 3, 5, 7, 9)}
    for sid in (1, 3, 5):
        check(out[sid] == "rst:1", f"stream {sid} {bad[sid]} refused with PROTOCOL_ERROR: {out}")
    check(out[7] in ("rst:1", "headers:8c"), f"non-origin-form :path refused: {out}")
    check(out[9] == "headers:88", f"a good request after the refusals: {out}")
    time.sleep(0.2)
    after = [l for d in (n1, n2) for l in nginx_lines(d)][before:]
    check(sum(len(nginx_lines(d)) for d in (n1, n2)) == before + 1,
          f"only the good request reached nginx: {after}")
    # Limits.
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
             "-H", "X-Big: " + "a" * 9000, f"{base}/echo"])
    check(r.stdout == "431", "h2 head above max_header_bytes: " + r.stdout + r.stderr)
    with open(H.path("toobig.bin"), "wb") as f:
        f.write(b"x" * (33 << 20))
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
             "--data-binary", "@" + H.path("toobig.bin"), f"{base}/upload"], timeout=30)
    check(r.stdout == "413", "h2 body above max_body_bytes: " + r.stdout + r.stderr)
    # Slowloris over h2: a header block that never ends, PINGs dripping in.
    # A second lb-l7 with a 1 s header timeout (a TLS handshake counts
    # against it too, so the main one keeps the default for curl -Z).
    sport = free_port()
    conf2 = H.write("slow.textproto", f"""
listeners {{ name: "plain" address: "127.0.0.1" port: {sport} default_pool: "web" }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {p1} }} }}
timeouts {{ client_header_ms: 1000 }}
""")
    lb2, log2 = H.start("lb-slow", [H.lb, "--config", conf2, "--workers", "1"])
    if not lib.wait_ready(lb2, log2, 20):
        fail("second lb-l7 did not start: " + open(log2).read())
    slow = h2_connect(sport)
    slow.sendall(frame(HEADERS, 0, 1, b"\x82"))  # :method GET, no END_HEADERS
    t0, closed = time.time(), False
    while time.time() - t0 < 6 and not closed:
        try:
            slow.sendall(frame(6, 0, 0, b"12345678"))  # PING
            slow.settimeout(0.2)
            while True:
                chunk = slow.recv(65536)
                if not chunk:
                    closed = True
                    break
        except socket.timeout:
            pass
        except OSError:
            closed = True
    slow.close()
    check(closed and time.time() - t0 < 5, f"unfinished h2 header block closed after "
          f"client_header_ms (1 s) despite PINGs: closed={closed} after {time.time() - t0:.1f} s")
    print("ok h2_refusals (connection/transfer-encoding/upper-case -> RST_STREAM, 400, 431, 413, "
          "slowloris header block closed)",
          flush=True)

    # Metrics and access log.
    text = lib.scrape(admin)
    h2req = lib.metric(text, "lb_l7_requests_by_protocol_total", protocol="h2")
    h1req = lib.metric(text, "lb_l7_requests_by_protocol_total", protocol="http/1.1")
    check(h2req is not None and h2req >= 2000 and h1req is not None and h1req >= 1,
          f"requests by protocol: h2={h2req} http/1.1={h1req}")
    check((lib.metric(text, "lb_l7_h2_connections_total") or 0) >= 8, "h2 connections counted")
    time.sleep(0.3)  # the writer thread
    lines = open(access).read().splitlines()
    h2lines = [l for l in lines if l.endswith(" proto=h2")]
    check(len(h2lines) >= 2000 and all(
        re.fullmatch(r"ts=\S+ rid=\S+ client=\S+ listener=(plain|tls) route=\S+ pool=\S+ "
                     r"backend=\S+ method=\S+ path=\S+ status=\d{3} req_body=\d+ "
                     r"resp_bytes=\d+ ms=[0-9.]+ attempts=\d+ proto=(h2|http/1\.1)", l) for l in lines),
          f"access log: {len(h2lines)} h2 lines of {len(lines)}")
    check(sum(" method=POST path=/upload status=200 req_body=%d " % len(big) in l for l in h2lines) == 2,
          "access log: the upload's body size")
    print(f"ok metrics_and_access_log ({len(h2lines)} h2 lines)", flush=True)

    # SIGTERM: GOAWAY on an idle h2 connection, a download in flight completes.
    idle = h2_connect(lport)
    read_frames(idle, lambda f: any(t == SETTINGS for t, *_ in f), timeout=2)
    dl = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", "12M",
                           f"{base}/big.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    lb.send_signal(signal.SIGTERM)
    fr = read_frames(idle, lambda f: any(t == GOAWAY for t, *_ in f), timeout=5)
    goaway = [p for t, _, _, p in fr if t == GOAWAY]
    check(goaway and int.from_bytes(goaway[0][4:8], "big") == 0, f"GOAWAY NO_ERROR on SIGTERM: {fr}")
    idle.close()
    body, err = dl.communicate(timeout=20)
    check(dl.returncode == 0 and hashlib.sha256(body).hexdigest() == big_sha,
          f"download across SIGTERM: rc={dl.returncode} {len(body)} bytes {err}")
    check(lb.wait(timeout=15) == 0, "lb-l7 exit status after drain")
    print("ok sigterm_goaway_drain", flush=True)


try:
    main()
    print("PASS", flush=True)
finally:
    H.cleanup()
