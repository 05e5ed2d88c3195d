#!/usr/bin/python3
"""Binary test of lb-l7 (dataplane/l7): the real proxy between curl / raw
sockets and two real nginx backends, all on loopback ports picked free at
start. Starts and stops everything itself (nginx, lb-l7, a silent TCP
backend for 504), bounded in time, temp dir removed.

Usage: l7_proxy_test.py LB_L7_BINARY
Checks (each prints "ok <name>" or fails with the reason):
  routing + round robin, header rules, keep-alive reuse (curl and pool
  counters), pipelining in order, chunked upload streamed, 64 MiB up and down
  with bounded lb-l7 RSS, every smuggling vector answered 400 and nothing
  reaching nginx, limits (431, 414, 413), slowloris 408/close, 502/503/504,
  a backend killed under GETs with 0 failures, SIGTERM drain.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import check, fail, free_port  # noqa: E402

H = lib.Harness(sys.argv[1], "l7test-", 240)
LB, WORK, PROCS, DEADLINE = H.lb, H.work, H.procs, H.deadline
stop_nginx = lib.kill_nginx
cleanup = H.cleanup


def start_nginx(name, port):
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "html"))
    with open(os.path.join(d, "html", "index.html"), "w") as f:
        f.write("backend %s\n" % name)
    with open(os.path.join(d, "html", "big"), "wb") as f:
        f.truncate(64 << 20)  # 64 MiB of zeros, sparse
    return H.start_nginx(d, f"""
  log_format l7 '$request_uri $status $request_length $http_x_request_id';
  access_log {d}/access.log l7;
  keepalive_timeout 65;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port};
    listen [::1]:{port};
    root {d}/html;
    client_max_body_size 200m;
    location = /upload {{ proxy_pass http://127.0.0.1:{port}/sink; }}
    location = /sink {{ default_type text/plain; return 200 "received\\n"; }}
    location = /echo {{ default_type text/plain; return 200 "uri=$request_uri xff=$http_x_forwarded_for fwd=$http_forwarded proto=$http_x_forwarded_proto port=$http_x_forwarded_port rid=$http_x_request_id host=$host conn=$http_connection foo=$http_foo keep=$http_keep_alive added=$http_x_added dbg=$http_x_debug be={name}\\n"; }}
    location = /hop {{ default_type text/plain; add_header Connection "x-secret"; add_header X-Secret "s"; add_header Keep-Alive "timeout=5"; return 200 "hop\\n"; }}
    location / {{ default_type text/html; }}
  }}""")


def access_lines(d):
    try:
        return open(d + "/access.log").read().splitlines()
    except OSError:
        return []


def raw(port, data, timeout=3.0, shut=False):
    """Sends `data`, returns (everything read until close or timeout, closed?)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    closed = False
    end = time.time() + timeout
    try:
        while time.time() < end:
            s.settimeout(max(0.05, end - time.time()))
            b = s.recv(65536)
            if not b:
                closed = True
                break
            out += b
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    return out, closed


