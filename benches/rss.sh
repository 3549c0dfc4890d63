#!/usr/bin/env bash
# Memory of the token cache: the enforcing gateway's resident set size
# (VmRSS from /proc) after start, and after N distinct ES256 tokens have
# each been verified once and cached, for each N given (default 10000 and
# 100000); reports MiB and bytes per cached entry. Twice per N: tokens
# with the same rules (shared in memory) and tokens each with a resource
# of its own. A fresh gateway per run, its cache large enough to hold all
# N; an nginx origin behind it.
#
#   benches/rss.sh [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-10000 100000}")
read -r -a SIZES <<< "${SIZES[*]}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "missing wrk: apt-get install -y wrk" >&2; exit 1; }
command -v nginx >/dev/null || { echo "missing nginx: apt-get install -y nginx-light" >&2; exit 1; }
cargo build --release --quiet
NG=./target/release/narrowgate
ORIGIN=127.0.0.1:18180
PROXY=127.0.0.1:18181
ADMIN=127.0.0.1:18191

mkdir -p "$work/origin"
cat > "$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log crit;
events { worker_connections 4096; }
http { access_log off; server { listen $ORIGIN; keepalive_requests 1000000;
  location / { default_type application/json; return 200 "{\"ok\":true}\n"; } } }
CONF
nginx -c "$work/origin/nginx.conf" -p "$work/origin" & pids+=($!)
kid=$($NG keys generate --alg es256 --out "$work/keys" | awk '/^kid:/{print $2}')

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
metric() { curl -s "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

printf '| cached tokens | rules | RSS after start | RSS with them cached | per entry |\n| --- | --- | --- | --- | --- |\n'
for n in "${SIZES[@]}"; do
# Every token the same rules (one application's users: what sharing rule
# sets is for), then each token a resource of its own (nothing shared).
for resource in account:a1 'account:a{i}'; do
  cat > "$work/ng.yaml" <<CONF
listeners: { proxy: "$PROXY", admin: "$ADMIN" }
upstream: { addresses: ["$ORIGIN"] }
server: { worker_threads: 1 }
cache: { capacity: $((n + n / 5)), max_ttl: 1h }
issuers:
  - name: bench
    issuer: narrowgate
    algorithms: [ES256]
    keys: [{ kid: "$kid", algorithm: ES256, public_key_file: keys/$kid.pub.pem }]
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups: [{ group: account-management, methods: [{ method: getAccount }] }]
    roles: [{ roles: [reader, writer] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        resource: { entity: account, id: "{accountId}" }
        roles: [reader]
CONF
  $NG token sign --key "$work/keys/$kid.pem" --kid "$kid" --sub user --ttl 2h --count "$n" \
    --application trading-account-management-api --grant-role reader --resource "$resource" > "$work/tokens"
  cat > "$work/once.lua" <<LUA
local tokens = {}
for line in io.lines("$work/tokens") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
  $NG serve --config "$work/ng.yaml" 2>"$work/ng.log" & ng=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://$ADMIN/healthz" && break; sleep 0.1; done
  base=$(rss_kib "$ng")
  # One connection walks the list once (each token verified and cached);
  # more time than that only repeats cache hits.
  for _ in $(seq 1 60); do
    wrk -t1 -c1 -d$((n / 4000 + 5))s -s "$work/once.lua" "http://$PROXY/users/current/accounts/a1" >/dev/null
    entries=$(metric narrowgate_token_cache_entries)
    [[ ${entries%.*} -ge $n ]] && break
  done
  full=$(rss_kib "$ng")
  printf '| %s | %s | %.1f MiB | %.1f MiB | %d B |\n' "$n" "$([ "$resource" = account:a1 ] && echo shared || echo distinct)" \
    "$(echo "$base/1024" | bc -l)" "$(echo "$full/1024" | bc -l)" \
    "$(( (full - base) * 1024 / n ))"
  kill "$ng"; wait "$ng" 2>/dev/null || true
done
done
