"""Loads a model exported by `mnist` in Python, without our code, and checks it against C++.

usage: check_export.py DIR...   (each DIR holds model.pt, model_weights.pt and io.pt written by the C++ test)
io.pt is the dict {"input": x, "output": y} (save_tensor_dict), y computed by the C++ in-memory model.
Prints one line per DIR and exits 0 when the outputs agree to 1e-5 and the state_dict matches the module.
"""
import json
import sys

import torch


def check(d):
    extra = {"config.json": "", "classes.json": "", "preprocessing.json": ""}
    model = torch.jit.load(f"{d}/model.pt", _extra_files=extra)
    io = torch.load(f"{d}/io.pt")
    with torch.no_grad():
        out = model(io["input"])
        out_3d = model(io["input"].squeeze(1))  # [N, 28, 28] is accepted too
    diff = (out - io["output"]).abs().max().item()
    assert diff <= 1e-5, f"TorchScript output differs from C++ by {diff}"
    assert torch.equal(out, out_3d), "[N, 28, 28] input gives other outputs than [N, 1, 28, 28]"

    state = torch.load(f"{d}/model_weights.pt")
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))  # BatchNormalization moving statistics
    assert set(state) == set(params), f"state_dict keys {sorted(state)} != module tensors {sorted(params)}"
    for k, v in state.items():
        assert torch.equal(v, params[k]), f"state_dict {k} differs from the module's"

    config = json.loads(extra["config.json"])
    assert len(json.loads(extra["classes.json"])) == out.shape[1]
    assert "scale" in json.loads(extra["preprocessing.json"])
    print(f"python torch {torch.__version__}: outputs match (max abs diff {diff:.2e}), "
          f"{len(state)} state_dict tensors, config {config['name']}")


for d in sys.argv[1:]:
    check(d)
