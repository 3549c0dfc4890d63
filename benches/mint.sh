#!/usr/bin/env bash
# The token service under load: wrk posts to the api listener at 64
# connections — narrowing the bootstrap token (`POST /v1/tokens/narrow`),
# creating tokens (`POST /v1/tokens`) and exchanging the bootstrap token
# (RFC 8693, `POST /v1/oauth/token`) — against a store on disk:
# SQLite (WAL, synchronous=FULL) and a private PostgreSQL server with
# fsync on (synchronous_commit on). Each 201 (200 for an exchange) is a
# token signed, stored and durable. The gateway is pinned to core 0 (its
# store's PostgreSQL server too), wrk to core 1.
# Reports tokens/s (successes only), failed requests (any other status),
# p50/p99 latency and the gateway's CPU time per request.
#
#   benches/mint.sh [DURATION_SECONDS] [sqlite|postgres|both]   (defaults 10, both)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
WHICH=${2:-both}
CONNS=64
. benches/common.sh
pg_ctl_bin=
on_exit=stop_pg
stop_pg() { [ -z "$pg_ctl_bin" ] || as_pg "$pg_ctl_bin" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

need wrk wrk
need taskset util-linux

narrowgate_bin
API=127.0.0.1:18181

# One key signs; the demo's verifying key is replaced by another made here.
kid=$($NG keys generate --alg es256 --out "$work/keys" | awk '/^kid:/{print $2}')
other=$($NG keys generate --alg es256 --out "$work/keys" | awk '/^kid:/{print $2}')

config() { # file, store section
  sed -e "s|^  proxy: .*|  proxy: 127.0.0.1:18180|" -e "s|^  admin: .*|  admin: 127.0.0.1:18182|" \
      -e "s|^  api: .*|  api: $API|" -e "s|public_key_file: keys/demo.pub.pem|public_key_file: keys/$other.pub.pem|" \
      -e "s|kid: demo|kid: $other|" -e '/^facades:/,/^applications:/{/^applications:/!d}' config/demo.yaml > "$1"
  cat >> "$1" <<CONF
$2
CONF
  # the signing key beside the verifying one; its tokens may be exchanged
  sed -i "s|^    keys:|    signing_keys: [{ kid: \"$kid\", private_key_file: keys/$kid.pem }]\n    exchange: { clients: [\"*\"] }\n    keys:|" "$1"
}

printf '| %-30s | %9s | %6s | %8s | %8s | %13s |\n' "store, operation" "tokens/s" "failed" "p50" "p99" "CPU per request"
printf '|%s|%s|%s|%s|%s|%s|\n' "--------------------------------" "-----------" "--------" "----------" "----------" "---------------"

bench() { # label path body pid — NAME in the body becomes a name used once, ROOT the bootstrap token; env CT
  local label=$1 path=$2 body=$3 pid=$4
  cat > "$work/post.lua" <<LUA
local root = io.open("$work/root"):read("*l")
local headers = {
  ["Content-Type"] = "${CT:-application/json}",
  ["Authorization"] = "Bearer " .. root,
}
local prefix, i = "", 0
init = function(args) prefix = args[1] end
request = function()
  i = i + 1
  return wrk.format("POST", nil, headers, (string.gsub(string.gsub('$body', "NAME", prefix .. i), "ROOT", root)))
end
LUA
  taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$work/post.lua" "http://$API$path" -- warm > /dev/null 2>&1 || true
  local before after out reqs
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$work/post.lua" "http://$API$path" -- run)
  after=$(cpu_ticks "$pid")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  failed=$(awk '/Non-2xx/{print $5}' <<<"$out")
  printf '| %-30s | %9s | %6s | %8s | %8s | %10.1f µs |\n' "$label" \
    "$(awk -v f="${failed:-0}" '/Requests\/sec/{printf "%d", $2 * (1 - f / '"$reqs"')}' <<<"$out")" "${failed:-0}" \
    "$(awk '$1=="50%"{print $2}' <<<"$out")" "$(awk '$1=="99%"{print $2}' <<<"$out")" \
    "$(echo "($after - $before) * 1000000 / $TICK / $reqs" | bc -l)"
}

run_store() { # name, store section
  config "$work/$1.yaml" "$2"
  taskset -c 0 $NG serve --config "$work/$1.yaml" >"$work/$1.out" 2>"$work/$1.log" & local pid=$!; pids+=($pid)
  for _ in $(seq 1 200); do [ -s "$work/root" ] && curl -s -o /dev/null "http://$API/v1/manifest" && break; sleep 0.1; done
  [ -s "$work/root" ] || { echo "$1: no bootstrap token" >&2; cat "$work/$1.log" >&2; exit 1; }
  bench "$1, narrow" /v1/tokens/narrow \
    '{"applications":["trading-account-management-api"],"validityInHours":1}' "$pid"
  bench "$1, create" /v1/tokens '{"name":"bench-NAME","lifetime":"1h","role":"User"}' "$pid"
  # RFC 8693: the bootstrap token exchanged for one application, an hour.
  CT=application/x-www-form-urlencoded bench "$1, exchange" /v1/oauth/token \
    'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=ROOT&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&resource=trading-account-management-api&narrowing=%7B%22validityInHours%22%3A1%7D' "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$work/root"
}

if [ "$WHICH" != postgres ]; then
  run_store sqlite "store:
  sqlite: { path: $work/sqlite/narrowgate.db, bootstrap_token_file: $work/root, create_if_missing: true }"
fi

if [ "$WHICH" != sqlite ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
  [ -x "$pg_bin/initdb" ] || { echo "missing PostgreSQL: apt-get install -y postgresql" >&2; exit 1; }
  mkdir -p "$work/pg"; [ "$(id -u)" = 0 ] && chown postgres: "$work/pg" && chmod 755 "$work"
  as_pg "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 > "$work/pg/initdb.log" 2>&1
  pg_ctl_bin="$pg_bin/pg_ctl"
  as_pg taskset -c 0 "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
    -o "-p 18183 -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on" start > /dev/null
  run_store postgres "store:
  postgres: { url: \"postgres://postgres@127.0.0.1:18183/postgres\", bootstrap_token_file: $work/root, create_if_missing: true }"
fi
