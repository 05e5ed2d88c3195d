#!/usr/bin/env bash
# What lb-l7 and HAProxy 2.6 each do per request on the h1_small case of
# perf/l7_bench.sh (the same wrk -t1 -c50 keep-alive load of 100-byte
# answers from one nginx backend; proxy on CPU 0, wrk and backend on CPU 1),
# counted rather than timed, so that the load of the shared machine moves
# the numbers little:
#   - at full speed with nothing attached, from /proc: the proxy's user and
#     system time per request (utime/stime: the kernel splits the exact run
#     time by tick samples, so the split is good to a few percent), its
#     blocks per request (voluntary context switches of all its threads),
#     the wake-up IPIs CPU 0 took per request (function-call and
#     rescheduling interrupts: waking a sleeping proxy on an idle CPU costs
#     one) and CPU 1's busy time per request (wrk and the backend);
#   - at full speed, kernel tracepoints on the proxy (perf stat): syscalls,
#     epoll_wait calls and context switches per request;
#   - which syscalls: `strace -c -f` attached after a warm-up (strace slows
#     the proxy, so its event batches are larger than at full speed);
#   - user-space instructions per request: the proxy under callgrind,
#     counters zeroed after a warm-up and dumped after the measured load
#     (callgrind_control). This machine's guest has no hardware counters, so
#     `perf stat -e instructions:u` is not available.
# Requests per measurement are what wrk counted.
#
#   perf/l7_cost.sh path/to/lb-l7 [seconds per measurement (default 5)]
#
# KEEP_CALLGRIND=prefix keeps the callgrind profiles as prefix.lb-l7 and
# prefix.haproxy (for callgrind_annotate). Output, per proxy:
#   l7_cost case=h1_small proxy=lb-l7 proc requests=N user_us_per_req=N sys_us_per_req=N blocks_per_req=N cpu0_ipis_per_req=N cpu1_busy_us_per_req=N
#   l7_cost case=h1_small proxy=lb-l7 at_speed requests=N syscalls_per_req=N epoll_wait_per_req=N ctx_switches_per_req=N
#   l7_cost case=h1_small proxy=lb-l7 strace requests=N syscalls_per_req=N read=N ...
#   l7_cost case=h1_small proxy=lb-l7 callgrind requests=N user_instr_per_req=N
# Loopback only; everything it starts is stopped and its temp dir removed.
set -euo pipefail
LB=$(readlink -f "$1")
SECS=${2:-5}
# shellcheck source=perf/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_setup l7_cost wrk perf nginx haproxy strace valgrind callgrind_control curl python3
ulimit -n 65536 2>/dev/null || true

BE=18491 LBP=18490 HAP=18492
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

# HAProxy in the foreground (-db): strace and valgrind see the process
# itself, not a daemon's parent. Otherwise the settings of perf/l7_bench.sh.
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

# start NAME [wrapper...]: the proxy on CPU 0 in the background; sets PID
# and PORT.
start() {
  local name=$1
  shift
  case $name in
    lb-l7)
      taskset -c 0 "$@" "$LB" --config "$WORK/l7.textproto" --workers 1 > "$WORK/proxy.log" 2>&1 &
      PORT=$LBP
      ;;
    haproxy)
      taskset -c 0 "$@" haproxy -db -f "$WORK/ha.cfg" > "$WORK/proxy.log" 2>&1 &
      PORT=$HAP
      ;;
  esac
  PID=$!
  PIDS+=("$PID")
  bench_wait_answer "l7_cost: $name" "http://127.0.0.1:$PORT/small" 100
}
# load SECONDS: sets REQS to the answers wrk counted.
load() {
  local out
  out=$(taskset -c 1 wrk -t1 -c50 -d"$1s" "http://127.0.0.1:$PORT/small")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "l7_cost: wrk: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2
    exit 1
  fi
  REQS=$(awk '/requests in/ {print $1}' <<<"$out")
}

# proc_snapshot: "utime stime blocks cpu0_ipis cpu1_busy" (ticks, counts).
proc_snapshot() {
  echo "$(awk '{print $14, $15}' "/proc/$PID/stat")" \
    "$(cat /proc/"$PID"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}')" \
    "$(awk '$1 == "CAL:" || $1 == "RES:" {s += $2} END {print s}' /proc/interrupts)" \
    "$(awk '$1 == "cpu1" {print $2 + $3 + $4 + $7 + $8}' /proc/stat)"
}
PROC_PY='
import sys
name, n, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
a, b = [float(x) for x in sys.argv[4].split()], [float(x) for x in sys.argv[5].split()]
d = [y - x for x, y in zip(a, b)]
us = 1e6 / hz / n
print("l7_cost case=h1_small proxy=%s proc requests=%d user_us_per_req=%.2f sys_us_per_req=%.2f "
      "blocks_per_req=%.3f cpu0_ipis_per_req=%.3f cpu1_busy_us_per_req=%.2f" % (
          name, n, d[0] * us, d[1] * us, d[2] / n, d[3] / n, d[4] * us))
'
HZ=$(getconf CLK_TCK)
PSTAT_PY='
import sys
name, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
v = {}
for line in open(path):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        v[f[2]] = float(f[0])
print("l7_cost case=h1_small proxy=%s at_speed requests=%d syscalls_per_req=%.3f "
      "epoll_wait_per_req=%.3f ctx_switches_per_req=%.3f" % (
          name, n, v["raw_syscalls:sys_enter"] / n, v["syscalls:sys_enter_epoll_wait"] / n,
          v["context-switches"] / n))
'
STRACE_PY='
import sys
name, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
calls = {}
for line in open(path):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
total = sum(calls.values())
detail = " ".join("%s=%.3f" % (k, c / n) for k, c in sorted(calls.items(), key=lambda kv: -kv[1])
                  if c / n >= 0.001)
print("l7_cost case=h1_small proxy=%s strace requests=%d syscalls_per_req=%.3f %s" % (
    name, n, total / n, detail))
'

for name in lb-l7 haproxy; do
  start "$name"
  load 1  # warm: upstream connections pooled
  before=$(proc_snapshot)
  load "$SECS"
  python3 -c "$PROC_PY" "$name" "$REQS" "$HZ" "$before" "$(proc_snapshot)"

  perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,context-switches \
    -p "$PID" -o "$WORK/pstat.txt" &
  SPID=$!
  sleep 0.3
  load "$SECS"
  kill -INT "$SPID"
  wait "$SPID" 2>/dev/null || true
  python3 -c "$PSTAT_PY" "$name" "$REQS" "$WORK/pstat.txt"

  strace -c -f -q -p "$PID" -o "$WORK/strace.txt" &
  SPID=$!
  sleep 1
  load "$SECS"
  kill -INT "$SPID"
  wait "$SPID" 2>/dev/null || true
  bench_stop
  python3 -c "$STRACE_PY" "$name" "$REQS" "$WORK/strace.txt"

  start "$name" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" -q
  load 2
  callgrind_control -z "$PID" > /dev/null
  load "$SECS"
  callgrind_control -d "$PID" > /dev/null
  bench_stop
  ir=$(awk '/^summary:/ {print $2}' "$WORK/cg.$PID.1")
  echo "l7_cost case=h1_small proxy=$name callgrind requests=$REQS" \
    "user_instr_per_req=$((ir / REQS))"
  if [[ -n ${KEEP_CALLGRIND:-} ]]; then cp "$WORK/cg.$PID.1" "$KEEP_CALLGRIND.$name"; fi
  rm -f "$WORK"/cg.*
done
