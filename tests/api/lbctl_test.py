#!/usr/bin/python3
"""lbctl against the real lb-controlplane.

Usage: lbctl_test.py <lb-controlplane> <lbctl>

Starts lb-controlplane twice (without and with a bearer token) with its own
state directory and table region in a temp directory under /dev/shm, gRPC
and HTTP on 127.0.0.1 port 0 (the port is read from its start-up log, so no
port race), and drives it with the real lbctl: VIPs, pools, backends (table
output, alignment, --json parsed), drain, rm, explain, stats, tables, watch,
and the exit status of every error class. Every process it starts is
stopped, and the temp directory removed, even on failure. Exit 0 = all
checks passed.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CALL_TIMEOUT_S = 15
START_TIMEOUT_S = 15

CONFIG = """
node { tunnel_source_ipv4: "192.0.2.1" tunnel_source_ipv6: "2001:db8::1" }
tables { ring_size: 251 }
"""


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL: {what}\n{detail}", flush=True)
        return cond


C = Checks()


class Server:
    """One lb-controlplane process with its own state and regions."""

    def __init__(self, binary, root, name, token=None, tls=None):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "lb.textproto")
        with open(config, "w") as f:
            f.write(CONFIG)
        args = [
            binary,
            f"--config={config}",
            f"--state_dir={self.dir}/state",
            f"--table_region={self.dir}/tables",
            f"--stats_region={self.dir}/stats",
            "--grpc_listen=127.0.0.1:0",
            "--http_listen=127.0.0.1:0",
            "--max_vips=16",
            "--max_backends=64",
            "--max_members=256",
            "--max_ring_size=251",
        ]
        if token is not None:
            token_file = os.path.join(self.dir, "token")
            with open(token_file, "w") as f:
                f.write(token + "\n")
            args.append(f"--auth_token_file={token_file}")
        if tls is not None:
            args += [f"--grpc_tls_cert={tls[0]}", f"--grpc_tls_key={tls[1]}"]
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = self._wait_for_port()

    def _wait_for_port(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                m = re.search(r"gRPC admin API on \S+ \(port (\d+)\)", f.read())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"lb-controlplane did not start:\n{self.stderr()}")

    def stderr(self):
        with open(self.log_path) as f:
            return f.read()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Lbctl:
    def __init__(self, binary, server, extra=()):
        self.binary = binary
        self.server = server
        self.extra = list(extra)

    def run(self, *args, server=None):
        cmd = [self.binary, f"--server={server or self.server}"] + self.extra + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args):
        rc, out, err = self.run(*args)
        C.check(rc == 0, f"lbctl {' '.join(args)} exits 0", f"rc={rc}\n{out}{err}")
        return out

    def json(self, *args):
        out = self.ok("--json", *args)
        try:
            return json.loads(out)
        except ValueError:
            C.check(False, f"lbctl --json {' '.join(args)} prints JSON", out)
            return {}

    def fails(self, code, code_name, field, *args):
        """Expects exit `code` and one stderr line 'lbctl: CODE_NAME: field...'."""
        rc, out, err = self.run(*args)
        what = f"lbctl {' '.join(args)}"
        C.check(rc == code, f"{what} exits {code}", f"rc={rc}\nstdout={out}\nstderr={err}")
        lines = err.splitlines()
        C.check(len(lines) == 1, f"{what}: one error line", err)
        prefix = f"lbctl: {code_name}: {field}"
        C.check(err.startswith(prefix), f"{what}: stderr starts with '{prefix}'", err)
        C.check(out == "", f"{what}: nothing on stdout", out)
        return err


def table(text):
    """Rows of an aligned table as dicts, checking every cell starts or ends
    on its header's column."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    names = header.split()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [m.end() for m in re.finditer(r"\S+", header)]
    rows = []
    for line in lines[1:]:
        cells = list(re.finditer(r"\S+", line))
        C.check(len(cells) == len(names), "table row has one cell per column", f"{header}\n{line}")
        row = {}
        for i, m in enumerate(cells[: len(names)]):
            aligned = m.start() == starts[i] or m.end() == ends[i]
            C.check(aligned, f"cell '{m.group()}' is aligned with column {names[i]}",
                    f"{header}\n{line}")
            row[names[i]] = m.group()
        rows.append(row)
    return rows


