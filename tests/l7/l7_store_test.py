#!/usr/bin/python3
"""Binary test of lb-l7's shared sticky store, backend draining,
max_connections with a queue, and the retry budget (docs/L7.md "Shared
sticky store", "Draining", "Connection limits and queue", "Retry budget").
Real redis-server (started here on a free port, no persistence), real
nginx backends, two lb-l7 processes.

Usage: l7_store_test.py LB_L7_BINARY
Checks (each prints "ok <name>"):
  store: a client address pinned through lb-l7 A goes to the same backend
  through lb-l7 B (five client addresses 127.0.0.2-6 on a round-robin
  pool, which alone would not agree); a pin written into Redis by hand is
  followed by both; redis-server SIGSTOPped -> requests still answered
  (fallback counted as timeout); killed -> answered (fallback counted as
  down), one "down" log line per worker; restarted -> reconnected, pins
  written and shared again.
  drain: SIGHUP with drain: true -> a download in flight on that backend
  completes, no new request reaches it, a cookie pinned to it is
  re-pinned, its idle pooled connections close; drain: false -> used again.
  limits: max_connections 2 with max_queue 2 and 200 ms queue timeout, 6
  concurrent slow requests over two workers -> 2 answered, 2 queue
  timeouts, 2 overflows (503); max_connections 1 with a long queue -> 3
  concurrent requests all answered, never overlapping at nginx.
  budget: a pool of dead backends, budget 1 % + 1 retry -> retries bounded,
  refusals counted.
Everything started here is stopped here; bounded at 100 s (about 20 s).
"""
import http.client
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import check, fail, free_port  # noqa: E402

H = lib.Harness(sys.argv[1], "l7store-", 100)
WORK, DEADLINE = H.work, H.deadline


def get(port, path="/", src="127.0.0.1", headers=None, timeout=5):
    """(status, body, lb_sticky Set-Cookie value or None) on a new connection from `src`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(src, 0))
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read().decode(errors="replace")
    c.close()
    cookie = None
    for k, v in r.getheaders():
        if k.lower() == "set-cookie" and v.startswith("lb_sticky="):
            cookie = v.split(";")[0][len("lb_sticky="):]
    return r.status, body.strip(), cookie


def scrape(admin):
    return lib.scrape(admin)


def msum(admin, name):
    return lib.metric_sum(scrape(admin), name)


def wait_for(cond, what, timeout=10):
    end = min(time.time() + timeout, DEADLINE)
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    fail("timed out waiting for " + what)


# ----------------------------------------------------------------- redis ---

class Redis:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc, _ = H.start("redis-%d" % len(H.procs), [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
            "--dir", WORK])
        if not lib.wait_port(self.port, 10):
            fail("redis-server did not open its port")

    def cli(self, *args):
        r = lib.run(["redis-cli", "-p", str(self.port), *args])
        return r.stdout.strip()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def start_nginx(name, port, extra=""):
    d = os.path.join(WORK, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "big"), "wb") as f:
        f.write(b"x" * 300_000)
    H.start_nginx(d, f"""
  log_format t '$msec $request_time $request_uri';
  access_log {d}/access.log t;
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 100000;
    location / {{ default_type text/plain; return 200 "be={name}\\n"; }}
    location /slow {{ alias {d}/big; limit_rate_after 0; limit_rate 300k; }}
    location /half {{ alias {d}/big; limit_rate_after 0; limit_rate 600k; }}
  }}""", worker_connections=256)
    return d


def start_lb(name, text, admin, extra=()):
    p, log = H.start_lb(name, H.write(name + ".textproto", text), admin, extra=extra)
    if not lib.wait_ready(p, log, 15):
        fail(name + " did not start:\n" + open(log).read())
    return p, log


# ----------------------------------------------------------------- tests ---

def test_store(ports, names):
    redis = Redis()
    redis.start()
    be = "".join('backends { address: "127.0.0.1" port: %d } ' % p for p in ports)

    def conf(listen):
        return f"""
