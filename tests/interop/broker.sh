#!/usr/bin/env bash
# ctest interop_js_redis_broker / interop_js_nats_broker: @anycable/core (actioncable-v1-ext-json)
# moving between two ringcable nodes that share a real redis-server (--broker redis) or a real
# `nats-server -js` (--broker nats) (broker.test.mjs), and cluster-wide presence through
# channel.presence (presence_broker.test.mjs; the nodes run with --public_streams).
#   broker.sh redis|nats
# Starts rpc_stub, the broker server and both nodes on free loopback ports; stops them by PID on
# exit. Exit 77 (ctest SKIP) when that server is not installed.
#
# Needs: RINGCABLE_BIN, RINGCABLE_TOOLS_DIR (<build>/tools), node >= 18 + npm (run.sh installs
# the JS dependencies; this script only checks they are there).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STARTUP_TIMEOUT=15
NODE_TEST_TIMEOUT=90

BROKER="${1:-}"
[[ "$BROKER" == redis || "$BROKER" == nats ]] || { echo "usage: broker.sh redis|nats" >&2; exit 2; }
die() { echo "interop-$BROKER-broker: $*" >&2; exit 1; }

RINGCABLE_BIN="${RINGCABLE_BIN:-${RINGCABLE_BIN_BUILT:-}}"
: "${RINGCABLE_BIN:?RINGCABLE_BIN must point to the ringcable binary}"
: "${RINGCABLE_TOOLS_DIR:?RINGCABLE_TOOLS_DIR must point to <build>/tools}"
RPC_STUB="$RINGCABLE_TOOLS_DIR/rpc_stub/rpc_stub"
[[ -x "$RINGCABLE_BIN" ]] || die "ringcable binary not found/executable: $RINGCABLE_BIN"
[[ -x "$RPC_STUB" ]] || die "rpc_stub binary not found/executable: $RPC_STUB"
SERVER_NAME=$([[ "$BROKER" == redis ]] && echo redis-server || echo nats-server)
BROKER_SERVER="$(command -v "$SERVER_NAME" || true)"
[[ -n "$BROKER_SERVER" ]] || { echo "interop-$BROKER-broker: $SERVER_NAME is not installed: skipped"; exit 77; }
command -v node >/dev/null 2>&1 || die "node is required"
[[ -d "$HERE/node_modules/@anycable/core" ]] || die "JS dependencies missing: run tests/interop/run.sh (npm ci) first"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ringcable-interop-rb.XXXXXX")"
PIDS=()
NODE_PID=""

stop_pid() {  # SIGTERM, SIGKILL after 10 s; exit status in STOPPED_RC
  local pid="$1" i
  STOPPED_RC=0
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  STOPPED_RC=$?
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$NODE_PID"
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if (( rc != 0 && rc != 77 )); then
    for f in rpc_stub.log broker.log node_a.log node_b.log; do
      [[ -s "$WORK/$f" ]] && { echo "----- $f -----"; tail -n 60 "$WORK/$f"; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(ANYCABLE_|PORT$|REDIS_URL$)')

free_ports() {
  node -e '
    const net = require("net");
    const n = Number(process.argv[1]); const servers = []; const ports = [];
    (function next() {
      if (ports.length === n) { console.log(ports.join(" ")); servers.forEach(s => s.close()); return; }
      const s = net.createServer(); servers.push(s);
      s.listen(0, "127.0.0.1", () => { ports.push(s.address().port); next(); });
    })();' "$1"
}

wait_port() {  # wait_port <pid> <port> <name>: until the port accepts TCP connections
  local i
  for ((i = 0; i < STARTUP_TIMEOUT * 4; i++)); do
    kill -0 "$1" 2>/dev/null || die "$3 exited during startup"
    if node -e 'const s = require("net").connect(Number(process.argv[1]), "127.0.0.1",
        () => process.exit(0)); s.on("error", () => process.exit(1));' "$2"; then return 0; fi
    sleep 0.25
  done
  die "$3 did not listen on $2 within ${STARTUP_TIMEOUT}s"
}

"$RPC_STUB" --address 127.0.0.1:0 >"$WORK/rpc_stub.log" 2>&1 &
PIDS+=($!)
RPC_PORT=""
for ((i = 0; i < STARTUP_TIMEOUT * 10; i++)); do
  RPC_PORT="$(sed -n 's/^listening on \([0-9][0-9]*\).*/\1/p' "$WORK/rpc_stub.log" | head -n 1)"
  [[ -n "$RPC_PORT" ]] && break
  sleep 0.1
done
[[ -n "$RPC_PORT" ]] || die "rpc_stub did not start"

read -r BROKER_PORT A_PORT A_BCAST B_PORT B_BCAST < <(free_ports 5)
[[ -n "${B_BCAST:-}" ]] || die "could not find free ports"
if [[ "$BROKER" == redis ]]; then
  "$BROKER_SERVER" --port "$BROKER_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >"$WORK/broker.log" 2>&1 &
  BROKER_FLAGS=(--broker redis --redis_url "redis://127.0.0.1:$BROKER_PORT" --pubsub redis)
  TEST_FILES=(broker.test.mjs presence_broker.test.mjs)
else
  "$BROKER_SERVER" -js -sd "$WORK/jetstream" -a 127.0.0.1 -p "$BROKER_PORT" \
    >"$WORK/broker.log" 2>&1 &
  BROKER_FLAGS=(--broker nats --nats_servers "nats://127.0.0.1:$BROKER_PORT")
  TEST_FILES=(broker.test.mjs presence_broker.test.mjs)
fi
BROKER_PID=$!
PIDS=("$BROKER_PID" "${PIDS[@]}")
wait_port "$BROKER_PID" "$BROKER_PORT" "$SERVER_NAME"

start_node() {  # start_node <port> <broadcast port> <log>
  "$RINGCABLE_BIN" --host 127.0.0.1 --port "$1" --http_broadcast_port "$2" \
    --rpc_host "127.0.0.1:$RPC_PORT" "${BROKER_FLAGS[@]}" --broadcast_adapter http --public_streams \
    >"$WORK/$3" 2>&1 &
  NODE_PIDS+=($!)
}
NODE_PIDS=()
start_node "$A_PORT" "$A_BCAST" node_a.log
start_node "$B_PORT" "$B_BCAST" node_b.log
PIDS=("${NODE_PIDS[@]}" "${PIDS[@]}")
wait_port "${NODE_PIDS[0]}" "$A_PORT" "ringcable A"
wait_port "${NODE_PIDS[1]}" "$B_PORT" "ringcable B"

cd "$HERE" || die "cannot cd to $HERE"
RINGCABLE_INTEROP_PORT="$A_PORT" RINGCABLE_INTEROP_BROADCAST_PORT="$A_BCAST" \
  RINGCABLE_INTEROP_PORT_B="$B_PORT" RINGCABLE_INTEROP_BROADCAST_PORT_B="$B_BCAST" \
  RINGCABLE_INTEROP_BROKER="$BROKER" \
  timeout --kill-after=10 "$NODE_TEST_TIMEOUT" node --test "${TEST_FILES[@]}" &
NODE_PID=$!
wait "$NODE_PID"
rc=$?
NODE_PID=""
for pid in "${NODE_PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "interop-$BROKER-broker: a ringcable node died" >&2; (( rc == 0 )) && rc=1; }
done
exit "$rc"
