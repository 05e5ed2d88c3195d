#!/usr/bin/python3
"""A real Prometheus scrapes lb-l7's admin port (docs/L7.md "Metrics").

Usage: l7_prometheus_test.py LB_L7_BINARY
A Python HTTP backend, lb-l7 with one pool, Debian's `prometheus` with its
own config and TSDB in a temp dir on a free port (scrape_interval 1s).
Checks (each prints "ok <name>"): Prometheus scrapes the target (up == 1);
under traffic, histogram_quantile(0.99, rate(..._bucket[1m])) of
lb_l7_request_duration_seconds is a finite value within the buckets; after
the traffic, sum(lb_l7_request_duration_seconds_count) in Prometheus equals
the requests answered and the direct scrape's count. Everything started here
is stopped here (by PID); bounded at 90 s.
"""
import http.client
import http.server
import json
import math
import os
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l7_testlib as lib  # noqa: E402
from l7_testlib import check, fail, free_port  # noqa: E402

H = lib.Harness(sys.argv[1], "l7prom-", 90)
LB, WORK, DEADLINE = H.lb, H.work, H.deadline
start = H.start


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def wait(cond, what, timeout=20):
    end = min(time.time() + timeout, DEADLINE)
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    fail("timed out: " + what)


def scrape_count(admin):
    return lib.metric_sum(lib.scrape(admin, timeout=3), "lb_l7_request_duration_seconds_count", int)


def query(papi, expr):
    url = f"{papi}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        d = json.load(urllib.request.urlopen(url, timeout=3))
    except OSError:
        return None
    check(d.get("status") == "success", f"query {expr}: {d}")
    return [float(r["value"][1]) for r in d["data"]["result"]]


def main():
    be_port, lport, admin, prom_port = free_port(), free_port(), free_port(), free_port()
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", be_port), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    conf = H.write("lb.textproto", f"""
listeners {{ name: "main" address: "127.0.0.1" port: {lport} default_pool: "web" }}
pools {{ name: "web" backends {{ address: "127.0.0.1" port: {be_port} }} }}
""")
    lb, lb_log = H.start_lb("lb", conf, admin)
    wait(lambda: "lb-l7 ready" in open(lb_log).read() or lb.poll() is not None, "lb-l7 start")
    check(lb.poll() is None, "lb-l7 exited: " + open(lb_log).read())

    with open(os.path.join(WORK, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: lb-l7
    static_configs:
      - targets: ["127.0.0.1:{admin}"]
""")
    prom, prom_log = start("prometheus", [
        "prometheus", "--config.file=" + os.path.join(WORK, "prometheus.yml"),
        "--storage.tsdb.path=" + os.path.join(WORK, "tsdb"),
        f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h"])
    papi = f"http://127.0.0.1:{prom_port}"

    def ready():
        check(prom.poll() is None, "prometheus exited: " + open(prom_log).read()[-2000:])
        try:
            return urllib.request.urlopen(papi + "/-/ready", timeout=1).status == 200
        except OSError:
            return False

    wait(ready, "prometheus ready", timeout=30)
    wait(lambda: query(papi, 'up{job="lb-l7"} == 1'), "prometheus scraping lb-l7")
    print("ok prometheus_scrapes_lb_l7", flush=True)

    # Traffic across several scrapes, so that rate() has two samples apart.
    sent = 0
    stop = time.time() + 4
    conn = http.client.HTTPConnection("127.0.0.1", lport, timeout=5)
    while time.time() < stop:
        conn.request("GET", "/")
        r = conn.getresponse()
        check(r.status == 200 and r.read() == b"ok\n", f"GET / answered {r.status}")
        sent += 1
        time.sleep(0.01)
    conn.close()
    expr = "histogram_quantile(0.99, sum by (le) (rate(lb_l7_request_duration_seconds_bucket[1m])))"
    p99 = wait(lambda: [v for v in (query(papi, expr) or []) if not math.isnan(v)], expr)[0]
    check(0 < p99 <= 10, f"{expr} = {p99}")
    print(f"ok histogram_quantile p99 = {p99:.4f} s over {sent} requests", flush=True)

    direct = scrape_count(admin)
    check(direct == sent, f"direct scrape _count {direct}, requests answered {sent}")
    wait(lambda: query(papi, "sum(lb_l7_request_duration_seconds_count)") == [float(sent)],
         f"prometheus sum(_count) == {sent}")
    print(f"ok prometheus_count {sent}", flush=True)
    backend.shutdown()


if __name__ == "__main__":
    try:
        main()
    finally:
        H.cleanup()
