#!/usr/bin/env python3
"""TensorBoard's own reader on the event files `mnist train` writes.

    .venv/tensorboard/bin/python tests/python/tensorboard_readback.py --mnist build/mnist --work /tmp/tb

Trains configs/quick.json for two epochs with a validation split, then reads RUN/tensorboard with
TensorBoard's EventAccumulator (the reader behind its dashboards) and checks, failing with one line on
the first difference: every record's framing (length and data CRC-32C, masked as TFRecord masks them);
every per-epoch scalar equal to history.json's value as float32, at Keras's steps (epoch from 0);
batch_loss every update_freq batches; a histogram of every weight per epoch holding all its values;
the config as text; the figures the run drew, as PNG images; the hyper-parameters' session start and end.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import metadata as hparams_metadata

UPDATE_FREQ = 400  # batches between batch_loss points (1688 batches an epoch here)


def fail(message):
    print("tensorboard_readback: " + message, file=sys.stderr)
    sys.exit(1)


def check_framing(folder):
    """Every record of every event file: 8-byte length, its masked CRC-32C, data, the data's."""
    files = [f for f in os.listdir(folder) if "tfevents" in f]
    if not files:
        fail(f"{folder} holds no event file")
    for name in files:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        at, records = 0, 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            (length_crc,) = struct.unpack("<I", data[at + 8:at + 12])
            body = data[at + 12:at + 12 + length]
            (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
            if length_crc != masked_crc32c(data[at:at + 8]) or body_crc != masked_crc32c(body):
                fail(f"{name}: record {records} fails its CRC-32C")
            at, records = at + 16 + length, records + 1
    return files


def reader(folder, plugins=False):
    kind = plugin_event_accumulator if plugins else event_accumulator
    acc = kind.EventAccumulator(folder, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def check_scalars(acc, tag, expected, where):
    events = acc.Scalars(tag)
    steps, values = [e.step for e in events], [e.value for e in events]
    if steps != list(range(len(expected))):
        fail(f"{where} {tag}: steps {steps}, expected 0..{len(expected) - 1}")
    for step, (got, want) in enumerate(zip(values, expected)):
        if np.float32(got) != np.float32(want):
            fail(f"{where} {tag} at epoch {step}: TensorBoard reads {got!r}, history.json holds {want!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", required=True)
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--work", required=True)
    a = p.parse_args()
    run = os.path.join(a.work, "run")
    subprocess.run(["rm", "-rf", a.work], check=True)
    subprocess.run([a.mnist, "train", "--config", "configs/quick.json", "--epochs", "2", "--data", a.data, "--out", run,
                    "--set", "training.validation_split=0.1", "--set", f"training.tensorboard.update_freq={UPDATE_FREQ}"],
                   check=True, stdout=subprocess.DEVNULL)
    history = json.load(open(os.path.join(run, "history.json")))
    config = json.load(open(os.path.join(run, "config.json")))
    logs = os.path.join(run, "tensorboard")
    for sub in ("", "train", "validation", "test"):
        check_framing(os.path.join(logs, sub))

    train = reader(os.path.join(logs, "train"))
    check_scalars(train, "epoch_loss", history["loss"], "train")
    check_scalars(train, "epoch_accuracy", history["accuracy"], "train")
    check_scalars(train, "epoch_learning_rate", history["learning_rate"], "train")
    validation = reader(os.path.join(logs, "validation"))
    check_scalars(validation, "epoch_loss", history["val_loss"], "validation")
    check_scalars(validation, "epoch_accuracy", history["val_accuracy"], "validation")
    test = reader(os.path.join(logs, "test"))
    check_scalars(test, "epoch_loss", history["test_loss"], "test")
    check_scalars(test, "epoch_accuracy", history["test_accuracy"], "test")

    batches = 2 * -(-54000 // 32)
    steps = [e.step for e in train.Scalars("batch_loss")]
    if steps != list(range(UPDATE_FREQ, batches + 1, UPDATE_FREQ)):
        fail(f"train batch_loss at steps {steps}, expected every {UPDATE_FREQ} batches to {batches}")
    for tag, values in (("dense/kernel/histogram", 784 * 100), ("dense/bias/histogram", 100),
                        ("dense_1/kernel/histogram", 100 * 10), ("dense_1/bias/histogram", 10)):
        histograms = train.Histograms(tag)
        if [h.step for h in histograms] != [0, 1] or any(h.histogram_value.num != values for h in histograms):
            fail(f"train {tag}: expected epochs 0 and 1 with {values} values each")
    for name in ("confusion_matrix", "confusion_matrix_normalized", "misclassified"):
        drawn = os.path.exists(os.path.join(run, name + ".png"))  # a build without OpenCV draws no figures
        images = test.Images(name) if name in test.Tags()["images"] else []
        if drawn and (len(images) != 1 or images[0].step != 1 or not images[0].encoded_image_string.startswith(b"\x89PNG")):
            fail(f"test image {name}: expected one PNG at epoch 1, as the run drew {name}.png")
        if not drawn and images:
            fail(f"test image {name}: logged, though the run drew no {name}.png")

    text = reader(os.path.join(logs, "train"), plugins=True)
    if "config" not in text.PluginTagToContent("text"):
        fail("train: no config text")
    written = text.Tensors("config")[0].tensor_proto.string_val[0].decode()
    if json.loads(written.strip("`\n").removeprefix("json\n")) != config:
        fail("train config text differs from config.json")
    root = reader(logs, plugins=True)
    content = root.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    end = hparams_metadata.parse_session_end_info_plugin_data(content[hparams_metadata.SESSION_END_INFO_TAG])
    if start.hparams["training.epochs"].number_value != 2 or start.hparams["training.optimizer.name"].string_value != "adam":
        fail(f"hparams: training.epochs and training.optimizer.name not 2 and adam: {dict(start.hparams)}")
    if end.status != 1:
        fail(f"hparams: the session ended with status {end.status}, not success (1)")
    print(f"tensorboard_readback: {len(history['loss'])} epochs, every scalar, histogram, image, text and hparam read back")


if __name__ == "__main__":
    main()