sticky_store {{ redis_address: "127.0.0.1:{redis.port}" timeout_ms: 100 max_backoff_ms: 300 }}
listeners {{ name: "main" address: "127.0.0.1" port: {listen} default_pool: "ip" }}
pools {{ name: "ip" sticky_sessions: true sticky_source_ip: true sticky_ttl_seconds: 600 {be} }}
"""
    la, lb_, aa, ab = free_port(), free_port(), free_port(), free_port()
    _, log_a = start_lb("store-a", conf(la), aa)
    _, log_b = start_lb("store-b", conf(lb_), ab)
    wait_for(lambda: msum(aa, "lb_l7_sticky_store_connected") == 2 and
             msum(ab, "lb_l7_sticky_store_connected") == 2, "both lb-l7 connected to redis")

    pinned = {}
    for i in range(2, 7):
        src = "127.0.0.%d" % i
        st, body, _ = get(la, src=src)
        check(st == 200, "A answered %s" % st)
        pinned[src] = body
    check(len(set(pinned.values())) > 1, "round robin pinned every client to one backend")
    for src, want in pinned.items():
        for _ in range(4):
            for port, node in ((lb_, "B"), (la, "A")):
                st, body, _ = get(port, src=src)
                check(st == 200 and body == want,
                      "%s sent %s to %s, pinned to %s via A" % (node, src, body, want))
        key = "lb:sticky:ip:" + src
        val = redis.cli("GET", key)
        check(val and "be=" + names[int(val.rsplit(":", 1)[1])] == want,
              "redis holds %r for %s, expected %s" % (val, key, want))
        ttl = int(redis.cli("TTL", key))
        check(500 < ttl <= 600, "pin TTL %d, expected sticky_ttl_seconds 600" % ttl)
    print("ok a pin made through A is followed by B (5 client addresses, redis holds them)",
          flush=True)

    # A pin written into Redis by hand: both nodes follow it.
    target = ports[2]
    redis.cli("SET", "lb:sticky:ip:127.0.0.9", "127.0.0.1:%d" % target, "EX", "600")
    for port in (la, lb_, la, lb_):
        st, body, _ = get(port, src="127.0.0.9")
        check(body == "be=" + names[target], "a pin set in redis was not followed: %s" % body)
    print("ok both nodes follow a pin written into redis", flush=True)

    # Slow: redis stopped (no answers) -> fallback after timeout_ms.
    fb0 = msum(aa, 'lb_l7_sticky_store_fallbacks_total{reason="timeout"}')
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        for i in range(6):
            t0 = time.time()
            st, body, _ = get(la, src="127.0.0.2")
            check(st == 200, "request %d with redis stopped: %s" % (i, st))
            check(time.time() - t0 < 3, "a request waited %.1f s for a stopped redis" % (time.time() - t0))
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    fb1 = msum(aa, 'lb_l7_sticky_store_fallbacks_total{reason="timeout"}')
    check(fb1 > fb0, "no timeout fallback counted (%s -> %s)" % (fb0, fb1))
    print("ok redis stopped: 6 requests answered, %d timeout fallback(s)" % (fb1 - fb0), flush=True)
    wait_for(lambda: msum(aa, "lb_l7_sticky_store_connected") == 2, "A reconnected after SIGCONT")

    # Killed -> every request still answered, counted as fallbacks.
    redis.kill()
    wait_for(lambda: msum(aa, "lb_l7_sticky_store_connected") == 0 and
             msum(ab, "lb_l7_sticky_store_connected") == 0, "both saw redis go")
    down0 = msum(aa, "lb_l7_sticky_store_fallbacks_total") + msum(ab, "lb_l7_sticky_store_fallbacks_total")
    for i in range(20):
        st, _, _ = get(la if i % 2 else lb_, src="127.0.0.%d" % (2 + i % 5))
        check(st == 200, "request %d with redis down: %s" % (i, st))
    down1 = msum(aa, "lb_l7_sticky_store_fallbacks_total") + msum(ab, "lb_l7_sticky_store_fallbacks_total")
    check(down1 - down0 >= 20, "20 requests with redis down counted %d fallbacks" % (down1 - down0))
    time.sleep(1.0)  # several reconnect attempts fail meanwhile
    for log in (log_a, log_b):
        for w in (0, 1):
            # One line per change: never two "down" (or two "up") in a row,
            # although reconnects were tried every 100-300 ms.
            states = [ln.rsplit(" up", 1)[0] and ("up" if ln.rstrip().endswith(" up") else "down")
                      for ln in open(log).read().splitlines()
                      if "worker %d: sticky store" % w in ln]
            check(states and states[-1] == "down", "worker %d: no down line: %s" % (w, states))
            check(all(a != b for a, b in zip(states, states[1:])),
                  "worker %d logged a state twice in a row: %s" % (w, states))
    print("ok redis killed: 20 requests answered, %d fallbacks counted, one log line per change"
          % (down1 - down0), flush=True)

    # Restarted (empty): reconnect, new pins shared again.
    redis.start()
    wait_for(lambda: msum(aa, "lb_l7_sticky_store_connected") == 2 and
             msum(ab, "lb_l7_sticky_store_connected") == 2, "both reconnected to the new redis")
    st, want, _ = get(lb_, src="127.0.0.20")
    for port in (la, lb_, la):
        st, body, _ = get(port, src="127.0.0.20")
        check(st == 200 and body == want, "after the restart A/B disagree: %s vs %s" % (body, want))
    check(redis.cli("GET", "lb:sticky:ip:127.0.0.20"), "no pin written to the restarted redis")
    print("ok redis restarted: reconnected with backoff, pins shared again", flush=True)
    redis.kill()


def upstream_conns(pid, port):
    """Established TCP connections of process `pid` to 127.0.0.1:port."""
    r = lib.run(["ss", "-Htnp", "state", "established", "dst", "127.0.0.1:%d" % port])
    return len([ln for ln in r.stdout.splitlines() if "pid=%d," % pid in ln])


def test_drain(ports, names):
    be = "".join('backends { address: "127.0.0.1" port: %d %s} ' % (p, "DRAIN" if i == 0 else "")
                 for i, p in enumerate(ports))
    listen, admin = free_port(), free_port()

    def conf(drain):
        return f"""
