#!/usr/bin/python3
"""Idle HTTP/1.1 keep-alive connections for the e2e tests.

  idle_conns.py VIP N RESUME LIMIT_S

Opens N connections to VIP:80 and makes one request on each, prints READY,
then leaves them idle (the connection-table entries the flows hold are then
the stalest, the first a full table would evict) until the file RESUME exists
(at most LIMIT_S), makes one more request on each, and prints one JSON line
per connection: its client port, the backends of the two requests, and an
"error" when the second failed or came from another backend (the flow moved).
Standard library only; bounded (3 s socket timeouts).
"""
import json
import os
import socket
import sys
import time

vip, n, resume, limit_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
REQ = b"GET / HTTP/1.1\r\nHost: lb-e2e\r\n\r\n"


def request(sock):
    sock.sendall(REQ)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("closed by peer")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    clen = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v)
    while len(body) < clen:
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("closed mid-body")
        body += d
    status = int(lines[0].split()[1])
    if status != 200:
        raise ConnectionError("HTTP %d" % status)
    return body[:clen].decode().strip()


conns = []
for _ in range(n):
    c = {"port": 0, "first": "", "second": "", "error": ""}
    try:
        s = socket.create_connection((vip, 80), timeout=3)
        c["port"] = s.getsockname()[1]
        c["first"] = request(s)
    except Exception as e:  # recorded, reported below
        s = None
        c["error"] = "first: %s: %s" % (type(e).__name__, e)
    conns.append((s, c))
print("READY", flush=True)
t0 = time.time()
while time.time() - t0 < limit_s and not os.path.exists(resume):
    time.sleep(0.05)
for s, c in conns:
    if s is None:
        continue
    try:
        c["second"] = request(s)
        if c["second"] != c["first"]:
            c["error"] = "moved: %s -> %s" % (c["first"], c["second"])
    except Exception as e:
        c["error"] = "second: %s: %s" % (type(e).__name__, e)
    s.close()
for _, c in conns:
    print(json.dumps(c), flush=True)
print("DONE", flush=True)
