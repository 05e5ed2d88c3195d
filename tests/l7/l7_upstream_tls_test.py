#!/usr/bin/python3
"""Binary test of TLS to backends and client certificates in lb-l7
(docs/L7.md "TLS to backends", "Client certificates"): the real proxy, a
real nginx with ssl listeners and its own certificates signed by a test CA,
curl as the client, certificates made with `openssl req` in a temp dir.
Starts and stops everything itself (by PID), bounded in time, temp dir
removed.

Usage: l7_upstream_tls_test.py LB_L7_BINARY
Checks (each prints "ok <name>" or fails with the reason):
  bad configs refused naming the field (missing ca_file file, no
  server_name, client_auth without client_ca_file); curl https through
  lb-l7 to an HTTPS nginx backend; a backend signed by another CA and one
  with the wrong name answered 502 and counted reason=verify; new upstream
  connections resume the backend's session (counted); keep-alive reuses
  the TLS connection; mTLS REQUIRE refuses a client without a certificate
  (reason=client_cert) and forwards the verified subject; a forged
  X-Client-Cert-Subject is removed; OCSP stapling from a file (openssl
  s_client -status), re-read on SIGHUP; metrics pass promtool.
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import fail, free_port, metric, run  # noqa: E402,F401

H = lib.Harness(sys.argv[1], "l7uptls-", 120)
LB, WORK, PROCS, DEADLINE = H.lb, H.work, H.procs, H.deadline
NGINX_DIR = os.path.join(WORK, "nginx")
path = H.path
metrics = lib.scrape
cleanup = H.cleanup


def check(cond, msg):
    lib.check(cond, msg, DEADLINE)


def make_cert(name, cn, sans=(), ca=None):
    """A P-256 certificate; self-signed (a CA) when `ca` is None."""
    args = ["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-keyout", path(name + ".key"), "-out",
            path(name + ".crt"), "-days", "30", "-subj", f"/O=lb-test/CN={cn}"]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    if ca:
        args += ["-CA", path(ca + ".crt"), "-CAkey", path(ca + ".key")]
    r = run(args, timeout=60)
    check(r.returncode == 0, "openssl req: " + r.stderr)
    os.chmod(path(name + ".key"), 0o600)


def start_nginx(servers):
    """servers: (port, cert name, keepalive_requests)."""
    blocks = ""
    for port, cert, keepalive in servers:
        blocks += f"""
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {path(cert)}.crt;
    ssl_certificate_key {path(cert)}.key;
    ssl_session_cache shared:S{port}:1m;
    keepalive_requests {keepalive};
    location / {{ default_type text/plain;
      return 200 "https=$https port={port} subject=[$http_x_client_cert_subject] conn=$connection\\n"; }}
  }}"""
    H.start_nginx(NGINX_DIR, "  access_log off;" + blocks, stop=lib.quit_nginx)


def upstream_tls(ca="ca", name="backend.internal", extra=""):
    sn = f'server_name: "{name}"' if name else ""
    return f'upstream_tls {{ ca_file: "{path(ca)}.crt" {sn} {extra} }}'


def write_config(file, front, mtls, ports, up=None, client_auth=None, ocsp=""):
    good, other, wrong, fresh = ports
    up = up if up is not None else upstream_tls()
    ca = client_auth if client_auth is not None else \
        f'client_ca_file: "{path("cca")}.crt" client_auth: REQUIRE'
    cert = f'certificates {{ cert_file: "{path("front")}.crt" key_file: "{path("front")}.key" }}'
    staple = f'certificates {{ cert_file: "{path("front")}.crt" key_file: "{path("front")}.key" ' \
        f'ocsp_response_file: "{ocsp}" }}' if ocsp else cert
    text = f"""
listeners {{ name: "front" address: "127.0.0.1" port: {front} default_pool: "good"
  routes {{ name: "other" path {{ prefix: "/other" }} pool: "other_ca" }}
  routes {{ name: "wrong" path {{ prefix: "/wrong" }} pool: "wrong_name" }}
  routes {{ name: "fresh" path {{ prefix: "/fresh" }} pool: "fresh" }}
  routes {{ name: "mixed" path {{ prefix: "/mixed" }} pool: "mixed" }}
  tls {{ {staple} }} }}
listeners {{ name: "mtls" address: "127.0.0.1" port: {mtls} default_pool: "good"
  tls {{ {cert} {ca} }} }}
pools {{ name: "good" backends {{ address: "127.0.0.1" port: {good} }} {up} }}
pools {{ name: "other_ca" backends {{ address: "127.0.0.1" port: {other} }} {upstream_tls()} }}
pools {{ name: "wrong_name" backends {{ address: "127.0.0.1" port: {wrong} }} {upstream_tls()} }}
pools {{ name: "fresh" backends {{ address: "127.0.0.1" port: {fresh} }} {upstream_tls()} }}
pools {{ name: "mixed" backends {{ address: "127.0.0.1" port: {other} }}
  backends {{ address: "127.0.0.1" port: {good} }} {upstream_tls()} }}
