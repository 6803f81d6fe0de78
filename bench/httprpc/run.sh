#!/usr/bin/env bash
# RPC over HTTP against RPC over gRPC, same run: connect→welcome→confirm per server CPU-second with
# ringcable's Connect and subscribe Command going to an equally trivial app — tools/rpc_stub's demo
# app over gRPC, bench/httprpc/app.mjs (the same answers, Node's http server, keep-alive) over HTTP.
# ROUNDS alternated pairs, every server and app restarted before every measurement; the figure is
# subscribed connections / ringcable's own CPU seconds over the connect phase (/proc/PID/stat), so
# the apps' CPU is not counted for either transport.
#
#   bench/httprpc/run.sh [BUILD_DIR]      (default: build)
#   ROUNDS=5 CONNECT_N=10000 CONCURRENCY=500 WORKERS=0
#
# Every load-tool run is bounded (--timeout and `timeout`); every process started here is stopped by
# PID (bench/lib.sh). Logs stay in /tmp/ringcable-httprpc.*.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
ROUNDS="${ROUNDS:-5}"
CONNECT_N="${CONNECT_N:-10000}"
CONCURRENCY="${CONCURRENCY:-500}"
WORKERS="${WORKERS:-0}"

LOGDIR="$(mktemp -d /tmp/ringcable-httprpc.XXXXXX)"
source "$ROOT/bench/lib.sh"
require_binaries
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
command -v node >/dev/null || { log "needs node (scripts/setup.sh installs it)"; exit 1; }
trap stop_all EXIT
RESULTS="$LOGDIR/results.jsonl"

PORT=29180
BPORT=29190
RPORT=29151  # rpc_stub (gRPC)
APORT=29152  # app.mjs (HTTP)

# measure TRANSPORT: one connect run on a fresh server and app; appends a result line.
measure() {
  local transport=$1 rpc_host
  stop_all
  if [[ $transport == grpc ]]; then
    "$RPC_BIN" --address "127.0.0.1:$RPORT" >>"$LOGDIR/rpc_stub.log" 2>&1 &
    PIDS+=($!)
    wait_port "$RPORT" rpc_stub
    rpc_host="127.0.0.1:$RPORT"
  else
    node "$ROOT/bench/httprpc/app.mjs" --port "$APORT" >>"$LOGDIR/app.log" 2>&1 &
    PIDS+=($!)
    wait_port "$APORT" app.mjs
    rpc_host="http://127.0.0.1:$APORT/_anycable"
  fi
  "$RC_BIN" --host 127.0.0.1 --port "$PORT" --http_broadcast_port "$BPORT" --broadcast_adapter http \
    --workers "$WORKERS" --rpc_host "$rpc_host" >>"$LOGDIR/ringcable.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$PORT" ringcable
  local out
  out=$(timeout 200 "$LOAD" --mode connect --url "ws://127.0.0.1:$PORT/cable" \
    --connections "$CONNECT_N" --concurrency "$CONCURRENCY" --server-pid "$SERVER_PID" \
    --no-progress --timeout 60 2>"$LOGDIR/load.err" | sed -n 's/^RESULT //p')
  stop_all
  [[ -n "$out" ]] || { log "$transport: no RESULT (see $LOGDIR)"; return 1; }
  echo "$out" | jq -c --arg t "$transport" '{transport: $t} + .' >>"$RESULTS"
  echo "$out" | jq -r --arg t "$transport" '"\($t): \(.subscribed) subscribed, server CPU \(.server_cpu_s) s, \(.subscribed / .server_cpu_s | floor) per server CPU-second, \(.connects_per_s)/s wall clock"' >&2
}

log "start $(date -u +%H:%M) UTC, $(git -C "$ROOT" rev-parse --short HEAD), load average $(cut -d' ' -f1 /proc/loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
  # Alternate which goes first, so neither always runs on a warmer (or busier) machine.
  if ((r % 2)); then measure grpc; measure http; else measure http; measure grpc; fi
done

jq -rs '
  def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def rate: .subscribed / .server_cpu_s;
  (map(select(.transport == "grpc")) | map(rate)) as $g
  | (map(select(.transport == "http")) | map(rate)) as $h
  | (map(select(.transport == "grpc")) | map(.connects_per_s)) as $gw
  | (map(select(.transport == "http")) | map(.connects_per_s)) as $hw
  | "| transport | connects per server CPU-second: median (rounds) | wall clock connects/s: median |",
    "|---|---|---|",
    "| gRPC (rpc_stub) | \($g | med | floor) (\($g | map(floor) | join(", "))) | \($gw | med | floor) |",
    "| HTTP (app.mjs) | \($h | med | floor) (\($h | map(floor) | join(", "))) | \($hw | med | floor) |",
    "",
    "HTTP / gRPC, connects per server CPU-second: \((($h | med) / ($g | med)) * 100 | floor / 100)"
' "$RESULTS"
log "logs and results.jsonl in $LOGDIR; load average now $(cut -d' ' -f1 /proc/loadavg)"
