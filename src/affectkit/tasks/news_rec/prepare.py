"""From MIND folders to what the model and the loop need: one news and user index over both splits,
title tokens, the graphs' edges with their stages, training samples and evaluation impressions.

Time and graphs (no future leakage). Time is cut on a grid of ``stage_hours`` (origin: the unix
epoch, so 1-day stages are UTC days). An impression at time t has the boundary index
k = floor(t / width); it sees

- the **global** graph of snapshot k: every user's undated history (the History column of the
  user's first training impression: MIND's pre-period clicks) plus every training click whose
  stage is < k, i.e. that happened before the boundary;
- the **stages** k - T .. k - 1 (``stages.py``): the dated training clicks of each stage.

So no click at or after an impression's boundary reaches it, including its own clicks. Training
samples are (impression, clicked news) of the training split before its last ``valid_hours`` (rounded
up to a stage boundary); the impressions of those last hours are the validation set, and the ``eval_dir`` split is the test set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, require_dir
from affectkit.tasks.news_rec.data import Behaviors, NewsTable, merge_news, read_behaviors, read_news

PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9æøåäöüéèáàß']+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class Impressions:
    """Impressions to score: user, boundary index, candidates (padded -1), labels (padded -1)."""

    user: np.ndarray  # (n,)
    k: np.ndarray  # (n,) boundary index
    time: np.ndarray  # (n,)
    candidates: np.ndarray  # (n, C)
    labels: np.ndarray  # (n, C) 0/1, -1 for padding (0 everywhere for an unlabeled split)
    history: np.ndarray  # (n, his_size) news, -1 padded (most recent last)
    impression_ids: np.ndarray  # (n,) str
    labeled: bool = True

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class Prepared:
    n_users: int
    news_ids: np.ndarray
    tokens: np.ndarray  # (N, title_size) word ids (0 pad)
    category: np.ndarray  # (N,)
    seen: np.ndarray  # (N,) bool: the news occurs in the training clicks or histories
    base_edges: np.ndarray  # (E0, 2) user, news: undated histories
    click_edges: np.ndarray  # (E, 2) user, news: dated training clicks
    click_stage: np.ndarray  # (E,) stage index of each click
    samples: np.ndarray  # (S, 3) impression row of train_imps, clicked news, position of the click
    train_imps: Impressions  # the training impressions (for negatives)
    valid: Impressions
    test: Impressions
    width: float  # stage width in seconds
    vocab: int
    n_categories: int
    info: dict[str, Any] = field(default_factory=dict)
    extra: Impressions | None = None  # a further split to predict (indexed after the training ones)


def _pad_rows(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), max(width, 1)), -1, np.int64)
    for r, a in enumerate(rows):
        a = a[-width:] if width else a[:0]
        out[r, : len(a)] = a
    return out


def _impressions(b: Behaviors, rows: np.ndarray, user_map: np.ndarray, width: float, his_size: int,
                 cand_width: int | None = None) -> Impressions:
    cands = [b.candidates_of(i) for i in rows]
    labels = [b.labels_of(i) if b.labeled else np.zeros(len(c), np.int64) for i, c in zip(rows, cands, strict=True)]
    c_w = cand_width or max([len(c) for c in cands] + [1])
    return Impressions(user_map[b.user[rows]], np.floor(b.time[rows] / width).astype(np.int64), b.time[rows],
                       _pad_rows(cands, c_w), _pad_rows([np.asarray(y, np.int64) for y in labels], c_w),
                       _pad_rows([b.history_of(i) for i in rows], his_size), b.impression_ids[rows], b.labeled)


def _need_times(b: Behaviors, path: Path | None) -> None:
    if np.isnan(b.time).any():
        raise DataError(path, f"{int(np.isnan(b.time).sum())} impressions have the time 'null': the global snapshots "
                        "and the stages need real timestamps",
                        hint="convert Adressa with `keep_time` (the default), not the GLORY-style mode")


def read_split(folder: Path) -> tuple[NewsTable, Path]:
    folder = require_dir(folder, "MIND split folder")
    if not (folder / "news.tsv").is_file():
        raise DataError(folder / "news.tsv", "not found: news-rec needs the news titles of every split")
    return read_news(folder / "news.tsv"), folder / "behaviors.tsv"


def prepare(cfg: Any, data_dir: Path, extra: Path | None = None) -> Prepared:
    """Users and news are indexed training split first, then the eval split, then ``extra``: a
    model trained without ``extra`` keeps its rows, and ``extra``'s new users and news come after."""
    data_dir = Path(data_dir)
    train_news, train_path = read_split(data_dir / cfg.data.train_dir)
    eval_news, eval_path = read_split(data_dir / cfg.data.eval_dir)
    valid_news, valid_path = read_split(data_dir / cfg.data.valid_dir) if cfg.data.valid_dir else (None, None)
    extra_news, extra_path = read_split(extra) if extra is not None else (None, None)
    news = merge_news(*(t for t in (train_news, eval_news, valid_news, extra_news) if t is not None))
    train = read_behaviors(train_path, news)
    test = read_behaviors(eval_path, news)
    held = read_behaviors(valid_path, news) if valid_path is not None else None
    more = read_behaviors(extra_path, news) if extra_path is not None else None
    if not train.labeled:
        raise DataError(train_path, "the training split has no labels (bare news ids)")
    _need_times(train, train_path)
    _need_times(test, eval_path)
    if more is not None:
        _need_times(more, extra_path)

    if held is not None:
        _need_times(held, valid_path)
    users = {u: k for k, u in enumerate(dict.fromkeys([*train.user_ids.tolist(), *test.user_ids.tolist(),
                                                        *(held.user_ids.tolist() if held is not None else []),
                                                        *(more.user_ids.tolist() if more is not None else [])]))}
    train_users = np.array([users[u] for u in train.user_ids.tolist()], np.int64)
    test_users = np.array([users[u] for u in test.user_ids.tolist()], np.int64)
    width = cfg.model.stage_hours * 3600.0
    his = cfg.data.his_size

    # the training period: the last valid_hours are validation
    carve = held is None and cfg.data.valid_hours > 0
    # validation starts at a stage boundary, so it holds whole stages (day 12 for 1-day stages)
    cutoff = np.ceil((float(np.nanmax(train.time)) - cfg.data.valid_hours * 3600.0) / width) * width if carve else np.inf
    in_train = train.time < cutoff if carve else np.ones(train.n_impressions, bool)
    rows_train, rows_valid = np.flatnonzero(in_train), np.flatnonzero(~in_train)
    if len(rows_train) == 0:
        raise DataError(train_path, f"no training impressions before the last {cfg.data.valid_hours} hours",
                        hint="lower data.valid_hours")

    # graphs: undated histories of each user's first impression, dated clicks of the training split
    first = {}
    for i in np.argsort(train.time, kind="stable").tolist():
        first.setdefault(int(train.user[i]), i)
    base = [(train_users[u], n) for u, i in first.items() for n in train.history_of(i).tolist()]
    imp, clicked = train.clicks()
    clicks = np.stack([train_users[train.user[imp]], clicked], 1) if len(imp) else np.zeros((0, 2), np.int64)
    seen = np.zeros(len(news), bool)
    seen[clicked] = True
    seen[train.hist_news] = True

    # samples: one per click of a training impression
    train_imps = _impressions(train, rows_train, train_users, width, his)
    pos = np.argwhere(train_imps.labels == 1)
    pos = pos[(train_imps.labels[pos[:, 0]] == 0).any(1)]  # an impression with no unclicked candidate has no negative
    samples = np.stack([pos[:, 0], train_imps.candidates[pos[:, 0], pos[:, 1]], pos[:, 1]], 1)

    # title tokens and categories (vocabularies from the training news)
    words: dict[str, int] = {}
    for title in train_news.title.tolist():
        for w in tokenize(title):
            words.setdefault(w, len(words) + 2)
    tokens = np.zeros((len(news), cfg.data.title_size), np.int64)
    for r, title in enumerate(news.title.tolist()):
        ids = [words.get(w, UNK) for w in tokenize(title)][: cfg.data.title_size]
        tokens[r, : len(ids)] = ids
    tokens = tokens[:, : max(1, int((tokens > 0).sum(1).max(initial=1)))]  # no column that is padding everywhere
    cats = {c: k + 1 for k, c in enumerate(dict.fromkeys(train_news.category.tolist()))}
    category = np.array([cats.get(c, 0) for c in news.category.tolist()], np.int64)

    test_imps = _impressions(test, np.arange(test.n_impressions), test_users, width, his)
    if held is not None:
        valid_imps = _impressions(held, np.arange(held.n_impressions),
                                  np.array([users[u] for u in held.user_ids.tolist()], np.int64), width, his)
    else:
        valid_imps = _impressions(train, rows_valid, train_users, width, his) if len(rows_valid) else test_imps
    info = {"users": len(users), "news": len(news), "train_impressions": len(rows_train),
            "valid_impressions": len(valid_imps), "test_impressions": test.n_impressions,
            "samples": len(samples), "vocab": len(words) + 2, "valid_is_test": valid_imps is test_imps}
    return Prepared(len(users), news.ids, tokens, category, seen, np.array(base, np.int64).reshape(-1, 2),
                    clicks.astype(np.int64), np.floor(train.time[imp] / width).astype(np.int64), samples,
                    train_imps, valid_imps, test_imps, width, len(words) + 2, len(cats) + 1, info,
                    _impressions(more, np.arange(more.n_impressions),
                                 np.array([users[u] for u in more.user_ids.tolist()], np.int64), width, his)
                    if more is not None else None)
