#!/usr/bin/env bash
# Issue #4's per-core targets, measured on build/ringcable alone (with the demo RPC app
# tools/rpc_stub), ROUNDS times each, every server restarted before every measurement:
#   - user-space bytes per extra idle subscribed connection (5k → 15k, one round: it barely moves);
#   - connect→welcome→confirm per server CPU-second (CONNECT_N connections, 500 in flight);
#   - single-frame deliveries per server CPU-second (1k subscribers, one POST per publication);
#   - coalesced deliveries per server CPU-second (1k subscribers, COALESCE_BATCH publications per
#     POST in AnyCable's batch format, so each socket gets several frames per send);
#   - one publication fanned out to 10k subscribers: p50 / p99 (10 publications/s, and isolated at 2/s),
#     in two setups:
#       pinned:  the target's own shape, that of the raw floor it is set against
#                (../shared/design/performance.md §2a′ and §3): ringcable with one worker and its RPC
#                app pinned to CPU 0, the load tool (one process) pinned to CPU 1;
#       default: one worker per CPU, nothing pinned, the load tool's clients in FANOUT_PROCESSES
#                processes (default 2; one reader thread for 10k sockets needs ~55 ms of CPU per
#                publication and would cap p99 by itself).
# Per-core figures divide by the server's own CPU seconds (/proc/PID/stat, measured phase only):
# the load tool and the RPC app share the same cores, so no run can give the server an idle core.
#
#   bench/targets.sh [BUILD_DIR]        (default: build; prints one line per run and a table)
#   ROUNDS=3 CONNECT_N=10000 SINGLE_RATE=256 COALESCE_RATE=800 COALESCE_BATCH=8 WORKERS=0
#   FANOUT_PROCESSES=2
#
# Every load-tool run is bounded (--timeout and `timeout`); every process started here is stopped
# by PID (bench/lib.sh). Logs stay in /tmp/ringcable-targets.*.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
ROUNDS="${ROUNDS:-3}"
CONNECT_N="${CONNECT_N:-10000}"
SINGLE_RATE="${SINGLE_RATE:-256}"
COALESCE_RATE="${COALESCE_RATE:-800}"
COALESCE_BATCH="${COALESCE_BATCH:-8}"
WORKERS="${WORKERS:-0}"
FANOUT_PROCESSES="${FANOUT_PROCESSES:-2}"

LOGDIR="$(mktemp -d /tmp/ringcable-targets.XXXXXX)"
# log, require_binaries, PIDS / stop_all, wait_port, start_ringcable
source "$ROOT/bench/lib.sh"
require_binaries
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
trap stop_all EXIT
RESULTS="$LOGDIR/results.jsonl"
PINNED=1
(($(nproc) >= 2)) || { PINNED=0; log "one CPU: the pinned fan-out setup is skipped"; }

PORT=29080
BPORT=29090
RPORT=29051

# run NAME WORKERS load-tool-args...: one measurement on a fresh server (--workers WORKERS, 0 =
# one per CPU); appends {"test":NAME,...RESULT} to the results. SERVER_CPUS / LOAD_CPUS (taskset
# lists) pin the server with its RPC app / the load tool.
run() {
  local name=$1 workers=$2
  shift 2
  start_ringcable "$PORT" "$BPORT" "$RPORT" --broadcast_adapter http --workers "$workers"
  local out pin=()
  [[ -z "${LOAD_CPUS:-}" ]] || pin=(taskset -c "$LOAD_CPUS")
  out=$(timeout 200 "${pin[@]}" "$LOAD" --url "ws://127.0.0.1:$PORT/cable" \
    --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --server-pid "$SERVER_PID" \
    --no-progress --timeout 60 "$@" 2>"$LOGDIR/load.err" | sed -n 's/^RESULT //p')
  stop_all
  [[ -n "$out" ]] || { log "$name: no RESULT (see $LOGDIR)"; return 1; }
  echo "$out" | jq -c --arg t "$name" '{test: $t} + .' >>"$RESULTS"
  echo "$out" | jq -r --arg t "$name" '"\($t): server CPU \(.server_cpu_s) s" +
    (if .mode == "broadcast" then ", \(.deliveries) deliveries, lost \(.lost), out-of-order \(.out_of_order), p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"
     elif .mode == "connect" then ", \(.subscribed) subscribed, \(.connects_per_s)/s wall clock"
     else ", \(.server_bytes_per_conn) B/conn, RSS \(.server_rss_connected_kb) KiB" end)' >&2
}

