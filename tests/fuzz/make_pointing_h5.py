"""Writes the keras_files fuzz corpus's weights files that point outside themselves: copies of
tiny-cnn.weights.h5 whose conv2d bias (layers/conv2d/vars/1, shape [2]) is stored in /etc/passwd
(external storage), is a virtual dataset of another file's /x, is an external link to another
file's /x, or whose whole conv2d group is an external link. mnist refuses each before libhdf5
follows it (src/interop/keras_files.cpp). Run from the repository root with h5py:
    .venv/keras/bin/python tests/fuzz/make_pointing_h5.py
"""
import shutil

import h5py

CORPUS = "tests/fuzz/corpus/keras_files"
SEED = f"{CORPUS}/tiny-cnn.weights.h5"
OTHER = "/tmp/mnist-other.h5"  # named by the files; it need not exist for them to be refused


def rewritten(name, make):
    path = f"{CORPUS}/{name}.weights.h5"
    shutil.copy(SEED, path)
    with h5py.File(path, "r+") as f:
        make(f)


def external_storage(f):
    del f["layers/conv2d/vars/1"]
    f["layers/conv2d/vars"].create_dataset("1", shape=(2,), dtype="f4", external=[("/etc/passwd", 0, 8)])


def virtual_dataset(f):
    del f["layers/conv2d/vars/1"]
    layout = h5py.VirtualLayout(shape=(2,), dtype="f4")
    layout[:] = h5py.VirtualSource(OTHER, "x", shape=(2,))
    f["layers/conv2d/vars"].create_virtual_dataset("1", layout)


def external_link(f):
    del f["layers/conv2d/vars/1"]
    f["layers/conv2d/vars/1"] = h5py.ExternalLink(OTHER, "/x")


def external_group(f):
    del f["layers/conv2d"]
    f["layers/conv2d"] = h5py.ExternalLink(OTHER, "/")


for name, make in [("external-storage", external_storage), ("virtual-dataset", virtual_dataset),
                   ("external-link", external_link), ("external-group", external_group)]:
    rewritten(name, make)
