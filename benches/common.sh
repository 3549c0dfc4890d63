# What the bench scripts share; sourced by each after `cd` to the checkout.
#
#   work        a fresh directory, removed on exit
#   pids        processes to stop on exit (append with pids+=($!))
#   on_exit     a command the exit runs first, if set (stopping a server)
#   need CMD PKG             fail with the package to install unless CMD exists
#   narrowgate_bin           NG: $NARROWGATE_BIN, else a release build made now
#   cpu_ticks PID            user + system ticks of PID and its children
#   wait_up URL              wait (10 s at most) until URL answers
#   bench_keys               KID: an ES256 key pair made in $work/keys
#   bench_sign SUB [ARGS…]   a token of $KID for SUB, granting reader on
#                            account:a1 unless ARGS say otherwise
#   bench_narrowgate FILE LISTENERS [ROUTE_ACCESS] [TOP_LEVEL]
#                            a gateway config: the bench issuer and the
#                            trading API's account route; LISTENERS is the
#                            flow-mapping body, ROUTE_ACCESS the route's access
#                            fields (default: the reader on the account),
#                            TOP_LEVEL more YAML (upstream, server, cache…)
work=$(mktemp -d)
pids=()
on_exit=
bench_cleanup() {
  if [ -n "$on_exit" ]; then $on_exit || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "missing $1: apt-get install -y $2" >&2; exit 1; }; }

narrowgate_bin() {
  if [ -n "${NARROWGATE_BIN:-}" ]; then
    NG=$NARROWGATE_BIN
  else
    cargo build --release --quiet
    NG=./target/release/narrowgate
  fi
}

TICK=$(getconf CLK_TCK)

# nginx runs a master and a worker: the CPU of the pid and its children.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $total
}

wait_up() {
  for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "$1 did not come up" >&2
  exit 1
}

bench_keys() { KID=$($NG keys generate --alg es256 --out "$work/keys" | awk '/^kid:/{print $2}'); }

bench_sign() {
  local sub=$1
  shift
  [ $# -gt 0 ] || set -- --resource account:a1
  $NG token sign --key "$work/keys/$KID.pem" --kid "$KID" --sub "$sub" --ttl 2h \
    --application trading-account-management-api --grant-role reader "$@"
}

BENCH_READER='        group: account-management
        method: getAccount
        resource: { entity: account, id: "{accountId}" }
        roles: [reader]'

bench_narrowgate() {
  cat > "$1" <<CONF
${4:-}
listeners: { $2 }
issuers:
  - name: bench
    issuer: narrowgate
    algorithms: [ES256]
    keys: [{ kid: "$KID", algorithm: ES256, public_key_file: keys/$KID.pub.pem }]
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups: [{ group: account-management, methods: [{ method: getAccount }] }]
    roles: [{ roles: [reader, writer] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
${3:-$BENCH_READER}
CONF
}

# An nginx origin (one worker) on ADDR answering 200 with a small JSON body,
# started in the background: bench_origin ADDR [taskset prefix…].
bench_origin() {
  local addr=$1
  shift
  mkdir -p "$work/origin"
  cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log crit;
events { worker_connections 4096; }
http { access_log off; server { listen $addr; keepalive_requests 1000000;
  location / { default_type application/json; return 200 "{\"ok\":true}\n"; } } }
CONF
  "$@" nginx -c "$work/origin/nginx.conf" -p "$work/origin" & pids+=($!)
}
