#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan, build-fuzz/) and runs each for N seconds
# (default 10) starting from its committed seed corpus. Exits non-zero on the first crash, leak,
# sanitizer report or timeout; the reproducer is left in build-fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
# Long runs and minimisation: see docs/security.md. Warnings are not errors here: the -Werror
# gcc build in scripts/test.sh is the warnings gate; this one is about crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuzz_http_head fuzz_http_chunked fuzz_ws_reader fuzz_command fuzz_broadcast
           fuzz_message_encoder)
fi
build=${FUZZ_BUILD_DIR:-build-fuzz}

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
CC=clang CXX=clang++ cmake -S . -B "$build" "${generator[@]}" -DCABLE_BUILD_FUZZ=ON -DCABLE_BUILD_TESTS=ON \
  -DCABLE_BUILD_BENCH=OFF -DCABLE_SANITIZE=address,undefined -DCABLE_WERROR=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
for t in "${targets[@]}"; do
  # Generated inputs go to a scratch corpus: the committed seeds stay small and reviewed.
  work="$build/corpus/$t"
  art="$build/artifacts/$t"
  mkdir -p "$work" "$art"
  echo "== $t (${secs}s) =="
  if ! "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" \
      "$work" "tests/fuzz/corpus/$t" 2>"$build/$t.log"; then
    tail -n 60 "$build/$t.log"
    echo "FAIL: $t crashed; reproducer: $(ls -t "$art" | head -n 1)" >&2
    status=1
  else
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$build/$t.log" || true
  fi
done
exit $status
