#!/usr/bin/env python3
"""Lock-step parity with Keras: Keras and `mnist` train the same steps from the same state; compare.

    .venv/keras/bin/python scripts/keras_lockstep.py --config configs/paper.json --samples 320 --epochs 30

Writes a data order into --work (each epoch: --samples distinct training images in a random order), then
  1. scripts/keras_reference.py trains the config there with Keras (graph mode, as model.fit runs) on that
     order, writing its initial weights;
  2. `mnist train --initial-weights <Keras's initial weights> --data-order <the same order>` trains ours;
  3. `mnist export --out weights.json` writes ours in Keras's layout,
and compares each epoch's training loss and accuracy (Keras's running means over the epoch's steps), each
epoch's test loss, and every final weight. With --samples equal to the batch size every epoch is one step,
so the losses compared are per step. Prints the largest differences and exits 1 when one exceeds its
tolerance (--loss-rtol on losses; --update-rtol on ||ours - Keras|| / ||Keras - start|| for each weight array,
the error of our training's move relative to Keras's; --accuracy-atol on accuracies).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from keras_reference import read_idx  # noqa: E402


def run(cmd):
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:])
        raise SystemExit(f"keras_lockstep.py: {' '.join(cmd[:3])} ... exited {result.returncode}")
    return result.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/paper.json")
    ap.add_argument("--set", action="append", default=[], help="passed to mnist train and applied to the config for Keras")
    ap.add_argument("--samples", type=int, default=320, help="training images per epoch (each epoch is samples / batch steps)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--mnist", default="build/mnist")
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--work", required=True, help="folder for the config, the order and both runs (made fresh)")
    ap.add_argument("--loss-rtol", type=float, default=1e-4)
    ap.add_argument("--update-rtol", type=float, default=1e-3)
    ap.add_argument("--accuracy-atol", type=float, default=1e-6)
    args = ap.parse_args()

    os.makedirs(args.work, exist_ok=True)
    if os.listdir(args.work):
        raise SystemExit(f"keras_lockstep.py: --work {args.work} is not empty")

    # The config as both sides see it: ours resolves --set itself; Keras gets the resolved file.
    config_file = os.path.join(args.work, "config.json")
    summary = run([args.mnist, "summary", "--config", args.config] + sum((["--set", s] for s in args.set), []))
    config = json.loads(summary[summary.index("\n{") + 1:])  # the resolved config follows the model summary
    with open(config_file, "w") as f:
        json.dump(config, f)
    # Each epoch: --samples distinct training images in a random order (Keras's validation_split, if any,
    # has already taken the last fraction; indices address the rest).
    split = config["training"].get("validation_split", 0.0) or 0.0
    n_train = int(len(read_idx(os.path.join(args.data, "train-labels-idx1-ubyte"))) * (1 - split))
    n = args.samples
    rng = np.random.default_rng(12345)
    order_file = os.path.join(args.work, "order.json")
    with open(order_file, "w") as f:
        json.dump([rng.choice(n_train, size=n, replace=False).tolist() for _ in range(args.epochs)], f)

    keras_dir, ours_dir = os.path.join(args.work, "keras"), os.path.join(args.work, "ours")
    run([sys.executable, os.path.join(here, "keras_reference.py"), "--config", config_file, "--data", args.data, "--epochs",
         str(args.epochs), "--data-order", order_file, "--threads", "1", "--no-tensorboard", "--out", keras_dir])
    run([args.mnist, "train", "--config", config_file, "--epochs", str(args.epochs), "--data", args.data, "--threads", "1",
         "--set", "training.tensorboard.enabled=false",
         "--initial-weights", os.path.join(keras_dir, "initial_weights.json"), "--data-order", order_file, "--out", ours_dir])
    run([args.mnist, "export", "--run", ours_dir, "--out", os.path.join(ours_dir, "weights.json")])

    with open(os.path.join(keras_dir, "history.json")) as f:
        kh = json.load(f)
    with open(os.path.join(ours_dir, "history.json")) as f:
        oh = json.load(f)
    with open(os.path.join(keras_dir, "weights.json")) as f:
        kw = [np.asarray(w, dtype=np.float64) for w in json.load(f)]
    with open(os.path.join(ours_dir, "weights.json")) as f:
        ow = [np.asarray(w, dtype=np.float64) for w in json.load(f)]
    with open(os.path.join(keras_dir, "initial_weights.json")) as f:
        iw = [np.asarray(w, dtype=np.float64) for w in json.load(f)]

    def rel(a, b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))

    found = {
        "loss_rel": rel(oh["loss"], kh["loss"]),
        "first_epoch_loss_rel": rel(oh["loss"][:1], kh["loss"][:1]),
        "test_loss_rel": rel(oh["test_loss"], kh["test_loss"]),
        "accuracy_abs": float(np.max(np.abs(np.subtract(oh["accuracy"], kh["accuracy"])))),
        "weight_rel_to_max": max(float(np.max(np.abs(o - k)) / max(np.max(np.abs(k)), 1e-12)) for o, k in zip(ow, kw)),
        # How far our training moved each array from where both started, against Keras's move: ||ours - Keras|| / ||Keras - start||.
        "update_rel": max(float(np.linalg.norm(o - k) / max(np.linalg.norm(k - i), 1e-30)) for o, k, i in zip(ow, kw, iw)),
    }
    steps = args.epochs * -(-n // config["training"].get("batch_size", 32))
    print(f"{config.get('name', args.config)}: {steps} steps in {args.epochs} epochs on {n} images; "
          f"loss per epoch: max rel. diff {found['loss_rel']:.2e} (first epoch {found['first_epoch_loss_rel']:.2e}); "
          f"test loss {found['test_loss_rel']:.2e}; accuracy max abs. diff {found['accuracy_abs']:.4f}; "
          f"weights: max abs. diff / array's max {found['weight_rel_to_max']:.2e}, "
          f"||ours - Keras|| / ||Keras - start|| {found['update_rel']:.2e}")
    with open(os.path.join(args.work, "lockstep.json"), "w") as f:
        json.dump({"steps": steps, "epochs": args.epochs, "samples": n, **found}, f, indent=1)
    failed = [k for k, tol in (("loss_rel", args.loss_rtol), ("test_loss_rel", args.loss_rtol),
                               ("accuracy_abs", args.accuracy_atol), ("update_rel", args.update_rtol))
              if found[k] > tol]
    if failed:
        raise SystemExit(f"keras_lockstep.py: beyond tolerance: {', '.join(failed)}")


if __name__ == "__main__":
    main()
