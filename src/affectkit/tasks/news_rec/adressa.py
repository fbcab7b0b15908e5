"""Raw Adressa "one_week" events to MIND format (spec section 2.5).

Input: the daily JSON-lines files of the SmartMedia Adressa release (``20170101`` ... ``20170107``),
one event object per line. Used fields: ``userId``, ``time`` (unix seconds), ``id`` (article hash,
only on article pages), ``title``, ``category1`` (``"section|subsection"``), ``url`` /
``canonicalUrl``. Events without ``id`` or ``title`` are skipped, and so are events without
``userId`` or ``time`` (counted in the summary). Every remaining event is one click; repeated
clicks are kept, as the reference conversion does.

Days are the files in name order: the last file is the test day, the one before it the training
day, all earlier files are history days (the usual 7 files give days 1-5 / 6 / 7). One impression
per click of the training or test day: the clicked article (label 1) and ``n_neg`` = 20 negatives
drawn uniformly without replacement from the news the user never clicked in any day (fewer when
fewer exist). Candidates are shuffled, so the clicked article is not always first (the reference
conversion puts it first, which turns "ties keep candidate order" into a free win; pass
``positive_first=True`` to reproduce it). The test impressions are split at random (``seed``,
default 2021) into 80 % ``test`` and 20 % ``valid``.

Two modes:

* ``keep_time=True`` (default, needed for stages): the impression time is the click time (written
  in MIND's time format, UTC), impression ids count from 1 in each split, the history is every
  earlier click of the user (strictly earlier time, in time order, any day), negatives come from
  the news already seen in the data at the click time (no article from the future), and news.tsv
  carries category, subcategory, title and url.
* ``keep_time=False`` (GLORY / Efficient-FedRec style, for comparable numbers): impression id and
  time are ``null``; the history of a training impression is the history days' clicks, that of a
  test impression adds the training day's clicks; negatives come from all news of the week; news.tsv
  has only the id and title columns filled.

Ids: news become ``N1``, ``N2``, ... and users ``U1``, ... in order of first appearance (files in
order); ``news_map.tsv`` (MIND id, Adressa id) and ``user_map.tsv`` keep the originals. Output:
``<out>/{train,valid,test}/{behaviors.tsv,news.tsv}``, the maps, and ``README.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, require_file
from affectkit.core.runs import atomic_write_json, atomic_write_text
from affectkit.tasks.news_rec.data import (
    NewsTable,
    bad_line,
    make_behaviors,
    news_table,
    write_behaviors,
    write_news,
)

SPLITS = ("train", "valid", "test")


@dataclass
class AdressaEvents:
    """Kept click events (parallel lists; ids already mapped to N*/U*) and the news metadata."""

    user: list[int] = field(default_factory=list)
    news: list[int] = field(default_factory=list)
    time: list[int] = field(default_factory=list)
    day: list[int] = field(default_factory=list)  # 0-based file position
    user_raw: list[str] = field(default_factory=list)  # index -> Adressa userId
    news_raw: list[str] = field(default_factory=list)  # index -> Adressa article id
    title: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)  # raw category1 ("a|b" or "")
    url: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {"no_id_or_title": 0, "no_user_or_time": 0})


def _clean(text: Any) -> str:
    """A value safe for one TSV cell (tabs and line breaks become spaces)."""
    return " ".join(str(text).split()) if text is not None else ""


def read_events(files: Sequence[str | Path]) -> AdressaEvents:
    """Read the raw files (in the given order: day 0, 1, ...)."""
    ev = AdressaEvents()
    users: dict[str, int] = {}
    news: dict[str, int] = {}
    for day, f in enumerate(files):
        path = require_file(f, "Adressa file")
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    e = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise bad_line(path, lineno, f"not a JSON object ({exc.msg})") from None
                if not isinstance(e, dict):
                    raise bad_line(path, lineno, "not a JSON object")
                _keep_event(e, day, ev, users, news, path, lineno)
    return ev


def _keep_event(e: dict, day: int, ev: AdressaEvents, users: dict[str, int], news: dict[str, int],
                path: Path, lineno: int) -> None:
    nid, title = e.get("id"), _clean(e.get("title"))
    if not nid or not title:
        ev.skipped["no_id_or_title"] += 1
        return
    uid, when = e.get("userId"), e.get("time")
    if not uid or when is None:
        ev.skipped["no_user_or_time"] += 1
        return
    try:
        t = int(when)
    except (TypeError, ValueError):
        raise bad_line(path, lineno, f"'time' must be unix seconds, got {when!r}") from None
    k = news.get(nid)
    if k is None:
        k = news[nid] = len(ev.news_raw)
        ev.news_raw.append(str(nid))
        ev.title.append(title)
        ev.category.append(_clean(e.get("category1")))
        ev.url.append(_clean(e.get("canonicalUrl") or e.get("url")))
    u = users.get(uid)
    if u is None:
        u = users[uid] = len(ev.user_raw)
        ev.user_raw.append(str(uid))
    ev.user.append(u)
    ev.news.append(k)
    ev.time.append(t)
    ev.day.append(day)


def raw_files(path: str | Path) -> list[Path]:
    """The day files of a raw folder (regular files not starting with '.', in name order)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(p, "Adressa folder not found")
    files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    if len(files) < 3:
        raise DataError(p, f"need at least 3 day files (history, train, test), found {len(files)}")
    return files


