#!/usr/bin/python3
"""Binary test of SNI passthrough listeners (docs/L7.md "SNI passthrough"):
real lb-l7, three TLS server blocks of one real nginx, each with its own
certificate made here with `openssl req`, curl, openssl s_client and Python
ssl as clients. lb-l7 holds no certificate at all: a client that verifies
the backend's own certificate against that backend's CA proves the bytes
were relayed, not decrypted. Starts and stops everything itself (by PID),
bounded in time, temp dir removed.

Usage: l7_passthrough_test.py LB_L7_BINARY
Checks (each prints "ok <name>" or fails with the reason):
  a passthrough listener with a tls block refused naming the field;
  curl --resolve to a.pt.test and x.b.pt.test (wildcard) verifies each
  backend's certificate and gets that backend's answer; s_client sees the
  backend certificate for a known name, the default backend's for an
  unknown name and for no SNI; a ClientHello cut into pieces (one inside
  the record header) completes a handshake with the right backend; a
  refused connect goes to the next backend, a pool with none reachable
  closes; 8 MiB
  through the relay intact; garbage, an oversized record and a stalled
  ClientHello are closed without an answer and counted by reason; metrics
  per pool; promtool accepts /metrics.
"""
import os
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import free_port, metric, run  # noqa: E402

H = lib.Harness(sys.argv[1], "l7pt-", 90)
LB, DEADLINE = H.lb, H.deadline
path = H.path


def check(cond, msg):
    lib.check(cond, msg, DEADLINE)


def make_cert(name, cn, sans):
    r = run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-keyout", path(name + ".key"), "-out",
             path(name + ".crt"), "-days", "30", "-subj", f"/O=lb-pt-test/CN={cn}",
             "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)], timeout=60)
    check(r.returncode == 0, "openssl req: " + r.stderr)
    os.chmod(path(name + ".key"), 0o600)


def s_client(port, *args):
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
            inp="", timeout=10)
    for line in r.stdout.splitlines():
        if line.startswith("subject="):
            return line
    return "no subject: " + r.stdout[-300:] + r.stderr[-300:]


def curl(port, name, cert, p="/"):
    r = run(["curl", "-s", "--max-time", "5", "--cacert", path(cert + ".crt"), "--resolve",
             f"{name}:{port}:127.0.0.1", f"https://{name}:{port}{p}"], timeout=10)
    return r.returncode, r.stdout


def hello_bytes(name):
    """A ClientHello for `name` written by Python's ssl."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def fragmented_handshake(port, name):
    """A ClientHello from Python's ssl, sent in pieces (one break inside the
    5-byte record header), then the handshake completed through lb-l7:
    returns the DER certificate the server presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    for a, b in ((0, 3), (3, 60), (60, len(hello))):
        s.sendall(hello[a:b])
        time.sleep(0.05)
    while True:
        data = s.recv(65536)
        check(data, "connection closed during the handshake")
        inc.write(data)
        try:
            obj.do_handshake()
            s.sendall(out.read())
            break
        except ssl.SSLWantReadError:
            s.sendall(out.read())
    der = obj.getpeercert(binary_form=True)
    s.close()
    return der


def closed_without_answer(port, data, wait=3.0):
    """Sends `data`; True when lb-l7 closes the connection without a byte."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        if data:
            s.sendall(data)
        return s.recv(100) == b""
    except (ConnectionResetError, socket.timeout):
        return False
    finally:
        s.close()


def main():
    for n, cn, sans in (("a", "a.pt.test", ["a.pt.test"]),
                        ("b", "b.pt.test", ["b.pt.test", "*.b.pt.test"]),
                        ("c", "default.pt.test", ["default.pt.test"])):
        make_cert(n, cn, sans)
    ports = {n: free_port() for n in "abc"}
    nginx_dir = path("nginx")
    os.makedirs(nginx_dir)
    with open(os.path.join(nginx_dir, "big"), "wb") as f:
        f.write(os.urandom(8 << 20))
    servers = "".join(f"""
  server {{ listen 127.0.0.1:{ports[n]} ssl;
    ssl_certificate {path(n)}.crt; ssl_certificate_key {path(n)}.key;
    location = /big {{ root {nginx_dir}; }}
    location / {{ default_type text/plain; return 200 "backend={n}\\n"; }} }}""" for n in "abc")
    H.start_nginx(nginx_dir, "  access_log off;" + servers, stop=lib.quit_nginx)
    for p in ports.values():
        check(lib.wait_port(p, 10), "nginx did not start")

    port, admin, dead = free_port(), free_port(), free_port()
    pools = "".join(f'pools {{ name: "{n}" backends {{ address: "127.0.0.1" port: {ports[n]} }} }}\n'
                    for n in "abc")
    # d: a dead port first, then a's server; e: only the dead port.
    pools += (f'pools {{ name: "d" backends {{ address: "127.0.0.1" port: {dead} }} '
              f'backends {{ address: "127.0.0.1" port: {ports["a"]} }} }}\n'
              f'pools {{ name: "e" backends {{ address: "127.0.0.1" port: {dead} }} }}\n')
    body = f"""
