#!/usr/bin/env bash
# readme_first_steps.sh MNIST_BINARY: runs the README's "First steps" block as written, line by
# line, in a fresh folder that holds only what a clone holds (configs/, docs/, data/ linked from the
# repository) and the binary under test as build/mnist. `scripts/run.sh ARGS` is run as `build/mnist
# ARGS`: the set-up it does first is what built the binary. Checks that every command succeeds, that
# runs/latest is the run, that each command left what the README says, and that the README quotes
# predict's output as it is. Exit 77 (skipped) without MNIST's files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary=$1
[ -f "$root/data/mnist/train-images-idx3-ubyte" ] || { echo "data/mnist is missing: scripts/fetch-data.sh fetches it"; exit 77; }

# The fenced block after the heading, one command per line, comments dropped.
mapfile -t commands < <(awk '/^## First steps/ {in_section = 1; next}
                             /^## / {in_section = 0}
                             in_section && /^```/ {fenced = !fenced; next}
                             in_section && fenced' "$root/README.md" | sed 's/[[:space:]]*#.*$//')
[ ${#commands[@]} -eq 5 ] || { echo "README: expected 5 commands under 'First steps', found ${#commands[@]}"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/build"
ln -s "$root/configs" "$root/docs" "$root/data" "$work/"
ln -s "$binary" "$work/build/mnist"
cd "$work"
for command in "${commands[@]}"; do
  echo "\$ $command"
  read -r -a words <<<"$command"
  [ "${words[0]}" != scripts/run.sh ] || words[0]=build/mnist
  [ "${words[0]}" = build/mnist ] || { echo "README: a first-steps command that is not build/mnist or scripts/run.sh: $command"; exit 1; }
  "${words[@]}" >out.txt 2>&1 || { cat out.txt; echo "FAILED: $command"; exit 1; }
  tail -n 3 out.txt
done

[ -L runs/latest ] && [ -f runs/latest/checkpoint.pt ] || { echo "runs/latest is not the run"; exit 1; }
for f in accuracy.png loss.png confusion_matrix.png confusion_matrix_normalized.png misclassified.png; do
  [ -f "figures/$f" ] || { echo "plot --out figures left no $f"; exit 1; }
done
[ -s quick.keras ] || { echo "export left no quick.keras"; exit 1; }
# The README quotes predict's line (the last command's output) in backquotes. The image, the predicted
# digit, what the numbers are and the top output must be as quoted; the runners-up's values differ in
# their last digits between LibTorch builds (Debian's 1.13 prints "1 0.977, 3 0.751" for "1 0.975,
# 3 0.768"), so only their form is checked.
quoted=$(grep -o '`docs/examples/photo-2.jpg: [^`]*`' "$root/README.md" | head -n 1 | tr -d '`')
head=${quoted%%, *}  # docs/examples/photo-2.jpg: 2  (sigmoid outputs: 2 1.000
[ -n "$quoted" ] && [ "$head" != "$quoted" ] || { echo "README: no quoted predict output"; exit 1; }
printed=$(cat out.txt)
rest=${printed#"$head, "}  # the runners-up: "1 0.975, 3 0.768)"
runners_up='^[0-9] [01][.][0-9]{3}, [0-9] [01][.][0-9]{3}[)]$'
[ "$rest" != "$printed" ] && [[ $rest =~ $runners_up ]] || { echo "README quotes '$quoted'; predict printed '$printed'"; exit 1; }
echo "the first steps ran as written"