def _news_table(ev: AdressaEvents, keep_time: bool) -> NewsTable:
    n = len(ev.news_raw)
    ids = [f"N{k + 1}" for k in range(n)]
    empty = [""] * n
    if not keep_time:
        return news_table([ids, empty, empty, ev.title, empty, empty, empty, empty])
    cat = [c.split("|", 1) for c in ev.category]
    return news_table([ids, [c[0] for c in cat], [c[1] if len(c) > 1 else "" for c in cat], ev.title,
                       empty, ev.url, empty, empty])


class _NegativeSampler:
    """Uniform negatives from a pool (all news, or the news seen by a time), excluding a user's clicks."""

    def __init__(self, ev: AdressaEvents, rng: np.random.Generator, n_neg: int, by_time: bool):
        self.rng, self.n_neg = rng, n_neg
        n = len(ev.news_raw)
        first = np.full(n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first, np.asarray(ev.news, np.int64), np.asarray(ev.time, np.int64))
        self.order = np.argsort(first, kind="stable")  # news by first appearance time
        self.first_sorted = first[self.order]
        self.by_time = by_time

    def draw(self, clicked: set[int], t: int) -> list[int]:
        m = int(np.searchsorted(self.first_sorted, t, side="right")) if self.by_time else len(self.order)
        out: list[int] = []
        chosen: set[int] = set()
        tries = 0
        while len(out) < self.n_neg and tries < 8:
            for j in self.rng.integers(0, max(m, 1), size=2 * self.n_neg).tolist():
                k = int(self.order[j]) if m else -1
                if k >= 0 and k not in clicked and k not in chosen:
                    chosen.add(k)
                    out.append(k)
                    if len(out) == self.n_neg:
                        return out
            tries += 1
        rest = [int(k) for k in self.order[:m] if int(k) not in clicked and int(k) not in chosen]
        extra = self.rng.permutation(len(rest))[: self.n_neg - len(out)]
        return out + [rest[j] for j in extra]


