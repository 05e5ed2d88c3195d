#!/usr/bin/env python3
"""The control plane's active checks of lb-l7's pools (docs/L7.md "Active
health checks").

Usage: l7_active_health_test.py <lb-l7> <lb-controlplane> <lbctl>

Real processes only: two nginx backends (each answers its own name on /,
and 200 on /health unless a flag file exists, then 500), lb-controlplane,
lb-l7 --controlplane, lbctl, curl. One pool, round robin, sticky cookie,
health_check { path: "/health" interval_ms: 200 unhealthy_threshold: 2 }.
  1. both backends answer (curl 30 times), a cookie pinned to b is taken;
  2. b's /health answers 500 (b still serves / fine, so lb-l7's passive
     checks see nothing): the control plane marks it down within 5 s,
     lb-l7 shows lb_l7_backend_down 1 with the config generation unchanged
     (health is streamed apart from the configuration), 30 curls (new
     connections) and the b cookie all reach a, none reaches b (its access
     log does not grow);
  3. /health 200 again: b returns (both answer again);
  4. b's nginx stopped (connect refused): down again within 5 s, 30 curls
     all on a; restarted: b returns;
  5. the control plane's metrics count the checks and transitions.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402

check, fail = lib.check, lib.fail

L4_CONFIG = """
node { tunnel_source_ipv4: "192.0.2.1" }
tables { ring_size: 251 }
"""


def curl(port, cookie=None):
    args = ["curl", "-s", "-m", "5", "-D", "-", f"http://127.0.0.1:{port}/x"]
    if cookie:
        args += ["-H", f"Cookie: {cookie}"]
    r = lib.run(args)
    if r.returncode != 0:
        return None, None, None
    head, _, body = r.stdout.partition("\n\n")  # text mode: CRLF read as LF
    status = int(head.split()[1])
    m = re.search(r"(?im)^set-cookie: *(lb_sticky=[^;\r\n]*)", head)
    return status, body.strip(), m.group(1) if m else None


def answers(port, n=30, cookie=None):
    bodies = {}
    for _ in range(n):
        st, body, _ = curl(port, cookie)
        key = body if st == 200 else f"status {st}"
        bodies[key] = bodies.get(key, 0) + 1
    return bodies


def wait_metric(admin, name, want, timeout, **labels):
    end = time.time() + timeout
    v = None
    while time.time() < end:
        try:
            v = lib.metric(lib.scrape(admin), name, **labels)
        except OSError:
            v = None
        if v == want:
            return time.time()
        time.sleep(0.05)
    fail(f"{name}{labels} is {v}, not {want}, after {timeout} s")


def main():
    lb_l7, lb_cp, lbctl = sys.argv[1:4]
    h = lib.Harness(lb_l7, "l7hc-", 60)
    try:
        run(h, lb_cp, lbctl)
    finally:
        h.cleanup()
    print("PASS", flush=True)


def start_backend(h, name, port, flag):
    d = h.start_nginx(h.path("nginx-" + name), f"""
  access_log {h.path("nginx-" + name)}/access.log;
  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;
    location = /health {{ access_log off; if (-f {flag}) {{ return 500 "sick\\n"; }}
                          return 200 "ok\\n"; }}
    location / {{ return 200 "{name}\\n"; }} }}""", stop=lib.quit_nginx)
    check(lib.wait_port(port, 5), f"nginx {name} did not start ({d})")
    return d


def access_lines(d):
    try:
        return sum(1 for _ in open(d + "/access.log"))
    except OSError:
        return 0


def run(h, lb_cp, lbctl):
    a, b = lib.free_port(), lib.free_port()
    flag = h.path("b-sick")
    start_backend(h, "a", a, flag + ".never")
    db = start_backend(h, "b", b, flag)

    cp_dir = h.path("cp")
    os.makedirs(cp_dir)
    cp_port, cp_http = lib.free_port(), lib.free_port()
    conf = h.write("lb.textproto", L4_CONFIG)
    cp, cp_log = h.start("controlplane", [
        lb_cp, f"--config={conf}", f"--state_dir={cp_dir}/state",
        f"--table_region={cp_dir}/tables", f"--stats_region={cp_dir}/stats",
        f"--grpc_listen=127.0.0.1:{cp_port}", f"--http_listen=127.0.0.1:{cp_http}",
        "--max_vips=8", "--max_backends=16", "--max_members=64", "--max_ring_size=251"])
    end = time.time() + 15
    while "gRPC admin API on" not in open(cp_log).read():
        check(cp.poll() is None and time.time() < end,
              "lb-controlplane did not start:\n" + open(cp_log).read())
        time.sleep(0.05)
    server = f"127.0.0.1:{cp_port}"

    listen, admin = lib.free_port(), lib.free_port()
    cfg = h.write("l7.textproto", f"""
listeners {{ name: "main" address: "127.0.0.1" port: {listen} default_pool: "web" }}
pools {{ name: "web" sticky_sessions: true
  backends {{ address: "127.0.0.1" port: {a} }}
  backends {{ address: "127.0.0.1" port: {b} }}
  health_check {{ path: "/health" interval_ms: 200 timeout_ms: 200 unhealthy_threshold: 2
                  healthy_threshold: 2 }} }}
