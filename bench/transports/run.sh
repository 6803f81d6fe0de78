#!/usr/bin/env bash
# Issue #17's transport benchmarks, SSE against WebSocket subscribers in the same run (rounds
# alternate the transports, every server restarted before every measurement, the demo RPC app
# tools/rpc_stub, both subscribed through the same Connect + subscribe RPCs to one stream):
#   - single-frame deliveries per server CPU-second, 1k subscribers (WebSocket frames vs SSE
#     events, each a shared frame per publication);
#   - bytes per extra idle subscribed connection (5k → 15k), WebSocket vs SSE.
# Per-core figures divide by the server's own CPU seconds (/proc/PID/stat, measured phase only).
#
#   bench/transports/run.sh [BUILD_DIR]     (default: build)   ROUNDS=3 RATE=256 WORKERS=0
#   BASE_BIN=/path/to/ringcable   also runs WebSocket subscribers against that server (e.g. the
#                                 main branch's build) in the same rounds: "ws_base" rows.
#
# Every load-tool run is bounded (--timeout and `timeout`); every process is stopped by PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
ROUNDS="${ROUNDS:-3}"
RATE="${RATE:-256}"
WORKERS="${WORKERS:-0}"
LOGDIR="$(mktemp -d /tmp/ringcable-transports-bench.XXXXXX)"
source "$ROOT/bench/lib.sh"
require_binaries
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
trap stop_all EXIT
RESULTS="$LOGDIR/results.jsonl"
PORT=29280
BPORT=29290
RPORT=29251

# run NAME ws|sse|ws_base load-tool-args...
run() {
  local name=$1 transport=$2
  shift 2
  local bin=$RC_BIN sse=(--sse)
  if [[ "$transport" == ws_base ]]; then
    RC_BIN=$BASE_BIN
    sse=()
    transport=ws
  fi
  start_ringcable "$PORT" "$BPORT" "$RPORT" --broadcast_adapter http --workers "$WORKERS" "${sse[@]}"
  RC_BIN=$bin
  local url=(--url "ws://127.0.0.1:$PORT/cable")
  [[ "$transport" == sse ]] && url=(--sse --url "http://127.0.0.1:$PORT/events")
  local out
  out=$(timeout 200 "$LOAD" "${url[@]}" \
    --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --server-pid "$SERVER_PID" \
    --no-progress --timeout 60 "$@" 2>"$LOGDIR/load.err" | sed -n 's/^RESULT //p')
  stop_all
  [[ -n "$out" ]] || { log "$name: no RESULT (see $LOGDIR)"; return 1; }
  echo "$out" | jq -c --arg t "$name" '{test: $t} + .' >>"$RESULTS"
  echo "$out" | jq -r --arg t "$name" '"\($t): server CPU \(.server_cpu_s) s" +
    (if .mode == "broadcast" then ", \(.deliveries) deliveries, lost \(.lost), out-of-order \(.out_of_order)"
     else ", RSS \(.server_rss_connected_kb) KiB" end)' >&2
}

echo "ringcable $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), logs in $LOGDIR" >&2
bcast=(--mode broadcast --connections 1000 --messages $((RATE * 4)) --msg-rate "$RATE")
BASE_BIN="${BASE_BIN:-}"
setups=(ws sse)
[[ -z "$BASE_BIN" ]] || setups=(ws_base ws sse)
for r in $(seq "$ROUNDS"); do
  for t in "${setups[@]}"; do run "$t" "$t" "${bcast[@]}"; done
done
if [[ -n "$BASE_BIN" ]]; then
  run idle5k_ws_base ws_base --mode idle --connections 5000 --duration 3
  run idle15k_ws_base ws_base --mode idle --connections 15000 --duration 3
fi
run idle5k_ws ws --mode idle --connections 5000 --duration 3
run idle15k_ws ws --mode idle --connections 15000 --duration 3
run idle5k_sse sse --mode idle --connections 5000 --duration 3
run idle15k_sse sse --mode idle --connections 15000 --duration 3

med() { jq -s 'sort | if length == 0 then null else .[(length - 1) / 2 | floor] end'; }
vals() { jq -r --arg t "$1" "select(.test == \$t) | $2" "$RESULTS"; }
per_cpu='(.deliveries / .server_cpu_s | floor)'
base=$(vals ws "$per_cpu" | med)
echo
echo "| subscribers | deliveries per server CPU-second (median) | ratio to WebSocket | every round |"
echo "|---|---|---|---|"
for t in "${setups[@]}"; do
  m=$(vals "$t" "$per_cpu" | med)
  printf '| %s | %s | %s | %s |\n' "$t" "$m" "$(jq -n "$m / $base * 100 | floor / 100")" \
    "$(vals "$t" "$per_cpu" | paste -sd' ' -)"
done
for t in "${setups[@]}"; do
  a=$(vals "idle5k_$t" '.server_rss_connected_kb')
  b=$(vals "idle15k_$t" '.server_rss_connected_kb')
  printf '| idle, %s: bytes per extra subscribed connection (5k → 15k) | %s B | RSS %s → %s KiB | |\n' \
    "$t" "$(( (b - a) * 1024 / 10000 ))" "$a" "$b"
done
lost=$(jq -s '[.[] | select(.mode == "broadcast") | .lost + .out_of_order] | add' "$RESULTS")
echo "| lost + out-of-order deliveries, all runs | $lost | | |"
