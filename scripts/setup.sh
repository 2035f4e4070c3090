#!/usr/bin/env bash
# setup.sh: what run.sh and test.sh need, idempotent and quick when already done:
# Debian packages (only if missing), PyTorch's LibTorch in .venv/torch (scripts/venv.sh), a Release
# build in build/ against it, and the data in data/.
set -euo pipefail
cd "$(dirname "$0")/.."

# libopenblas0-pthread: OpenCV's linear algebra; with Debian's reference BLAS it is ~10x slower.
# python3-venv: the virtual environments of scripts/venv.sh. libprotobuf-dev, protobuf-compiler:
# TensorBoard's event files (src/interop/tensorboard.proto).
scripts/apt.sh g++ cmake make libopenblas0-pthread libopencv-dev nlohmann-json3-dev libcli11-dev \
               libgtest-dev zlib1g-dev libhdf5-dev libzip-dev pkgconf dataset-fashion-mnist curl ca-certificates python3-venv \
               libprotobuf-dev protobuf-compiler

scripts/venv.sh torch >/dev/null  # LibTorch (inside PyTorch) for the build, PyTorch for the interop tests
scripts/venv.sh lint >/dev/null   # lizard, for the test of function length and complexity (tests/style.sh)
scripts/venv.sh tensorboard >/dev/null  # TensorBoard, whose reader checks the event files (tests/tensorboard_readback.py)

# CMakeLists.txt finds the LibTorch in .venv/torch by itself; a build/ configured against another
# LibTorch (Debian's libtorch-dev, say) is configured anew.
if [ -f build/CMakeCache.txt ] && ! grep -q "^Torch_DIR:PATH=$PWD/.venv/torch/" build/CMakeCache.txt; then
  echo "setup: build/ was configured against another LibTorch; configuring it again"
  rm -rf build
fi
if [ ! -f build/CMakeCache.txt ]; then
  mkdir -p build
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >build/configure.log 2>&1 ||
    { tail -n 30 build/configure.log >&2; echo "setup: CMake could not configure build/ (whole log: build/configure.log)" >&2; exit 1; }
fi
if ! cmake --build build -j"$(nproc)" >build/build.log 2>&1; then
  tail -n 60 build/build.log >&2
  echo "setup: the build failed (whole log: build/build.log)" >&2
  exit 1
fi

scripts/fetch-data.sh all
