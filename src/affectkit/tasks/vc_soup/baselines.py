"""The baselines VC-soup is compared against: the pairs each value policy trains on instead of the
value-consistent ones. ``unfiltered`` keeps every pair; ``random`` keeps as many pairs as the
consistency filter, chosen at random (so a gain is not just less data); ``denoise`` keeps pairs whose
label agrees with their own value's reward, subsampled to the same size (a single-value noise filter).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BASELINES = ("unfiltered", "random", "denoise")


def _subsample(rows: list[dict[str, Any]], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` of ``rows`` at random, in their input order."""
    idx = np.sort(rng.choice(len(rows), size=n, replace=False))
    return [rows[i] for i in idx]


def unfiltered(scored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return scored


def random_subset(scored: list[dict[str, Any]], n_keep: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    return _subsample(scored, n_keep, rng)


def denoise_only(scored: list[dict[str, Any]], value: str, n_keep: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Pairs whose z-scored gap on their own value is positive, at most ``n_keep`` of them."""
    agree = [r for r in scored if r["gap_z"][value] > 0]
    if len(agree) > n_keep:
        agree = _subsample(agree, n_keep, rng)
    return agree
