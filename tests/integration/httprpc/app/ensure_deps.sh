#!/usr/bin/env bash
# Installs the httprpc test apps' npm dependencies (package-lock.json, pinned) into
# node_modules when they are missing or stale; ctest runs it once before the httprpc tests.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "httprpc: node and npm are required (scripts/setup.sh installs them)" >&2
  exit 1
}
STAMP="$HERE/node_modules/.ringcable-httprpc-lock"
if cmp -s "$HERE/package-lock.json" "$STAMP"; then
  echo "httprpc: npm dependencies are up to date"
  exit 0
fi
echo "httprpc: installing npm dependencies (npm ci) in $HERE"
(cd "$HERE" && timeout 120 npm ci --no-audit --no-fund)
cp "$HERE/package-lock.json" "$STAMP"
