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
#   NARROWGATE_BIN=path benches/rss.sh …   (a given build)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-10000 100000}")
read -r -a SIZES <<< "${SIZES[*]}"
. benches/common.sh
need wrk wrk
need nginx nginx-light
narrowgate_bin
ORIGIN=127.0.0.1:18180
PROXY=127.0.0.1:18181
ADMIN=127.0.0.1:18191

bench_origin "$ORIGIN"
bench_keys

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
metric() { curl -s "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

printf '| cached tokens | rules | RSS after start | RSS with them cached | per entry |\n| --- | --- | --- | --- | --- |\n'
for n in "${SIZES[@]}"; do
# Every token the same rules (one application's users: what sharing rule
# sets is for), then each token a resource of its own (nothing shared).
for resource in account:a1 'account:a{i}'; do
  bench_narrowgate "$work/ng.yaml" "proxy: \"$PROXY\", admin: \"$ADMIN\"" "" "upstream: { addresses: [\"$ORIGIN\"] }
server: { worker_threads: 1 }
cache: { capacity: $((n + n / 5)), max_ttl: 1h }"
  bench_sign user --count "$n" --resource "$resource" > "$work/tokens"
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
  wait_up "http://$ADMIN/healthz"
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
