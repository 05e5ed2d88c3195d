#!/usr/bin/python3
"""kill -9 lb-controlplane during writes; every restart loads the last acknowledged state.

First, the start-up refusals: a listener off loopback without a bearer token
file (and a bad token file, half a TLS pair) exits 1 naming the flag, before
any state or region is created.

Starts the real lb-controlplane (state dir and regions in a temp dir under
/dev/shm, REST on a free loopback port, no gRPC listener) and, for about 20
seconds, in a loop: a writer thread issues REST writes as fast as they are
answered (POST /backends with a new address, PUT /config/algorithm with a
different setting), recording each acknowledged one; the main thread SIGKILLs
the process at a random moment (0-400 ms), restarts it, and checks that

  * it starts (the stored state loads),
  * the backends and the algorithm it serves equal the acknowledged state, or
    that state plus the one write that was in flight when it died (sent, not
    acknowledged: it may have committed),
  * the version in the state file is the acknowledged count of changes (+1
    for that in-flight write when it committed), so nothing acknowledged was
    lost and nothing unacknowledged other than it appeared,
  * no temp file is left in the state directory,
  * the state file's first line is the SHA-256 of the rest (checked here with
    hashlib, independently of the server).

Last, with the server stopped, the state file is edited so that it still
parses (one backend's port changed): the server must refuse to start (exit 1
naming the file and the checksum mismatch) and leave the file as it was.

Usage: persistence_kill_test.py <lb-controlplane binary>
Exit 0 on success, 1 with a message on the first failure. Cleans up the
process and the temp dir in every case.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DURATION_S = 20.0
START_TIMEOUT_S = 10.0
ALGORITHMS = ["maglev", "round_robin", "weighted_round_robin", "least_connections",
              "weighted_least_connections", "ip_hash", "random"]


class Failure(Exception):
    pass


def http(port, method, path, body=None, timeout=5.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class ControlPlane:
    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.proc = None
        self.port = None
        self.runs = 0

    def start(self):
        self.runs += 1
        log = os.path.join(self.work, f"cp-{self.runs}.log")
        with open(log, "wb") as err, open(os.devnull, "wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, f"--config={self.work}/bootstrap.textproto",
                 f"--state_dir={self.work}/state", f"--table_region={self.work}/tables",
                 f"--stats_region={self.work}/stats", "--grpc_listen=",
                 "--http_listen=127.0.0.1:0", "--max_vips=8", "--max_backends=16384",
                 "--max_members=16384", "--max_ring_size=16411"],
                stdout=out, stderr=err)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = open(log, encoding="utf-8", errors="replace").read()
            m = re.search(r"REST API and /metrics on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise Failure(f"lb-controlplane run {self.runs} exited with {self.proc.returncode} "
                              f"at start (the stored state must always load):\n{text}")
            time.sleep(0.02)
        raise Failure(f"lb-controlplane run {self.runs} did not start in {START_TIMEOUT_S} s:\n"
                      + open(log, encoding="utf-8", errors="replace").read())

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill9()


class Writer(threading.Thread):
    """Writes until a request fails (the process died). `acked` is what the
    server acknowledged; `pending` the write in flight when it stopped."""

    def __init__(self, port, state, rng, next_address):
        super().__init__(daemon=True)
        self.port = port
        self.backends = set(state["backends"])
        self.algorithm = state["algorithm"]
        self.acked_changes = 0
        self.pending = None
        self.rng = rng
        self.next_address = next_address
        self.error = None

    def run(self):
        try:
            while True:
                if self.rng.random() < 0.7:
                    addr = self.next_address()
                    self.pending = ("add", addr)
                    status, body = http(self.port, "POST", "/backends",
                                        {"address": addr, "port": 80})
                    if status != 201:
                        self.error = f"POST /backends {addr}: {status} {body}"
                        return
                    self.backends.add(addr)
                else:
                    alg = self.rng.choice([a for a in ALGORITHMS if a != self.algorithm[0]])
                    want = (alg, self.rng.random() < 0.5, self.rng.randint(1, 86400))
                    self.pending = ("algorithm", want)
                    status, body = http(self.port, "PUT", "/config/algorithm",
                                        {"algorithm": want[0], "sticky_sessions": want[1],
                                         "sticky_ttl_seconds": want[2]})
                    if status != 200:
                        self.error = f"PUT /config/algorithm {want}: {status} {body}"
                        return
                    self.algorithm = want
                self.acked_changes += 1
                self.pending = None
        except (OSError, urllib.error.URLError, ConnectionError, ValueError):
            return  # killed mid-request: `pending` stays set


def served_state(port):
    status, body = http(port, "GET", "/backends")
    if status != 200:
        raise Failure(f"GET /backends: {status} {body}")
    backends = {b["address"] for b in body.get("backends", [])}
    status, alg = http(port, "GET", "/config/algorithm")
    if status != 200:
        raise Failure(f"GET /config/algorithm: {status} {alg}")
    algorithm = (alg.get("algorithm", "maglev"), bool(alg.get("sticky_sessions", False)),
                 int(alg.get("sticky_ttl_seconds", 0)))
    return {"backends": backends, "algorithm": algorithm}


HEADER_RE = re.compile(rb"# lb-controlplane state v2 sha256=([0-9a-f]{64})\n")
PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def protoc(mode, data):
    """protoc --decode / --encode of an lb.v1.Config: the operator's way to read the state."""
    r = subprocess.run(["protoc", f"--{mode}=lb.v1.Config", f"-I{PROTO_DIR}", "lb/v1/config.proto"],
                       input=data, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise Failure(f"protoc --{mode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def stored_version(work):
    path = os.path.join(work, "state", "state.binpb")
    if not os.path.exists(path):
        return 0
    data = open(path, "rb").read()
    h = HEADER_RE.match(data)
    if not h:
        raise Failure(f"{path} does not start with the checksum line: {data[:80]!r}")
    if hashlib.sha256(data[h.end():]).hexdigest() != h.group(1).decode():
        raise Failure(f"{path}: the checksum line does not match the rest of the file")
    m = re.search(r"^version: (\d+)$", protoc("decode", data[h.end():]).decode(), re.M)
    if not m:
        raise Failure(f"{path} has no version")
    return int(m.group(1))


def edited_state_refused(binary, work):
    """An edit that still parses is refused at start; the file is left alone."""
    path = os.path.join(work, "state", "state.binpb")
    good = open(path, "rb").read()
    h = HEADER_RE.match(good)
    text, n = re.subn(rb"^(\s*port: )80$", rb"\g<1>81", protoc("decode", good[h.end():]),
                      count=1, flags=re.M)
    if n != 1:
        raise Failure(f"{path}: no backend port to edit")
    edited = good[:h.end()] + protoc("encode", text)
    with open(path, "wb") as f:
        f.write(edited)
    r = subprocess.run([binary, f"--config={work}/bootstrap.textproto",
                        f"--state_dir={work}/state", f"--table_region={work}/tables",
                        f"--stats_region={work}/stats", "--grpc_listen=",
                        "--http_listen=127.0.0.1:0", "--max_vips=8", "--max_backends=16384",
                        "--max_members=16384", "--max_ring_size=16411"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 1 or path not in r.stderr or "checksum mismatch" not in r.stderr:
        raise Failure(f"edited state file: want exit 1 naming {path} and the checksum mismatch, "
                      f"got {r.returncode}: {r.stderr}")
    if open(path, "rb").read() != edited:
        raise Failure(f"{path} was changed by a refused start")


def startup_checks(binary, work):
    """Flags the server refuses before touching anything: an admin listener off
    loopback without a token, an unreadable or empty token file, half a TLS pair."""
    base = [binary, f"--state_dir={work}/refused-state", f"--table_region={work}/refused-tables",
            f"--stats_region={work}/refused-stats"]
    empty_token = os.path.join(work, "empty-token")
    open(empty_token, "w").close()
    cases = [
        (["--http_listen=0.0.0.0:0", "--grpc_listen="],
         "--http_listen 0.0.0.0:0 is not a loopback address"),
        (["--http_listen=", "--grpc_listen=0.0.0.0:0"],
         "--grpc_listen 0.0.0.0:0 is not a loopback address"),
        (["--http_listen=", "--grpc_listen=", f"--auth_token_file={work}/missing"],
         "--auth_token_file: cannot read"),
        (["--http_listen=", "--grpc_listen=", f"--auth_token_file={empty_token}"],
         "holds no token"),
        (["--http_listen=", "--grpc_listen=127.0.0.1:0", "--grpc_tls_cert=/nonexistent"],
         "--grpc_tls_key is required with --grpc_tls_cert"),
    ]
    for args, want in cases:
        r = subprocess.run(base + args, capture_output=True, text=True, timeout=10)
        if r.returncode != 1 or want not in r.stderr:
            raise Failure(f"{args}: want exit 1 naming {want!r}, got {r.returncode}: {r.stderr}")
        for leftover in ("refused-state", "refused-tables"):
            if os.path.exists(os.path.join(work, leftover)):
                raise Failure(f"{args}: refused start still created {leftover}")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="lb-cp-kill-", dir="/dev/shm")
    cp = ControlPlane(binary, work)
    rng = random.Random(int(os.environ.get("LB_TEST_SEED", "20260101")))
    counter = [0]

    def next_address():
        counter[0] += 1
        n = counter[0]
        return f"10.{60 + n // 65000}.{(n // 250) % 250}.{n % 250 + 1}"

    try:
        startup_checks(binary, work)
        with open(os.path.join(work, "bootstrap.textproto"), "w") as f:
            f.write('node { tunnel_source_ipv4: "192.0.2.1" }\ntables { ring_size: 16411 }\n')
        cp.start()
        state = served_state(cp.port)
        if state["backends"]:
            raise Failure(f"fresh state has backends: {state}")
        version = stored_version(work)
        if version != 1:
            raise Failure(f"bootstrap stored version {version}, want 1")
        kills = 0
        total_acked = 0
        in_doubt_committed = 0
        deadline = time.monotonic() + DURATION_S
        while time.monotonic() < deadline:
            w = Writer(cp.port, state, rng, next_address)
            w.start()
            time.sleep(rng.uniform(0.0, 0.4))
            cp.kill9()
            kills += 1
            w.join(timeout=10)
            if w.is_alive():
                raise Failure("writer thread hung after kill -9")
            if w.error:
                raise Failure(f"a write was refused while the server ran: {w.error}")
            total_acked += w.acked_changes

            cp.start()
            got = served_state(cp.port)
            acked = {"backends": set(w.backends), "algorithm": w.algorithm}
            with_pending = None
            if w.pending is not None:
                kind, value = w.pending
                with_pending = {"backends": set(acked["backends"]), "algorithm": acked["algorithm"]}
                if kind == "add":
                    with_pending["backends"].add(value)
                else:
                    with_pending["algorithm"] = value
            new_version = stored_version(work)
            if got == acked:
                want_version = version + w.acked_changes
            elif with_pending is not None and got == with_pending:
                want_version = version + w.acked_changes + 1
                in_doubt_committed += 1
            else:
                extra = got["backends"] - acked["backends"]
                missing = acked["backends"] - got["backends"]
                raise Failure(
                    f"after kill {kills}: served state differs from the last acknowledged write: "
                    f"missing backends {sorted(missing)}, unexpected {sorted(extra)}, algorithm "
                    f"{got['algorithm']} vs acknowledged {acked['algorithm']} (in flight: "
                    f"{w.pending})")
            if new_version != want_version:
                raise Failure(f"after kill {kills}: stored version {new_version}, want "
                              f"{want_version} ({w.acked_changes} acknowledged changes since "
                              f"version {version}, in flight: {w.pending})")
            leftovers = [n for n in os.listdir(os.path.join(work, "state")) if ".tmp." in n]
            if leftovers:
                raise Failure(f"temp files left after restart: {leftovers}")
            state = got
            version = new_version
        cp.stop()
        if cp.proc.returncode != 0:
            raise Failure(f"SIGTERM exit status {cp.proc.returncode}, want 0")
        edited_state_refused(binary, work)
        if kills < 10 or total_acked < 50:
            raise Failure(f"only {kills} kills and {total_acked} acknowledged writes: "
                          "the test proved little")
        print(f"persistence_kill_test: {kills} kill -9 restarts, {total_acked} acknowledged writes, "
              f"{in_doubt_committed} in-flight writes found committed, final version {version}, "
              f"{len(state['backends'])} backends: OK")
        return 0
    except Failure as e:
        print(f"persistence_kill_test: FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        cp.kill9()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
