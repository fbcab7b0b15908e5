"""Non-learned baselines of news-rec, scored on the same impressions with the same metrics.

- ``popularity``: the click-through rate of a news in the last stage before the impression's
  boundary (clicks / times shown in the training-split impressions of that stage, with one prior
  impression: (c + 0) / (n + 1)), so no click at or after the boundary is used;
- ``recency``: the time a news was first shown in any impression (the publish time is not in
  news.tsv): newer first. The first showing of a candidate is never after the impression itself.

The learned ablations (global only, local only, one local branch, NRMS-style content-only) are
``model.variant`` values of the same network and loop.
"""

from __future__ import annotations

import numpy as np

from affectkit.tasks.news_rec.prepare import Impressions, Prepared


def popularity_scores(prep: Prepared, imps: Impressions) -> np.ndarray:
    pool = [prep.train_imps] + ([prep.valid] if prep.valid is not prep.test else [])
    shown = [p.candidates >= 0 for p in pool]
    stage = np.concatenate([np.repeat(p.k, s.sum(1)) for p, s in zip(pool, shown, strict=True)])
    news = np.concatenate([p.candidates[s] for p, s in zip(pool, shown, strict=True)])
    clicked = np.concatenate([p.labels[s] == 1 for p, s in zip(pool, shown, strict=True)])
    n_news = len(prep.news_ids)
    out = np.zeros(imps.candidates.shape, np.float64)
    for k in np.unique(imps.k):
        in_stage = stage == k - 1
        ctr = np.bincount(news[in_stage], weights=clicked[in_stage], minlength=n_news) / (
            np.bincount(news[in_stage], minlength=n_news) + 1.0)
        rows = imps.k == k
        out[rows] = ctr[imps.candidates[rows].clip(0)]
    return out


def recency_scores(prep: Prepared, imps: Impressions) -> np.ndarray:
    first = np.full(len(prep.news_ids), np.inf)
    for split in (prep.train_imps, prep.valid, prep.test):
        shown = split.candidates >= 0
        np.minimum.at(first, split.candidates[shown], np.repeat(split.time, shown.sum(1)))
    return first[imps.candidates.clip(0)]  # later first showing = newer = higher
