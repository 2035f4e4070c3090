#!/bin/sh
# compare_keras_check.sh WORK: scripts/compare_keras.sh on configs/quick.json, one seed of one epoch a side, into
# WORK; checks that both runs, the comparison figure and both sides' TensorBoard logs are there, and that a
# setting Keras's program cannot reproduce is refused before anything trains. Exits 77 (skipped) without Keras.
if [ ! -f .venv/keras/requirements.sha256 ]; then
  echo "skipped: no Keras here (.venv/keras); scripts/venv.sh keras installs TensorFlow, Keras 3 and JAX"
  exit 77
fi
set -eu
work="$1"
rm -rf "$work"
scripts/compare_keras.sh configs/quick.json --seeds 1 --epochs 1 --out "$work" >"$work.log" 2>&1 || { cat "$work.log"; exit 1; }
for f in mnist-seed0/metrics.json keras-seed0/metrics.json comparison.png mnist-seed0/tensorboard/train keras-seed0/tensorboard/train \
         keras-seed0/tensorboard/test; do
  [ -e "$work/$f" ] || { echo "compare_keras_check: $work/$f is missing"; cat "$work.log"; exit 1; }
done
grep -q "Mann-Whitney" "$work.log" || { echo "compare_keras_check: no seed statistics"; cat "$work.log"; exit 1; }
if scripts/compare_keras.sh configs/quick.json --set training.lr_schedule.name=cosine_decay --out "$work-refused" 2>"$work.err"; then
  echo "compare_keras_check: a schedule was not refused"; exit 1
fi
grep -q "training.lr_schedule cosine_decay" "$work.err" || { echo "compare_keras_check: refusal says"; cat "$work.err"; exit 1; }
[ ! -e "$work-refused" ] || { echo "compare_keras_check: the refused comparison wrote $work-refused"; exit 1; }
echo "compare_keras_check: both sides trained and compared; a schedule refused before training"