listeners {{ name: "main" address: "127.0.0.1" port: {listen} default_pool: "c" }}
pools {{ name: "c" sticky_sessions: true {be.replace("DRAIN", "drain: true " if drain else "")} }}
"""
    path = H.write("drain.textproto", conf(False))
    p, log = H.start_lb("drain", path, admin)
    if not lib.wait_ready(p, log, 15):
        fail("drain lb-l7 did not start")
    first = "be=" + names[ports[0]]
    # A cookie pinned to the first backend, and keep-alive traffic to it
    # (pooled upstream connections).
    cookie = None
    for _ in range(6):
        st, body, ck = get(listen)
        if body == first:
            cookie = ck
    check(cookie, "no cookie for the first backend")
    c = http.client.HTTPConnection("127.0.0.1", listen, timeout=5)
    for _ in range(10):
        c.request("GET", "/", headers={"Cookie": "lb_sticky=" + cookie})
        r = c.getresponse()
        check(r.read().decode().strip() == first, "cookie did not hold before the drain")
    c.close()
    check(upstream_conns(p.pid, ports[0]) > 0, "no pooled connection to the first backend")
    # A download in flight to it (about 1 s), then drain it by SIGHUP.
    result = {}

    def download():
        try:
            cc = http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
            cc.request("GET", "/slow", headers={"Cookie": "lb_sticky=" + cookie})
            rr = cc.getresponse()
            result["len"] = len(rr.read())
            result["status"] = rr.status
        except Exception as e:  # noqa: BLE001
            result["err"] = repr(e)
    t = threading.Thread(target=download)
    t.start()
    time.sleep(0.3)
    with open(path, "w") as f:
        f.write(conf(True))
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: lib.metric(scrape(admin), "lb_l7_backend_draining", pool="c",
                                backend="127.0.0.1:%d" % ports[0]) == 1, "draining gauge")
    for _ in range(15):
        st, body, ck = get(listen)
        check(st == 200 and body != first, "a new request reached the draining backend: %s" % body)
    st, body, ck = get(listen, headers={"Cookie": "lb_sticky=" + cookie})
    check(st == 200 and body != first and ck, "a pin to the draining backend was not re-pinned: %s %s"
          % (body, ck))
    t.join(10)
    check(result.get("status") == 200 and result.get("len") == 300_000,
          "the in-flight download did not complete: %s" % result)
    wait_for(lambda: upstream_conns(p.pid, ports[0]) == 0, "idle pooled connections to the drained backend closed", 3)
    print("ok drain: in-flight download completed, no new requests, pin re-pinned, idle "
          "pooled connections closed", flush=True)
    with open(path, "w") as f:
        f.write(conf(False))
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: lib.metric(scrape(admin), "lb_l7_backend_draining", pool="c",
                                backend="127.0.0.1:%d" % ports[0]) == 0, "drain cleared")
    seen = {get(listen)[1] for _ in range(6)}
    check(first in seen, "the undrained backend gets no requests: %s" % seen)
    print("ok undrained by SIGHUP: used again", flush=True)


def test_limits(ports, names, dirs):
    listen, admin = free_port(), free_port()
    port = ports[1]
    text = f"""