listeners {{ name: "pt" address: "127.0.0.1" port: {port}
  passthrough {{ routes {{ name: "a" server_names: "a.pt.test" pool: "a" }}
    routes {{ name: "b" server_names: "b.pt.test" server_names: "*.b.pt.test" pool: "b" }}
    routes {{ name: "d" server_names: "d.pt.test" pool: "d" }}
    routes {{ name: "e" server_names: "e.pt.test" pool: "e" }}
    default_pool: "c" on_no_sni: DEFAULT_POOL
    max_client_hello_bytes: 2048 client_hello_timeout_ms: 500 }} }}
{pools}"""
    bad = H.write("bad.textproto", body.replace(
        "passthrough {", f'tls {{ certificates {{ cert_file: "{path("a.crt")}" '
        f'key_file: "{path("a.key")}" }} }} passthrough {{', 1))
    r = run([LB, "--check_config", "--config", bad])
    check(r.returncode != 0 and "listeners[0].tls: a passthrough listener" in r.stderr,
          "tls + passthrough not refused naming the field: " + r.stderr)
    print("ok a passthrough listener with tls refused naming listeners[0].tls", flush=True)

    conf = H.write("pt.textproto", body)
    lbp, log = H.start_lb("lb", conf, admin)
    check(lib.wait_ready(lbp, log, 10), "lb-l7 did not start: " + open(log).read())

    for name, cert, want in (("a.pt.test", "a", "backend=a"), ("x.b.pt.test", "b", "backend=b"),
                             ("b.pt.test", "b", "backend=b")):
        rc, out = curl(port, name, cert)
        check(rc == 0 and out.strip() == want,
              f"curl {name} verifying {cert}.crt: rc={rc} {out!r}, want {want}")
    # The wrong CA fails verification: the certificate really is the backend's.
    rc, _ = curl(port, "a.pt.test", "b")
    check(rc != 0, "curl to a.pt.test verified with b's certificate")
    print("ok curl reaches each backend by SNI (exact and *.suffix) and verifies its certificate",
          flush=True)

    for args, cn in ((["-servername", "a.pt.test"], "a.pt.test"),
                     (["-servername", "b.pt.test"], "b.pt.test"),
                     (["-servername", "unknown.test"], "default.pt.test"),
                     (["-noservername"], "default.pt.test")):
        subj = s_client(port, *args)
        check(f"CN = {cn}" in subj, f"s_client {args}: {subj}, want CN = {cn}")
    print("ok s_client sees each backend's certificate; unknown and no SNI -> default", flush=True)

    for _ in range(3):
        subj = s_client(port, "-servername", "d.pt.test")
        check("CN = a.pt.test" in subj, f"pool d with a dead backend: {subj}")
    check(closed_without_answer(port, hello_bytes("e.pt.test")),
          "a pool with no reachable backend got an answer")
    print("ok a refused connect goes to the next backend; none left -> closed", flush=True)

    der = fragmented_handshake(port, "a.pt.test")
    want = ssl.PEM_cert_to_DER_cert(open(path("a.crt")).read())
    check(der == want, "fragmented ClientHello: not a's certificate")
    print("ok a ClientHello in three pieces (one inside the record header) reaches a", flush=True)

    r = subprocess.run(["curl", "-s", "--max-time", "20", "--cacert", path("a.crt"), "--resolve",
                        f"a.pt.test:{port}:127.0.0.1", f"https://a.pt.test:{port}/big"],
                       capture_output=True, timeout=30)
    check(r.returncode == 0 and r.stdout == open(os.path.join(nginx_dir, "big"), "rb").read(),
          f"8 MiB through the relay: rc={r.returncode} len={len(r.stdout)}")
    print("ok 8 MiB through the relay intact", flush=True)

    check(closed_without_answer(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
          "garbage got an answer")
    check(closed_without_answer(port, b"\x16\x03\x01\x10\x00" + b"\x01" * 100),
          "a 4 KiB record (limit 2048) got an answer")
    t = time.time()
    check(closed_without_answer(port, b"\x16\x03\x01"), "a stalled ClientHello got an answer")
    check(0.3 < time.time() - t < 2.5, f"stalled ClientHello closed after {time.time() - t:.2f} s")
    print("ok garbage, an oversized record and a stalled ClientHello closed without an answer",
          flush=True)

    text = lib.scrape(admin)
    want = {"malformed": 1, "oversized": 1, "timeout": 1, "no_sni": 1, "no_route": 0,
            "no_backend": 1}
    for reason, n in want.items():
        v = metric(text, "lb_l7_passthrough_failures_total", listener="pt", reason=reason)
        check(v == n, f"failures reason={reason}: {v}, want {n}")
    got = {n: metric(text, "lb_l7_passthrough_connections_total", listener="pt", pool=n)
           for n in "abcde"}
    # a: 1 curl + 1 wrong-CA curl + s_client + fragmented + big = 5;
    # b: 2 curls + s_client = 3; c: unknown + no SNI = 2; d: 3; e: 1.
    check(got == {"a": 5, "b": 3, "c": 2, "d": 3, "e": 1}, f"connections by pool: {got}")
    promtool = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=20)
    check(promtool.returncode == 0, "promtool: " + promtool.stdout + promtool.stderr)
    print("ok metrics: connections by pool, failures by reason; promtool accepts them", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        H.cleanup()
