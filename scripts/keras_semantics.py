#!/usr/bin/env python3
"""What Keras trains when a sigmoid output meets sparse_categorical_crossentropy, found by running it.

    KERAS_BACKEND=tensorflow .venv/keras/bin/python scripts/keras_semantics.py [--scale 80] [--json FILE]

Builds the paper's model (Flatten -> Dense(100, relu) -> Dense(10, sigmoid)), scales the last kernel so
that many sigmoid outputs saturate (several at exactly 1.0, which ties them), and takes one
`train_on_batch` step with SGD(learning_rate=1) on 32 MNIST training images in each execution mode the
backend has (TensorFlow: the default graph mode, run_eagerly=True, jit_compile=True; JAX: jit and
eager). From the logits z (computed here in float64 from the same weights) it evaluates the three
losses Keras could be computing and their gradients with respect to the last bias, which SGD(1)
subtracts as they are:

  softmax_logits    softmax cross-entropy on z (TensorFlow reads the logits an activation caches)
  clip_then_norm    p = clip(sigmoid(z), eps, 1-eps); loss = -log(p[y] / sum(p))
                    (TensorFlow's path without logits: clip, log, sparse_softmax_cross_entropy)
  norm_then_clip    p = clip(sigmoid(z) / sum(sigmoid(z)), eps, 1-eps); loss = -log p[y]
                    (the JAX and torch backends)

and prints, per mode, the loss Keras reported and the relative distance of the loss and of the bias
step to each candidate; the closest one (well under 1e-4 apart, where the others are far) is what that
mode trains. It also shows what the accuracy metric reports when outputs tie at 1.0: the argmax of the
outputs (the first of the tied classes), or, in Keras 3.8 and earlier on TensorFlow in graph mode, the
argmax of the logits (TensorFlow's graph optimizer rewrites ArgMax(Sigmoid(z)) to ArgMax(z); Keras 3.9's
ops.argmax guards -0.0 with a tf.where, which keeps the sigmoid in place). The same IDX files as
`mnist` (data/mnist or --data).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_reference import build, read_idx  # noqa: E402

EPS = 1e-7  # keras.config.epsilon()
PAPER = {"model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 100, "activation": "relu"},
                              {"type": "Dense", "units": 10, "activation": "sigmoid"}]}}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def candidates(z, y):
    """Loss (batch mean) and d loss / d bias (batch mean) of each candidate, in float64."""
    n, c = z.shape
    onehot = np.eye(c)[y]
    out = {}
    # softmax cross-entropy on the logits
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    softmax = np.exp(z - lse[:, None])
    out["softmax_logits"] = ((lse - z[np.arange(n), y]).mean(), (softmax - onehot).mean(axis=0))
    s = sigmoid(z)
    ds = s * (1 - s)
    # clip, then normalise (log, then softmax): the clip stops the gradient of clipped units
    p = np.clip(s, EPS, 1 - EPS)
    inside = (s > EPS) & (s < 1 - EPS)
    total = p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y] / total[:, 0])
    grad = (1 / total - onehot / p) * np.where(inside, ds, 0.0)
    out["clip_then_norm"] = (loss.mean(), grad.mean(axis=0))
    # normalise, then clip: a clipped q[y] stops the whole gradient of that image
    total = s.sum(axis=1, keepdims=True)
    q = s[np.arange(n), y] / total[:, 0]
    qc = np.clip(q, EPS, 1 - EPS)
    alive = ((q > EPS) & (q < 1 - EPS))[:, None]
    grad = np.where(alive, (1 / total - onehot / s[np.arange(n), y][:, None]) * ds, 0.0)
    out["norm_then_clip"] = ((-np.log(qc)).mean(), grad.mean(axis=0))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--scale", type=float, default=40.0, help="factor on the last kernel (saturates outputs)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--expect", help="exit 1 unless every mode trains this candidate (a test's assertion)")
    ap.add_argument("--expect-accuracy", choices=["outputs", "logits"],
                    help="exit 1 unless every mode's reported accuracy is the argmax of the outputs (first of the "
                         "tied) or of the logits")
    args = ap.parse_args()

    import keras

    backend = keras.backend.backend()
    x = read_idx(os.path.join(args.data, "train-images-idx3-ubyte"))[:32, :, :, None].astype("float32") / 255
    y = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte"))[:32].astype("int64")

    modes = {"tensorflow": {"graph": {}, "run_eagerly": {"run_eagerly": True}, "jit_compile": {"jit_compile": True}},
             "jax": {"jit": {"jit_compile": True}, "run_eagerly": {"run_eagerly": True}}}.get(backend)
    if modes is None:
        raise SystemExit(f"keras_semantics.py: backend {backend} is not covered (use tensorflow or jax)")

    results = {"backend": backend, "keras": keras.__version__, "modes": {}}
    if backend == "tensorflow":
        import tensorflow as tf
        results["tensorflow"] = tf.__version__
    for mode, compile_args in modes.items():
        keras.utils.set_random_seed(0)
        model = build(keras, PAPER)
        w1, b1, w2, b2 = model.get_weights()
        w2 = w2 * args.scale
        model.set_weights([w1, b1, w2, b2])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], **compile_args)
        # The logits and outputs the step sees, in float64 from float32 weights.
        h = np.maximum(x.reshape(32, -1).astype(np.float64) @ w1 + b1, 0)
        z = h @ w2.astype(np.float64) + b2
        out32 = np.asarray(model.predict(x, verbose=0))
        ties = int(((out32 == out32.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())
        first_argmax = float((out32.argmax(axis=1) == y).mean())
        any_max = float((out32[np.arange(32), y] == out32.max(axis=1)).mean())
        logits_argmax = float((z.argmax(axis=1) == y).mean())
        logs = model.train_on_batch(x, y, return_dict=True)
        step = b2 - model.get_weights()[3]  # SGD(1): the bias gradient itself
        row = {"loss": float(logs["loss"]), "accuracy": float(logs["accuracy"]), "tied_images": ties,
               "accuracy_first_argmax": first_argmax, "accuracy_any_max": any_max,
               "accuracy_logits_argmax": logits_argmax, "candidates": {}}
        for name, (loss, grad) in candidates(z, y).items():
            row["candidates"][name] = {
                "loss": float(loss),
                "loss_rel_diff": abs(row["loss"] - loss) / abs(loss),
                "bias_step_rel_diff": float(np.abs(step - grad).max() / max(np.abs(grad).max(), 1e-30))}
        row["trains"] = min(row["candidates"], key=lambda k: row["candidates"][k]["bias_step_rel_diff"]
                            + row["candidates"][k]["loss_rel_diff"])
        results["modes"][mode] = row

    print(f"Keras {results['keras']} on {backend}" + (f" {results.get('tensorflow')}" if backend == "tensorflow" else ""))
    print("| mode | loss reported | trains | " + " | ".join(f"{k}: loss / bias step rel. diff" for k in
                                                          next(iter(results["modes"].values()))["candidates"]) + " |")
    for mode, row in results["modes"].items():
        cells = " | ".join(f"{c['loss_rel_diff']:.1e} / {c['bias_step_rel_diff']:.1e}" for c in row["candidates"].values())
        print(f"| {mode} | {row['loss']:.6f} | {row['trains']} | {cells} |")
    for mode, row in results["modes"].items():
        print(f"{mode}: {row['tied_images']} of 32 images have tied top outputs; accuracy reported "
              f"{row['accuracy']:.5f}; argmax of the outputs (first of the tied) {row['accuracy_first_argmax']:.5f}, "
              f"label among the tied maxima {row['accuracy_any_max']:.5f}, argmax of the logits {row['accuracy_logits_argmax']:.5f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    wrong = [mode for mode, row in results["modes"].items() if args.expect and row["trains"] != args.expect]
    key = {"outputs": "accuracy_first_argmax", "logits": "accuracy_logits_argmax"}.get(args.expect_accuracy)
    wrong += [f"{mode} (accuracy)" for mode, row in results["modes"].items() if key and row["accuracy"] != row[key]]
    if wrong:
        raise SystemExit(f"keras_semantics.py: not as expected: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
