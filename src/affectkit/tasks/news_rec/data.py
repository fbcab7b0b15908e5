"""Reader, writer and statistics of MIND-format news recommendation data (spec section 2.4).

Files (tab-separated, UTF-8, no header, one record per line; blank lines are skipped):

* ``behaviors.tsv``, 5 columns: impression id | user id | time | history | impressions.
  - time is ``M/D/YYYY h:mm:ss AM/PM`` (e.g. ``11/11/2019 9:05:58 AM``), read as UTC and kept as
    float unix seconds; the word ``null`` (Adressa converted the GLORY way) gives NaN.
  - history: news ids separated by single spaces, oldest first; may be empty.
  - impressions: candidates separated by spaces, each ``NewsID-1`` (clicked) or ``NewsID-0``;
    the unlabeled MIND-large test split has bare ``NewsID`` entries. A file is either labeled
    throughout or unlabeled throughout.
* ``news.tsv``, 8 columns: news id | category | subcategory | title | abstract | url |
  title entities | abstract entities. Abstract, url and the entity columns may be empty; the entity
  columns hold JSON lists (kept as their raw text, parsed on demand by ``NewsTable.entities``).

In memory (``Behaviors``): news and users are 0-based indices into ``news_ids`` / ``user_ids``
(the news index map; it is the news table's order when a news table is given, else the order of
first appearance, a line's candidates before its history). Candidates are one flat array cut by ``cand_offsets`` (impression i owns
``candidates[cand_offsets[i]:cand_offsets[i+1]]``), labels (int8) run parallel to them or are
None for an unlabeled file. Histories are stored once per distinct history (MIND repeats a user's
history on every impression): impression i uses history row ``hist_row[i]`` of the CSR pair
``hist_offsets`` / ``hist_news``.

Round trip: ``write_behaviors(read_behaviors(f))`` reproduces a well-formed file byte for byte
(times that are not in the canonical unpadded form are kept verbatim in ``time_text``). Bad input
raises ``DataError`` with a one-line ``<file>:<line>: <problem>`` message (exit code 2 in the CLI).
A candidate id missing from a given news table is an error; a missing history id is appended to
the index map and counted in ``notes["unknown_history_news"]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, require_dir, require_file
from affectkit.core.runs import atomic_write_text

BEHAVIOR_COLUMNS = ("impression id", "user id", "time", "history", "impressions")
NEWS_COLUMNS = ("news id", "category", "subcategory", "title", "abstract", "url", "title entities",
                "abstract entities")
NULL = "null"
_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)")


def bad_line(path: str | Path, lineno: int, problem: str, hint: str | None = None) -> DataError:
    """The project's bad-input error, reading ``<file>:<line>: <problem>``."""
    return DataError(f"{path}:{lineno}", problem, hint)


# ---------------------------------------------------------------------------------------------
# time


def parse_time(text: str) -> float:
    """``M/D/YYYY h:mm:ss AM/PM`` (UTC) -> unix seconds; ``null`` -> NaN. ValueError when malformed."""
    if text == NULL:
        return float("nan")
    m = _TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"time {text!r} is not 'M/D/YYYY h:mm:ss AM/PM'")
    month, day, year, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not 1 <= hour <= 12:
        raise ValueError(f"time {text!r}: the hour must be 1..12")
    hour = hour % 12 + (12 if m.group(7) == "PM" else 0)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()
    except ValueError as exc:
        raise ValueError(f"time {text!r}: {exc}") from None


def format_time(t: float) -> str:
    """Unix seconds -> MIND's ``M/D/YYYY h:mm:ss AM/PM`` (UTC, rounded to the second); NaN -> ``null``."""
    if np.isnan(t):
        return NULL
    d = datetime.fromtimestamp(round(float(t)), tz=timezone.utc)
    hour12 = d.hour % 12 or 12
    return f"{d.month}/{d.day}/{d.year} {hour12}:{d.minute:02d}:{d.second:02d} {'PM' if d.hour >= 12 else 'AM'}"


def _is_canonical_time(text: str) -> bool:
    """True when ``format_time`` gives ``text`` back (no zero padding of month, day or hour)."""
    if text == NULL:
        return True
    m = _TIME.fullmatch(text)
    return m is not None and not any(m.group(g).startswith("0") for g in (1, 2, 4))


# ---------------------------------------------------------------------------------------------
# news.tsv


