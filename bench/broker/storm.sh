#!/usr/bin/env bash
# Issue #14's reconnect storm, ringcable against itself in the same run (rounds alternate the two
# setups, the server restarted before each, the demo RPC app tools/rpc_stub, --broker memory):
#   - fresh: CLIENTS ext clients connect and subscribe (Connect + subscribe RPC each);
#   - restore: CLIENTS ext clients connect and subscribe (not measured), drop their sockets,
#     MESSAGES publications go to the stream, then every client reconnects with ?sid= (no RPC) and
#     asks `history` since the drop: measured, each must get all MESSAGES, none lost or reordered.
# The figure is sessions per server CPU-second (the server's own /proc/PID/stat, measured phase).
#
#   bench/broker/storm.sh [BUILD_DIR]     (default: build)   ROUNDS=3 CLIENTS=5000 MESSAGES=100
#
# Every load-tool run is bounded (--timeout and `timeout`); every process is stopped by PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-5000}"
MESSAGES="${MESSAGES:-100}"
LOGDIR="$(mktemp -d /tmp/ringcable-storm-bench.XXXXXX)"
source "$ROOT/bench/lib.sh"
require_binaries
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
trap stop_all EXIT
RESULTS="$LOGDIR/results.jsonl"
PORT=29580
BPORT=29590
RPORT=29551

run() {  # run NAME load-tool-args...
  local name=$1
  shift
  start_ringcable "$PORT" "$BPORT" "$RPORT" --broadcast_adapter http --broker memory
  local out
  out=$(timeout 300 "$LOAD" --url "ws://127.0.0.1:$PORT/cable" \
    --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --server-pid "$SERVER_PID" \
    --no-progress --timeout 120 --connections "$CLIENTS" "$@" 2>"$LOGDIR/load.err" |
    sed -n 's/^RESULT //p')
  stop_all
  [[ -n "$out" ]] || { log "$name: no RESULT (see $LOGDIR)"; return 1; }
  echo "$out" | jq -c --arg t "$name" '{test: $t} + .' >>"$RESULTS"
  echo "$out" | jq -r --arg t "$name" '"\($t): \(.subscribed) sessions, server CPU \(.server_cpu_s) s" +
    (if .mode == "restore" then ", \(.deliveries)/\(.expected_deliveries) caught up, lost \(.lost), out-of-order \(.out_of_order), new sessions \(.not_restored)" else "" end)' >&2
}

echo "ringcable $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), logs in $LOGDIR" >&2
for r in $(seq "$ROUNDS"); do
  run fresh --mode connect --ext
  run restore --mode restore --messages "$MESSAGES"
done

med() { jq -s 'sort | if length == 0 then null else .[(length - 1) / 2 | floor] end'; }
vals() { jq -r --arg t "$1" "select(.test == \$t) | $2" "$RESULTS"; }
per_cpu='(.subscribed / .server_cpu_s | floor)'
base=$(vals fresh "$per_cpu" | med)
echo
echo "| $CLIENTS clients | sessions per server CPU-second (median) | ratio to fresh Connects | every round |"
echo "|---|---|---|---|"
for t in fresh restore; do
  m=$(vals "$t" "$per_cpu" | med)
  printf '| %s | %s | %s | %s |\n' "$t" "$m" "$(jq -n "$m / $base * 100 | floor / 100")" \
    "$(vals "$t" "$per_cpu" | paste -sd' ' -)"
done
bad=$(jq -s '[.[] | select(.mode == "restore") | .lost + .out_of_order + .not_restored +
  (.expected_deliveries - .deliveries)] | add' "$RESULTS")
echo
echo "restore rounds: $MESSAGES messages caught up per client; lost + out-of-order + missing + not restored = $bad"
