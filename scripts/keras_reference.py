#!/usr/bin/env python3
"""The paper's Keras program, parameterised by this project's JSON config.

    scripts/venv.sh keras    # once: TensorFlow (CPU), Keras 3 and JAX in .venv/keras
    .venv/keras/bin/python scripts/keras_reference.py --config configs/paper.json --out runs/keras-paper

It trains what the config describes with Keras (the backend KERAS_BACKEND names; TensorFlow, as in the paper,
when unset): `model.fit(x_train / 255, y_train, epochs, batch_size, shuffle)` with the config's optimizer and
`sparse_categorical_crossentropy`, metric "accuracy". Written in --out:
  history.json          model.fit(...).history plus per-epoch "test_loss", "test_accuracy" and "epoch_seconds":
                        the schema of our history.json, so `mnist compare` reads it
  initial_weights.json  model.get_weights() before training, and
  weights.json          after it: the JSON format of `mnist import-keras` and `mnist train --initial-weights`
  metrics.json          test_loss and test_accuracy (model.evaluate), the training set's accuracy evaluated after
                        training, tied top outputs on both sets, and the versions that ran
  predictions.json      argmax of model.predict on the test set
  tensorboard/          keras.callbacks.TensorBoard's logs (train/, validation/; update_freq 100, histogram_freq 1)
                        and test/ with the per-epoch test set's epoch_loss and epoch_accuracy: the layout and tags
                        `mnist train` writes, so `tensorboard --logdir` shows both runs on one chart
                        (--no-tensorboard: none; it needs TensorFlow installed, whatever the backend)
--set KEY.PATH=VALUE changes the config as `mnist --set` does (VALUE as JSON, else a string; model.layers[1].units
or model.layers.1.units). A setting that this Keras program cannot reproduce (a learning-rate schedule,
augmentation, label smoothing, the other backend's loss semantics) is refused with one line, exit 2, rather than
trained without: EarlyStopping and ReduceLROnPlateau are Keras's own callbacks with the config's arguments.
Lock-step runs: --initial-weights FILE starts from given weights instead of Keras's initialisers, and
--data-order FILE (a JSON list with one list of training-set indices per epoch; `mnist train --data-order`
reads the same file) feeds each epoch's batches in that order instead of shuffling.
Data: the same IDX files as `mnist` (data/<dataset> or --data), divided by 255 as in the paper.
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
    """The config's layers as keras.layers, with Keras's own names unless the config gives one."""
    layers = [keras.Input(shape=(28, 28, 1))]
    for spec in config["model"]["layers"]:
        kind, name = spec["type"], spec.get("name")
        if kind == "Flatten":
            layer = keras.layers.Flatten(name=name)
        elif kind == "Dense":
            layer = keras.layers.Dense(spec["units"], activation=spec.get("activation", "linear"),
                                       use_bias=spec.get("use_bias", True), name=name)
        elif kind == "Conv2D":
            layer = keras.layers.Conv2D(spec["filters"], spec["kernel_size"], strides=spec.get("strides", 1),
                                        padding=spec.get("padding", "valid"), activation=spec.get("activation", "linear"),
                                        use_bias=spec.get("use_bias", True), name=name)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            layer = getattr(keras.layers, kind)(spec.get("pool_size", 2), strides=spec.get("strides"),
                                                padding=spec.get("padding", "valid"), name=name)
        elif kind == "BatchNormalization":
            layer = keras.layers.BatchNormalization(momentum=spec.get("momentum", 0.99), epsilon=spec.get("epsilon", 1e-3),
                                                    center=spec.get("center", True), scale=spec.get("scale", True), name=name)
        elif kind == "Activation":
            layer = keras.layers.Activation(spec["activation"], name=name)
        elif kind == "Dropout":
            layer = keras.layers.Dropout(spec["rate"], name=name)
        else:
            raise SystemExit(f"keras_reference.py: layer type {kind} is not supported by this script")
        layers.append(layer)
    return keras.Sequential(layers, name=config.get("name", "model"))


def optimizer(keras, spec):
    spec = dict(spec or {"name": "adam"})
    name = spec.pop("name", "adam")
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD,
           "rmsprop": keras.optimizers.RMSprop}[name]
    return cls(**spec)


def tensorboard_callbacks(keras, log_dir, timing):
    """Keras's TensorBoard callback (train/, validation/), then `timing` (which adds test_loss and test_accuracy
    to the epoch's logs), then their values into log_dir/test as epoch_loss and epoch_accuracy, as `mnist` logs."""
    import tensorflow as tf

    class TestLog(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "test"))

        def on_epoch_end(self, epoch, logs=None):
            with self.writer.as_default():
                tf.summary.scalar("epoch_loss", logs["test_loss"], step=epoch)
                tf.summary.scalar("epoch_accuracy", logs["test_accuracy"], step=epoch)
            self.writer.flush()

    board = keras.callbacks.TensorBoard(log_dir=log_dir, update_freq=100, histogram_freq=1)
    return [board] + timing + [TestLog()]


