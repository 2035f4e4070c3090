#!/usr/bin/env bash
# compare_keras.sh CONFIG [--seeds N] [--epochs N] [--set KEY.PATH=VALUE ...] [--out DIR]
# One config trained by mnist and by Keras (scripts/keras_reference.py, the Keras of .venv/keras; KERAS_BACKEND
# picks its backend), seeds 0..N-1 on each side, then compared: the seeds as distributions
# (scripts/seed_stats.py), seed 0's curves (`mnist compare`, DIR/comparison.png), and both sides' TensorBoard
# logs under DIR. Runs that finished are kept, so an interrupted comparison continues where it stopped. The two
# sides train at once, one thread each. A setting Keras cannot reproduce is refused before anything trains.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/compare_keras.sh CONFIG [--seeds N] [--epochs N] [--set KEY.PATH=VALUE ...] [--out DIR]"
config="${1:?$usage}"; shift
seeds=1 epochs="" out="" sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="${2:?$usage}"; shift 2 ;;
    --epochs) epochs="${2:?$usage}"; shift 2 ;;
    --set) sets+=(--set "${2:?$usage}"); shift 2 ;;
    --out) out="${2:?$usage}"; shift 2 ;;
    *) echo "compare_keras.sh: unknown argument $1; $usage" >&2; exit 2 ;;
  esac
done
case "$seeds" in ''|*[!0-9]*|0) echo "compare_keras.sh: --seeds takes a whole number from 1 (got $seeds)" >&2; exit 2 ;; esac
[ -f "$config" ] || { echo "compare_keras.sh: no config file $config" >&2; exit 2; }
[ -n "$epochs" ] && sets+=(--set "training.epochs=$epochs")
scripts/setup.sh >/dev/null
py=$(scripts/venv.sh keras)
build/mnist summary --config "$config" "${sets[@]}" >/dev/null  # mnist's own check of the config and the changes
TF_CPP_MIN_LOG_LEVEL=3 "$py" scripts/keras_reference.py --config "$config" "${sets[@]}" --check
out="${out:-runs/compare-$(basename "$config" .json)-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
for ((s = 0; s < seeds; s++)); do
  echo "seed $s: mnist and Keras"
  if [ ! -f "$out/mnist-seed$s/metrics.json" ]; then
    rm -rf "$out/mnist-seed$s"
    build/mnist train --config "$config" "${sets[@]}" --seed "$s" --threads 1 --out "$out/mnist-seed$s" >"$out/mnist-seed$s.log" 2>&1 &
  fi
  if [ ! -f "$out/keras-seed$s/metrics.json" ]; then
    TF_CPP_MIN_LOG_LEVEL=3 "$py" scripts/keras_reference.py --config "$config" "${sets[@]}" --seed "$s" --threads 1 \
      --out "$out/keras-seed$s" >"$out/keras-seed$s.log" 2>&1 &
  fi
  wait || { echo "compare_keras.sh: seed $s failed; see $out/mnist-seed$s.log and $out/keras-seed$s.log" >&2; exit 1; }
done
mnist_runs=() keras_runs=()
for ((s = 0; s < seeds; s++)); do mnist_runs+=("$out/mnist-seed$s"); keras_runs+=("$out/keras-seed$s"); done
python3 scripts/seed_stats.py "${mnist_runs[@]}" --vs "${keras_runs[@]}" --names mnist keras
build/mnist compare "$out/mnist-seed0" "$out/keras-seed0" --out "$out/comparison.png"
echo "TensorBoard: .venv/tensorboard/bin/tensorboard --logdir $out"
