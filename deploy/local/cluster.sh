#!/usr/bin/env bash
# A local Aion cluster on loopback: 3 ingesters (16 shards by default, RF 3),
# 2 distributors and 2 queriers, all from one built `aion` binary.
#
#   deploy/local/cluster.sh up       # start, wait until every process is ready, print URLs
#   deploy/local/cluster.sh status   # one line per process: name pid state ready
#   deploy/local/cluster.sh down     # stop exactly the processes `up` started (pid files)
#
# `up` prints machine-readable lines (and nothing else on stdout):
#   push_url=http://127.0.0.1:19106/api/v1/push      (one per distributor)
#   query_url=http://127.0.0.1:19110/prometheus      (one per querier; Prometheus API base)
#   ingester_pid=<pid>                               (one per ingester)
#   distributor_pid=<pid> / querier_pid=<pid>
#   cluster_dir=<dir>
#
# Environment:
#   AION_BIN          the aion binary (default: $CARGO_TARGET_DIR/debug/aion,
#                     CARGO_TARGET_DIR defaulting to $HOME/.cache/aion/target;
#                     build it with `cargo build --bin aion [--release]`)
#   AION_CLUSTER_DIR  data, logs and pid files (default: ./.cluster)
#   AION_BASE_PORT    first port (default 19100). Ingesters: gRPC base+0..2,
#                     HTTP base+3..5; distributors: HTTP base+6,7, gRPC base+8,9;
#                     queriers: HTTP base+10,11
#   AION_DISTRIBUTORS number of distributors, 0..2 (default 2)
#   AION_QUERIERS     number of queriers, 0..2 (default 2)
#   AION_READY_TIMEOUT seconds `up` waits for readiness (default 60)
#   AION_EXTRA_QUERIER_FLAGS extra flags for the queriers (e.g. --querier.partial-response=true)
#   AION_EXTRA_DISTRIBUTOR_FLAGS extra flags for the distributors (e.g. --config.file=bench/aion-bench.yaml)
#   AION_SHARDS       shard count of a new cluster (default 16; e.g. 3 = one leader
#                     per ingester, the cheapest per sample; an existing cluster
#                     dir keeps the count it was created with, kept in
#                     $AION_CLUSTER_DIR/shard-count)
set -euo pipefail

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aion/target}"
AION_BIN="${AION_BIN:-$CARGO_TARGET_DIR/debug/aion}"
AION_CLUSTER_DIR="${AION_CLUSTER_DIR:-./.cluster}"
AION_BASE_PORT="${AION_BASE_PORT:-19100}"
AION_DISTRIBUTORS="${AION_DISTRIBUTORS:-2}"
AION_QUERIERS="${AION_QUERIERS:-2}"
AION_READY_TIMEOUT="${AION_READY_TIMEOUT:-60}"
AION_EXTRA_QUERIER_FLAGS="${AION_EXTRA_QUERIER_FLAGS:-}"
AION_EXTRA_DISTRIBUTOR_FLAGS="${AION_EXTRA_DISTRIBUTOR_FLAGS:-}"
SHARDS="${AION_SHARDS:-16}"
RF=3
INGESTERS=3

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || die "AION_SHARDS must be a positive integer, got '$SHARDS'"

base=$AION_BASE_PORT
ing_grpc() { echo $((base + $1 - 1)); }      # ingester id 1..3
ing_http() { echo $((base + 2 + $1)); }
dist_http() { echo $((base + 5 + $1)); }     # distributor 1..2
dist_grpc() { echo $((base + 7 + $1)); }
querier_http() { echo $((base + 9 + $1)); }  # querier 1..2

peers() {
  local out="" i
  for i in $(seq 1 $INGESTERS); do out+="${out:+,}$i=127.0.0.1:$(ing_grpc "$i")"; done
  echo "$out"
}

# Names of every process, in start order.
names() {
  local i
  for i in $(seq 1 $INGESTERS); do echo "ingester$i"; done
  for i in $(seq 1 "$AION_DISTRIBUTORS"); do echo "distributor$i"; done
  for i in $(seq 1 "$AION_QUERIERS"); do echo "querier$i"; done
}

ready_url() {
  local n=$1
  case $n in
    ingester*) echo "http://127.0.0.1:$(ing_http "${n#ingester}")/ready" ;;
    distributor*) echo "http://127.0.0.1:$(dist_http "${n#distributor}")/ready" ;;
    querier*) echo "http://127.0.0.1:$(querier_http "${n#querier}")/ready" ;;
  esac
}

args_of() {
  local n=$1 i
  case $n in
    ingester*)
      i=${n#ingester}
      echo "--target=ingester --ingester.node-id=$i --ingester.peers=$(peers) --ingester.shards=$SHARDS" \
        "--ingester.replication-factor=$RF --grpc.listen-address=127.0.0.1:$(ing_grpc "$i")" \
        "--http.listen-address=127.0.0.1:$(ing_http "$i") --data.dir=$AION_CLUSTER_DIR/$n"
      ;;
    distributor*)
      i=${n#distributor}
      echo "--target=distributor --ingester.peers=$(peers) --ingester.shards=$SHARDS" \
        "--grpc.listen-address=127.0.0.1:$(dist_grpc "$i") --http.listen-address=127.0.0.1:$(dist_http "$i")" \
        "--data.dir=$AION_CLUSTER_DIR/$n $AION_EXTRA_DISTRIBUTOR_FLAGS"
      ;;
    querier*)
      i=${n#querier}
      echo "--target=querier --ingester.peers=$(peers) --ingester.shards=$SHARDS" \
        "--http.listen-address=127.0.0.1:$(querier_http "$i") --data.dir=$AION_CLUSTER_DIR/$n $AION_EXTRA_QUERIER_FLAGS"
      ;;
  esac
}

