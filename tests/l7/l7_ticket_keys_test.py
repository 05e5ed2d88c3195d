#!/usr/bin/env python3
"""Session ticket keys distributed by lb-controlplane to two lb-l7 nodes
(docs/L7.md "Ticket keys from the control plane").

Usage: l7_ticket_keys_test.py <lb-l7> <lb-controlplane> <lbctl>

Real processes only: one nginx backend, lb-controlplane rotating the keys
every 3 s (--l7_ticket_key_rotate_s=3), two lb-l7 (A and B) watching it,
each with --last_good_config, `openssl s_client` and lbctl. Both nodes run
the one document the control plane streams, so both bind its TLS listener
(SO_REUSEPORT spreads connections over the two processes): which node did a
handshake, and whether full or resumed, is read from the two nodes' own
lb_l7_tls_handshakes_total; a resumption counts only when the node that
resumed is not the one that issued the ticket. Checks:
  1. a ticket from A resumes on B and one from B on A ("Reused"), TLS 1.3
     and TLS 1.2, counted as resumed handshakes by the node that resumed;
  2. rotations: the control plane's key generation moves every 3 s
     (lb_l7_ticket_key_generation, lb_l7_ticket_key_rotations_total); a
     ticket issued before two rotations still resumes on the other node
     (its key is now a previous one), and new tickets carry another key
     name; a keep-alive HTTPS connection opened before the rotations still
     answers after them (keys swapped without dropping a connection);
  3. `lbctl l7 rotate-ticket-keys` rotates at once (old tickets still
     resume), `--drop_previous` replaces every key (old tickets get a full
     handshake, new ones resume across nodes);
  4. the keys never leave through the API: `lbctl l7 get` (text and --json)
     shows the key generation and no session_ticket_keys; a config that
     sets session_ticket_keys is refused naming the field (exit 4);
  5. files holding keys are 0600: the control plane's state file and each
     lb-l7's last good file (which holds the keys: a restarted node resumes
     the tickets of the other one).
"""
import os
import re
import socket
import ssl
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402

REQ = "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"
ROTATE_S = 3
L4_CONFIG = """
node { tunnel_source_ipv4: "192.0.2.1" }
tables { ring_size: 251 }
"""

H = None


fail = lib.fail


def check(cond, msg):
    lib.check(cond, msg, H.deadline)


def l7_config(port, backend, crt, key, extra_tls=""):
    tls = (f'tls {{ certificates {{ cert_file: "{crt}" key_file: "{key}" }} '
           f'session_timeout_s: 60 {extra_tls} }}')
    return f"""
listeners {{ name: "https" address: "127.0.0.1" port: {port} default_pool: "web" {tls} }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {backend} }} }}
"""


def s_client(port, *args):
    a = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "a.example.com",
         "-ign_eof", *args]
    r = lib.run(a, inp=REQ, timeout=10)
    return r.stdout + r.stderr


def ticket_name(sess):
    """The key name (first 16 bytes) of the ticket in session file `sess`."""
    r = lib.run(["openssl", "sess_id", "-in", sess, "-noout", "-text"])
    m = re.search(r"TLS session ticket:\n\s*0000 - ((?:[0-9a-f]{2}[ -]){16})", r.stdout)
    check(m, "no ticket in the session file:\n" + r.stdout + r.stderr)
    return m.group(1).replace("-", " ").replace(" ", "")


def main():
    global H
    lb_l7, lb_cp, lbctl = sys.argv[1:4]
    H = lib.Harness(lb_l7, "l7tkt-", 80)
    try:
        run(lb_cp, lbctl)
    finally:
        H.cleanup()
    print("PASS", flush=True)


