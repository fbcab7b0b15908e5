"""Ranking metrics for recommendation: full-ranking top-K metrics over all items (HR, Recall, NDCG,
MRR at several K, with per-user masks and several ground-truth items per user), and the official MIND
impression metrics (AUC, MRR, nDCG@5, nDCG@10).

Top-K (spec section 1.7). Every item is ranked for every user that has at least one ground-truth
item; the user's masked items (training interactions, the other held-out split) get the score -inf
and so never enter the top K. For a user with ground truth G and hits h_j (1 if the item at rank j
is in G):

- ``hit@K``    1 if any of the top K is in G (the spec's HR@K, RecBole's ``hit``);
- ``recall@K`` sum_{j<=K} h_j / |G| (RecBole's ``recall``; the spec does not use it);
- ``ndcg@K``   sum_{j<=K} h_j / log2(j+1), divided by the ideal DCG over min(|G|, K) positions;
- ``mrr@K``    1 / (rank of the first hit within the top K), else 0 (RecBole's ``mrr``).

Ties: equal scores rank by item index, lower index first (the order of a stable descending sort),
so results do not depend on the device or on torch.topk's internal order. A ground-truth item that
is also masked can never be hit but still counts in |G|. A user with fewer than K unmasked items
gets fewer than K ranked items (the -inf positions are never hits).

MIND (spec section 2.6, derived from the official ``evaluate.py``). Scores are first turned into
1-based ranks by a stable descending sort (ties keep candidate order), then into the score 1/rank,
as the official scorer reads ranks and so never sees a tie. Per impression: AUC (the share of
(positive, negative) pairs in the right order, equal to sklearn's ``roc_auc_score`` on 1/rank),
MRR = sum_j y_(j)/j / sum_j y_j (every click counts, not only the first), and
nDCG@k = DCG@k / ideal DCG@k with gain 2^y - 1. The result is the unweighted mean over impressions.
An impression with no click or with only clicks has no AUC; the official scorer crashes on it (it
calls ``roc_auc_score``); here it is left out of every metric and counted in ``skipped``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    # user -> items, as a (n_users, n_items) sparse matrix or a mapping of user id to item ids
    Interactions: TypeAlias = sp.spmatrix | sp.sparray | Mapping[int, Any]
    # a (n_users, n_items) score matrix, or a function scoring a batch of user ids (LongTensor) at once
    Scorer: TypeAlias = np.ndarray | torch.Tensor | Callable[[torch.Tensor], Any]

DEFAULT_KS: tuple[int, ...] = (10, 20, 50, 80)


@dataclass(frozen=True)
class RankingMetrics:
    """Per-unit metric values (units are users or impressions) and their means."""

    ids: np.ndarray  # the user ids, or impression positions, that were evaluated
    values: dict[str, np.ndarray] = field(default_factory=dict)  # name -> one value per unit
    skipped: int = 0  # units left out (MIND: impressions with all-0 or all-1 labels)

    def mean(self) -> dict[str, float]:
        if len(self.ids) == 0:
            return {name: float("nan") for name in self.values}
        return {name: float(v.mean()) for name, v in self.values.items()}


# ---------------------------------------------------------------- full-ranking top-K metrics


def _row_getter(x: Interactions | None) -> tuple[Callable[[int], np.ndarray], np.ndarray]:
    """(items of user u, sorted unique; ids of the users with at least one item)."""
    if x is None:
        return (lambda u: np.empty(0, np.int64)), np.empty(0, np.int64)
    if isinstance(x, Mapping):
        rows = {int(u): np.unique(np.asarray(list(v), dtype=np.int64)) for u, v in x.items()}
        empty = np.empty(0, np.int64)
        return (lambda u: rows.get(u, empty)), np.array(
            sorted(u for u, v in rows.items() if len(v)), np.int64
        )
    csr = sp.csr_matrix(x, copy=True)  # sum_duplicates and eliminate_zeros work in place
    csr.sum_duplicates()
    csr.eliminate_zeros()
    indptr, indices = csr.indptr, csr.indices.astype(np.int64)
    return (lambda u: indices[indptr[u] : indptr[u + 1]]), np.flatnonzero(np.diff(indptr))


def _batch_index(get: Callable[[int], np.ndarray], users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row within the batch, item id) of every item of the batch's users."""
    items = [get(int(u)) for u in users]
    rows = np.repeat(np.arange(len(users)), [len(i) for i in items])
    return rows, (np.concatenate(items) if items else np.empty(0, np.int64))


