#!/usr/bin/python3
"""Long-lived HTTP/1.1 keep-alive clients for the end-to-end tests.

  keepalive_clients.py VIP N TRIGGER AFTER_S LIMIT_S RECV_S

Opens N connections to VIP:80, each sending one request every 200 ms on the
same socket. Prints READY once every connection has answered, keeps going
until the file TRIGGER exists (at most LIMIT_S), then AFTER_S more seconds
(counted as "after"), and prints one JSON line per connection: its client
port, the backend that answered, requests before/after, and an "error" if it
failed, changed backend, or its last request got no answer within RECV_S.
"""
import json, os, socket, sys, threading, time
vip, n, trigger = sys.argv[1], int(sys.argv[2]), sys.argv[3]
after_s, limit_s, recv_s = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
REQ = b"GET / HTTP/1.1\r\nHost: lb-e2e\r\n\r\n"
stop = threading.Event()
switched = threading.Event()

def response(sock, buf):
    while b"\r\n\r\n" not in buf:
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("closed by peer")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    clen = 0
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v)
    while len(rest) < clen:
        d = sock.recv(4096)
        if not d:
            raise ConnectionError("closed mid-body")
        rest += d
    return status, rest[:clen].decode().strip(), rest[clen:]

class Conn(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.port, self.backend, self.before, self.after, self.error = 0, "", 0, 0, ""
    def run(self):
        try:
            s = socket.create_connection((vip, 80), timeout=3)
            self.port = s.getsockname()[1]
            s.settimeout(recv_s)
            buf = b""
            while not stop.is_set():
                after = switched.is_set()
                s.sendall(REQ)
                status, body, buf = response(s, buf)
                if status != 200:
                    raise ConnectionError("HTTP %d" % status)
                if self.backend and body != self.backend:
                    raise ConnectionError("backend changed: %s -> %s" % (self.backend, body))
                self.backend = body
                if after:
                    self.after += 1
                else:
                    self.before += 1
                time.sleep(0.2)
            s.close()
        except Exception as e:  # the connection is dead: record why
            self.error = "%s: %s" % (type(e).__name__, e)

conns = [Conn() for _ in range(n)]
for c in conns:
    c.start()
    time.sleep(0.02)
t0 = time.time()
while time.time() - t0 < 5 and not all(c.before > 0 or c.error for c in conns):
    time.sleep(0.05)
print("READY", " ".join(str(c.port) for c in conns if c.before > 0), flush=True)
while time.time() - t0 < limit_s and not os.path.exists(trigger):
    time.sleep(0.05)
switched.set()
time.sleep(after_s)
stop.set()
deadline = time.time() + recv_s + 1
for c in conns:
    c.join(max(0.0, deadline - time.time()))
for c in conns:
    print(json.dumps({"port": c.port, "backend": c.backend, "before": c.before, "after": c.after,
                      "error": c.error or ("still waiting" if c.is_alive() else "")}), flush=True)
print("DONE", flush=True)
