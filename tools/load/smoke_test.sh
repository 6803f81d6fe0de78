#!/usr/bin/env bash
# ctest smoke test: rpc_stub + ringcable on free ports, then ringcable-load --mode broadcast with
# 50 clients x 20 closed-loop publications; the RESULT line must report 1000 deliveries, 0 lost.
# Then --mode restore: 50 ext clients drop, 10 publications, all restore and catch up (500).
# Usage: smoke_test.sh <ringcable-load> <ringcable> <rpc_stub>
set -u
LOAD=$1 SERVER=$2 STUB=$3
TMP=$(mktemp -d /tmp/ringcable-load-smoke.XXXXXX)
STUB_PID= SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null && wait "$STUB_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

"$STUB" --address 127.0.0.1:0 >"$TMP/stub.out" 2>"$TMP/stub.err" &
STUB_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/stub.out" && break; sleep 0.1; done
RPC_PORT=$(sed -n 's/.*listening on \([0-9]*\).*/\1/p' "$TMP/stub.out")
[ -n "$RPC_PORT" ] || { echo "rpc_stub did not start"; cat "$TMP/stub.err"; exit 1; }

PORT=$(free_port)
BPORT=$(free_port)
"$SERVER" --host 127.0.0.1 --port "$PORT" --http_broadcast_port "$BPORT" \
  --rpc_host "127.0.0.1:$RPC_PORT" --broker memory >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

fail() { echo "FAIL: $*"; cat "$TMP/load.err"; tail -20 "$TMP/server.log"; exit 1; }

# broadcast LABEL MESSAGES DELIVERIES [load-tool args...]: 50 clients, closed loop; every
# publication sent, every delivery made, none lost or out of order.
broadcast() {
  local label=$1 messages=$2 deliveries=$3
  shift 3
  timeout 25 "$LOAD" --mode broadcast --url "ws://127.0.0.1:$PORT/cable" \
    --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --connections 50 --messages "$messages" \
    --msg-rate 0 --timeout 10 "$@" >"$TMP/load.out" 2>"$TMP/load.err"
  local rc=$?
  cat "$TMP/load.out"
  local result
  result=$(grep '^RESULT ' "$TMP/load.out")
  [ "$rc" -eq 0 ] || fail "$label: ringcable-load exited $rc"
  [ -n "$result" ] || fail "$label: no RESULT line"
  echo "$result" | grep -q '"subscribed":50,' || fail "$label: not 50 subscribed"
  echo "$result" | grep -q "\"messages_sent\":$messages," || fail "$label: not $messages sent"
  echo "$result" | grep -q "\"deliveries\":$deliveries," || fail "$label: not $deliveries deliveries"
  echo "$result" | grep -q '"lost":0,' || fail "$label: lost is not 0"
  echo "$result" | grep -q '"out_of_order":0,' || fail "$label: out_of_order is not 0"
}

broadcast single 20 1000 --server-pid "$SERVER_PID"
# AnyCable's batch format: 23 publications as 5 POSTs of up to 5 (the last holds 3).
broadcast batched 23 1150 --batch 5

# Reconnect storm: every client comes back with its sid, restored, and catches up exactly once.
timeout 40 "$LOAD" --mode restore --url "ws://127.0.0.1:$PORT/cable" \
  --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --connections 50 --messages 10 \
  --identifier '{"channel":"BenchmarkChannel","stream":"storm"}' --timeout 10 --no-progress \
  >"$TMP/load.out" 2>"$TMP/load.err"
rc=$?
cat "$TMP/load.out"
result=$(grep '^RESULT ' "$TMP/load.out")
[ "$rc" -eq 0 ] || fail "restore: ringcable-load exited $rc"
for want in '"subscribed":50,' '"restored":50,' '"not_restored":0,' '"messages":10,' \
  '"deliveries":500,' '"lost":0,' '"out_of_order":0,'; do
  echo "$result" | grep -qF "$want" || fail "restore: expected $want"
done
echo "PASS"