def _impressions(ev: AdressaEvents, keep_time: bool, n_neg: int, positive_first: bool,
                 rng: np.random.Generator) -> dict[str, list[tuple]]:
    """Impression rows (user, time, history, candidates, labels) of the train and test days."""
    user = np.asarray(ev.user, np.int64)
    news = np.asarray(ev.news, np.int64)
    time = np.asarray(ev.time, np.int64)
    day = np.asarray(ev.day, np.int64)
    train_day, test_day = int(day.max(initial=0)) - 1, int(day.max(initial=0))
    n_files = train_day + 2
    if n_files < 3:
        raise DataError(None, "need events on at least 3 days (history, train, test)")
    order = np.lexsort((time, user))  # by user, then time (stable: file order breaks ties)
    clicked_by: dict[int, set[int]] = {}
    for u, n in zip(user.tolist(), ev.news, strict=True):  # every click of every day
        clicked_by.setdefault(u, set()).add(n)
    sampler = _NegativeSampler(ev, rng, n_neg, by_time=keep_time)
    rows: dict[str, list[tuple]] = {"train": [], "test": []}
    starts = np.flatnonzero(np.r_[True, user[order][1:] != user[order][:-1]])
    for seg in np.split(order, starts[1:]):
        if not len(seg):
            continue
        u = int(user[seg[0]])
        news_u, time_u, day_u = news[seg], time[seg], day[seg]
        for j in np.flatnonzero(day_u >= train_day).tolist():
            split = "train" if day_u[j] == train_day else "test"
            if keep_time:
                history = news_u[time_u < time_u[j]]
            else:
                history = news_u[day_u < (train_day if split == "train" else test_day)]
            pos = int(news_u[j])
            negs = sampler.draw(clicked_by[u], int(time_u[j]))
            cands = [pos, *negs]
            labels = [1] + [0] * len(negs)
            if not positive_first:
                perm = rng.permutation(len(cands))
                cands, labels = [cands[p] for p in perm], [labels[p] for p in perm]
            rows[split].append((u, int(time_u[j]), history.tolist(), cands, labels))
    return rows


def _split_test(rows: list[tuple], seed: int, valid_share: float) -> tuple[list[tuple], list[tuple]]:
    perm = np.random.default_rng(seed).permutation(len(rows))
    n_valid = int(round(valid_share * len(rows)))
    valid = sorted(perm[:n_valid].tolist())
    test = sorted(perm[n_valid:].tolist())
    return [rows[i] for i in test], [rows[i] for i in valid]


def _write_split(folder: Path, rows: list[tuple], news: NewsTable, keep_time: bool) -> None:
    rows = sorted(rows, key=lambda r: (r[1], r[0])) if keep_time else rows
    ids = [str(i + 1) for i in range(len(rows))] if keep_time else ["null"] * len(rows)
    times = [float(r[1]) if keep_time else float("nan") for r in rows]
    nid = news.ids
    b = make_behaviors(ids, [f"U{r[0] + 1}" for r in rows], times, [nid[r[2]].tolist() for r in rows],
                       [nid[r[3]].tolist() for r in rows], [r[4] for r in rows], news_ids=nid.tolist())
    write_behaviors(folder / "behaviors.tsv", b)
    write_news(folder / "news.tsv", news)


def convert(raw: str | Path | Sequence[str | Path], out: str | Path, keep_time: bool = True, n_neg: int = 20,
            seed: int = 2021, valid_share: float = 0.2, positive_first: bool = False) -> dict[str, Any]:
    """Convert raw Adressa (a folder of day files, or the files in day order) to MIND folders under
    ``out``; returns a summary (counts per split, skipped events, mode)."""
    files = raw_files(raw) if isinstance(raw, str | Path) else [Path(f) for f in raw]
    ev = read_events(files)
    if not ev.time:
        raise DataError(files[0], "no event has an article id and a title")
    rng = np.random.default_rng(seed)
    rows = _impressions(ev, keep_time, n_neg, positive_first, rng)
    test, valid = _split_test(rows["test"], seed, valid_share)
    news = _news_table(ev, keep_time)
    out = Path(out)
    for name, split_rows in (("train", rows["train"]), ("valid", valid), ("test", test)):
        _write_split(out / name, split_rows, news, keep_time)
    atomic_write_text(out / "news_map.tsv", "".join(f"N{k + 1}\t{r}\n" for k, r in enumerate(ev.news_raw)))
    atomic_write_text(out / "user_map.tsv", "".join(f"U{k + 1}\t{r}\n" for k, r in enumerate(ev.user_raw)))
    summary = {
        "mode": "keep_time" if keep_time else "glory", "files": [f.name for f in files], "seed": seed,
        "n_neg": n_neg, "positive_first": positive_first, "news": len(ev.news_raw), "users": len(ev.user_raw),
        "clicks": len(ev.time), "skipped": dict(ev.skipped),
        "impressions": {"train": len(rows["train"]), "valid": len(valid), "test": len(test)},
    }
    atomic_write_json(out / "README.json", {"what": "Adressa one_week converted to MIND format by affectkit", **summary})
    return summary
