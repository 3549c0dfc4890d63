#!/usr/bin/env bash
# Every figure of benches/README.md in one run, on this machine:
# benches/load.sh (one core: nginx plain and narrowgate enforcing; the cold
# stream against HAProxy's jwt_verify; two cores at 256 connections: nginx
# with 1 and 2 workers, narrowgate with 1 and 2 threads), benches/rss.sh
# (RSS at 10,000 and 100,000 cached tokens) and benches/mint.sh (narrow and
# create throughput and p99 on SQLite and PostgreSQL).
#
#   benches/all.sh [DURATION_SECONDS] [ROUNDS]     (defaults 10 and 3)
#
# Needs: apt-get install wrk nginx-light haproxy postgresql bc
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
ROUNDS=${2:-3}
cargo build --release --quiet
echo "# $(date -u +%Y-%m-%d) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo; echo "## benches/load.sh $DUR $ROUNDS"; benches/load.sh "$DUR" "$ROUNDS"
echo; echo "## benches/rss.sh 10000 100000"; benches/rss.sh 10000 100000
echo; echo "## benches/mint.sh $DUR"; NARROWGATE_BIN=./target/release/narrowgate benches/mint.sh "$DUR"
