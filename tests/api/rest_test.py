#!/usr/bin/python3
"""The classic REST API through the real lb-controlplane binary (urllib only).

Starts lb-controlplane with its state directory, table and stats regions in a
temporary directory and the HTTP listener on an ephemeral loopback port, then
drives every route and every status code the API promises: 201, 200, 400
(bad address, port, weight, JSON, types, unknown fields, non-id path
segments), 401 (bearer token), 404, 405 (with Allow), 409, 412 and 413.
After every refused request the listed state (GET /backends, /vips,
/config/algorithm), the published table generation and the stored state file
must be exactly as before.

Usage: rest_test.py <lb-controlplane>
Exit status 0 when every check passed; each failure is printed.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BOOT = """
node { tunnel_source_ipv4: "192.0.2.1" tunnel_source_ipv6: "2001:db8:ffff::1" }
tables { ring_size: 251 }
pools { name: "default" }
vips { address: "198.51.100.1" protocol: PROTOCOL_TCP port: 80 pool: "default" }
"""

ALGORITHMS = ["round_robin", "weighted_round_robin", "least_connections",
              "weighted_least_connections", "ip_hash", "random", "maglev"]

failures = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        failures.append(what)
    return cond


class Server:
    """One lb-controlplane process with its own temporary state."""

    def __init__(self, binary, tmp, name, token=None):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.state_file = os.path.join(self.dir, "state", "state.textproto")
        boot = os.path.join(self.dir, "boot.textproto")
        with open(boot, "w") as f:
            f.write(BOOT)
        args = [binary, f"--config={boot}", f"--state_dir={self.dir}/state",
                f"--table_region={self.dir}/tables", f"--stats_region={self.dir}/stats",
                "--max_ring_size=251", "--max_vips=8", "--max_backends=64",
                "--max_members=256", "--http_listen=127.0.0.1:0", "--grpc_listen="]
        if token is not None:
            token_file = os.path.join(self.dir, "token")
            with open(token_file, "w") as f:
                f.write(token + "\n")
            args.append(f"--auth_token_file={token_file}")
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.base = None
        deadline = time.time() + 15
        while time.time() < deadline and self.proc.poll() is None:
            self.stderr.seek(0)
            m = re.search(r"REST API and /metrics on (http://\S+)", self.stderr.read())
            if m:
                self.base = m.group(1)
                break
            time.sleep(0.05)
        if self.base is None:
            self.stderr.seek(0)
            raise RuntimeError(f"lb-controlplane did not start:\n{self.stderr.read()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def request(self, method, path, body=None, headers=None, raw=None):
        """Returns (status, headers, parsed JSON body or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, hdrs, text = r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            status, hdrs, text = e.code, e.headers, e.read().decode()
        ctype = hdrs.get("Content-Type", "")
        return status, hdrs, json.loads(text) if ctype.startswith("application/json") else text

    def snapshot(self):
        """Everything a refused request must leave alone."""
        with open(self.state_file, "rb") as f:
            stored = f.read()
        _, _, backends = self.request("GET", "/backends")
        _, _, vips = self.request("GET", "/vips")
        _, _, pools = self.request("GET", "/pools")
        _, _, alg = self.request("GET", "/config/algorithm")
        _, _, metrics = self.request("GET", "/metrics")
        gen = re.search(r"^lb_table_generation (\d+)$", metrics, re.M)
        return {"stored": stored, "backends": backends, "vips": vips, "pools": pools,
                "algorithm": alg, "generation": gen.group(1) if gen else None}


def expect_refused(srv, what, method, path, status, field=None, body=None, raw=None,
                   headers=None):
    """A refused request: its status, a RestError naming `field`, nothing changed."""
    before = srv.snapshot()
    st, hdrs, resp = srv.request(method, path, body=body, raw=raw, headers=headers)
    ok = check(st == status, f"{what}: {method} {path} -> {status} (got {st} {resp})")
    if ok and isinstance(resp, dict):
        check(set(resp) == {"error", "field"} and resp["error"] != "",
              f"{what}: body is a RestError {{error, field}} ({resp})")
        if field is not None:
            check(resp["field"] == field, f"{what}: field is {field!r} (got {resp['field']!r})")
    after = srv.snapshot()
    for k in before:
        check(before[k] == after[k], f"{what}: {k} unchanged")
    return hdrs, resp


def as_int(v):
    return int(v) if v is not None else None


def wait_gone(srv, backend_id, timeout=3.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, _, _ = srv.request("GET", f"/backends/{backend_id}/health")
        if st == 404:
            return True
        time.sleep(0.05)
    return False


def test_backends(srv):
    st, hdrs, b = srv.request("POST", "/backends", {"address": "10.0.0.1", "port": 8080})
    check(st == 201, f"POST /backends -> 201 (got {st} {b})")
    check(isinstance(b, dict) and b.get("address") == "10.0.0.1" and b.get("port") == 8080
          and b.get("weight") == 1 and b.get("status") == "unknown" and b.get("id", 0) > 0,
          f"201 body is the backend with weight 1 and status unknown ({b})")
    first_id = b["id"]
    check(hdrs.get("Location") == f"/backends/{first_id}", f"Location header ({hdrs.get('Location')})")
    st, _, b6 = srv.request("POST", "/backends", {"address": "2001:db8::7", "port": 443,
                                                  "weight": 5, "health_check_path": "/hc"})
    check(st == 201 and b6.get("weight") == 5 and b6.get("address") == "2001:db8::7",
          f"POST IPv6 backend with weight 5 -> 201 ({st} {b6})")
    st, _, same_addr = srv.request("POST", "/backends", {"address": "10.0.0.2", "port": 8080})
    check(st == 201, f"other address, same port -> 201 ({st})")
    st, _, lst = srv.request("GET", "/backends")
    ids = sorted(x["backend"]["id"] for x in lst.get("backends", []))
    check(st == 200 and ids == sorted([first_id, b6["id"], same_addr["id"]]),
          f"GET /backends lists the three ({ids})")
    st, _, one = srv.request("GET", f"/backends/{first_id}")
    check(st == 200 and one.get("backend", {}).get("address") == "10.0.0.1",
          f"GET /backends/{first_id} -> 200 ({st})")

    # 409
    expect_refused(srv, "duplicate address:port", "POST", "/backends", 409,
                   body={"address": "10.0.0.1", "port": 8080})
    expect_refused(srv, "duplicate IPv6 spelled differently", "POST", "/backends", 409,
                   body={"address": "2001:DB8:0::7", "port": 443})
    # A pool holds one backend per address (the address is its Maglev key).
    expect_refused(srv, "same address, other port", "POST", "/backends", 409,
                   body={"address": "10.0.0.1", "port": 8081})

    # 400: address, port, weight, path
    for addr in ["10.0.0.300", "not-an-ip", "", "10.0.0.1/24", "::"]:
        expect_refused(srv, f"bad address {addr!r}", "POST", "/backends", 400, field="address",
                       body={"address": addr, "port": 80})
    expect_refused(srv, "missing address", "POST", "/backends", 400, field="address",
                   body={"port": 80})
    for port in [0, 65536, -1, 99999999999]:
        expect_refused(srv, f"port {port} out of range", "POST", "/backends", 400, field="port",
                       body={"address": "10.0.0.9", "port": port})
    expect_refused(srv, "missing port", "POST", "/backends", 400, field="port",
                   body={"address": "10.0.0.9"})
    for w in [65536, -1]:
        expect_refused(srv, f"weight {w} out of range", "POST", "/backends", 400, field="weight",
                       body={"address": "10.0.0.9", "port": 80, "weight": w})
    expect_refused(srv, "health_check_path without /", "POST", "/backends", 400,
                   field="health_check_path",
                   body={"address": "10.0.0.9", "port": 80, "health_check_path": "health"})

    # 400: wrong types
    for body, field in [({"address": "10.0.0.9", "port": "abc"}, "port"),
                        ({"address": "10.0.0.9", "port": True}, "port"),
                        ({"address": "10.0.0.9", "port": 80.5}, "port"),
                        ({"address": "10.0.0.9", "port": 1e30}, "port"),
                        ({"address": "10.0.0.9", "port": [80]}, "port"),
                        ({"address": "10.0.0.9", "port": {"n": 80}}, "port"),
                        ({"address": 10, "port": 80}, "address"),
                        ({"address": "10.0.0.9", "port": 80, "weight": "heavy"}, "weight"),
                        ({"address": "10.0.0.9", "port": 80, "health_check_path": [1]},
                         "health_check_path")]:
        expect_refused(srv, f"wrong type {body}", "POST", "/backends", 400, field=field, body=body)

    # 400: unknown fields
    expect_refused(srv, "unknown field", "POST", "/backends", 400, field="colour",
                   body={"address": "10.0.0.9", "port": 80, "colour": "red"})
    expect_refused(srv, "misspelt field", "POST", "/backends", 400, field="prot",
                   body={"address": "10.0.0.9", "prot": 80})

    # 400: malformed JSON
    for raw in [b"{", b"", b"   ", b"[]", b"null", b'"text"', b"42",
                b'{"address": "10.0.0.9", "port": 80} trailing', b"{'address': '10.0.0.9'}",
                b'{"address": "10.0.0.9", "port": 80,}', b"\xff\xfe\x00garbage"]:
        expect_refused(srv, f"malformed JSON {raw!r}", "POST", "/backends", 400, field="body",
                       raw=raw)

    # 413: a body over 1 MiB, read by nobody
    big = json.dumps({"address": "10.0.0.9", "port": 80, "health_check_path": "/" + "a" * 2_000_000})
    expect_refused(srv, "oversized body", "POST", "/backends", 413, raw=big.encode())

    # GET health
    st, _, h = srv.request("GET", f"/backends/{first_id}/health")
    check(st == 200 and h.get("id") == first_id and h.get("status") == "unknown"
          and "last_check" in h and "consecutive_failures" in h
          and as_int(h.get("active_connections")) == 0 and "last_error" in h,
          f"GET /backends/{first_id}/health -> 200 BackendHealth ({h})")
    expect_refused(srv, "health of an unknown backend", "GET", "/backends/9999/health", 404)

    # non-ids in paths
    for seg in ["abc", "0", "-1", "99999999999", "1.5", "%31x"]:
        expect_refused(srv, f"path segment {seg!r}", "DELETE", f"/backends/{seg}", 400,
                       field="backend_id")
    expect_refused(srv, "health path segment", "GET", "/backends/abc/health", 400,
                   field="backend_id")

    # DELETE
    expect_refused(srv, "DELETE unknown backend", "DELETE", "/backends/9999", 404)
    st, _, d = srv.request("DELETE", f"/backends/{same_addr['id']}")
    check(st == 200 and d.get("id") == same_addr["id"] and as_int(d.get("drained_connections")) == 0,
          f"DELETE /backends/{same_addr['id']} -> 200 {{id, drained_connections: 0}} ({st} {d})")
    check(wait_gone(srv, same_addr["id"]), "a deleted backend without flows leaves")
    expect_refused(srv, "DELETE it again", "DELETE", f"/backends/{same_addr['id']}", 404)
    return first_id


def test_algorithm(srv):
    st, _, a = srv.request("GET", "/config/algorithm")
    check(st == 200 and a.get("algorithm") == "maglev" and a.get("sticky_sessions") is False
          and as_int(a.get("sticky_ttl_seconds")) == 3600, f"GET /config/algorithm defaults ({a})")
    for name in ALGORITHMS:
        st, _, a = srv.request("PUT", "/config/algorithm", {"algorithm": name})
        check(st == 200 and a.get("algorithm") == name and a.get("sticky_sessions") is False
              and as_int(a.get("sticky_ttl_seconds")) == 3600,
              f"PUT /config/algorithm {name} -> 200 ({st} {a})")
    st, _, a = srv.request("PUT", "/config/algorithm",
                           {"algorithm": "ip_hash", "sticky_sessions": True,
                            "sticky_ttl_seconds": 60})
    check(st == 200 and a == {"algorithm": "ip_hash", "sticky_sessions": True,
                              "sticky_ttl_seconds": a.get("sticky_ttl_seconds")}
          and as_int(a.get("sticky_ttl_seconds")) == 60, f"sticky ip_hash ttl 60 -> 200 ({a})")
    st, _, g = srv.request("GET", "/config/algorithm")
    check(g == a, f"GET returns what PUT set ({g})")
    for body, field in [({"algorithm": "fastest"}, "algorithm"),
                        ({"algorithm": "ROUND_ROBIN"}, "algorithm"),
                        ({"algorithm": ""}, "algorithm"),
                        ({}, "algorithm"),
                        ({"algorithm": 3}, "algorithm"),
                        ({"algorithm": "random", "sticky_ttl_seconds": 0}, "sticky_ttl_seconds"),
                        ({"algorithm": "random", "sticky_ttl_seconds": -5}, "sticky_ttl_seconds"),
                        ({"algorithm": "random", "sticky_ttl_seconds": 2**40},
                         "sticky_ttl_seconds"),
                        ({"algorithm": "random", "sticky_ttl_seconds": "soon"},
                         "sticky_ttl_seconds"),
                        ({"algorithm": "random", "sticky_ttl_seconds": 1.5}, "sticky_ttl_seconds"),
                        ({"algorithm": "random", "sticky_sessions": "yes"}, "sticky_sessions"),
                        ({"algorithm": "random", "ttl": 5}, "ttl")]:
        expect_refused(srv, f"algorithm {body}", "PUT", "/config/algorithm", 400, field=field,
                       body=body)
    expect_refused(srv, "algorithm malformed JSON", "PUT", "/config/algorithm", 400, field="body",
                   raw=b'{"algorithm": ')


def test_routes(srv):
    for path in ["/nope", "/backends/1/nope", "/config", "/", "/backends/1/health/x"]:
        expect_refused(srv, f"unknown route {path}", "GET", path, 404)
    hdrs, _ = expect_refused(srv, "wrong method on /backends", "PATCH", "/backends", 405)
    check(hdrs is not None and hdrs.get("Allow") == "GET, POST, HEAD",
          f"405 Allow header for /backends ({hdrs.get('Allow') if hdrs else None})")
    hdrs, _ = expect_refused(srv, "wrong method on /config/algorithm", "POST",
                             "/config/algorithm", 405)
    check(hdrs.get("Allow") == "GET, PUT, HEAD", f"Allow for /config/algorithm ({hdrs.get('Allow')})")
    hdrs, _ = expect_refused(srv, "wrong method on /metrics", "DELETE", "/metrics", 405)
    check(hdrs.get("Allow") == "GET, HEAD", f"Allow for /metrics ({hdrs.get('Allow')})")
    st, hdrs, text = srv.request("GET", "/metrics")
    check(st == 200 and hdrs.get("Content-Type", "").startswith("text/plain; version=0.0.4")
          and "lb_build_info" in text, f"GET /metrics -> 200 text format ({st})")
    st, _, _ = srv.request("GET", "/healthz")
    check(st == 200, "GET /healthz -> 200")


def test_pools_and_vips(srv):
    st, hdrs, p = srv.request("POST", "/pools", {"name": "web", "algorithm": "ALGORITHM_RANDOM"})
    check(st == 201 and p.get("name") == "web", f"POST /pools web -> 201 ({st} {p})")
    expect_refused(srv, "duplicate pool", "POST", "/pools", 409, body={"name": "web"})
    expect_refused(srv, "bad pool name", "POST", "/pools", 400, field="name",
                   body={"name": "no spaces"})
    st, _, wb = srv.request("POST", "/pools/web/backends", {"address": "10.0.1.1", "port": 80})
    check(st == 201 and wb.get("address") == "10.0.1.1", f"POST /pools/web/backends -> 201 ({wb})")
    st, _, lst = srv.request("GET", "/pools/web/backends")
    check(st == 200 and [x["backend"]["id"] for x in lst.get("backends", [])] == [wb["id"]],
          f"GET /pools/web/backends lists it ({lst})")
    st, _, dl = srv.request("GET", "/backends")
    check(wb["id"] not in [x["backend"]["id"] for x in dl.get("backends", [])],
          "GET /backends (default pool) does not list it")
    expect_refused(srv, "DELETE /backends/{web backend}", "DELETE", f"/backends/{wb['id']}", 404,
                   field="backend_id")
    expect_refused(srv, "list of an unknown pool", "GET", "/pools/nope/backends", 404)
    expect_refused(srv, "bad pool path segment", "GET", "/pools/a%20b/backends", 400, field="pool")
    expect_refused(srv, "add to an unknown pool", "POST", "/pools/nope/backends", 404,
                   body={"address": "10.0.1.2", "port": 80})
    st, _, a = srv.request("PUT", "/pools/web/algorithm", {"algorithm": "least_connections"})
    check(st == 200 and a.get("algorithm") == "least_connections",
          f"PUT /pools/web/algorithm -> 200 ({a})")

    st, hdrs, v = srv.request("POST", "/vips", {"address": "198.51.100.9", "port": 443,
                                                "protocol": "PROTOCOL_TCP", "pool": "web"})
    check(st == 201 and v.get("id", 0) > 0 and v.get("pool") == "web", f"POST /vips -> 201 ({v})")
    expect_refused(srv, "duplicate VIP", "POST", "/vips", 409,
                   body={"address": "198.51.100.9", "port": 443, "protocol": "PROTOCOL_TCP",
                         "pool": "web"})
    expect_refused(srv, "VIP with a bad protocol", "POST", "/vips", 400, field="protocol",
                   body={"address": "198.51.100.10", "port": 443, "protocol": "tcp",
                         "pool": "web"})
    expect_refused(srv, "VIP with an unknown field", "POST", "/vips", 400, field="proto",
                   body={"address": "198.51.100.10", "port": 443, "proto": 6})
    st, _, vs = srv.request("GET", f"/vips/{v['id']}")
    check(st == 200 and vs.get("vip", {}).get("id") == v["id"]
          and re.fullmatch(r"[0-9a-f]{16}", vs.get("fingerprint", "")),
          f"GET /vips/{v['id']} has a fingerprint ({vs})")
    expect_refused(srv, "DELETE a pool a VIP uses", "DELETE", "/pools/web", 412)
    expect_refused(srv, "GET unknown VIP", "GET", "/vips/999", 404)
    expect_refused(srv, "VIP path segment", "DELETE", "/vips/x", 400, field="vip_id")
    st, _, d = srv.request("DELETE", f"/vips/{v['id']}")
    check(st == 200 and d.get("id") == v["id"], f"DELETE /vips/{v['id']} -> 200 ({d})")
    expect_refused(srv, "DELETE the VIP again", "DELETE", f"/vips/{v['id']}", 404)
    st, _, d = srv.request("DELETE", f"/pools/web/backends/{wb['id']}")
    check(st == 200 and d.get("id") == wb["id"], f"DELETE /pools/web/backends/{wb['id']} -> 200")


def test_auth(binary, tmp):
    srv = Server(binary, tmp, "auth", token="s3cret-token")
    try:
        for hdrs, what in [({}, "no Authorization"),
                           ({"Authorization": "Bearer wrong"}, "wrong token"),
                           ({"Authorization": "Bearer s3cret-token-and-more"}, "longer token"),
                           ({"Authorization": "Basic czNjcmV0LXRva2Vu"}, "Basic scheme"),
                           ({"Authorization": "Bearer"}, "empty bearer")]:
            h, _ = expect_refused(srv, f"POST with {what}", "POST", "/backends", 401,
                                  field="authorization", headers=hdrs,
                                  body={"address": "10.0.0.1", "port": 80})
            check(h is not None and h.get("WWW-Authenticate", "").startswith("Bearer"),
                  f"401 carries WWW-Authenticate ({what})")
        expect_refused(srv, "PUT without token", "PUT", "/config/algorithm", 401,
                       body={"algorithm": "random"})
        expect_refused(srv, "DELETE without token", "DELETE", "/vips/1", 401)
        # Unauthenticated requests learn nothing about bodies or ids.
        expect_refused(srv, "bad body without token", "POST", "/backends", 401, raw=b"{")
        expect_refused(srv, "bad id without token", "DELETE", "/backends/abc", 401)
        st, _, _ = srv.request("GET", "/backends")
        check(st == 200, "GET needs no token")
        ok = {"Authorization": "Bearer s3cret-token"}
        st, _, b = srv.request("POST", "/backends", {"address": "10.0.0.1", "port": 80},
                               headers=ok)
        check(st == 201, f"POST with the token -> 201 ({st} {b})")
        st, _, _ = srv.request("DELETE", f"/backends/{b.get('id')}", headers=ok)
        check(st == 200, f"DELETE with the token -> 200 ({st})")
    finally:
        srv.stop()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="lb-rest-test-")
    srv = None
    started = time.time()
    try:
        srv = Server(binary, tmp, "main")
        test_routes(srv)
        test_backends(srv)
        test_algorithm(srv)
        test_pools_and_vips(srv)
        test_auth(binary, tmp)
        srv.stop()
        check(srv.proc.returncode == 0, f"lb-controlplane exits 0 on SIGTERM ({srv.proc.returncode})")
    except Exception as e:  # a crash of the test is a failure, not a skip
        import traceback
        traceback.print_exc()
        failures.append(f"exception: {e}")
        if srv is not None:
            try:
                srv.stderr.seek(0)
                print(srv.stderr.read())
            except ValueError:
                pass
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s) in {time.time() - started:.1f} s")
    for f in failures:
        print(f"  {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
