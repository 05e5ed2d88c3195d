#!/usr/bin/python3
"""Cluster convergence: a change through one control plane -> every node's
table region holds the new generation (perf/run.sh cluster).

Starts a real etcd (as tests/cluster/etcd_cluster_test.py does: temp data
dir, free loopback ports) and N lb-controlplane processes on one prefix, each
with its own table and stats regions (N nodes on one machine; no dataplane:
an lcore acquire-loads the generation once per loop turn, microseconds after
it is stored). Then, CHANGES times, adds a backend through node i % N over
REST and measures, from just before the request, the time until every node's
table region (mmap, the generation word at offset 256, lib/table_format.h)
holds a newer generation; the slowest node counts. After the run every
node's VIP fingerprints must be equal (else exit 1).

Then a health phase (issue 12: one leader's health view, controlplane/
leader.h): a second pool "hc" with its own VIP holds 10.77.0.11 and
10.77.0.12 (addresses of a veth in the network namespace the benchmark runs
in: it re-executes itself under `unshare --net`), HTTP-checked every 100 ms
(unhealthy after 2 failures, healthy after 1 success) against endpoints this
script serves. HEALTH times it stops and restarts 10.77.0.12's endpoint and
measures, for each verdict, the time from the first node's table region
holding a newer generation (in practice the leader's, or a follower a few
hundred us before it) to the last node's: how long the leader's verdict
takes through etcd to every node. detect_ms is from the endpoint's change to
the last node (the checks' detection time included).

Output, two lines:
  cluster nodes=N changes=M converge_ms_p50=X converge_ms_p99=Y api_ms_p50=Z
  cluster nodes=N health_changes=H health_spread_ms_p50=X health_spread_ms_p99=Y detect_ms_p50=Z
api_ms is the REST call itself on the writing node (Txn round trip included).

Usage: cluster_bench.py <lb-controlplane> [nodes=3] [changes=200] [health=40]
"""
import http.server
import subprocess
import mmap
import os
import shutil
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "cluster"))
import etcd_cluster_test as ct  # noqa: E402