# fanout SETUP WORKERS PROCESSES: 10k subscribers at 10 publications/s and isolated at 2/s, the
# same two runs for every setup (SERVER_CPUS / LOAD_CPUS pass through to run).
fanout() {
  run "fanout10_$1" "$2" --mode broadcast --connections 10000 --messages 50 --msg-rate 10 \
    --processes "$3"
  run "fanout2_$1" "$2" --mode broadcast --connections 10000 --messages 20 --msg-rate 2 \
    --processes "$3"
}

echo "ringcable $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), logs in $LOGDIR" >&2
run idle5k "$WORKERS" --mode idle --connections 5000 --duration 3
run idle15k "$WORKERS" --mode idle --connections 15000 --duration 3
for r in $(seq "$ROUNDS"); do
  run connect "$WORKERS" --mode connect --connections "$CONNECT_N"
  run single "$WORKERS" --mode broadcast --connections 1000 --messages $((SINGLE_RATE * 4)) \
    --msg-rate "$SINGLE_RATE"
  run coalesced "$WORKERS" --mode broadcast --connections 1000 --messages $((COALESCE_RATE * 4)) \
    --msg-rate "$COALESCE_RATE" --batch "$COALESCE_BATCH"
  if ((PINNED)); then SERVER_CPUS=0 LOAD_CPUS=1 fanout pinned 1 1; fi
  fanout default "$WORKERS" "$FANOUT_PROCESSES"
done

# ---- table: medians over the rounds, every round in brackets ----------------------------------
med() { jq -s 'sort | if length == 0 then null else .[(length - 1) / 2 | floor] end'; }
vals() { jq -r --arg t "$1" "select(.test == \$t) | $2" "$RESULTS"; }
fmt() { # label test expr unit
  local m all
  m=$(vals "$2" "$3" | med)
  all=$(vals "$2" "$3" | paste -sd' ' -)
  printf '| %s | %s %s | %s |\n' "$1" "$m" "$4" "$all"
}
rss5=$(vals idle5k '.server_rss_connected_kb')
rss15=$(vals idle15k '.server_rss_connected_kb')
echo
echo "| target | median | every round |"
echo "|---|---|---|"
printf '| bytes per extra idle subscribed connection (5k → 15k) | %s B | RSS %s → %s KiB |\n' \
  "$(( (rss15 - rss5) * 1024 / 10000 ))" "$rss5" "$rss15"
fmt "connect→welcome→confirm per server CPU-second" connect "(.subscribed / .server_cpu_s | floor)" "/s"
fmt "single-frame deliveries per server CPU-second ($SINGLE_RATE/s × 1k)" single "(.deliveries / .server_cpu_s | floor)" "/s"
fmt "coalesced deliveries per server CPU-second ($COALESCE_RATE/s × 1k, $COALESCE_BATCH per POST)" coalesced "(.deliveries / .server_cpu_s | floor)" "/s"
for setup in pinned default; do
  if [[ $setup == pinned ]]; then
    ((PINNED)) || continue
    label="pinned: 1 worker on CPU 0, load tool on CPU 1"
  else
    label="default: one worker per CPU, load tool in $FANOUT_PROCESSES processes"
  fi
  fmt "10k fan-out p50, 10/s, $label" "fanout10_$setup" ".latency_ms.p50" "ms"
  fmt "10k fan-out p99, 10/s, $label" "fanout10_$setup" ".latency_ms.p99" "ms"
  fmt "10k fan-out p50, 2/s, $label" "fanout2_$setup" ".latency_ms.p50" "ms"
  fmt "10k fan-out p99, 2/s, $label" "fanout2_$setup" ".latency_ms.p99" "ms"
  fmt "10k fan-out server CPU per delivery, 10/s, $label" "fanout10_$setup" "(.server_cpu_s * 1e6 / .deliveries * 100 | floor / 100)" "µs"
  fmt "10k fan-out load tool CPU per delivery, 10/s, $label" "fanout10_$setup" "(.load_cpu_s * 1e6 / .deliveries * 100 | floor / 100)" "µs"
done
lost=$(jq -s '[.[] | select(.mode == "broadcast") | .lost + .out_of_order] | add' "$RESULTS")
echo "| lost + out-of-order deliveries, all broadcast runs | $lost | |"
