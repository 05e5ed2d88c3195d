#!/usr/bin/python3
"""The classic REST API through the real lb-controlplane binary (urllib only).

Starts lb-controlplane as a new user would: nothing but an EMPTY state
directory (no --config, no node settings), with its table and stats regions
in a temporary directory and the HTTP listener on an ephemeral loopback port.
Then drives every route and every status code the API promises: 201, 200,
400 (bad address, port, weight, JSON, types, unknown fields), 401 (bearer
token), 404 (unknown ids of any shape), 405 (with Allow), 409, 412 and 413.
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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

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

    def __init__(self, binary, tmp, name, token=None, extra_args=()):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.state_file = os.path.join(self.dir, "state", "state.binpb")
        args = [binary, f"--state_dir={self.dir}/state",
                f"--table_region={self.dir}/tables", f"--stats_region={self.dir}/stats",
                "--max_vips=8", "--max_backends=64",
                "--max_members=256", "--http_listen=127.0.0.1:0", "--grpc_listen="]
        if token is not None:
            token_file = os.path.join(self.dir, "token")
            with open(token_file, "w") as f:
                f.write(token + "\n")
            args.append(f"--auth_token_file={token_file}")
        args += list(extra_args)  # later flags override earlier ones
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
        try:
            with open(self.state_file, "rb") as f:
                stored = f.read()
        except FileNotFoundError:  # an empty store writes nothing until a change
            stored = None
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


def test_empty_store(srv):
    """A new user's first calls: nothing stored, nothing configured, and the
    documented POST /backends works (it used to answer 400
    node.tunnel_source_ipv4: required)."""
    check(not os.path.exists(srv.state_file), "an empty store writes nothing before a change")
    st, _, lst = srv.request("GET", "/backends")
    check(st == 200 and lst == {"backends": []}, f"GET /backends on an empty store ({st} {lst})")
    st, _, node = srv.request("GET", "/config/node")
    check(st == 200 and node.get("tunnel_source_ipv4") == "", f"GET /config/node ({st} {node})")
    st, _, b = srv.request("POST", "/backends", {"address": "10.1.0.10", "port": 80})
    check(st == 201 and b.get("id") == 1 and b.get("status") == "unknown",
          f"the README's POST /backends on an empty store -> 201 ({st} {b})")
    check(os.path.exists(srv.state_file), "the first change is stored")
    # The tunnel source is settable through the API; refused values name the field.
    st, _, node = srv.request("PUT", "/config/node", {"tunnel_source_ipv4": "192.0.2.1",
                                                      "tunnel_source_ipv6": "2001:DB8:ffff::1"})
    check(st == 200 and node == {"tunnel_source_ipv4": "192.0.2.1",
                                 "tunnel_source_ipv6": "2001:db8:ffff::1",
                                 "tunnel_source_ipv4_prefix": "",
                                 "tunnel_source_ipv6_prefix": ""},
          f"PUT /config/node -> 200, canonical ({st} {node})")
    for bad in ["224.0.0.1", "127.0.0.1", "2001:db8::1", "1.2.3.4\u0000"]:
        expect_refused(srv, f"tunnel source {bad!r}", "PUT", "/config/node", 400,
                       field="node.tunnel_source_ipv4", body={"tunnel_source_ipv4": bad})
    st, _, d = srv.request("DELETE", f"/backends/{b.get('id')}")
    check(st == 200, f"DELETE the first backend ({st} {d})")
    check(wait_gone(srv, b.get("id")), "the first backend leaves")
    # A pool beyond the tables' capacity is refused before any work: 413.
    many = [{"address": f"10.2.{i // 250}.{i % 250 + 1}", "port": 80} for i in range(200)]
    _, resp = expect_refused(srv, "a pool of 200 backends with room for 63", "POST", "/pools",
                             413, field="pool.backends", body={"name": "many", "backends": many})
    huge = [{"address": f"10.{3 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}", "port": 80}
            for i in range(100000)]
    expect_refused(srv, "a 100k-backend pool (over the body limit)", "POST", "/pools", 413,
                   body={"name": "huge", "backends": huge})


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
    listed = lst.get("backends", [])
    ids = sorted(x.get("id") for x in listed)
    check(st == 200 and ids == sorted([first_id, b6["id"], same_addr["id"]]),
          f"GET /backends lists the three ({ids})")
    # The list's elements have exactly the shape POST answers with.
    check(all(set(x) == set(b) for x in listed) and b in listed and b6 in listed,
          f"GET /backends elements are what POST /backends returned ({listed} vs {b})")
    st, _, one = srv.request("GET", f"/backends/{first_id}")
    check(st == 200 and one.get("backend", {}).get("address") == "10.0.0.1",
          f"GET /backends/{first_id} -> 200 ({st})")

    # 409
    expect_refused(srv, "duplicate address:port", "POST", "/backends", 409,
                   body={"address": "10.0.0.1", "port": 8080})
    expect_refused(srv, "duplicate IPv6 spelled differently", "POST", "/backends", 409,
                   body={"address": "2001:DB8:0::7", "port": 443})
    # A DSR pool holds one backend per address, and the 409 says why.
    _, resp = expect_refused(srv, "same address, other port", "POST", "/backends", 409,
                             body={"address": "10.0.0.1", "port": 8081})
    check(isinstance(resp, dict) and "keep the VIP's destination port" in resp.get("error", ""),
          f"the DSR 409 says why ({resp})")

    # 400: address, port, weight, path
    for addr in ["10.0.0.300", "not-an-ip", "", "10.0.0.1/24", "::", "10.9.0.1\u0000x",
                 "224.0.0.1", "239.255.255.250", "255.255.255.255", "127.0.0.1", "169.254.9.9",
                 "::1", "fe80::1", "ff02::1"]:
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

    # Unknown ids answer 404 whatever their shape.
    for seg in ["abc", "0", "-1", "99999999999", "1.5", "%31x", "a" * 5000]:
        _, resp = expect_refused(srv, f"path segment {seg[:20]!r}", "DELETE", f"/backends/{seg}",
                                 404, field="backend_id")
        check(isinstance(resp, dict) and len(resp.get("error", "")) < 200,
              f"the 404 quotes a bounded prefix of the segment ({len(str(resp))} bytes)")
    for seg in ["abc", "0", "99999999999"]:
        expect_refused(srv, f"health path segment {seg!r}", "GET", f"/backends/{seg}/health", 404,
                       field="backend_id")
        expect_refused(srv, f"GET path segment {seg!r}", "GET", f"/backends/{seg}", 404,
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
    check(st == 200 and lst.get("backends") == [wb], f"GET /pools/web/backends lists it ({lst})")
    st, _, dl = srv.request("GET", "/backends")
    check(wb["id"] not in [x["id"] for x in dl.get("backends", [])],
          "GET /backends (default pool) does not list it")
    expect_refused(srv, "DELETE /backends/{web backend}", "DELETE", f"/backends/{wb['id']}", 404,
                   field="backend_id")
    expect_refused(srv, "list of an unknown pool", "GET", "/pools/nope/backends", 404)
    expect_refused(srv, "bad pool path segment", "GET", "/pools/a%20b/backends", 404, field="pool")
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
    expect_refused(srv, "VIP path segment", "DELETE", "/vips/x", 404, field="vip_id")
    st, _, d = srv.request("DELETE", f"/vips/{v['id']}")
    check(st == 200 and d.get("id") == v["id"], f"DELETE /vips/{v['id']} -> 200 ({d})")
    expect_refused(srv, "DELETE the VIP again", "DELETE", f"/vips/{v['id']}", 404)
    st, _, d = srv.request("DELETE", f"/pools/web/backends/{wb['id']}")
    check(st == 200 and d.get("id") == wb["id"], f"DELETE /pools/web/backends/{wb['id']} -> 200")
    # Removal finishes after the answer (drain, then the slot is freed): wait,
    # so that the next test's before/after snapshots do not straddle it.
    check(wait_gone(srv, wb["id"]), f"backend {wb['id']} gone after DELETE")


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


def raw_http(srv, request_bytes, source=None, timeout=5.0):
    """Sends raw bytes on a fresh connection; returns the response's status (0: none)."""
    host, port = srv.base[len("http://"):].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source is not None:
            s.bind((source, 0))
        s.connect((host, int(port)))
        if request_bytes:
            s.sendall(request_bytes)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0
    finally:
        s.close()


