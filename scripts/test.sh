#!/usr/bin/env bash
# Builds and runs the whole test suite: the warnings-as-errors optimized server, every test under
# ASan+UBSan (the integration and interop tests also against the optimized server), and the hub
# tests under ThreadSanitizer. Exit status is ctest's. First, every
# tracked C++ file must match .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== clang-format =="
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z '*.cc' '*.h' | xargs -0 clang-format --dry-run -Werror
else
  find src tests tools bench \( -name '*.cc' -o -name '*.h' \) -print0 | xargs -0 clang-format --dry-run -Werror
fi

# Ninja, lld and line-table debug info (-g1: backtraces keep file:line) keep a fresh CI build to a
# few minutes; the sanitizer build runs at -O1, enough for ASan's speed, cheaper to compile.
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
linker=()
command -v ld.lld >/dev/null 2>&1 && linker=(-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld)
fast_debug=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
            -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG")
sanitizer_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCABLE_BUILD_BENCH=OFF
                 -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1")

# Nothing is built twice: the optimized build is the server, the tools and the benchmarks; every
# test is built once, in the sanitizer build, and the integration and interop tests run twice: once
# against the optimized server (what users run; RINGCABLE_BIN overrides the build tree's server),
# once against the ASan+UBSan server with the unit tests.
echo "== build (RelWithDebInfo, -Werror): server, tools, benchmarks =="
cmake -S . -B build "${generator[@]}" "${linker[@]}" "${fast_debug[@]}" -DCABLE_WERROR=ON \
  -DCABLE_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$jobs"

echo "== build (ASan + UBSan, -Werror): server, tools, every test =="
cmake -S . -B build-asan "${generator[@]}" "${linker[@]}" "${sanitizer_flags[@]}" -DCABLE_WERROR=ON \
  -DCABLE_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"

export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
echo "== integration + interop tests against the optimized server =="
(cd build-asan && RINGCABLE_BIN="$PWD/../build/ringcable" \
  ctest -j"$jobs" -L 'integration|interop' --output-on-failure --timeout 600)

echo "== every test against the ASan + UBSan server =="
(cd build-asan && ctest -j"$jobs" --output-on-failure --timeout 900)

echo "== TSan (hub) =="
cmake -S . -B build-tsan "${generator[@]}" "${linker[@]}" "${sanitizer_flags[@]}" -DCABLE_WERROR=ON \
  -DCABLE_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs" --target hub_test
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest -R '^hub_test$' --output-on-failure --timeout 600)

echo "== libFuzzer smoke (10 s per target) =="
scripts/fuzz.sh 10
