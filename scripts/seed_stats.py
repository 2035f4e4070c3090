#!/usr/bin/env python3
"""Seeds as distributions: the final figures of two groups of runs side by side, with a two-sample test.

    python3 scripts/seed_stats.py runs/paper-seed* --vs runs/keras-seed*   [--names mnist keras] [--markdown]

Each run is a folder with history.json and metrics.json, as `mnist train` and scripts/keras_reference.py write
them. For each group and figure (the last epoch's reported training accuracy, test accuracy, test loss) it
prints the mean, the sample standard deviation, min and max, and the Mann-Whitney U test of the two groups:
U, and its two-sided p-value, exact (every ranking counted) when no values tie, else the normal approximation
with the tie correction. Standard library only.
"""
import argparse
import json
import math
import os
import statistics
from functools import lru_cache

FIGURES = [("final reported accuracy", lambda h, m: h["accuracy"][-1]),
           ("test accuracy", lambda h, m: m["test_accuracy"]),
           ("test loss", lambda h, m: m["test_loss"])]


def load(run):
    with open(os.path.join(run, "history.json")) as f:
        history = json.load(f)
    with open(os.path.join(run, "metrics.json")) as f:
        metrics = json.load(f)
    return history, metrics


@lru_cache(maxsize=None)
def rankings(n, m, u):
    """How many orderings of n x's and m y's have exactly u pairs with the x above the y."""
    if u < 0:
        return 0
    if n == 0 or m == 0:
        return 1 if u == 0 else 0
    # The largest value is an x (it beats all m y's) or a y (it beats nothing).
    return rankings(n - 1, m, u - m) + rankings(n, m - 1, u)


def mann_whitney(xs, ys):
    """U of xs (pairs x > y, ties half) and the two-sided p-value."""
    n, m = len(xs), len(ys)
    u = sum((x > y) + 0.5 * (x == y) for x in xs for y in ys)
    pooled = sorted(xs + ys)
    if len(set(pooled)) == len(pooled):  # no ties: exact
        total = math.comb(n + m, n)
        lo = min(u, n * m - u)
        p = 2 * sum(rankings(n, m, k) for k in range(int(lo) + 1)) / total
        return u, min(1.0, p), "exact"
    counts = {v: pooled.count(v) for v in set(pooled)}
    tie = sum(t ** 3 - t for t in counts.values()) / ((n + m) * (n + m - 1))
    sigma = math.sqrt(n * m / 12 * ((n + m + 1) - tie))
    z = (abs(u - n * m / 2) - 0.5) / sigma if sigma else 0.0
    return u, min(1.0, math.erfc(max(z, 0) / math.sqrt(2))), "normal approximation, ties corrected"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="the first group's run folders")
    p.add_argument("--vs", nargs="+", required=True, help="the second group's run folders")
    p.add_argument("--names", nargs=2, default=["first", "second"])
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    a = p.parse_args()
    groups = [[load(r) for r in a.runs], [load(r) for r in a.vs]]
    rows = []
    for figure, get in FIGURES:
        values = [[get(h, m) for h, m in g] for g in groups]
        u, pvalue, how = mann_whitney(values[0], values[1])
        cells = []
        for v in values:
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.5f} ± {sd:.5f} [{min(v):.5f}, {max(v):.5f}]")
        rows.append((figure, *cells, f"U = {u:g}, p = {pvalue:.3g} ({how})"))
    header = ("figure", f"{a.names[0]} (n={len(groups[0])}): mean ± sd [min, max]",
              f"{a.names[1]} (n={len(groups[1])})", "Mann-Whitney U, two-sided")
    if a.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        for r in (header, *rows):
            print("  ".join(r))


if __name__ == "__main__":
    main()