def test_browser_attacks(srv):
    """Loopback is no trust boundary: a web page's simple requests and DNS
    rebinding are refused, and nothing changes (rest_guard.h)."""
    port = srv.base.rsplit(":", 1)[1]
    attack = {"address": "10.66.0.1", "port": 80}
    # A web page's form/fetch without preflight: text/plain (or a form type), its Origin.
    expect_refused(srv, "browser simple POST (text/plain, foreign Origin)", "POST", "/backends",
                   403, field="origin", body=attack,
                   headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
    expect_refused(srv, "browser simple POST without Origin", "POST", "/backends", 415,
                   field="content-type", body=attack, headers={"Content-Type": "text/plain"})
    expect_refused(srv, "form POST", "POST", "/backends", 415, field="content-type", body=attack,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect_refused(srv, "Origin: null", "PUT", "/config/algorithm", 403, field="origin",
                   body={"algorithm": "random"}, headers={"Origin": "null"})
    expect_refused(srv, "cross-site fetch", "DELETE", "/vips/1", 403, field="sec-fetch-site",
                   headers={"Sec-Fetch-Site": "cross-site"})
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its own name.
    expect_refused(srv, "DNS rebinding POST", "POST", "/backends", 421, field="host", body=attack,
                   headers={"Host": f"evil.example:{port}"})
    expect_refused(srv, "DNS rebinding read", "GET", "/backends", 421, field="host",
                   headers={"Host": f"evil.example:{port}"})
    check(raw_http(srv, b"GET /backends HTTP/1.0\r\n\r\n") == 200,
          "HTTP/1.0 without Host on a loopback listener -> 200")
    # curl-like clients (no Origin, JSON) keep working, by address or as localhost.
    st, _, b = srv.request("POST", "/backends", attack, headers={"Host": f"localhost:{port}"})
    check(st == 201, f"JSON POST as curl sends it (Host localhost) -> 201 ({st} {b})")
    st, _, d = srv.request("DELETE", f"/backends/{b.get('id') if isinstance(b, dict) else 0}")
    check(st == 200, f"and DELETE it -> 200 ({st} {d})")
    st, _, _ = srv.request("GET", "/metrics", headers={"Origin": srv.base})
    check(st == 200, "same-origin Origin -> 200")


def test_off_loopback(binary, tmp):
    """Off loopback every request but GET /healthz needs the token, reads
    included; --http_allowed_hosts and --http_max_connections_per_client."""
    srv = Server(binary, tmp, "wildcard", token="s3cret-token",
                 extra_args=["--http_listen=0.0.0.0:0", "--http_allowed_hosts=lb.test",
                             "--http_max_connections_per_client=4"])
    try:
        srv.base = srv.base.replace("0.0.0.0", "127.0.0.1")
        port = srv.base.rsplit(":", 1)[1]
        ok = {"Authorization": "Bearer s3cret-token"}
        for path in ["/backends", "/metrics", "/vips", "/pools", "/config/algorithm"]:
            st, hdrs, body = srv.request("GET", path)
            check(st == 401 and hdrs.get("WWW-Authenticate", "").startswith("Bearer")
                  and isinstance(body, dict) and body.get("field") == "authorization",
                  f"off loopback: GET {path} without a token -> 401 ({st} {body})")
            st, _, _ = srv.request("GET", path, headers=ok)
            check(st == 200, f"off loopback: GET {path} with the token -> 200 ({st})")
        st, _, _ = srv.request("GET", "/healthz")
        check(st == 200, f"off loopback: GET /healthz needs no token ({st})")
        st, _, _ = srv.request("GET", "/backends", headers={**ok, "Host": f"lb.test:{port}"})
        check(st == 200, f"--http_allowed_hosts name in Host -> 200 ({st})")
        st, _, _ = srv.request("GET", "/backends", headers={**ok, "Host": f"evil.example:{port}"})
        check(st == 421, f"off loopback: foreign Host -> 421 even with the token ({st})")
        check(raw_http(srv, b"GET /healthz HTTP/1.0\r\n\r\n") == 400,
              "HTTP/1.0 without Host off loopback -> 400")
        # Four silent sockets from one address: the fifth from it gets 503,
        # another address is served.
        silent = []
        try:
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", int(port)), source_address=("127.0.0.7", 0))
                silent.append(s)
            time.sleep(0.2)
            check(raw_http(srv, b"", source="127.0.0.7") == 503,
                  "over --http_max_connections_per_client -> 503")
            check(raw_http(srv, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(),
                           source="127.0.0.8") == 200, "another client address is served")
        finally:
            for s in silent:
                s.close()
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
        test_empty_store(srv)
        test_routes(srv)
        test_backends(srv)
        test_algorithm(srv)
        test_pools_and_vips(srv)
        test_auth(binary, tmp)
        test_browser_attacks(srv)
        test_off_loopback(binary, tmp)
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
