#!/usr/bin/env python3
"""A peer `mnist bench --config configs/cnn.json` is measured against: that config's training in PyTorch eager.

The same network (Conv2D 16-16-32-32, 3x3 `same` without bias, each followed by BatchNormalization with Keras's
momentum 0.99 and epsilon 1e-3 and a ReLU, max-pooling after each pair, Dropout 0.25, Dense 128 relu, Dropout 0.25,
Dense 10), softmax cross-entropy on the logits, torch.optim.Adam (Keras's epsilon 1e-7) at 1e-3 with cosine decay
over the run, batch 128, and the same on-the-fly augmentation as `mnist` draws it: per image a rotation of up to
10 degrees, shifts of up to 2 pixels, a zoom of up to 10%, applied as one affine_grid + grid_sample per batch
(bilinear, nearest fill). Data resident as tensors, running metrics on the device, one sync per epoch.
--hidden is accepted (bench.sh passes it to every peer) and ignored.
Prints one JSON document with the median seconds per epoch of the timed epochs.
"""
import math
import time

import torch
import torch.nn.functional as F

import peer


def conv_block(cin, cout):
    return [torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
            torch.nn.ReLU()]


def augment(x, gen):
    """Per image: rotation in [-10, 10] degrees, shifts in [-2, 2] pixels, zoom in [0.9, 1.1]."""
    n, size = x.shape[0], x.shape[-1]
    u = torch.rand(n, 4, device=x.device, generator=gen) * 2 - 1
    angle, zoom = u[:, 0] * math.radians(10), 1 + 0.1 * u[:, 3]
    shift = u[:, 1:3] * 2 * 2 / size  # pixels in grid_sample's [-1, 1] coordinates
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def main():
    ap = peer.arguments(__doc__)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator(device=dev).manual_seed(0)
    images, labels = peer.train_set(args.data)
    x = (torch.frombuffer(bytearray(images), dtype=torch.uint8).view(-1, 1, 28, 28).float() / 255).to(dev)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long().to(dev)
    model = torch.nn.Sequential(*conv_block(1, 16), *conv_block(16, 16), torch.nn.MaxPool2d(2),
                                *conv_block(16, 32), *conv_block(32, 32), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Dropout(0.25), torch.nn.Linear(32 * 7 * 7, 128), torch.nn.ReLU(),
                                torch.nn.Dropout(0.25), torch.nn.Linear(128, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    n, b = x.shape[0], args.batch_size
    total_steps = (args.warmup + args.epochs) * math.ceil(n / b)
    step, times = 0, []
    for epoch in range(args.warmup + args.epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        for s in range(0, n, b):
            idx = perm[s:s + b]
            xb, yb = augment(x[idx], gen), y[idx]
            for group in opt.param_groups:  # Keras's cosine_decay
                group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            opt.zero_grad()
            z = model(xb)
            loss = F.cross_entropy(z, yb)
            loss.backward()
            opt.step()
            step += 1
            with torch.no_grad():
                loss_sum += loss.detach() * len(idx)
                correct += (z.argmax(1) == yb).sum()
        loss_sum.item()  # the epoch's one sync, as in mnist
        if epoch >= args.warmup:
            times.append(time.perf_counter() - start)
    peer.report(times, torch=torch.__version__, threads=torch.get_num_threads(), batch_size=b, device=str(dev))


if __name__ == "__main__":
    main()
