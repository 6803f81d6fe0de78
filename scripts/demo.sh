#!/usr/bin/env bash
# Starts ringcable on ws://localhost:8080/cable with the bundled demo RPC app (tools/rpc_stub), so it
# runs with no external services. HTTP broadcasts: POST http://localhost:8090/_broadcast.
set -euo pipefail
cd "$(dirname "$0")/.."
build/tools/rpc_stub/rpc_stub --address 127.0.0.1:50051 &
stub=$!
trap 'kill $stub 2>/dev/null || true' EXIT
exec_status=0
build/ringcable --rpc_host 127.0.0.1:50051 "$@" || exec_status=$?
exit $exec_status