@dataclass
class NewsTable:
    """The columns of a news.tsv, one entry per news, in file order (row k is news index k)."""

    ids: np.ndarray  # (n,) str
    category: np.ndarray
    subcategory: np.ndarray
    title: np.ndarray
    abstract: np.ndarray
    url: np.ndarray
    title_entities: np.ndarray  # raw JSON text ("" when absent)
    abstract_entities: np.ndarray
    source: Path | None = None
    _index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def index(self) -> dict[str, int]:
        """news id -> row."""
        if self._index is None:
            self._index = {nid: k for k, nid in enumerate(self.ids.tolist())}
        return self._index

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.ids, self.category, self.subcategory, self.title, self.abstract, self.url,
                self.title_entities, self.abstract_entities)

    def entities(self, row: int, which: str = "title") -> list[dict[str, Any]]:
        """The parsed entity list of one news (``which``: ``title`` or ``abstract``)."""
        text = (self.title_entities if which == "title" else self.abstract_entities)[row]
        return json.loads(text) if text else []

    def select(self, rows: np.ndarray) -> NewsTable:
        """A table holding only ``rows`` (in that order)."""
        rows = np.asarray(rows, np.int64)
        return NewsTable(*(c[rows] for c in self.columns()), source=self.source)


def _object_array(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def news_table(columns: Sequence[Sequence[str]], source: Path | None = None) -> NewsTable:
    """A table from 8 equally long sequences of strings (id, category, ..., abstract entities)."""
    if len(columns) != len(NEWS_COLUMNS):
        raise ValueError(f"expected {len(NEWS_COLUMNS)} columns, got {len(columns)}")
    return NewsTable(*(_object_array(list(c)) for c in columns), source=source)


def _split_line(line: str, n: int, path: Path, lineno: int, names: Sequence[str]) -> list[str]:
    cols = line.split("\t")
    if len(cols) != n:
        raise bad_line(path, lineno, f"expected {n} tab-separated columns ({', '.join(names)}), found {len(cols)}")
    return cols


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the line end) of the non-blank lines."""
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield lineno, text


def read_news(path: str | Path) -> NewsTable:
    """Read a MIND news.tsv."""
    path = require_file(path, "news file")
    cols: list[list[str]] = [[] for _ in NEWS_COLUMNS]
    seen: dict[str, int] = {}
    for lineno, line in _lines(path):
        row = _split_line(line, len(NEWS_COLUMNS), path, lineno, NEWS_COLUMNS)
        nid = row[0]
        if not nid or " " in nid:
            raise bad_line(path, lineno, f"bad news id {nid!r} (empty or containing a space)")
        if nid in seen:
            raise bad_line(path, lineno, f"news id {nid!r} already on line {seen[nid]}")
        seen[nid] = lineno
        for k in (6, 7):
            if row[k] and not (row[k].startswith("[") and row[k].endswith("]")):
                raise bad_line(path, lineno, f"the {NEWS_COLUMNS[k]} column must be empty or a JSON list")
        for c, v in zip(cols, row, strict=True):
            c.append(v)
    table = news_table(cols, source=path)
    table._index = {nid: k for k, nid in enumerate(cols[0])}
    return table


def news_text(news: NewsTable) -> str:
    """The news.tsv text of a table."""
    return "".join("\t".join(row) + "\n" for row in zip(*(c.tolist() for c in news.columns()), strict=True))


def write_news(path: str | Path, news: NewsTable) -> Path:
    """Write a news.tsv (atomically)."""
    path = Path(path)
    atomic_write_text(path, news_text(news))
    return path


def merge_news(*tables: NewsTable) -> NewsTable:
    """The union of news tables (e.g. MIND train and dev), first occurrence of an id wins."""
    cols: list[list[str]] = [[] for _ in NEWS_COLUMNS]
    seen: set[str] = set()
    for t in tables:
        for row in zip(*(c.tolist() for c in t.columns()), strict=True):
            if row[0] not in seen:
                seen.add(row[0])
                for c, v in zip(cols, row, strict=True):
                    c.append(v)
    return news_table(cols)


# ---------------------------------------------------------------------------------------------
# behaviors.tsv


@dataclass
class Behaviors:
    """The impressions of one behaviors.tsv; see the module docstring for the layout."""

    impression_ids: np.ndarray  # (n,) str, as written ("null" for GLORY-style Adressa)
    user_ids: np.ndarray  # (n_users,) str, order of first appearance
    user: np.ndarray  # (n,) int64 index into user_ids
    time: np.ndarray  # (n,) float64 unix seconds (UTC); NaN for "null"
    news_ids: np.ndarray  # (n_news,) str: the news index map
    cand_offsets: np.ndarray  # (n + 1,) int64
    candidates: np.ndarray  # (n_candidates,) int64 news indices
    labels: np.ndarray | None  # (n_candidates,) int8 0/1, or None when unlabeled
    hist_offsets: np.ndarray  # (n_histories + 1,) int64
    hist_news: np.ndarray  # int64 news indices, oldest first within each history
    hist_row: np.ndarray  # (n,) int64: the history of each impression
    time_text: dict[int, str] = field(default_factory=dict)  # impression -> verbatim non-canonical time
    source: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_impressions(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_news(self) -> int:
        return len(self.news_ids)

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    @property
    def sizes(self) -> np.ndarray:
        """Number of candidates of each impression."""
        return np.diff(self.cand_offsets)

    @property
    def impression_of_candidate(self) -> np.ndarray:
        """(n_candidates,) the impression each candidate belongs to."""
        return np.repeat(np.arange(self.n_impressions), self.sizes)

    def news_index(self) -> dict[str, int]:
        return {nid: k for k, nid in enumerate(self.news_ids.tolist())}

    def candidates_of(self, i: int) -> np.ndarray:
        return self.candidates[self.cand_offsets[i] : self.cand_offsets[i + 1]]

    def labels_of(self, i: int) -> np.ndarray | None:
        return None if self.labels is None else self.labels[self.cand_offsets[i] : self.cand_offsets[i + 1]]

    def history_of(self, i: int) -> np.ndarray:
        h = self.hist_row[i]
        return self.hist_news[self.hist_offsets[h] : self.hist_offsets[h + 1]]

    def history_lengths(self) -> np.ndarray:
        """History length of each impression."""
        return np.diff(self.hist_offsets)[self.hist_row]

    def per_impression(self, values: np.ndarray) -> list[np.ndarray]:
        """Cut a per-candidate array into one array per impression (for ``impression_metrics``)."""
        return np.split(np.asarray(values), self.cand_offsets[1:-1])

    def clicks(self) -> tuple[np.ndarray, np.ndarray]:
        """(impression, news index) of every clicked candidate, in file order."""
        if self.labels is None:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        at = np.flatnonzero(self.labels == 1)
        return self.impression_of_candidate[at], self.candidates[at]


class _Interner:
    """String -> dense index, remembering the order of first appearance."""

    def __init__(self, initial: Sequence[str] = ()):
        self.ids: list[str] = list(initial)
        self.index: dict[str, int] = {s: k for k, s in enumerate(self.ids)}

    def get(self, s: str) -> int:
        k = self.index.get(s)
        if k is None:
            k = self.index[s] = len(self.ids)
            self.ids.append(s)
        return k


def _parse_candidates(field_: str, labeled: bool | None, path: Path, lineno: int
                      ) -> tuple[list[str], list[int] | None]:
    """Split the impressions column into news ids and labels (None when unlabeled)."""
    tokens = field_.split(" ")
    if not field_ or "" in tokens:
        raise bad_line(path, lineno, "the impressions column is empty or has a double space")
    ids: list[str] = []
    labels: list[int] = []
    for tok in tokens:
        nid, dash, lab = tok.rpartition("-")
        has_label = bool(dash)
        if labeled is None:
            labeled = has_label
        if has_label != labeled:
            raise bad_line(path, lineno, f"candidate {tok!r}: the file mixes labeled (NewsID-0/1) and bare NewsID entries")
        if not has_label:
            ids.append(tok)
            continue
        if lab not in ("0", "1") or not nid:
            raise bad_line(path, lineno, f"candidate {tok!r}: expected NewsID-0 or NewsID-1")
        ids.append(nid)
        labels.append(1 if lab == "1" else 0)
    return ids, (labels if labeled else None)


class _HistoryStore:
    """Distinct histories as CSR rows, keyed by the raw history column."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.flat: list[int] = []
        self.offsets: list[int] = [0]

    def row(self, text: str, news_map: _Interner, path: Path, lineno: int) -> int:
        r = self.rows.get(text)
        if r is None:
            tokens = text.split(" ") if text else []
            if "" in tokens:
                raise bad_line(path, lineno, "the history column has a double, leading or trailing space")
            self.flat.extend(news_map.get(nid) for nid in tokens)
            r = self.rows[text] = len(self.offsets) - 1
            self.offsets.append(len(self.flat))
        return r


