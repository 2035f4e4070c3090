#!/usr/bin/env python3
"""Keras's own files through `mnist` and back, checked by real Keras (the Keras.Files test).

    tests/python/keras.sh tests/python/keras_files.py --mnist build/mnist --work /tmp/keras-files

For each config (the paper's dense model and a Conv2D / BatchNormalization / pooling model):
  1. Keras builds the model (scripts/keras_reference.py's builder), compiles it with the config's optimizer and
     loss, fits it for one epoch on 3000 images (the first of the test set: data this script already holds) and
     saves model.keras and model.weights.h5.
  2. `mnist import-keras` reads each (the .keras on its own, the .weights.h5 with --config) into a TorchScript
     model, and `mnist evaluate` scores it on the MNIST test set: the loss and accuracy must be Keras's own
     model.evaluate figures (float32 summation order aside).
  3. `mnist export` writes the imported model back as .keras and .weights.h5: keras.saving.load_model and
     model.load_weights must take them and hold exactly (bit for bit) the weights Keras started with.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import keras_reference  # noqa: E402


def run(*args):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"keras_files.py: {' '.join(map(str, args))} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def ours_evaluate(mnist, model, data):
    return json.loads(run(mnist, "evaluate", "--model", model, "--data", data, "--json"))


def same_weights(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def check(name, config_path, args, keras, x_test, y_test):
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    with open(config_path) as f:
        config = json.load(f)
    keras.utils.set_random_seed(3)
    model = keras_reference.build(keras, config)
    training = config.get("training", {})
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=training.get("loss", {}).get("from_logits", False))
    model.compile(optimizer=keras_reference.optimizer(keras, training.get("optimizer")), loss=loss, metrics=["accuracy"])
    def inputs(m):  # (N, 28, 28) or (N, 28, 28, 1), whichever the model takes
        return x_test if len(m.inputs[0].shape) == 3 else x_test[..., None]
    # A short fit, so that the classes mean something and BatchNormalization's statistics move off (0, 1).
    model.fit(inputs(model)[:3000], y_test[:3000], epochs=1, batch_size=32, verbose=0)
    weights = model.get_weights()
    keras_file, weights_file = os.path.join(work, "keras.keras"), os.path.join(work, "keras.weights.h5")
    model.save(keras_file)
    model.save_weights(weights_file)
    keras_loss, keras_accuracy = model.evaluate(inputs(model), y_test, batch_size=1000, verbose=0)

    failures = []
    imported = {
        ".keras": (keras_file, []),
        ".weights.h5": (weights_file, ["--config", config_path]),
    }
    for kind, (path, extra) in imported.items():
        ours_model = os.path.join(work, f"ours{kind.replace('.', '-')}.pt")
        run(args.mnist, "import-keras", path, "--out", ours_model, *extra)
        m = ours_evaluate(args.mnist, ours_model, args.data)
        loss_rel = abs(m["test_loss"] - keras_loss) / keras_loss
        accuracy_diff = abs(m["test_accuracy"] - keras_accuracy)
        print(f"{name}: import {kind}: test loss ours {m['test_loss']:.7f} Keras {keras_loss:.7f} (rel {loss_rel:.1e}), "
              f"accuracy ours {m['test_accuracy']:.4f} Keras {keras_accuracy:.4f}")
        if loss_rel > args.loss_rtol or accuracy_diff > 1e-4:
            failures.append(f"{name}: import {kind}: evaluation differs from Keras's")

        # And back: our exports into Keras, which must hold the very arrays it saved.
        back_keras, back_weights = os.path.join(work, f"back{kind.replace('.', '-')}.keras"), os.path.join(work, f"back{kind.replace('.', '-')}.weights.h5")
        run(args.mnist, "export", "--run", ours_model, "--out", back_keras)
        run(args.mnist, "export", "--run", ours_model, "--out", back_weights)
        loaded = keras.saving.load_model(back_keras)
        fresh = keras_reference.build(keras, config)
        fresh.load_weights(back_weights)
        back_loss, back_accuracy = loaded.evaluate(inputs(loaded), y_test, batch_size=1000, verbose=0)
        ok = same_weights(loaded.get_weights(), weights) and same_weights(fresh.get_weights(), weights)
        print(f"{name}: export {kind} -> .keras and .weights.h5 into Keras: weights {'identical' if ok else 'DIFFER'}, "
              f"load_model's evaluate {back_loss:.7f} / {back_accuracy:.4f}")
        if not ok or back_loss != keras_loss or back_accuracy != keras_accuracy:
            failures.append(f"{name}: export {kind}: Keras does not get back the model it saved")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", required=True, help="the mnist binary")
    parser.add_argument("--work", required=True, help="scratch directory")
    parser.add_argument("--data", default="data/mnist", help="the four MNIST IDX files")
    parser.add_argument("--loss-rtol", type=float, default=1e-5, help="test loss, ours vs Keras, relative")
    args = parser.parse_args()
    import keras

    x_test = keras_reference.read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    y_test = keras_reference.read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    print(f"Keras {keras.__version__} ({keras.backend.backend()} backend)")
    failures = []
    failures += check("paper", "configs/paper.json", args, keras, x_test, y_test)
    failures += check("cnn", "tests/configs/lockstep-cnn.json", args, keras, x_test, y_test)
    for f in failures:
        print("FAILED:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
