"""The soups' weight grid and the Pareto filter over per-value mean rewards.

All objectives are maximised. A point is dominated when another is >= in every objective and >
in at least one; equal points do not dominate each other (ties are kept).
"""

from __future__ import annotations

import numpy as np

# The 13 weight vectors of the RiC / rewarded-soups evaluation for three values.
GRID_3 = (
    (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.1, 0.1, 0.8), (0.1, 0.8, 0.1), (0.2, 0.2, 0.6), (0.2, 0.4, 0.4),
    (0.2, 0.6, 0.2), (0.33, 0.33, 0.33), (0.4, 0.4, 0.2), (0.4, 0.2, 0.4), (0.6, 0.2, 0.2), (0.8, 0.1, 0.1),
    (1.0, 0.0, 0.0),
)


def weight_grid(k: int, steps: int = 10) -> list[tuple[float, ...]]:
    """K = 2: w1 in {0, 0.1, ..., 1} (11 points, w2 = 1 - w1); K = 3: the 13 standard vectors;
    other K: the simplex lattice with ``steps`` divisions."""
    if k < 1:
        raise ValueError("need at least one value")
    if k == 1:
        return [(1.0,)]
    if k == 2:
        return [(round(i / steps, 10), round(1 - i / steps, 10)) for i in range(steps + 1)]
    if k == 3 and steps == 10:
        return [tuple(w) for w in GRID_3]
    out: list[tuple[float, ...]] = []

    def rec(prefix: list[int], left: int, slots: int) -> None:
        if slots == 1:
            out.append(tuple(x / steps for x in [*prefix, left]))
            return
        for i in range(left + 1):
            rec([*prefix, i], left - i, slots - 1)

    rec([], steps, k)
    return out


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """True for non-dominated rows of ``points`` (N x K, maximisation)."""
    p = np.asarray(points, dtype=np.float64)
    n = p.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        ge = np.all(p >= p[i], axis=1)
        gt = np.any(p > p[i], axis=1)
        if np.any(ge & gt):
            keep[i] = False
    return keep
