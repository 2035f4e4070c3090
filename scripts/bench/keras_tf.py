#!/usr/bin/env python3
"""A peer `mnist bench` is measured against: the paper's model in Keras 3 on TensorFlow, model.fit.

The paper's own program, as Keras users run it: Sequential Flatten -> Dense(100, relu) -> Dense(10),
Adam (Keras's defaults), batch 32, data resident as numpy arrays, one model.fit(verbose=0) whose
epochs a callback times. The loss is softmax cross-entropy on the logits
(SparseCategoricalCrossentropy(from_logits=True)), the loss every peer computes, with accuracy.
Prints one JSON document with the median seconds per epoch of the timed epochs.
"""
import os
import time

import numpy as np

import peer


def main():
    args = peer.arguments(__doc__).parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    images, labels = peer.train_set(args.data)
    x = np.frombuffer(images, np.uint8).reshape(-1, 28, 28).astype(np.float32) / 255
    y = np.frombuffer(labels, np.uint8).astype(np.int64)
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
    peer.report(times, keras=keras.__version__, tensorflow=tf.__version__, backend=keras.backend.backend(),
                batch_size=args.batch_size)


if __name__ == "__main__":
    main()
