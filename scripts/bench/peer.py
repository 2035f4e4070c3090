"""What every peer of scripts/bench.sh shares: its command line, MNIST's training set as bytes, its report.

Standard library only, so that each peer imports it whatever its Python environment holds.
"""
import argparse
import gzip
import json
import os
import statistics


def arguments(doc):
    """The options bench.sh passes to every peer; a peer adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    return ap


def read_idx(path, header):
    """An IDX file's payload after its header; NAME.gz when NAME is absent, as `mnist` reads them."""
    opener = (open, path) if os.path.exists(path) else (gzip.open, path + ".gz")
    with opener[0](opener[1], "rb") as f:
        return f.read()[header:]


def train_set(data):
    """(images, labels) of MNIST's 60,000 training samples: 784 bytes per image, one per label."""
    return read_idx(f"{data}/train-images-idx3-ubyte", 16), read_idx(f"{data}/train-labels-idx1-ubyte", 8)


def report(times, **facts):
    """The one JSON document bench.sh reads: the median seconds per epoch of the timed epochs."""
    print(json.dumps({"seconds_per_epoch": statistics.median(times), "epoch_seconds": times, **facts}))
