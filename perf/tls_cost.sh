#!/usr/bin/env bash
# What lb-l7 and HAProxy 2.6 each do per TLS handshake and per HTTPS
# request on the cases of perf/tls_bench.sh (same certificates, same cipher
# and suite lists, same clients: openssl s_time -new for full handshakes,
# s_time -tls1_2 -reuse for resumed ones, wrk -t1 -c50 for 100-byte answers
# over keep-alive TLS; proxy on CPU 0, client and nginx backend on CPU 1),
# counted rather than timed so that the load of the shared machine moves the
# numbers little:
#   - at full speed, kernel tracepoints on the proxy (perf stat): syscalls,
#     epoll_wait calls and context switches per operation (these follow how
#     many events each epoll_wait returns, so the load moves them);
#   - which syscalls: `strace -c -f` attached after a warm-up (strace slows
#     the proxy, so its event batches are larger than at full speed);
#   - user-space instructions (proxy code, libssl and libcrypto included):
#     the proxy under callgrind, counters zeroed after a warm-up and dumped
#     after the measured load (callgrind_control). This guest has no
#     hardware counters.
# Operations: for the handshake cases, the connections the proxy accepted
# (SSL_new calls seen by callgrind; strace: what s_time counted); for
# https_keepalive, the requests wrk counted, with the instructions of the
# handshakes of wrk's 50 new connections (SSL_do_handshake, inclusive)
# taken out.
#
#   perf/tls_cost.sh path/to/lb-l7 [seconds per measurement (default 4)]
#
# CASES="full_ecdsa https_keepalive" runs only those (default: full_ecdsa
# full_rsa resumed https_keepalive). KEEP_CALLGRIND=prefix keeps the profiles
# as prefix.CASE.lb-l7 and prefix.CASE.haproxy (for callgrind_annotate).
# Output, per case and proxy:
#   tls_cost case=full_ecdsa proxy=lb-l7 at_speed ops=N syscalls_per_op=N epoll_wait_per_op=N ctx_switches_per_op=N
#   tls_cost case=full_ecdsa proxy=lb-l7 strace ops=N syscalls_per_op=N read=N ...
#   tls_cost case=full_ecdsa proxy=lb-l7 callgrind ops=N user_instr_per_op=N
# then per case: tls_cost_vs_haproxy case=full_ecdsa instr_ratio=N syscall_ratio=N
# (lb-l7 / HAProxy; below 1 is cheaper).
# Loopback only; everything it starts is stopped and its temp dir removed.
set -euo pipefail
LB=$(readlink -f "$1")
SECS=${2:-4}
# shellcheck source=perf/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_setup tls_cost wrk perf nginx haproxy openssl strace valgrind callgrind_control curl python3
ulimit -n 65536 2>/dev/null || true

BE=18681 LB_E=18670 LB_R=18671 HA_E=18672 HA_R=18673

cd "$WORK"
bench_tls_certs
bench_tls_backend $BE

# The settings of perf/tls_bench.sh (lb-l7's connect timeout and ejection
# raised: under callgrind 50 queued handshakes stall the loop for seconds); HAProxy in the foreground (-db) so that
# strace and valgrind see the process itself.
CIPHERS=$TLS_CIPHERS SUITES=$TLS_SUITES
cat > ha.cfg <<EOF
global
  nbthread 1
  ssl-default-bind-ciphers $CIPHERS
  ssl-default-bind-ciphersuites $SUITES
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$HA_E ssl crt $WORK/ecdsa.pem alpn http/1.1
  bind 127.0.0.1:$HA_R ssl crt $WORK/rsa.pem alpn http/1.1
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$BE
EOF
cat > l7.textproto <<EOF
listeners { name: "ecdsa" address: "127.0.0.1" port: $LB_E default_pool: "be"
  tls { certificates { cert_file: "$WORK/ecdsa.crt" key_file: "$WORK/ecdsa.key" } } }
listeners { name: "rsa" address: "127.0.0.1" port: $LB_R default_pool: "be"
  tls { certificates { cert_file: "$WORK/rsa.crt" key_file: "$WORK/rsa.key" } } }
pools { name: "be" backends { address: "127.0.0.1" port: $BE } max_idle_per_backend: 64
  eject_after_failures: 1000 }
timeouts { upstream_connect_ms: 30000 }
EOF

# start NAME [wrapper...]: the proxy on CPU 0 in the background; sets PID.
start() {
  local name=$1 port
  shift
  case $name in
    lb-l7)
      taskset -c 0 "$@" "$LB" --config "$WORK/l7.textproto" --workers 1 > "$WORK/proxy.log" 2>&1 &
      port=$LB_E
      ;;
    haproxy)
      taskset -c 0 "$@" haproxy -db -f "$WORK/ha.cfg" > "$WORK/proxy.log" 2>&1 &
      port=$HA_E
      ;;
  esac
  PID=$!
  PIDS+=("$PID")
  bench_wait_answer "tls_cost: $name" "https://127.0.0.1:$port/small" 150 -k
}
port_of() {  # name case
  case $1,$2 in
    lb-l7,full_rsa) echo $LB_R ;;
    lb-l7,*) echo $LB_E ;;
    haproxy,full_rsa) echo $HA_R ;;
    haproxy,*) echo $HA_E ;;
  esac
}
# load NAME CASE SECONDS: sets OPS to what the client counted.
load() {
  local port out
  port=$(port_of "$1" "$2")
  case $2 in
    full_ecdsa | full_rsa)
      out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new -time "$3" 2>&1)
      OPS=$(awk '/connections in .* real seconds/ {print $1; exit}' <<<"$out")
      ;;
    resumed)
      out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -tls1_2 -reuse -time "$3" 2>&1)
      OPS=$(awk '/connections in .* real seconds/ {n=$1} END {print n}' <<<"$out")
      ;;
    https_keepalive)
      out=$(taskset -c 1 wrk -t1 -c50 -d"$3s" --timeout 30s "https://127.0.0.1:$port/small")
      if grep -q "Non-2xx" <<<"$out"; then
        echo "tls_cost: wrk: $(grep -E 'Non-2xx' <<<"$out")" >&2
        exit 1
      fi
      OPS=$(awk '/requests in/ {print $1}' <<<"$out")
      ;;
  esac
  [[ ${OPS:-0} -gt 0 ]] || { echo "tls_cost: $1 $2: no operation counted" >&2; exit 1; }
}

