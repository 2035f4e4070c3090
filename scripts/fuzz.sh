#!/usr/bin/env bash
# fuzz.sh [SECONDS]: build the libFuzzer targets with clang (build-fuzz/) and run each for SECONDS
# (default 60) on its seed corpus in tests/fuzz/corpus/<target>, one target per core at a time. A
# crash fails the script and leaves the input in build-fuzz/crash-<target>-*: copy it into
# tests/fuzz/regressions/<target>/ so the normal test suite replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

scripts/setup.sh >/dev/null
scripts/apt.sh clang-14 libclang-rt-14-dev

if [ ! -f build-fuzz/CMakeCache.txt ]; then
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
        -DMNIST_FUZZ=ON -DMNIST_BUILD_TESTS=OFF >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" --target fuzz_idx fuzz_config fuzz_keras fuzz_keras_files >build-fuzz/build.log 2>&1 ||
  { tail -n 40 build-fuzz/build.log >&2; echo "fuzz.sh: the fuzzer build failed" >&2; exit 1; }

# One target per core at a time: each runs for SECONDS on its own core.
fuzz_one() {  # fuzz_one TARGET: run it, then print its stats (or its crash)
  local target=$1 work="build-fuzz/corpus-$1"
  mkdir -p "$work"
  if ! build-fuzz/tests/fuzz/fuzz_$target -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="build-fuzz/crash-$target-" \
         "$work" "tests/fuzz/corpus/$target" 2>build-fuzz/fuzz_$target.log; then
    tail -n 40 build-fuzz/fuzz_$target.log >&2
    echo "fuzz.sh: fuzz_$target found a crash" >&2
    return 1
  fi
  echo "fuzz.sh: fuzz_$target ran ${seconds}s"
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build-fuzz/fuzz_$target.log | sed "s/^/  /"
}
status=0
pids=()
for target in idx config keras keras_files; do
  fuzz_one "$target" >"build-fuzz/fuzz_$target.out" 2>&1 &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$(nproc)" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
cat build-fuzz/fuzz_*.out
[ "$status" -eq 0 ] || exit 1
echo "fuzz.sh: no crashes in ${seconds}s per target"
