#!/usr/bin/env bash
# Side-by-side whole-server benchmark: ringcable (+ the demo RPC app tools/rpc_stub) against
# Action Cable 6.1 from Debian on puma (bench/compare/actioncable, "async" adapter, no Redis),
# both driven by the same load tool (tools/load, ringcable-load) in one run.
#
#   bench/compare/run.sh [BUILD_DIR]      (default: build; relative paths are from the repo root)
#
# Needs: BUILD_DIR/ringcable, BUILD_DIR/tools/rpc_stub/rpc_stub, BUILD_DIR/tools/load/ringcable-load
# (cmake --build BUILD_DIR --target ringcable rpc_stub ringcable-load). Installs ruby-actioncable,
# puma, ruby-rack, jq and gnuplot-nox from Debian when missing (needs root).
#
# Writes bench/compare/results.md, bench/compare/latency.png and bench/compare/results.jsonl (every
# RESULT line of the load tool, tagged with server and test). Every server is restarted before
# every measurement. Counts can be scaled down through the environment:
#   IDLE_COUNTS="1000 5000 10000 15000"  CONNECT_N=10000  BCAST="1000:100:20 5000:40:4 10000:20:2"
# (BCAST entries are subscribers:messages:msg_rate).
# Rate sweep (the highest publication rate each server sustains, SWEEP_SUBS subscribers): starts at
# SWEEP_START publications/s and doubles while a step passes (if the first step fails it halves
# instead, down to SWEEP_START/8), then tries once 1.5 × the last passing rate when that is below
# the failing one. At most SWEEP_STEPS runs per server, each publishing for about
# SWEEP_SECS s (at least 20, at most SWEEP_MAX_MSGS publications) under a SWEEP_TIMEOUT s phase cap.
# A step passes when every publication was sent and delivered to every subscriber in order (0 lost,
# 0 out-of-order), the POSTs kept up (achieved ≥ 90 % of the offered rate) and p99 ≤ SWEEP_P99_MS.
#   SWEEP_SUBS=1000 SWEEP_START=4 SWEEP_STEPS=8 SWEEP_SECS=4 SWEEP_MAX_MSGS=2000 SWEEP_P99_MS=1000
#   SWEEP_TIMEOUT=10 (SWEEP_STEPS=0 skips the sweep). REPORT_ONLY=1 rebuilds results.md and the
# plot from results.jsonl without measuring. Server and load-tool logs stay in /tmp/ringcable-compare.*.
# Every loop is bounded; every load-tool run
# is under `timeout`; every process started here is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/compare"
BUILD="${1:-build}"
[[ "$BUILD" = /* ]] || BUILD="$ROOT/$BUILD"

IDLE_COUNTS="${IDLE_COUNTS:-1000 5000 10000 15000}"
IDLE_HOLD="${IDLE_HOLD:-5}"
CONNECT_N="${CONNECT_N:-10000}"
BCAST="${BCAST:-1000:100:20 5000:40:4 10000:20:2}"
PAYLOAD="${PAYLOAD:-64}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-60}"     # the load tool's per-phase cap (connect, publish, drain)
RUN_CAP="${RUN_CAP:-200}"              # hard cap on one load-tool process, seconds
SWEEP_SUBS="${SWEEP_SUBS:-1000}"
SWEEP_START="${SWEEP_START:-4}"
SWEEP_STEPS="${SWEEP_STEPS:-8}"
SWEEP_SECS="${SWEEP_SECS:-4}"
SWEEP_MAX_MSGS="${SWEEP_MAX_MSGS:-2000}"
SWEEP_P99_MS="${SWEEP_P99_MS:-1000}"
SWEEP_TIMEOUT="${SWEEP_TIMEOUT:-10}"

# Ports away from the defaults (8080/8090/50051) that other people on the machine use.
RC_PORT=28080
RC_BCAST_PORT=28090
RPC_PORT=28051
AC_PORT=28081

OUT_JSONL="$HERE/results.jsonl"
OUT_MD="$HERE/results.md"
OUT_PNG="$HERE/latency.png"
LOGDIR="$(mktemp -d /tmp/ringcable-compare.XXXXXX)"

# log, require_binaries, PIDS / stop_pid / stop_all, wait_port, start_ringcable
source "$ROOT/bench/lib.sh"

# ---- dependencies ----------------------------------------------------------------------------
need_pkgs=()
ruby -e 'require "action_cable"' 2>/dev/null || need_pkgs+=(ruby-actioncable ruby-rack)
command -v puma >/dev/null || need_pkgs+=(puma)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v gnuplot >/dev/null || need_pkgs+=(gnuplot-nox)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >"$LOGDIR/apt.log" 2>&1 ||
    { $SUDO apt-get update >>"$LOGDIR/apt.log" 2>&1 &&
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >>"$LOGDIR/apt.log" 2>&1; } ||
    { log "apt-get failed, see $LOGDIR/apt.log"; exit 1; }
fi
require_binaries
ulimit -n 20000 2>/dev/null || true
log "fd limit $(ulimit -n); logs in $LOGDIR"

# ---- process control (by PID only) -------------------------------------------------------------
LOAD_PID=""
trap '[[ -n $LOAD_PID ]] && stop_pid "$LOAD_PID"; stop_all' EXIT
trap 'exit 130' INT TERM

start_server() {  # ringcable | actioncable; sets SERVER_PID
  stop_all
  sleep 0.5
  if [[ $1 == ringcable ]]; then
    start_ringcable "$RC_PORT" "$RC_BCAST_PORT" "$RPC_PORT"
  else
    # puma single mode (the async adapter is per process); 4 request threads, Action Cable's own
    # worker pool of 4 (its default). `exec` so $! is the Ruby process itself.
    (cd "$HERE/actioncable" && exec puma -b "tcp://127.0.0.1:$AC_PORT" -t 4:4 -e production config.ru) \
      >>"$LOGDIR/puma.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port "$AC_PORT" puma
  fi
  sleep 1  # let RSS settle after start-up
}

url_for() { [[ $1 == ringcable ]] && echo "ws://127.0.0.1:$RC_PORT/cable" || echo "ws://127.0.0.1:$AC_PORT/cable"; }
burl_for() { [[ $1 == ringcable ]] && echo "http://127.0.0.1:$RC_BCAST_PORT/_broadcast" || echo "http://127.0.0.1:$AC_PORT/_broadcast"; }

# run_load server test args...: restarts the server, runs the load tool, appends a tagged RESULT.
run_load() {
  local server=$1 test=$2
  shift 2
  start_server "$server"
  local la
  la=$(cut -d' ' -f1-3 /proc/loadavg)
  log "$server $test (load average $la)"
  local out="$LOGDIR/$server-$test.out" rc=0
  # In the background so that a signal to this script reaches the trap at once (wait returns).
  timeout -k 5 "$RUN_CAP" "$LOAD" --url "$(url_for "$server")" --broadcast-url "$(burl_for "$server")" \
    --server-pid "$SERVER_PID" --timeout "$LOAD_TIMEOUT" --no-progress "$@" >"$out" 2>"$LOGDIR/$server-$test.err" &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  local res
  res=$(grep '^RESULT ' "$out" | tail -1 | cut -d' ' -f2- || true)
  [[ -n $res ]] || res='{}'
  local alive=true
  kill -0 "$SERVER_PID" 2>/dev/null || alive=false
  jq -c --arg s "$server" --arg t "$test" --arg la "$la" --argjson rc "$rc" --argjson alive "$alive" \
    '{server:$s,test:$t,loadavg:$la,exit:$rc,server_alive:$alive} + .' <<<"$res" >>"$OUT_JSONL"
  grep -v '^RESULT ' "$out" | sed 's/^/    /' >&2 || true
  ((rc == 0)) || log "$server $test: load tool exit $rc"
  stop_all
}

# sweep_verdict server test rate: "ok", or why the step failed.
sweep_verdict() {
  jq -r --arg s "$1" --arg t "$2" --argjson rate "$3" --argjson subs "$SWEEP_SUBS" --argjson p99 "$SWEEP_P99_MS" '
    select(.server==$s and .test==$t) |
    [ (if .exit != 0 then "load tool exit \(.exit)" else empty end),
      (if .server_alive != true then "server died" else empty end),
      (if (.subscribed // 0) < $subs then "subscribed \(.subscribed // 0)/\($subs)" else empty end),
      (if (.messages_sent // 0) < (.messages // 1) then "sent \(.messages_sent // 0)/\(.messages) (phase cap)" else empty end),
      (if (.lost // 1) > 0 then "lost \(.lost)" else empty end),
      (if (.out_of_order // 1) > 0 then "out-of-order \(.out_of_order)" else empty end),
      (if (.publish_rate // 0) < 0.9 * $rate then "POSTs kept up with \(.publish_rate // 0)/s only" else empty end),
      (if (.latency_ms.p99 // 1e12) > $p99 then "p99 \(.latency_ms.p99) ms > \($p99)" else empty end)
    ] | if length == 0 then "ok" else join(", ") end' "$OUT_JSONL" | tail -1
}

# sweep server: the rate search described at the top; one "sweep" record per step, then a
# "sweep-best" record (highest passing rate, lowest failing rate; no failing rate = limit not reached).
sweep() {
  local server=$1 rate=$SWEEP_START step=0 best="" fail="" refined=0 msgs verdict floor
  floor=$(awk -v r="$SWEEP_START" 'BEGIN { print r / 8 }')
  lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
  mul() { awk -v a="$1" -v b="$2" 'BEGIN { print a * b }'; }
  while ((step < SWEEP_STEPS)); do
    step=$((step + 1))
    msgs=$(awk -v r="$rate" -v t="$SWEEP_SECS" -v m="$SWEEP_MAX_MSGS" \
      'BEGIN { n = int(r * t + 0.5); if (n < 20) n = 20; if (n > m) n = m; print n }')
    LOAD_TIMEOUT=$SWEEP_TIMEOUT run_load "$server" "sweep-$rate" --mode broadcast \
      --connections "$SWEEP_SUBS" --messages "$msgs" --msg-rate "$rate" --payload-size "$PAYLOAD"
    verdict=$(sweep_verdict "$server" "sweep-$rate" "$rate")
    [[ -n $verdict ]] || verdict="no result"
    log "$server sweep step $step: $rate/s × $msgs: $verdict"
    jq -nc --arg s "$server" --argjson step "$step" --argjson rate "$rate" --argjson msgs "$msgs" \
      --arg v "$verdict" '{server:$s,test:"sweep",step:$step,rate:$rate,messages:$msgs,verdict:$v}' >>"$OUT_JSONL"
    if [[ $verdict == ok ]]; then
      best=$rate
    else
      fail=$rate
    fi
    if [[ -z $fail ]]; then
      rate=$(mul "$rate" 2)                      # still passing: double
    elif [[ -z $best ]]; then
      rate=$(mul "$rate" 0.5)                    # the first step failed: halve
      if lt "$rate" "$floor"; then break; fi
    elif ((refined == 0)) && lt "$(mul "$best" 1.5)" "$fail"; then
      refined=1                                  # one step between the last pass and the fail
      rate=$(mul "$best" 1.5)
    else
      break
    fi
  done
  jq -nc --arg s "$server" --arg best "$best" --arg fail "$fail" --argjson steps "$step" \
    '{server:$s,test:"sweep-best",steps:$steps,
      rate:(if $best == "" then null else ($best | tonumber) end),
      lowest_failing:(if $fail == "" then null else ($fail | tonumber) end)}' >>"$OUT_JSONL"
}

if [[ ${REPORT_ONLY:-0} == 1 ]]; then
  # Rebuild results.md and the plot from an existing results.jsonl (no measurement).
  META=$(jq -c 'select(.server=="meta")' "$OUT_JSONL" | tail -1)
  LA_START=$(jq -r .loadavg_start <<<"$META") LA_END=$(jq -r .loadavg_end <<<"$META")
  ELAPSED=$(jq -r .elapsed_s <<<"$META") RUN_DATE=$(jq -r .date <<<"$META")
else
: >"$OUT_JSONL"
T0=$(date +%s)
RUN_DATE=$(date -u '+%F %H:%M UTC')
LA_START=$(cut -d' ' -f1-3 /proc/loadavg)
for server in ringcable actioncable; do
  for n in $IDLE_COUNTS; do
    run_load "$server" "idle-$n" --mode idle --connections "$n" --duration "$IDLE_HOLD"
  done
  run_load "$server" "connect-$CONNECT_N" --mode connect --connections "$CONNECT_N"
  for spec in $BCAST; do
    IFS=: read -r subs msgs rate <<<"$spec"
    run_load "$server" "bcast-$subs" --mode broadcast --connections "$subs" --messages "$msgs" \
      --msg-rate "$rate" --payload-size "$PAYLOAD"
  done
  if ((SWEEP_STEPS > 0)); then sweep "$server"; fi
done
LA_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))
jq -nc --arg a "$LA_START" --arg b "$LA_END" --arg d "$RUN_DATE" --argjson e "$ELAPSED" \
  '{server:"meta",loadavg_start:$a,loadavg_end:$b,elapsed_s:$e,date:$d}' >>"$OUT_JSONL"
fi

# ---- report ------------------------------------------------------------------------------------
q() {  # server test jq-expr -> value or "n/a"
  jq -r --arg s "$1" --arg t "$2" "select(.server==\$s and .test==\$t) | ($3) // \"n/a\"" "$OUT_JSONL" | tail -1
}
fmt() {  # number formatting: value decimals
  [[ $1 == n/a || -z $1 ]] && { echo "n/a"; return; }
  LC_ALL=C printf "%.${2}f" "$1"
}
ratio() {  # a b lower_is_better(1|0) -> "N.Nx" meaning how many times better ringcable is
  local a=$1 b=$2
  [[ $3 == - ]] && { echo "—"; return; }
  [[ $a == n/a || $b == n/a || -z $a || -z $b ]] && { echo "n/a"; return; }
  awk -v a="$a" -v b="$b" -v low="$3" 'BEGIN {
    if (low) { if (a <= 0) { print "n/a"; exit } r = b / a } else { if (b <= 0) { print "n/a"; exit } r = a / b }
    printf(r >= 10 ? "%.0fx" : "%.1fx", r) }'
}
ROWS=()
row() {  # label rc_value ac_value lower_is_better decimals
  ROWS+=("| $1 | $(fmt "$2" "$5") | $(fmt "$3" "$5") | $(ratio "$2" "$3" "$4") |")
}

for n in $IDLE_COUNTS; do
  t="idle-$n"
  rs=$(q ringcable "$t" '.subscribed') as=$(q actioncable "$t" '.subscribed')
  row "idle $n: server RSS, MiB (ringcable subscribed $rs, Action Cable $as)" \
    "$(q ringcable "$t" '.server_rss_connected_kb / 1024')" "$(q actioncable "$t" '.server_rss_connected_kb / 1024')" 1 1
  row "idle $n: bytes per connection (RSS growth / subscribed)" \
    "$(q ringcable "$t" 'if .subscribed > 0 then (.server_rss_connected_kb - .server_rss_before_kb) * 1024 / .subscribed else null end')" \
    "$(q actioncable "$t" 'if .subscribed > 0 then (.server_rss_connected_kb - .server_rss_before_kb) * 1024 / .subscribed else null end')" 1 0
done
# Marginal cost: RSS growth between two idle runs over the extra connections (leaves out the
# allocator's / heap's first growth that the smallest run includes).
read -r -a idle_arr <<<"$IDLE_COUNTS"
if ((${#idle_arr[@]} >= 2)); then
  lo=${idle_arr[$((${#idle_arr[@]} >= 3 ? 1 : 0))]} hi=${idle_arr[-1]}
  marg() {
    local a b
    a=$(q "$1" "idle-$lo" '.server_rss_connected_kb') b=$(q "$1" "idle-$hi" '.server_rss_connected_kb')
    [[ $a == n/a || $b == n/a ]] && { echo n/a; return; }
    echo $(((b - a) * 1024 / (hi - lo)))
  }
  row "marginal bytes per extra idle connection, $lo → $hi (RSS difference / $((hi - lo)))" \
    "$(marg ringcable)" "$(marg actioncable)" 1 0
fi
t="connect-$CONNECT_N"
row "connect $CONNECT_N (500 in flight): subscribed" "$(q ringcable "$t" '.subscribed')" "$(q actioncable "$t" '.subscribed')" 0 0
row "connect $CONNECT_N: connections/s" "$(q ringcable "$t" '.connects_per_s')" "$(q actioncable "$t" '.connects_per_s')" 0 0
row "connect $CONNECT_N: handshake p50, ms" "$(q ringcable "$t" '.handshake_ms.p50')" "$(q actioncable "$t" '.handshake_ms.p50')" 1 1
row "connect $CONNECT_N: handshake p99, ms" "$(q ringcable "$t" '.handshake_ms.p99')" "$(q actioncable "$t" '.handshake_ms.p99')" 1 1
row "connect $CONNECT_N: server CPU per connection, ms" \
  "$(q ringcable "$t" 'if .subscribed > 0 then .server_cpu_s * 1000 / .subscribed else null end')" \
  "$(q actioncable "$t" 'if .subscribed > 0 then .server_cpu_s * 1000 / .subscribed else null end')" 1 3
for spec in $BCAST; do
  IFS=: read -r subs msgs rate <<<"$spec"
  t="bcast-$subs"
  l="bcast $subs subs × $msgs msgs at $rate/s"
  row "$l: deliveries (expected $((subs * msgs)))" "$(q ringcable "$t" '.deliveries')" "$(q actioncable "$t" '.deliveries')" 0 0
  row "$l: lost" "$(q ringcable "$t" '.lost')" "$(q actioncable "$t" '.lost')" - 0
  row "$l: out-of-order deliveries" "$(q ringcable "$t" '.out_of_order')" "$(q actioncable "$t" '.out_of_order')" - 0
  row "$l: publications/s achieved (POST answered before the next is sent)" \
    "$(q ringcable "$t" '.publish_rate')" "$(q actioncable "$t" '.publish_rate')" 0 1
  row "$l: deliveries/s" "$(q ringcable "$t" '.deliveries_per_s')" "$(q actioncable "$t" '.deliveries_per_s')" 0 0
  for p in p50 p90 p99 max; do
    row "$l: latency $p, ms" "$(q ringcable "$t" ".latency_ms.$p")" "$(q actioncable "$t" ".latency_ms.$p")" 1 1
  done
  row "$l: server CPU per delivery, µs" \
    "$(q ringcable "$t" 'if .deliveries > 0 then .server_cpu_s * 1e6 / .deliveries else null end')" \
    "$(q actioncable "$t" 'if .deliveries > 0 then .server_cpu_s * 1e6 / .deliveries else null end')" 1 2
done

# Sweep: each server's highest passing rate and its figures, side by side.
SWEEP_ROWS=()
if ((SWEEP_STEPS > 0)); then
  rc_best=$(q ringcable sweep-best '.rate') ac_best=$(q actioncable sweep-best '.rate')
  l="sweep $SWEEP_SUBS subs"
  row "$l: highest publication rate without loss, reordering or p99 > ${SWEEP_P99_MS} ms, /s" "$rc_best" "$ac_best" 0 1
  bq() {  # server best jq-expr: a figure of the server's best sweep step
    [[ $2 == n/a ]] && { echo n/a; return; }
    q "$1" "sweep-$2" "$3"
  }
  row "$l: at that rate: deliveries/s" "$(bq ringcable "$rc_best" '.deliveries_per_s')" "$(bq actioncable "$ac_best" '.deliveries_per_s')" 0 0
  for p in p50 p90 p99 max; do
    row "$l: at that rate: latency $p, ms" "$(bq ringcable "$rc_best" ".latency_ms.$p")" "$(bq actioncable "$ac_best" ".latency_ms.$p")" 1 1
  done
  row "$l: at that rate: server CPU per delivery, µs" \
    "$(bq ringcable "$rc_best" 'if .deliveries > 0 then .server_cpu_s * 1e6 / .deliveries else null end')" \
    "$(bq actioncable "$ac_best" 'if .deliveries > 0 then .server_cpu_s * 1e6 / .deliveries else null end')" 1 2
  row "$l: at that rate: load-tool CPU per delivery, µs" \
    "$(bq ringcable "$rc_best" 'if .deliveries > 0 then .load_cpu_s * 1e6 / .deliveries else null end')" \
    "$(bq actioncable "$ac_best" 'if .deliveries > 0 then .load_cpu_s * 1e6 / .deliveries else null end')" - 2
  # The same figures at the highest rate that both servers passed, for a like-for-like latency.
  common=$(jq -rs 'map(select(.test == "sweep" and .verdict == "ok")) | group_by(.rate) |
    map(select(map(.server) | unique | length == 2) | .[0].rate) | max // "n/a"' "$OUT_JSONL")
  if [[ $common != n/a ]]; then
    for p in p50 p99; do
      row "$l at $common/s, the highest rate both passed: latency $p, ms" \
        "$(q ringcable "sweep-$common" ".latency_ms.$p")" "$(q actioncable "sweep-$common" ".latency_ms.$p")" 1 1
    done
    row "$l at $common/s: server CPU per delivery, µs" \
      "$(q ringcable "sweep-$common" 'if .deliveries > 0 then .server_cpu_s * 1e6 / .deliveries else null end')" \
      "$(q actioncable "sweep-$common" 'if .deliveries > 0 then .server_cpu_s * 1e6 / .deliveries else null end')" 1 2
  fi
  # Every step: server, offered rate, publications, achieved, deliveries, lost, out-of-order, p50, p99, load average, verdict.
  while IFS= read -r line; do SWEEP_ROWS+=("$line"); done < <(
    jq -rs '
      # CPU seconds over the publish+drain span (deliveries / deliveries_per_s), in cores.
      def cores(cpu): if (.deliveries // 0) > 0 and (.deliveries_per_s // 0) > 0 and cpu != null
        then cpu * .deliveries_per_s / .deliveries * 100 | round / 100 else "n/a" end;
      (map(select((.test // "") | startswith("sweep-"))) | map({key: "\(.server) \(.test)", value: .}) | from_entries) as $runs |
      .[] | select(.test == "sweep") | . as $st | ($runs["\(.server) sweep-\(.rate)"] // {}) as $r |
      "| \(.server) | \(.step) | \(.rate) | \($r.messages_sent // "n/a")/\(.messages) | \($r.publish_rate // "n/a") | \($r.deliveries // "n/a")/\($r.expected_deliveries // "n/a") | \($r.lost // "n/a") | \($r.out_of_order // "n/a") | \($r.latency_ms.p50 // "n/a") | \($r.latency_ms.p99 // "n/a") | \($r | cores(.server_cpu_s)) | \($r | cores(.load_cpu_s)) | \($r.loadavg // "n/a" | split(" ")[0]) | \(.verdict) |"
    ' "$OUT_JSONL")
fi

# Latency plot data: subscribers p50 p90 p99 per server.
for server in ringcable actioncable; do
  for spec in $BCAST; do
    IFS=: read -r subs _ _ <<<"$spec"
    jq -r --arg s "$server" --arg t "bcast-$subs" \
      'select(.server==$s and .test==$t and .latency_ms.count > 0) |
       "\(.connections) \(.latency_ms.p50) \(.latency_ms.p90) \(.latency_ms.p99)"' "$OUT_JSONL"
  done >"$LOGDIR/lat-$server.dat"
done
# gnuplot rejects a plot whose data file has no valid point (e.g. a server that delivered nothing,
# or a single subscriber count that failed): plot only the series that have data.
PLOT_SERIES=()
for server in ringcable actioncable; do
  [[ -s "$LOGDIR/lat-$server.dat" ]] || { log "plot: no latency data for $server"; continue; }
  if [[ $server == ringcable ]]; then color="#1f77b4" name="ringcable"; else color="#d62728" name="Action Cable"; fi
  PLOT_SERIES+=("\"$LOGDIR/lat-$server.dat\" using 1:2 with linespoints lw 2 lc rgb \"$color\" pt 7 title \"$name p50\"")
  PLOT_SERIES+=("\"$LOGDIR/lat-$server.dat\" using 1:4 with linespoints lw 2 lc rgb \"$color\" pt 5 dt 2 title \"$name p99\"")
done
if ((${#PLOT_SERIES[@]} == 0)); then
  log "plot: no latency data at all; $OUT_PNG left as it was"
else
  PLOT_CMD=$(IFS=,; echo "${PLOT_SERIES[*]}")
  gnuplot <<EOF || log "gnuplot failed"
set terminal pngcairo size 900,560 noenhanced font ",10"
set output "$OUT_PNG"
set title "Broadcast latency vs subscribers (one run, shared 2-core VM, $(date -u +%F))"
set xlabel "subscribers (one stream; deliveries/s offered: $(echo "$BCAST" | tr ' ' '\n' | awk -F: '{printf "%s%d", (NR>1?", ":""), $1*$3}'))"
set ylabel "latency, ms (log)"
set logscale xy
set grid
set key top left
set xrange [500:20000]
plot $PLOT_CMD
EOF
fi

{
  echo "# ringcable vs Action Cable: whole-server comparison"
  echo
  echo "Generated by \`bench/compare/run.sh\` on $RUN_DATE in ${ELAPSED} s. One run, shared noisy"
  echo "2-core VM ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) vCPUs,"
  echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r))."
  echo "Other engineers were compiling on the same machine: load average (1/5/15 min) $LA_START at"
  echo "the start, $LA_END at the end; each test's value is in \`results.jsonl\` (\`loadavg\`)."
  echo "Server, load tool (and for ringcable the demo RPC app) share the 2 cores."
  echo
  echo "- ringcable: build dir \`$(basename "$BUILD")\` ($(grep -m1 CMAKE_BUILD_TYPE "$BUILD/CMakeCache.txt" | cut -d= -f2)), default workers (one per CPU), demo"
  echo "  RPC app \`tools/rpc_stub\` (RSS figures are ringcable's alone, not the RPC app's)."
  echo "- Action Cable: $(dpkg-query -W -f '${Package} ${Version}' ruby-actioncable 2>/dev/null), $(dpkg-query -W -f '${Package} ${Version}' puma 2>/dev/null),"
  echo "  $(ruby -v | cut -d' ' -f1-2); puma single mode, 4 threads, Action Cable worker pool 4, \"async\""
  echo "  subscription adapter (in-process, no Redis); app in \`bench/compare/actioncable/\`."
  echo "- Same load tool for both (\`tools/load\`, actioncable-v1-json, publications over HTTP POST"
  echo "  \`/_broadcast\`), every server restarted before every test. Idle: hold ${IDLE_HOLD} s; RSS is VmRSS once all"
  echo "  are subscribed, bytes per connection = (RSS connected − RSS after start) / subscribed."
  echo "  Broadcast: ${PAYLOAD} B padding, latency = receive time − publish timestamp per delivery;"
  echo "  load-tool phase cap ${LOAD_TIMEOUT} s (connect, publish, drain)."
  echo
  echo "Ratio = how many times better ringcable is (Action Cable / ringcable for costs and latencies,"
  echo "ringcable / Action Cable for rates and counts)."
  echo
  echo "| figure | ringcable | Action Cable | ratio |"
  echo "|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Reading the broadcast rows: the load tool publishes one POST at a time and stamps each"
  echo "publication when it sends it, so a server that answers the POST late also lowers the offered"
  echo "rate (see \"publications/s achieved\"), and latency then counts from the late send, not from the"
  echo "schedule: for a server that falls behind, the latencies are lower bounds. deliveries/s is"
  echo "deliveries over the publish+drain span. Out-of-order: a client got seq n after a higher seq."
  echo
  if ((${#SWEEP_ROWS[@]})); then
    echo "Rate sweep ($SWEEP_SUBS subscribers, one stream, ${PAYLOAD} B padding): each server starts at"
    echo "$SWEEP_START publications/s and doubles the rate while a step passes (halves it, down to"
    echo "$SWEEP_START/8, if the first fails), then tries 1.5 × the last passing rate once if that is below"
    echo "the failing rate; at most $SWEEP_STEPS steps, each publishing for about $SWEEP_SECS s (20 to"
    echo "$SWEEP_MAX_MSGS publications) under a $SWEEP_TIMEOUT s phase cap. A step passes when every publication was"
    echo "sent and reached every subscriber in order (0 lost, 0 out-of-order), the POSTs kept up (≥ 90 %"
    echo "of the offered rate) and p99 ≤ $SWEEP_P99_MS ms. The server's limit lies between its highest"
    echo "passing and its lowest failing rate. Latencies are in ms; server and load-tool CPU are in cores"
    echo "(CPU seconds over the publish+drain span): when the two add up to about 2, the 2-core machine,"
    echo "not the server alone, set the limit. load is the 1-min load average. The \"at that rate\" rows in"
    echo "the table above compare each server at its own highest rate; the \"highest rate both passed\""
    echo "rows compare them at the same rate."
    echo
    for server in ringcable actioncable; do
      jq -r --arg s "$server" 'select(.server==$s and .test=="sweep-best") |
        "- \($s): " + (if .rate == null then "no step passed" else "highest passing rate \(.rate)/s" end) +
        (if .lowest_failing == null then ", and no step failed: the limit was not reached in \(.steps) steps"
         else ", lowest failing \(.lowest_failing)/s" end) + "."' "$OUT_JSONL" | tail -1
    done
    echo
    echo "| server | step | offered /s | publications sent | achieved /s | deliveries | lost | out-of-order | p50 | p99 | server CPU | load-tool CPU | load | verdict |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${SWEEP_ROWS[@]}"
    echo
  fi
  echo "Expected deliveries per broadcast test = subscribers × messages. Runs where the load tool did"
  echo "not exit 0 or the server died:"
  FAILED=$(jq -r 'select(.server != "meta" and .exit != null and (.exit != 0 or .server_alive == false)) | "- \(.server) \(.test): exit \(.exit), server alive \(.server_alive), subscribed \(.subscribed // "n/a"), failures \(.failure_reasons // {} | to_entries | map(select(.value > 0) | "\(.key) \(.value)") | join(", "))"' "$OUT_JSONL")
  echo "${FAILED:-- none}"
  echo
  echo "![latency vs subscribers](latency.png)"
} >"$OUT_MD"
log "wrote $OUT_MD, $OUT_PNG, $OUT_JSONL in ${ELAPSED} s"
