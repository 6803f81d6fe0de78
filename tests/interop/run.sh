#!/usr/bin/env bash
# ctest interop_js: the official Action Cable / AnyCable JS clients against the real ringcable
# binary, with tools/rpc_stub as the RPC backend. Everything it starts is stopped by PID on exit.
#
# Needs: RINGCABLE_BIN (ringcable binary), RINGCABLE_TOOLS_DIR (<build>/tools), node >= 18 + npm.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCENARIOS=(actioncable.test.mjs anycable.test.mjs anycable_ext.test.mjs turbo.test.mjs tls.test.mjs presence.test.mjs
           sse.test.mjs upgrade.test.mjs)
# Bounds (seconds); together they stay within the ctest TIMEOUT of 300.
NPM_TIMEOUT=90          # npm ci
STARTUP_TIMEOUT=15      # each server process becoming ready
NODE_TEST_TIMEOUT=150   # the whole `node --test` run

die() { echo "interop: $*" >&2; exit 1; }

# $RINGCABLE_BIN (the caller's choice) wins over the build tree's server that ctest sets.
RINGCABLE_BIN="${RINGCABLE_BIN:-${RINGCABLE_BIN_BUILT:-}}"
: "${RINGCABLE_BIN:?RINGCABLE_BIN must point to the ringcable binary}"
: "${RINGCABLE_TOOLS_DIR:?RINGCABLE_TOOLS_DIR must point to <build>/tools}"
RPC_STUB="$RINGCABLE_TOOLS_DIR/rpc_stub/rpc_stub"
[[ -x "$RINGCABLE_BIN" ]] || die "ringcable binary not found/executable: $RINGCABLE_BIN"
[[ -x "$RPC_STUB" ]] || die "rpc_stub binary not found/executable: $RPC_STUB (build target rpc_stub)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  die "node and npm are required (e.g. apt-get install nodejs npm); node=$(command -v node || echo missing) npm=$(command -v npm || echo missing)"
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
(( NODE_MAJOR >= 18 )) || die "node >= 18 is required (found $(node --version))"

# --- dependencies -----------------------------------------------------------------------------
# After a successful `npm ci` a copy of package-lock.json is kept in node_modules; the tree is
# stale when that copy is missing or differs from the committed lockfile.
STAMP="$HERE/node_modules/.ringcable-interop-lock"
if ! cmp -s "$HERE/package-lock.json" "$STAMP"; then
  echo "interop: installing JS dependencies (npm ci) in $HERE"
  (cd "$HERE" && timeout "$NPM_TIMEOUT" npm ci --no-audit --no-fund) || die "npm ci failed (offline? see output above)"
  cp "$HERE/package-lock.json" "$STAMP" || die "cannot write $STAMP"
fi

# --- processes --------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ringcable-interop.XXXXXX")"
RPC_PID=""
CABLE_PID=""
TLS_PID=""
NODE_PID=""

stop_pid() {  # stop_pid <pid> <name>: SIGTERM, SIGKILL after 10 s; exit status in STOPPED_RC
  local pid="$1" name="$2" i
  STOPPED_RC=0
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "interop: $name (pid $pid) ignored SIGTERM for 10s, killing" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  STOPPED_RC=$?
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$NODE_PID" node
  stop_pid "$CABLE_PID" ringcable
  stop_pid "$TLS_PID" "ringcable (tls)"
  stop_pid "$RPC_PID" rpc_stub
  if (( rc != 0 )); then
    for f in rpc_stub.log ringcable.log ringcable_tls.log; do
      [[ -s "$WORK/$f" ]] && { echo "----- $f -----"; tail -n 100 "$WORK/$f"; }
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Hermetic server config: no ANYCABLE_* from the caller's environment.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(ANYCABLE_|PORT$)')

# Two free TCP ports on 127.0.0.1 (the kernel picks them; tiny reuse race accepted).
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

"$RPC_STUB" --address 127.0.0.1:0 >"$WORK/rpc_stub.log" 2>&1 &
RPC_PID=$!
RPC_PORT=""
for ((i = 0; i < STARTUP_TIMEOUT * 10; i++)); do
  RPC_PORT="$(sed -n 's/^listening on \([0-9][0-9]*\).*/\1/p' "$WORK/rpc_stub.log" | head -n 1)"
  [[ -n "$RPC_PORT" ]] && break
  kill -0 "$RPC_PID" 2>/dev/null || die "rpc_stub exited during startup"
  sleep 0.1
done
[[ -n "$RPC_PORT" ]] || die "rpc_stub did not print 'listening on <port>' within ${STARTUP_TIMEOUT}s"

read -r CABLE_PORT BROADCAST_PORT TLS_PORT < <(free_ports 3)
[[ -n "${TLS_PORT:-}" ]] || die "could not find free ports"

