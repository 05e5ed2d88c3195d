#!/usr/bin/env bash
# lb-l7 TLS termination side by side with HAProxy 2.6 (Debian) in front of
# the same nginx backend, on loopback (issue 11, "Performance"). Run by
# perf/run.sh tls (release build), or directly:
#
#   perf/tls_bench.sh path/to/lb-l7 [seconds_per_run (default 3)]
#
# Each proxy runs one worker pinned to CPU 0; the client (openssl s_time or
# wrk) and the backend nginx share CPU 1. Both proxies get the same
# certificates (ECDSA P-256, RSA 2048), TLS 1.2+1.3, the same TLS 1.2
# cipher list and TLS 1.3 suite list in the same (server) order; before
# anything is measured the script checks with openssl s_client that both
# negotiate the same version, cipher and key-exchange group for each
# certificate and for TLS 1.2 (tls_negotiated lines; exit 1 if not).
# The proxy's CPU time (schedstat, all its threads) before and after gives
# operations per proxy CPU-second:
#   full_ecdsa, full_rsa  new TLS 1.3 connections, full handshakes, no
#                         request (openssl s_time -new)
#   resumed               TLS 1.2 connections resuming one session
#                         (openssl s_time -reuse; lb-l7's resumed counter
#                         is checked to move)
#   https_keepalive       small GETs over 50 keep-alive TLS connections
#                         (wrk -t1 -c50)
# The machine is shared, so each case runs TLS_ROUNDS short rounds (default
# 7) of seconds_per_run each: a round measures lb-l7 and HAProxy back to
# back (which one goes first alternates), and the ratio reported is the
# median of the per-round ratios, with their min and max. Output:
#   tls_round case=full_ecdsa round=N lb-l7=N haproxy=N ratio=N
#   tls case=full_ecdsa proxy=lb-l7 per_cpu_s=N rate=N proxy_cpu_s=N   (medians)
#   tls_vs_haproxy case=full_ecdsa ratio=N min=N max=N rounds=N
# and tls_idle_conn_bytes=N (lb-l7 RSS growth per idle TLS connection).
# CASES="resumed https_keepalive" runs only those cases.
# Per-operation counts (user instructions, syscalls): perf/tls_cost.sh.
# Loopback only; everything it starts is stopped, its temp dir removed.
set -euo pipefail
LB=$(readlink -f "$1")
SECS=${2:-3}
ROUNDS=${TLS_ROUNDS:-7}
# shellcheck source=perf/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_setup tls_bench wrk nginx haproxy openssl python3 curl
ulimit -n 65536 2>/dev/null || true

BE=18581 ADMIN=18589
declare -A PORT=([lb-l7,ecdsa]=18570 [lb-l7,rsa]=18571 [haproxy,ecdsa]=18572 [haproxy,rsa]=18573)

cd "$WORK"
bench_tls_certs
bench_tls_backend $BE

# HAProxy with the same policy as lb-l7's defaults (ECDHE + AEAD, 1.2+).
CIPHERS=$TLS_CIPHERS SUITES=$TLS_SUITES
cat > ha.cfg <<EOF
global
  nbthread 1
  cpu-map 1/1 0
  pidfile $WORK/ha.pid
  daemon
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
  bind 127.0.0.1:${PORT[haproxy,ecdsa]} ssl crt $WORK/ecdsa.pem alpn http/1.1
  bind 127.0.0.1:${PORT[haproxy,rsa]} ssl crt $WORK/rsa.pem alpn http/1.1
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$BE
EOF
haproxy -f ha.cfg

cat > l7.textproto <<EOF
listeners { name: "ecdsa" address: "127.0.0.1" port: ${PORT[lb-l7,ecdsa]} default_pool: "be"
  tls { certificates { cert_file: "$WORK/ecdsa.crt" key_file: "$WORK/ecdsa.key" } } }
listeners { name: "rsa" address: "127.0.0.1" port: ${PORT[lb-l7,rsa]} default_pool: "be"
  tls { certificates { cert_file: "$WORK/rsa.crt" key_file: "$WORK/rsa.key" } } }
