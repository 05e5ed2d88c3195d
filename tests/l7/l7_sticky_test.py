#!/usr/bin/python3
"""Binary test of lb-l7's sticky sessions and consistent hashing (docs/L7.md
"Sticky sessions", "Algorithms"): three real nginx on loopback ports, two
lb-l7 processes sharing one sticky_secret_file.

Usage: l7_sticky_test.py LB_L7_BINARY
Checks (each prints "ok <name>"):
  a cookie keeps its backend over 20 requests on a round-robin pool; the
  other lb-l7 honours it; a forged and a garbled cookie are ignored (new
  cookie, counted); source-IP stickiness; Maglev on a header (same key ->
  same backend, spread); the pinned nginx killed -> re-pinned with a new
  cookie and 0 failed GETs; a secret file readable by others is refused;
  metrics. Everything started here is stopped here; bounded at 120 s.
"""
import http.client
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import check, fail, free_port  # noqa: E402

H = lib.Harness(sys.argv[1], "l7sticky-", 120)
LB, WORK, PROCS, DEADLINE = H.lb, H.work, H.procs, H.deadline
NGINX = {}
cleanup = H.cleanup


def start_nginx(name, port):
    NGINX[name] = H.start_nginx(os.path.join(WORK, name), f"""
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "be={name}\\n"; }}
  }}""", worker_connections=256)


def stop_nginx(name):
    d = NGINX.pop(name, None)
    if d is not None:
        lib.kill_nginx(d)


def start_lb(config_text, name, admin_port=0):
    return H.start_lb(name, H.write(name + ".textproto", config_text), admin_port)[0]


def wait_port(port):
    if not lib.wait_port(port, DEADLINE - time.time()):
        fail("port %d never opened" % port)


def get(port, path="/", headers=None):
    """A GET on a new connection: (status, body, Set-Cookie value of lb_sticky or None)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    cookie = None
    for k, v in r.getheaders():
        if k.lower() == "set-cookie" and v.startswith("lb_sticky="):
            cookie = v.split(";")[0][len("lb_sticky="):]
    return r.status, body.strip(), cookie


def metric(admin_port, name):
    return lib.metric_sum(urllib_get(admin_port, "/metrics"), name)


def urllib_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    body = c.getresponse().read().decode()
    c.close()
    return body


def config(listen_port, backends, secret):
    be = "".join('backends { address: "127.0.0.1" port: %d } ' % p for p in backends)
    return f"""
sticky_secret_file: "{secret}"
listeners {{ name: "main" address: "127.0.0.1" port: {listen_port} default_pool: "rr"
  routes {{ name: "ip" path {{ prefix: "/ip/" }} pool: "ip" }}
  routes {{ name: "hash" path {{ prefix: "/h/" }} pool: "hash" }} }}