def read_behaviors(path: str | Path, news: NewsTable | None = None) -> Behaviors:
    """Read a MIND behaviors.tsv; with ``news``, candidate ids are checked against it and the news
    index map starts with the table's order."""
    path = require_file(path, "behaviors file")
    news_map = _Interner(news.ids.tolist() if news is not None else ())
    n_table = len(news_map.ids)
    users = _Interner()
    histories = _HistoryStore()
    imp_ids: list[str] = []
    user_col: list[int] = []
    times: list[float] = []
    hist_rows: list[int] = []
    time_text: dict[int, str] = {}
    cand_flat: list[int] = []
    cand_offsets = [0]
    label_flat: list[int] = []
    labeled: bool | None = None

    for lineno, line in _lines(path):
        imp_id, uid, when, history, impressions = _split_line(line, 5, path, lineno, BEHAVIOR_COLUMNS)
        if not imp_id or not uid:
            raise bad_line(path, lineno, "empty impression id or user id")
        try:
            t = parse_time(when)
        except ValueError as exc:
            raise bad_line(path, lineno, str(exc)) from None
        if not _is_canonical_time(when):
            time_text[len(imp_ids)] = when
        ids, labels = _parse_candidates(impressions, labeled, path, lineno)
        labeled = labels is not None
        for nid in ids:
            k = news_map.index.get(nid)
            if k is None:
                if news is not None:
                    where = news.source if news.source is not None else "the news table"
                    raise bad_line(path, lineno, f"candidate news id {nid!r} is not in {where}")
                k = news_map.get(nid)
            cand_flat.append(k)
        if labels is not None:
            label_flat.extend(labels)
        cand_offsets.append(len(cand_flat))
        hist_rows.append(histories.row(history, news_map, path, lineno))
        imp_ids.append(imp_id)
        user_col.append(users.get(uid))
        times.append(t)

    notes: dict[str, Any] = {}
    if news is not None:
        notes["unknown_history_news"] = len(news_map.ids) - n_table
    return Behaviors(
        impression_ids=_object_array(imp_ids), user_ids=_object_array(users.ids),
        user=np.array(user_col, np.int64), time=np.array(times, np.float64),
        news_ids=_object_array(news_map.ids), cand_offsets=np.array(cand_offsets, np.int64),
        candidates=np.array(cand_flat, np.int64),
        labels=np.array(label_flat, np.int8) if labeled else None,
        hist_offsets=np.array(histories.offsets, np.int64), hist_news=np.array(histories.flat, np.int64),
        hist_row=np.array(hist_rows, np.int64), time_text=time_text, source=path, notes=notes)


