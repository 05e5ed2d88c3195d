#!/usr/bin/python3
"""Writes the seed corpora of fuzz/corpus/ (packet_parser, burst, shm_region).

The config seeds are plain text files (tests/configs and the burst table),
kept by hand. Run from anywhere: /usr/bin/python3 fuzz/make_seeds.py (Debian python3-scapy). Deterministic:
the same files every time, so re-running it changes nothing in the tree.
"""
import os
import struct

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach,
                       ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr,
                       ICMPv6PacketTooBig, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPerror, TCPerror, raw)

HERE = os.path.dirname(os.path.abspath(__file__))
PORT_MAC, CLIENT_MAC = "02:00:00:00:00:02", "02:00:00:00:00:99"
CLIENT4, CLIENT6 = "203.0.113.9", "2001:db8:9::9"


def eth(pkt, vlans=()):
    e = Ether(src=CLIENT_MAC, dst=PORT_MAC)
    for v in vlans:
        e = e / Dot1Q(vlan=v)
    return raw(e / pkt)


def frames():
    yield "tcp4_syn", eth(IP(src=CLIENT4, dst="198.51.100.1") / TCP(sport=40000, dport=80, flags="S"))
    yield "tcp4_ack_data", eth(IP(src=CLIENT4, dst="198.51.100.2", flags="DF") /
                               TCP(sport=40001, dport=80, flags="A") / (b"x" * 64))
    yield "tcp4_options", eth(IP(src=CLIENT4, dst="198.51.100.4", options=b"\x01\x01\x01\x00") /
                              TCP(sport=40002, dport=8080, flags="S", options=[("MSS", 1460)]))
    yield "udp4_dns", eth(IP(src=CLIENT4, dst="198.51.100.1") / UDP(sport=5353, dport=53) / b"q")
    yield "udp4_frag_first", eth(IP(src=CLIENT4, dst="198.51.100.5", flags="MF", id=7) /
                                 UDP(sport=1, dport=9) / (b"a" * 32))
    yield "udp4_frag_later", eth(IP(src=CLIENT4, dst="198.51.100.5", frag=5, id=7, proto=17) /
                                 (b"b" * 32))
    yield "tcp6_syn", eth(IPv6(src=CLIENT6, dst="2001:db8:100::1") / TCP(sport=40000, dport=443, flags="S"))
    yield "tcp6_exthdrs", eth(IPv6(src=CLIENT6, dst="2001:db8:100::2") / IPv6ExtHdrHopByHop() /
                              IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() /
                              TCP(sport=40003, dport=80, flags="S"))
    yield "udp6_frag", eth(IPv6(src=CLIENT6, dst="2001:db8:100::1") / IPv6ExtHdrFragment(m=1, id=3) /
                           UDP(sport=1, dport=443) / (b"c" * 24))
    yield "icmp4_echo", eth(IP(src=CLIENT4, dst="192.0.2.2") / ICMP(type=8) / b"ping")
    yield "icmp4_frag_needed", eth(IP(src="192.0.2.254", dst="198.51.100.1") /
                                   ICMP(type=3, code=4, nexthopmtu=1400) /
                                   IPerror(src="198.51.100.1", dst=CLIENT4) /
                                   TCPerror(sport=80, dport=40000))
    yield "icmp6_too_big", eth(IPv6(src="2001:db8:ffff::fe", dst="2001:db8:100::1") /
                               ICMPv6PacketTooBig(mtu=1280) /
                               raw(IPv6(src="2001:db8:100::1", dst=CLIENT6) /
                                   TCP(sport=443, dport=40000))[:48])
    yield "icmp6_unreach", eth(IPv6(src="2001:db8:ffff::fe", dst="2001:db8:100::1") /
                               ICMPv6DestUnreach() /
                               raw(IPv6(src="2001:db8:100::1", dst=CLIENT6) / UDP(sport=53, dport=5353)))
    yield "icmp6_echo", eth(IPv6(src=CLIENT6, dst="2001:db8:ffff::2") / ICMPv6EchoRequest())
    yield "ndp_ns", eth(IPv6(src=CLIENT6, dst="ff02::1:ff00:2", hlim=255) /
                        ICMPv6ND_NS(tgt="2001:db8:ffff::2") / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC))
    yield "arp_request", raw(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") /
                             ARP(op=1, hwsrc=CLIENT_MAC, psrc="192.0.2.1", pdst="192.0.2.2"))
    yield "vlan_tcp4", eth(IP(src=CLIENT4, dst="198.51.100.1") / TCP(sport=40004, dport=80, flags="S"),
                           vlans=(10,))
    yield "qinq_udp6", eth(IPv6(src=CLIENT6, dst="2001:db8:100::1") / UDP(sport=1, dport=443),
                           vlans=(10, 20))
    yield "tcp4_empty_pool", eth(IP(src=CLIENT4, dst="198.51.100.6") / TCP(sport=40005, dport=80, flags="S"))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def burst(fs):
    return b"".join(struct.pack(">H", len(f)) + f for f in fs)


def slot_seed(flags, num_vips, num_backends, members, ring):
    """A slot of the shm_region target's layout (max 4 VIPs, 8 backends, 16
    members, ring 13): header, vips @128, backends @384, members @896, VIP
    index @960 (8 cells), rings @1024 (13 cells per VIP). Checksums are left
    zero: the target fills them in."""
    slot = bytearray(1024 + 4 * 13 * 4)
    struct.pack_into("<QQQIIII", slot, 0, 1, 0, 0, num_vips, num_backends, len(members), len(ring))
    for i in range(num_vips):
        addr = bytes([198, 51, 100, 1 + i]) + bytes(12)
        struct.pack_into("<16sBBHBBHIII", slot, 128 + 64 * i, addr, 4, 6, 80, 0, 1, 0, 0,
                         len(members), 100 + i)
        struct.pack_into("<I", slot, 960 + 4 * (i * 3 % 8), i + 1)
        for k, b in enumerate(ring):
            struct.pack_into("<I", slot, 1024 + 4 * (13 * i + k), b)
    for b in range(1, num_backends):
        struct.pack_into("<16sBBHII", slot, 384 + 64 * b, bytes([10, 1, 0, b]) + bytes(12), 4, 0, 0, 1, 1)
    for m, b in enumerate(members):
        struct.pack_into("<I", slot, 896 + 4 * m, b)
    return bytes([flags]) + bytes(slot)


def main():
    fs = dict(frames())
    for name, f in fs.items():
        write("packet_parser", name, f)
    for name, f in fs.items():
        write("burst", name, burst([f]))
    write("burst", "mixed_burst", burst(list(fs.values())[:16]))
    write("burst", "same_flow_twice", burst([fs["tcp4_syn"], fs["tcp4_ack_data"], fs["tcp4_syn"]]))
    write("shm_region", "empty_slot", slot_seed(0, 0, 0, [], []))
    write("shm_region", "two_vips", slot_seed(0, 2, 3, [1, 2], [1, 2] * 6 + [1]))
    write("shm_region", "slot1_empty_pool", slot_seed(8, 1, 1, [], [0] * 13))


if __name__ == "__main__":
    main()
