#!/usr/bin/env bash
# ctest smoke test: rpc_stub + ringcable on free ports, then ringcable-load --mode broadcast with
# 50 clients x 20 closed-loop publications; the RESULT line must report 1000 deliveries, 0 lost.
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
  --rpc_host "127.0.0.1:$RPC_PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

timeout 25 "$LOAD" --mode broadcast --url "ws://127.0.0.1:$PORT/cable" \
  --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --connections 50 --messages 20 \
  --msg-rate 0 --timeout 10 --server-pid "$SERVER_PID" >"$TMP/load.out" 2>"$TMP/load.err"
RC=$?
cat "$TMP/load.out"
RESULT=$(grep '^RESULT ' "$TMP/load.out")
fail() { echo "FAIL: $*"; cat "$TMP/load.err"; tail -20 "$TMP/server.log"; exit 1; }
[ "$RC" -eq 0 ] || fail "ringcable-load exited $RC"
[ -n "$RESULT" ] || fail "no RESULT line"
echo "$RESULT" | grep -q '"subscribed":50,' || fail "not 50 subscribed"
echo "$RESULT" | grep -q '"deliveries":1000,' || fail "not 1000 deliveries"
echo "$RESULT" | grep -q '"lost":0,' || fail "lost is not 0"
echo "$RESULT" | grep -q '"out_of_order":0,' || fail "out_of_order is not 0"

# The same through AnyCable's batch format: 23 publications as 5 POSTs of up to 5 (the last holds 3).
timeout 25 "$LOAD" --mode broadcast --url "ws://127.0.0.1:$PORT/cable" \
  --broadcast-url "http://127.0.0.1:$BPORT/_broadcast" --connections 50 --messages 23 \
  --batch 5 --msg-rate 0 --timeout 10 >"$TMP/load.out" 2>"$TMP/load.err"
RC=$?
cat "$TMP/load.out"
RESULT=$(grep '^RESULT ' "$TMP/load.out")
[ "$RC" -eq 0 ] || fail "batched: ringcable-load exited $RC"
echo "$RESULT" | grep -q '"messages_sent":23,' || fail "batched: not 23 sent"
echo "$RESULT" | grep -q '"deliveries":1150,' || fail "batched: not 1150 deliveries"
echo "$RESULT" | grep -q '"lost":0,' || fail "batched: lost is not 0"
echo "$RESULT" | grep -q '"out_of_order":0,' || fail "batched: out_of_order is not 0"
echo "PASS"
