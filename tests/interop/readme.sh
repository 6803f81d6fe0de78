#!/usr/bin/env bash
# ctest interop_readme: the README's run example (ringcable --public + @anycable/core + curl).
# Needs RINGCABLE_BIN, node, curl, and tests/interop/node_modules (installed by run.sh, which ctest
# runs first).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# $RINGCABLE_BIN (the caller's choice) wins over the build tree's server that ctest sets.
RINGCABLE_BIN="${RINGCABLE_BIN:-${RINGCABLE_BIN_BUILT:-}}"
: "${RINGCABLE_BIN:?RINGCABLE_BIN must point to the ringcable binary}"
command -v curl >/dev/null || { echo "interop_readme: curl is required" >&2; exit 1; }
cd "$HERE"
[[ -d node_modules/@anycable/core ]] || npm ci --no-audit --no-fund >/dev/null
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(ANYCABLE_|PORT$)')
read -r PORT BPORT < <(node -e '
  const net = require("net"); const ports = []; let n = 0;
  for (let i = 0; i < 2; i++) { const s = net.createServer(); s.listen(0, "127.0.0.1", () => {
    ports.push(s.address().port); s.close(); if (++n === 2) console.log(ports.join(" ")); }); }')
LOG="$(mktemp "${TMPDIR:-/tmp}/ringcable-readme.XXXXXX")"
"$RINGCABLE_BIN" --public --host 127.0.0.1 --port "$PORT" --http_broadcast_port "$BPORT" >"$LOG" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
RINGCABLE_README_PORT="$PORT" RINGCABLE_README_BROADCAST_PORT="$BPORT" \
  timeout --kill-after=5 60 node --test readme.test.mjs || { cat "$LOG" >&2; exit 1; }
