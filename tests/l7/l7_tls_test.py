#!/usr/bin/python3
"""Binary test of TLS termination in lb-l7 (docs/L7.md "TLS"): the real
proxy, real openssl s_client / curl / Python ssl clients and a real nginx
backend, certificates made with `openssl req` in a temp dir. Starts and
stops everything itself (by PID), bounded in time, temp dir removed.

Usage: l7_tls_test.py LB_L7_BINARY
Checks (each prints "ok <name>" or fails with the reason):
  bad TLS configs refused naming the field; TLS 1.0/1.1 refused (server
  counts reason=version); TLS 1.2 and 1.3 accepted; non-ECDHE / non-AEAD
  ciphers refused (reason=cipher); SNI picks the certificate (exact,
  wildcard, unknown -> default, sni_required refuses); ECDSA or RSA by
  signature algorithms; ALPN h2 then http/1.1; resumption by ticket (1.2, 1.3)
  and by session cache; curl https through lb-l7 to nginx; SIGHUP reload of
  a certificate under a curl loop with 0 failures, a keep-alive connection
  surviving it, a refused reload keeping the running certificate; ticket key
  rotation by SIGHUP; metrics pass promtool.
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import fail, free_port, metric, run  # noqa: E402,F401

H = lib.Harness(sys.argv[1], "l7tls-", 200)
LB, WORK, PROCS, DEADLINE = H.lb, H.work, H.procs, H.deadline
NGINX_DIR = os.path.join(WORK, "nginx")
TICKET_HEX = ""
path = H.path
metrics = lib.scrape
cleanup = H.cleanup


def check(cond, msg):
    lib.check(cond, msg, DEADLINE)


def make_cert(name, cn, sans, key="ec", org="v1"):
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else \
        ["-newkey", "rsa:2048"]
    r = run(["openssl", "req", "-x509", "-nodes", *newkey, "-keyout", path(name + ".key"),
             "-out", path(name + ".crt"), "-days", "30", "-subj", f"/O={org}/CN={cn}",
             "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)], timeout=60)
    check(r.returncode == 0, "openssl req: " + r.stderr)
    os.chmod(path(name + ".key"), 0o600)


def start_nginx(port):
    os.makedirs(os.path.join(NGINX_DIR, "html"))
    H.start_nginx(NGINX_DIR, f"""
  access_log off;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port};
    root {NGINX_DIR}/html;
    client_max_body_size 100m;
    location = /echo {{ default_type text/plain; return 200 "proto=$http_x_forwarded_proto host=$host\\n"; }}
    location / {{ default_type text/plain; return 200 "hello\\n"; }}
  }}""", stop=lib.quit_nginx)


def tls_block(certs, extra=""):
    cs = "".join(f'certificates {{ cert_file: "{path(c)}.crt" key_file: "{path(c)}.key" }} '
                 for c in certs)
    return f"tls {{ {cs} {extra} }}"


def write_config(name, port1, port2, backend, tls1, tls2):
    text = f"""
