#!/usr/bin/env python3
"""A peer `mnist bench` is measured against: the paper's model in Keras 3 on TensorFlow, model.fit.

The paper's own program, as Keras users run it: Sequential Flatten -> Dense(100, relu) -> Dense(10),
Adam (Keras's defaults), batch 32, data resident as numpy arrays, one model.fit(verbose=0) whose
epochs a callback times. The loss is softmax cross-entropy on the logits
(SparseCategoricalCrossentropy(from_logits=True)), the loss every peer computes, with accuracy.
Prints one JSON document with the median seconds per epoch of the timed epochs.
"""
import argparse
import gzip
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402


def read_idx(path, header):
    opener = (open, path) if os.path.exists(path) else (gzip.open, path + ".gz")
    with opener[0](opener[1], "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)[header:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    import tensorflow as tf
    import keras
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    x = read_idx(f"{args.data}/train-images-idx3-ubyte", 16).reshape(-1, 28, 28).astype(np.float32) / 255
    y = read_idx(f"{args.data}/train-labels-idx1-ubyte", 8).astype(np.int64)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(args.hidden, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    times = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # logs holds the epoch's loss: read from the device
            if epoch >= args.warmup:
                times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=args.batch_size, epochs=args.warmup + args.epochs, verbose=0, callbacks=[EpochTimer()])
    print(json.dumps({"seconds_per_epoch": statistics.median(times), "epoch_seconds": times,
                      "keras": keras.__version__, "tensorflow": tf.__version__, "backend": keras.backend.backend(),
                      "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
