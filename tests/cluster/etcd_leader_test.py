#!/usr/bin/python3
"""Three lb-controlplane processes on one etcd: one leader's health view.

Runs in a network namespace of its own (the script re-executes itself under
`unshare --net`; the namespace and its veth vanish with the last process):
loopback up, a veth pair lease-v0/lease-v1 holding the backends' addresses
10.77.0.11-13, on each an HTTP health endpoint (GET /health -> 200) served by
this script. A real etcd (Debian's etcd-server, temp data dir, free ports)
and three lb-controlplane nodes A, B, C on one prefix (each its own table and
stats regions, --node_name, --etcd_lease_ttl_s=2), bootstrapped with one
pool whose backends are HTTP-checked every 100 ms. A sampler polls every
node's lb_cp_leader all along. Then:

  (a) exactly one leader, and every node sees the same term
      (lb_cp_leader_term); the leader's /metrics passes promtool;
  (a2) only node C's checker loses 10.77.0.12 (C runs as user nobody and a
      uidrange policy route in the namespace prohibits that address for
      nobody; C's own view, GET /pools/web/backends/{id}/health, turns unhealthy): when
      C is a follower, no node's tables change (the leader's view counts);
      were C the leader, all three would take it out together;
  (b) backend 10.77.0.12's health endpoint stopped: every node publishes a
      new VIP fingerprint, all three equal, the backend unhealthy (published DOWN) on every node,
      and the last node publishes within 1 s of the first (the leader's
      verdict reaching the others through etcd);
  (c) the leader killed with SIGKILL: a new leader within TTL + 2 s, with a
      higher term;
  (d) the endpoint restarted: the two survivors go back to the original
      fingerprint within 1 s of each other (the new leader's verdict);
  (e) the new leader stopped with SIGTERM (it revokes its lease): the last
      node leads within 1 s, well before the 2 s TTL could expire;
  and throughout, no sample ever shows two leaders.

Everything is killed by PID and the temp dir removed in every case.

Usage: etcd_leader_test.py <lb-controlplane binary>
Exit 0 on success, 77 (skip) without etcd or unshare, 1 on the first failure.
"""
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etcd_cluster_test as ct  # noqa: E402

TTL_S = 2
CONVERGE_S = 1.0
BACKENDS = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
HEALTH_PORT = 8080