def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound, never listening,
    held until the caller closes the socket."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def test_help(lbctl):
    rc, out, _ = lbctl.run("--help")
    C.check(rc == 0 and "Exit status" in out and "backend add" in out, "lbctl --help", out)
    rc, out, _ = lbctl.run("backend", "add", "--help")
    C.check(rc == 0 and "--weight" in out and "Exit status" in out and "3  not found" in out,
            "lbctl backend add --help lists its flags and the exit codes", out)
    rc, out, _ = lbctl.run("help", "watch")
    C.check(rc == 0 and "--count" in out, "lbctl help watch", out)
    for args in (["frobnicate"], ["backend"], ["backend", "add"], ["backend", "add", "--nope", "x"],
                 ["vip", "rm", "abc"], ["backend", "add", "10.0.0.1"], ["watch", "--timeout", "x"]):
        rc, out, err = lbctl.run(*args)
        C.check(rc == 2, f"lbctl {' '.join(args)}: usage error exits 2", f"rc={rc}\n{out}{err}")


def test_lifecycle(lbctl):
    out = lbctl.ok("pool", "add", "web")
    rows = table(out)
    C.check(len(rows) == 1 and rows[0]["NAME"] == "web" and rows[0]["ALGORITHM"] == "maglev",
            "pool add prints the pool", out)

    out = lbctl.ok("vip", "add", "10.0.0.1:80", "tcp", "--pool", "web")
    rows = table(out)
    C.check(len(rows) == 1 and rows[0]["ADDRESS"] == "10.0.0.1" and rows[0]["PORT"] == "80"
            and rows[0]["PROTO"] == "tcp", "vip add prints the VIP", out)
    vip_id = int(rows[0]["ID"]) if rows else 0

    b1 = lbctl.json("backend", "add", "10.1.0.1:8080", "--pool", "web")
    b2 = lbctl.json("backend", "add", "10.1.0.2:8080", "--pool", "web", "--weight", "2")
    id1 = b1.get("backend", {}).get("id", 0)
    id2 = b2.get("backend", {}).get("id", 0)
    C.check(id1 > 0 and id2 > 0 and id1 != id2, "backend add --json gives ids", f"{b1}\n{b2}")
    C.check(b2.get("backend", {}).get("weight") == 2, "--weight reaches the backend", str(b2))
    C.check(b1.get("effective_state") == "BACKEND_STATE_ACTIVE",
            "JSON uses proto field names and enum names", str(b1))
    lbctl.ok("backend", "add", "[2001:db8::10]:8080", "--pool", "web")

    out = lbctl.ok("backend", "list")
    rows = table(out)
    C.check(len(rows) == 3, "backend list shows three backends", out)
    C.check(sorted(r["ADDRESS"] for r in rows) == ["10.1.0.1", "10.1.0.2", "2001:db8::10"],
            "backend list addresses", out)

    listed = lbctl.json("backend", "list", "--pool", "web")
    C.check(len(listed.get("backends", [])) == 3, "backend list --json", str(listed))

    vips = lbctl.json("vip", "list").get("vips", [])
    C.check(len(vips) == 1 and re.fullmatch(r"[0-9a-f]{16}", vips[0].get("fingerprint", "")),
            "vip list --json has a 16-hex fingerprint", str(vips))
    C.check(len(vips) == 1 and vips[0].get("active_members") == 3, "three members", str(vips))
    rows = table(lbctl.ok("vip", "list"))
    C.check(len(rows) == 1 and rows[0]["MEMBERS"] == "3", "vip list table", str(rows))

    pools = lbctl.json("pool", "list").get("pools", [])
    C.check([p["name"] for p in pools] == ["web"], "pool list --json", str(pools))
    table(lbctl.ok("pool", "list"))

    p = lbctl.json("pool", "set-algorithm", "web", "round_robin")
    C.check(p.get("algorithm") == "ALGORITHM_ROUND_ROBIN", "pool set-algorithm", str(p))
    p = lbctl.json("pool", "set-algorithm", "web", "maglev", "--sticky", "--sticky_ttl", "60")
    C.check(p.get("sticky_sessions") is True and p.get("sticky_ttl_seconds") == 60,
            "pool set-algorithm --sticky", str(p))

    b = lbctl.json("backend", "update", str(id1), "--weight", "3")
    C.check(b.get("backend", {}).get("weight") == 3, "backend update --weight", str(b))

    h = lbctl.json("backend", "health", str(id1))
    C.check(h.get("id") == id1 and h.get("status") in ("unknown", "healthy"), "backend health",
            str(h))
    kv = lbctl.ok("backend", "health", str(id1))
    C.check(re.search(r"^status:\s+\S+", kv, re.M) is not None, "backend health table", kv)

    e = lbctl.json("explain", "198.51.100.7:40000", "10.0.0.1:80", "tcp")
    ids = [b["backend"]["id"] for b in listed.get("backends", [])]
    C.check(e.get("vip_id") == vip_id and e.get("backend_id") in ids,
            "explain picks a backend of the VIP", f"{e}\n{ids}")
    out = lbctl.ok("explain", "198.51.100.7:40000", "10.0.0.1:80", "tcp")
    C.check(re.search(rf"^vip:\s+{vip_id} \(", out, re.M) is not None
            and re.search(r"^reason:\s+\S", out, re.M) is not None, "explain table", out)

    t = lbctl.json("tables")
    C.check(int(t.get("generation", "0")) > 0 and len(t.get("vips", [])) == 1, "tables --json",
            str(t))
    out = lbctl.ok("tables")
    C.check(re.search(r"^generation:\s+\d+", out, re.M) is not None, "tables", out)
    s = lbctl.json("stats")
    C.check(s.get("dataplane_running") is False, "stats --json: no dataplane", str(s))
    out = lbctl.ok("stats")
    C.check("dataplane_running:  no" in out, "stats table", out)

    b = lbctl.json("backend", "drain", str(id2))
    C.check(b.get("backend", {}).get("state") == "BACKEND_STATE_DRAINING"
            and b.get("effective_state") == "BACKEND_STATE_DRAINING", "backend drain", str(b))
    vips = lbctl.json("vip", "list").get("vips", [])
    C.check(len(vips) == 1 and vips[0].get("active_members") == 2, "drained backend leaves ring",
            str(vips))

    out = lbctl.ok("backend", "rm", str(id2))
    C.check(out.startswith(f"removed backend {id2} (drained_connections=0)"), "backend rm", out)
    return vip_id, id1


