# Shared by the whole-server scripts (bench/compare/run.sh, bench/targets.sh, scripts/soak.sh); source it
# after setting BUILD (absolute) and LOGDIR. Every process started here is tracked in PIDS and
# stopped by PID.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Sets RC_BIN, RPC_BIN and LOAD from $BUILD; exits (with $1, default 1) naming what is missing.
require_binaries() {
  local status=${1:-1}
  RC_BIN="$BUILD/ringcable"
  RPC_BIN="$BUILD/tools/rpc_stub/rpc_stub"
  LOAD="$BUILD/tools/load/ringcable-load"
  local b
  for b in "$RC_BIN" "$RPC_BIN" "$LOAD"; do
    [[ -x "$b" ]] || { log "missing $b (cmake --build $BUILD --target ringcable rpc_stub ringcable-load)"; exit "$status"; }
  done
}

PIDS=()
stop_pid() {  # TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done  # server before its RPC app
  PIDS=()
}

wait_port() {  # port, what; up to 30 s
  local i
  for ((i = 0; i < 150; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  log "$2 did not listen on $1 within 30 s"
  return 1
}

# start_ringcable PORT BROADCAST_PORT RPC_PORT [server flags...]: stops what runs, starts rpc_stub
# and ringcable (logs appended in $LOGDIR), waits for their ports; sets SERVER_PID. With
# SERVER_CPUS set (a taskset list), both run pinned to those CPUs (taskset execs: same PID).
SERVER_PID=""
start_ringcable() {
  local port=$1 bport=$2 rport=$3
  shift 3
  stop_all
  local pin=()
  [[ -z "${SERVER_CPUS:-}" ]] || pin=(taskset -c "$SERVER_CPUS")
  "${pin[@]}" "$RPC_BIN" --address "127.0.0.1:$rport" >>"$LOGDIR/rpc_stub.log" 2>&1 &
  PIDS+=($!)
  wait_port "$rport" rpc_stub
  "${pin[@]}" "$RC_BIN" --host 127.0.0.1 --port "$port" --http_broadcast_port "$bport" \
    --rpc_host "127.0.0.1:$rport" "$@" >>"$LOGDIR/ringcable.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$port" ringcable
  wait_port "$bport" "ringcable broadcast"
}
