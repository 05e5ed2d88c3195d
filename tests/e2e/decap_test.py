#!/usr/bin/python3
"""End to end test of lb-decap over a veth pair between two namespaces.

    decap_test.py LB_DECAP

Creates namespaces lbdt<pid>lb and lbdt<pid>be joined by a veth pair
(MTU 1600). The backend has the VIPs 198.51.100.10/32 and 2001:db8:100::10/128
on lo (rp_filter=0, arp_ignore=1, arp_announce=2), UDP listeners on the VIPs
and TCP listeners on the VIPs. For each mode (xdp, then tc) it attaches
lb-decap to the backend's veth and, from the lb namespace with scapy, sends:
IPv4-in-IPv4, IPv6-in-IPv6, IPv4-in-IPv6 and IPv6-in-IPv4 UDP to VIP:9000 (payload must
arrive), a plain UDP packet to the backend's address (must arrive: passed), an
IPIP packet for a foreign outer address (must not arrive: passed untouched),
an IPIP packet with a truncated inner header (malformed, dropped), IPIP
from varying outer sources (a tunnel_source_ipv4_prefix) and GUE (attached
with --gue_port 6080; IP-in-UDP in all four family pairs) that must arrive,
UDP to another port that must not be decapsulated, and encapsulated TCP SYNs
(IPIP v4, v6 and GUE v4) to VIP:8080 over IPv4 and IPv6 whose SYN-ACKs must come
back directly from the VIP (DSR), captured on the lb side. Then `lb-decap
stats --json` must count exactly what was sent, detach must remove the
program, and error messages are checked. Bounded (< 60 s), and both
namespaces (with every process inside them) are deleted by name on exit,
failure or signal. Must run as root.

Helper modes (run inside a namespace by the test itself):
    decap_test.py listen            backend listeners
    decap_test.py send MAC TAG      lb-side sender and SYN-ACK sniffer
"""
import json
import os
import select
import signal
import subprocess
import sys
import time

VIP4, VIP6 = "198.51.100.10", "2001:db8:100::10"
LB4, BE4 = "10.99.0.1", "10.99.0.2"
LB6, BE6 = "fd00:99::1", "fd00:99::2"
CLIENT4, CLIENT6 = "192.0.2.50", "2001:db8:c::50"
UDP_PORT, PLAIN_PORT, TCP_PORT = 9000, 9001, 8080
GUE_PORT = 6080
# Outer sources the load balancer picks per flow from its
# tunnel_source_ipv4_prefix: lb-decap matches only the outer destination.
PREFIX_SRC4 = ("172.16.3.4", "172.16.200.9")
PY = "/usr/bin/python3"
PID = os.getpid()
NS_LB, NS_BE = f"lbdt{PID}lb", f"lbdt{PID}be"
DEADLINE = time.monotonic() + 55


def listen():
    import socket
    socks = []
    for fam, addr, port in ((socket.AF_INET, VIP4, UDP_PORT),
                            (socket.AF_INET6, VIP6, UDP_PORT),
                            (socket.AF_INET, BE4, PLAIN_PORT)):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((addr, port))
        socks.append(s)
    tcp = []
    for fam, addr in ((socket.AF_INET, VIP4), (socket.AF_INET6, VIP6)):
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, TCP_PORT))
        t.listen(16)
        tcp.append(t)
    print("ready", flush=True)
    while True:
        r, _, _ = select.select(socks, [], [], 60)
        if not r:
            return
        for s in r:
            data, peer = s.recvfrom(2048)
            print(f"{data.decode(errors='replace')} from {peer[0]}", flush=True)


