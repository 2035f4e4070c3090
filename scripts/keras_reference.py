#!/usr/bin/env python3
"""The paper's Keras program, parameterised by this project's JSON config, for users who have Keras.

    python3 scripts/keras_reference.py --config configs/paper.json --out runs/keras-paper

It trains exactly what the config describes with Keras (any backend; the paper used TensorFlow) and
writes, in --out:
  history.json   model.fit(...).history plus "epoch_seconds" and per-epoch "test_loss"/"test_accuracy",
                 the schema of our history.json, so `mnist compare runs/keras-paper runs/<ours>` works;
  weights.json   [w.tolist() for w in model.get_weights()], the file `mnist import-keras` reads;
  metrics.json   test_loss and test_accuracy from model.evaluate, and predictions.json (the argmax
                 of model.predict on the test set) to check `mnist import-keras` + `mnist evaluate`.
Data: the same IDX files as `mnist` (data/mnist or --data), divided by 255 as in the paper.
Keras and TensorFlow are not installed by this project (they are not in Debian), so this script is
not run by its tests.
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np


def read_idx(path):
    opener = gzip.open if not os.path.exists(path) and os.path.exists(path + ".gz") else open
    name = path if opener is open else path + ".gz"
    with opener(name, "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        shape = (count, 28, 28) if magic == 2051 else (count,)
        if magic == 2051:
            f.read(8)
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def build(keras, config):
    layers = [keras.Input(shape=(28, 28))]
    for spec in config["model"]["layers"]:
        if spec["type"] == "Flatten":
            layers.append(keras.layers.Flatten(name=spec.get("name")))
        elif spec["type"] == "Dense":
            layers.append(keras.layers.Dense(spec["units"], activation=spec.get("activation", "linear"),
                                             use_bias=spec.get("use_bias", True), name=spec.get("name")))
        else:
            raise SystemExit(f"layer type {spec['type']} is not supported by this script")
    return keras.Sequential(layers, name=config.get("name", "model"))


def optimizer(keras, spec):
    spec = dict(spec or {"name": "adam"})
    name = spec.pop("name", "adam")
    return {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}[name](**spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/paper.json")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()

    import keras  # imported late so --help works without it

    with open(args.config) as f:
        config = json.load(f)
    training = config.get("training", {})
    data = args.data or os.path.join("data", config.get("dataset", "mnist"))
    x_train = read_idx(os.path.join(data, "train-images-idx3-ubyte")) / 255
    y_train = read_idx(os.path.join(data, "train-labels-idx1-ubyte"))
    x_test = read_idx(os.path.join(data, "t10k-images-idx3-ubyte")) / 255
    y_test = read_idx(os.path.join(data, "t10k-labels-idx1-ubyte"))

    seed = training.get("seed", 0)
    keras.utils.set_random_seed(seed)
    model = build(keras, config)
    loss = training.get("loss", {})
    model.compile(optimizer=optimizer(keras, training.get("optimizer")),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=loss.get("from_logits", False)),
                  metrics=["accuracy"])
    model.summary()

    class Timing(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.start
            test_loss, test_accuracy = self.model.evaluate(x_test, y_test, verbose=0)
            logs["test_loss"], logs["test_accuracy"] = test_loss, test_accuracy

    history = model.fit(x_train, y_train, epochs=args.epochs or training.get("epochs", 1),
                        batch_size=training.get("batch_size", 32), shuffle=training.get("shuffle", True),
                        validation_split=training.get("validation_split", 0.0) or 0.0,
                        validation_data=None if training.get("validation_split") else (x_test, y_test),
                        callbacks=[Timing()])
    os.makedirs(args.out, exist_ok=True)

    def dump(name, obj):
        tmp = os.path.join(args.out, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, os.path.join(args.out, name))

    dump("history.json", {k: [float(v) for v in vs] for k, vs in history.history.items()})
    dump("weights.json", [w.tolist() for w in model.get_weights()])
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    dump("metrics.json", {"test_loss": float(test_loss), "test_accuracy": float(test_accuracy)})
    dump("predictions.json", np.argmax(model.predict(x_test, verbose=0), axis=-1).tolist())
    print(f"wrote {args.out}: history.json, weights.json, metrics.json, predictions.json")


if __name__ == "__main__":
    main()