listeners {{ name: "main" address: "127.0.0.1" port: {listen} default_pool: "m"
  routes {{ name: "q" path {{ prefix: "/half" }} headers {{ name: "X-Q" present: true }} pool: "q" }} }}
pools {{ name: "m" backends {{ address: "127.0.0.1" port: {port} max_connections: 2 }}
  max_queue: 2 queue_timeout_ms: 200 }}
pools {{ name: "q" backends {{ address: "127.0.0.1" port: {port} max_connections: 1 }}
  queue_timeout_ms: 10000 }}
"""
    start_lb("limits", text, admin)
    statuses = []
    lock = threading.Lock()

    def one(path, headers):
        try:
            c = http.client.HTTPConnection("127.0.0.1", listen, timeout=15)
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            st = r.status
            if st == 200 and len(body) != 300_000:
                st = "short body %d" % len(body)
        except Exception as e:  # noqa: BLE001
            st = repr(e)
        with lock:
            statuses.append(st)

    ts = [threading.Thread(target=one, args=("/slow", {})) for _ in range(6)]
    for t in ts:
        t.start()
        time.sleep(0.01)
    for t in ts:
        t.join(15)
    m = scrape(admin)
    ok, busy = statuses.count(200), statuses.count(503)
    check(ok == 2 and busy == 4, "6 requests over max_connections 2 + queue 2: %s" % statuses)
    check(lib.metric(m, "lb_l7_queue_overflows_total") == 2 and
          lib.metric(m, "lb_l7_queue_timeouts_total") == 2,
          "overflows/timeouts: %s/%s" % (lib.metric(m, "lb_l7_queue_overflows_total"),
                                         lib.metric(m, "lb_l7_queue_timeouts_total")))
    check(lib.metric(m, "lb_l7_queued_requests") == 0, "queued gauge not back to 0")
    print("ok max_connections 2, queue 2: 2 answered, 2 queue timeouts, 2 overflows (503)",
          flush=True)

    statuses.clear()
    log = os.path.join(dirs[port], "access.log")
    open(log, "w").close()
    ts = [threading.Thread(target=one, args=("/half", {"X-Q": "1"})) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    check(statuses == [200, 200, 200], "queued requests were not all served: %s" % statuses)
    time.sleep(0.2)
    spans = []
    for ln in open(log).read().split("\n"):
        f = ln.split()
        if len(f) == 3 and f[2] == "/half":
            end, dur = float(f[0]), float(f[1])
            spans.append((end - dur, end))
    spans.sort()
    check(len(spans) == 3, "nginx logged %d /half requests: %r" % (len(spans), open(log).read()))
    for a, b in zip(spans, spans[1:]):
        check(b[0] >= a[1] - 0.05, "two requests overlapped at nginx under max_connections 1: %s" % spans)
    print("ok max_connections 1 across two workers: 3 requests served one at a time from the "
          "queue", flush=True)


def test_budget():
    dead = [free_port() for _ in range(3)]
    be = "".join('backends { address: "127.0.0.1" port: %d } ' % p for p in dead)
    listen, admin = free_port(), free_port()
    text = f"""
listeners {{ name: "main" address: "127.0.0.1" port: {listen} default_pool: "r" }}
pools {{ name: "r" {be} eject_after_failures: 1000 connect_retries: 2
  retry_budget {{ budget_percent: 1 min_retries: 1 }} }}
"""
    start_lb("budget", text, admin)
    for i in range(10):
        st, _, _ = get(listen)
        check(st == 502, "request %d to dead backends: %s" % (i, st))
    m = scrape(admin)
    retries = lib.metric(m, "lb_l7_upstream_retries_total")
    refused = lib.metric(m, "lb_l7_retry_budget_exhausted_total")
    # Two workers, each: min 1 + 1 % of its requests (0 for < 100).
    check(retries <= 2, "retries %s beyond the budget (at most 2)" % retries)
    check(refused >= 8, "retry budget refusals %s (expected >= 8)" % refused)
    print("ok retry budget: %d retries for 10 failing requests, %d refused" % (retries, refused),
          flush=True)


def main():
    names = {}
    dirs = {}
    ports = [free_port() for _ in range(3)]
    for n, p in zip(("a", "b", "c"), ports):
        names[p] = n
        dirs[p] = start_nginx(n, p)
    for p in ports:
        if not lib.wait_port(p, 10):
            fail("nginx %d did not start" % p)
    test_store(ports, names)
    test_drain(ports, names)
    test_limits(ports, names, dirs)
    test_budget()


if __name__ == "__main__":
    try:
        main()
    finally:
        H.cleanup()
