#!/usr/bin/env bash
# check-cuda-compile.sh: compile (syntax and types only, nothing linked) every source and test
# that has CUDA-only code (#ifdef MNIST_WITH_CUDA) against this machine's Torch headers and a CUDA
# toolkit's headers, and the CUDA kernels (src/fused_cuda.cu) with its nvcc, so that a CPU-only machine catches what would break the CUDA build. Skips,
# saying so, where no CUDA toolkit headers are installed. It proves the code compiles against
# Debian's Torch 1.13 headers; the GPU machine's Torch 2.x is checked there (README "Benchmark").
set -euo pipefail
cd "$(dirname "$0")/.."
cuda_include=""
for dir in "${CUDA_HOME:-/usr/local/cuda}/include" /usr/local/cuda/include /usr/include; do
  [[ -f "$dir/cuda_runtime_api.h" ]] && { cuda_include=$dir; break; }
done
if [[ -z "$cuda_include" ]]; then
  echo "check-cuda-compile: SKIPPED: no CUDA toolkit headers (cuda_runtime_api.h) on this machine"
  exit 0
fi
torch_include=/usr/include/torch/csrc/api/include
[[ -d "$torch_include" ]] || { echo "check-cuda-compile: no Torch headers at $torch_include: run scripts/setup.sh" >&2; exit 1; }
# Debian's CPU-only libtorch-dev ships c10's CUDA headers but not the one CMake generates for them.
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
mkdir -p "$stub/c10/cuda/impl"
[[ -f /usr/include/c10/cuda/impl/cuda_cmake_macros.h ]] || echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$stub/c10/cuda/impl/cuda_cmake_macros.h"
mapfile -t files < <(grep -l 'MNIST_WITH_CUDA' src/*.cpp tests/*.cpp)
echo "check-cuda-compile: ${#files[@]} files against $cuda_include: ${files[*]}"
printf '%s\n' "${files[@]}" | xargs -P"$(nproc)" -I{} \
  g++ -fsyntax-only -std=c++17 -Wall -Wextra -Werror -DMNIST_WITH_CUDA -Isrc \
      -isystem "$torch_include" -isystem "$cuda_include" -isystem "$stub" {}
nvcc=$(dirname "$cuda_include")/bin/nvcc
if [[ -x "$nvcc" ]]; then
  echo "check-cuda-compile: src/fused_cuda.cu with $nvcc"
  "$nvcc" -std=c++17 -arch=sm_90 -Isrc -Werror all-warnings -c src/fused_cuda.cu -o "$stub/fused_cuda.o"
else
  echo "check-cuda-compile: no nvcc beside $cuda_include: src/fused_cuda.cu not compiled"
fi
echo "check-cuda-compile: passed"
