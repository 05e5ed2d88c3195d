# shellcheck shell=bash
# Shared by the proxy benchmarks (perf/l7_bench.sh, perf/tls_bench.sh):
# bench_setup NAME TOOL... checks that each TOOL is installed (exit 2 naming
# it), makes the temp dir $WORK and arranges that, on exit, every pid in
# PIDS and in $WORK/*.pid is killed and $WORK removed.

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}

bench_setup() {
  local name=$1 t
  shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$name: $t missing (scripts/install-deps.sh)" >&2; exit 2; }
  done
  WORK=$(mktemp -d "/tmp/$name.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}

# bench_tls_certs: a self-signed ECDSA P-256 and RSA 2048 certificate for
# bench.test in $WORK (ecdsa.crt/.key/.pem, rsa.crt/.key/.pem; keys 0600),
# and TLS_CIPHERS / TLS_SUITES: lb-l7's default policy (ECDHE + AEAD, TLS
# 1.2+) spelled for HAProxy, so both proxies negotiate alike.
bench_tls_certs() {
  openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$WORK/ecdsa.key" \
    -out "$WORK/ecdsa.crt" -days 30 -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
  openssl req -x509 -nodes -newkey rsa:2048 -keyout "$WORK/rsa.key" -out "$WORK/rsa.crt" -days 30 \
    -subj /CN=bench.test -addext subjectAltName=DNS:bench.test 2>/dev/null
  chmod 600 "$WORK"/*.key
  cat "$WORK/ecdsa.crt" "$WORK/ecdsa.key" > "$WORK/ecdsa.pem"
  cat "$WORK/rsa.crt" "$WORK/rsa.key" > "$WORK/rsa.pem"
  # shellcheck disable=SC2034  # used by the scripts that source this file
  TLS_CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
  # shellcheck disable=SC2034
  TLS_SUITES="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
}

# bench_tls_backend PORT: the nginx backend of the TLS benchmarks on CPU 1,
# serving $WORK/be/html/small (100 bytes) on 127.0.0.1:PORT.
bench_tls_backend() {
  mkdir -p "$WORK/be/html"
  head -c 100 /dev/zero | tr '\0' 'a' > "$WORK/be/html/small"
  cat > "$WORK/be.conf" <<EOC
daemon on; user root; worker_processes 1; worker_cpu_affinity 10; pid $WORK/be.pid;
error_log $WORK/be.err warn; events { worker_connections 4096; }
http { client_body_temp_path $WORK/tb; proxy_temp_path $WORK/tp; fastcgi_temp_path $WORK/tf;
  uwsgi_temp_path $WORK/tu; scgi_temp_path $WORK/ts; access_log off;
  keepalive_requests 1000000; server { listen 127.0.0.1:$1; root $WORK/be/html; } }
EOC
  nginx -p "$WORK" -c "$WORK/be.conf" -e "$WORK/be.err"
}

# bench_wait_answer NAME URL TRIES [curl options]: waits (0.2 s per try)
# until URL answers; otherwise prints $WORK/proxy.log and exits 1.
bench_wait_answer() {
  local name=$1 url=$2 tries=$3
  shift 3
  for _ in $(seq "$tries"); do
    curl -sf "$@" -o /dev/null "$url" && return 0
    sleep 0.2
  done
  echo "$name did not answer at $url" >&2
  cat "$WORK/proxy.log" >&2
  exit 1
}

# bench_stop: stops the proxy a cost script started (pid in $PID).
bench_stop() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}
