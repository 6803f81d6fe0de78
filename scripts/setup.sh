#!/usr/bin/env bash
# Installs what ringcable needs to build and test on Debian 12, skipping what is already there.
set -euo pipefail
packages=(build-essential cmake pkg-config git curl ca-certificates
  liburing-dev libwslay-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libsimdjson-dev libmimalloc-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev
  zlib1g-dev  # permessage-deflate (--enable_ws_compression)
  libtomlplusplus-dev prometheus
  libcurl4-openssl-dev  # RPC over HTTP (libcurl's multi interface)
  openssl  # the HTTP RPC tests make a throwaway CA for https://
  libhiredis-dev redis-server libnats-dev nats-server  # clusters (tests start their own brokers)
  iproute2  # the half-open connection test takes its own loopback down
  clang libclang-rt-14-dev  # clang + libFuzzer runtime: scripts/fuzz.sh
  clang-format  # scripts/test.sh checks the tree against .clang-format
  ninja-build lld)  # scripts/test.sh: faster fresh builds (Ninja, the lld linker)
# The interop tests run the official JS clients under Node.js; use the machine's Node if it has one.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
