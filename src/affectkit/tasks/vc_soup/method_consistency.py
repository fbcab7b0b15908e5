"""Value consistency of preference pairs (VC-soup, Xu et al., WWW 2026).

For a pair scored by K reward models, the gap vector g has one entry per reward model:
g_k = z_k(chosen) - z_k(rejected), where z_k is a z-score over the *pooled* 2N scores of reward
model k within one value dataset (sample std, ddof=1, denominator std + 1e-12). A cost model
(lower is better) is negated before anything else. The consistency of a pair is
c = cos(g, 1_K) = sum(g) / (||g|| * sqrt(K) + 1e-12), in [-1, 1]; a zero gap vector gives 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

EPS = 1e-12


def zscore_pooled(chosen: np.ndarray, rejected: np.ndarray, ddof: int = 1, eps: float = EPS) -> tuple[np.ndarray, np.ndarray, float, float]:
    """z-score both columns with the mean and std of the pooled 2N scores; returns (zc, zr, mu, sigma)."""
    chosen = np.asarray(chosen, dtype=np.float64)
    rejected = np.asarray(rejected, dtype=np.float64)
    pooled = np.concatenate([chosen, rejected])
    if pooled.size == 0:
        return chosen.copy(), rejected.copy(), float("nan"), float("nan")
    mu = float(pooled.mean())
    sigma = float(pooled.std(ddof=ddof)) if pooled.size > ddof else 0.0
    return (chosen - mu) / (sigma + eps), (rejected - mu) / (sigma + eps), mu, sigma


def value_consistency(gaps: np.ndarray, eps: float = EPS) -> np.ndarray:
    """cos(g, 1) for each row of ``gaps`` (shape N x K)."""
    g = np.asarray(gaps, dtype=np.float64)
    if g.ndim == 1:
        g = g[None, :]
    k = g.shape[1]
    return g.sum(axis=1) / (np.sqrt((g * g).sum(axis=1)) * math.sqrt(k) + eps)


def score_gaps(
    raw_chosen: np.ndarray,
    raw_rejected: np.ndarray,
    cost: Sequence[bool] | None = None,
    ddof: int = 1,
) -> dict[str, Any]:
    """Sign-flip cost models, z-normalise each reward model (pooled), and return gaps and consistency.

    ``raw_chosen`` and ``raw_rejected`` have shape N x K (one column per reward model).
    """
    rc = np.asarray(raw_chosen, dtype=np.float64).copy()
    rr = np.asarray(raw_rejected, dtype=np.float64).copy()
    n, k = rc.shape
    cost = list(cost) if cost is not None else [False] * k
    zc = np.empty_like(rc)
    zr = np.empty_like(rr)
    mus, sigmas = [], []
    for j in range(k):
        sign = -1.0 if cost[j] else 1.0
        zc[:, j], zr[:, j], mu, sigma = zscore_pooled(sign * rc[:, j], sign * rr[:, j], ddof=ddof)
        mus.append(mu)
        sigmas.append(sigma)
    gaps = zc - zr
    return {
        "z_chosen": zc,
        "z_rejected": zr,
        "gaps": gaps,
        "consistency": value_consistency(gaps) if n else np.zeros(0),
        "mu": mus,
        "sigma": sigmas,
    }


def keep_mask(consistency: np.ndarray, threshold: float | None = None, keep_ratio: float | None = None) -> np.ndarray:
    """Which pairs survive: c >= threshold (inclusive), or the top ceil(q*N) by c (ties: input order)."""
    c = np.asarray(consistency, dtype=np.float64)
    if (threshold is None) == (keep_ratio is None):
        raise ValueError("give exactly one of threshold and keep_ratio")
    if threshold is not None:
        return c >= threshold
    if not 0.0 <= keep_ratio <= 1.0:  # type: ignore[operator]
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    n_keep = math.ceil(keep_ratio * c.size - 1e-9)  # type: ignore[operator]
    order = np.lexsort((np.arange(c.size), -c))  # by c descending, then input order
    mask = np.zeros(c.size, dtype=bool)
    mask[order[:n_keep]] = True
    return mask


def consistency_stats(gaps: np.ndarray, consistency: np.ndarray, kept: np.ndarray) -> dict[str, Any]:
    """The reference normaliser's statistics, generalised to K values."""
    c = np.asarray(consistency, dtype=np.float64)
    n = int(c.size)
    if n == 0:
        return {"n": 0, "kept": 0, "ratio": 0.0}
    g = np.asarray(gaps, dtype=np.float64)
    agree = np.all(g > 0, axis=1) | np.all(g < 0, axis=1)
    return {
        "n": n,
        "kept": int(kept.sum()),
        "ratio": float(kept.sum() / n),
        "consistency_mean": float(c.mean()),
        "consistency_median": float(np.median(c)),
        "consistency_std": float(c.std(ddof=1)) if n > 1 else 0.0,
        "share_high": float((c > 0.7).mean()),
        "share_low": float((c < -0.7).mean()),
        "sign_agreement_rate": float(agree.mean()),
    }
