"""Pareto fronts over per-value mean rewards, hypervolume, weight grids, and the LMC barrier.

All objectives are maximised. A point is dominated when another is >= in every objective and >
in at least one; equal points do not dominate each other (ties are kept).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def hypervolume(points: np.ndarray, ref: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded below by ``ref`` (maximisation), exact.

    2-D: sweep by objective 1 descending; K > 2: slicing along the last objective (fine for the
    tens of points a weight grid gives).
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, len(ref))
    r = np.asarray(ref, dtype=np.float64)
    p = p[np.all(p > r, axis=1)]
    if p.size == 0:
        return 0.0
    p = p[pareto_mask(p)]
    return float(_hv(p - r))


def _hv(p: np.ndarray) -> float:
    """Hypervolume of points (all > 0) against the origin."""
    k = p.shape[1]
    if p.shape[0] == 0:
        return 0.0
    if k == 1:
        return float(p[:, 0].max())
    if k == 2:
        order = np.argsort(-p[:, 0], kind="stable")
        hv, best_y = 0.0, 0.0
        for x, y in p[order]:
            if y > best_y:
                hv += x * (y - best_y)
                best_y = y
        return hv
    levels = np.unique(p[:, -1])
    hv, prev = 0.0, 0.0
    # slab between consecutive levels of the last objective: points with last >= level count
    for level in levels:
        above = p[p[:, -1] >= level]
        hv += (level - prev) * _hv(above[:, :-1])
        prev = level
    return hv


def lmc_barrier(values: Sequence[float], lambdas: Sequence[float] | None = None, higher_is_better: bool = True) -> float:
    """Largest drop below the straight line between the endpoints along an interpolation path.

    For a loss L: max_l [L(l) - ((1-l) L(0) + l L(1))]; for a reward the negated form. ``values`` are
    ordered by lambda from 0 to 1. Returns 0 or more (a path above the line has no barrier).
    """
    v = np.asarray(values, dtype=np.float64)
    lam = np.linspace(0.0, 1.0, v.size) if lambdas is None else np.asarray(lambdas, dtype=np.float64)
    if higher_is_better:
        v = -v
    line = (1 - lam) * v[0] + lam * v[-1]
    return float(max(0.0, np.max(v - line)))
