#!/usr/bin/env bash
# lb-l7 side by side with HAProxy 2.6 and nginx 1.22 (Debian) as reverse
# proxies in front of the same nginx backend, on loopback (issue 10,
# "Performance"). Run by perf/run.sh l7 (release build), or directly:
#
#   perf/l7_bench.sh path/to/lb-l7 [seconds_per_run (default 5)]
#
# Each proxy runs one worker pinned to CPU 0; wrk (-t1 -c50, keep-alive) and
# the backend nginx share CPU 1.
#
# h1_small (the case issue 10 holds lb-l7 to 1.2x HAProxy on) runs in
# L7_ROUNDS short rounds (default 7, L7_ROUND_SECS seconds per proxy per
# round, default 2): each round measures lb-l7 and HAProxy back to back
# (which one goes first alternates), and the ratio of the round compares two
# runs a few seconds apart, under the same load from whatever else shares the
# machine. The ratio reported is the median of the per-round ratios, with
# their min and max; each proxy's line gives its medians over the rounds
# (user_share: the proxy's user time over its user+system time). nginx runs
# once after the rounds. L7_ONLY=h1_small runs that case alone, L7_ONLY=latency
# the added-latency case alone, L7_ONLY=idle the idle-connection memory
# alone. The h2c case (HTTP/2 by prior knowledge to the proxy, HTTP/1.1
# keep-alive to the backend) uses h2load (-t1 -c20 -m10: 200 concurrent
# streams) against lb-l7 and HAProxy (bind ... proto h2); nginx 1.22 has no
# h2c with prior knowledge beside HTTP/1 on a port. For every case the
# three proxies run one after another (interleaved, same client, same
# backend); the proxy's utime+stime from /proc before and after gives
# requests per proxy CPU-second.
# Output, one line per case and proxy, then a ratio line per case:
#   l7_round case=h1_small round=N lb-l7=N haproxy=N ratio=N   (h1_small only)
#   l7 case=h1_small proxy=lb-l7 req_per_cpu_s=N rps=N p50_ms=N p99_ms=N [user_share=N]
#   l7_vs_haproxy case=h1_small ratio=N [min=N max=N rounds=N]
#   l7 case=h2c proxy=lb-l7 req_per_cpu_s=N rps=N mean_ms=N failed=N
# then the p99 latency each proxy adds at half lb-l7's saturating h1_small
# rate (perf/latency_client: open loop, 50 keep-alive connections at a fixed
# total rate, against the backend directly and through each proxy,
# interleaved rounds, medians):
#   l7_latency_round round=N proxy=lb-l7 rate=N p50_ms=N p99_ms=N
#   l7_added_latency proxy=lb-l7 rate=N p50_ms=N p99_ms=N added_p99_ms=N
# and l7_idle_conn_bytes=N (lb-l7 RSS growth / 10,000 idle keep-alive
# connections, each after one request). Loopback only; everything it starts
# is stopped and its temp dir removed on exit.
set -euo pipefail
LB=$(readlink -f "$1")
SECS=${2:-5}
# The open-loop client of the added-latency case, built beside lb-l7.
LATENCY_CLIENT=${LATENCY_CLIENT:-$(readlink -f "$(dirname "$LB")/../../perf/latency_client")}
# shellcheck source=perf/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_setup l7_bench wrk h2load nginx haproxy python3 "$LATENCY_CLIENT"
ulimit -n 65536 2>/dev/null || true

BE=18481 LBP=18480 HAP=18482 NGP=18483 HAH2=18484 ADMIN=18489
mkdir -p "$WORK/be/html"
head -c 100 /dev/zero | tr '\0' 'a' > "$WORK/be/html/small"
head -c 16384 /dev/zero | tr '\0' 'b' > "$WORK/be/html/16k"
head -c 1048576 /dev/zero | tr '\0' 'c' > "$WORK/be/html/1m"
common_http="client_body_temp_path $WORK/tmp_body; proxy_temp_path $WORK/tmp_proxy;
  fastcgi_temp_path $WORK/tmp_fcgi; uwsgi_temp_path $WORK/tmp_uwsgi; scgi_temp_path $WORK/tmp_scgi;
  access_log off; keepalive_requests 1000000;"
cat > "$WORK/be.conf" <<EOF
daemon on; user root; worker_processes 1; worker_cpu_affinity 10; pid $WORK/be.pid;
error_log $WORK/be.err warn; events { worker_connections 4096; }
http { $common_http server { listen 127.0.0.1:$BE; root $WORK/be/html; } }
EOF
nginx -p "$WORK" -c "$WORK/be.conf" -e "$WORK/be.err"