def test_errors(lbctl, vip_id, id1):
    lbctl.fails(3, "NOT_FOUND", "id", "backend", "rm", "999")
    lbctl.fails(3, "NOT_FOUND", "id", "vip", "rm", "999")
    lbctl.fails(3, "NOT_FOUND", "pool", "backend", "list", "--pool", "nope")
    lbctl.fails(3, "NOT_FOUND", "name", "pool", "rm", "nope")
    lbctl.fails(4, "INVALID_ARGUMENT", "", "backend", "add", "10.0.0.300:80", "--pool", "web")
    err = lbctl.fails(4, "INVALID_ARGUMENT", "", "backend", "add", "10.1.0.9:70000", "--pool",
                      "web")
    C.check("port" in err, "the out-of-range port is named", err)
    lbctl.fails(4, "INVALID_ARGUMENT", "src_port", "explain", "1.2.3.4:70000", "10.0.0.1:80",
                "tcp")
    lbctl.fails(5, "ALREADY_EXISTS", "backend", "backend", "add", "10.1.0.1:8080", "--pool", "web")
    lbctl.fails(5, "ALREADY_EXISTS", "vip", "vip", "add", "10.0.0.1:80", "tcp", "--pool", "web")
    lbctl.fails(5, "ALREADY_EXISTS", "pool.name", "pool", "add", "web")
    lbctl.fails(6, "FAILED_PRECONDITION", "name", "pool", "rm", "web")

    sock, port = closed_port()
    try:
        rc, out, err = lbctl.run("vip", "list", server=f"127.0.0.1:{port}")
        C.check(rc == 8 and err.startswith(f"lbctl: UNAVAILABLE: 127.0.0.1:{port}: "),
                "a port nobody listens on exits 8 naming the server", f"rc={rc}\n{err}")
    finally:
        sock.close()

    # Nothing above changed anything.
    vips = lbctl.json("vip", "list").get("vips", [])
    C.check(len(vips) == 1 and vips[0]["vip"]["id"] == vip_id, "errors changed no VIP", str(vips))
    backends = lbctl.json("backend", "list").get("backends", [])
    C.check(len(backends) == 2, "errors changed no backend", str(backends))

    out = lbctl.ok("vip", "rm", str(vip_id))
    C.check(out == f"removed vip {vip_id}\n", "vip rm", out)
    out = lbctl.ok("pool", "rm", "web")
    C.check(out == "removed pool web\n", "pool rm once no VIP uses it", out)

    # Loopback, multicast and link-local addresses cannot be backends.
    lbctl.ok("pool", "add", "hc")
    for bad in ("127.0.0.1:9", "224.0.0.1:80", "[fe80::1]:80", "255.255.255.255:80"):
        err = lbctl.fails(4, "INVALID_ARGUMENT", "backend.address", "backend", "add", bad,
                          "--pool", "hc")
        C.check("not a unicast address" in err, f"backend add {bad}: says why", err)
    # Health checks are configured on a pool with no backend: nothing is
    # ever checked off this machine (the backends above are documentation
    # addresses).
    p = lbctl.json("pool", "set-health-check", "hc", "tcp", "--interval_ms", "1000")
    C.check(p.get("health_check", {}).get("kind") == "HEALTH_CHECK_KIND_TCP"
            and p["health_check"].get("interval_ms") == 1000, "pool set-health-check", str(p))
    lbctl.ok("pool", "set-health-check", "hc", "none")