PSTAT_PY='
import sys
case, name, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
v = {}
for line in open(path):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        v[f[2]] = float(f[0])
print("tls_cost case=%s proxy=%s at_speed ops=%d syscalls_per_op=%.3f "
      "epoll_wait_per_op=%.3f ctx_switches_per_op=%.3f" % (
          case, name, n, v["raw_syscalls:sys_enter"] / n,
          v["syscalls:sys_enter_epoll_wait"] / n, v["context-switches"] / n))
'
STRACE_PY='
import sys
case, name, n, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
calls = {}
for line in open(path):
    f = line.split()
    # % time, seconds, usecs/call, calls, [errors], syscall
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = int(f[3])
total = sum(calls.values())
detail = " ".join("%s=%.3f" % (k, c / n) for k, c in sorted(calls.items(), key=lambda kv: -kv[1])
                  if c / n >= 0.001)
print("tls_cost case=%s proxy=%s strace ops=%d syscalls_per_op=%.3f %s" % (
    case, name, n, total / n, detail))
print("%.3f" % (total / n), file=open(path + ".per_op", "w"))
'

# callgrind profile -> "total_Ir SSL_new_calls SSL_do_handshake_inclusive_Ir"
CG_PY='
import re, subprocess, sys
path = sys.argv[1]
total = 0
for line in open(path):
    if line.startswith("summary:"):
        total = int(line.split()[1])
names, calls, cur = {}, 0, None
for line in open(path):
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2): names[m.group(1)] = m.group(2).strip()
        cur = names.get(m.group(1)) if line.startswith("cfn=") else cur
        continue
    if line.startswith("calls=") and cur == "SSL_new":
        calls += int(line.split("=")[1].split()[0])
out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                     capture_output=True, text=True).stdout
hs = 0
for line in out.splitlines():
    if re.search(r":SSL_do_handshake \[", line):
        hs = int(line.split()[0].replace(",", ""))
print(total, calls, hs)
'
declare -A INSTR SYSC
for c in ${CASES:-full_ecdsa full_rsa resumed https_keepalive}; do
  for name in lb-l7 haproxy; do
    start "$name"
    load "$name" "$c" 1  # warm (upstream connections pooled, session cached)
    perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,context-switches \
      -p "$PID" -o "$WORK/pstat.txt" &
    SPID=$!
    sleep 0.3
    load "$name" "$c" "$SECS"
    kill -INT "$SPID"
    wait "$SPID" 2>/dev/null || true
    python3 -c "$PSTAT_PY" "$c" "$name" "$OPS" "$WORK/pstat.txt"
    strace -c -f -q -p "$PID" -o "$WORK/strace.txt" &
    SPID=$!
    sleep 1
    load "$name" "$c" "$SECS"
    kill -INT "$SPID"
    wait "$SPID" 2>/dev/null || true
    bench_stop
    python3 -c "$STRACE_PY" "$c" "$name" "$OPS" "$WORK/strace.txt"
    SYSC[$name]=$(cat "$WORK/strace.txt.per_op")

    start "$name" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" -q
    # warm: under callgrind wrk's 50 handshakes alone take seconds
    warm=2
    [[ $c == https_keepalive ]] && warm=12
    load "$name" "$c" "$warm"
    callgrind_control -z "$PID" > /dev/null 2>&1
    load "$name" "$c" "$SECS"
    callgrind_control -d "$PID" > /dev/null 2>&1
    bench_stop
    read -r ir conns hs < <(python3 -c "$CG_PY" "$WORK/cg.$PID.1")
    if [[ $c == https_keepalive ]]; then
      # wrk's 50 connections are new in each run: their handshakes out.
      INSTR[$name]=$(((ir - hs) / OPS))
      echo "tls_cost case=$c proxy=$name callgrind ops=$OPS user_instr_per_op=${INSTR[$name]}" \
        "handshakes=$conns handshake_instr_excluded=$hs"
    else
      # Per connection the proxy accepted (SSL_new calls): s_time's count
      # can differ from the handshakes the proxy saw.
      INSTR[$name]=$((ir / conns))
      echo "tls_cost case=$c proxy=$name callgrind ops=$conns user_instr_per_op=${INSTR[$name]}" \
        "client_ops=$OPS"
    fi
    if [[ -n ${KEEP_CALLGRIND:-} ]]; then cp "$WORK/cg.$PID.1" "$KEEP_CALLGRIND.$c.$name"; fi
    rm -f "$WORK"/cg.*
  done
  python3 -c "print('tls_cost_vs_haproxy case=$c instr_ratio=%.2f syscall_ratio=%.2f' % \
(${INSTR[lb-l7]} / ${INSTR[haproxy]}, ${SYSC[lb-l7]} / ${SYSC[haproxy]}))"
done
