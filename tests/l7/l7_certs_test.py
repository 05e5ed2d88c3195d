#!/usr/bin/env python3
"""Certificates and keys distributed by lb-controlplane (docs/L7.md
"Certificates from the control plane").

Usage: l7_certs_test.py <lb-l7> <lb-controlplane> <lbctl>

Real processes only: one nginx backend, lb-controlplane with a token, one
lb-l7 watching it (--last_good_config), lbctl, openssl s_client and curl.
The listener starts on a certificate file on the L7 node; then:
  1. `lbctl l7 set-cert` uploads certificate 1 + key (read from files):
     openssl s_client sees its serial and subject;
  2. certificate 2 (another key type) replaces it under request loops (new
     connections through curl, one keep-alive HTTPS connection): 0 failed
     requests, the keep-alive connection is never closed, lb-l7 swaps TLS
     contexts on its running workers;
  3. `lbctl l7 get` (text and --json) and SetL7Config's answer show key_pem as
     "redacted:sha256:<SHA-256 of the key's DER>" (checked against openssl
     pkey), never a key; get -> set unchanged is no new generation; get ->
     edit -> set keeps the key (a new generation, the same certificate
     served);
  4. refusals name the field and leave the stored and running state as they
     were: a marker with an unknown digest, a key that does not match its
     certificate, a key inside --cert;
  5. no "PRIVATE KEY" and no line of any key in the API answers, lbctl's
     output, the REST answers or any log; the control plane's state file and
     lb-l7's last good file are 0600 (the last good file holds the key);
     the expiry gauge reports the inline certificate.
"""
import hashlib
import http.client
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402

L4_CONFIG = """
node { tunnel_source_ipv4: "192.0.2.1" }
tables { ring_size: 251 }
"""
H = None
fail = lib.fail


def check(cond, msg):
    lib.check(cond, msg, H.deadline)


def make_cert(name, serial, kind="ec"):
    """(cert path, key path) of a self-signed certificate for a.example.com."""
    crt, key = H.path(name + ".crt"), H.path(name + ".key")
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    r = lib.run(["openssl", "req", "-x509", "-nodes", *newkey, "-keyout", key, "-out", crt,
                 "-days", "2", "-set_serial", str(serial), "-subj", f"/CN=a.example.com/O={name}",
                 "-addext", "subjectAltName=DNS:a.example.com"], timeout=60)
    check(r.returncode == 0, "openssl req: " + r.stderr)
    os.chmod(key, 0o600)
    return crt, key


def marker_of(key):
    """What the API shows for `key`: the SHA-256 of its DER (traditional form)."""
    der = subprocess.run(["openssl", "pkey", "-in", key, "-traditional", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return "redacted:sha256:" + hashlib.sha256(der).hexdigest()


def served(port):
    """(serial hex, subject) of the certificate the listener serves."""
    r = lib.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                 "a.example.com"], inp="", timeout=10)
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout, re.S)
    if not pem:
        return None, r.stdout + r.stderr
    x = lib.run(["openssl", "x509", "-noout", "-serial", "-subject"], inp=pem.group(0))
    serial = re.search(r"serial=([0-9A-F]+)", x.stdout)
    return (serial.group(1) if serial else None), x.stdout


def wait_served(port, serial, what, seconds=10):
    end = time.time() + seconds
    while True:
        got, detail = served(port)
        if got == serial:
            return detail
        check(time.time() < end, f"{what}: serial {got}, want {serial}:\n{detail}")
        time.sleep(0.1)


def main():
    global H
    lb_l7, lb_cp, lbctl = sys.argv[1:4]
    H = lib.Harness(lb_l7, "l7certs-", 60)
    try:
        run(lb_cp, lbctl)
    finally:
        H.cleanup()
    print("PASS", flush=True)