def test_node_and_proxy_pools(lbctl):
    out = lbctl.ok("node", "show")
    C.check(re.search(r"^tunnel_source_ipv4:\s+192\.0\.2\.1$", out, re.M) is not None,
            "node show", out)
    n = lbctl.json("node", "set", "--tunnel_source_ipv6", "2001:DB8::2")
    C.check(n.get("tunnel_source_ipv4") == "192.0.2.1" and n.get("tunnel_source_ipv6") ==
            "2001:db8::2", "node set changes only what it names, canonical", str(n))
    n = lbctl.json("node", "set", "--tunnel_source_ipv4", "")
    C.check("tunnel_source_ipv4" not in n or n["tunnel_source_ipv4"] == "",
            "node set '' = the dataplane's own address", str(n))
    out = lbctl.ok("node", "show")
    C.check("(lb-dataplane --ipv4)" in out, "node show says who the source is then", out)
    lbctl.fails(4, "INVALID_ARGUMENT", "node.tunnel_source_ipv4", "node", "set",
                "--tunnel_source_ipv4", "224.0.0.9")
    lbctl.ok("node", "set", "--tunnel_source_ipv4", "192.0.2.1")

    # A proxy pool identifies backends by address:port; a DSR pool by address.
    rows = table(lbctl.ok("pool", "add", "app", "--kind", "proxy"))
    C.check(len(rows) == 1 and rows[0]["KIND"] == "proxy", "pool add --kind proxy", str(rows))
    lbctl.ok("backend", "add", "10.5.0.1:8080", "--pool", "app")
    lbctl.ok("backend", "add", "10.5.0.1:8081", "--pool", "app")
    lbctl.fails(5, "ALREADY_EXISTS", "backend", "backend", "add", "10.5.0.1:8081", "--pool", "app")
    lbctl.ok("pool", "add", "dsr")
    lbctl.ok("backend", "add", "10.5.0.1:8080", "--pool", "dsr")
    err = lbctl.fails(5, "ALREADY_EXISTS", "backend.address", "backend", "add", "10.5.0.1:8081",
                      "--pool", "dsr")
    C.check("keep the VIP's destination port" in err, "the DSR refusal says why", err)
    lbctl.fails(4, "INVALID_ARGUMENT", "vip.pool", "vip", "add", "10.0.0.2:80", "tcp", "--pool",
                "app")
    rc, out, err = lbctl.run("pool", "add", "x", "--kind", "l7")
    C.check(rc == 2 and "--kind" in err, "pool add --kind l7: usage error exits 2",
            f"rc={rc}\n{out}{err}")
    for name in ("app", "dsr"):
        for b in lbctl.json("backend", "list", "--pool", name).get("backends", []):
            lbctl.ok("backend", "rm", str(b["backend"]["id"]))