def send(be_mac, tag):
    from scapy.all import (AsyncSniffer, Ether, IP, IPv6, TCP, UDP, Raw,
                           sendp, conf)
    conf.verb = 0
    iface = "veth0"
    eth = Ether(dst=be_mac)
    pkts = [
        eth / IP(src=LB4, dst=BE4) / IP(src=CLIENT4, dst=VIP4) /
        UDP(sport=40001, dport=UDP_PORT) / Raw(f"ipip-{tag}".encode()),
        eth / IPv6(src=LB6, dst=BE6) / IPv6(src=CLIENT6, dst=VIP6) /
        UDP(sport=40002, dport=UDP_PORT) / Raw(f"ip6ip6-{tag}".encode()),
        eth / IPv6(src=LB6, dst=BE6) / IP(src=CLIENT4, dst=VIP4) /
        UDP(sport=40003, dport=UDP_PORT) / Raw(f"4in6-{tag}".encode()),
        eth / IP(src=LB4, dst=BE4) / IPv6(src=CLIENT6, dst=VIP6) /
        UDP(sport=40006, dport=UDP_PORT) / Raw(f"6in4-{tag}".encode()),
        # Not encapsulated: the stack must still get it.
        eth / IP(src=LB4, dst=BE4) / UDP(sport=40004, dport=PLAIN_PORT) /
        Raw(f"plain-{tag}".encode()),
        # IPIP for an outer address that is not the backend's: untouched.
        eth / IP(src=LB4, dst="10.99.0.77") / IP(src=CLIENT4, dst=VIP4) /
        UDP(sport=40005, dport=UDP_PORT) / Raw(f"foreign-{tag}".encode()),
        # IPIP to us with a truncated inner header: malformed, dropped.
        eth / IP(src=LB4, dst=BE4, proto=4) / Raw(b"\x45\x00\x00\x1c\x00"),
        # GUE to another port: an ordinary UDP packet, passed (no listener).
        eth / IP(src=LB4, dst=BE4) / UDP(sport=50001, dport=GUE_PORT + 1,
                                          chksum=0) /
        IP(src=CLIENT4, dst=VIP4) / UDP(sport=40012, dport=UDP_PORT) /
        Raw(f"gueother-{tag}".encode()),
    ]
    # Decapsulated (counted in sent_encap): IPIP from per-flow outer sources,
    # and GUE (IP-in-UDP, variant 1, UDP checksum 0 as lb-dataplane sends it)
    # in all four family pairs.
    encap = [
        eth / IP(src=PREFIX_SRC4[0], dst=BE4) / IP(src=CLIENT4, dst=VIP4) /
        UDP(sport=40007, dport=UDP_PORT) / Raw(f"prefix1-{tag}".encode()),
        eth / IP(src=PREFIX_SRC4[1], dst=BE4) / IP(src=CLIENT4, dst=VIP4) /
        UDP(sport=40008, dport=UDP_PORT) / Raw(f"prefix2-{tag}".encode()),
        eth / IP(src=PREFIX_SRC4[0], dst=BE4) /
        UDP(sport=51000, dport=GUE_PORT, chksum=0) /
        IP(src=CLIENT4, dst=VIP4) / UDP(sport=40009, dport=UDP_PORT) /
        Raw(f"gue4-{tag}".encode()),
        eth / IPv6(src=LB6, dst=BE6) / UDP(sport=51001, dport=GUE_PORT, chksum=0) /
        IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=40010, dport=UDP_PORT) /
        Raw(f"gue6-{tag}".encode()),
        eth / IPv6(src=LB6, dst=BE6) / UDP(sport=51002, dport=GUE_PORT, chksum=0) /
        IP(src=CLIENT4, dst=VIP4) / UDP(sport=40011, dport=UDP_PORT) /
        Raw(f"gue4in6-{tag}".encode()),
        eth / IP(src=LB4, dst=BE4) / UDP(sport=51003, dport=GUE_PORT, chksum=0) /
        IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=40013, dport=UDP_PORT) /
        Raw(f"gue6in4-{tag}".encode()),
    ]
    syns = [
        eth / IP(src=LB4, dst=BE4) / IP(src=CLIENT4, dst=VIP4) /
        TCP(sport=41000, dport=TCP_PORT, flags="S", seq=1000),
        eth / IPv6(src=LB6, dst=BE6) / IPv6(src=CLIENT6, dst=VIP6) /
        TCP(sport=41001, dport=TCP_PORT, flags="S", seq=2000),
        eth / IP(src=PREFIX_SRC4[1], dst=BE4) /
        UDP(sport=51004, dport=GUE_PORT, chksum=0) / IP(src=CLIENT4, dst=VIP4) /
        TCP(sport=41002, dport=TCP_PORT, flags="S", seq=3000),
    ]
    seen = []
    sniffer = AsyncSniffer(iface=iface, filter=f"tcp and src port {TCP_PORT}",
                           store=False, prn=seen.append)
    sniffer.start()
    time.sleep(0.5)
    sendp(pkts + encap + syns, iface=iface)
    synack = {"v4": False, "v6": False, "gue": False}
    end = time.monotonic() + 5
    while time.monotonic() < end and not all(synack.values()):
        time.sleep(0.2)
        for p in list(seen):
            if TCP not in p or (p[TCP].flags & 0x12) != 0x12:
                continue
            if IP in p and p[IP].src == VIP4 and p[IP].dst == CLIENT4 \
                    and p[TCP].ack == 1001:
                synack["v4"] = True
            if IP in p and p[IP].src == VIP4 and p[IP].dst == CLIENT4 \
                    and p[TCP].ack == 3001:
                synack["gue"] = True
            if IPv6 in p and p[IPv6].src == VIP6 and p[IPv6].dst == CLIENT6 \
                    and p[TCP].ack == 2001:
                synack["v6"] = True
    sniffer.stop()
    print(json.dumps({"synack": synack,
                      "sent_encap": 4 + len(encap) + len(syns)}),
          flush=True)


