#!/usr/bin/env bash
# setup.sh: what run.sh and test.sh need, idempotent and quick when already done:
# Debian packages (only if missing), a Release build in build/, and the data in data/.
set -euo pipefail
cd "$(dirname "$0")/.."

# libopenblas0-pthread: with Debian's default reference BLAS an epoch was measured ~10x slower.
packages=(g++ cmake make libtorch-dev libopenblas0-pthread libopencv-dev nlohmann-json3-dev libcli11-dev
          libgtest-dev zlib1g-dev dataset-fashion-mnist curl ca-certificates
          python3-torch)  # python3-torch: the test that loads our exported models in Python
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if ! cmake --build build -j"$(nproc)" >build/build.log 2>&1; then
  tail -n 60 build/build.log >&2
  echo "setup: the build failed (whole log: build/build.log)" >&2
  exit 1
fi

scripts/fetch-data.sh all