cat > "$WORK/ng.conf" <<EOF
daemon on; user root; worker_processes 1; worker_cpu_affinity 01; pid $WORK/ng.pid;
error_log $WORK/ng.err warn; events { worker_connections 4096; }
http { $common_http
  upstream be { server 127.0.0.1:$BE; keepalive 64; }
  server { listen 127.0.0.1:$NGP;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering on; } } }
EOF
nginx -p "$WORK" -c "$WORK/ng.conf" -e "$WORK/ng.err"

cat > "$WORK/ha.cfg" <<EOF
global
  nbthread 1
  cpu-map 1/1 0
  pidfile $WORK/ha.pid
  daemon
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:$HAP
  default_backend b
frontend f2
  bind 127.0.0.1:$HAH2 proto h2
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$BE
EOF
haproxy -f "$WORK/ha.cfg"

# 256 idle upstream connections: h2c runs 200 concurrent streams, each its
# own upstream request (HAProxy keeps idle server connections without a cap
# by default); with 64, a quarter of the h2c requests paid a new connect.
cat > "$WORK/l7.textproto" <<EOF
listeners { name: "bench" address: "127.0.0.1" port: $LBP default_pool: "be" }
pools { name: "be" backends { address: "127.0.0.1" port: $BE } max_idle_per_backend: 256 }
EOF
taskset -c 0 "$LB" --config "$WORK/l7.textproto" --workers 1 --admin_port $ADMIN \
  > "$WORK/l7.log" 2>&1 &
LBPID=$!
PIDS+=("$LBPID")
sleep 0.5
grep -q "lb-l7 ready" "$WORK/l7.log" || { cat "$WORK/l7.log"; exit 1; }

# CPU ticks of a proxy: the pid and its children (nginx/haproxy workers).
ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $total
}
# User-time ticks alone (same processes).
uticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14}' "/proc/$p/stat")))
  done
  echo $total
}
HZ=$(getconf CLK_TCK)
to_ms() {  # wrk latency "1.23ms" / "850.00us" / "1.02s" -> ms
  python3 -c "import sys,re; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); \
f={'us':0.001,'ms':1,'s':1000}[m.group(2)]; print(round(float(m.group(1))*f,3))" "$1"
}

declare -A RATE RPS

proxy_port_pid() {  # name -> "port pid"
  case $1 in
    lb-l7) echo "$LBP $LBPID" ;;
    haproxy) echo "$HAP $(cat "$WORK/ha.pid")" ;;
    nginx) echo "$NGP $(cat "$WORK/ng.pid")" ;;
  esac
}
# measure NAME CASE PATH SECONDS: one wrk run through proxy NAME; sets
# M_RATE (requests per proxy CPU-second), M_RPS, M_P50, M_P99, M_USER.
measure() {
  local name=$1 c=$2 path=$3 secs=$4 port pid t0 t1 u0 u1 out n cpu
  read -r port pid < <(proxy_port_pid "$name")
  t0=$(ticks "$pid")
  u0=$(uticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c50 -d"${secs}s" --latency "http://127.0.0.1:$port$path")
  t1=$(ticks "$pid")
  u1=$(uticks "$pid")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "l7_bench: $name $c: $(grep -E 'Non-2xx|Socket errors' <<<"$out")" >&2
  fi
  # Answers counted by wrk (not rate x nominal duration: wrk's run is a
  # little longer than asked).
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  M_RPS=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
  M_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  M_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  cpu=$(python3 -c "print(max(($t1 - $t0) / $HZ, 0.01))")
  M_RATE=$(python3 -c "print(int($n / $cpu))")
  M_USER=$(python3 -c "print('%.2f' % (($u1 - $u0) / max($t1 - $t0, 1)))")
}

