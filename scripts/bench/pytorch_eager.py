#!/usr/bin/env python3
"""A peer `mnist bench` is measured against: the paper's model in PyTorch, eager or torch.compile'd.

Same model (784-100 relu-10), same loss as the paper's run (softmax cross-entropy on the logits:
Keras/TF semantics), torch.optim.Adam with Keras's epsilon value 1e-7 (where PyTorch adds it, after the
bias correction: the same work per step), batch 32, data resident as tensors, batches by
randperm + indexing, and Keras-style running metrics accumulated on the device (no per-step .item()).
On CUDA: data, permutation and metrics on the GPU, torch.optim.Adam's default (foreach) update.
--compile MODE: the model through torch.compile(mode=MODE) ("default", "reduce-overhead",
"max-autotune-no-cudagraphs", ...); compilation happens in the warm-up epoch, which is not timed.
Prints one JSON document with the median seconds per epoch of the timed epochs.
"""
import time

import torch
import torch.nn.functional as F

import peer


def main():
    ap = peer.arguments(__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", metavar="MODE", help="torch.compile the model with this mode")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = peer.train_set(args.data)
    x = (torch.frombuffer(bytearray(images), dtype=torch.uint8).view(-1, 1, 28, 28).float() / 255).to(dev)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long().to(dev)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, 10)).to(dev)
    if args.compile:
        model = torch.compile(model, mode=args.compile)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    n, b = x.shape[0], args.batch_size
    times = []
    for epoch in range(args.warmup + args.epochs):
        start = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        for s in range(0, n, b):
            idx = perm[s:s + b]
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            z = model(xb)
            loss = F.cross_entropy(z, yb)
            loss.backward()
            opt.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(idx)
                correct += (torch.sigmoid(z).argmax(1) == yb).sum()
        loss_sum.item()  # the epoch's one sync, as in mnist
        if epoch >= args.warmup:
            times.append(time.perf_counter() - start)
    peer.report(times, torch=torch.__version__, compile=args.compile, threads=torch.get_num_threads(), batch_size=b,
                device=str(dev))


if __name__ == "__main__":
    main()