class Failure(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a checker that hangs up early (or a check timing out) is no test failure


class Endpoint:
    """An HTTP health endpoint on address:8080 that can be stopped and started."""

    def __init__(self, address):
        self.address = address
        self.server = None
        self.thread = None

    def start(self):
        self.server = QuietServer((self.address, HEALTH_PORT), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None


def metrics(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/metrics", timeout=2) as r:
        out = {}
        for line in r.read().decode().splitlines():
            m = re.match(r"(lb_cp_[a-z_]+) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out


def alive(nodes):
    return [n for n in nodes if n.proc is not None and n.proc.poll() is None]


class Sampler:
    """Polls lb_cp_leader on every live node; records rounds with two leaders."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.stop = threading.Event()
        self.double = []
        self.rounds = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            leaders = []
            for n in alive(self.nodes):
                try:
                    if metrics(n).get("lb_cp_leader") == 1:
                        leaders.append(n.name)
                except OSError:
                    pass  # a node being killed or stopped
            if len(leaders) > 1:
                self.double.append((time.monotonic(), leaders))
            self.rounds += 1
            time.sleep(0.01)


def leaders_of(nodes):
    return [n for n in alive(nodes) if metrics(n).get("lb_cp_leader") == 1]


def wait_one_leader(nodes, limit, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        ls = leaders_of(nodes)
        if len(ls) == 1:
            return ls[0], time.monotonic() - t0
        time.sleep(0.01)
    raise Failure(f"{what}: no single leader within {limit} s (leaders: "
                  f"{[n.name for n in leaders_of(nodes)]})")


def fingerprint(node):
    return node.vips()[1]["198.51.100.10"]


def watch_change(nodes, old, limit, what):
    """Waits until every node's fingerprint differs from old[node]; returns
    {node name: monotonic time of the change}."""
    seen = {}
    t0 = time.monotonic()
    while len(seen) < len(nodes):
        now = time.monotonic()
        for n in nodes:
            if n.name not in seen and fingerprint(n) != old[n.name]:
                seen[n.name] = now
        if now - t0 > limit:
            raise Failure(f"{what}: nodes {[n.name for n in nodes if n.name not in seen]} did "
                          f"not publish a new fingerprint within {limit} s")
        time.sleep(0.005)
    return seen


def check_same(nodes, what):
    fps = {n.name: fingerprint(n) for n in nodes}
    if len(set(fps.values())) != 1:
        raise Failure(f"{what}: fingerprints differ: {fps}")
    return next(iter(fps.values()))


def backend_state(node, address):
    st, b = ct.http(node.port, "GET", "/pools/web/backends")
    if st != 200:
        raise Failure(f"{node.name}: GET backends -> {st} {b}")
    for x in b.get("backends", []):
        if x["address"] == address:
            return x["status"]  # the published health (the leader's)
    raise Failure(f"{node.name}: no backend {address}")


def in_netns():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Policy routing by uid (the namespace is ours): rules for user nobody
    # (node C) before the local table, so a route in table 100 can hide a
    # local address from node C alone.
    for rule in (["add", "pref", "100", "lookup", "local"], ["del", "pref", "0"],
                 ["add", "pref", "10", "uidrange", "65534-65534", "lookup", "100"]):
        subprocess.run(["ip", "rule"] + rule, check=True)
    subprocess.run(["ip", "link", "add", "lease-v0", "type", "veth", "peer", "name", "lease-v1"],
                   check=True)
    for dev in ("lease-v0", "lease-v1"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    for a in BACKENDS:
        subprocess.run(["ip", "addr", "add", f"{a}/24", "dev", "lease-v0"], check=True)


def run(binary):
    work = tempfile.mkdtemp(prefix="lb-etcd-lease-", dir="/dev/shm")
    etcd = ct.Etcd(work)
    nodes, endpoints, sampler = [], [], None
    try:
        in_netns()
        endpoints = [Endpoint(a) for a in BACKENDS]
        for e in endpoints:
            e.start()
        backends = "".join(f' backends {{ address: "{a}" port: {HEALTH_PORT} }}' for a in BACKENDS)
        with open(os.path.join(work, "bootstrap.textproto"), "w") as f:
            f.write('node { tunnel_source_ipv4: "192.0.2.1" }\ntables { ring_size: 4099 }\n'
                    'pools { name: "web" health_check { kind: HEALTH_CHECK_KIND_HTTP '
                    'interval_ms: 100 timeout_ms: 300 healthy_threshold: 1 '
                    f'unhealthy_threshold: 2 http_path: "/health" }}{backends} }}\n'
                    'vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 80 '
                    'pool: "web" }\n')
        etcd.start()
        store = f"etcd://127.0.0.1:{etcd.port}/lbtest/lease"
        os.chmod(work, 0o777)  # node C runs as nobody and writes its regions here
        nodes = [ct.Node(binary, work, name, store,
                         extra=[f"--node_name=lease-{name}", f"--etcd_lease_ttl_s={TTL_S}"],
                         user="nobody" if name == "C" else None)
                 for name in ("A", "B", "C")]
        for n in nodes:
            n.start()
        sampler = Sampler(nodes)
        sampler.thread.start()

        # (a) one leader, one term everywhere.
        leader, took = wait_one_leader(nodes, 5.0, "(a)")
        ct.wait_for("(a) every node sees the leader's term",
                    lambda: len({metrics(n).get("lb_cp_leader_term") for n in nodes}) == 1
                    and metrics(nodes[0]).get("lb_cp_leader_term", 0) > 0, 2.0)
        term = metrics(leader)["lb_cp_leader_term"]
        ct.wait_for("(a) every backend healthy on every node",
                    lambda: all(backend_state(n, a) == "healthy"
                                for n in nodes for a in BACKENDS), 5.0)
        fp0 = check_same(nodes, "(a)")
        if shutil.which("promtool"):
            with urllib.request.urlopen(f"http://127.0.0.1:{leader.port}/metrics",
                                        timeout=2) as r:
                text = r.read()
            pt = subprocess.run(["promtool", "check", "metrics"], input=text,
                                capture_output=True)
            if pt.returncode != 0 or b"lb_cp_leader 1" not in text:
                raise Failure(f"(a) the leader's /metrics: promtool {pt.returncode} "
                              f"{pt.stdout[-300:]} {pt.stderr[-300:]}")
        print(f"(a) leader {leader.name} (term {term:.0f}) after {took:.2f} s; fingerprints "
              f"equal ({fp0})")

        # (a2) only node C's own view loses a backend.
        c = nodes[2]
        st, lst = ct.http(c.port, "GET", "/pools/web/backends")
        bid = [x["id"] for x in lst["backends"] if x["address"] == BACKENDS[1]][0]

        def c_local(status):
            st, h = ct.http(c.port, "GET", f"/pools/web/backends/{bid}/health")
            return st == 200 and h.get("status") == status
        route = ["ip", "route", "{}", "prohibit", f"{BACKENDS[1]}/32", "table", "100"]
        subprocess.run([x.format("add") for x in route], check=True)
        try:
            ct.wait_for("(a2) node C's own view: unhealthy", lambda: c_local("unhealthy"), 3.0)
            time.sleep(0.5)  # five check intervals: time for anything to (wrongly) follow
            if c is not leader:
                fps = {n.name: fingerprint(n) for n in nodes}
                if set(fps.values()) != {fp0}:
                    raise Failure(f"(a2) a follower's own verdict changed tables: {fps}")
                for n in nodes:
                    if backend_state(n, BACKENDS[1]) != "healthy":
                        raise Failure(f"(a2) {n.name} publishes {BACKENDS[1]} as not healthy")
                print(f"(a2) follower C alone sees {BACKENDS[1]} down: every node keeps {fp0} "
                      f"(the leader's view counts)")
            else:
                check_same(nodes, "(a2) C leads")
                if fingerprint(nodes[0]) == fp0:
                    raise Failure("(a2) leader C's verdict did not reach the tables")
                print("(a2) C leads: its verdict took the backend out on every node")
        finally:
            subprocess.run([x.format("del") for x in route], check=True)
        ct.wait_for("(a2) node C's own view: healthy again", lambda: c_local("healthy"), 3.0)
        ct.wait_for("(a2) every node back on the original fingerprint",
                    lambda: all(fingerprint(n) == fp0 for n in nodes), 3.0)

        # (b) a backend's health endpoint stops.
        old = {n.name: fp0 for n in nodes}
        t0 = time.monotonic()
        endpoints[1].stop()
        seen = watch_change(nodes, old, 5.0, "(b)")
        spread = max(seen.values()) - min(seen.values())
        fp1 = check_same(nodes, "(b)")
        for n in nodes:
            if backend_state(n, BACKENDS[1]) != "unhealthy":
                raise Failure(f"(b) {n.name}: {BACKENDS[1]} is not published unhealthy")
        if spread > CONVERGE_S:
            raise Failure(f"(b) last node published {spread * 1000:.0f} ms after the first")
        writes = metrics(leader)["lb_cp_health_writes_total"]
        print(f"(b) {BACKENDS[1]} down: all three published {fp1} "
              f"{(min(seen.values()) - t0) * 1000:.0f}-{(max(seen.values()) - t0) * 1000:.0f} ms "
              f"after the endpoint stopped (spread {spread * 1000:.1f} ms); leader wrote "
              f"{writes:.0f} documents")

        # (c) the leader dies.
        survivors = [n for n in nodes if n is not leader]
        t0 = time.monotonic()
        leader.proc.kill()
        leader.proc.wait(timeout=5)
        new_leader, took = wait_one_leader(survivors, TTL_S + 2.0, "(c)")
        new_term = metrics(new_leader)["lb_cp_leader_term"]
        if new_term <= term:
            raise Failure(f"(c) new term {new_term} not above {term}")
        print(f"(c) {leader.name} killed: {new_leader.name} leads (term {new_term:.0f}) "
              f"{took:.2f} s later (TTL {TTL_S} s)")

        # (d) a later health change reaches both survivors identically.
        check_same(survivors, "(d) before")
        old = {n.name: fp1 for n in survivors}
        t0 = time.monotonic()
        endpoints[1].start()
        seen = watch_change(survivors, old, 5.0, "(d)")
        spread = max(seen.values()) - min(seen.values())
        fp2 = check_same(survivors, "(d)")
        if fp2 != fp0:
            raise Failure(f"(d) back to healthy but fingerprint {fp2} != the original {fp0}")
        if spread > CONVERGE_S:
            raise Failure(f"(d) last node published {spread * 1000:.0f} ms after the first")
        print(f"(d) {BACKENDS[1]} back: both survivors on {fp2} again "
              f"{(max(seen.values()) - t0) * 1000:.0f} ms after the endpoint restarted "
              f"(spread {spread * 1000:.1f} ms)")

        # (e) a clean stop hands over at once (the lease is revoked).
        last = [n for n in survivors if n is not new_leader][0]
        t0 = time.monotonic()
        new_leader.stop()
        if new_leader.proc.returncode != 0:
            raise Failure(f"(e) {new_leader.name}: SIGTERM -> exit {new_leader.proc.returncode}")
        _, took = wait_one_leader([last], 1.0, "(e) after SIGTERM of the leader")
        print(f"(e) {new_leader.name} stopped: {last.name} leads {took * 1000:.0f} ms later")

        sampler.stop.set()
        sampler.thread.join(timeout=5)
        if sampler.double:
            raise Failure(f"two leaders at once in {len(sampler.double)} of {sampler.rounds} "
                          f"samples, first: {sampler.double[0][1]}")
        print(f"never two leaders in {sampler.rounds} samples of every node's lb_cp_leader")
        print("PASS")
        return 0
    except (Failure, ct.Failure, OSError, KeyError, ValueError, subprocess.CalledProcessError) as e:
        print(f"FAIL: {e}")
        for n in nodes:
            if os.path.exists(n.log):
                print(f"--- node {n.name} log (tail) ---")
                print("".join(open(n.log, errors="replace").readlines()[-25:]))
        return 1
    finally:
        if sampler is not None:
            sampler.stop.set()
        for n in nodes:
            n.stop()
        etcd.kill()
        for e in endpoints:
            e.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    if shutil.which("etcd") is None or shutil.which("unshare") is None:
        print("SKIP: no etcd or unshare binary (scripts/install-deps.sh installs etcd-server)")
        return 77
    if os.environ.get("LB_LEASE_TEST_NETNS") != "1":
        env = dict(os.environ, LB_LEASE_TEST_NETNS="1")
        return subprocess.run(["unshare", "--net", sys.executable, os.path.abspath(__file__),
                               sys.argv[1]], env=env).returncode
    return run(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
