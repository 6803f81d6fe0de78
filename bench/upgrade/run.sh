#!/usr/bin/env bash
# Issue #19's live-upgrade benchmark: N subscribed connections (default 10k, ringcable-load), a steady
# publication rate over HTTP, and
#   - steady: no upgrade (the baseline latency);
#   - upgrade: SIGUSR2 once publishing runs; the old process hands every connection to the new one.
# Reported: the handover time and counts from the server log ("upgrade: complete in ..."), and the
# load tool's delivery latency p50/p99/max, lost and out-of-order for both runs (whole run: the
# publications delivered during the handover are in the upgrade run's tail).
#
#   bench/upgrade/run.sh [BUILD_DIR]     CONNS=10000 RATE=200 SECONDS_=10 WORKERS=2 ROUNDS=1
#
# Every process is stopped by PID (the upgraded server's from the log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
CONNS="${CONNS:-10000}"
RATE="${RATE:-200}"
SECS="${SECONDS_:-10}"
WORKERS="${WORKERS:-2}"
ROUNDS="${ROUNDS:-1}"
LOGDIR="$(mktemp -d /tmp/ringcable-upgrade-bench.XXXXXX)"
source "$ROOT/bench/lib.sh"
require_binaries
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
trap stop_all EXIT
PORT=29480
BPORT=29490
RPORT=29451

broadcasts_seen() {
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 &&
    cat <&3; } 2>/dev/null | sed -n 's/^anycable_go_broadcast_msg_total \([0-9]*\).*/\1/p'
}

run() {  # NAME upgrade(0|1)
  local name=$1 upgrade=$2
  : >"$LOGDIR/ringcable.log"
  start_ringcable "$PORT" "$BPORT" "$RPORT" --broadcast_adapter http --workers "$WORKERS" \
    --metrics_http /metrics
  timeout 300 "$LOAD" --url "ws://127.0.0.1:$PORT/cable" --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" \
    --mode broadcast --connections "$CONNS" --messages $((RATE * SECS)) --msg-rate "$RATE" \
    --no-progress --timeout 120 >"$LOGDIR/$name.out" 2>"$LOGDIR/$name.err" &
  local load=$!
  if [[ $upgrade = 1 ]]; then
    local i
    for ((i = 0; i < 600; i++)); do  # publishing has started (up to 60 s of connecting)
      [[ "$(broadcasts_seen)" -gt 0 ]] 2>/dev/null && break
      sleep 0.1
    done
    sleep $((SECS / 3))
    kill -USR2 "$SERVER_PID"
    for ((i = 0; i < 600; i++)); do
      grep -q "upgrade: adopted" "$LOGDIR/ringcable.log" && break
      sleep 0.1
    done
    local next
    next=$(sed -n 's/.*upgrade: started .*(pid \([0-9]*\)).*/\1/p' "$LOGDIR/ringcable.log" | tail -1)
    [[ -n "$next" ]] && PIDS+=("$next")
  fi
  wait "$load" || true
  local result
  result=$(sed -n 's/^RESULT //p' "$LOGDIR/$name.out")
  [[ -n "$result" ]] || { log "$name: no RESULT (see $LOGDIR)"; stop_all; return 1; }
  local handover=""
  if [[ $upgrade = 1 ]]; then
    handover=$(grep -o 'upgrade: complete in [0-9]* ms: [0-9]* connections handed over, [0-9]* fell back' "$LOGDIR/ringcable.log" | tail -1)
    handover="; $handover; $(grep -o 'released [0-9]* publications held' "$LOGDIR/ringcable.log" | tail -1)"
  fi
  echo "$result" | jq -r --arg t "$name" --arg h "$handover" \
    '"\($t): \(.connections // "?") connections, \(.deliveries) deliveries, latency p50 \(.latency_ms.p50 // .latency_p50_ms // "?") ms p99 \(.latency_ms.p99 // .latency_p99_ms // "?") ms max \(.latency_ms.max // .latency_max_ms // "?") ms, lost \(.lost), out-of-order \(.out_of_order)\($h)"'
  echo "$result" >>"$LOGDIR/results.jsonl"
  stop_all
}

echo "ringcable $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), logs in $LOGDIR" >&2
for r in $(seq "$ROUNDS"); do
  run steady 0
  run upgrade 1
done