def apply_set(config, assignment):
    """One --set KEY.PATH=VALUE on the config's JSON (a new optimizer name starts from its Keras defaults)."""
    key, eq, text = assignment.partition("=")
    if not eq or not key:
        raise SystemExit(f"keras_reference.py: --set {assignment}: expected KEY.PATH=VALUE")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    keys = [k for k in key.replace("[", ".").replace("]", ".").split(".") if k]
    node = config
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    if keys == ["training", "optimizer", "name"]:
        config["training"]["optimizer"] = {"name": value}
    elif isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


def unsupported(config, backend):
    """What of the config this Keras program would not train as `mnist` does: a list of reasons."""
    t = config.get("training", {})
    reasons = []
    if t.get("lr_schedule", {}).get("name", "constant") != "constant":
        reasons.append(f"training.lr_schedule {t['lr_schedule']['name']} (this script trains a constant learning rate)")
    moved = {k: v for k, v in t.get("augmentation", {}).items() if k.endswith(("range", "alpha")) and v}
    if moved:
        reasons.append(f"training.augmentation {moved} (this script feeds the images as they are)")
    loss = t.get("loss", {})
    if loss.get("label_smoothing", 0):
        reasons.append("training.loss.label_smoothing (Keras's sparse_categorical_crossentropy has none)")
    semantics = loss.get("semantics", "tensorflow")
    if semantics != ("tensorflow" if backend == "tensorflow" else "renormalized"):
        reasons.append(f"training.loss.semantics {semantics} on the {backend} backend (tensorflow is what "
                       "KERAS_BACKEND=tensorflow trains, renormalized what jax and torch train)")
    return reasons


def keras_callbacks(keras, training):
    """The config's EarlyStopping and ReduceLROnPlateau, as Keras's own callbacks."""
    out = []
    stop = training.get("early_stopping", {})
    if stop.get("enabled"):
        out.append(keras.callbacks.EarlyStopping(monitor=stop.get("monitor", "val_loss"), min_delta=stop.get("min_delta", 0),
                                                 patience=stop.get("patience", 0),
                                                 restore_best_weights=stop.get("restore_best_weights", False),
                                                 start_from_epoch=stop.get("start_from_epoch", 0)))
    plateau = training.get("reduce_lr_on_plateau", {})
    if plateau.get("enabled"):
        out.append(keras.callbacks.ReduceLROnPlateau(monitor=plateau.get("monitor", "val_loss"), factor=plateau.get("factor", 0.1),
                                                     patience=plateau.get("patience", 10), min_delta=plateau.get("min_delta", 1e-4),
                                                     cooldown=plateau.get("cooldown", 0), min_lr=plateau.get("min_lr", 0.0)))
    return out