GENERATION_OFFSET = 256  # kTableControlOffset: TableRegionControl::generation
HC_ADDRESSES = ["10.77.0.11", "10.77.0.12"]
HC_PORT = 8080


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class Endpoint:
    def __init__(self, address):
        self.address, self.server, self.thread = address, None, None

    def start(self):
        self.server = QuietServer((self.address, HC_PORT), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None


def netns_setup():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "link", "add", "lbbench-v0", "type", "veth", "peer", "name",
                    "lbbench-v1"], check=True)
    for dev in ("lbbench-v0", "lbbench-v1"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    for a in HC_ADDRESSES:
        subprocess.run(["ip", "addr", "add", f"{a}/24", "dev", "lbbench-v0"], check=True)


def percentile(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    changes = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    health = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    if os.environ.get("LB_CLUSTER_BENCH_NETNS") != "1":
        env = dict(os.environ, LB_CLUSTER_BENCH_NETNS="1")
        return subprocess.run(["unshare", "--net", sys.executable, os.path.abspath(__file__)]
                              + sys.argv[1:], env=env).returncode
    work = tempfile.mkdtemp(prefix="lb-cluster-bench-", dir="/dev/shm")
    etcd = ct.Etcd(work)
    nodes = []
    maps = []
    endpoints = []
    try:
        netns_setup()
        endpoints = [Endpoint(a) for a in HC_ADDRESSES]
        for e in endpoints:
            e.start()
        hc = "".join(f' backends {{ address: "{a}" port: {HC_PORT} }}' for a in HC_ADDRESSES)
        with open(os.path.join(work, "bootstrap.textproto"), "w") as f:
            f.write('node { tunnel_source_ipv4: "192.0.2.1" }\ntables { ring_size: 4099 }\n'
                    'pools { name: "web" backends { address: "10.6.0.1" port: 80 } }\n'
                    'vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 80 '
                    'pool: "web" }\n'
                    'pools { name: "hc" health_check { kind: HEALTH_CHECK_KIND_HTTP '
                    'interval_ms: 100 timeout_ms: 300 healthy_threshold: 1 '
                    f'unhealthy_threshold: 2 }}{hc} }}\n'
                    'vips { address: "198.51.100.11" protocol: PROTOCOL_TCP port: 80 '
                    'pool: "hc" }\n')
        etcd.start()
        store = f"etcd://127.0.0.1:{etcd.port}/lbbench"
        nodes = [ct.Node(binary, work, f"n{i}", store) for i in range(n)]
        for node in nodes:
            node.start()
        for node in nodes:
            fd = os.open(os.path.join(work, f"tables-{node.name}"), os.O_RDONLY)
            maps.append(mmap.mmap(fd, 4096, prot=mmap.PROT_READ))
            os.close(fd)

        def gens():
            return [struct.unpack_from("<Q", m, GENERATION_OFFSET)[0] for m in maps]

        converge, api = [], []
        for i in range(changes):
            before = gens()
            seen = [None] * n
            done = threading.Event()

            def poll():
                while not done.is_set():
                    g = gens()
                    now = time.perf_counter()
                    for k in range(n):
                        if seen[k] is None and g[k] > before[k]:
                            seen[k] = now
                    if all(s is not None for s in seen):
                        return
                    time.sleep(0.0001)

            poller = threading.Thread(target=poll)
            t0 = time.perf_counter()
            poller.start()
            st, body = nodes[i % n].add(f"10.20.{i // 250}.{i % 250 + 1}")
            t1 = time.perf_counter()
            if st != 201:
                raise ct.Failure(f"change {i} through {nodes[i % n].name}: {st} {body}")
            poller.join(timeout=5)
            done.set()
            if any(s is None for s in seen):
                raise ct.Failure(f"change {i}: not every node published within 5 s")
            converge.append((max(seen) - t0) * 1e3)
            api.append((t1 - t0) * 1e3)
        fps = [node.vips()[1] for node in nodes]
        if any(f != fps[0] for f in fps):
            raise ct.Failure(f"fingerprints differ after the run: {fps}")
        print(f"cluster nodes={n} changes={changes} converge_ms_p50={percentile(converge, 50):.2f} "
              f"converge_ms_p99={percentile(converge, 99):.2f} "
              f"api_ms_p50={percentile(api, 50):.2f}", flush=True)

        # Health phase: every verdict of the leader reaches every node.
        time.sleep(1.0)  # every node's checker settled (all healthy)
        spread, detect = [], []
        for i in range(health):
            before = gens()
            seen = [None] * n
            t0 = time.perf_counter()
            if i % 2 == 0:
                endpoints[1].stop()
            else:
                endpoints[1].start()
            while any(s is None for s in seen):
                g = gens()
                now = time.perf_counter()
                for k in range(n):
                    if seen[k] is None and g[k] > before[k]:
                        seen[k] = now
                if now - t0 > 5.0:
                    raise ct.Failure(f"health change {i}: not every node published within 5 s")
                time.sleep(0.0001)
            spread.append((max(seen) - min(seen)) * 1e3)
            detect.append((max(seen) - t0) * 1e3)
            time.sleep(0.3)  # past the damping (min_state_duration = 2 intervals)
        fps = [node.vips()[1] for node in nodes]
        if any(f != fps[0] for f in fps):
            raise ct.Failure(f"fingerprints differ after the health phase: {fps}")
        print(f"cluster nodes={n} health_changes={health} "
              f"health_spread_ms_p50={percentile(spread, 50):.2f} "
              f"health_spread_ms_p99={percentile(spread, 99):.2f} "
              f"detect_ms_p50={percentile(detect, 50):.1f}")
        return 0
    except (ct.Failure, OSError, subprocess.CalledProcessError) as e:
        print(f"FAIL: {e}")
        return 1
    finally:
        for m in maps:
            m.close()
        for node in nodes:
            node.stop()
        etcd.kill()
        for e in endpoints:
            e.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
