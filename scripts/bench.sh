#!/usr/bin/env bash
# bench.sh [--rounds R] [--epochs E] [--threads T] [--device cpu|cuda] [--build DIR] [--sweep]: time
# `mnist bench` (configs/paper.json) and PyTorch eager (scripts/bench/pytorch_eager.py: same model, loss, optimizer, batch) alternately, R
# rounds of E timed epochs each, and print each one's median seconds per epoch and the ratio. Both run
# on T threads (default 1), OpenBLAS's own pool included: left at its default, OpenBLAS runs a thread
# per core under the small matrix products of batch 32, and one check measured PyTorch eager at
# 1.55 s/epoch that way against 1.08 pinned to one thread, on the 2-core VM.
# --device cuda: both on the GPU (the PyTorch peer is $PYTHON, default python3 there; on the CPU it is
# Debian's /usr/bin/python3). --build DIR: the mnist binary in DIR, built by hand (the GPU machine
# cannot run scripts/setup.sh, which installs packages); without it setup.sh builds build/.
# --sweep: one round per point instead, over batch sizes 32..4096 (hidden 100) and hidden widths
# 100..4096 (batch 32), printed as a table row by row.
# The peer runs twice per round: as it comes, and with glibc's malloc keeping freed memory
# (GLIBC_TUNABLES below). By default glibc hands large freed blocks back to the OS, so each of
# PyTorch eager's per-step temporaries (Adam's sqrt and division of a weight tensor: 313 KB at
# hidden 100, 3.2 MB at 1024) is faulted in again every step: on the 2-core VM that was 1.22-1.47
# s/epoch against 1.00 kept at hidden 100, and 8x at hidden 1024. Ours allocates nothing per step
# (fused step) or little (autograd step: 0.537 s/epoch either way), so it runs once, as it comes.
# The sweep skips the as-it-comes peer above hidden 1024, where its page faults take minutes per epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 epochs=3 threads=1 sweep=0 device=cpu build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --sweep) sweep=1; shift ;;
    *) echo "usage: scripts/bench.sh [--rounds R] [--epochs E] [--threads T] [--device cpu|cuda] [--build DIR] [--sweep]" >&2; exit 2 ;;
  esac
done
if [ -z "$build" ]; then
  scripts/setup.sh >/dev/null
  build=build
fi
if [ "$device" = cuda ]; then python=${PYTHON:-python3}; else python=${PYTHON:-/usr/bin/python3}; fi
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

seconds_per_epoch() { python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds_per_epoch"])'; }
# ours BATCH HIDDEN / theirs BATCH HIDDEN: median seconds per epoch of one measurement. Ours also
# writes which training step it used (fused, cuda graph or autograd) to stderr.
ours() {
  "$build/mnist" bench --config configs/paper.json --device "$device" --epochs "$epochs" --threads "$threads" \
    --batch-size "$1" --set "model.layers[1].units=$2" --json |
    python3 -c 'import json,sys; r = json.load(sys.stdin); print(r["seconds_per_epoch"]); print("mnist step:", r["step"], file=sys.stderr)'
}
kept_malloc=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456
# theirs BATCH HIDDEN [GLIBC_TUNABLES]
theirs() {
  env ${3:+GLIBC_TUNABLES=$3} "$python" scripts/bench/pytorch_eager.py --device "$device" --epochs "$epochs" --threads "$threads" --batch-size "$1" --hidden "$2" |
    seconds_per_epoch
}

if [ "$sweep" -eq 1 ]; then
  echo "| batch | hidden | mnist s/epoch | pytorch eager s/epoch | speed-up | pytorch eager, malloc kept | speed-up |"
  echo "|---|---|---|---|---|---|---|"
  points=()
  for b in 32 64 128 256 512 1024 2048 4096; do points+=("$b 100"); done
  for h in 256 512 1024 2048 4096; do points+=("32 $h"); done
  for point in "${points[@]}"; do
    set -- $point
    m=$(ours "$1" "$2" 2>/dev/null) p=nan
    [ "$2" -gt 1024 ] || p=$(theirs "$1" "$2")
    k=$(theirs "$1" "$2" "$kept_malloc")
    python3 -c "
import sys
b, h, m, p, k = sys.argv[1:]
cell = lambda t: f'{float(t):.3f} | {float(t) / float(m):.2f}x' if t != 'nan' else 'not run | '
print(f'| {b} | {h} | {float(m):.3f} | {cell(p)} | {cell(k)} |')" "$1" "$2" "$m" "$p" "$k"
  done
  exit 0
fi

mine=() peer=() kept=()
for r in $(seq "$rounds"); do
  mine+=("$(ours 32 100)")
  peer+=("$(theirs 32 100)")
  kept+=("$(theirs 32 100 "$kept_malloc")")
  echo "round $r: mnist ${mine[-1]} s/epoch, pytorch eager ${peer[-1]}, with malloc kept ${kept[-1]}"
done
python3 - "${mine[*]}" "${peer[*]}" "${kept[*]}" <<'PY'
import statistics, sys
m, p, k = (statistics.median(float(v) for v in arg.split()) for arg in sys.argv[1:])
print(f"median s/epoch: mnist {m:.3f}, pytorch eager {p:.3f} ({p / m:.2f}x mnist's), "
      f"with malloc kept {k:.3f} ({k / m:.2f}x mnist's)")
PY
