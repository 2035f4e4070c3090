#!/usr/bin/env python3
"""Writes tests/data/keras/: files saved by real Keras, which the unit tests read without Keras.

    .venv/keras/bin/python tests/python/make_keras_fixtures.py   # Keras 3.15.1, TensorFlow 2.21.0

tiny-cnn.keras        model.save(): a small Conv2D / BatchNormalization / Activation / MaxPooling2D /
                      Dropout / Flatten / Dense(use_bias=False) model, compiled with AdamW(0.002)
tiny-cnn.weights.h5   model.save_weights() of the same model
tiny-cnn.json         json.dump([w.tolist() for w in model.get_weights()]): the same arrays as JSON
The BatchNormalization statistics are set away from (0, 1) so that a reader that skips them fails.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402

out = os.path.join(os.path.dirname(__file__), "..", "data", "keras")
keras.utils.set_random_seed(7)
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(2, 3, strides=2, padding="same"),
    keras.layers.BatchNormalization(momentum=0.9),
    keras.layers.Activation("relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Dropout(0.25),
    keras.layers.Flatten(),
    keras.layers.Dense(10, activation="softmax", use_bias=False),
], name="tiny_cnn")
model.compile(optimizer=keras.optimizers.AdamW(learning_rate=0.002), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
weights = model.get_weights()
rng = np.random.default_rng(7)
weights[3] = rng.uniform(-0.5, 0.5, weights[3].shape).astype(np.float32)  # moving_mean
weights[4] = rng.uniform(0.5, 2.0, weights[4].shape).astype(np.float32)   # moving_variance
model.set_weights(weights)
model.save(os.path.join(out, "tiny-cnn.keras"))
model.save_weights(os.path.join(out, "tiny-cnn.weights.h5"))
with open(os.path.join(out, "tiny-cnn.json"), "w") as f:
    json.dump([w.tolist() for w in model.get_weights()], f)
print("wrote", sorted(os.listdir(out)), "with Keras", keras.__version__)