def behaviors_text(b: Behaviors) -> str:
    """The behaviors.tsv text of ``b``."""
    nid = b.news_ids
    hist = [" ".join(nid[b.hist_news[b.hist_offsets[h] : b.hist_offsets[h + 1]]].tolist())
            for h in range(len(b.hist_offsets) - 1)]
    cand_ids = nid[b.candidates].tolist()
    if b.labels is not None:
        cand_ids = [f"{c}-{y}" for c, y in zip(cand_ids, b.labels.tolist(), strict=True)]
    off = b.cand_offsets.tolist()
    users = b.user_ids[b.user].tolist()
    out = []
    for i in range(b.n_impressions):
        when = b.time_text.get(i) or format_time(b.time[i])
        cands = " ".join(cand_ids[off[i] : off[i + 1]])
        out.append(f"{b.impression_ids[i]}\t{users[i]}\t{when}\t{hist[b.hist_row[i]]}\t{cands}\n")
    return "".join(out)


def write_behaviors(path: str | Path, b: Behaviors) -> Path:
    """Write a behaviors.tsv (atomically)."""
    path = Path(path)
    atomic_write_text(path, behaviors_text(b))
    return path


def make_behaviors(impression_ids: Sequence[str], user_ids: Sequence[str], times: Sequence[float],
                   histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]],
                   labels: Sequence[Sequence[int]] | None, news_ids: Sequence[str] | None = None) -> Behaviors:
    """Build ``Behaviors`` from per-impression Python lists of ids (for converters and generators).
    ``news_ids`` fixes the start of the news index map (e.g. the news table's order)."""
    news_map = _Interner(news_ids or ())
    users = _Interner()
    hist = _HistoryStore()
    hist_rows = [hist.row(" ".join(h), news_map, Path("<memory>"), i + 1) for i, h in enumerate(histories)]
    flat = [news_map.get(n) for c in candidates for n in c]
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in candidates])]).astype(np.int64)
    lab = None
    if labels is not None:
        lab = np.array([y for ys in labels for y in ys], np.int8)
        if len(lab) != len(flat):
            raise ValueError("labels and candidates differ in length")
    return Behaviors(
        impression_ids=_object_array([str(i) for i in impression_ids]),
        user=np.array([users.get(u) for u in user_ids], np.int64), user_ids=_object_array(users.ids),
        time=np.asarray(times, np.float64), news_ids=_object_array(news_map.ids), cand_offsets=offsets,
        candidates=np.array(flat, np.int64), labels=lab, hist_offsets=np.array(hist.offsets, np.int64),
        hist_news=np.array(hist.flat, np.int64), hist_row=np.array(hist_rows, np.int64))


