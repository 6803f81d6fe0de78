#!/usr/bin/env bash
# TLS (wss://) next to plain (ws://), same build, same run: server RSS per extra idle connection
# (5k → 15k marginal, as bench/targets.sh measures it), and optionally broadcast deliveries per
# server CPU-second. A self-signed P-256 certificate is made in the log directory; the load tool
# spreads its clients over processes (15000 sockets each at most).
#
#   bench/tls/run.sh [BUILD_DIR]      (default: build)
#   ROUNDS=1 WORKERS=2 BROADCAST=1 (0 skips the broadcast runs) FANOUT_N=1000 RATE=200
#   BATCHES="1 8" (publications per POST: 8 queues ~8 frames per socket per loop turn)
#   BASE_BIN=path/to/other/ringcable: also run the wss measurements on that binary (before/after)
#   IDLE=1 CONNECT=1 CONNECT_N=3000 (connects per server CPU-second)
#   COMPRESS=1 TURBO_RATE=100 TURBO_SIZE=4096: a Turbo Stream-like payload (--turbo) to FANOUT_N
#     subscribers on a server with --enable_ws_compression, plain clients against --compression
#     ones, over ws:// and wss://: bytes on the wire and server CPU per delivery
#
# Every load-tool run is bounded (--timeout and `timeout`); every process started here is stopped by
# PID (bench/lib.sh). Logs stay in /tmp/ringcable-tls.*.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"
ROUNDS="${ROUNDS:-1}"
WORKERS="${WORKERS:-2}"
BROADCAST="${BROADCAST:-1}"
FANOUT_N="${FANOUT_N:-1000}"
RATE="${RATE:-200}"
BATCHES="${BATCHES:-1 8}"
BASE_BIN="${BASE_BIN:-}"
IDLE="${IDLE:-1}"
CONNECT="${CONNECT:-1}"
CONNECT_N="${CONNECT_N:-3000}"
COMPRESS="${COMPRESS:-1}"
TURBO_RATE="${TURBO_RATE:-100}"
TURBO_SIZE="${TURBO_SIZE:-4096}"

LOGDIR="$(mktemp -d /tmp/ringcable-tls.XXXXXX)"
source "$ROOT/bench/lib.sh"
require_binaries
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 1; }
trap stop_all EXIT
RESULTS="$LOGDIR/results.jsonl"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$LOGDIR/key.pem" -out "$LOGDIR/cert.pem" 2>/dev/null

PORT=29280
BPORT=29290
RPORT=29251

# run NAME SCHEME load-tool-args...: one measurement on a fresh server (SERVER_EXTRA: more server
# flags); appends a result line.
run() {
  local name=$1 scheme=$2 tls=()
  shift 2
  # shellcheck disable=SC2206
  tls=(${SERVER_EXTRA:-})
  [[ "$scheme" = ws ]] || tls+=(--ssl_cert "$LOGDIR/cert.pem" --ssl_key "$LOGDIR/key.pem")
  local bscheme=http
  [[ "$scheme" = ws || "$*" != *broadcast* ]] || bscheme=https
  start_ringcable "$PORT" "$BPORT" "$RPORT" --broadcast_adapter http --workers "$WORKERS" "${tls[@]}"
  local out
  out=$(timeout 300 "$LOAD" --url "$scheme://127.0.0.1:$PORT/cable" \
    --broadcast-url "$bscheme://127.0.0.1:$BPORT/_broadcast" --server-pid "$SERVER_PID" \
    --no-progress --timeout 120 "$@" 2>"$LOGDIR/load.err" | sed -n 's/^RESULT //p') || true
  stop_all
  [[ -n "$out" ]] || { log "$name: no RESULT (see $LOGDIR)"; return 1; }
  echo "$out" | jq -c --arg t "$name" '{test: $t} + .' >>"$RESULTS"
  echo "$out" | jq -r --arg t "$name" '"\($t): server CPU \(.server_cpu_s) s" +
    (if .mode == "broadcast" then ", \(.deliveries) deliveries, lost \(.lost), p50 \(.latency_ms.p50) ms, \(.wire_bytes_per_delivery) B/delivery on the wire"
     elif .mode == "connect" then ", \(.subscribed) subscribed"
     else ", RSS \(.server_rss_connected_kb) KiB" end)' >&2
}