listeners {{ name: "https" address: "127.0.0.1" port: {port1} default_pool: "web" {tls1} }}
listeners {{ name: "strict" address: "127.0.0.1" port: {port2} default_pool: "web" {tls2} }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {backend} }} }}
"""
    with open(path(name), "w") as f:
        f.write(text)
    return path(name)


def check_config(conf):
    return run([LB, "--check_config", "--config", conf])


def s_client(port, *args, inp="", sni=None):
    a = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    a += ["-servername", sni] if sni else ["-noservername"]
    r = run(a + list(args), inp=inp, timeout=10)
    return r.stdout + r.stderr


def handshake_ok(out):
    m = re.search(r"^(New|Reused), (TLSv1\.[0-3]), Cipher is (\S+)$", out, re.M)
    return bool(m and m.group(3) != "(NONE)")


def get(port, sni, p="/echo"):
    r = run(["curl", "-sk", "--max-time", "5", "--resolve", f"{sni}:{port}:127.0.0.1",
             f"https://{sni}:{port}{p}"], timeout=10)
    return r.returncode, r.stdout


def test_bad_configs(port1, port2, backend):
    bad = [
        ("mode", tls_block(["a_ec"], f'session_ticket_key_file: "{path("ticket.open")}"'),
         "listeners[0].tls.session_ticket_key_file"),
        ("mismatch", tls_block(["a_ec"]).replace(path("a_ec") + ".key", path("a_rsa") + ".key"),
         "listeners[0].tls.certificates[0].key_file: does not match"),
        ("weak cipher", tls_block(["a_ec"], 'ciphers: "AES128-SHA"'), "listeners[0].tls.ciphers"),
        ("missing", tls_block(["nope"]), "listeners[0].tls.certificates[0].cert_file"),
        ("version", tls_block(["a_ec"], 'min_version: "TLSv1.1"'), "listeners[0].tls.min_version"),
        ("duplicate type", tls_block(["a_ec", "a_ec"]), "same names and key type"),
        # Inline ticket keys (what the control plane streams): 80-byte keys,
        # and not together with a key file.
        ("inline size", tls_block(["a_ec"], 'session_ticket_keys: "' + "k" * 79 + '"'),
         "listeners[0].tls.session_ticket_keys: 79 bytes; expected a multiple of 80"),
        ("inline and file", tls_block(["a_ec"], 'session_ticket_keys: "' + "k" * 80 +
                                      f'" session_ticket_key_file: "{path("ticket.key")}"'),
         "listeners[0].tls.session_ticket_keys: set together with session_ticket_key_file"),
    ]
    for what, block, needle in bad:
        conf = write_config("bad.textproto", port1, port2, backend, block, "")
        r = check_config(conf)
        check(r.returncode != 0 and needle in r.stderr,
              f"bad config ({what}) not refused naming {needle}: {r.returncode} {r.stderr}")
    print("ok bad TLS configs refused naming the field", flush=True)


def test_versions_ciphers(port, admin):
    for v in ("-tls1", "-tls1_1"):
        before = metric(metrics(admin), "lb_l7_tls_handshake_failures_total", listener="https",
                        reason="version")
        out = s_client(port, v, "-cipher", "DEFAULT@SECLEVEL=0", sni="a.example.com")
        check(not handshake_ok(out), f"{v} accepted:\n{out}")
        after = metric(metrics(admin), "lb_l7_tls_handshake_failures_total", listener="https",
                       reason="version")
        check(after == before + 1, f"{v}: the server did not count a version refusal")
    for v in ("-tls1_2", "-tls1_3"):
        out = s_client(port, v, sni="a.example.com")
        check(handshake_ok(out), f"{v} refused:\n{out}")
    print("ok TLS 1.0 and 1.1 refused by the server, 1.2 and 1.3 accepted", flush=True)
    for c in ("AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"):
        before = metric(metrics(admin), "lb_l7_tls_handshake_failures_total", listener="https",
                        reason="cipher")
        out = s_client(port, "-tls1_2", "-cipher", c + "@SECLEVEL=0", sni="a.example.com")
        check(not handshake_ok(out), f"weak cipher {c} accepted:\n{out}")
        after = metric(metrics(admin), "lb_l7_tls_handshake_failures_total", listener="https",
                       reason="cipher")
        check(after == before + 1, f"{c}: the server did not count a cipher refusal")
    out = s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384",
                   sni="a.example.com")
    check(handshake_ok(out), "ECDHE AEAD cipher refused")
    print("ok non-ECDHE and non-AEAD ciphers refused", flush=True)


def subject(out):
    m = re.search(r"^subject=(.*)$", out, re.M)
    return m.group(1) if m else ""


def test_sni(port, strict):
    cases = [("a.example.com", "CN = a.example.com"), ("x.b.example.com", "CN = *.b.example.com"),
             ("X.B.Example.com", "CN = *.b.example.com"), ("y.x.b.example.com", "CN = a.example.com"),
             ("unknown.test", "CN = a.example.com"), (None, "CN = a.example.com")]
    for sni, want in cases:
        out = s_client(port, "-tls1_3", sni=sni)
        check(handshake_ok(out) and want in subject(out), f"SNI {sni}: got {subject(out)!r}\n{out}")
    out = s_client(strict, "-tls1_3", sni="x.b.example.com")
    check(handshake_ok(out) and "*.b.example.com" in subject(out), "strict listener, known name")
    for sni in ("unknown.test", None):
        out = s_client(strict, "-tls1_3", sni=sni)
        check(not handshake_ok(out), f"sni_required listener accepted SNI {sni}")
    print("ok SNI: exact, wildcard (one label), default, sni_required refusal", flush=True)
    key_bits = lambda out: re.search(r"Server public key is (\d+) bit", out).group(1)
    out = s_client(port, "-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256", sni="a.example.com")
    check(handshake_ok(out) and key_bits(out) == "256", "ECDSA sigalgs did not get the EC key")
    out = s_client(port, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256", sni="a.example.com")
    check(handshake_ok(out) and key_bits(out) == "2048", "RSA sigalgs did not get the RSA key")
    out = s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", sni="a.example.com")
    check(handshake_ok(out) and key_bits(out) == "2048", "TLS 1.2 ECDHE-RSA did not get RSA")
    print("ok ECDSA or RSA certificate for the same name by client capability", flush=True)
    out = s_client(port, "-tls1_3", "-alpn", "h2,http/1.1", sni="a.example.com")
    check("ALPN protocol: h2" in out, "ALPN h2 not selected (server preference)")
    out = s_client(port, "-tls1_3", "-alpn", "http/1.1", sni="a.example.com")
    check("ALPN protocol: http/1.1" in out, "ALPN http/1.1 not selected")
    out = s_client(port, "-tls1_3", "-alpn", "spdy/3", sni="a.example.com")
    check(handshake_ok(out) and "No ALPN negotiated" in out, "unknown ALPN not ignored")
    print("ok ALPN: h2, then http/1.1", flush=True)


REQ = "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"


def test_resumption(port, admin):
    for name, args in [("ticket TLSv1.3", ["-tls1_3"]), ("ticket TLSv1.2", ["-tls1_2"]),
                       ("cache TLSv1.2", ["-tls1_2", "-no_ticket"])]:
        sess = path("sess")
        before = metric(metrics(admin), "lb_l7_tls_handshakes_total", listener="https",
                        kind="resumed")
        out = s_client(port, *args, "-ign_eof", "-sess_out", sess, inp=REQ, sni="a.example.com")
        check("hello" in out and "New," in out, f"{name}: first handshake:\n{out}")
        out = s_client(port, *args, "-ign_eof", "-sess_in", sess, inp=REQ, sni="a.example.com")
        check("Reused," in out and "hello" in out, f"{name}: not resumed:\n{out}")
        after = metric(metrics(admin), "lb_l7_tls_handshakes_total", listener="https",
                       kind="resumed")
        check(after == before + 1, f"{name}: resumption not counted")
    # A client that closes without close_notify (most do) still resumes by
    # session ID from the cache (OpenSSL would drop the session otherwise).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    s1 = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                         server_hostname="a.example.com")
    s1.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    check(b"hello" in s1.recv(4096), "TLS 1.2 request")
    sess = s1.session
    s1.close()  # no close_notify
    time.sleep(0.2)
    s2 = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                         server_hostname="a.example.com", session=sess)
    check(s2.session_reused, "session not resumed from the cache after an abrupt close")
    s2.close()
    print("ok resumption by ticket (1.3, 1.2) and by session cache (also after a close without close_notify), counted", flush=True)


def test_curl(port):
    rc, body = get(port, "a.example.com")
    check(rc == 0 and "proto=https host=a.example.com" in body, f"curl https: {rc} {body!r}")
    r = run(["curl", "-skv", "--max-time", "5", "--resolve", f"a.example.com:{port}:127.0.0.1",
             f"https://a.example.com:{port}/", f"https://a.example.com:{port}/"], timeout=10)
    check(r.stdout == "hello\nhello\n", "curl keep-alive over TLS: " + r.stdout)
    check("Re-using existing connection" in r.stderr, "curl did not reuse its TLS connection")
    # curl offers h2 first and lb-l7 prefers it (docs/L7.md "HTTP/2").
    check("ALPN: server accepted h2" in r.stderr or "ALPN, server accepted to use h2"
          in r.stderr, "curl saw no ALPN h2")
    big = run(["curl", "-sk", "--max-time", "20", "--resolve", f"a.example.com:{port}:127.0.0.1",
               "--data-binary", "@" + LB, "-o", "/dev/null", "-w", "%{http_code}",
               f"https://a.example.com:{port}/"], timeout=30)
    check(big.stdout == "200", "large TLS upload: " + big.stdout + big.stderr)
    # Pipelined requests in one TLS record, then a session-resuming close by
    # the client (no close_notify): all four answered in order.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sk = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                         server_hostname="a.example.com")
    sk.sendall(b"".join(b"GET /echo?%d HTTP/1.1\r\nHost: h%d\r\n\r\n" % (i, i) for i in range(4)))
    got = b""
    while got.count(b"proto=https") < 4:
        chunk = sk.recv(65536)
        check(chunk, "pipelined TLS answers cut short: %r" % got)
        got += chunk
    hosts = re.findall(rb"host=(h\d)", got)
    check(hosts == [b"h0", b"h1", b"h2", b"h3"], "pipelined TLS answers out of order: %r" % hosts)
    sk.close()
    print("ok curl https through lb-l7 to nginx (X-Forwarded-Proto https, keep-alive, pipelining, ALPN)",
          flush=True)


def test_reload(lb, port, conf_good, conf_bad):
    failures = [0]
    done = [0]
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            rc, body = get(port, "a.example.com", "/")
            done[0] += 1
            if rc != 0 or body != "hello\n":
                failures[0] += 1

    # A keep-alive connection opened before the reload must keep working.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ka = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                         server_hostname="a.example.com")
    ka.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    check(b"hello" in ka.recv(4096), "keep-alive before reload")
    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    make_cert("a_ec", "a.example.com", ["a.example.com"], "ec", org="v2")
    lb.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    shutil.copy(conf_bad, conf_good + ".tmp")
    good = open(conf_good).read()
    os.replace(conf_good + ".tmp", conf_good)
    lb.send_signal(signal.SIGHUP)  # refused: the v2 certificate stays
    time.sleep(1.0)
    with open(conf_good, "w") as f:
        f.write(good)
    lb.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    check(failures[0] == 0 and done[0] > 10, f"reload under load: {failures[0]} of {done[0]} failed")
    ka.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    check(b"hello" in ka.recv(4096), "keep-alive connection broken by the reload")
    ka.close()
    out = s_client(port, "-tls1_3", sni="a.example.com")
    check("O = v2" in subject(out), "new connections do not get the reloaded certificate")
    print(f"ok SIGHUP reload under a curl loop: 0 failures of {done[0]}, keep-alive connection "
          "kept, a refused reload keeps the running certificate", flush=True)


def test_ticket_rotation(lb, port):
    """Prepending a new key and SIGHUP: old tickets still resume (the old
    key decrypts); dropping the old key: they no longer do."""
    old = path("sess.old")
    out = s_client(port, "-tls1_3", "-ign_eof", "-sess_out", old, inp=REQ, sni="a.example.com")
    check("hello" in out, "ticket before rotation")
    key = path("ticket.key")
    previous = open(key, "rb").read()
    fresh = os.urandom(80)
    with open(key + ".new", "wb") as f:
        f.write(fresh + previous)
    os.chmod(key + ".new", 0o600)
    os.replace(key + ".new", key)
    lb.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    out = s_client(port, "-tls1_3", "-ign_eof", "-sess_in", old, inp=REQ, sni="a.example.com")
    check("Reused," in out, "old ticket not accepted after prepending a new key")
    with open(key + ".new", "wb") as f:
        f.write(fresh)
    os.chmod(key + ".new", 0o600)
    os.replace(key + ".new", key)
    lb.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    out = s_client(port, "-tls1_3", "-ign_eof", "-sess_in", old, inp=REQ, sni="a.example.com")
    check("New," in out and "hello" in out, "ticket of a removed key still resumed")
    print("ok ticket key rotation by SIGHUP: old key decrypts while listed, not after", flush=True)


def test_partial_record(lb, port):
    """Half a TLS record, then silence: the worker waits for the socket
    (epoll), it does not spin on bytes OpenSSL holds but cannot decrypt."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="a.example.com")
    sk = socket.create_connection(("127.0.0.1", port), timeout=5)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                sk.sendall(out.read())
            data = sk.recv(65536)
            check(data, "handshake cut short")
            inc.write(data)
    if out.pending:
        sk.sendall(out.read())
    obj.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    record = out.read()
    sk.sendall(record[:len(record) // 2])

    def cpu():
        f = open(f"/proc/{lb.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    time.sleep(0.2)
    c0 = cpu()
    time.sleep(1.5)
    used = cpu() - c0
    check(used < 0.3, f"lb-l7 used {used:.2f} CPU-s in 1.5 s waiting for half a record")
    sk.sendall(record[len(record) // 2:])
    got = b""
    while b"hello" not in got:
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            data = sk.recv(65536)
            check(data, "no answer after the rest of the record")
            inc.write(data)
    sk.close()
    print(f"ok half a TLS record: no busy wait ({used:.2f} CPU-s in 1.5 s), answered after the rest",
          flush=True)


def main():
    try:
        signal.signal(signal.SIGALRM, lambda *_: fail("timeout"))
        signal.alarm(220)
        make_cert("a_ec", "a.example.com", ["a.example.com"], "ec")
        make_cert("a_rsa", "a.example.com", ["a.example.com"], "rsa")
        make_cert("b_wild", "*.b.example.com", ["*.b.example.com"], "ec")
        global TICKET_HEX
        keys = os.urandom(160)  # two keys: the first encrypts
        TICKET_HEX = keys.hex()
        with open(path("ticket.key"), "wb") as f:
            f.write(keys)
        os.chmod(path("ticket.key"), 0o600)
        shutil.copy(path("ticket.key"), path("ticket.open"))
        os.chmod(path("ticket.open"), 0o644)
        port1, port2, backend, admin = free_port(), free_port(), free_port(), free_port()
        start_nginx(backend)
        test_bad_configs(port1, port2, backend)
        tls1 = tls_block(["a_ec", "a_rsa", "b_wild"],
                         f'session_ticket_key_file: "{path("ticket.key")}"')
        tls2 = tls_block(["b_wild"], "sni_required: true")
        conf = write_config("l7.textproto", port1, port2, backend, tls1, tls2)
        bad = write_config("l7-bad.textproto", port1, port2, backend,
                           tls_block(["a_ec"]).replace(path("a_ec") + ".key", path("a_rsa") + ".key"),
                           tls2)
        r = check_config(conf)
        check(r.returncode == 0, "valid TLS config refused: " + r.stderr)
        lb, _ = H.start_lb("lb", conf, admin)
        lib.wait_port(port1, 10)
        test_versions_ciphers(port1, admin)
        test_sni(port1, port2)
        test_resumption(port1, admin)
        test_curl(port1)
        test_partial_record(lb, port1)
        test_reload(lb, port1, conf, bad)
        test_ticket_rotation(lb, port1)
        text = metrics(admin)
        check(metric(text, "lb_l7_tls_handshakes_total", listener="https", kind="full") > 10,
              "full handshakes not counted")
        check(metric(text, "lb_l7_tls_versions_total", listener="https", version="TLSv1.2") > 0,
              "versions not counted")
        check(metric(text, "lb_l7_tls_handshake_failures_total", listener="strict",
                     reason="sni") == 2, "SNI refusals not counted")
        exp = metric(text, "lb_l7_tls_certificate_expiry_seconds", listener="https",
                     name="a.example.com", file=path("a_ec") + ".crt")
        check(exp is not None and 29 * 86400 < exp <= 30 * 86400, f"expiry gauge {exp}")
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 0, "promtool: " + p.stdout + p.stderr)
        logtext = open(path("lb.log")).read()
        check("refused, running state kept" in logtext and "certificates[0].key_file" in logtext,
              "refused reload not logged with the field")
        check(TICKET_HEX[:32] not in logtext and open(path("ticket.key"), "rb").read().hex()[:32]
              not in logtext,
              "ticket key bytes in the log")
        print("ok TLS metrics (handshakes, versions, failures by reason, expiry) pass promtool",
              flush=True)
        lb.send_signal(signal.SIGTERM)
        check(lb.wait(timeout=15) == 0, "lb-l7 did not exit 0 on SIGTERM")
        print("PASS", flush=True)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
