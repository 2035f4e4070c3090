#!/usr/bin/env bash
# cuda-build.sh [ctest args]: the CUDA build, on any machine with CUDA's nvcc, GPU or not. Builds
# build-cuda/ against the LibTorch inside PyTorch 2.14.1 built with CUDA 13 (.venv/torch-cuda,
# scripts/venv.sh), without OpenCV, HDF5 or libzip (as on a GPU machine that lacks them): the kernels (nvcc), every
# source with its CUDA code switched on, and the `mnist` and test binaries linked against
# libtorch_cuda. Then runs the test suite there; without a GPU the CUDA tests skip and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null  # packages and data (the build in build/ too)

source scripts/cuda-toolkit.sh  # nvcc, cuda_root
python=$(scripts/venv.sh torch-cuda)
torch_package=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
echo "cuda-build: $("$nvcc" --version | tail -n 1); PyTorch $("$python" -c 'import torch; print(torch.__version__, "(CUDA", torch.version.cuda + ")")' 2>/dev/null)"

if [ ! -f build-cuda/CMakeCache.txt ]; then
  mkdir -p build-cuda
  # CUDA_TOOLKIT_ROOT_DIR: Torch's CMake package finds the toolkit from it (nvcc may be a link elsewhere).
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DMNIST_WITH_OPENCV=OFF -DMNIST_WITH_KERAS_FILES=OFF -DMNIST_TORCH_PACKAGE="$torch_package" \
        -DCMAKE_CUDA_COMPILER="$nvcc" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" \
        >build-cuda/configure.log 2>&1 ||
    { tail -n 30 build-cuda/configure.log >&2; echo "cuda-build: CMake could not configure build-cuda/ (build-cuda/configure.log)" >&2; exit 1; }
fi
configured_with_cuda build-cuda ||
  { echo "cuda-build: build-cuda/ was configured without CUDA (build-cuda/configure.log)" >&2; exit 1; }
if ! cmake --build build-cuda -j"$(nproc)" >build-cuda/build.log 2>&1; then
  grep -m 20 -A 3 -E 'error|undefined reference' build-cuda/build.log >&2 || tail -n 40 build-cuda/build.log >&2
  echo "cuda-build: the CUDA build failed (whole log: build-cuda/build.log)" >&2
  exit 1
fi
# ldd's output is captured first: under pipefail, `ldd | grep -q` fails whenever grep exits before ldd
# has written its last line (SIGPIPE), which happens at random.
for binary in build-cuda/mnist build-cuda/tests/unit_tests; do
  libraries=$(ldd "$binary")
  grep -q libtorch_cuda <<<"$libraries" || { echo "cuda-build: $binary is not linked against libtorch_cuda" >&2; exit 1; }
done
echo "cuda-build: build-cuda/mnist and build-cuda/tests/unit_tests linked against libtorch_cuda"
# Every test but the Keras comparisons and the slow command-line tables (k-NN baselines, bad inputs,
# SIGINT), which the CPU build runs on the same code.
ctest --test-dir build-cuda --output-on-failure -j"$(nproc)" -LE keras -E '^(Baselines|BadInput)\.|^Cli\.Sigint' "$@"