# ---------------------------------------------------------------- the test --
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(cmd, ns=None, check_rc=True, timeout=20):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    left = max(1.0, min(timeout, DEADLINE - time.monotonic()))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
    if check_rc and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={p.returncode}: "
                           f"{p.stderr.strip()}")
    return p


def teardown(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for ns in (NS_LB, NS_BE):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def setup():
    run(["ip", "netns", "add", NS_LB])
    run(["ip", "netns", "add", NS_BE])
    run(["ip", "-n", NS_LB, "link", "add", "veth0", "mtu", "1600", "type",
         "veth", "peer", "name", "veth1", "netns", NS_BE])
    run(["ip", "-n", NS_BE, "link", "set", "veth1", "mtu", "1600"])
    for ns in (NS_LB, NS_BE):
        run(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
             "net.ipv6.conf.default.accept_dad=0"], ns=ns)
        run(["ip", "link", "set", "lo", "up"], ns=ns)
    b = ["ip", "-n", NS_BE]
    l = ["ip", "-n", NS_LB]
    run(l + ["addr", "add", f"{LB4}/24", "dev", "veth0"])
    run(l + ["addr", "add", f"{LB6}/64", "dev", "veth0", "nodad"])
    run(l + ["link", "set", "veth0", "up"])
    # Sender side: no TX checksum offload (see docs/OPERATIONS.md).
    run(["ethtool", "-K", "veth0", "tx", "off"], ns=NS_LB, check_rc=False)
    run(b + ["addr", "add", f"{BE4}/24", "dev", "veth1"])
    run(b + ["addr", "add", f"{BE6}/64", "dev", "veth1", "nodad"])
    run(b + ["link", "set", "veth1", "up"])
    run(b + ["addr", "add", f"{VIP4}/32", "dev", "lo"])
    run(b + ["addr", "add", f"{VIP6}/128", "dev", "lo"])
    run(b + ["route", "add", "default", "via", LB4])
    run(b + ["-6", "route", "add", "default", "via", LB6])
    run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
         "net.ipv4.conf.default.rp_filter=0",
         "net.ipv4.conf.veth1.rp_filter=0", "net.ipv4.conf.lo.rp_filter=0",
         "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"],
        ns=NS_BE)
    out = run(b + ["-j", "link", "show", "veth1"]).stdout
    return json.loads(out)[0]["address"]


def read_lines(proc, want, seconds):
    """Reads listener lines until every string in `want` was seen."""
    buf = b""
    fd = proc.stdout.fileno()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(w in buf.decode(errors="replace") for w in want):
            # Drain whatever else arrives (e.g. a packet that must not have).
            end = min(end, time.monotonic() + 0.3)
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace").splitlines()


def stats(decap):
    p = run([decap, "stats", "--iface", "veth1", "--json"], ns=NS_BE)
    return json.loads(p.stdout)


