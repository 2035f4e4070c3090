#!/usr/bin/env bash
# bench.sh [--rounds R] [--epochs E] [--warmup W] [--threads T] [--device cpu|cuda] [--build DIR] [--cnn]
#          [--sweep [--peer NAME]]:
# time `mnist bench` (configs/paper.json) and its peers, each training the paper's model (784-100
# relu-10, softmax cross-entropy on the logits, Adam, batch 32, data resident in memory), alternately:
# R rounds, in each round every program once for E timed epochs after W warm-up epochs (default 1).
# Prints each one's median seconds per epoch, its peak resident memory, and its time over ours.
# --cnn: configs/cnn.json instead (convolutions, BatchNormalization, Dropout, augmentation; batch 128,
# the autograd step) against PyTorch eager training the same (scripts/bench/pytorch_cnn.py), as it
# comes and with malloc kept.
#
# The peers (scripts/bench/; each installed into .venv/ by scripts/venv.sh, skipped with a message
# when it cannot be installed):
#   pytorch-eager       PyTorch 2.13.0 eager, as it comes
#   pytorch-eager-kept  the same with glibc's malloc keeping freed memory (GLIBC_TUNABLES below): by
#                       default glibc hands large freed blocks back to the OS, so PyTorch eager's
#                       per-step temporaries (Adam's sqrt and division of a weight tensor: 313 KB at
#                       hidden 100) are faulted in again every step
#   torch-compile       PyTorch 2.13.0, the model through torch.compile (mode "default")
#   jax-jit             JAX 0.10.2, the whole step one jax.jit'd XLA call
#   keras-tensorflow    Keras 3.15.1 on TensorFlow 2.21.0 (CPU), model.fit
# All run on T threads (default 1), BLAS and OpenMP pools included (OPENBLAS_NUM_THREADS,
# OMP_NUM_THREADS, MKL_NUM_THREADS; XLA's and TensorFlow's through their own flags), and each program
# is pinned to the first T CPUs (taskset), since a runtime may start threads its flags do not
# govern: JAX 0.10's XLA used about 1.5 cores with its one-thread flags.
# --device cuda: ours and the PyTorch peers on the GPU ($PYTHON's torch, default python3 there);
# JAX and Keras are CPU builds and are skipped. --build DIR: the mnist binary in DIR, built by hand
# (the GPU machine cannot run scripts/setup.sh); without it setup.sh builds build/.
# --sweep: one round per point instead, over batch sizes 32..4096 (hidden 100) and hidden widths
# 100..4096 (batch 32), ours against one peer (--peer, default pytorch-eager-kept), as a table.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 epochs=3 warmup=1 threads=1 sweep=0 cnn=0 device=cpu build="" sweep_peer=pytorch-eager-kept
usage="usage: scripts/bench.sh [--rounds R] [--epochs E] [--warmup W] [--threads T] [--device cpu|cuda] [--build DIR] [--cnn] [--sweep [--peer NAME]]"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --cnn) cnn=1; shift ;;
    --threads) threads=$2; shift 2 ;;
    --sweep) sweep=1; shift ;;
    --peer) sweep_peer=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
if [ -z "$build" ]; then
  scripts/setup.sh >/dev/null
  build=build
fi
# GNU time measures each program's peak resident memory; without it (a GPU machine without network)
# the column says n/a.
scripts/apt.sh time 2>/dev/null || echo "bench.sh: GNU time could not be installed: peak memory is not reported" >&2
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
kept_malloc=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456
pin=()
if [ "$threads" -ge 1 ] && [ "$threads" -le "$(nproc)" ] && command -v taskset >/dev/null; then
  pin=(taskset -c "0-$((threads - 1))")
else
  echo "bench.sh: programs not pinned to $threads CPUs (taskset missing, or more threads than CPUs)" >&2
fi

# The peers' command lines; each gets --epochs --batch-size --hidden --threads appended.
declare -A peer_cmd
python_for() {  # the Python of a virtual environment, or nothing (with a message) if it cannot be installed
  scripts/venv.sh "$1" 2>/dev/null || echo "bench.sh: skipping the $1 peers: scripts/venv.sh $1 failed (.venv/$1.log)" >&2
}
if [ "$device" = cuda ]; then
  torch_python=${PYTHON:-python3}
else
  torch_python=$(python_for torch)
  jax_python=$(python_for jax)
  keras_python=$(python_for keras)
  [ -z "$jax_python" ] || peer_cmd[jax-jit]="$jax_python scripts/bench/jax_jit.py"
  [ -z "$keras_python" ] || peer_cmd[keras-tensorflow]="$keras_python scripts/bench/keras_tf.py"