""")
    r = lib.run([lbctl, f"--server={server}", "l7", "set", cfg])
    check(r.returncode == 0 and "generation 1" in r.stdout, f"lbctl l7 set: {r.stdout}{r.stderr}")
    l7, l7_log = h.start("l7", [h.lb, f"--controlplane={server}", "--workers=2",
                                f"--admin_port={admin}", "--controlplane_start_timeout_ms=5000"])
    check(lib.wait_ready(l7, l7_log, 10), "lb-l7 not ready:\n" + open(l7_log).read())
    check(lib.wait_port(listen, 5), "lb-l7 does not listen")
    backend_b = f"127.0.0.1:{b}"

    # 1. Both answer; a cookie pinned to b.
    got = answers(listen)
    check(got.get("a", 0) > 0 and got.get("b", 0) > 0 and sum(got.values()) == 30,
          f"both backends should answer: {got}")
    cookie_b = None
    for _ in range(10):
        st, body, c = curl(listen)
        if body == "b" and c:
            cookie_b = c
            break
    check(cookie_b is not None, "no sticky cookie pinned to b")
    check(answers(listen, 5, cookie_b) == {"b": 5}, "the cookie does not hold to b")
    check(lib.metric(lib.scrape(admin), "lb_l7_backend_down", pool="web", backend=backend_b) == 0,
          "b down at first")
    print(f"ok both backends answer ({got}); cookie pinned to b", flush=True)

    # 2. /health 500 on b: down within a bounded time, no request reaches b.
    open(flag, "w").close()
    t0 = time.time()
    t_down = wait_metric(admin, "lb_l7_backend_down", 1, 5, pool="web", backend=backend_b)
    text = lib.scrape(admin)
    check(lib.metric(text, "lb_l7_config_generation") == 1,
          "a health change must not be a new configuration generation")
    check(lib.metric(text, "lb_l7_health_generation") >= 1, "health generation not applied")
    before = access_lines(db)
    got = answers(listen)
    check(got == {"a": 30}, f"b is down: every request on a, got {got}")
    check(answers(listen, 10, cookie_b) == {"a": 10}, "the b cookie is not re-pinned to a")
    time.sleep(0.3)
    check(access_lines(db) == before,
          f"b got {access_lines(db) - before} request(s) while down")
    print(f"ok /health 500: b down after {t_down - t0:.2f} s, 40 requests all on a, "
          "config generation unchanged", flush=True)

    # 3. Healthy again: b returns.
    os.remove(flag)
    t0 = time.time()
    t_up = wait_metric(admin, "lb_l7_backend_down", 0, 5, pool="web", backend=backend_b)
    got = answers(listen)
    check(got.get("a", 0) > 0 and got.get("b", 0) > 0 and sum(got.values()) == 30,
          f"b back: both should answer, got {got}")
    print(f"ok /health 200: b up after {t_up - t0:.2f} s ({got})", flush=True)

    # 4. b's nginx stopped: down; restarted: back.
    lib.quit_nginx(db)
    t0 = time.time()
    t_down = wait_metric(admin, "lb_l7_backend_down", 1, 5, pool="web", backend=backend_b)
    got = answers(listen)
    check(got == {"a": 30}, f"b stopped: every request on a, got {got}")
    subprocess.run(["nginx", "-p", db, "-c", db + "/nginx.conf", "-e", db + "/error.log"],
                   check=True)
    check(lib.wait_port(b, 5), "nginx b did not restart")
    wait_metric(admin, "lb_l7_backend_down", 0, 5, pool="web", backend=backend_b)
    got = answers(listen)
    check(got.get("a", 0) > 0 and got.get("b", 0) > 0, f"b restarted: both should answer: {got}")
    print(f"ok b stopped: down after {t_down - t0:.2f} s, 30 requests on a; restarted: back",
          flush=True)

    # 5. The control plane's counters.
    r = lib.run(["curl", "-s", "-m", "5", f"http://127.0.0.1:{cp_http}/metrics"])
    m = {}
    for line in r.stdout.splitlines():
        mm = re.match(r'(lb_l7_health_\w+)(\{result="(\w+)"\})? (\d+)', line)
        if mm:
            m[mm.group(1) + (":" + mm.group(3) if mm.group(3) else "")] = int(mm.group(4))
    check(m.get("lb_l7_health_checks_total:ok", 0) > 0 and
          m.get("lb_l7_health_checks_total:failed", 0) > 0, f"check counters: {m}")
    check(m.get("lb_l7_health_transitions_total") == 4, f"4 transitions (down, up, down, up): {m}")
    check(m.get("lb_l7_health_backends") == 2 and m.get("lb_l7_health_backends_down") == 0,
          f"2 checked, none down: {m}")
    print(f"ok control plane metrics {m}", flush=True)


if __name__ == "__main__":
    main()
