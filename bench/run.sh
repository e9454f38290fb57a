#!/usr/bin/env bash
# End-to-end ingest benchmark: Aion (single process, RF 1), an Aion RF 3 cluster
# (3 ingesters + distributor), VictoriaMetrics and Prometheus on the same
# pre-encoded remote-write bodies. Builds the two
# binaries (dev profile, optimised dependencies) and runs `aion-bench ingest`.
#
#   bench/run.sh                          # defaults: 100k series x 20 steps, 4 connections
#   bench/run.sh --steps 60               # longer, closer to steady state
#   bench/run.sh --targets aion           # only Aion RF 1 (aion-rf3: only the cluster)
#
# Every extra argument goes to `aion-bench ingest` (see `aion-bench ingest --help`).
# Output (the table, BENCH/RATIO/THREADS lines) is also saved to
# $BENCH_OUT (default: ${TMPDIR:-/tmp}/aion-bench-<UTC timestamp>.txt).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aion/target}"
CARGO="${CARGO:-cargo}"

$CARGO build --bin aion
$CARGO build -p aion-bench

out="${BENCH_OUT:-${TMPDIR:-/tmp}/aion-bench-$(date -u +%Y%m%dT%H%M%SZ).txt}"
{
  echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') aion-bench ingest $*"
  echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; aion $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
  "$CARGO_TARGET_DIR/debug/aion-bench" ingest --aion-config bench/aion-bench.yaml "$@" 2>&1
} | tee "$out"
exit "${PIPESTATUS[0]}"
