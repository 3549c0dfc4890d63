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
. benches/common.sh
NG=${NARROWGATE_BIN:-./target/release/narrowgate}
PY=${NARROWGATE_TEST_PYTHON:-target/pyenv/bin/python}
CONNS=${1:-50}

# An upstream that takes connections and never answers.
python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18120)); s.listen(4096); held = []
while True:
    held.append(s.accept()[0])
' & pids+=($!)

bench_keys
bench_narrowgate "$work/h2.yaml" 'proxy: "127.0.0.1:18121", admin: "127.0.0.1:18122"' "" \
  'upstream: { addresses: ["127.0.0.1:18120"], read_timeout: 60s }
server: { worker_threads: 1, http2: { cleartext: true } }'
token=$(bench_sign hostile)
taskset -c 0 "$NG" serve --config "$work/h2.yaml" 2>"$work/ng.log" & ng=$!; pids+=($ng)
wait_up http://127.0.0.1:18122/healthz

printf '| %-20s | %11s | %15s | %13s | %13s |\n' "kind" "connections" "streams/conn" "CPU/conn" "CPU/stream"
printf '|%s|%s|%s|%s|%s|\n' "----------------------" "-------------" "-----------------" "---------------" "---------------"
for kind in rapid-reset reset-after-accept; do
  before=$(cpu_ticks "$ng")
  for _ in $(seq 1 "$CONNS"); do
    taskset -c 1 "$PY" tests/python/h2_hostile.py 127.0.0.1 18121 "$kind" "$token"
  done > "$work/$kind.jsonl"
  sleep 1.5   # the closing connections' last streams end
  after=$(cpu_ticks "$ng")
  streams=$(python3 -c 'import json,sys; print(sum(json.loads(l)["opened"] for l in open(sys.argv[1])))' "$work/$kind.jsonl")
  awk -v k="$kind" -v c="$CONNS" -v s="$streams" -v a="$before" -v b="$after" -v t="$TICK" 'BEGIN {
    cpu = (b - a) / t * 1e6
    printf "| %-20s | %11d | %15.1f | %10.0f us | %10.1f us |\n", k, c, s / c, cpu / c, cpu / s }'
done
echo "gateway still serving: $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
  --max-time 1 http://127.0.0.1:18121/health || true) (404/403 expected: no such route; 000 would mean it stopped answering)"
