"""What the lb-l7 binary tests in tests/l7/ share: free ports, fail/check,
nginx backends from a generated config in a temp dir, lb-l7 started with a
config and waited for, /metrics scraped, and everything stopped by PID and
the temp dir removed at the end (Harness.cleanup).

Imported from the test's own directory:
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import l7_testlib as lib
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    """A port free now and below the kernel's ephemeral range: a port the
    kernel handed out for bind(0) is also the local port it gives outgoing
    connections, so a client of a test running beside this one could take
    it before our server binds it (seen: Prometheus "bind: address already
    in use" in a CI run)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(200):
        p = random.randint(max(1024, low - 12000), low - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        return p
    raise RuntimeError(f"no free port below {low}")


def fail(msg):
    print("FAIL:", msg, flush=True)
    raise SystemExit(1)


def check(cond, msg, deadline=None):
    """Fails with `msg` unless `cond`; with a deadline, also once it has passed."""
    if not cond:
        fail(msg)
    if deadline is not None and time.time() > deadline:
        fail("test deadline passed")


def run(args, inp=None, timeout=10):
    return subprocess.run(args, input=inp, capture_output=True, timeout=timeout, text=True)


def wait_port(port, timeout):
    """True once 127.0.0.1:port accepts a connection, False after `timeout` s."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_ready(p, log, timeout):
    """True once lb-l7 logged "lb-l7 ready" in `log`, False when it exited or
    after `timeout` s."""
    end = time.time() + timeout
    while time.time() < end:
        if "lb-l7 ready" in open(log).read():
            return True
        if p.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def scrape(admin, timeout=5):
    """The text of lb-l7's /metrics on admin port `admin`."""
    return urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics",
                                  timeout=timeout).read().decode()


def metric(text, metric_name, **labels):
    """The value of the one series `metric_name{labels}` (exactly those
    labels; a label may be called name), or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = metric_name + ("{" + want + "}" if want else "")
    m = re.search(r"^" + re.escape(key) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def metric_sum(text, name, conv=float):
    """The sum over the series of `name` (any labels); `name` may itself end
    in a label set, which is then matched as given."""
    total = 0
    for line in text.splitlines():
        if line.startswith(name) and (name.endswith("}") or line[len(name):len(name) + 1] in (" ", "{")):
            total += conv(line.rsplit(" ", 1)[1])
    return total


def nginx_conf(d, http, worker_connections=1024):
    """An nginx.conf for one master with prefix `d`: `http` is what goes in
    its http {} block after the temp paths (access_log, servers ...)."""
    return f"""
daemon on;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
  client_body_temp_path {d}/tmp_body;
  proxy_temp_path {d}/tmp_proxy;
  fastcgi_temp_path {d}/tmp_fastcgi;
  uwsgi_temp_path {d}/tmp_uwsgi;
  scgi_temp_path {d}/tmp_scgi;
{http}
}}
"""


def nginx_pid(d):
    try:
        return int(open(d + "/nginx.pid").read())
    except (OSError, ValueError):
        return None


def kill_nginx(d):
    """Abruptly, as a crash would: the master is stopped first so that it
    cannot respawn the worker we kill (which would then be orphaned), then
    the worker (by its parent, i.e. only ours), then the master."""
    pid = nginx_pid(d)
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.remove(d + "/nginx.pid")
    except OSError:
        pass


def quit_nginx(d):
    """Gracefully: the master stops its own workers (SIGKILL after 5 s)."""
    pid = nginx_pid(d)
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    for _ in range(50):
        if not os.path.exists(d + "/nginx.pid"):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


class Harness:
    """One test's temp dir, the processes and nginx it started, its deadline."""

    def __init__(self, lb, prefix, seconds):
        self.lb = os.path.abspath(lb)
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.nginx = []  # (dir, stop function)
        self.deadline = time.time() + seconds

    def path(self, name):
        return os.path.join(self.work, name)

    def start_nginx(self, d, http, worker_connections=1024, stop=kill_nginx):
        """Writes nginx.conf (see nginx_conf) into `d` (made if missing) and
        starts nginx; `stop` (kill_nginx or quit_nginx) ends it at cleanup."""
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_conf(d, http, worker_connections))
        subprocess.run(["nginx", "-p", d, "-c", d + "/nginx.conf", "-e", d + "/error.log"],
                       check=True)
        self.nginx.append((d, stop))
        return d

    def start(self, name, argv):
        """Starts `argv` with its output in <work>/<name>.log: (Popen, log path)."""
        log = open(self.path(name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p, log.name

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def start_lb(self, name, conf, admin, workers=2, extra=()):
        """lb-l7 with config file `conf` and its output in <work>/<name>.log."""
        return self.start(name, [self.lb, "--config", conf, "--workers", str(workers),
                                 "--admin_port", str(admin), *extra])

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for d, stop in self.nginx:
            stop(d)
        shutil.rmtree(self.work, ignore_errors=True)