def test_watch(lbctl):
    cmd = [lbctl.binary, f"--server={lbctl.server}", "--json", "watch", "--count", "1",
           "--timeout", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline() or "{}")
        C.check(first.get("kind") == "subscribed", "watch starts with 'subscribed'", str(first))
        lbctl.ok("pool", "add", "watched")
        out, err = proc.communicate(timeout=CALL_TIMEOUT_S)
        C.check(proc.returncode == 0, "watch --count 1 exits 0 after one event",
                f"rc={proc.returncode}\n{out}{err}")
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        C.check(len(events) == 1 and events[0].get("kind") == "publish"
                and int(events[0].get("generation", "0")) > int(first.get("generation", "0")),
                "the mutation's publish event arrives", out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    start = time.monotonic()
    rc, out, err = lbctl.run("watch", "--timeout", "500ms")
    took = time.monotonic() - start
    C.check(rc == 0 and 0.4 < took < 5, "watch --timeout alone ends with 0",
            f"rc={rc} took={took:.2f}\n{out}{err}")
    C.check(" subscribed " in out, "watch prints human lines", out)
    rc, out, err = lbctl.run("watch", "--count", "5", "--timeout", "300ms")
    C.check(rc == 9 and err.startswith("lbctl: DEADLINE_EXCEEDED: watch: 0 of 5 events"),
            "watch --count not reached before --timeout exits 9", f"rc={rc}\n{err}")
    lbctl.ok("pool", "rm", "watched")


def test_auth(binary_cp, binary_lbctl, root):
    server = Server(binary_cp, root, "auth", token="t0ken-for-test")
    try:
        anon = Lbctl(binary_lbctl, server.address)
        C.check(anon.json("pool", "list").get("pools", []) == [], "reads are open on loopback")
        anon.fails(7, "UNAUTHENTICATED", "authorization", "pool", "add", "x")
        anon.fails(7, "UNAUTHENTICATED", "authorization", "backend", "add", "10.1.0.1:80")
        wrong_file = os.path.join(server.dir, "wrong-token")
        with open(wrong_file, "w") as f:
            f.write("not-the-token\n")
        wrong = Lbctl(binary_lbctl, server.address, [f"--token_file={wrong_file}"])
        wrong.fails(7, "UNAUTHENTICATED", "authorization", "pool", "add", "x")
        C.check(anon.json("pool", "list").get("pools", []) == [],
                "refused mutations changed nothing")
        good = Lbctl(binary_lbctl, server.address,
                     [f"--token_file={os.path.join(server.dir, 'token')}"])
        good.ok("pool", "add", "x")
        C.check([p["name"] for p in anon.json("pool", "list").get("pools", [])] == ["x"],
                "with the token the change is made")
    finally:
        rc = server.stop()
        C.check(rc == 0, "lb-controlplane (token) exits 0 on SIGTERM", server.stderr())


def test_tls(binary_cp, binary_lbctl, root):
    cert = os.path.join(root, "cert.pem")
    key = os.path.join(root, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True,
                   timeout=CALL_TIMEOUT_S)
    server = Server(binary_cp, root, "tls", tls=(cert, key))
    try:
        tls = Lbctl(binary_lbctl, server.address, [f"--tls_ca={cert}"])
        tls.ok("vip", "list")
        named = Lbctl(binary_lbctl, server.address,
                      [f"--tls_ca={cert}", "--tls_server_name=localhost"])
        named.ok("pool", "add", "over-tls")
        plain = Lbctl(binary_lbctl, server.address)
        rc, out, err = plain.run("vip", "list")
        C.check(rc == 8 and err.startswith("lbctl: UNAVAILABLE: "),
                "a plaintext client cannot talk to the TLS listener", f"rc={rc}\n{err}")
        other = Lbctl(binary_lbctl, server.address,
                      [f"--tls_ca={cert}", "--tls_server_name=other.example"])
        rc, out, err = other.run("vip", "list")
        C.check(rc == 8, "a certificate for another name is refused", f"rc={rc}\n{err}")
    finally:
        rc = server.stop()
        C.check(rc == 0, "lb-controlplane (TLS) exits 0 on SIGTERM", server.stderr())


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    binary_cp, binary_lbctl = sys.argv[1], sys.argv[2]
    root = tempfile.mkdtemp(prefix="lb-lbctl-test-", dir="/dev/shm")
    server = None
    try:
        server = Server(binary_cp, root, "main")
        lbctl = Lbctl(binary_lbctl, server.address)
        test_help(lbctl)
        vip_id, id1 = test_lifecycle(lbctl)
        test_errors(lbctl, vip_id, id1)
        test_node_and_proxy_pools(lbctl)
        test_watch(lbctl)
        start = time.monotonic()
        for _ in range(10):
            lbctl.ok("vip", "list")
        per_call_ms = (time.monotonic() - start) * 100
        print(f"lbctl vip list: {per_call_ms:.1f} ms per call (process start included)")
        rc = server.stop()
        C.check(rc == 0, "lb-controlplane exits 0 on SIGTERM", server.stderr())
        test_auth(binary_cp, binary_lbctl, root)
        test_tls(binary_cp, binary_lbctl, root)
    except Exception as e:  # a crash is a failure, reported with the server log
        C.check(False, f"no exception: {e!r}", server.stderr() if server else "")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{C.passed} checks passed, {len(C.failed)} failed")
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