fi
if [ "$cnn" -eq 1 ]; then
  peer_cmd=()
  [ -z "$torch_python" ] || peer_cmd[pytorch-eager]="$torch_python scripts/bench/pytorch_cnn.py --device $device"
  [ -z "$torch_python" ] || peer_cmd[pytorch-eager-kept]="env GLIBC_TUNABLES=$kept_malloc $torch_python scripts/bench/pytorch_cnn.py --device $device"
elif [ -n "$torch_python" ]; then
  peer_cmd[pytorch-eager]="$torch_python scripts/bench/pytorch_eager.py --device $device"
  peer_cmd[pytorch-eager-kept]="env GLIBC_TUNABLES=$kept_malloc $torch_python scripts/bench/pytorch_eager.py --device $device"
  peer_cmd[torch-compile]="$torch_python scripts/bench/pytorch_eager.py --device $device --compile default"
fi
peers=()
for name in pytorch-eager pytorch-eager-kept torch-compile jax-jit keras-tensorflow; do
  [ -z "${peer_cmd[$name]:-}" ] || peers+=("$name")
done

# run NAME BATCH HIDDEN: one measurement; prints "seconds_per_epoch peak_rss_mb". Peak resident
# memory is the process's own high-water mark (GNU time's maximum resident set size).
run() {
  local out rss=n/a timer=()
  out=$(mktemp)
  [ ! -x /usr/bin/time ] || timer=(/usr/bin/time -f %M -o "$out.rss")
  if [ "$1" = mnist ]; then
    local model=(--config configs/paper.json --set "model.layers[1].units=$3")
    [ "$cnn" -eq 0 ] || model=(--config configs/cnn.json)
    "${timer[@]}" "${pin[@]}" "$build/mnist" bench "${model[@]}" --device "$device" --epochs "$epochs" --warmup "$warmup" \
      --threads "$threads" --batch-size "$2" --json >"$out" 2>"$out.err" ||
      { cat "$out.err" >&2; rm -f "$out"*; return 1; }
  else
    "${timer[@]}" "${pin[@]}" ${peer_cmd[$1]} --epochs "$epochs" --warmup "$warmup" --threads "$threads" --batch-size "$2" --hidden "$3" \
      >"$out" 2>"$out.err" || { echo "bench.sh: $1 failed:" >&2; tail -n 5 "$out.err" >&2; rm -f "$out"*; return 1; }
  fi
  [ ! -f "$out.rss" ] || rss=$(( $(tail -n 1 "$out.rss") / 1024 ))
  python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read())["seconds_per_epoch"], sys.argv[2])' "$out" "$rss"
  rm -f "$out"*
}

batch=32 model_name="configs/paper.json model"
[ "$cnn" -eq 0 ] || batch=128 model_name="configs/cnn.json"
if [ "$sweep" -eq 1 ]; then
  [ -n "${peer_cmd[$sweep_peer]:-}" ] || { echo "bench.sh: no peer $sweep_peer here (peers: ${peers[*]})" >&2; exit 2; }
  echo "| batch | hidden | mnist s/epoch | $sweep_peer s/epoch | its time / ours |"
  echo "|---|---|---|---|---|"
  points=()
  for b in 32 64 128 256 512 1024 2048 4096; do points+=("$b 100"); done
  for h in 256 512 1024 2048 4096; do points+=("32 $h"); done
  for point in "${points[@]}"; do
    set -- $point
    read -r m _ < <(run mnist "$1" "$2")
    read -r p _ < <(run "$sweep_peer" "$1" "$2")
    python3 -c "import sys; b, h, m, p = sys.argv[1:]; print(f'| {b} | {h} | {float(m):.3f} | {float(p):.3f} | {float(p) / float(m):.2f}x |')" "$1" "$2" "$m" "$p"
  done
  exit 0
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for r in $(seq "$rounds"); do
  line="round $r:"
  for name in mnist "${peers[@]}"; do
    if read -r s rss < <(run "$name" "$batch" 100) && [ -n "${s:-}" ]; then
      echo "$name $s $rss" >>"$results"
      line+=" $name $s s/epoch;"
    fi
  done
  echo "$line"
done
python3 - "$results" "$device" "$threads" "$model_name" "$batch" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, s, rss = line.split()
    rows[name].append((float(s), rss))
ours = statistics.median(s for s, _ in rows["mnist"])
print(f"\nmedian of {len(rows['mnist'])} rounds, {sys.argv[4]} at batch {sys.argv[5]}, {sys.argv[2]}, {sys.argv[3]} thread(s):")
print("| program | s/epoch | peak RSS MB | its time / ours |")
print("|---|---|---|---|")
for name, vals in rows.items():
    s = statistics.median(v for v, _ in vals)
    rss = max((int(r) for _, r in vals if r != "n/a"), default="n/a")
    print(f"| {name} | {s:.3f} | {rss} | {s / ours:.2f}x |")
PY