pid_file() { echo "$AION_CLUSTER_DIR/pids/$1.pid"; }

# The pid recorded for $1 if that process is still alive and still an aion; empty otherwise.
live_pid() {
  local f pid
  f=$(pid_file "$1")
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # Guard against pid reuse: the process must run the aion binary we started.
  if [[ -r /proc/$pid/cmdline ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--target="; then
    return 0
  fi
  echo "$pid"
}

is_ready() { curl -fsS -m 2 -o /dev/null "$(ready_url "$1")" 2>/dev/null; }

cmd_up() {
  [[ -x $AION_BIN ]] || die "aion binary not found at $AION_BIN (build it: cargo build --bin aion, or set AION_BIN)"
  command -v curl >/dev/null || die "curl is required"
  mkdir -p "$AION_CLUSTER_DIR/pids" "$AION_CLUSTER_DIR/logs"
  AION_CLUSTER_DIR=$(cd "$AION_CLUSTER_DIR" && pwd)
  local n pid
  for n in $(names); do
    if [[ -n $(live_pid "$n") ]]; then
      die "$n is already running (pid $(live_pid "$n")); run '$0 down' first"
    fi
  done
  # The shard count is fixed when the cluster is created: remember it, so a
  # later `up` (without AION_SHARDS) starts every role with the same count.
  local count_file="$AION_CLUSTER_DIR/shard-count"
  if [[ -f $count_file ]]; then
    local kept
    kept=$(cat "$count_file")
    if [[ -n ${AION_SHARDS:-} && $AION_SHARDS != "$kept" ]]; then
      die "$AION_CLUSTER_DIR was created with $kept shards; AION_SHARDS=$AION_SHARDS cannot change that (use a new AION_CLUSTER_DIR)"
    fi
    SHARDS=$kept
  else
    echo "$SHARDS" >"$count_file"
  fi
  for n in $(names); do
    mkdir -p "$AION_CLUSTER_DIR/$n"
    # shellcheck disable=SC2046 # the argument list is split on purpose
    nohup "$AION_BIN" $(args_of "$n") --log.format=text --log.level="${AION_LOG_LEVEL:-info,openraft=warn}" \
      >>"$AION_CLUSTER_DIR/logs/$n.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(pid_file "$n")"
    log "started $n (pid $pid), log $AION_CLUSTER_DIR/logs/$n.log"
  done
  local deadline=$((SECONDS + AION_READY_TIMEOUT)) pending
  while :; do
    pending=""
    for n in $(names); do
      if [[ -z $(live_pid "$n") ]]; then
        log "$n exited; last log lines:"
        tail -n 20 "$AION_CLUSTER_DIR/logs/$n.log" >&2 || true
        cmd_down >/dev/null
        die "$n failed to start"
      fi
      is_ready "$n" || pending+=" $n"
    done
    [[ -z $pending ]] && break
    if ((SECONDS >= deadline)); then
      cmd_down >/dev/null
      die "not ready within ${AION_READY_TIMEOUT}s:$pending (logs in $AION_CLUSTER_DIR/logs)"
    fi
    sleep 0.2
  done
  local i
  for i in $(seq 1 "$AION_DISTRIBUTORS"); do echo "push_url=http://127.0.0.1:$(dist_http "$i")/api/v1/push"; done
  for i in $(seq 1 "$AION_QUERIERS"); do echo "query_url=http://127.0.0.1:$(querier_http "$i")/prometheus"; done
  for i in $(seq 1 $INGESTERS); do echo "ingester_pid=$(live_pid "ingester$i")"; done
  for i in $(seq 1 "$AION_DISTRIBUTORS"); do echo "distributor_pid=$(live_pid "distributor$i")"; done
  for i in $(seq 1 "$AION_QUERIERS"); do echo "querier_pid=$(live_pid "querier$i")"; done
  echo "cluster_dir=$AION_CLUSTER_DIR"
}

# Stops every process with a pid file: SIGTERM, up to 20 s, then SIGKILL.
cmd_down() {
  [[ -d $AION_CLUSTER_DIR/pids ]] || { log "nothing to stop in $AION_CLUSTER_DIR"; return 0; }
  local f n pid stopping=()
  for f in "$AION_CLUSTER_DIR"/pids/*.pid; do
    [[ -e $f ]] || continue
    n=$(basename "$f" .pid)
    pid=$(live_pid "$n")
    if [[ -n $pid ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$n:$pid")
    else
      rm -f "$f"
    fi
  done
  local deadline=$((SECONDS + 20)) entry
  for entry in "${stopping[@]}"; do
    n=${entry%%:*}
    pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$n (pid $pid) ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$n")"
    echo "stopped $n pid=$pid"
  done
}

cmd_status() {
  local n pid state ready any=1
  for n in $(names); do
    pid=$(live_pid "$n")
    if [[ -n $pid ]]; then
      state=running
      any=0
      if is_ready "$n"; then ready=ready; else ready=not-ready; fi
    else
      state=stopped ready=-
      pid=-
    fi
    printf '%-13s pid=%-8s %-8s %s %s\n' "$n" "$pid" "$state" "$ready" "$(ready_url "$n")"
  done
  return $any
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
