#!/usr/bin/env bash
# The soak: an enforce-only gateway (a sidecar) under a steady load at about
# 80 % of what its one core can serve, for DURATION seconds (default 600),
# sampled every 10 s, while the world around it moves as it does in
# production. Run on demand, not in CI (about 11 minutes).
#
#   benches/soak.sh [DURATION_SECONDS]
#   NARROWGATE_BIN=path benches/soak.sh …   (a given build)
#   SOAK_OUT=dir benches/soak.sh …          (where soak.csv and soak.png go;
#                                            default benches/)
#
# The setup, the same as in production, on one machine:
# - `narrowgate demo` is the issuer (token service, SQLite store, JWKS,
#   revocation feed), on core 1;
# - the sidecar (config/enforce-only.yaml: keys from the issuer's JWKS,
#   revocations from its feed) on core 0 alone, forwarding to an nginx
#   origin; its token cache holds fewer tokens than the load uses, so a
#   share of the tokens is verified again (cold) each time it comes back;
# - its feed runs through a TCP relay (socat), cut once a minute: the feed
#   reconnects and resumes;
# - the sidecar reloads once a minute (its manifest is edited: the config's
#   directory is watched);
# - wrk (core 1) sends, on 128 connections, 3000 distinct narrowed tokens in
#   turn: 90 % allowed reads, 8 % reads of an account the token is not for
#   (403), 2 % a token that is not one (401), paced toward 80 % of the rate
#   measured at saturation first (wrk paces by whole milliseconds, so the
#   rate reached is said);
# - the token service meanwhile narrows a token each second and revokes the
#   one before (the sidecar's revocation set grows), and every 10 s revokes
#   one of the load's tokens (its requests are refused from then on: 401).
#
# Each sample: the sidecar's RSS, open descriptors, tasks (both runtimes),
# token-cache entries, the interval's requests per second, p50/p99/p999
# latency, the share of requests allowed, and unexpected outcomes (a
# status other than 200/401/403, or a socket error). The run passes when,
# after a minute of warm-up, RSS and descriptors stay within 5 % of the
# first sample after it, the last three minutes' median p99 is within 1.5x
# of the first three's, at least 85 % of each sample's requests are allowed
# (90 % are meant to be, less the revoked tokens': a gateway refusing good
# tokens fails), every minute's reload and feed cut happened (each cut
# followed by a reconnect), the token service's churn had no failure, and
# nothing unexpected happened. soak.csv has the samples, soak.png plots
# them.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-600}
OUT=${SOAK_OUT:-benches}
. benches/common.sh
need wrk wrk
need nginx nginx-light
need socat socat
need gnuplot gnuplot-nox
need taskset util-linux
need python3 python3
need curl curl
narrowgate_bin

ORIGIN=127.0.0.1:18280
RELAY=127.0.0.1:18281
PROXY=127.0.0.1:18180
ADMIN=127.0.0.1:19190
# The load's connections (each paced by whole milliseconds: more give a finer rate).
CONNS=128

