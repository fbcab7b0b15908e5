"""Summary metrics of a soup front: hypervolume over a reference point, the LMC barrier along the
merge path, and the size of the Pareto set (objectives maximised)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from affectkit.tasks.vc_soup.method_pareto import pareto_mask


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


def front_summary(points: np.ndarray, ref_point: np.ndarray, extra_ref: np.ndarray | None = None) -> dict[str, Any]:
    """Hypervolume over ``ref_point`` (and ``extra_ref``), Pareto-set size, and for two values the
    barrier of each objective along the grid (the merge path from one policy to the other)."""
    mask = pareto_mask(points)
    out = {"hv_ref_policy": hypervolume(points, ref_point), "n_pareto": int(mask.sum())}
    if extra_ref is not None:
        out["hv_pooled_min"] = hypervolume(points, extra_ref)
    if points.shape[1] == 2:
        bars = [lmc_barrier(points[:, k]) for k in range(points.shape[1])]
        out["barrier_per_value"] = bars
        out["barrier_worst"] = float(max(bars))
    return out
