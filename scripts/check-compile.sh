#!/usr/bin/env bash
# check-compile.sh: compile (syntax and types only, nothing linked) what this machine's CPU build does not:
#   1. every source and test against a Torch 2.x's headers (Debian trixie's libtorch-dev, fetched once
#      into build-torch2/ from Debian's archive and checked against its SHA256), because the GPU machine
#      builds against PyTorch 2.x while this machine has Debian's 1.13, with the CUDA-only code
#      (#ifdef MNIST_WITH_CUDA) switched on where CUDA's headers are installed;
#   2. the CUDA kernels (src/fused_cuda.cu) with nvcc, where there is one.
# Where the archive cannot be reached it says so and checks the CUDA-only code against Torch 1.13's
# headers instead; where no CUDA headers exist either, it skips, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

torch2=build-torch2
archive=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Prints "Filename SHA256 Version" of trixie's libtorch-dev from the archive's package index.
libtorch_dev_entry() {
  curl -fsS --max-time 120 "$archive/dists/trixie/main/binary-amd64/Packages.xz" | xz -dc |
    awk '/^Package: /{p=$2} p=="libtorch-dev" && /^Filename: /{f=$2} p=="libtorch-dev" && /^SHA256: /{s=$2}
         p=="libtorch-dev" && /^Version: /{v=$2} /^$/{if (f && !done) {print f, s, v; done=1}}'
}

fetch_torch2_headers() {
  [[ -f "$torch2/root/usr/include/torch/csrc/api/include/torch/torch.h" ]] && return 0
  local entry file sha version
  entry=$(libtorch_dev_entry) && [[ -n "$entry" ]] || return 1
  read -r file sha version <<<"$entry"
  mkdir -p "$torch2"
  curl -fsS --max-time 300 -o "$torch2/libtorch-dev.deb.tmp" "$archive/$file" || return 1
  echo "$sha  $torch2/libtorch-dev.deb.tmp" | sha256sum -c --quiet - || return 1
  rm -rf "$torch2/root.tmp"
  dpkg-deb -x "$torch2/libtorch-dev.deb.tmp" "$torch2/root.tmp" || return 1
  echo "$version" >"$torch2/root.tmp/VERSION"
  mv "$torch2/root.tmp" "$torch2/root"
  rm -f "$torch2/libtorch-dev.deb.tmp"
}

cuda_include=""
for dir in "${CUDA_HOME:-/usr/local/cuda}/include" /usr/local/cuda/include /usr/include; do
  [[ -f "$dir/cuda_runtime_api.h" ]] && { cuda_include=$dir; break; }
done

if fetch_torch2_headers; then
  torch_root=$torch2/root/usr/include
  torch_name="Torch $(cat "$torch2/root/VERSION") (Debian trixie's libtorch-dev)"
  files=(src/*.cpp tests/*.cpp)
else
  echo "check-compile: could not fetch Torch 2.x headers from $archive: checking against Torch 1.13's only"
  [[ -n "$cuda_include" ]] || { echo "check-compile: SKIPPED: no CUDA headers (cuda_runtime_api.h) either"; exit 0; }
  torch_root=/usr/include
  torch_name="Torch 1.13 (this machine's)"
  mapfile -t files < <(grep -l 'MNIST_WITH_CUDA' src/*.cpp tests/*.cpp)
fi

work=$torch2/check
rm -rf "$work" && mkdir -p "$work/stub/c10/cuda/impl"
trap 'rm -rf "$work"' EXIT
flags=(-std=c++17 -Wall -Wextra -Werror -DMNIST_BINARY='"mnist"' -Isrc -isystem "$torch_root/torch/csrc/api/include")
# /usr/include is searched anyway; naming it with -isystem would break libstdc++'s #include_next.
[[ "$torch_root" == /usr/include ]] || flags+=(-isystem "$torch_root")
what="without CUDA (no CUDA headers here)"
if [[ -n "$cuda_include" ]]; then
  # Debian's libtorch-dev ships c10's CUDA headers but not the one CMake generates for them.
  echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$work/stub/c10/cuda/impl/cuda_cmake_macros.h"
  flags+=(-DMNIST_WITH_CUDA -isystem "$cuda_include" -isystem "$work/stub")
  what="with CUDA ($cuda_include)"
fi
[[ -d /usr/include/opencv4 ]] && flags+=(-DMNIST_WITH_OPENCV -isystem /usr/include/opencv4)

# Parsing torch/torch.h is most of each file's time: precompiled once, it is 9 s a file instead of 28.
echo '#include <torch/torch.h>' >"$work/pch.h"
g++ "${flags[@]}" -x c++-header "$work/pch.h" -o "$work/pch.h.gch"
echo "check-compile: ${#files[@]} files against $torch_name, $what"
printf '%s\n' "${files[@]}" | xargs -P"$(nproc)" -I{} \
  g++ -fsyntax-only "${flags[@]}" -Winvalid-pch -include "$work/pch.h" {}

nvcc=${cuda_include:+$(dirname "$cuda_include")/bin/nvcc}
if [[ -n "$nvcc" && -x "$nvcc" ]]; then
  echo "check-compile: src/fused_cuda.cu with $nvcc"
  "$nvcc" -std=c++17 -arch=sm_90 -Isrc -Werror all-warnings -c src/fused_cuda.cu -o "$work/fused_cuda.o"
else
  echo "check-compile: no nvcc here: src/fused_cuda.cu not compiled"
fi
echo "check-compile: passed"