pools { name: "be" backends { address: "127.0.0.1" port: $BE } max_idle_per_backend: 64 }
EOF
taskset -c 0 "$LB" --config l7.textproto --workers 1 --admin_port $ADMIN > l7.log 2>&1 &
LBPID=$!
PIDS+=("$LBPID")
sleep 0.5
grep -q "lb-l7 ready" l7.log || { cat l7.log; exit 1; }
for name in lb-l7 haproxy; do  # both answer HTTPS before anything is measured
  curl -sk --max-time 5 "https://127.0.0.1:${PORT[$name,ecdsa]}/small" | grep -q aaaa ||
    { echo "tls_bench: $name does not answer HTTPS" >&2; exit 1; }
done

# CPU time of a proxy in ns: every thread of the pid and of its children
# (/proc/PID/task/TID/schedstat, first field: time on a CPU). Nanoseconds,
# not the 10 ms ticks of /proc/PID/stat: a proxy that is 20 % busy for 3 s
# gets only 60 ticks.
cpu_ns() {
  local p
  for p in "$1" $(pgrep -P "$1" || true); do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done |
    awk '{t += $1} END {printf "%.0f\n", t}'
}

# Prints "operations seconds" for one client run against port $2.
client() {
  local kind=$1 port=$2 secs=$3 out
  case $kind in
    full)
      out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new -time "$secs" 2>&1)
      awk '/connections in .* real seconds/ {print $1, $4; exit}' <<<"$out" ;;
    resumed)
      out=$(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -tls1_2 -reuse \
        -time "$secs" 2>&1)
      awk '/connections in .* real seconds/ {n=$1; s=$4} END {print n, s}' <<<"$out" ;;
    keepalive)
      out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" "https://127.0.0.1:$port/small")
      if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
        echo "tls_bench: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2
      fi
      awk -v s="$secs" '/requests in/ {print $1, s}' <<<"$out" ;;
  esac
}

handshakes() {  # lb-l7's ecdsa listener: "full resumed"
  curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '
    /^lb_l7_tls_handshakes_total\{listener="ecdsa",kind="full"\}/ {f=$2}
    /^lb_l7_tls_handshakes_total\{listener="ecdsa",kind="resumed"\}/ {r=$2}
    END {print f, r}'
}