def curl(*args, timeout=30):
    r = subprocess.run(["curl", "-sS", "-m", str(timeout)] + list(args), capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def metric(admin, name):
    return lib.metric_sum(lib.scrape(admin, timeout=3), name, int)


def check_histograms(text):
    """Per histogram and pool: buckets cumulative (never decreasing), le
    ending at +Inf, and _count equal to the +Inf bucket."""
    series = {}
    for line in text.splitlines():
        m = re.match(r'(lb_l7_\w+_seconds)_(bucket|count)\{pool="([^"]*)"(?:,le="([^"]+)")?\} (\d+)$',
                     line)
        if m:
            series.setdefault((m[1], m[3]), []).append((m[2], m[4], int(m[5])))
    names = {k[0] for k in series}
    check(names == {"lb_l7_request_duration_seconds", "lb_l7_upstream_response_seconds"},
          f"histograms found: {names}")
    for key, rows in series.items():
        buckets = [v for kind, _, v in rows if kind == "bucket"]
        les = [le for kind, le, _ in rows if kind == "bucket"]
        count = [v for kind, _, v in rows if kind == "count"]
        check(len(buckets) == 15 and les[-1] == "+Inf", f"{key}: buckets {les}")
        check(all(a <= b for a, b in zip(buckets, buckets[1:])), f"{key}: not monotone {buckets}")
        check(count == [buckets[-1]], f"{key}: _count {count} != +Inf bucket {buckets[-1]}")


def rss_peak_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def start_lb(conf_text, name, admin):
    p, log = H.start_lb(name, H.write(name + ".textproto", conf_text), admin,
                        extra=["--drain_timeout_ms", "5000",
                               "--access_log", os.path.join(WORK, name + "-access.log")])
    if lib.wait_ready(p, log, 5):
        return p, log
    fail("lb-l7 did not start: " + open(log).read())


def main():
    p1, p2, silent_port, dead_port = free_port(), free_port(), free_port(), free_port()
    ws_port = free_port()
    lport, admin = free_port(), free_port()
    l6port = free_port()
    be1 = start_nginx("be1", p1)
    be2 = start_nginx("be2", p2)
    # A backend that accepts and never answers (504).
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind(("127.0.0.1", silent_port))
    silent.listen(64)
    # An Upgrade backend: answers 101 to "Upgrade: test", then echoes bytes.
    ws = socket.socket()
    ws.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ws.bind(("127.0.0.1", ws_port))
    ws.listen(16)
    ws_heads = []

    def ws_conn(s):
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(4096)
            if not b:
                return
            head += b
        head, rest = head.split(b"\r\n\r\n", 1)
        ws_heads.append(head.decode())
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
        if rest:
            s.sendall(rest)
        while True:
            b = s.recv(65536)
            if not b:
                break
            s.sendall(b)
        s.close()

    def ws_accept():
        while True:
            try:
                s, _ = ws.accept()
            except OSError:
                return
            threading.Thread(target=ws_conn, args=(s,), daemon=True).start()

    threading.Thread(target=ws_accept, daemon=True).start()

    conf = f"""
listeners {{ name: "main" address: "127.0.0.1" port: {lport} default_pool: "web"
  routes {{ name: "slow" path {{ prefix: "/slow" }} pool: "silent" }}
  routes {{ name: "dead" path {{ exact: "/dead" }} pool: "dead" }}
  routes {{ name: "ws" path {{ prefix: "/ws" }} pool: "ws" }}
  routes {{ name: "only2" hosts: "*.two.test" pool: "two" }}
  routes {{ name: "canary" headers {{ name: "X-Canary" exact: "1" }} pool: "two"
    request_headers_to_add {{ name: "X-Added" value: "from-route" }}
    request_headers_to_remove: "X-Debug"
    response_headers_to_remove: "Server"
    response_headers_to_add {{ name: "X-Route" value: "canary" }} }}
  routes {{ name: "re" path {{ regex: "/re/[0-9]+" }} methods: "GET" pool: "two" }}
}}
listeners {{ name: "v6" address: "::1" port: {l6port} default_pool: "v6" }}
pools {{ name: "v6" backends {{ address: "::1" port: {p1} }} }}
pools {{ name: "web" algorithm: ALGORITHM_ROUND_ROBIN
  backends {{ address: "127.0.0.1" port: {p1} }} backends {{ address: "127.0.0.1" port: {p2} }} }}
pools {{ name: "two" backends {{ address: "127.0.0.1" port: {p2} }} }}
pools {{ name: "ws" backends {{ address: "127.0.0.1" port: {ws_port} }} }}
pools {{ name: "silent" backends {{ address: "127.0.0.1" port: {silent_port} }} }}
pools {{ name: "dead" eject_after_failures: 2 eject_ms: 60000
  backends {{ address: "127.0.0.1" port: {dead_port} }} }}
limits {{ max_header_bytes: 4096 max_header_count: 20 max_uri_bytes: 1024
  max_body_bytes: 100000000 buffer_bytes: 65536 }}
timeouts {{ client_header_ms: 1000 upstream_response_ms: 800 idle_ms: 1500 client_body_ms: 1000 }}
"""
    lb, lb_log = start_lb(conf, "lb", admin)
    base = f"http://127.0.0.1:{lport}"

    # --- routing and round robin -------------------------------------------
    seen = set()
    for _ in range(8):
        rc, out, err = curl(base + "/")
        check(rc == 0, "GET / failed: " + err)
        seen.add(out.decode().strip())
    check(seen == {"backend be1", "backend be2"}, f"round robin reached {seen}")
    for _ in range(4):
        rc, out, _ = curl("-H", "Host: a.two.test", base + "/")
        check(out == b"backend be2\n", f"*.two.test routed to {out!r}")
        rc, out, _ = curl(base + "/re/123")
        check(out == b"backend be2\n" or b"404" in out, f"regex route: {out!r}")
    rc, out, _ = curl("-o", "/dev/null", "-w", "%{http_code}", base + "/re/123")
    check(out == b"404", f"regex route to be2's missing file: {out!r}")  # be2 has no /re/123
    print("ok routing_round_robin", flush=True)

    # --- header rules ----------------------------------------------------------
    rc, out, _ = curl("-H", "X-Forwarded-For: 203.0.113.9", "-H", "Connection: foo, keep-alive",
                      "-H", "Foo: secret", "-H", "Keep-Alive: timeout=9",
                      "-H", "X-Request-ID: abc-123", base + "/echo?q=1")
    t = out.decode()
    check("xff=203.0.113.9, 127.0.0.1 " in t, "X-Forwarded-For not appended: " + t)
    check(f"fwd=for=127.0.0.1;proto=http;host=\"127.0.0.1:{lport}\"" in t, "Forwarded: " + t)
    check("proto=http " in t and f"port={lport} " in t, "X-Forwarded-Proto/Port: " + t)
    check("rid=abc-123 " in t, "X-Request-ID not kept: " + t)
    check("conn= " in t and "foo= " in t and "keep= " in t,
          "hop-by-hop / Connection-named header forwarded: " + t)
    check("uri=/echo?q=1 " in t, "target: " + t)
    for _ in range(4):  # header-matched route: always be2, rules applied both ways
        rc, out, _ = curl("-i", "-H", "X-Canary: 1", "-H", "X-Debug: 1", base + "/echo")
        t = out.decode()
        check("added=from-route dbg= be=be2" in t, "route header rules / match: " + t)
        check("\r\nX-Route: canary\r\n" in t and "\r\nServer:" not in t, "response rules: " + t)
    rc, out, _ = curl(base + "/echo")
    check(re.search(r"rid=[0-9a-f]{32} ", out.decode()), "X-Request-ID not generated: " + out.decode())
    rc, out, _ = curl("-i", base + "/hop")
    hdrs = out.decode().lower()
    check("x-secret" not in hdrs and "keep-alive: timeout" not in hdrs,
          "response hop-by-hop headers forwarded: " + hdrs)
    # A second listener, IPv6 both sides: its own route table and pool.
    rc, out, err = curl("-g", f"http://[::1]:{l6port}/echo")
    t = out.decode()
    check(rc == 0 and "be=be1" in t and 'fwd=for="[::1]";proto=http;host="[::1]:%d"' % l6port in t
          and "xff=::1 " in t, "IPv6 listener: " + t + err)
    print("ok header_rules (and an IPv6 listener)", flush=True)

    # --- keep-alive: client side and upstream pool -------------------------------
    reused0 = metric(admin, "lb_l7_upstream_reused_total")
    hist0 = metric(admin, "lb_l7_request_duration_seconds_count")
    up0 = metric(admin, "lb_l7_upstream_response_seconds_count")
    rc, out, err = curl("-v", *([base + "/"] * 10))
    check(rc == 0 and err.count("Re-using existing connection") >= 9, "client keep-alive: " + err)
    reused = metric(admin, "lb_l7_upstream_reused_total") - reused0
    check(reused >= 8, f"upstream pool reused only {reused} of 10")
    # The latency histograms count each of the 10 answers once.
    hist = metric(admin, "lb_l7_request_duration_seconds_count") - hist0
    up = metric(admin, "lb_l7_upstream_response_seconds_count") - up0
    check(hist == 10 and up == 10, f"histogram counts {hist} and {up} for 10 requests")
    print(f"ok keep_alive (upstream reuse {reused}/10)", flush=True)

    # --- /metrics is promtool-clean -------------------------------------------------
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=3).read()
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    check(r.returncode == 0, "promtool check metrics: " + (r.stdout + r.stderr).decode())
    check(b'lb_l7_requests_total{listener="main",route="only2",pool="two",class="2xx"} 4' in text,
          "route counter for only2")
    check_histograms(text.decode())
    print("ok metrics_promtool (and histograms)", flush=True)

    # --- pipelining: three requests in one write, answers in order -------------------
    req = b"".join(b"GET /echo?n=%d HTTP/1.1\r\nHost: p\r\n\r\n" % i for i in range(3))
    out, _ = raw(lport, req + b"GET /echo?n=3 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
    order = re.findall(rb"uri=/echo\?n=(\d)", out)
    check(order == [b"0", b"1", b"2", b"3"], f"pipelined answers out of order: {order}")
    check(out.count(b"HTTP/1.1 200") == 4, "pipelining statuses")
    print("ok pipelining", flush=True)

    # --- chunked upload streamed, and 64 MiB both ways with bounded RSS ------------------
    # Peak RSS from here on: clear_refs 5 resets VmHWM to the current RSS.
    with open(f"/proc/{lb.pid}/clear_refs", "w") as f:
        f.write("5")
    rss_before = rss_peak_kib(lb.pid)
    src = os.path.join(WORK, "upload.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(8 << 20))
    rc, out, err = curl("-T", src, "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
                        base + "/upload")
    check(rc == 0 and out == b"received\n", f"chunked upload: {out!r} {err}")
    big = os.path.join(WORK, "big.bin")
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    rc, out, err = curl("--data-binary", "@" + big, base + "/upload", timeout=60)
    check(rc == 0 and out == b"received\n", f"64 MiB upload: {out!r} {err}")
    for _ in range(30):  # nginx logs a moment after it answered
        lengths = [int(l.split()[2]) for d in (be1, be2) for l in access_lines(d)
                   if l.startswith("/upload ")]
        if max(lengths + [0]) >= 64 << 20:
            break
        time.sleep(0.1)
    check(max(lengths + [0]) >= 64 << 20, f"nginx never got the 64 MiB body: {lengths}")
    rc, out, err = curl("-o", "/dev/null", "-w", "%{size_download}", base + "/big", timeout=60)
    check(rc == 0 and out == str(64 << 20).encode(), f"64 MiB download: {out!r} {err}")
    grew = rss_peak_kib(lb.pid) - rss_before
    check(grew < 16 * 1024, f"lb-l7 peak RSS grew {grew} KiB moving 64 MiB bodies")
    print(f"ok bodies_streamed (lb-l7 peak RSS grew {grew} KiB for 64 MiB bodies)", flush=True)

    # --- smuggling vectors: 400, connection closed, nothing reaches nginx -------------------
    vectors = {
        "cl_and_te": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "te_and_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "dup_cl_same": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        "dup_cl_diff": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "cl_list": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        "cl_plus": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        "cl_neg": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "cl_hex": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
        "te_obfuscated": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "te_list": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        "te_dup": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "te_http10": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "chunk_size_overflow": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
        "chunk_no_crlf": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n",
        "obs_fold": b"GET /echo HTTP/1.1\r\nHost: a\r\nFoo: a\r\n  folded\r\n\r\n",
        "obs_fold_te": b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        "space_before_colon": b"GET /echo HTTP/1.1\r\nHost : a\r\n\r\n",
        "space_before_colon_cl": b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc",
        "tab_before_colon": b"GET /echo HTTP/1.1\r\nHost: a\r\nFoo\t: b\r\n\r\n",
        "ctl_in_value": b"GET /echo HTTP/1.1\r\nHost: a\r\nFoo: a\x01b\r\n\r\n",
        "nul_in_value": b"GET /echo HTTP/1.1\r\nHost: a\r\nFoo: a\x00b\r\n\r\n",
        "bare_cr_in_value": b"GET /echo HTTP/1.1\r\nHost: a\r\nFoo: a\rb\r\n\r\n",
        "bare_lf": b"GET /echo HTTP/1.1\nHost: a\n\n",
        "no_host_11": b"GET /echo HTTP/1.1\r\nFoo: b\r\n\r\n",
        "two_hosts": b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "http09": b"GET /echo\r\n\r\n",
        "absolute_host_mismatch": b"GET http://evil.test/echo HTTP/1.1\r\nHost: good.test\r\n\r\n",
        "bad_host_chars": b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n",
        "space_in_target": b"GET /ec ho HTTP/1.1\r\nHost: a\r\n\r\n",
    }
    # nginx logs a moment after it answers: start from a settled log.
    before_lines = access_lines(be1) + access_lines(be2)
    for _ in range(20):
        time.sleep(0.2)
        now_lines = access_lines(be1) + access_lines(be2)
        if now_lines == before_lines:
            break
        before_lines = now_lines
    before = len(before_lines)
    for name, data in vectors.items():
        out, closed = raw(lport, data, timeout=3.0)
        status = out.split(b"\r\n", 1)[0]
        check(status == b"HTTP/1.1 400 Bad Request", f"smuggling {name}: answered {status!r}")
        check(closed, f"smuggling {name}: connection left open")
    time.sleep(0.3)
    after = len(access_lines(be1)) + len(access_lines(be2))
    new_lines = [l for l in access_lines(be1) + access_lines(be2) if l not in before_lines]
    check(after == before, f"smuggling vectors reached nginx: {after - before} access log lines "
          f"{new_lines[:5]}")
    # Control: the absolute form that agrees with Host passes, as origin-form.
    out, _ = raw(lport, b"GET http://good.test/echo?x HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
    check(b"200 OK" in out and b"uri=/echo?x " in out, f"absolute-form control: {out!r}")
    print(f"ok smuggling ({len(vectors)} vectors, 0 reached nginx)", flush=True)

    # --- memory per idle keep-alive connection ----------------------------------------
    def rss_kib():
        for line in open(f"/proc/{lb.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def open_idle(n):
        conns = []
        for _ in range(n):  # one after another: few upstream connections
            s = socket.create_connection(("127.0.0.1", lport), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            got = b""
            while b"backend" not in got:
                got += s.recv(4096)
            conns.append(s)
        return conns

    # Measured on connections opened one after another (few upstream
    # connections), after the traffic above has set up both workers' arenas.
    rss0 = rss_kib()
    idle_conns = open_idle(1000)
    time.sleep(0.2)
    per_conn = (rss_kib() - rss0) * 1024 // len(idle_conns)
    for s in idle_conns:
        s.close()
    check(per_conn < 8192, f"{per_conn} bytes of lb-l7 RSS per idle keep-alive connection")
    print(f"ok idle_memory ({per_conn} bytes per idle keep-alive connection)", flush=True)

    # --- limits ------------------------------------------------------------------
    big_hdr = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    out, closed = raw(lport, big_hdr)
    check(out.startswith(b"HTTP/1.1 431"), f"header bytes: {out[:40]!r}")
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(30)) + b"\r\n"
    out, closed = raw(lport, many)
    check(out.startswith(b"HTTP/1.1 431"), f"header count: {out[:40]!r}")
    out, closed = raw(lport, b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 414"), f"URI length: {out[:40]!r}")
    out, closed = raw(lport, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 200000000\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 413") and closed, f"body size (length): {out[:40]!r}")
    print("ok limits (431, 431, 414, 413)", flush=True)

    # --- slowloris: a head dripped byte by byte is cut at client_header_ms -----------------
    s = socket.create_connection(("127.0.0.1", lport), timeout=5)
    t0 = time.time()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
    got = b""
    closed = False
    while time.time() - t0 < 4:
        try:
            s.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        s.settimeout(0.2)
        try:
            b = s.recv(4096)
            if not b:
                closed = True
                break
            got += b
        except socket.timeout:
            pass
    took = time.time() - t0
    s.close()
    check(closed and took < 2.5, f"slowloris not closed in time ({took:.1f}s)")
    check(got == b"" or got.startswith(b"HTTP/1.1 408"), f"slowloris answer {got[:30]!r}")
    out, closed = raw(lport, b"", timeout=2.5)
    check(closed, "a silent connection was not closed by the header timeout")
    print(f"ok slowloris (closed after {took:.1f}s)", flush=True)

    # --- idle keep-alive closed at idle_ms; a stalled body answered 408 ------------------
    s = socket.create_connection(("127.0.0.1", lport), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    while b"backend" not in got:
        got += s.recv(4096)
    t0 = time.time()
    s.settimeout(4)
    check(s.recv(10) == b"", "idle keep-alive connection got bytes")
    idle_took = time.time() - t0
    s.close()
    check(1.3 < idle_took < 2.6, f"idle connection closed after {idle_took:.1f}s (idle_ms 1500)")
    t0 = time.time()
    out, closed = raw(lport, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
                      b"only part", timeout=4)
    body_took = time.time() - t0
    check(out.startswith(b"HTTP/1.1 408") and closed and body_took < 2.5,
          f"stalled body: {out[:30]!r} after {body_took:.1f}s")
    # HTTP/1.0 keep-alive, and Expect: 100-continue passed through.
    out, _ = raw(lport, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                 b"GET / HTTP/1.0\r\n\r\n", timeout=3)
    check(out.count(b"HTTP/1.1 200") == 2 and b"Connection: keep-alive" in out,
          f"HTTP/1.0 keep-alive: {out[:200]!r}")
    rc, out, err = curl("-v", "-H", "Expect: 100-continue", "--data-binary", "@" + src,
                        base + "/upload")
    check(rc == 0 and out == b"received\n" and "HTTP/1.1 100 Continue" in err,
          "Expect: 100-continue: " + err[-300:])
    print(f"ok timeouts_and_http10 (idle closed at {idle_took:.1f}s, stalled body 408 at "
          f"{body_took:.1f}s)", flush=True)

    # --- 502, 503, 504 -------------------------------------------------------------
    # One keep-alive connection, so one worker (ejection is per worker): two
    # refused connects (eject_after_failures: 2) answer 502, then the backend
    # is ejected and the pool has nobody: 503.
    rc, out, _ = curl("-w", "%{http_code} ", "-o", "/dev/null", "-o", "/dev/null", "-o",
                      "/dev/null", "-o", "/dev/null", *([base + "/dead"] * 4))
    check(out.split() == [b"502", b"502", b"503", b"503"], f"dead then ejected backend: {out!r}")
    rc, out, _ = curl("-i", base + "/slow")
    check(out.startswith(b"HTTP/1.1 504"), f"silent backend: {out[:40]!r}")
    print("ok upstream_errors (502, 503 after ejection, 504)", flush=True)

    # --- Upgrade: 101 passed on, then a tunnel both ways with back-pressure ---------------
    s = socket.create_connection(("127.0.0.1", lport), timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: test\r\nConnection: Upgrade, X-Drop\r\n"
              b"X-Drop: 1\r\n\r\nearly")
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"early"):
        b = s.recv(4096)
        check(b, "upgrade: closed before 101 + echo: %r" % got)
        got += b
    check(got.startswith(b"HTTP/1.1 101 ") and b"\r\nUpgrade: test\r\n" in got
          and b"\r\nConnection: upgrade\r\n" in got, "101 head: %r" % got)
    h = ws_heads[-1].lower()
    check("\r\nupgrade: test" in h and "\r\nconnection: upgrade" in h and "x-drop" not in h,
          "upgrade request as the backend saw it: " + h)
    blob = os.urandom(4 << 20)
    sender = threading.Thread(target=s.sendall, args=(blob,))
    sender.start()
    echoed = bytearray()
    while len(echoed) < len(blob):
        b = s.recv(1 << 20)
        check(b, f"tunnel closed after {len(echoed)} bytes")
        echoed += b
    sender.join()
    check(bytes(echoed) == blob, "tunnel corrupted the bytes")
    s.close()
    rc, out, _ = curl(base + "/")
    check(rc == 0, "proxy unwell after the tunnel")
    print("ok upgrade_tunnel (4 MiB echoed through a 101 tunnel)", flush=True)

    # --- clients that leave mid-body: no request stays counted as active --------------
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", lport), timeout=5)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
        time.sleep(0.05)
        s.close()
    for _ in range(3):
        raw(lport, b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n", timeout=0.3)
    time.sleep(1.0)  # the last chunked ones time out (client_body) or close
    active = metric(admin, "lb_l7_backend_active_requests")
    check(active == 0, f"{active} requests still counted active after the clients left")
    print("ok active_counts_return_to_zero", flush=True)

    # --- a backend killed under GETs: 0 failures ------------------------------------
    failures = []
    answers = {}
    stop = threading.Event()

    def client(keep):
        import http.client
        conn = None
        while not stop.is_set():
            try:
                if conn is None or not keep:
                    conn = http.client.HTTPConnection("127.0.0.1", lport, timeout=5)
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    failures.append(r.status)
                answers[body] = answers.get(body, 0) + 1
                if not keep:
                    conn.close()
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(repr(e))
                conn = None

    threads = [threading.Thread(target=client, args=(k,)) for k in (True, True, False, False)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop_nginx(be1)
    killed_at = sum(answers.values())
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join()
    total = sum(answers.values())
    check(not failures, f"{len(failures)} failed GETs after killing be1: {failures[:5]}")
    check(answers.get(b"backend be2\n", 0) > 0 and total > killed_at + 50,
          f"traffic after the kill: {answers}")
    print(f"ok backend_killed ({total} GETs, {killed_at} before the kill, 0 failed)", flush=True)

    # --- SIGTERM: in-flight download finishes, process exits 0 ------------------------------
    s = socket.create_connection(("127.0.0.1", lport), timeout=5)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
    first = s.recv(65536)
    idle = socket.create_connection(("127.0.0.1", lport), timeout=5)
    # A keep-alive connection between requests at the SIGTERM: its next
    # request, sent inside the idle grace (--drain_idle_grace_ms, 1 s), is
    # answered with Connection: close instead of lost to a close.
    ka = socket.create_connection(("127.0.0.1", lport), timeout=5)
    ka.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    check(b" 200 " in ka.recv(65536).split(b"\r\n", 1)[0] + b" ", "keep-alive GET before SIGTERM")
    time.sleep(0.1)
    lb.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ka.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ka.settimeout(5)
    answer = b""
    while True:
        b = ka.recv(65536)
        if not b:
            break
        answer += b
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    check(head.startswith(b"http/1.1 200 ") and b"\r\nconnection: close" in head,
          f"keep-alive request inside the drain grace: {answer[:200]!r}")
    n = len(first) - first.index(b"\r\n\r\n") - 4
    s.settimeout(10)
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        n += len(b)
    check(n == 64 << 20, f"in-flight body cut by SIGTERM: {n} bytes")
    idle.settimeout(3)
    check(idle.recv(10) == b"", "idle connection not closed on SIGTERM")
    rc = lb.wait(timeout=10)
    check(rc == 0, f"lb-l7 exit status {rc} after SIGTERM")
    try:
        socket.create_connection(("127.0.0.1", lport), timeout=1).close()
        fail("still accepting after SIGTERM")
    except OSError:
        pass
    print("ok sigterm_drain", flush=True)

    # --- access log: one line per answered request, flushed by the drain ----------------
    lines = open(os.path.join(WORK, "lb-access.log")).read().splitlines()
    kept = [l for l in lines if " rid=abc-123 " in l]
    check(len(kept) == 1 and " route=default pool=web " in kept[0] and " method=GET path=/echo?q=1 "
          in kept[0] and " status=200 " in kept[0], f"access log line of the header test: {kept}")
    check(any(" route=only2 pool=two backend=127.0.0.1:%d " % p2 in l for l in lines),
          "access log: routed request")
    refused = [l for l in lines if " status=400 " in l]
    check(len(refused) >= len(vectors), f"access log: {len(refused)} refusals logged")
    check(all(re.fullmatch(r"ts=\S+ rid=\S+ client=\S+ listener=(main|v6) route=\S+ pool=\S+ "
                           r"backend=\S+ method=\S+ path=\S+ status=\d{3} req_body=\d+ "
                           r"resp_bytes=\d+ ms=[0-9.]+ attempts=\d+ proto=http/1\.1", l) for l in lines),
          "access log line format: " + next((l for l in lines if not l.startswith("ts=")), lines[0]))
    print(f"ok access_log ({len(lines)} lines)", flush=True)


if __name__ == "__main__":
    def overtime():
        print("FAIL: over the time bound", flush=True)
        cleanup()
        os._exit(3)

    timer = threading.Timer(max(1, DEADLINE - time.time()), overtime)
    timer.daemon = True
    timer.start()
    try:
        main()
        print("PASS", flush=True)
    finally:
        logs = [f for f in os.listdir(WORK) if f.endswith(".log")] if os.path.isdir(WORK) else []
        if sys.exc_info()[0] is not None:
            for f in logs:
                print("--- " + f)
                print(open(os.path.join(WORK, f)).read()[-3000:])
        cleanup()