# --- the issuer, the origin, the relay --------------------------------------
taskset -c 1 "$NG" demo > "$work/demo.out" 2> "$work/demo.log" & pids+=($!)
for _ in $(seq 1 100); do grep -q '^export NG_ADMIN_TOKEN=' "$work/demo.out" 2>/dev/null && break; sleep 0.2; done
ADMIN_TOKEN=$(sed -n 's/^export NG_ADMIN_TOKEN=//p' "$work/demo.out")
API=$(sed -n 's/^export NG_API=//p' "$work/demo.out")
[ -n "$ADMIN_TOKEN" ] || { echo "the demo did not start" >&2; cat "$work/demo.log" >&2; exit 1; }
bench_origin "$ORIGIN" taskset -c 1
relay() { taskset -c 1 socat TCP-LISTEN:${RELAY##*:},bind=127.0.0.1,reuseaddr,fork TCP:${API#http://} & relay_pid=$!; }
relay
cut_relay() { pkill -P "$relay_pid" 2>/dev/null || true; kill "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true; relay; }
on_exit='cut_relay_off'
cut_relay_off() { pkill -P "$relay_pid" 2>/dev/null || true; kill "$relay_pid" 2>/dev/null || true; }

# --- the sidecar -------------------------------------------------------------
mkdir -p "$work/sidecar/keys"
cp config/keys/demo-feed.token "$work/sidecar/keys/"
sed -e "s|proxy: 127.0.0.1:8180|proxy: $PROXY|" -e "s|admin: 127.0.0.1:9190|admin: $ADMIN|" \
    -e "s|addresses: \[\"127.0.0.1:3000\"\]|addresses: [\"$ORIGIN\"]\\n  pool_max_idle: 256|" \
    -e "s|urls: \[\"http://127.0.0.1:8081/v1/revocations\"\]|urls: [\"http://$RELAY/v1/revocations\"]|" \
    config/enforce-only.yaml > "$work/sidecar/ng.yaml"
printf 'cache:\n  capacity: 2500\n' >> "$work/sidecar/ng.yaml"
for edited in "$RELAY" "$ORIGIN" "$PROXY" "$ADMIN" "jwks_url: $API/"; do
  grep -q "$edited" "$work/sidecar/ng.yaml" || { echo "config/enforce-only.yaml changed: the soak's edit for $edited no longer applies" >&2; exit 1; }
done
taskset -c 0 "$NG" serve --config "$work/sidecar/ng.yaml" 2> "$work/sidecar.log" & ng=$!; pids+=($ng)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://$ADMIN/readyz" && break; sleep 0.2; done
curl -sf -o /dev/null "http://$ADMIN/readyz" || { echo "the sidecar is not ready" >&2; tail "$work/sidecar.log" >&2; exit 1; }

# --- tokens and the load -----------------------------------------------------
echo "narrowing 3000 tokens..." >&2
taskset -c 1 python3 benches/soak.py mint "$API" "$ADMIN_TOKEN" 3000 > "$work/tokens"
cat > "$work/soak.lua" <<LUA
local tokens = {}
for line in io.lines("$work/tokens") do tokens[#tokens + 1] = line end
local pause = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
local i = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() ok, unauthorized, forbidden, other = 0, 0, 0, 0 end
request = function()
  i = i + 1
  local token = tokens[(i * 7919) % #tokens + 1]
  local k = i % 50
  if k < 4 then
    return wrk.format("GET", "/users/current/accounts/other-account", { ["Authorization"] = "Bearer " .. token })
  elseif k == 4 then
    return wrk.format("GET", "/users/current/accounts/demo-account-1", { ["Authorization"] = "Bearer not-a-token" })
  end
  return wrk.format("GET", "/users/current/accounts/demo-account-1", { ["Authorization"] = "Bearer " .. token })
end
response = function(status)
  if status == 200 then ok = ok + 1
  elseif status == 401 then unauthorized = unauthorized + 1
  elseif status == 403 then forbidden = forbidden + 1
  else other = other + 1 end
end
if pause > 0 then
  delay = function() return pause end
end
done = function(summary, latency)
  local o, u, f, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); u = u + t:get("unauthorized"); f = f + t:get("forbidden"); x = x + t:get("other")
  end
  local e = summary.errors
  io.write(string.format("SAMPLE %d %.1f %d %d %d %d %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), o, u + f, x, e.connect + e.read + e.write + e.timeout))
end
LUA
load() { # seconds delay_ms — one wrk run; prints its SAMPLE line's fields:
  # requests rps p50_us p99_us p999_us allowed refused unexpected_status socket_errors
  SOAK_DELAY_MS=$2 taskset -c 1 wrk -t1 -c"$CONNS" -d"$1"s -s "$work/soak.lua" "http://$PROXY" | sed -n 's/^SAMPLE //p'
}
echo "warming up, then measuring saturation..." >&2
load 10 0 > /dev/null
before=$(cpu_ticks "$ng")
read -r _ sat_rps _ <<< "$(load 10 0)"
busy=$(awk -v a="$before" -v b="$(cpu_ticks "$ng")" -v t="$TICK" 'BEGIN{printf "%.0f", (b - a) / t / 10 * 100}')
echo "saturation: the sidecar's core was ${busy} % busy" >&2
# CONNS connections, each waiting DELAY ms between its requests (wrk's delay
# counts whole milliseconds): DELAY is found by trying, for 80 % of
# saturation.
target=$(awk -v r="$sat_rps" 'BEGIN{printf "%d", 0.8 * r}')
delay=$(awk -v r="$target" -v c="$CONNS" 'BEGIN{printf "%d", c * 1000 / r}')
for _ in 1 2 3; do
  read -r _ rps _ <<< "$(load 4 "$delay")"
  next=$(awk -v d="$delay" -v r="$rps" -v t="$target" 'BEGIN{n = d * r / t; printf "%d", (n < 1 ? 1 : n + 0.5)}')
  echo "  each connection one request per $delay ms: $rps requests/s" >&2
  [ "$next" = "$delay" ] && break
  delay=$next
done
echo "saturation: $sat_rps requests/s; target $target; pacing each connection to one request per $delay ms" >&2

# --- the soak ----------------------------------------------------------------
taskset -c 1 python3 benches/soak.py churn "$API" "$ADMIN_TOKEN" "$DURATION" "$work/tokens" > "$work/churn.json" & churn=$!
pids+=($churn)
metric() { curl -s "http://$ADMIN/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {printf "%d", s}'; }
csv="$OUT/soak.csv"
echo "t_s,rss_mib,fds,tasks,cache_entries,rps,p50_ms,p99_ms,p999_ms,unexpected,feed_connects,reloads,allowed_share" > "$csv"
started=$(date +%s)
samples=$((DURATION / 10))
for n in $(seq 1 "$samples"); do
  t=$((n * 10))
  # A reload: the manifest changes (an application's description), as a
  # deploy changes it; the config's directory is watched.
  if [ $((t % 60)) = 30 ]; then
    sed -i -e "s|^    description: Trading account management API.*|    description: Trading account management API, $t|" "$work/sidecar/ng.yaml"
  fi
  if [ $((t % 60)) = 0 ]; then cut_relay; fi
  load 10 "$delay" > "$work/sample" & sampling=$!
  pids+=($sampling)
  # (Read in the middle of the interval, with the load's connections open.)
  sleep 5
  rss=$(awk '/^VmRSS:/{printf "%.1f", $2 / 1024}' "/proc/$ng/status")
  fds=$(find "/proc/$ng/fd" -mindepth 1 -maxdepth 1 | wc -l)
  tasks=$(metric 'narrowgate_runtime_tasks{')
  entries=$(metric narrowgate_token_cache_entries)
  connects=$(metric narrowgate_revocation_feed_connects)
  reloads=$(metric 'narrowgate_config_reloads_total{result="success"')
  wait "$sampling"
  read -r requests rps p50 p99 p999 allowed _ other errors < "$work/sample"
  echo "$t,$rss,$fds,$tasks,$entries,$rps,$(awk -v a="$p50" -v b="$p99" -v c="$p999" 'BEGIN{printf "%.3f,%.3f,%.3f", a/1000, b/1000, c/1000}'),$((other + errors)),$connects,$reloads,$(awk -v a="$allowed" -v n="$requests" 'BEGIN{printf "%.3f", a / n}')" >> "$csv"
  tail -1 "$csv" >&2
done
wait "$churn" || true
echo "took $(( $(date +%s) - started )) s; the token service: $(cat "$work/churn.json")" >&2
churn_failed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$work/churn.json" 2>/dev/null || echo unknown)

# --- verdict and plot --------------------------------------------------------
awk -F, -v warm=60 -v cuts=$((DURATION / 60)) -v reloads=$(((DURATION + 30) / 60)) -v churn="$churn_failed" -v target="$target" '
  NR == 1 { next }
  $1 <= warm { next }
  !base_rss { base_rss = $2; base_fds = $3 }
  { rss = $2; fds = $3; unexpected += $10; p99[++n] = $8; rps += $6
    if (!min_share || $13 < min_share) min_share = $13; connects = $11; reloaded = $12
    if ($2 > max_rss) max_rss = $2; if (!min_rss || $2 < min_rss) min_rss = $2
    if ($3 > max_fds) max_fds = $3; if (!min_fds || $3 < min_fds) min_fds = $3 }
  function median(a, from, to,   k, m, i, j, t, v) {
    m = 0; for (k = from; k <= to; k++) v[++m] = a[k]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END {
    w = (n >= 36) ? 18 : int(n / 2)
    first = median(p99, 1, w); last = median(p99, n - w + 1, n)
    rss_ok = (max_rss <= base_rss * 1.05 && min_rss >= base_rss * 0.95)
    fds_ok = (max_fds <= base_fds * 1.05 + 1 && min_fds >= base_fds * 0.95 - 1)
    lat_ok = (last <= first * 1.5)
    share_ok = (min_share >= 0.85)
    world_ok = (reloaded >= reloads && connects >= cuts + 1 && churn == "0")
    printf "RSS %.1f-%.1f MiB (first after warm-up %.1f): %s\n", min_rss, max_rss, base_rss, rss_ok ? "flat" : "NOT FLAT"
    printf "descriptors %d-%d (first %d): %s\n", min_fds, max_fds, base_fds, fds_ok ? "flat" : "NOT FLAT"
    printf "p99 median, first %d samples %.3f ms, last %d %.3f ms: %s\n", w, first, w, last, lat_ok ? "no drift" : "DRIFT"
    printf "rate %.0f requests/s on average (%.0f %% of saturation; target 80 %%)\n", rps / n, rps / n / target * 80
    printf "allowed share, lowest sample: %.3f: %s\n", min_share, share_ok ? "ok" : "GOOD TOKENS REFUSED"
    printf "reloads %d (of %d), feed connects %d (of %d), churn failures %s: %s\n", reloaded, reloads, connects, cuts + 1, churn, world_ok ? "ok" : "NOT AS PLANNED"
    printf "unexpected outcomes: %d\n", unexpected
    verdict = (rss_ok && fds_ok && lat_ok && share_ok && world_ok && unexpected == 0)
    print verdict ? "PASS" : "FAIL"
    exit verdict ? 0 : 1 }' "$csv" | tee "$work/verdict" || true
gnuplot <<PLOT
set terminal pngcairo size 1200,900 font "sans,10"
set output "$OUT/soak.png"
set datafile separator ","
set key autotitle columnhead top left
set multiplot layout 2,2 title "narrowgate soak: one core at about 80 % of saturation for $((DURATION / 60)) min; a reload and a feed cut each minute"
set xlabel "seconds"
set title "resident memory (MiB)"
set yrange [0:*]
plot "$csv" using 1:2 with lines lw 2 notitle
set title "open descriptors and tasks"
plot "$csv" using 1:3 with lines lw 2 title "descriptors", "" using 1:4 with lines lw 2 title "tasks"
set title "token cache entries, requests/s (/10)"
plot "$csv" using 1:5 with lines lw 2 title "cache entries", "" using 1:(\$6/10) with lines lw 2 title "requests/s / 10"
set title "latency (ms)"
set yrange [*:*]
set logscale y
plot "$csv" using 1:7 with lines lw 2 title "p50", "" using 1:8 with lines lw 2 title "p99", "" using 1:9 with lines lw 2 title "p99.9"
unset multiplot
PLOT
echo "samples: $csv; plot: $OUT/soak.png" >&2
tail -1 "$work/verdict" | grep -q PASS
