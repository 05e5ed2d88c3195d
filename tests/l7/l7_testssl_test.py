#!/usr/bin/python3
"""testssl.sh (Debian package testssl.sh) against an lb-l7 TLS-terminating
listener with its default policy (docs/L7.md "TLS"), an ECDSA and an RSA
certificate made here with `openssl req`, in front of a plain nginx. The
verdicts are read from testssl's JSON (--jsonfile) and asserted by id.
Starts and stops everything itself (by PID), bounded in time, temp dir
removed.

Usage: l7_testssl_test.py LB_L7_BINARY
Checks:
  protocols: SSLv2, SSLv3, TLS 1.0, TLS 1.1 not offered; TLS 1.2 and 1.3
  offered. Cipher categories: NULL, aNULL, export, LOW (DES, RC2, RC4),
  3DES/IDEA and obsolete CBC not offered; AEAD offered. Vulnerabilities:
  each check below present with severity OK. No finding of any id has
  severity LOW, MEDIUM, HIGH or CRITICAL.
Run: testssl --fast -p -s -U (protocols, cipher categories,
vulnerabilities), about 25 s here; the time is printed.
"""
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import free_port, run  # noqa: E402

H = lib.Harness(sys.argv[1], "l7testssl-", 110)
LB, DEADLINE = H.lb, H.deadline
path = H.path

NOT_OFFERED = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "cipherlist_NULL", "cipherlist_aNULL",
               "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA",
               "cipherlist_AVERAGE"]
OFFERED = ["TLS1_2", "TLS1_3", "cipherlist_STRONG"]
VULNS = ["heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
         "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
         "LOGJAM", "BEAST", "LUCKY13"]
BAD = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}


def check(cond, msg):
    lib.check(cond, msg, DEADLINE)


def main():
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    check(testssl, "testssl not installed (Debian package testssl.sh; scripts/install-deps.sh)")
    for name, key in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                      ("rsa", ["-newkey", "rsa:2048"])):
        r = run(["openssl", "req", "-x509", "-nodes", *key, "-keyout", path(name + ".key"),
                 "-out", path(name + ".crt"), "-days", "30", "-subj", "/CN=testssl.test",
                 "-addext", "subjectAltName=DNS:testssl.test"], timeout=60)
        check(r.returncode == 0, "openssl req: " + r.stderr)
        os.chmod(path(name + ".key"), 0o600)
    backend = free_port()
    H.start_nginx(path("nginx"), f"""  access_log off;
  server {{ listen 127.0.0.1:{backend};
    location / {{ default_type text/plain; return 200 "hello\\n"; }} }}""", stop=lib.quit_nginx)
    check(lib.wait_port(backend, 10), "nginx did not start")
    port, admin = free_port(), free_port()
    conf = H.write("l7.textproto", f"""
listeners {{ name: "tls" address: "127.0.0.1" port: {port} default_pool: "web"
  tls {{ certificates {{ cert_file: "{path('ecdsa.crt')}" key_file: "{path('ecdsa.key')}" }}
        certificates {{ cert_file: "{path('rsa.crt')}" key_file: "{path('rsa.key')}" }} }} }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {backend} }} }}
""")
    lbp, log = H.start_lb("lb", conf, admin, workers=1)
    check(lib.wait_ready(lbp, log, 10), "lb-l7 did not start: " + open(log).read())

    out = path("testssl.json")
    t = time.time()
    r = run([testssl, "--quiet", "--color", "0", "--warnings", "off", "--fast",
             "--openssl", "/usr/bin/openssl", "-p", "-s", "-U", "--jsonfile", out,
             f"127.0.0.1:{port}"], timeout=95)
    took = time.time() - t
    check(os.path.exists(out), f"testssl wrote no JSON (rc={r.returncode}): {r.stdout[-2000:]}")
    findings = json.load(open(out))
    by_id = {f["id"]: f for f in findings}

    def finding(i):
        check(i in by_id, f"testssl has no finding {i}: ids {sorted(by_id)}")
        return by_id[i]

    for i in NOT_OFFERED:
        f = finding(i)
        check(f["finding"].startswith("not offered"), f"{i}: {f}")
    for i in OFFERED:
        f = finding(i)
        check(f["finding"].startswith("offered") and f["severity"] == "OK", f"{i}: {f}")
    for i in VULNS:
        f = finding(i)
        check(f["severity"] == "OK", f"{i}: {f}")
    flagged = [f for f in findings if f["severity"] in BAD]
    check(not flagged, f"testssl flagged: {flagged}")
    # Debian's openssl 3 has no RC4 at all, so testssl cannot run its RC4
    # probe (a WARN about the local openssl); RC4 on the server is covered
    # by cipherlist_LOW (RC2/RC4, tested over raw sockets) above.
    rc4 = by_id.get("RC4")
    check(rc4 is None or rc4["severity"] == "OK" or "local OpenSSL" in rc4["finding"],
          f"RC4: {rc4}")
    print(f"ok testssl -p -s -U --fast: {len(findings)} findings, none flagged; "
          f"SSLv2/SSLv3/TLS1.0/1.1, NULL/aNULL/export/LOW/3DES/CBC not offered; "
          f"{len(VULNS)} vulnerability checks OK ({took:.1f} s)", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        H.cleanup()
