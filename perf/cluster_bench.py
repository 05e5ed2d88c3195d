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

Output, one line:
  cluster nodes=N changes=M converge_ms_p50=X converge_ms_p99=Y api_ms_p50=Z
api_ms is the REST call itself on the writing node (Txn round trip included).

Usage: cluster_bench.py <lb-controlplane> [nodes=3] [changes=200]
"""
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
    work = tempfile.mkdtemp(prefix="lb-cluster-bench-", dir="/dev/shm")
    etcd = ct.Etcd(work)
    nodes = []
    maps = []
    try:
        with open(os.path.join(work, "bootstrap.textproto"), "w") as f:
            f.write('node { tunnel_source_ipv4: "192.0.2.1" }\ntables { ring_size: 4099 }\n'
                    'pools { name: "web" backends { address: "10.6.0.1" port: 80 } }\n'
                    'vips { address: "198.51.100.10" protocol: PROTOCOL_TCP port: 80 '
                    'pool: "web" }\n')
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
              f"api_ms_p50={percentile(api, 50):.2f}")
        return 0
    except (ct.Failure, OSError) as e:
        print(f"FAIL: {e}")
        return 1
    finally:
        for m in maps:
            m.close()
        for node in nodes:
            node.stop()
        etcd.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
