#!/usr/bin/env python3
"""A peer `mnist bench` is measured against: the paper's model in JAX, one jax.jit'd training step.

Same model (784-100 relu-10), loss (softmax cross-entropy on the logits), Keras's Adam (epsilon added
to sqrt(v), bias corrections folded into the step size, epsilon 1e-7), batch 32, glorot-uniform
kernels, data resident as device arrays. Each step is one compiled XLA call: gather the batch by
index, forward, gradient, Adam, running loss and hits. The epoch's one sync reads the loss sum.
Prints one JSON document with the median seconds per epoch of the timed epochs.
"""
import os
import time

import numpy as np

import peer


def main():
    args = peer.arguments(__doc__).parse_args()
    if args.threads == 1:  # XLA's CPU thread pool, before jax is imported; one thread, as the other peers
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax
    import jax.numpy as jnp

    def glorot(key, fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -limit, limit)

    images, labels = peer.train_set(args.data)
    x = jnp.asarray(np.frombuffer(images, np.uint8).reshape(-1, 784).astype(np.float32) / 255)
    y = jnp.asarray(np.frombuffer(labels, np.uint8).astype(np.int32))
    k1, k2, k_order = jax.random.split(jax.random.PRNGKey(0), 3)
    params = [glorot(k1, 784, args.hidden), jnp.zeros(args.hidden), glorot(k2, args.hidden, 10), jnp.zeros(10)]
    m = [jnp.zeros_like(p) for p in params]
    v = [jnp.zeros_like(p) for p in params]
    lr, beta_1, beta_2, eps = 1e-3, 0.9, 0.999, 1e-7

    def loss_fn(params, xb, yb):
        w1, b1, w2, b2 = params
        z = jax.nn.relu(xb @ w1 + b1) @ w2 + b2
        losses = -jnp.take_along_axis(jax.nn.log_softmax(z), yb[:, None], axis=1)[:, 0]
        return losses.mean(), z

    @jax.jit
    def step(params, m, v, t, idx, loss_sum, hits):
        xb, yb = x[idx], y[idx]
        (loss, z), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb)
        alpha = lr * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = [mi + (g - mi) * (1 - beta_1) for mi, g in zip(m, grads)]
        v = [vi + (g * g - vi) * (1 - beta_2) for vi, g in zip(v, grads)]
        params = [p - (mi * alpha) / (jnp.sqrt(vi) + eps) for p, mi, vi in zip(params, m, v)]
        return params, m, v, loss_sum + loss * idx.shape[0], hits + (z.argmax(1) == yb).sum()

    n, b = x.shape[0], args.batch_size
    times, t = [], 0
    for epoch in range(args.warmup + args.epochs):
        start = time.perf_counter()
        k_order, k = jax.random.split(k_order)
        order = np.asarray(jax.random.permutation(k, n))
        loss_sum, hits = jnp.zeros(()), jnp.zeros((), jnp.int32)
        for s in range(0, n, b):  # the last, shorter batch compiles once more, in the warm-up
            t += 1
            params, m, v, loss_sum, hits = step(params, m, v, jnp.float32(t), order[s:s + b], loss_sum, hits)
        float(loss_sum)  # the epoch's one sync
        if epoch >= args.warmup:
            times.append(time.perf_counter() - start)
    peer.report(times, jax=jax.__version__, threads=args.threads or "default", batch_size=b, device=str(jax.devices()[0]))


if __name__ == "__main__":
    main()