def read_folder(folder: str | Path) -> tuple[NewsTable | None, Behaviors]:
    """A MIND split folder: ``behaviors.tsv`` and, when present, ``news.tsv``."""
    folder = require_dir(folder, "MIND folder")
    news = read_news(folder / "news.tsv") if (folder / "news.tsv").is_file() else None
    return news, read_behaviors(folder / "behaviors.tsv", news)


# ---------------------------------------------------------------------------------------------
# statistics


def _iso(t: float) -> str:
    return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def seen_news(b: Behaviors) -> set[str]:
    """Ids of the news a split exposes as interactions: clicked candidates and history entries."""
    _, clicked = b.clicks()
    return set(b.news_ids[np.unique(np.concatenate([clicked, b.hist_news]))].tolist())


def statistics(b: Behaviors, news: NewsTable | None = None, train: Behaviors | None = None) -> dict[str, Any]:
    """Counts and difficulty indicators of one split. With ``train``, ``cold_share`` is the share of
    this split's candidates (counted per occurrence) whose news never occurs in the training
    clicks or histories, and ``cold_news_share`` the same over distinct candidate news."""
    sizes = b.sizes
    finite = b.time[np.isfinite(b.time)]
    used = np.unique(np.concatenate([b.candidates, b.hist_news]))
    out: dict[str, Any] = {
        "impressions": b.n_impressions, "users": b.n_users,
        "news": len(news) if news is not None else int(len(used)),
        "news_in_behaviors": int(len(used)), "labeled": b.labeled,
        "clicks": int(b.labels.sum()) if b.labels is not None else None,
        "candidates": int(len(b.candidates)),
        "candidates_per_impression": float(sizes.mean()) if len(sizes) else 0.0,
        "candidates_min": int(sizes.min()) if len(sizes) else 0, "candidates_max": int(sizes.max(initial=0)),
        "history_length_mean": float(b.history_lengths().mean()) if b.n_impressions else 0.0,
        "empty_history_share": float((b.history_lengths() == 0).mean()) if b.n_impressions else 0.0,
        "time": None, "categories": None, "subcategories": None, "cold_share": None, "cold_news_share": None,
    }
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        out["time"] = {"first": _iso(lo), "last": _iso(hi), "span_days": (hi - lo) / 86400.0,
                       "null_times": int(b.n_impressions - len(finite))}
    if b.labels is not None:
        clicks = np.bincount(b.impression_of_candidate, weights=b.labels, minlength=b.n_impressions)
        out["impressions_without_click"] = int((clicks == 0).sum())
        out["impressions_all_clicked"] = int((clicks == sizes).sum())
    if news is not None:
        out["categories"] = len(set(news.category.tolist()) - {""})
        out["subcategories"] = len(set(news.subcategory.tolist()) - {""})
    if train is not None:
        known = seen_news(train)
        is_cold_news = np.array([nid not in known for nid in b.news_ids.tolist()], bool)
        cold = is_cold_news[b.candidates]
        out["cold_share"] = float(cold.mean()) if len(cold) else 0.0
        distinct = np.unique(b.candidates)
        out["cold_news_share"] = float(is_cold_news[distinct].mean()) if len(distinct) else 0.0
    return out