class Nodes:
    """The two lb-l7 and which of them did a handshake (their counters)."""

    def __init__(self, port):
        self.port, self.admin = port, {}

    def counts(self):
        c = {}
        for name, admin in self.admin.items():
            m = lib.scrape(admin)
            for kind in ("full", "resumed"):
                c[(name, kind)] = lib.metric(m, "lb_l7_tls_handshakes_total", listener="https",
                                             kind=kind) or 0
        return c

    def handshake(self, args):
        """(node, kind, s_client output) of one handshake + request."""
        before = self.counts()
        out = s_client(self.port, *args)
        check("hello" in out, f"no answer:\n{out}")
        after = self.counts()
        moved = [k for k in after if after[k] != before.get(k, 0)]
        check(len(moved) == 1, f"not one handshake counted: {before} -> {after}")
        return moved[0][0], moved[0][1], out

    def new_session(self, args, sess):
        node, kind, out = self.handshake([*args, "-sess_out", sess])
        check(kind == "full" and "New," in out, f"not a full handshake:\n{out}")
        return node

    def resume_elsewhere(self, args, sess, issuer, what):
        """Resumes `sess` until a node other than `issuer` takes the
        connection; every attempt must resume."""
        for _ in range(16):
            node, kind, out = self.handshake([*args, "-sess_in", sess])
            check(kind == "resumed" and "Reused," in out,
                  f"{what}: not resumed on {node} (issued by {issuer}):\n{out}")
            if node != issuer:
                return node
        fail(f"{what}: 16 connections all went to {issuer}")


