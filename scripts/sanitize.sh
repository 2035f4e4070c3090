#!/usr/bin/env bash
# sanitize.sh: build the test suite with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/,
# CMake option MNIST_SANITIZE) and run the unit tests under it. LibTorch itself is not instrumented.
# The tests that spawn the binary or Python (Cli.*, BadInput.*, Keras.*, Export.PythonTorchLoads*)
# are left to the normal build (scripts/test.sh). This build takes Debian's LibTorch 1.13.1
# (libtorch-dev), so that the older LibTorch the code supports is built and tested too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/apt.sh libtorch-dev python3-torch
if [ ! -f build-asan/CMakeCache.txt ]; then
  mkdir -p build-asan
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DMNIST_SANITIZE=ON -DMNIST_TORCH_PACKAGE= >build-asan/configure.log 2>&1 ||
    { tail -n 30 build-asan/configure.log >&2; echo "sanitize.sh: CMake could not configure build-asan/" >&2; exit 1; }
fi
grep "LibTorch" build-asan/configure.log || true
if ! cmake --build build-asan -j"$(nproc)" --target unit_tests mnist >build-asan/build.log 2>&1; then
  tail -n 40 build-asan/build.log >&2
  echo "sanitize.sh: the sanitizer build failed" >&2
  exit 1
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# In-process tests only: the ones that spawn the binary or Python (the CLI, Keras and Python torch
# checks) run in the other builds.
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -E '^(Cli|BadInput|Keras)\.|^Export\.PythonTorchLoads' "$@"