def tied(outputs):
    """How many rows have their maximum more than once."""
    return int(((outputs == outputs.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/paper.json")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", help="the run's folder (required unless --check)")
    ap.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    ap.add_argument("--seed", type=int, default=None, help="override training.seed (keras.utils.set_random_seed)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow's intra- and inter-op threads (0: its default)")
    ap.add_argument("--initial-weights", help="start from these weights (JSON list of arrays, get_weights() order)")
    ap.add_argument("--data-order", help="JSON list of per-epoch lists of training-set indices, instead of shuffling")
    ap.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="change the config, as mnist --set")
    ap.add_argument("--check", action="store_true", help="only check that the config can be trained here, then exit")
    args = ap.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    for assignment in args.set:
        apply_set(config, assignment)
    training = config.get("training", {})
    epochs = args.epochs or training.get("epochs", 1)
    seed = training.get("seed", 0) if args.seed is None else args.seed

    import keras  # late, so --help works without it
    backend = keras.backend.backend()
    if not args.out and not args.check:
        raise SystemExit("keras_reference.py: --out is required")
    reasons = unsupported(config, backend)
    if reasons:
        raise SystemExit(f"keras_reference.py: {args.config} cannot be trained as mnist trains it: " + "; ".join(reasons))
    if args.check:
        return
    versions = {"keras": keras.__version__, "backend": backend}
    if backend == "tensorflow":
        import tensorflow as tf
        versions["tensorflow"] = tf.__version__
        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    elif backend == "jax":
        import jax
        versions["jax"] = jax.__version__

    data = args.data or os.path.join("data", config.get("dataset", "mnist"))
    x_train = (read_idx(os.path.join(data, "train-images-idx3-ubyte")) / 255)[..., None]
    y_train = read_idx(os.path.join(data, "train-labels-idx1-ubyte"))
    x_test = (read_idx(os.path.join(data, "t10k-images-idx3-ubyte")) / 255)[..., None]
    y_test = read_idx(os.path.join(data, "t10k-labels-idx1-ubyte"))

    keras.utils.set_random_seed(seed)
    model = build(keras, config)
    loss = training.get("loss", {})
    model.compile(optimizer=optimizer(keras, training.get("optimizer")),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=loss.get("from_logits", False)),
                  metrics=["accuracy"])
    if args.initial_weights:
        with open(args.initial_weights) as f:
            model.set_weights([np.asarray(w, dtype="float32") for w in json.load(f)])
    os.makedirs(args.out, exist_ok=True)

    def dump(name, obj):
        tmp = os.path.join(args.out, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, os.path.join(args.out, name))

    dump("initial_weights.json", [w.tolist() for w in model.get_weights()])

    class Timing(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["epoch_seconds"] = time.perf_counter() - self.start
            test_loss, test_accuracy = self.model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
            logs["test_loss"], logs["test_accuracy"] = test_loss, test_accuracy

    callbacks = [Timing()] + keras_callbacks(keras, training)
    if not args.no_tensorboard:
        callbacks = tensorboard_callbacks(keras, os.path.join(args.out, "tensorboard"), callbacks)
    batch_size = training.get("batch_size", 32)
    validation_split = training.get("validation_split", 0.0) or 0.0
    history = {}
    if args.data_order:
        # Keras's validation_split takes the last fraction before any shuffling; the order indexes the rest.
        n = int(len(x_train) * (1 - validation_split))
        x_fit, y_fit = x_train[:n], y_train[:n]
        validation = (x_train[n:], y_train[n:]) if validation_split else None
        with open(args.data_order) as f:
            order = json.load(f)
        if len(order) < epochs:
            raise SystemExit(f"keras_reference.py: {args.data_order} orders {len(order)} epochs; {epochs} are to run")
        for epoch in range(epochs):
            idx = np.asarray(order[epoch], dtype=np.int64)
            h = model.fit(x_fit[idx], y_fit[idx], initial_epoch=epoch, epochs=epoch + 1, batch_size=batch_size,
                          shuffle=False, validation_data=validation, callbacks=callbacks, verbose=0)
            for key, values in h.history.items():
                history.setdefault(key, []).extend(values)
    else:
        h = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=training.get("shuffle", True),
                      validation_split=validation_split, callbacks=callbacks, verbose=2)
        history = h.history

    dump("history.json", {k: [float(v) for v in vs] for k, vs in history.items()})
    dump("weights.json", [w.tolist() for w in model.get_weights()])
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    test_out = np.asarray(model.predict(x_test, batch_size=1000, verbose=0))
    train_out = np.asarray(model.predict(x_train, batch_size=1000, verbose=0))
    dump("metrics.json", {"test_loss": float(test_loss), "test_accuracy": float(test_accuracy),
                          "top_output_ties": tied(test_out),
                          "train_accuracy": float((train_out.argmax(axis=1) == y_train).mean()),
                          "train_top_output_ties": tied(train_out), "epochs_completed": len(history.get("loss", [])),
                          "seed": seed, **versions})
    dump("predictions.json", test_out.argmax(axis=1).tolist())
    print(f"wrote {args.out}: history.json, initial_weights.json, weights.json, metrics.json, predictions.json")


if __name__ == "__main__":
    main()
