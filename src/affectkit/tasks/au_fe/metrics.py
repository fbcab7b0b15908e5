"""AU detection and dynamic FE metrics.

Strict AU F1 (the JAA-Net / ME-GraphAU protocol): frame-level predictions at probability >= 0.5, no
smoothing, F1 = 2TP / (2TP + FP + FN) per AU over all test frames, then the unweighted mean.
Frames where an AU is not coded are left out for that AU. The release's "adaptive" F1 (threshold
and temporal vote searched on the test labels) is available separately and always labelled so.
"""

from __future__ import annotations

import math

import numpy as np


def f1_per_au(prob: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None, threshold: float = 0.5) -> np.ndarray:
    """prob, label: [N, A]; mask: 1 where coded. Returns F1 per AU (nan where the AU never occurs and
    is never predicted)."""
    pred = prob >= threshold
    mask = np.ones_like(label, dtype=bool) if mask is None else mask.astype(bool)
    lab = label.astype(bool)
    tp = ((pred & lab) & mask).sum(0)
    fp = ((pred & ~lab) & mask).sum(0)
    fn = ((~pred & lab) & mask).sum(0)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def auc_per_au(prob: np.ndarray, label: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """ROC-AUC per AU by the rank statistic (ties get average ranks); nan where one class is absent."""
    from scipy.stats import rankdata

    out = np.full(prob.shape[1], np.nan)
    for a in range(prob.shape[1]):
        keep = np.ones(len(prob), bool) if mask is None else mask[:, a].astype(bool)
        p, y = prob[keep, a], label[keep, a].astype(bool)
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(p)
        out[a] = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def war(pred: np.ndarray, label: np.ndarray) -> float:
    """Weighted average recall = overall accuracy."""
    return float((pred == label).mean()) if len(label) else math.nan


def uar(pred: np.ndarray, label: np.ndarray) -> float:
    """Unweighted average recall over classes with support (= sklearn's balanced_accuracy_score)."""
    recalls = [float((pred[label == c] == c).mean()) for c in np.unique(label)]
    return float(np.mean(recalls)) if recalls else math.nan


def temporal_vote(binary: np.ndarray, segments: np.ndarray, half_window: int, votes: int) -> np.ndarray:
    """Majority vote over a (2K+1)-frame window inside each contiguous segment (edge padding)."""
    if half_window == 0:
        return binary
    out = np.zeros_like(binary)
    for seg in np.unique(segments):
        idx = np.flatnonzero(segments == seg)
        x = binary[idx].astype(np.int32)
        padded = np.pad(x, ((half_window, half_window), (0, 0)), mode="edge")
        csum = np.concatenate([np.zeros((1, x.shape[1]), np.int32), np.cumsum(padded, 0)])
        window = csum[2 * half_window + 1 :] - csum[: -(2 * half_window + 1)]
        out[idx] = window >= votes
    return out


def adaptive_f1(prob: np.ndarray, label: np.ndarray, segments: np.ndarray, mask: np.ndarray | None = None,
                max_half_window: int = 7, vote_fractions: tuple[float, ...] = (0.5,)) -> dict[str, float]:
    """The release's optimistic protocol: one global threshold (0.01..0.99) and one vote rule chosen to
    maximise mean F1 on the evaluated labels. Report only as "ssm-adaptive", never as F1."""
    best = (-1.0, 0.5, 0, 0.5)
    for k in range(max_half_window + 1):
        for frac in vote_fractions:
            votes = math.ceil(frac * (2 * k + 1))
            for th in np.round(np.arange(0.01, 1.0, 0.01), 2):
                binary = temporal_vote(prob >= th, segments, k, votes)
                score = float(np.nanmean(f1_per_au(binary.astype(float), label, mask, 0.5)))
                if score > best[0]:
                    best = (score, float(th), k, frac)
    return {"ssm_adaptive_f1": best[0], "ssm_adaptive_threshold": best[1], "ssm_adaptive_half_window": best[2]}


def au_fe_metrics(au_prob: np.ndarray | None, au_label: np.ndarray | None, au_mask: np.ndarray | None,
                  fe_pred: np.ndarray | None, fe_label: np.ndarray | None, aus: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    if fe_pred is not None and len(fe_pred):
        out["fe_uar"] = uar(fe_pred, fe_label)
        out["fe_war"] = war(fe_pred, fe_label)
    if au_prob is not None and len(au_prob):
        f1 = f1_per_au(au_prob, au_label, au_mask)
        auc = auc_per_au(au_prob, au_label, au_mask)
        out["au_f1"] = float(np.nanmean(f1)) if np.isfinite(f1).any() else math.nan
        out["au_auc"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else math.nan
        for au, v in zip(aus, f1, strict=True):
            out[f"f1_au{au}"] = float(v)
    return out