def _topk_indices(s: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best scores per row, ties broken by lower item index."""
    import torch

    extra = k < s.shape[1]  # one more score shows a tie at the boundary of the top k
    vals, idx = torch.topk(s, k + extra, dim=1)
    # torch.topk orders ties arbitrarily: rows with a tie inside the top k, or at its boundary,
    # are redone with a stable sort (rare with real-valued scores).
    tied = (vals[:, 1:] == vals[:, :-1]).any(1)
    idx = idx[:, :k]
    if tied.any():
        idx[tied] = torch.sort(s[tied], dim=1, descending=True, stable=True).indices[:, :k]
    return idx


def topk_metrics(
    scores: Scorer,
    ground_truth: Interactions,
    exclude: Interactions | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    batch_size: int = 2048,
) -> RankingMetrics:
    """Full-ranking hit@K, recall@K, ndcg@K and mrr@K over all items, per user with ground truth.

    ``scores`` is a (n_users, n_items) array or tensor, or a callable that takes a LongTensor of
    user ids and returns their (len(ids), n_items) scores; users are scored ``batch_size`` at a
    time, so memory stays bounded. ``exclude`` holds each user's masked items (set to -inf).
    Metric names are ``hit@10``, ``recall@10``, ``ndcg@10``, ``mrr@10``, ... for each K in ``ks``.
    """
    import torch

    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if callable(scores):
        score_fn = scores
    else:
        matrix = torch.as_tensor(scores)
        score_fn = matrix.__getitem__
    gt_of, users = _row_getter(ground_truth)
    mask_of, _ = _row_getter(exclude)
    ks = sorted(set(int(k) for k in ks))
    out: dict[str, list[np.ndarray]] = {f"{m}@{k}": [] for k in ks for m in ("hit", "recall", "ndcg", "mrr")}

    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        with torch.no_grad():
            s = torch.as_tensor(score_fn(torch.as_tensor(batch))).detach()
        s = s.clone() if s.is_floating_point() else s.float()
        if s.ndim != 2 or s.shape[0] != len(batch):
            raise ValueError(
                f"scores for {len(batch)} users must have shape ({len(batch)}, n_items), got {tuple(s.shape)}"
            )
        if torch.isnan(s).any():
            raise ValueError("scores contain NaN")
        n_items = s.shape[1]
        m_rows, m_cols = _batch_index(mask_of, batch)
        g_rows, g_cols = _batch_index(gt_of, batch)
        if max(m_cols.max(initial=-1), g_cols.max(initial=-1)) >= n_items:
            raise ValueError(f"an item id is >= n_items ({n_items})")
        dev = s.device
        s[torch.as_tensor(m_rows, device=dev), torch.as_tensor(m_cols, device=dev)] = float("-inf")
        is_gt = torch.zeros(s.shape, dtype=torch.bool, device=dev)
        is_gt[torch.as_tensor(g_rows, device=dev), torch.as_tensor(g_cols, device=dev)] = True

        idx = _topk_indices(s, min(ks[-1], n_items))
        hits = (is_gt.gather(1, idx) & (s.gather(1, idx) > float("-inf"))).cpu().numpy()
        n_gt = np.bincount(g_rows, minlength=len(batch))
        discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
        ideal = np.cumsum(discount)
        for k in ks:
            h = hits[:, :k]
            kk = h.shape[1]
            out[f"hit@{k}"].append(h.any(1).astype(np.float64))
            out[f"recall@{k}"].append(h.sum(1) / n_gt)
            out[f"ndcg@{k}"].append((h * discount[:kk]).sum(1) / ideal[np.minimum(n_gt, kk) - 1])
            out[f"mrr@{k}"].append((h / np.arange(1, kk + 1)).max(1, initial=0.0))

    values = {name: np.concatenate(v) if v else np.empty(0) for name, v in out.items()}
    return RankingMetrics(ids=users, values=values)


# ---------------------------------------------------------------- MIND impression metrics


def stable_ranks(scores: Any) -> np.ndarray:
    """1-based ranks, highest score first, ties in candidate order (the ranks of MIND's prediction.txt)."""
    s = np.asarray(scores, dtype=np.float64)
    ranks = np.empty(len(s), np.int64)
    ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
    return ranks


def impression_metrics(
    labels: Sequence[Any], scores: Sequence[Any], ks: Sequence[int] = (5, 10)
) -> RankingMetrics:
    """Official MIND metrics (``auc``, ``mrr``, ``ndcg@5``, ``ndcg@10``) per impression.

    ``labels[i]`` and ``scores[i]`` hold impression i's 0/1 clicks and scores, candidate by candidate.
    To score a prediction.txt, pass 1/rank as the scores. Impressions with all-0 or all-1 labels
    are skipped and counted; ``ids`` gives the positions of the impressions kept.
    """
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} label lists but {len(scores)} score lists")
    lengths = np.array([len(y) for y in labels], np.int64)
    for i, s in enumerate(scores):
        if len(s) != lengths[i]:
            raise ValueError(f"impression {i}: {lengths[i]} labels but {len(s)} scores")
    y = np.concatenate([np.asarray(v, np.float64) for v in labels]) if len(labels) else np.empty(0)
    s = np.concatenate([np.asarray(v, np.float64) for v in scores]) if len(scores) else np.empty(0)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")

    # One stable sort for all impressions: by impression, then score descending, then position.
    n_imp = len(lengths)
    seg = np.repeat(np.arange(n_imp), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if n_imp else np.empty(0, np.int64)
    order = np.lexsort((-s, seg))  # lexsort is stable, so ties keep candidate order
    ys, rank = y[order], np.arange(len(y)) - starts[seg] + 1  # seg is already sorted
    n_pos = np.bincount(seg, weights=y, minlength=n_imp)
    n_neg = lengths - n_pos
    keep = (n_pos > 0) & (n_neg > 0)

    # AUC: each positive is ahead of the negatives that come after it in its impression.
    neg_seen = np.cumsum(1.0 - ys)
    neg_before = neg_seen - np.concatenate([[0.0], neg_seen])[starts][seg]
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.bincount(seg, weights=ys * (n_neg[seg] - neg_before), minlength=n_imp) / (n_pos * n_neg)
        mrr = np.bincount(seg, weights=ys / rank, minlength=n_imp) / n_pos
    values = {"auc": auc[keep], "mrr": mrr[keep]}
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, lengths.max(initial=0) + 2)))])
    for k in ks:
        dcg = np.bincount(seg, weights=(2.0**ys - 1.0) / np.log2(rank + 1) * (rank <= k), minlength=n_imp)
        idcg = ideal[np.minimum(n_pos.astype(np.int64), k)]
        values[f"ndcg@{k}"] = dcg[keep] / idcg[keep]
    return RankingMetrics(ids=np.flatnonzero(keep), values=values, skipped=int(n_imp - keep.sum()))