def run(lb_cp, lbctl):
    backend = lib.free_port()
    H.start_nginx(H.path("nginx"), f"""
  access_log off;
  server {{ listen 127.0.0.1:{backend}; keepalive_requests 100000;
    location / {{ default_type text/plain; return 200 "hello\\n"; }} }}""")
    check(lib.wait_port(backend, 5), "nginx did not start")
    crt, key = H.path("a.crt"), H.path("a.key")
    r = lib.run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-keyout", key, "-out", crt, "-days", "2", "-subj",
                 "/CN=a.example.com", "-addext", "subjectAltName=DNS:a.example.com"], timeout=60)
    check(r.returncode == 0, "openssl req: " + r.stderr)
    os.chmod(key, 0o600)

    token = H.write("token", "l7tkt-test-token-0123456789\n")
    os.chmod(token, 0o600)
    cp_port, cp_http = lib.free_port(), lib.free_port()
    state = H.path("cp-state")
    cp, cp_log = H.start("controlplane", [
        lb_cp, f"--config={H.write('lb.textproto', L4_CONFIG)}", f"--state_dir={state}",
        f"--table_region={H.path('tables')}", f"--stats_region={H.path('stats')}",
        f"--grpc_listen=127.0.0.1:{cp_port}", f"--http_listen=127.0.0.1:{cp_http}",
        f"--auth_token_file={token}", "--max_vips=8", "--max_backends=16", "--max_members=64",
        "--max_ring_size=251", f"--l7_ticket_key_rotate_s={ROTATE_S}"])
    end = time.time() + 15
    while "gRPC admin API on" not in open(cp_log).read():
        check(cp.poll() is None and time.time() < end, "lb-controlplane:\n" + open(cp_log).read())
        time.sleep(0.05)
    server = f"127.0.0.1:{cp_port}"

    def lbctl_run(*args):
        return lib.run([lbctl, f"--server={server}", f"--token_file={token}", *args])

    port = lib.free_port()
    hs = Nodes(port)
    nodes = {}
    for name in ("A", "B"):
        admin = lib.free_port()
        last_good = H.path(f"last_good_{name}")
        args = [H.lb, f"--controlplane={server}", f"--controlplane_token_file={token}",
                f"--last_good_config={last_good}", "--workers=2", f"--admin_port={admin}",
                "--controlplane_start_timeout_ms=300"]
        p, log = H.start("l7-" + name, args)
        check(lib.wait_ready(p, log, 10), f"lb-l7 {name} not ready:\n" + open(log).read())
        nodes[name] = {"admin": admin, "last_good": last_good, "log": log, "args": args, "p": p}
        hs.admin[name] = admin

    # Bad: operators do not set keys.
    bad = H.write("bad.textproto", l7_config(port, backend, crt, key,
                                             'session_ticket_keys: "' + "k" * 80 + '"'))
    r = lbctl_run("l7", "set", bad)
    check(r.returncode == 4 and "config.listeners[0].tls.session_ticket_keys" in r.stderr,
          f"inline keys not refused naming the field: {r.returncode} {r.stderr}")
    cfg = H.write("l7.textproto", l7_config(port, backend, crt, key))
    r = lbctl_run("l7", "set", cfg)
    check(r.returncode == 0 and "generation 1" in r.stdout, f"lbctl l7 set: {r.stdout}{r.stderr}")
    for name, n in nodes.items():
        end = time.time() + 10
        while lib.metric(lib.scrape(n["admin"]), "lb_l7_config_generation") != 1:
            check(time.time() < end, f"lb-l7 {name} did not apply generation 1:\n" +
                  open(n["log"]).read())
            time.sleep(0.05)
    print("ok inline keys refused (exit 4); generation 1 on both nodes", flush=True)

    # A keep-alive HTTPS connection held across the rotations below.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                           server_hostname="a.example.com")

    def held_get():
        held.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        data = b""
        while b"hello" not in data:
            chunk = held.recv(4096)
            check(chunk, "the held keep-alive connection was closed")
            data += chunk
        return data

    check(b"200" in held_get(), "first request on the held connection")

    # 1. Across nodes, both versions; both directions (until each node has
    # resumed the other's ticket).
    for version in ("-tls1_3", "-tls1_2"):
        directions = set()
        for _ in range(12):
            sess = H.path("sess")
            issuer = hs.new_session([version], sess)
            taker = hs.resume_elsewhere([version], sess, issuer, version)
            directions.add((issuer, taker))
            if len(directions) == 2:
                break
        check(len(directions) == 2, f"{version}: only {directions} seen")
    print("ok tickets resume across the two lb-l7 nodes (TLS 1.3 and 1.2, A->B and B->A), "
          "counted as resumed by the node that did not issue them", flush=True)

    # 2. Rotations. Tickets now, then two rotations: their key is a previous one.
    m = lib.scrape(cp_http)
    gen0 = lib.metric(m, "lb_l7_ticket_key_generation")
    check(gen0 is not None and gen0 >= 1, "lb_l7_ticket_key_generation missing:\n" + m[-2000:])
    old13, old12 = H.path("old13"), H.path("old12")
    issuer13 = hs.new_session(["-tls1_3"], old13)
    issuer12 = hs.new_session(["-tls1_2"], old12)
    old_name = ticket_name(old13)
    end = time.time() + 4 * ROTATE_S + 5
    while lib.metric(lib.scrape(cp_http), "lb_l7_ticket_key_generation") < gen0 + 2:
        check(time.time() < end, "keys not rotated twice:\n" + open(cp_log).read()[-3000:])
        time.sleep(0.2)
    time.sleep(0.5)  # the watch streams carry it to both nodes
    hs.resume_elsewhere(["-tls1_3"], old13, issuer13, "TLS 1.3 ticket from before two rotations")
    hs.resume_elsewhere(["-tls1_2"], old12, issuer12, "TLS 1.2 ticket from before two rotations")
    fresh = H.path("fresh")
    issuer = hs.new_session(["-tls1_3"], fresh)
    check(ticket_name(fresh) != old_name, "new tickets still use the key from two rotations ago")
    hs.resume_elsewhere(["-tls1_3"], fresh, issuer, "a ticket of the new key")
    check(b"200" in held_get(), "held keep-alive connection broken by the rotations")
    held.close()
    m = lib.scrape(cp_http)
    check(lib.metric(m, "lb_l7_ticket_key_rotations_total") >= 3,
          "lb_l7_ticket_key_rotations_total < 3")
    for name, n in nodes.items():
        check("TLS certificates and keys replaced" in open(n["log"]).read(),
              f"lb-l7 {name} did not swap keys live")
    print(f"ok key generation {int(gen0)} -> "
          f"{int(lib.metric(m, 'lb_l7_ticket_key_generation'))}: tickets from before two "
          "rotations resume on the other node (1.3, 1.2), new tickets use another key, a held "
          "keep-alive connection still answers", flush=True)

    # 3. Never through the API.
    for args in (("l7", "get"), ("l7", "get", "--json")):
        r = lbctl_run(*args)
        check(r.returncode == 0, f"lbctl {args}: {r.stderr}")
        # Text: the field absent; JSON (defaults printed): empty.
        check("session_ticket_keys:" not in r.stdout and
              not re.search(r'"session_?[tT]icket_?[kK]eys":\s*"[^"]', r.stdout),
              f"lbctl {args} shows keys:\n{r.stdout}")
        check(old_name not in r.stdout.replace(" ", ""), "a key name in lbctl's output")
    r = lbctl_run("l7", "get", "--json")
    check(re.search(r'"ticket_?[kK]ey_?[gG]eneration":\s*"?\d+', r.stdout),
          "lbctl l7 get --json has no ticket key generation:\n" + r.stdout)
    for log in [cp_log] + [n["log"] for n in nodes.values()]:
        check(old_name not in open(log).read().replace(" ", ""), f"a key name in {log}")
    print("ok lbctl l7 get (text, --json): key generation only, no key bytes; not in logs",
          flush=True)

    # Rotation on demand: a normal one keeps old tickets; --drop_previous
    # refuses them (a full handshake), and new tickets resume across nodes.
    kept = H.path("kept")
    issuer = hs.new_session(["-tls1_3"], kept)
    r = lbctl_run("l7", "rotate-ticket-keys")
    m = re.match(r"session ticket keys at generation (\d+)$", r.stdout.strip())
    check(r.returncode == 0 and m, f"lbctl l7 rotate-ticket-keys: {r.stdout}{r.stderr}")
    time.sleep(0.5)
    hs.resume_elsewhere(["-tls1_3"], kept, issuer, "a ticket after lbctl l7 rotate-ticket-keys")
    r = lbctl_run("l7", "rotate-ticket-keys", "--drop_previous")
    m2 = re.match(r"session ticket keys at generation (\d+)$", r.stdout.strip())
    check(r.returncode == 0 and m2 and int(m2.group(1)) > int(m.group(1)),
          f"lbctl l7 rotate-ticket-keys --drop_previous: {r.stdout}{r.stderr}")
    time.sleep(0.5)
    for _ in range(4):  # whichever node takes it
        node, kind, out = hs.handshake(["-tls1_3", "-sess_in", kept])
        check(kind == "full" and "New," in out, f"a ticket of a dropped key resumed on {node}")
    after_drop = H.path("after_drop")
    issuer = hs.new_session(["-tls1_3"], after_drop)
    hs.resume_elsewhere(["-tls1_3"], after_drop, issuer, "a ticket after --drop_previous")
    print("ok lbctl l7 rotate-ticket-keys: old tickets still resume; --drop_previous: they "
          "no longer do, new ones resume across nodes", flush=True)

    # 4. Files holding keys: 0600; a restarted node starts from its last good.
    state_file = os.path.join(state, "state.binpb")
    mode = stat.S_IMODE(os.stat(state_file).st_mode)
    check(mode == 0o600, f"control plane state file mode {oct(mode)}")
    for name, n in nodes.items():
        mode = stat.S_IMODE(os.stat(n["last_good"]).st_mode)
        check(mode == 0o600, f"lb-l7 {name} last good file mode {oct(mode)}")
        check("session_ticket_keys" in open(n["last_good"], errors="replace").read(),
              f"lb-l7 {name} last good file has no keys")
    # B restarted with the control plane gone: its last good file's keys
    # resume A's tickets (and A's B's).
    cp.kill()
    cp.wait()
    b = nodes["B"]
    b["p"].terminate()
    check(b["p"].wait(15) == 0, "lb-l7 B did not exit 0")
    p, log = H.start("l7-B-restarted", b["args"])
    check(lib.wait_ready(p, log, 10), "restarted B not ready:\n" + open(log).read())
    check("starting from " + b["last_good"] in open(log).read(), "B did not use its last good")
    shared = H.path("shared")
    for _ in range(12):
        issuer = hs.new_session(["-tls1_3"], shared)
        if issuer == "A":
            break
    check(issuer == "A", "no connection reached A")
    check(hs.resume_elsewhere(["-tls1_3"], shared, "A", "A's ticket on restarted B") == "B",
          "not resumed on B")
    print("ok state file and last good files 0600; B restarted from its last good file "
          "resumes A's tickets", flush=True)

if __name__ == "__main__":
    main()