# What a default client negotiates: "version/cipher/group".
negotiated() {  # port [s_client args]
  local port=$1 out
  shift
  out=$(openssl s_client -connect "127.0.0.1:$port" -servername bench.test "$@" \
    < /dev/null 2>&1 || true)
  awk '/^New, / {v=$2; c=$5; sub(",", "", v)}
       /^Server Temp Key:/ {g=$4; sub(",", "", g)}
       END {print v "/" c "/" g}' <<<"$out"
}
for check in "ecdsa" "rsa" "ecdsa -tls1_2"; do
  read -r key args <<<"$check"
  # shellcheck disable=SC2086  # args: zero or one s_client flag
  l=$(negotiated "${PORT[lb-l7,$key]}" $args)
  # shellcheck disable=SC2086
  h=$(negotiated "${PORT[haproxy,$key]}" $args)
  echo "tls_negotiated cert=$key client=${args:-default} lb-l7=$l haproxy=$h"
  [[ $l == "$h" && $l != //* ]] ||
    { echo "tls_bench: the proxies negotiate differently" >&2; exit 1; }
done

# measure NAME KIND KEY: one run; sets M_RATE (per proxy CPU-second),
# M_OPS (per second) and M_CPU.
measure() {
  local name=$1 kind=$2 key=$3 pid port t0 t1 ops secs f0 r0 f1 r1
  port=${PORT[$name,$key]}
  if [[ $name == lb-l7 ]]; then pid=$LBPID; else pid=$(cat "$WORK/ha.pid"); fi
  read -r f0 r0 < <(handshakes)
  t0=$(cpu_ns "$pid")
  read -r ops secs < <(client "$kind" "$port" "$SECS") || true
  t1=$(cpu_ns "$pid")
  if [[ $kind == resumed && $name == lb-l7 ]]; then
    # s_time counts connections whose server side never finished (it
    # closes right after its Finished); completed ones must be resumed.
    read -r f1 r1 < <(handshakes)
    (( (r1 - r0) > 10 * (f1 - f0) )) ||
      echo "tls_bench: lb-l7 resumed $((r1 - r0)), full $((f1 - f0))" >&2
  fi
  M_CPU=$(python3 -c "print('%.3f' % max(($t1 - $t0) / 1e9, 0.001))")
  M_RATE=$(python3 -c "print(int(${ops:-0} / $M_CPU))")
  M_OPS=$(python3 -c "print(int(${ops:-0} / ${secs:-1}))")
}

med() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
run_case() {  # case kind key
  local c=$1 kind=$2 key=$3 r name order a ao ac b bo bc
  local -a ratios=() l7r=() har=() l7o=() hao=() l7c=() hac=()
  for name in lb-l7 haproxy; do client "$kind" "${PORT[$name,$key]}" 1 > /dev/null; done  # warm
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="lb-l7 haproxy"; else order="haproxy lb-l7"; fi
    local -A got=()
    for name in $order; do
      measure "$name" "$kind" "$key"
      got[$name]="$M_RATE $M_OPS $M_CPU"
    done
    read -r a ao ac <<<"${got[lb-l7]}"
    read -r b bo bc <<<"${got[haproxy]}"
    if ((a == 0 || b == 0)); then
      # A client run that counted nothing (the machine stalled): the round
      # is reported and left out.
      echo "tls_round case=$c round=$r lb-l7=$a haproxy=$b ratio=- (left out: no operation counted)"
      continue
    fi
    l7r+=("$a") l7o+=("$ao") l7c+=("$ac") har+=("$b") hao+=("$bo") hac+=("$bc")
    ratios+=("$(python3 -c "print('%.3f' % ($a / $b))")")
    echo "tls_round case=$c round=$r lb-l7=$a haproxy=$b ratio=${ratios[-1]}"
  done
  if ((${#ratios[@]} == 0)); then
    echo "tls_bench: case $c: no valid round" >&2
    return 1
  fi
  local m
  m=$(med "${l7r[@]}")
  echo "tls case=$c proxy=lb-l7 per_cpu_s=${m%.*} rate=$(med "${l7o[@]}" | cut -d. -f1)" \
    "proxy_cpu_s=$(med "${l7c[@]}")"
  m=$(med "${har[@]}")
  echo "tls case=$c proxy=haproxy per_cpu_s=${m%.*} rate=$(med "${hao[@]}" | cut -d. -f1)" \
    "proxy_cpu_s=$(med "${hac[@]}")"
  python3 -c "import statistics, sys; r = [float(x) for x in sys.argv[1:]]; \
print('tls_vs_haproxy case=$c ratio=%.2f min=%.2f max=%.2f rounds=%d' % \
(statistics.median(r), min(r), max(r), len(r)))" "${ratios[@]}"
}
# lb-l7 RSS growth per idle TLS 1.3 connection (2,000 of them, each after
# its handshake and one request).
idle_memory() {
  python3 - "$LBPID" "${PORT[lb-l7,ecdsa]}" <<'EOF'
import socket, ssl, sys, time
pid, port = sys.argv[1], int(sys.argv[2])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) * 1024
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def conn():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="bench.test")
    s.sendall(b"GET /small HTTP/1.1\r\nHost: b\r\n\r\n")
    got = b""
    while not got.endswith(b"a" * 100):
        got += s.recv(4096)
    return s
warm = [conn() for _ in range(50)]
time.sleep(0.3)
before = rss()
conns = [conn() for _ in range(2000)]
time.sleep(0.5)
print("tls_idle_conn_bytes=%d" % ((rss() - before) // len(conns)))
EOF
}

for c in ${CASES:-full_ecdsa full_rsa resumed https_keepalive idle_memory}; do
  case $c in
    full_ecdsa) run_case full_ecdsa full ecdsa ;;
    full_rsa) run_case full_rsa full rsa ;;
    resumed) run_case resumed resumed ecdsa ;;
    https_keepalive) run_case https_keepalive keepalive ecdsa ;;
    idle_memory) idle_memory ;;
  esac
done
