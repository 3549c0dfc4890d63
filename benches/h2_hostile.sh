#!/usr/bin/env bash
# What a hostile HTTP/2 client costs the gateway: the CPU narrowgate spends
# (from /proc) on connections that open streams and cancel them (the
# rapid-reset attack, CVE-2023-44487), per connection and per stream, until
# the gateway closes each connection. Two kinds:
#   rapid-reset         streams cancelled as soon as they are sent (the h2
#                       crate's bound: 20 pending resets, then GOAWAY);
#   reset-after-accept  each stream decided and forwarded to an upstream
#                       that never answers, then cancelled (narrowgate's
#                       bound: server.http2.max_cancelled_streams, 100).
# The client is tests/python/h2_hostile.py (the test environment's Python,
# `h2` from PyPI), run CONNS times for each kind, on core 1; the gateway on
# core 0.
#
#   NARROWGATE_BIN=target/release/narrowgate benches/h2_hostile.sh [CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
NG=${NARROWGATE_BIN:-./target/release/narrowgate}
PY=${NARROWGATE_TEST_PYTHON:-target/pyenv/bin/python}
CONNS=${1:-50}
TICK=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# An upstream that takes connections and never answers.
python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18120)); s.listen(4096); held = []
while True:
    held.append(s.accept()[0])
' & pids+=($!)

kid=$($NG keys generate --alg es256 --out "$work/keys" | awk '/^kid:/{print $2}')
cat > "$work/h2.yaml" <<CONF
listeners: { proxy: "127.0.0.1:18121", admin: "127.0.0.1:18122" }
upstream: { addresses: ["127.0.0.1:18120"], read_timeout: 60s }
server: { worker_threads: 1, http2: { cleartext: true } }
issuers:
  - name: bench
    issuer: narrowgate
    algorithms: [ES256]
    keys: [{ kid: "$kid", algorithm: ES256, public_key_file: keys/$kid.pub.pem }]
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups: [{ group: account-management, methods: [{ method: getAccount }] }]
    roles: [{ roles: [reader] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        resource: { entity: account, id: "{accountId}" }
        roles: [reader]
CONF
token=$($NG token sign --key "$work/keys/$kid.pem" --kid "$kid" --sub hostile --ttl 2h \
  --application trading-account-management-api --grant-role reader --resource account:a1)
taskset -c 0 "$NG" serve --config "$work/h2.yaml" 2>"$work/ng.log" & ng=$!; pids+=($ng)
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18122/healthz && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$ng/stat"; }
printf '| %-20s | %11s | %15s | %13s | %13s |\n' "kind" "connections" "streams/conn" "CPU/conn" "CPU/stream"
printf '|%s|%s|%s|%s|%s|\n' "----------------------" "-------------" "-----------------" "---------------" "---------------"
for kind in rapid-reset reset-after-accept; do
  before=$(ticks)
  for _ in $(seq 1 "$CONNS"); do
    taskset -c 1 "$PY" tests/python/h2_hostile.py 127.0.0.1 18121 "$kind" "$token"
  done > "$work/$kind.jsonl"
  sleep 1.5   # the closing connections' last streams end
  after=$(ticks)
  streams=$(python3 -c 'import json,sys; print(sum(json.loads(l)["opened"] for l in open(sys.argv[1])))' "$work/$kind.jsonl")
  awk -v k="$kind" -v c="$CONNS" -v s="$streams" -v a="$before" -v b="$after" -v t="$TICK" 'BEGIN {
    cpu = (b - a) / t * 1e6
    printf "| %-20s | %11d | %15.1f | %10.0f us | %10.1f us |\n", k, c, s / c, cpu / c, cpu / s }'
done
echo "gateway still serving: $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  --max-time 1 http://127.0.0.1:18121/health || true) (404/403 expected: no such route; 000 would mean it stopped answering)"