# h1_small: interleaved rounds of lb-l7 and HAProxy, then nginx once.
run_small_rounds() {
  local c=h1_small path=/small rounds=${L7_ROUNDS:-7} rsecs=${L7_ROUND_SECS:-2} r name order port
  local -a ratios=() l7r=() har=() l7rps=() harps=() l7p50=() hap50=() l7p99=() hap99=() l7u=() hau=()
  for name in lb-l7 haproxy; do
    read -r port _ < <(proxy_port_pid "$name")
    taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$port$path" > /dev/null  # warm
  done
  for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then order="lb-l7 haproxy"; else order="haproxy lb-l7"; fi
    for name in $order; do
      measure "$name" $c $path "$rsecs"
      if [[ $name == lb-l7 ]]; then
        l7r+=("$M_RATE") l7rps+=("$M_RPS") l7p50+=("$M_P50") l7p99+=("$M_P99") l7u+=("$M_USER")
      else
        har+=("$M_RATE") harps+=("$M_RPS") hap50+=("$M_P50") hap99+=("$M_P99") hau+=("$M_USER")
      fi
    done
    ratios+=("$(python3 -c "print('%.3f' % (${l7r[-1]} / max(${har[-1]}, 1)))")")
    echo "l7_round case=$c round=$r lb-l7=${l7r[-1]} haproxy=${har[-1]} ratio=${ratios[-1]}"
  done
  med() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
  RATE[$c,lb-l7]=$(med "${l7r[@]}")
  RATE[$c,lb-l7]=${RATE[$c,lb-l7]%.*}
  RATE[$c,haproxy]=$(med "${har[@]}")
  RATE[$c,haproxy]=${RATE[$c,haproxy]%.*}
  RPS[$c,lb-l7]=$(med "${l7rps[@]}")
  RPS[$c,lb-l7]=${RPS[$c,lb-l7]%.*}
  echo "l7 case=$c proxy=lb-l7 req_per_cpu_s=${RATE[$c,lb-l7]} rps=${RPS[$c,lb-l7]}" \
    "p50_ms=$(med "${l7p50[@]}") p99_ms=$(med "${l7p99[@]}") user_share=$(med "${l7u[@]}")"
  echo "l7 case=$c proxy=haproxy req_per_cpu_s=${RATE[$c,haproxy]} rps=$(med "${harps[@]}" | cut -d. -f1)" \
    "p50_ms=$(med "${hap50[@]}") p99_ms=$(med "${hap99[@]}") user_share=$(med "${hau[@]}")"
  taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$NGP$path" > /dev/null  # warm
  measure nginx $c $path "$SECS"
  RATE[$c,nginx]=$M_RATE
  echo "l7 case=$c proxy=nginx req_per_cpu_s=$M_RATE rps=$M_RPS p50_ms=$M_P50 p99_ms=$M_P99" \
    "user_share=$M_USER"
  python3 -c "import statistics, sys; r = [float(x) for x in sys.argv[1:]]; \
print('l7_vs_haproxy case=$c ratio=%.2f min=%.2f max=%.2f rounds=%d' % \
(statistics.median(r), min(r), max(r), len(r)))" "${ratios[@]}"
  python3 -c "print('l7_vs_nginx case=$c ratio=%.2f' % (${RATE[$c,lb-l7]} / ${RATE[$c,nginx]}))"
}
run_case() {  # case path
  local c=$1 path=$2 name port
  for name in lb-l7 haproxy nginx; do
    read -r port _ < <(proxy_port_pid "$name")
    taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$port$path" > /dev/null  # warm
    measure "$name" "$c" "$path" "$SECS"
    RATE[$c,$name]=$M_RATE
    RPS[$c,$name]=$M_RPS
    echo "l7 case=$c proxy=$name req_per_cpu_s=$M_RATE rps=$M_RPS p50_ms=$M_P50 p99_ms=$M_P99"
  done
  python3 -c "print('l7_vs_haproxy case=$c ratio=%.2f' % (${RATE[$c,lb-l7]} / ${RATE[$c,haproxy]}))"
  python3 -c "print('l7_vs_nginx case=$c ratio=%.2f' % (${RATE[$c,lb-l7]} / ${RATE[$c,nginx]}))"
}
# h2c: h2load counts the requests done; the proxy's CPU as above.
run_h2_case() {  # case path
  local c=$1 path=$2 name port pid t0 t1 out done_n rps mean failed cpu
  for name in lb-l7 haproxy; do
    case $name in
      lb-l7) port=$LBP pid=$LBPID ;;
      haproxy) port=$HAH2 pid=$(cat "$WORK/ha.pid") ;;
    esac
    taskset -c 1 h2load -t1 -c20 -m10 -D 1 "http://127.0.0.1:$port$path" > /dev/null  # warm
    t0=$(ticks "$pid")
    out=$(taskset -c 1 h2load -t1 -c20 -m10 -D "$SECS" "http://127.0.0.1:$port$path")
    t1=$(ticks "$pid")
    done_n=$(sed -n 's/^requests: [0-9]* total, [0-9]* started, \([0-9]*\) done.*/\1/p' <<<"$out")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    mean=$(to_ms "$(awk '/^time for request:/ {print $6}' <<<"$out")")
    if [[ "${failed:-1}" != 0 ]]; then
      echo "l7_bench: $name $c: $(grep -E '^requests:|^status codes:' <<<"$out")" >&2
    fi
    cpu=$(python3 -c "print(max(($t1 - $t0) / $HZ, 0.01))")
    RATE[$c,$name]=$(python3 -c "print(int(${done_n:-0} / $cpu))")
    echo "l7 case=$c proxy=$name req_per_cpu_s=${RATE[$c,$name]} rps=${rps%.*} mean_ms=$mean failed=${failed:-?}"
  done
  python3 -c "print('l7_vs_haproxy case=$c ratio=%.2f' % (${RATE[$c,lb-l7]} / max(${RATE[$c,haproxy]}, 1)))"
}