# --broker memory: anycable_ext.test.mjs (positions, history, session restore) and sse.test.mjs
# (Last-Event-ID catch-up); v1 clients are unaffected. --sse / --poll: the HTTP transports.
# RPC-less channels for turbo.test.mjs (own secrets, so HTTP broadcasting stays
# unauthenticated).
TURBO_SECRET="interop-turbo-secret"
STREAMS_SECRET="interop-streams-secret"
"$RINGCABLE_BIN" --host 127.0.0.1 --port "$CABLE_PORT" --http_broadcast_port "$BROADCAST_PORT" \
  --rpc_host "127.0.0.1:$RPC_PORT" --turbo_streams --turbo_streams_secret "$TURBO_SECRET" \
  --streams_secret "$STREAMS_SECRET" --broker memory --sse --poll >"$WORK/ringcable.log" 2>&1 &
CABLE_PID=$!

# A second server for tls.test.mjs: wss:// + https:// with a throwaway self-signed certificate
# (trusted by node through NODE_EXTRA_CA_CERTS, so certificates are really verified), public
# streams, HTTP broadcasts on its TLS port (a key is set), permessage-deflate enabled.
TLS_DIR="$WORK/tls"
TLS_KEY_SECRET="interop-tls-broadcast-key"
mkdir -p "$TLS_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$WORK/openssl.log" 2>&1 ||
  die "openssl could not make a test certificate: $(cat "$WORK/openssl.log")"
"$RINGCABLE_BIN" --host 127.0.0.1 --port "$TLS_PORT" --norpc --noauth --public_streams \
  --broadcast_key "$TLS_KEY_SECRET" --ssl_cert "$TLS_DIR/cert.pem" --ssl_key "$TLS_DIR/key.pem" \
  --enable_ws_compression --metrics_http /metrics >"$WORK/ringcable_tls.log" 2>&1 &
TLS_PID=$!

health_ok() {  # health_ok <port> <http|https>
  NODE_EXTRA_CA_CERTS="$TLS_DIR/cert.pem" node -e '
    const mod = require(process.argv[2]);
    const req = mod.get({ host: "127.0.0.1", port: Number(process.argv[1]), path: "/health", timeout: 1000 },
      res => { res.resume(); process.exit(res.statusCode === 200 ? 0 : 1); });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => process.exit(1));' "$1" "$2"
}
for spec in "$CABLE_PID $CABLE_PORT http ringcable" "$TLS_PID $TLS_PORT https ringcable-tls"; do
  read -r pid port scheme name <<<"$spec"
  ready=0
  for ((i = 0; i < STARTUP_TIMEOUT * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
    if health_ok "$port" "$scheme"; then ready=1; break; fi
    sleep 0.25
  done
  (( ready )) || die "$name did not answer GET $scheme://.../health with 200 within ${STARTUP_TIMEOUT}s"
done
echo "interop: ringcable pid $CABLE_PID on 127.0.0.1:$CABLE_PORT (broadcast :$BROADCAST_PORT), tls pid $TLS_PID on :$TLS_PORT, rpc_stub pid $RPC_PID on :$RPC_PORT"

# --- scenarios --------------------------------------------------------------------------------
cd "$HERE" || die "cannot cd to $HERE"
NODE_EXTRA_CA_CERTS="$TLS_DIR/cert.pem" RINGCABLE_INTEROP_TLS_PORT="$TLS_PORT" \
  RINGCABLE_INTEROP_TLS_BROADCAST_KEY="$TLS_KEY_SECRET" \
  RINGCABLE_INTEROP_PORT="$CABLE_PORT" RINGCABLE_INTEROP_BROADCAST_PORT="$BROADCAST_PORT" \
  RINGCABLE_INTEROP_BIN="$RINGCABLE_BIN" RINGCABLE_INTEROP_RPC_PORT="$RPC_PORT" \
  RINGCABLE_INTEROP_TURBO_SECRET="$TURBO_SECRET" RINGCABLE_INTEROP_STREAMS_SECRET="$STREAMS_SECRET" \
  timeout --kill-after=10 "$NODE_TEST_TIMEOUT" node --test "${SCENARIOS[@]}" &
NODE_PID=$!
wait "$NODE_PID"   # in the background so INT/TERM traps run at once
rc=$?
NODE_PID=""
(( rc == 124 || rc == 137 )) && echo "interop: node --test timed out after ${NODE_TEST_TIMEOUT}s" >&2

# The servers must have survived the scenarios and must shut down cleanly on SIGTERM (exit 0).
for name in ringcable ringcable-tls; do
  if [[ "$name" == ringcable ]]; then pid="$CABLE_PID"; CABLE_PID=""; else pid="$TLS_PID"; TLS_PID=""; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "interop: $name died during the scenarios" >&2
    (( rc == 0 )) && rc=1
  fi
  stop_pid "$pid" "$name"
  if (( STOPPED_RC != 0 )); then
    echo "interop: $name exited with status $STOPPED_RC after SIGTERM (expected 0)" >&2
    (( rc == 0 )) && rc=1
  fi
done
exit "$rc"
