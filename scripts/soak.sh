#!/usr/bin/env bash
# Soak test, on demand (not in CI): thousands of connections churning while publications flow, for
# DURATION seconds; the server's RSS is sampled after every round and must stay flat.
#   bash scripts/soak.sh [BUILD_DIR] [DURATION_S] [CLIENTS_PER_ROUND]    (defaults: build 600 2000)
# Each round opens CLIENTS_PER_ROUND subscribed connections, publishes 40 messages at 20/s to them,
# checks nothing was lost, and closes them all (so every round is a full connect/disconnect churn,
# with Connect, Command and Disconnect RPCs). Flat means: the highest RSS of the last third of the
# rounds is within 10% (or 8 MiB) of the highest RSS of the middle third — the first third is warm-up
# (the workers' 2 x 8 MiB receive-buffer pools and allocator pages get touched gradually). Exit 1
# otherwise, or on any lost delivery. Traffic stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
DURATION="${2:-600}"
CLIENTS="${3:-2000}"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/ringcable-soak.XXXXXX")"
# log, require_binaries, PIDS / stop_all, wait_port, start_ringcable
source "$ROOT/bench/lib.sh"
require_binaries 2
trap stop_all EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=$(free_port); BPORT=$(free_port); RPC_PORT=$(free_port)
start_ringcable "$PORT" "$BPORT" "$RPC_PORT" --disconnect_rate 1000 --log_level warn
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }

echo "soak: ${DURATION}s, ${CLIENTS} clients per round, server pid $SERVER_PID (logs: $LOGDIR)"
echo "round,elapsed_s,rss_kib,deliveries,lost"
start=$(date +%s); round=0; last=""; lost_total=0; samples=()
while (( $(date +%s) - start < DURATION )); do
  round=$((round + 1))
  out=$("$LOAD" --mode broadcast --url "ws://127.0.0.1:$PORT/cable" \
        --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --connections "$CLIENTS" \
        --messages 40 --msg-rate 20 --timeout 60 --no-progress 2>/dev/null | grep '^RESULT ' || true)
  [[ -n "$out" ]] || { echo "soak: round $round produced no RESULT line" >&2; exit 1; }
  deliveries=$(sed -n 's/.*"deliveries":\([0-9]*\).*/\1/p' <<<"$out")
  lost=$(sed -n 's/.*"lost":\([0-9]*\).*/\1/p' <<<"$out")
  sleep 1  # let the Disconnect calls of this round drain
  last=$(rss_kib)
  samples+=("$last")
  lost_total=$((lost_total + ${lost:-0}))
  echo "$round,$(( $(date +%s) - start )),$last,${deliveries:-?},${lost:-?}"
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "soak: ringcable died" >&2; exit 1; }
done
n=${#samples[@]}
(( n >= 6 )) || { echo "soak: only $n rounds; run longer (at least 6 rounds)" >&2; exit 2; }
max_of() { local m=0 v; for v in "$@"; do (( v > m )) && m=$v; done; echo "$m"; }
mid=$(max_of "${samples[@]:$((n / 3)):$((2 * n / 3 - n / 3))}")
tail_max=$(max_of "${samples[@]:$((2 * n / 3))}")
limit=$(( mid + (mid / 10 > 8192 ? mid / 10 : 8192) ))
echo "soak: rounds=$n max_rss_middle_third=${mid}KiB max_rss_last_third=${tail_max}KiB limit=${limit}KiB lost=$lost_total"
(( lost_total == 0 )) || { echo "soak: FAILED, deliveries were lost" >&2; exit 1; }
(( tail_max <= limit )) || { echo "soak: FAILED, memory grew" >&2; exit 1; }
echo "soak: OK, memory flat"
