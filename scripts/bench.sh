#!/usr/bin/env bash
# bench.sh [--rounds R] [--epochs E] [--threads T]: time `mnist bench` (configs/paper.json, CPU) and
# PyTorch eager (scripts/bench/pytorch_eager.py, same model, loss, optimizer, batch) alternately, R rounds
# of E timed epochs each, and print each one's median seconds per epoch and the ratio. Both run with
# the same thread count (default: LibTorch's own choice, which is 1 on the 2-core machines here).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 epochs=3 threads=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "usage: scripts/bench.sh [--rounds R] [--epochs E] [--threads T]" >&2; exit 2 ;;
  esac
done
scripts/setup.sh >/dev/null
ours=() theirs=()
for r in $(seq "$rounds"); do
  ours+=("$(build/mnist bench --config configs/paper.json --device cpu --epochs "$epochs" --threads "$threads" --json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds_per_epoch"])')")
  theirs+=("$(/usr/bin/python3 scripts/bench/pytorch_eager.py --epochs "$epochs" --threads "$threads" |
              python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds_per_epoch"])')")
  echo "round $r: mnist ${ours[-1]} s/epoch, pytorch eager ${theirs[-1]} s/epoch"
done
python3 - "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
ours = [float(v) for v in sys.argv[1].split()]
theirs = [float(v) for v in sys.argv[2].split()]
m, p = statistics.median(ours), statistics.median(theirs)
print(f"median s/epoch: mnist {m:.3f}, pytorch eager {p:.3f}; mnist is {p / m:.2f}x faster")
PY