pools {{ name: "rr" sticky_sessions: true sticky_ttl_seconds: 600 {be} }}
pools {{ name: "ip" sticky_sessions: true sticky_source_ip: true {be} }}
pools {{ name: "hash" algorithm: ALGORITHM_MAGLEV hash_on {{ header: "X-User" }} {be} }}
"""


def main():
    ports = {n: free_port() for n in ("a", "b", "c")}
    for n, p in ports.items():
        start_nginx(n, p)
    secret = os.path.join(WORK, "sticky.key")
    with open(secret, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(secret, 0o600)
    backends = list(ports.values())
    l1, l2, adm1, adm2 = free_port(), free_port(), free_port(), free_port()
    start_lb(config(l1, backends, secret), "lb1", adm1)
    start_lb(config(l2, backends, secret), "lb2", adm2)
    wait_port(l1)
    wait_port(l2)

    # Round robin without a cookie: spread, and every answer pins.
    seen = set()
    for _ in range(6):
        st, body, cookie = get(l1)
        check(st == 200 and cookie, "no Set-Cookie on a sticky pool: %s %s" % (st, cookie))
        seen.add(body)
    check(len(seen) == 3, "round robin did not reach all backends: %s" % seen)
    print("ok round robin pins every new client", flush=True)

    st, pinned, cookie = get(l1)
    for i in range(20):
        st, body, again = get(l1, headers={"Cookie": "x=1; lb_sticky=" + cookie})
        check(st == 200 and body == pinned, "request %d left %s for %s" % (i, pinned, body))
        check(again is None, "a valid fresh cookie was re-issued")
    print("ok cookie keeps", pinned, "over 20 requests", flush=True)

    for i in range(10):
        st, body, again = get(l2, headers={"Cookie": "lb_sticky=" + cookie})
        check(st == 200 and body == pinned and again is None,
              "lb2 did not honour lb1's cookie: %s %s" % (body, again))
    print("ok the second lb-l7 (same secret file) honours the cookie", flush=True)

    mac = cookie[-64:]
    forged_mac = cookie[:-64] + ("0" if mac[0] != "0" else "1") + mac[1:]
    hex_other = "127.0.0.1:%d" % [p for n, p in ports.items() if "be=" + n != pinned][0]
    forged_be = hex_other.encode().hex() + cookie[cookie.index("."):]
    bodies = set()
    for bad in (forged_mac, forged_be, "garbage", cookie[:-1]):
        for _ in range(3):
            st, body, again = get(l1, headers={"Cookie": "lb_sticky=" + bad})
            check(st == 200 and again and again != bad, "forged cookie not replaced: %s" % again)
            bodies.add(body)
    check(len(bodies) > 1, "forged cookies all went to one backend (were they honoured?)")
    check(metric(adm1, 'lb_l7_sticky_invalid_cookies_total{reason="bad_signature"}') >= 6,
          "bad signatures not counted")
    check(metric(adm1, 'lb_l7_sticky_invalid_cookies_total{reason="malformed"}') >= 6,
          "garbled cookies not counted")
    print("ok forged and garbled cookies ignored, re-pinned and counted", flush=True)

    ip_seen = {get(l1, "/ip/x")[1] for _ in range(12)}
    check(len(ip_seen) == 1, "source-IP stickiness moved: %s" % ip_seen)
    print("ok source-IP stickiness keeps", ip_seen.pop(), flush=True)

    users = {}
    for u in range(40):
        users[u] = get(l1, "/h/", {"X-User": "user-%d" % u})[1]
    for u in range(40):
        check(get(l2, "/h/", {"X-User": "user-%d" % u})[1] == users[u],
              "Maglev key user-%d moved between requests or nodes" % u)
    check(len(set(users.values())) == 3, "Maglev keys did not spread: %s" % set(users.values()))
    print("ok Maglev on X-User: same key same backend on both nodes, spread over 3", flush=True)

    # The pinned backend dies: GETs with its cookie keep working (connect
    # retry), the first answer re-pins with a new cookie, which then holds.
    stop_nginx(pinned[3:])
    failures, new_cookie, after = 0, None, set()
    for i in range(20):
        try:
            st, body, again = get(l1, headers={"Cookie": "lb_sticky=" + (new_cookie or cookie)})
        except OSError:
            failures += 1
            continue
        if st != 200:
            failures += 1
            continue
        if new_cookie is None:
            check(again, "no new cookie after the pinned backend died")
            new_cookie = again
        after.add(body)
    check(failures == 0, "%d failed GETs after the pinned backend died" % failures)
    check(len(after) == 1 and pinned not in after, "re-pin not stable: %s" % after)
    check(metric(adm1, "lb_l7_sticky_repins_total") >= 1, "re-pin not counted")
    check(metric(adm1, "lb_l7_sticky_hits_total") >= 20, "hits not counted")
    print("ok backend killed: 0 failed GETs, re-pinned to", after.pop(), flush=True)

    # A secret file others can read is refused at start-up, naming the field.
    os.chmod(secret, 0o644)
    r = subprocess.run([LB, "--config", os.path.join(WORK, "lb1.textproto"), "--check_config"],
                       capture_output=True, text=True, timeout=10)
    check(r.returncode != 0 and "sticky_secret_file" in r.stderr, "0644 secret accepted: " + r.stderr)
    print("ok a group/other-readable secret file is refused", flush=True)

    for p in PROCS:
        p.send_signal(signal.SIGTERM)
    for p in PROCS:
        check(p.wait(timeout=15) == 0, "lb-l7 did not exit 0")
    print("PASS", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, lambda *_: fail("timed out"))
    signal.alarm(150)
    try:
        main()
    finally:
        cleanup()
