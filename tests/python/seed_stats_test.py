#!/usr/bin/env python3
"""scripts/seed_stats.py's Mann-Whitney U against SciPy's (scipy.stats.mannwhitneyu 1.x, two-sided; the
reference values were computed with it: method="exact" without ties, "asymptotic" with continuity
correction with ties). Standard library only: exits 1 with one line on a difference."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import seed_stats  # noqa: E402

CASES = [  # xs, ys, U, p, how
    ([0.11, 0.52, 0.33, 0.94, 0.25, 0.66, 0.77], [0.58, 0.99, 0.8, 1.01, 0.9], 5.0, 0.047980, "exact"),
    ([0.1, 0.2, 0.2, 0.3, 0.5], [0.2, 0.4, 0.4, 0.6], 5.0, 0.260175, "normal approximation, ties corrected"),
]

for xs, ys, u_want, p_want, how_want in CASES:
    u, p, how = seed_stats.mann_whitney(xs, ys)
    if u != u_want or abs(p - p_want) > 1e-6 or how != how_want:
        sys.exit(f"seed_stats_test: {xs} vs {ys}: U {u}, p {p:.6f} ({how}); SciPy: U {u_want}, p {p_want} ({how_want})")
print("seed_stats_test: Mann-Whitney U and p as SciPy computes them")