"""
    with open(path(file), "w") as f:
        f.write(text)
    return path(file)


def curl(port, p="/", *extra):
    r = run(["curl", "-s", "--cacert", path("front") + ".crt", "--max-time", "5",
             "-o", "-", "-w", "\n%{http_code}", "--resolve", f"front.example:{port}:127.0.0.1",
             *extra, f"https://front.example:{port}{p}"], timeout=10)
    body, _, code = r.stdout.rpartition("\n")
    return r.returncode, int(code or 0), body


def test_bad_configs(ports):
    front, mtls = free_port(), free_port()
    bad = [
        ("missing ca file", upstream_tls(ca="nope"), None, "pools[0].upstream_tls.ca_file"),
        ("no server_name", upstream_tls(name=""), None, "pools[0].upstream_tls.server_name"),
        ("client key alone", upstream_tls(extra=f'key_file: "{path("client")}.key"'), None,
         "pools[0].upstream_tls: cert_file and key_file go together"),
        ("no client ca", None, "client_auth: REQUIRE", "listeners[1].tls.client_ca_file"),
        ("missing client ca", None, f'client_ca_file: "{path("nope")}" client_auth: OPTIONAL',
         "listeners[1].tls.client_ca_file"),
    ]
    bad.append(("not an OCSP response", None, None,
                "listeners[0].tls.certificates[0].ocsp_response_file"))
    for what, up, ca, needle in bad:
        ocsp = path("front.crt") if what == "not an OCSP response" else ""
        conf = write_config("bad.textproto", front, mtls, ports, up, ca, ocsp)
        r = run([LB, "--check_config", "--config", conf])
        check(r.returncode != 0 and needle in r.stderr,
              f"bad config ({what}) not refused naming {needle}: {r.returncode} {r.stderr}")
    conf = write_config("ok.textproto", front, mtls, ports,
                        upstream_tls(name="", extra="verify_hostname: false"))
    r = run([LB, "--check_config", "--config", conf])
    check(r.returncode == 0, "verify_hostname: false without server_name refused: " + r.stderr)
    print("ok bad upstream TLS / mTLS configs refused naming the field", flush=True)


def test_upstream(front, admin, good):
    rc, code, body = curl(front, "/echo")
    check(rc == 0 and code == 200 and "https=on" in body and f"port={good}" in body,
          f"https to an HTTPS backend: rc={rc} {code} {body!r}")
    conns = {re.search(r"conn=(\d+)", curl(front, "/echo")[2]).group(1) for _ in range(4)}
    check(len(conns) == 1, f"keep-alive did not reuse the TLS connection: {conns}")
    print("ok curl https through lb-l7 to an HTTPS nginx backend (keep-alive reused)", flush=True)
    for p in ("/other", "/wrong"):
        before = metric(metrics(admin), "lb_l7_upstream_tls_failures_total", reason="verify")
        rc, code, body = curl(front, p)
        check(code == 502, f"{p}: backend with a bad certificate answered {code} {body!r}")
        after = metric(metrics(admin), "lb_l7_upstream_tls_failures_total", reason="verify")
        check(after == before + 1, f"{p}: verify failure not counted ({before} -> {after})")
    print("ok backend signed by another CA / with the wrong name: 502, reason=verify", flush=True)
    before = metric(metrics(admin), "lb_l7_upstream_tls_failures_total", reason="verify")
    retries = metric(metrics(admin), "lb_l7_upstream_retries_total")
    for _ in range(4):
        rc, code, body = curl(front, "/mixed")
        check(code == 200 and f"port={good}" in body, f"/mixed: not retried: {code} {body!r}")
    m = metrics(admin)
    check(metric(m, "lb_l7_upstream_tls_failures_total", reason="verify") > before and
          metric(m, "lb_l7_upstream_retries_total") > retries,
          "verify failure in a two-backend pool not counted as a failure and a retry")
    print("ok a GET whose backend fails verification is retried on the other backend", flush=True)
    before = metric(metrics(admin), "lb_l7_upstream_tls_handshakes_total", kind="resumed")
    for _ in range(6):  # keepalive_requests 1: every request is a new connection
        rc, code, body = curl(front, "/fresh")
        check(code == 200 and "https=on" in body, f"/fresh: {code} {body!r}")
    after = metric(metrics(admin), "lb_l7_upstream_tls_handshakes_total", kind="resumed")
    check(after - before >= 4, f"upstream sessions not resumed: {before} -> {after}")
    print(f"ok upstream TLS sessions resumed ({int(after - before)} of 6 connections)", flush=True)


def test_mtls(front, mtls, admin):
    m = metrics(admin)
    before = metric(m, "lb_l7_tls_handshake_failures_total", listener="mtls", reason="client_cert")
    rc, code, body = curl(mtls, "/echo")
    check(rc != 0 and code == 0, f"mTLS REQUIRE served a client without a certificate: {code}")
    after = metric(metrics(admin), "lb_l7_tls_handshake_failures_total", listener="mtls",
                   reason="client_cert")
    check(after == before + 1, f"missing client certificate not counted ({before} -> {after})")
    key = ["--cert", path("rogue") + ".crt", "--key", path("rogue") + ".key"]
    rc, code, body = curl(mtls, "/echo", *key)
    check(rc != 0 and code == 0, "mTLS REQUIRE served a certificate from another CA")
    key = ["--cert", path("client") + ".crt", "--key", path("client") + ".key"]
    rc, code, body = curl(mtls, "/echo", *key)
    check(code == 200 and "subject=[CN=client-1,O=lb-test]" in body,
          f"mTLS with a certificate: {code} {body!r}")
    print("ok mTLS REQUIRE: no or foreign certificate refused (client_cert), subject forwarded",
          flush=True)
    rc, code, body = curl(mtls, "/echo", *key, "-H", "X-Client-Cert-Subject: CN=admin")
    check(code == 200 and "subject=[CN=client-1,O=lb-test]" in body and "admin" not in body,
          f"forged subject with a certificate: {body!r}")
    rc, code, body = curl(front, "/echo", "-H", "X-Client-Cert-Subject: CN=admin")
    check(code == 200 and "subject=[]" in body, f"forged subject passed to the backend: {body!r}")
    print("ok a forged X-Client-Cert-Subject is removed", flush=True)


def make_ocsp(status):
    """A DER OCSP response for the (self-signed) front certificate into ocsp.der."""
    serial = run(["openssl", "x509", "-in", path("front.crt"), "-noout", "-serial"]).stdout
    serial = serial.strip().split("=")[1]
    rev = "260101000000Z" if status == "R" else ""
    with open(path("index.txt"), "w") as f:
        f.write(f"{status}\t301231235959Z\t{rev}\t{serial}\tunknown\t/O=lb-test/CN=front.example\n")
    r = run(["openssl", "ocsp", "-issuer", path("front.crt"), "-cert", path("front.crt"),
             "-reqout", path("req.der"), "-no_nonce"])
    check(r.returncode == 0, "openssl ocsp request: " + r.stderr)
    r = run(["openssl", "ocsp", "-index", path("index.txt"), "-rsigner", path("front.crt"),
             "-rkey", path("front.key"), "-CA", path("front.crt"), "-reqin", path("req.der"),
             "-respout", path("ocsp.der.new"), "-ndays", "7"])
    check(r.returncode == 0, "openssl ocsp response: " + r.stderr)
    os.rename(path("ocsp.der.new"), path("ocsp.der"))


def s_client_status(port):
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
             "front.example", "-status"], inp="", timeout=10)
    return r.stdout + r.stderr


def test_ocsp(lb, front, mtls):
    out = s_client_status(front)
    check("OCSP Response Status: successful" in out and "Cert Status: good" in out,
          "no good OCSP staple:\n" + out)
    out = s_client_status(mtls)
    check("OCSP response: no response sent" in out, "staple on a listener without one:\n" + out)
    make_ocsp("R")
    lb.send_signal(signal.SIGHUP)
    for _ in range(50):
        out = s_client_status(front)
        if "Cert Status: revoked" in out:
            break
        time.sleep(0.1)
    check("Cert Status: revoked" in out, "OCSP file not re-read on SIGHUP:\n" + out)
    print("ok OCSP stapling from a file (s_client -status), re-read on SIGHUP", flush=True)


def main():
    try:
        make_cert("ca", "test CA")
        make_cert("ca2", "other CA")
        make_cert("cca", "client CA")
        make_cert("backend", "backend.internal", ["backend.internal"], ca="ca")
        make_cert("backend_other", "backend.internal", ["backend.internal"], ca="ca2")
        make_cert("backend_wrong", "elsewhere.internal", ["elsewhere.internal"], ca="ca")
        make_cert("front", "front.example", ["front.example"])
        make_cert("client", "client-1", ca="cca")
        make_cert("rogue", "client-1", ca="ca2")
        ports = (free_port(), free_port(), free_port(), free_port())
        good, other, wrong, fresh = ports
        start_nginx([(good, "backend", 1000), (other, "backend_other", 1000),
                     (wrong, "backend_wrong", 1000), (fresh, "backend", 1)])
        test_bad_configs(ports)
        front, mtls, admin = free_port(), free_port(), free_port()
        make_ocsp("V")
        conf = write_config("l7.textproto", front, mtls, ports, ocsp=path("ocsp.der"))
        r = run([LB, "--check_config", "--config", conf])
        check(r.returncode == 0, "valid config refused: " + r.stderr)
        lb, _ = H.start_lb("lb", conf, admin, workers=1)
        lib.wait_port(front, 10)
        test_upstream(front, admin, good)
        test_mtls(front, mtls, admin)
        test_ocsp(lb, front, mtls)
        text = metrics(admin)
        check(metric(text, "lb_l7_upstream_tls_handshakes_total", kind="full") >= 2,
              "full upstream handshakes not counted")
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 0, "promtool: " + p.stdout + p.stderr)
        print("ok upstream TLS metrics pass promtool", flush=True)
        lb.send_signal(signal.SIGTERM)
        check(lb.wait(timeout=15) == 0, "lb-l7 did not exit 0 on SIGTERM")
        print("PASS", flush=True)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
