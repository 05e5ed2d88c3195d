#!/usr/bin/python3
"""Traffic for scripts/demo.sh: writes client flows to a pcap, and reads what
lb-dataplane sent back out to summarise where each flow went.

  demo_pcap.py gen  OUT.pcap VIP PORT FLOWS PACKETS_PER_FLOW
  demo_pcap.py read IN.pcap [BASELINE.json] [SAVE.json]
"""

import json
import random
import sys

from scapy.all import IP, TCP, Ether, Raw, PcapReader, PcapWriter


def gen(path, vip, port, flows, per_flow):
    rnd = random.Random(42)
    clients = [(f"203.0.{rnd.randrange(113, 120)}.{rnd.randrange(1, 255)}",
                rnd.randrange(1024, 65535)) for _ in range(flows)]
    with PcapWriter(path, sync=False) as w:
        for k in range(per_flow):
            for src, sport in clients:
                flags = "S" if k == 0 else "PA"
                payload = b"" if k == 0 else b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n"
                w.write(Ether(src="02:00:00:00:00:99", dst="02:00:00:00:00:02") /
                        IP(src=src, dst=vip, flags="DF") /
                        TCP(sport=sport, dport=port, flags=flags) / Raw(payload))


def read(path, baseline=None, save=None):
    where = {}
    per_backend = {}
    split = 0
    for p in PcapReader(path):
        if IP not in p or p[IP].proto != 4:
            continue
        inner = IP(bytes(p[IP].payload))
        flow = f"{inner.src}:{inner[TCP].sport}"
        b = p[IP].dst
        per_backend[b] = per_backend.get(b, 0) + 1
        if where.setdefault(flow, b) != b:
            split += 1
    total = sum(per_backend.values())
    flows_per = {}
    for b in where.values():
        flows_per[b] = flows_per.get(b, 0) + 1
    print(f"  {total} packets of {len(where)} flows forwarded; "
          f"{split} packets left their flow's backend")
    for b in sorted(flows_per):
        share = 100.0 * flows_per[b] / len(where)
        print(f"    backend {b:<10} {flows_per[b]:>5} flows  {share:5.1f}%  {'#' * int(share / 2)}")
    if baseline:
        with open(baseline) as f:
            before = json.load(f)
        same = sum(1 for k, v in where.items() if before.get(k) == v)
        moved = [k for k, v in where.items() if k in before and before[k] != v]
        from_gone = sum(1 for k in moved if before[k] not in flows_per)
        print(f"  compared with the first run: {same} flows kept their backend, "
              f"{len(moved)} moved ({from_gone} of them were on a backend that is now down)")
    if save:
        with open(save, "w") as f:
            json.dump(where, f)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        read(sys.argv[2], *(sys.argv[3:5]))
