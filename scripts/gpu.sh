#!/usr/bin/env bash
# gpu.sh pack | run: the CUDA build, tests and benchmark on a GPU machine (one H100 or H200,
# PyTorch 2.x with CUDA, g++ and CMake, but no network, no OpenCV headers and perhaps none of our
# other build dependencies).
#   pack  (here, online): .gpu/deps <- Debian's nlohmann-json3-dev, libcli11-dev, libgtest-dev and
#         zlib1g-dev unpacked; .gpu/mnist <- the MNIST IDX files gzipped (11 MB instead of 53).
#   run   (there, with .gpu carried): builds build-cuda against PyTorch's LibTorch without OpenCV,
#         runs the CUDA tests and the unit tests, then scripts/bench.sh --device cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  pack)
    rm -rf .gpu && mkdir -p .gpu/debs .gpu/deps .gpu/mnist
    (cd .gpu/debs && apt-get download nlohmann-json3-dev libcli11-dev libgtest-dev zlib1g-dev)
    for deb in .gpu/debs/*.deb; do dpkg -x "$deb" .gpu/deps; done
    rm -rf .gpu/debs
    for f in data/mnist/*-ubyte; do gzip -9 -c "$f" >".gpu/mnist/$(basename "$f").gz"; done
    du -sh .gpu
    ;;
  run)
    torch_package=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
    source scripts/cuda-toolkit.sh  # nvcc, cuda_root
    prefix="" extra=()
    if [ -d .gpu/deps ]; then  # zlib static: the unpacked libz.so is a link to Debian's runtime path
      prefix="$PWD/.gpu/deps/usr"
      extra+=(-DZLIB_INCLUDE_DIR="$PWD/.gpu/deps/usr/include" -DZLIB_LIBRARY="$PWD/.gpu/deps/usr/lib/x86_64-linux-gnu/libz.a")
    fi
    [ -d data/mnist ] || { mkdir -p data && cp -r .gpu/mnist data/mnist; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    mkdir -p build-cuda
    cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DMNIST_WITH_OPENCV=OFF -DMNIST_WITH_KERAS_FILES=OFF -DMNIST_TORCH_PACKAGE="$torch_package" \
      -DCMAKE_CUDA_COMPILER="$nvcc" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCMAKE_PREFIX_PATH="$prefix" "${extra[@]}" \
      >build-cuda/build.log 2>&1 || { tail -n 40 build-cuda/build.log; exit 1; }
    configured_with_cuda build-cuda || { echo "gpu.sh: this Torch has no CUDA" >&2; exit 1; }
    cmake --build build-cuda -j"$(nproc)" >>build-cuda/build.log 2>&1 || { grep -m 20 -A 3 'error' build-cuda/build.log; exit 1; }
    build-cuda/tests/unit_tests --gtest_filter='Cuda*:Fused.*:Optim.*:Train*'
    build-cuda/mnist bench --config configs/paper.json --device cuda --epochs 5
    scripts/bench.sh --device cuda --build build-cuda --rounds "${ROUNDS:-3}" --epochs "${EPOCHS:-5}"
    ;;
  *) echo "usage: scripts/gpu.sh pack | run" >&2; exit 2 ;;
esac
