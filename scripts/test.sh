#!/usr/bin/env bash
# Builds and runs the whole test suite: the warnings-as-errors build with every test, the same tests
# under ASan+UBSan, and the hub tests under ThreadSanitizer. Exit status is ctest's. First, every
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

echo "== build (Release, -Werror) =="
cmake -S . -B build -DCABLE_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest -j"$jobs" --output-on-failure --timeout 600)

echo "== ASan + UBSan =="
cmake -S . -B build-asan -DCABLE_WERROR=ON -DCABLE_SANITIZE=address,undefined -DCABLE_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest -j"$jobs" --output-on-failure --timeout 900)

echo "== TSan (hub) =="
cmake -S . -B build-tsan -DCABLE_WERROR=ON -DCABLE_SANITIZE=thread -DCABLE_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target hub_test
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest -R '^hub_test$' --output-on-failure --timeout 600)

echo "== libFuzzer smoke (10 s per target) =="
scripts/fuzz.sh 10
