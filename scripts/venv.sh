#!/usr/bin/env bash
# venv.sh NAME: the Python virtual environment .venv/NAME with exactly the packages pinned in
# scripts/requirements/NAME.txt; created once, recreated when that file changes. Prints its python.
#   torch       PyTorch 2.13.0 (CPU): the LibTorch the build links, and Python's side of the interop tests
#   torch-cuda  PyTorch 2.14.1 built with CUDA 13: the LibTorch of the CUDA build (scripts/cuda-build.sh)
#   keras       TensorFlow 2.21 (CPU), Keras 3.15.1 and JAX: the Keras tests and scripts/keras_*.py
#   keras-2024  TensorFlow 2.18, Keras 3.7: the Keras of the paper's time, for runs by hand
#   jax         JAX alone: the JAX peer of scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/venv.sh NAME (a file scripts/requirements/NAME.txt)}"
req="scripts/requirements/$name.txt"
[ -f "$req" ] || { echo "venv.sh: no $req" >&2; exit 2; }
dir=".venv/$name" stamp=".venv/$name/requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "venv.sh: installing $req into $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" || { echo "venv.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  if ! "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >"$dir.log" 2>&1; then
    grep -v "^WARNING: Location" "$dir.log" | tail -n 20 >&2
    echo "venv.sh: pip could not install $req (whole log: $dir.log)" >&2
    rm -rf "$dir"
    exit 1
  fi
  echo "$want" >"$stamp"
fi
echo "$PWD/$dir/bin/python"
