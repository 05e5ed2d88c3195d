#!/usr/bin/env bash
# Kernel-side counts per request of lb-l7 and HAProxy 2.6 on the h1_small
# load of perf/l7_bench.sh (wrk -t1 -c50 keep-alive, 100-byte answers from
# one nginx backend; proxy on CPU 0, wrk and the backend on CPU 1), in a
# network namespace of its own (unshare -n) so that the TCP counters
# (nstat) see only this benchmark's loopback traffic:
#   - TCP segments in/out, pure ACKs, delayed ACKs, autocorked sends
#     (nstat deltas over the measured load);
#   - on the proxy (perf stat on tracepoints, at full speed): syscalls,
#     epoll_wait calls, context switches, wake-ups it makes (sched_waking),
#     IPIs it sends, softirqs run in its context;
#   - the proxy's user and system CPU time per request (/proc ticks).
# The proxies run in turn, ROUNDS times (default 2: lb-l7, HAProxy, HAProxy,
# lb-l7, ...), so that both see the same machine. LB2=path/to/other/lb-l7
# adds a second lb-l7 binary (proxy=lb-l7-b) to each round, for an A/B.
#
#   perf/l7_kern.sh path/to/lb-l7 [seconds per measurement (default 4)]
#
# Output, one line per proxy and round:
#   l7_kern case=h1_small proxy=lb-l7 round=1 requests=N user_us=N sys_us=N
#     segs_out=N pure_acks=N delayed_acks=N autocork=N syscalls=N epoll_wait=N
#     ctx_switches=N wakeups=N ipis=N softirqs=N        (all per request)
# Needs root (unshare -n). Everything it starts is stopped, its temp dir
# removed; the namespace goes away with the script.
set -euo pipefail
if [[ -z ${L7_KERN_IN_NETNS:-} ]]; then
  L7_KERN_IN_NETNS=1 exec unshare -n "$0" "$@"
fi
ip link set lo up
LB=$(readlink -f "$1")
SECS=${2:-4}
ROUNDS=${ROUNDS:-2}
# shellcheck source=perf/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_setup l7_kern wrk perf nginx haproxy nstat curl python3
ulimit -n 65536 2>/dev/null || true

BE=18591 LBP=18590 HAP=18592
mkdir -p "$WORK/be/html"
head -c 100 /dev/zero | tr '\0' 'a' > "$WORK/be/html/small"
cat > "$WORK/be.conf" <<EOF
daemon on; user root; worker_processes 1; worker_cpu_affinity 10; pid $WORK/be.pid;
error_log $WORK/be.err warn; events { worker_connections 4096; }
http { client_body_temp_path $WORK/tmp_body; proxy_temp_path $WORK/tmp_proxy;
  fastcgi_temp_path $WORK/tmp_fcgi; uwsgi_temp_path $WORK/tmp_uwsgi; scgi_temp_path $WORK/tmp_scgi;
  access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BE; root $WORK/be/html; } }
EOF
nginx -p "$WORK" -c "$WORK/be.conf" -e "$WORK/be.err"
# The settings of perf/l7_bench.sh and perf/l7_cost.sh.
cat > "$WORK/ha.cfg" <<EOF
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:$HAP
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$BE
EOF
cat > "$WORK/l7.textproto" <<EOF
listeners { name: "bench" address: "127.0.0.1" port: $LBP default_pool: "be" }
pools { name: "be" backends { address: "127.0.0.1" port: $BE } max_idle_per_backend: 256 }
EOF

REPORT_PY='
import sys
name, rnd, n, ticks, nstat, pstat = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
u0, s0, u1, s1 = map(int, ticks.split())
hz = 100.0
tcp = {}
for line in open(nstat):
    f = line.split()
    if len(f) >= 2 and f[1].isdigit():
        tcp[f[0]] = int(f[1])
ev = {}
for line in open(pstat):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        ev[f[2]] = float(f[0])
print("l7_kern case=h1_small proxy=%s round=%s requests=%d user_us=%.2f sys_us=%.2f "
      "segs_out=%.3f pure_acks=%.3f delayed_acks=%.3f autocork=%.3f syscalls=%.3f "
      "epoll_wait=%.3f ctx_switches=%.3f wakeups=%.3f ipis=%.3f softirqs=%.3f" % (
          name, rnd, n, (u1 - u0) / hz * 1e6 / n, (s1 - s0) / hz * 1e6 / n,
          tcp.get("TcpOutSegs", 0) / n, tcp.get("TcpExtTCPPureAcks", 0) / n,
          tcp.get("TcpExtDelayedACKs", 0) / n, tcp.get("TcpExtTCPAutoCorking", 0) / n,
          ev["raw_syscalls:sys_enter"] / n, ev["syscalls:sys_enter_epoll_wait"] / n,
          ev["context-switches"] / n, ev["sched:sched_waking"] / n, ev["ipi:ipi_send_cpu"] / n,
          ev["irq:softirq_entry"] / n))
'

# measure NAME ROUND BINARY
measure() {
  local name=$1 rnd=$2 bin=$3 port out reqs t0 t1 spid
  case $name in
    haproxy)
      taskset -c 0 haproxy -db -f "$WORK/ha.cfg" > "$WORK/proxy.log" 2>&1 &
      port=$HAP
      ;;
    *)
      taskset -c 0 "$bin" --config "$WORK/l7.textproto" --workers 1 > "$WORK/proxy.log" 2>&1 &
      port=$LBP
      ;;
  esac
  PID=$!
  PIDS+=("$PID")
  bench_wait_answer "l7_kern: $name" "http://127.0.0.1:$port/small" 100
  taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$port/small" > /dev/null  # warm: pool filled
  nstat -n
  t0=$(awk '{print $14, $15}' "/proc/$PID/stat")
  perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,context-switches \
    -e sched:sched_waking,ipi:ipi_send_cpu,irq:softirq_entry -p "$PID" -o "$WORK/pstat.txt" &
  spid=$!
  sleep 0.2
  out=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$port/small")
  kill -INT "$spid"
  wait "$spid" 2>/dev/null || true
  t1=$(awk '{print $14, $15}' "/proc/$PID/stat")
  nstat -z > "$WORK/nstat.txt"
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "l7_kern: wrk: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2
    exit 1
  fi
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  bench_stop
  python3 -c "$REPORT_PY" "$name" "$rnd" "$reqs" "$t0 $t1" "$WORK/nstat.txt" "$WORK/pstat.txt"
}

for rnd in $(seq "$ROUNDS"); do
  order=(lb-l7 haproxy)
  if [[ -n ${LB2:-} ]]; then order=(lb-l7 lb-l7-b haproxy); fi
  if ((rnd % 2 == 0)); then
    rev=()
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[i]}"); done
    order=("${rev[@]}")
  fi
  for name in "${order[@]}"; do
    case $name in
      lb-l7-b) measure "$name" "$rnd" "$(readlink -f "$LB2")" ;;
      *) measure "$name" "$rnd" "$LB" ;;
    esac
  done
done