# Added latency at half the saturating rate: perf/latency_client (open
# loop: each request due on a fixed schedule, its latency counted from when
# it was due; 50 keep-alive connections; on CPU 1 with the backend) against
# the backend itself, then through each proxy, in L7_LAT_ROUNDS interleaved
# rounds (default 3, L7_LAT_SECS each, default 3). The proxy's added p99 is
# its p99 minus the backend's p99 of the same round; the lines give the
# medians over the rounds.
run_added_latency() {
  local half=$1 r name port out rate p50 p99 target
  declare -A P99 P50 RATES
  for ((r = 1; r <= ${L7_LAT_ROUNDS:-3}; r++)); do
    for target in none lb-l7 haproxy nginx; do
      if [[ $target == none ]]; then port=$BE; else read -r port _ < <(proxy_port_pid "$target"); fi
      out=$(taskset -c 1 "$LATENCY_CLIENT" --port "$port" --path /small --conns 50 \
        --rate "$half" --secs "${L7_LAT_SECS:-3}" --warmup_secs 1)
      read -r rate p50 p99 < <(sed -E 's/.*rate=([0-9.]+).*p50_ms=([0-9.]+).*p99_ms=([0-9.]+).*/\1 \2 \3/' <<<"$out")
      grep -q "errors=0 unanswered=0" <<<"$out" || echo "l7_bench: latency $target: $out" >&2
      echo "l7_latency_round round=$r proxy=$target rate=$rate p50_ms=$p50 p99_ms=$p99"
      RATES[$target]+="$rate " P50[$target]+="$p50 " P99[$target]+="$p99 "
    done
  done
  med() { python3 -c "import statistics, sys; print('%.3f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
  local base
  # shellcheck disable=SC2086
  base=$(med ${P99[none]})
  # shellcheck disable=SC2086
  echo "l7_added_latency proxy=none target_rate=$half rate=$(med ${RATES[none]}) p50_ms=$(med ${P50[none]}) p99_ms=$base"
  for name in lb-l7 haproxy nginx; do
    # shellcheck disable=SC2086
    python3 -c "import statistics, sys
p = [float(x) for x in sys.argv[3].split()]; b = [float(x) for x in sys.argv[4].split()]
added = statistics.median(x - y for x, y in zip(p, b))
print('l7_added_latency proxy=%s rate=%s p50_ms=%s p99_ms=%.3f added_p99_ms=%.3f' %
      (sys.argv[1], sys.argv[2], sys.argv[5], statistics.median(p), added))" \
      "$name" "$(med ${RATES[$name]})" "${P99[$name]}" "${P99[none]}" "$(med ${P50[$name]})"
  done
}
# Memory per idle keep-alive connection at 10,000 connections.
run_idle_conn() {
  python3 - "$LBPID" "$LBP" <<'EOF'
import socket, sys, time
pid, port = sys.argv[1], int(sys.argv[2])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) * 1024
before = rss()
conns = []
for _ in range(10000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /small HTTP/1.1\r\nHost: b\r\n\r\n")
    got = b""
    while not got.endswith(b"a" * 100):
        got += s.recv(4096)
    conns.append(s)
time.sleep(0.3)
print("l7_idle_conn_bytes=%d" % ((rss() - before) // len(conns)))
EOF
}
# L7_ONLY=idle: the idle-connection memory case alone.
if [[ ${L7_ONLY:-} == idle ]]; then
  run_idle_conn
  exit 0
fi
# L7_ONLY=latency: the added-latency case alone, at half the median of
# three 2-second saturating wrk runs through lb-l7 (one run's rate moved 2x
# between runs minutes apart on the shared guest, and the target rate with it).
if [[ ${L7_ONLY:-} == latency ]]; then
  taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:$LBP/small" > /dev/null  # warm
  sat=()
  for _ in 1 2 3; do
    measure lb-l7 h1_small /small 2
    sat+=("$M_RPS")
  done
  mapfile -t sat < <(printf '%s\n' "${sat[@]}" | sort -n)
  echo "l7 case=h1_small proxy=lb-l7 rps=${sat[1]} runs=${sat[*]} (saturating, for the rate below)"
  run_added_latency $((sat[1] / 2))
  exit 0
fi
run_small_rounds
# L7_ONLY=h1_small: stop here (quick checks of the headline case).
[[ ${L7_ONLY:-} == h1_small ]] && exit 0
run_case h1_16k /16k
run_case h1_1m /1m
run_h2_case h2c /small

run_added_latency $((RPS[h1_small,lb-l7] / 2))
run_idle_conn
