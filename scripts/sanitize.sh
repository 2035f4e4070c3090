#!/usr/bin/env bash
# sanitize.sh: build the test suite with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/,
# CMake option MNIST_SANITIZE) and run the unit tests under it. LibTorch itself is not instrumented.
# The real-data end-to-end tests (Cli.*, BadInput.*) are left to the normal build (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
if [ ! -f build-asan/CMakeCache.txt ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DMNIST_SANITIZE=ON >/dev/null
fi
if ! cmake --build build-asan -j"$(nproc)" --target unit_tests mnist >build-asan/build.log 2>&1; then
  tail -n 40 build-asan/build.log >&2
  echo "sanitize.sh: the sanitizer build failed" >&2
  exit 1
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -E '^(Cli|BadInput)\.' "$@"