def run(lb_cp, lbctl):
    backend = lib.free_port()
    H.start_nginx(H.path("nginx"), f"""
  access_log off;
  server {{ listen 127.0.0.1:{backend}; keepalive_requests 100000;
    location / {{ default_type text/plain; return 200 "hello\\n"; }} }}""")
    check(lib.wait_port(backend, 5), "nginx did not start")
    crt0, key0 = make_cert("file0", 0x10)
    crt1, key1 = make_cert("inline1", 0x11)
    crt2, key2 = make_cert("inline2", 0x12, kind="rsa")
    _, other = make_cert("other", 0x13)
    keys = [key0, key1, key2, other]

    token = H.write("token", "l7certs-test-token-0123456789\n")
    os.chmod(token, 0o600)
    cp_port, cp_http = lib.free_port(), lib.free_port()
    state = H.path("cp-state")
    cp, cp_log = H.start("controlplane", [
        lb_cp, f"--config={H.write('lb.textproto', L4_CONFIG)}", f"--state_dir={state}",
        f"--table_region={H.path('tables')}", f"--stats_region={H.path('stats')}",
        f"--grpc_listen=127.0.0.1:{cp_port}", f"--http_listen=127.0.0.1:{cp_http}",
        f"--auth_token_file={token}", "--max_vips=8", "--max_backends=16", "--max_members=64",
        "--max_ring_size=251"])
    end = time.time() + 15
    while "gRPC admin API on" not in open(cp_log).read():
        check(cp.poll() is None and time.time() < end, "lb-controlplane:\n" + open(cp_log).read())
        time.sleep(0.05)
    outputs = []  # everything lbctl printed

    def lbctl_run(*args):
        r = lib.run([lbctl, f"--server=127.0.0.1:{cp_port}", f"--token_file={token}", *args])
        outputs.append(r.stdout + r.stderr)
        return r

    port, admin = lib.free_port(), lib.free_port()
    last_good = H.path("last_good")
    l7, l7_log = H.start("l7", [
        H.lb, f"--controlplane=127.0.0.1:{cp_port}", f"--controlplane_token_file={token}",
        f"--last_good_config={last_good}", "--workers=2", f"--admin_port={admin}",
        "--controlplane_start_timeout_ms=300"])
    check(lib.wait_ready(l7, l7_log, 10), "lb-l7 not ready:\n" + open(l7_log).read())

    def generation():
        return lib.metric(lib.scrape(admin), "lb_l7_config_generation")

    def wait_generation(g):
        end = time.time() + 10
        while generation() != g:
            check(time.time() < end, f"lb-l7 did not apply generation {g}:\n" +
                  open(l7_log).read()[-3000:])
            time.sleep(0.05)

    cfg = H.write("l7.textproto", f"""
listeners {{ name: "https" address: "127.0.0.1" port: {port} default_pool: "web"
  tls {{ certificates {{ cert_file: "{crt0}" key_file: "{key0}" }} }} }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {backend} }} }}
""")
    r = lbctl_run("l7", "set", cfg)
    check(r.returncode == 0 and "generation 1" in r.stdout, f"lbctl l7 set: {r.stdout}{r.stderr}")
    wait_generation(1)
    wait_served(port, "10", "the file certificate")

    # 1. Upload certificate 1.
    # --json: SetL7Config's whole answer (the document as stored) printed.
    r = lbctl_run("l7", "set-cert", "--listener=https", f"--cert={crt1}", f"--key={key1}",
                  "--json")
    check(r.returncode == 0 and re.search(r'"generation":\s*"?2', r.stdout),
          f"lbctl l7 set-cert: {r.stdout}{r.stderr}")
    check(marker_of(key1) in r.stdout and "PRIVATE KEY" not in r.stdout,
          "SetL7Config's answer is not redacted:\n" + r.stdout)
    wait_generation(2)
    detail = wait_served(port, "11", "uploaded certificate 1")
    check("O = inline1" in detail or "O=inline1" in detail, "subject of certificate 1:\n" + detail)
    print("ok lbctl l7 set-cert: s_client sees certificate 1 (serial 0x11, O=inline1)",
          flush=True)

    # 2. Certificate 2 (RSA) under request loops.
    stop = threading.Event()
    results = {"ok": 0, "fail": [], "ka": 0}
    lock = threading.Lock()

    def curl_loop():
        while not stop.is_set():
            p = subprocess.run(["curl", "-sk", "--max-time", "5", "--resolve",
                                f"a.example.com:{port}:127.0.0.1",
                                f"https://a.example.com:{port}/"],
                               capture_output=True, text=True)
            with lock:
                if p.returncode == 0 and p.stdout == "hello\n":
                    results["ok"] += 1
                else:
                    results["fail"].append((p.returncode, p.stdout[:80], p.stderr[:200]))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    held.connect()
    held_sock = held.sock

    def keepalive_loop():
        while not stop.is_set():
            try:
                held.request("GET", "/", headers={"Host": "a.example.com"})
                resp = held.getresponse()
                body = resp.read()
                with lock:
                    if resp.status == 200 and body == b"hello\n" and held.sock is held_sock:
                        results["ka"] += 1
                    else:
                        results["fail"].append(("keep-alive", resp.status, body[:80]))
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    results["fail"].append(("keep-alive", repr(e)))
                return
            time.sleep(0.01)

    threads = [threading.Thread(target=curl_loop) for _ in range(2)]
    threads.append(threading.Thread(target=keepalive_loop))
    for t in threads:
        t.start()
    time.sleep(0.8)
    r = lbctl_run("l7", "set-cert", "--listener=https", f"--cert={crt2}", f"--key={key2}")
    check(r.returncode == 0 and "generation 3" in r.stdout,
          f"lbctl l7 set-cert 2: {r.stdout}{r.stderr}")
    wait_served(port, "12", "uploaded certificate 2")
    time.sleep(0.8)
    stop.set()
    for t in threads:
        t.join()
    check(not results["fail"], f"failed requests across the rotation: {results['fail'][:5]}")
    check(results["ok"] > 5 and results["ka"] > 5, f"too few requests: {results}")
    check(generation() == 3, "lb-l7 not at generation 3")
    check("configuration generation 3: TLS certificates and keys replaced (workers kept)"
          in open(l7_log).read(), "lb-l7 did not swap the TLS contexts on its workers")
    held.close()
    print(f"ok certificate 2 under load: {results['ok']} curl requests, {results['ka']} on one "
          "keep-alive connection, 0 failed; contexts swapped, workers kept", flush=True)

    # 3. Redacted, and the marker keeps the key.
    want = marker_of(key2)
    r = lbctl_run("l7", "get")
    check(r.returncode == 0 and "generation 3" in r.stdout, f"lbctl l7 get: {r.stdout}{r.stderr}")
    check(f'key_pem: "{want}"' in r.stdout, f"no marker {want} in:\n{r.stdout}")
    check("cert_pem:" in r.stdout, "the certificate is not shown:\n" + r.stdout)
    text = r.stdout
    r = lbctl_run("l7", "get", "--json")
    check(r.returncode == 0 and want in r.stdout, f"lbctl l7 get --json: {r.stdout}{r.stderr}")
    got = H.write("got.textproto", text)
    r = lbctl_run("l7", "set", got, "--expected_generation=3")
    check(r.returncode == 0 and "generation 3" in r.stdout,
          f"get -> set unchanged is not a no-op: {r.stdout}{r.stderr}")
    edited = H.write("edited.textproto", text + "timeouts { idle_ms: 30001 }\n")
    r = lbctl_run("l7", "set", edited, "--expected_generation=3")
    check(r.returncode == 0 and "generation 4" in r.stdout,
          f"get -> edit -> set: {r.stdout}{r.stderr}")
    wait_generation(4)
    wait_served(port, "12", "certificate 2 after get -> edit -> set")
    r = lbctl_run("l7", "get")
    check(f'key_pem: "{want}"' in r.stdout, "marker changed after the edit:\n" + r.stdout)
    print(f"ok lbctl l7 get shows {want[:30]}... (the SHA-256 of the key's DER); get -> set is "
          "no change; get -> edit -> set keeps the key (generation 4 serves certificate 2)",
          flush=True)

    # 4. Refusals: named, nothing changed.
    state_file = os.path.join(state, "state.binpb")
    stored = open(state_file, "rb").read()

    def refused(r, want_msg, what):
        check(r.returncode == 4 and want_msg in r.stderr, f"{what}: {r.returncode} {r.stderr}")
        check(open(state_file, "rb").read() == stored, f"{what}: the stored state changed")
        check(generation() == 4, f"{what}: lb-l7 left generation 4")
        wait_served(port, "12", what, seconds=1)

    unknown = H.write("unknown.textproto", text.replace(want, "redacted:sha256:" + "0" * 64))
    refused(lbctl_run("l7", "set", unknown),
            "config.listeners[0].tls.certificates[0].key_pem: \"redacted:sha256:0000",
            "an unknown marker")
    refused(lbctl_run("l7", "set-cert", "--listener=https", f"--cert={crt1}", f"--key={other}"),
            "config.listeners[0].tls.certificates[0].key_pem: does not match the certificate",
            "a mismatched key")
    both = H.write("both.pem", open(crt1).read() + open(key1).read())
    refused(lbctl_run("l7", "set-cert", "--listener=https", f"--cert={both}", f"--key={key1}"),
            "config.listeners[0].tls.certificates[0].cert_pem: holds a key block",
            "a key inside --cert")
    # lbctl's own refusals (usage, exit 2): nothing sent.
    for args, msg in ((("--listener=https", f"--cert={crt1}"), "--key: required"),
                      (("--listener=nope", f"--cert={crt1}", f"--key={key1}"),
                       'no L7 listener named "nope"'),
                      (("--listener=https", f"--cert={crt1}", f"--key={key1}", "--index=7"),
                       "--index: 7 is beyond certificates")):
        r = lbctl_run("l7", "set-cert", *args)
        check(r.returncode == 2 and msg in r.stderr, f"set-cert {args}: {r.returncode} {r.stderr}")
    r = lbctl_run("l7", "get")
    check("generation 4" in r.stdout and f'key_pem: "{want}"' in r.stdout,
          "stored config changed by a refusal:\n" + r.stdout)
    print("ok unknown marker, mismatched key, key in --cert: refused naming the field (exit 4); "
          "stored state, running generation and served certificate unchanged", flush=True)

    # 5. No key anywhere it should not be.
    rest = []
    for path in ("/pools", "/vips", "/node", "/metrics"):
        try:
            rest.append(urllib.request.urlopen(f"http://127.0.0.1:{cp_http}{path}",
                                               timeout=5).read().decode(errors="replace"))
        except OSError as e:
            rest.append(str(e))
    key_lines = []
    for k in keys:
        body = [ln for ln in open(k).read().splitlines() if ln and not ln.startswith("-----")]
        key_lines += body[:2]
    places = {"lbctl output": "\n".join(outputs), "REST answers": "\n".join(rest),
              "control plane log": open(cp_log).read(), "lb-l7 log": open(l7_log).read(),
              "lb-l7 metrics": lib.scrape(admin)}
    for where, content in places.items():
        check("PRIVATE KEY" not in content, f"PRIVATE KEY in {where}")
        for ln in key_lines:
            check(ln not in content, f"a line of a key in {where}")
    mode = stat.S_IMODE(os.stat(state_file).st_mode)
    check(mode == 0o600, f"control plane state file mode {oct(mode)}")
    mode = stat.S_IMODE(os.stat(last_good).st_mode)
    check(mode == 0o600, f"lb-l7 last good file mode {oct(mode)}")
    check("PRIVATE KEY" in open(last_good, errors="replace").read(),
          "the last good file does not hold the key")
    m = lib.scrape(admin)
    check(re.search(r'lb_l7_tls_certificate_expiry_seconds\{[^}]*file="inline"[^}]*\} \d', m),
          "no expiry gauge for the inline certificate:\n" + m[-3000:])
    print("ok no key in lbctl output, REST, logs or metrics; state and last good files 0600; "
          "expiry gauge for the inline certificate", flush=True)

    # 6. Standalone: inline PEM in --config, replaced by SIGHUP.
    def standalone(crt, key):
        return f"""
listeners {{ name: "https" address: "127.0.0.1" port: {sport} default_pool: "web"
  tls {{ certificates {{ cert_pem: {pb_string(open(crt).read())}
                        key_pem: {pb_string(open(key).read())} }} }} }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {backend} }} }}
"""
    sport, sadmin = lib.free_port(), lib.free_port()
    conf = H.path("standalone.textproto")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, standalone(crt1, key1).encode())
    os.close(fd)
    os.chmod(conf, 0o644)
    r = lib.run([H.lb, "--config", conf, "--check_config"], timeout=10)
    check(r.returncode != 0 and "accessible by others" in r.stdout + r.stderr,
          f"a key file readable by all accepted: {r.returncode} {r.stdout}{r.stderr}")
    os.chmod(conf, 0o600)
    sp, slog = H.start_lb("standalone", conf, sadmin)
    check(lib.wait_ready(sp, slog, 10), "standalone lb-l7 not ready:\n" + open(slog).read())
    wait_served(sport, "11", "standalone inline certificate 1")
    with open(conf, "w") as f:
        f.write(standalone(crt2, key2))
    sp.send_signal(signal.SIGHUP)
    wait_served(sport, "12", "standalone inline certificate 2 after SIGHUP")
    check("PRIVATE KEY" not in open(slog).read(), "PRIVATE KEY in the standalone log")
    print("ok standalone --config with inline PEM: refused while readable by others; SIGHUP "
          "swaps to certificate 2", flush=True)


def pb_string(s):
    """A text-format string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


if __name__ == "__main__":
    main()