echo "ringcable $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), logs in $LOGDIR" >&2
for r in $(seq "$ROUNDS"); do
  if ((IDLE)); then
    for s in ws wss; do
      run "idle5k_$s" "$s" --mode idle --connections 5000 --processes 1 --duration 3
      run "idle15k_$s" "$s" --mode idle --connections 15000 --processes 2 --duration 3
    done
    if [[ -n "$BASE_BIN" ]]; then
      own=$RC_BIN
      RC_BIN=$BASE_BIN
      run idle5k_wssbase wss --mode idle --connections 5000 --processes 1 --duration 3
      run idle15k_wssbase wss --mode idle --connections 15000 --processes 2 --duration 3
      RC_BIN=$own
    fi
  fi
  if ((CONNECT)); then
    for s in ws wss; do
      run "connect_$s" "$s" --mode connect --connections "$CONNECT_N"
    done
    if [[ -n "$BASE_BIN" ]]; then
      own=$RC_BIN
      RC_BIN=$BASE_BIN
      run connect_wssbase wss --mode connect --connections "$CONNECT_N"
      RC_BIN=$own
    fi
  fi
  if ((BROADCAST)); then
    for b in $BATCHES; do
      for s in ws wss; do
        run "fanout${b}_$s" "$s" --mode broadcast --connections "$FANOUT_N" \
          --messages $((RATE * 4)) --msg-rate "$RATE" --batch "$b"
      done
      if [[ -n "$BASE_BIN" ]]; then
        own=$RC_BIN
        RC_BIN=$BASE_BIN
        run "fanout${b}_wssbase" wss --mode broadcast --connections "$FANOUT_N" \
          --messages $((RATE * 4)) --msg-rate "$RATE" --batch "$b"
        RC_BIN=$own
      fi
    done
  fi
  if ((COMPRESS)); then
    for s in ws wss; do
      for c in plain deflate; do
        extra=()
        [[ "$c" = plain ]] || extra=(--compression)
        SERVER_EXTRA=--enable_ws_compression run "turbo_${c}_$s" "$s" --mode broadcast \
          --connections "$FANOUT_N" --messages $((TURBO_RATE * 2)) --msg-rate "$TURBO_RATE" \
          --payload-size "$TURBO_SIZE" --turbo "${extra[@]}"
      done
    done
  fi
done

# ---- table: every round's value ------------------------------------------------------------
vals() { jq -r --arg t "$1" "select(.test == \$t) | $2" "$RESULTS" | paste -sd' '; }
echo
echo "| figure | ws:// | wss:// | wss:// on BASE_BIN |"
echo "|---|---|---|---|"
per_conn() {  # scheme: bytes per extra idle connection, each round
  local a b out=()
  mapfile -t a < <(jq -r --arg t "idle5k_$1" 'select(.test == $t) | .server_rss_connected_kb' "$RESULTS")
  mapfile -t b < <(jq -r --arg t "idle15k_$1" 'select(.test == $t) | .server_rss_connected_kb' "$RESULTS")
  for i in "${!a[@]}"; do out+=("$(( (b[i] - a[i]) * 1024 / 10000 )) B (${a[i]} → ${b[i]} KiB)"); done
  local IFS=';'; echo "${out[*]}"
}
if ((IDLE)); then echo "| RSS per extra idle connection (5k → 15k) | $(per_conn ws) | $(per_conn wss) | $(per_conn wssbase) |"; fi
if ((CONNECT)); then echo "| connects per server CPU-second ($CONNECT_N clients) | $(vals connect_ws '(.subscribed / .server_cpu_s | floor)') | $(vals connect_wss '(.subscribed / .server_cpu_s | floor)') | $(vals connect_wssbase '(.subscribed / .server_cpu_s | floor)') |"; fi
if ((BROADCAST)); then
  dps='(.deliveries / .server_cpu_s | floor)'
  for b in $BATCHES; do
    echo "| deliveries per server CPU-second ($FANOUT_N subscribers, $RATE publications/s, $b per POST) | $(vals "fanout${b}_ws" "$dps") | $(vals "fanout${b}_wss" "$dps") | $(vals "fanout${b}_wssbase" "$dps") |"
    echo "| lost, $b per POST | $(vals "fanout${b}_ws" .lost) | $(vals "fanout${b}_wss" .lost) | $(vals "fanout${b}_wssbase" .lost) |"
    echo "| latency p50 ms, $b per POST | $(vals "fanout${b}_ws" .latency_ms.p50) | $(vals "fanout${b}_wss" .latency_ms.p50) | $(vals "fanout${b}_wssbase" .latency_ms.p50) |"
  done
fi
if ((COMPRESS)); then
  us='(.server_cpu_s * 1e6 / .deliveries * 100 | floor / 100)'
  for c in plain deflate; do
    echo "| $TURBO_SIZE B Turbo Stream, $c clients: bytes on the wire per delivery | $(vals "turbo_${c}_ws" .wire_bytes_per_delivery) | $(vals "turbo_${c}_wss" .wire_bytes_per_delivery) | |"
    echo "| $TURBO_SIZE B Turbo Stream, $c clients: server CPU µs per delivery | $(vals "turbo_${c}_ws" "$us") | $(vals "turbo_${c}_wss" "$us") | |"
    echo "| $TURBO_SIZE B Turbo Stream, $c clients: lost | $(vals "turbo_${c}_ws" .lost) | $(vals "turbo_${c}_wss" .lost) | |"
  done
fi