def one_mode(decap, mode, be_mac, listener):
    print(f"--- mode {mode}", flush=True)
    p = run([decap, "attach", "--iface", "veth1", "--mode", mode,
             "--gue_port", str(GUE_PORT)], ns=NS_BE, check_rc=False)
    check(p.returncode == 0, f"{mode}: attach: {p.stdout.strip()}"
          f"{p.stderr.strip()}")
    if p.returncode != 0:
        return
    link = run(["ip", "-n", NS_BE, "link", "show", "veth1"]).stdout
    if mode == "xdp":
        check("xdp" in link, "xdp: ip link shows the XDP program")
    else:
        flt = run(["tc", "-n", NS_BE, "filter", "show", "dev", "veth1",
                   "ingress"]).stdout
        check("lb_decap_tc" in flt, "tc: ingress filter lb_decap_tc present")
    again = run([decap, "attach", "--iface", "veth1", "--mode", mode],
                ns=NS_BE, check_rc=False)
    check(again.returncode == 1 and "already attached" in again.stderr,
          f"{mode}: second attach refused: {again.stderr.strip()}")

    before = stats(decap)
    sender = run([PY, os.path.abspath(__file__), "send", be_mac, mode],
                 ns=NS_LB, timeout=20)
    res = json.loads(sender.stdout.strip().splitlines()[-1])
    want = [f"ipip-{mode} from {CLIENT4}", f"ip6ip6-{mode} from {CLIENT6}",
            f"4in6-{mode} from {CLIENT4}", f"6in4-{mode} from {CLIENT6}",
            f"plain-{mode} from {LB4}", f"prefix1-{mode} from {CLIENT4}",
            f"prefix2-{mode} from {CLIENT4}", f"gue4-{mode} from {CLIENT4}",
            f"gue6-{mode} from {CLIENT6}", f"gue4in6-{mode} from {CLIENT4}",
            f"gue6in4-{mode} from {CLIENT6}"]
    got = read_lines(listener, want, 5)
    for w in want:
        check(any(w in g for g in got), f"{mode}: listener got '{w}'")
    check(not any(f"foreign-{mode}" in g for g in got),
          f"{mode}: IPIP for a foreign outer address not decapsulated")
    check(not any(f"gueother-{mode}" in g for g in got),
          f"{mode}: UDP to a port other than --gue_port not decapsulated")
    check(res["synack"]["gue"],
          f"{mode}: TCP over GUE: SYN-ACK from {VIP4} to {CLIENT4} (DSR)")
    check(res["synack"]["v4"],
          f"{mode}: TCP over IPIP: SYN-ACK from {VIP4} to {CLIENT4} (DSR)")
    check(res["synack"]["v6"],
          f"{mode}: TCP over IP6IP6: SYN-ACK from {VIP6} to {CLIENT6} (DSR)")

    after = stats(decap)
    d = {k: after[k] - before[k] for k in ("decapsulated", "passed",
                                           "malformed")}
    print(f"{mode}: stats delta {d}", flush=True)
    check(after["mode"] == mode, f"{mode}: stats reports mode {after['mode']}")
    check(d["decapsulated"] == res["sent_encap"],
          f"{mode}: decapsulated == {res['sent_encap']} (got "
          f"{d['decapsulated']})")
    check(d["malformed"] == 1, f"{mode}: malformed == 1 (got {d['malformed']})")
    check(d["passed"] >= 3, f"{mode}: passed >= 3 (got {d['passed']})")
    text = run([decap, "stats", "--iface", "veth1"], ns=NS_BE).stdout
    check(f"decapsulated  {after['decapsulated']}" in text,
          f"{mode}: text stats agree with --json")

    p = run([decap, "detach", "--iface", "veth1"], ns=NS_BE, check_rc=False)
    check(p.returncode == 0, f"{mode}: detach: {p.stdout.strip()}"
          f"{p.stderr.strip()}")
    link = run(["ip", "-n", NS_BE, "link", "show", "veth1"]).stdout
    check("xdp" not in link, f"{mode}: after detach ip link shows no xdp")
    flt = run(["tc", "-n", NS_BE, "filter", "show", "dev", "veth1", "ingress"],
              check_rc=False).stdout
    check("lb_decap" not in flt, f"{mode}: after detach no tc filter")
    p = run([decap, "detach", "--iface", "veth1"], ns=NS_BE, check_rc=False)
    check(p.returncode == 1 and "not attached" in p.stderr,
          f"{mode}: second detach says not attached")


def main_test(decap):
    decap = os.path.abspath(decap)
    procs = []

    def on_signal(signum, _frame):
        teardown(procs)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        be_mac = setup()
        listener = subprocess.Popen(
            ["ip", "netns", "exec", NS_BE, PY, os.path.abspath(__file__),
             "listen"], stdout=subprocess.PIPE)
        procs.append(listener)
        ready = read_lines(listener, ["ready"], 10)
        check("ready" in ready, "backend listeners ready")
        for mode in ("xdp", "tc"):
            one_mode(decap, mode, be_mac, listener)

        p = run([decap, "attach", "--iface", "eth9"], ns=NS_BE,
                check_rc=False)
        check(p.returncode == 1 and p.stderr.strip() ==
              "lb-decap: interface eth9: no such device",
              f"missing interface: '{p.stderr.strip()}'")
        p = run([decap, "attach", "--iface", "veth1", "--obj",
                 "/nonexistent.o"], ns=NS_BE, check_rc=False)
        check(p.returncode == 1 and "/nonexistent.o" in p.stderr,
              f"missing object: '{p.stderr.strip()}'")
        p = run([decap, "frobnicate", "--iface", "veth1"], check_rc=False)
        check(p.returncode == 2, "unknown command is a usage error")
    except Exception as e:  # noqa: BLE001 - reported as a failure
        check(False, f"exception: {e}")
    finally:
        teardown(procs)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout
    check(NS_LB not in left and NS_BE not in left, "namespaces removed")
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "listen":
        listen()
    elif len(sys.argv) == 4 and sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        sys.exit(main_test(sys.argv[1]))
    else:
        print(__doc__)
        sys.exit(2)
