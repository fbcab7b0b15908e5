"""Training data for TQD: the meta CSV reader and a map-style clip dataset.

Meta CSV (Open-Sora compatible; written by :mod:`affectkit.tasks.tqd.scoring` and by
:func:`affectkit.tasks.tqd.synth.make`). One header line, then one data row per clip:

* ``path`` (required): the video, relative to the CSV's folder or absolute;
* ``type`` (optional): golden | motion | quality | low, or the spec's letters G | M | V | L
  (case-insensitive; normalised to the names);
* ``flow``, ``vq`` (optional): motion and visual-quality scores (numbers; empty = absent -> NaN);
* ``split`` (optional): train | test | ... (an empty cell, or no column, means ``train``);
* every other column (``text``, ``aes``, ``speed``, ...) is kept as text in :attr:`MetaTable.columns`.

Errors are :class:`DataError` naming the CSV, the 1-based data row (the header is not counted; a quoted
multi-line caption still counts as one row) and the column. Types come from the ``type`` column when it is
filled; when it is absent or entirely empty and ``flow`` / ``vq`` are present, they are assigned with
:func:`affectkit.tasks.tqd.scoring.assign_types` (dataset percentiles over all rows of the CSV, as the scorer
does) and the table says so (:attr:`MetaTable.type_source` = ``"scores"`` and a line in
:attr:`MetaTable.notes`).

:class:`ClipDataset` decodes a row's video with :func:`affectkit.tasks.tqd.synth.load_clip` (OpenCV, uint8
RGB ``[T, H, W, 3]``), fits it to a fixed shape with :func:`fit_clip` and returns a float32 tensor
``[C, T, H, W]`` in [-1, 1] with the type code, the scores and the index. :func:`collate` stacks a batch.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.tqd.method_sampler import TYPE_CODES

__all__ = [
    "CROPS",
    "SCORE_HINT",
    "TYPES",
    "UNTYPED",
    "ClipDataset",
    "MetaTable",
    "collate",
    "fit_clip",
    "normalise_type",
    "read_meta",
]

TYPES = ("golden", "motion", "quality", "low")
UNTYPED = -1
"""Type code of a clip without a type (only possible with ``read_meta(..., need_types=False)``)."""
CROPS = ("start", "center")
SCORE_HINT = ("score the videos first: affectkit data score-videos META.csv --out scored.csv "
              "(affectkit.tasks.tqd.scoring.score_videos), which writes flow, vq and type")
_RESERVED = ("path", "type", "flow", "vq", "split")
_TYPE_NAMES = {**{t: t for t in TYPES}, "g": "golden", "m": "motion", "v": "quality", "l": "low"}


def normalise_type(value: str) -> str | None:
    """``golden``/``motion``/``quality``/``low`` for a type name or letter G/M/V/L (any case, surrounding
    spaces ignored); ``""`` for an empty cell; None when the value is not a type."""
    key = str(value).strip().lower()
    if not key:
        return ""
    return _TYPE_NAMES.get(key)


# ---- the table ----------------------------------------------------------------------------------


@dataclass
class MetaTable:
    """The rows of a meta CSV, validated.

    ``root``: the CSV's folder; ``paths``: absolute video paths; ``types``: normalised names (``""`` when a
    row has none, only with ``need_types=False``); ``flow``, ``vq``: float64 arrays, NaN where absent;
    ``split``: one name per row; ``columns``: every other column as text (``text``, ``aes``, ...);
    ``meta``: the CSV file; ``rows``: each row's 1-based data-row number in that file (kept through
    :meth:`select`, so later errors can name it); ``type_source``: ``"column"``, ``"scores"`` (assigned from
    flow / vq) or ``"none"``; ``notes``: human-readable remarks (how types were obtained)."""

    root: Path
    paths: list[Path]
    types: list[str]
    flow: np.ndarray
    vq: np.ndarray
    split: list[str]
    columns: dict[str, list[str]] = field(default_factory=dict)
    meta: Path | None = None
    rows: list[int] = field(default_factory=list)
    type_source: str = "column"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.paths)
        if not self.rows:
            self.rows = list(range(1, n + 1))
        lengths = {"types": len(self.types), "flow": len(self.flow), "vq": len(self.vq),
                   "split": len(self.split), "rows": len(self.rows),
                   **{f"columns[{k!r}]": len(v) for k, v in self.columns.items()}}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"MetaTable fields must all have {n} entries (one per path), got {bad}")

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, index: int) -> str:
        """``row N of FILE`` for the table's ``index``-th clip (for error messages)."""
        return f"row {self.rows[index]} of {self.meta}" if self.meta is not None else f"item {index}"

    def codes(self) -> np.ndarray:
        """Int64 type codes (golden 0, motion 1, quality 2, low 3 as in ``method_sampler.TYPE_CODES``;
        :data:`UNTYPED` = -1 for rows without a type)."""
        return np.array([TYPE_CODES.get(t, UNTYPED) for t in self.types], dtype=np.int64)

    def type_counts(self) -> dict[str, int]:
        """Number of rows of each type, in the order golden, motion, quality, low (plus ``untyped`` when
        some rows have no type)."""
        counts = {t: 0 for t in TYPES}
        untyped = 0
        for t in self.types:
            if t in counts:
                counts[t] += 1
            else:
                untyped += 1
        if untyped:
            counts["untyped"] = untyped
        return counts

    def take(self, indices: Sequence[int]) -> MetaTable:
        """A new table with the rows at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return replace(
            self,
            paths=[self.paths[i] for i in idx],
            types=[self.types[i] for i in idx],
            flow=self.flow[idx].copy() if idx else self.flow[:0].copy(),
            vq=self.vq[idx].copy() if idx else self.vq[:0].copy(),
            split=[self.split[i] for i in idx],
            columns={k: [v[i] for i in idx] for k, v in self.columns.items()},
            rows=[self.rows[i] for i in idx] if idx else [],
            notes=list(self.notes),
        )

    def select(self, split: str | Iterable[str] | None = None,
               types: str | int | Iterable[str | int] | None = None) -> MetaTable:
        """The rows in ``split`` (a name or several) whose type is in ``types`` (names, letters G/M/V/L
        or codes 0-3); None keeps all. UsageError for a split that no row has or an unknown type."""
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            wanted = {split} if isinstance(split, str) else {str(s) for s in split}
            present = set(self.split)
            missing = sorted(wanted - present)
            if missing:
                raise UsageError(f"no row has split {', '.join(map(repr, missing))}",
                                 f"splits in {self.meta or 'the table'}: {', '.join(sorted(present)) or 'none'}")
            keep &= np.array([s in wanted for s in self.split], dtype=bool)
        if types is not None:
            single = isinstance(types, (str, int, np.integer))
            names = {_type_name(t) for t in ([types] if single else types)}
            keep &= np.array([t in names for t in self.types], dtype=bool)
        return self.take(np.flatnonzero(keep).tolist())


def _type_name(value: str | int) -> str:
    """A type name from a name, letter or code; UsageError otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(TYPES):
            return next(name for name, code in TYPE_CODES.items() if code == int(value))
    elif isinstance(value, str):
        name = normalise_type(value)
        if name:
            return name
    raise UsageError(f"unknown data type {value!r}", "use golden, motion, quality or low (G/M/V/L, or 0-3)")


# ---- reading the CSV ----------------------------------------------------------------------------


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (stripped names) and numbered data rows (cells as text, missing cells as ""; blank lines are
    skipped and not counted); DataError when the file is missing, not a CSV, has no rows or a row has more
    cells than the header."""
    if not path.exists():
        raise DataError(path, "meta CSV not found", "give the meta CSV written by the scorer or the benchmark")
    if not path.is_file():
        raise DataError(path, "expected a meta CSV file, found a directory")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            records = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a readable CSV ({exc})") from None
    if not header or not any(h.strip() for h in header):
        raise DataError(path, "empty file: no header line", "the first line must name the columns (path, ...)")
    names = [h.strip() for h in header]
    if "path" not in names:
        raise DataError(path, f"no 'path' column (columns: {', '.join(n for n in names if n) or 'none'})",
                        "a meta CSV needs a path column: the video, relative to the CSV's folder or absolute")
    rows = []
    number = 0
    for rec in records:
        if not any(cell.strip() for cell in rec):
            continue  # blank line (e.g. a trailing newline): not a data row, not counted
        number += 1
        if len(rec) > len(names):
            raise DataError(path, f"row {number}: {len(rec)} cells but the header has {len(names)} columns",
                            "quote cells that contain commas (e.g. captions)")
        rows.append((number, {n: (rec[i] if i < len(rec) else "") for i, n in enumerate(names) if n}))
    if not rows:
        raise DataError(path, "the meta CSV has no data rows")
    return [n for n in names if n], rows


def _parse_score(text: str) -> tuple[float, str]:
    """``(value, problem)``: NaN and ``"empty"`` for an empty cell, NaN and ``"NaN"`` for nan, the number and
    ``"not finite"`` for inf, NaN and ``"not a number"`` for anything else, else ``(value, "")``."""
    cell = text.strip()
    if not cell:
        return math.nan, "empty"
    try:
        value = float(cell)
    except ValueError:
        return math.nan, "not a number"
    if math.isnan(value):
        return math.nan, "NaN"
    if math.isinf(value):
        return value, "not finite"
    return value, ""


def _scores(meta: Path, rows: list[tuple[int, dict[str, str]]], column: str,
            needed: bool, why: str) -> np.ndarray:
    """The ``column`` scores (NaN where absent); DataError for text that is not a number, and for an
    empty / NaN / infinite cell when ``needed`` (``why`` says what needs it)."""
    out = np.full(len(rows), math.nan)
    for i, (number, row) in enumerate(rows):
        cell = row.get(column, "")
        value, problem = _parse_score(cell)
        if problem == "not a number" or (needed and problem):
            shown = f" ({cell.strip()!r})" if problem in ("not a number", "not finite") else ""
            extra = f"; score_error: {row['score_error'].strip()}" if row.get("score_error", "").strip() else ""
            raise DataError(meta, f"row {number}, column {column!r}: {problem}{shown}"
                            + (f", but a finite score is needed ({why})" if needed else "") + extra,
                            SCORE_HINT if needed and problem in ("empty", "NaN") else None)
        out[i] = value
    return out


def _paths(meta: Path, rows: list[tuple[int, dict[str, str]]]) -> list[Path]:
    """Absolute video paths; DataError for an empty path, a missing video, a directory or a duplicate."""
    root = meta.parent
    seen: dict[Path, int] = {}
    out = []
    for number, row in rows:
        raw = row.get("path", "").strip()
        if not raw:
            raise DataError(meta, f"row {number}, column 'path': empty path")
        p = Path(raw).expanduser()
        full = p if p.is_absolute() else root / p
        if not full.exists():
            raise DataError(meta, f"row {number}, column 'path': video not found: {full}",
                            "paths are relative to the CSV's folder, or absolute")
        if not full.is_file():
            raise DataError(meta, f"row {number}, column 'path': expected a video file, found a directory: {full}")
        key = full.resolve()
        if key in seen:
            raise DataError(meta, f"row {number}, column 'path': duplicate of row {seen[key]} ({raw})",
                            "each video may be listed once")
        seen[key] = number
        out.append(full.absolute())
    return out


def _column_types(meta: Path, rows: list[tuple[int, dict[str, str]]], need_types: bool) -> list[str]:
    """Normalised values of a filled ``type`` column; DataError for an unknown value, or for an empty cell
    among filled ones when ``need_types``."""
    out = []
    for number, row in rows:
        cell = row.get("type", "")
        name = normalise_type(cell)
        if name is None:
            raise DataError(meta, f"row {number}, column 'type': unknown type {cell.strip()!r}",
                            "use golden, motion, quality or low (or the letters G, M, V, L)")
        if not name and need_types:
            extra = f" (score_error: {row['score_error'].strip()})" if row.get("score_error", "").strip() else ""
            raise DataError(meta, f"row {number}, column 'type': empty, while other rows have a type{extra}",
                            "fill it, remove the row, or clear the whole type column to assign types from "
                            "flow and vq")
        out.append(name)
    return out


def read_meta(path: str | Path, need_types: bool = True, motion_pct: float = 70, quality_pct: float = 70,
              low_pct: float = 50, need_scores: bool = False) -> MetaTable:
    """Read and validate an Open-Sora-style meta CSV (see the module doc for the columns).

    Types: from the ``type`` column when any cell is filled (with ``need_types`` every cell must be);
    otherwise, when ``flow`` and ``vq`` have values, assigned by :func:`scoring.assign_types` with
    ``motion_pct`` / ``quality_pct`` / ``low_pct`` (every row then needs both scores); otherwise empty,
    which is a DataError (with a hint to run the scorer) when ``need_types``. ``need_scores``: every row
    must have finite ``flow`` and ``vq`` (for score-driven samplers such as ``tqd-continuous``).
    DataError naming the CSV, the 1-based data row and the column for every problem."""
    meta = Path(path).expanduser()
    names, rows = _read_rows(meta)
    filled = {c: c in names and any(r.get(c, "").strip() for _, r in rows) for c in ("type", "flow", "vq")}

    if filled["type"]:
        source = "column"
    elif filled["flow"] and filled["vq"]:
        source = "scores"
    elif need_types:
        have = [c for c in ("flow", "vq") if filled[c]]
        state = ("no type column" if "type" not in names else "the type column is empty")
        state += f" and only {have[0]} has values" if have else " and no flow / vq scores"
        raise DataError(meta, f"{state}: cannot tell the data types", SCORE_HINT)
    else:
        source = "none"

    why = "to assign types from flow and vq" if source == "scores" else "need_scores=True"
    needed = source == "scores" or need_scores
    flow = _scores(meta, rows, "flow", needed, why)
    vq = _scores(meta, rows, "vq", needed, why)
    paths = _paths(meta, rows)

    notes = []
    if source == "column":
        types = _column_types(meta, rows, need_types)
        notes.append(f"types from the type column of {meta.name}")
    elif source == "scores":
        from affectkit.tasks.tqd.scoring import assign_types

        types = assign_types(flow, vq, motion_pct, quality_pct, low_pct)
        counts = ", ".join(f"{t} {types.count(t)}" for t in TYPES)
        notes.append(f"types assigned from flow and vq with scoring.assign_types (motion >= P{motion_pct:g}, "
                     f"quality >= P{quality_pct:g}, low cut-off P{low_pct:g}, percentiles over all {len(rows)} "
                     f"rows of {meta.name}; the type column is {'empty' if 'type' in names else 'absent'}): "
                     f"{counts}")
    else:
        types = [""] * len(rows)
        notes.append(f"no types in {meta.name} (need_types=False)")

    split = [(r.get("split", "").strip() or "train") for _, r in rows]
    columns = {c: [r.get(c, "") for _, r in rows] for c in names if c not in _RESERVED}
    return MetaTable(root=meta.parent.absolute(), paths=paths, types=types, flow=flow, vq=vq, split=split,
                     columns=columns, meta=meta, rows=[n for n, _ in rows], type_source=source, notes=notes)


# ---- clips --------------------------------------------------------------------------------------


def _resize_frames(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    """Every frame of a uint8 ``[T, H, W, C]`` clip resized to ``height x width`` (area filter when
    shrinking, bilinear when enlarging)."""
    import cv2

    t, h, w, c = clip.shape
    if (h, w) == (height, width):
        return clip
    interp = cv2.INTER_AREA if height * width < h * w else cv2.INTER_LINEAR
    out = np.empty((t, height, width, c), np.uint8)
    for i in range(t):
        out[i] = cv2.resize(clip[i], (width, height), interpolation=interp).reshape(height, width, c)
    return out


def fit_clip(clip: np.ndarray, frames: int, size: int | None = None, crop: str = "start") -> np.ndarray:
    """A uint8 ``[T, H, W, C]`` clip brought to ``[frames, S, S, C]`` (or ``[frames, H, W, C]``).

    Time: a clip with at least ``frames`` frames is cropped to a window of ``frames`` consecutive frames
    starting at frame 0 (``crop="start"``) or centred (``"center"``, start ``(T - frames) // 2``); a
    shorter clip is LOOPED: frame ``i`` is source frame ``i mod T`` (0, 1, .., T-1, 0, 1, ..), which keeps
    the motion speed, unlike stretching. Space (when ``size`` is given): resized so that the short side is
    ``size`` (aspect kept), then centre-cropped to ``size x size``."""
    arr = np.asarray(clip)
    if arr.ndim != 4 or arr.shape[0] < 1 or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 clip [T, H, W, C] with T >= 1, got {arr.dtype} {arr.shape}")
    if crop not in CROPS:
        raise UsageError(f"unknown temporal crop {crop!r}", f"use one of {', '.join(CROPS)}")
    t = arr.shape[0]
    if t >= frames:
        start = 0 if crop == "start" else (t - frames) // 2
        arr = arr[start:start + frames]
    else:
        arr = arr[np.arange(frames) % t]
    if size is not None:
        h, w = arr.shape[1:3]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        arr = _resize_frames(arr, nh, nw)
        top, left = (nh - size) // 2, (nw - size) // 2
        arr = arr[:, top:top + size, left:left + size]
    return np.ascontiguousarray(arr)


def _check_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    """``value`` as a positive int (or None when allowed); UsageError otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise UsageError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


class ClipDataset(torch.utils.data.Dataset):
    """Map-style dataset over a :class:`MetaTable`: item ``i`` is

    ``{"clip": float32 [C, T, H, W] in [-1, 1], "type": int code, "flow": float, "vq": float, "index": i}``

    with ``C = 3`` (RGB), ``T = frames`` and the type code of ``method_sampler.TYPE_CODES`` (golden 0,
    motion 1, quality 2, low 3; :data:`UNTYPED` -1 for an untyped row); ``flow`` / ``vq`` are NaN when
    absent. Clips are decoded with :func:`synth.load_clip` and fitted by :func:`fit_clip` (``frames``,
    ``size``, ``crop``; shorter clips are looped). Every clip must end up with the same shape: without
    ``size`` all videos must share the frame size of the table's first video (probed when the dataset is
    built), and one that does not is a DataError naming it. An unreadable clip (missing, truncated, corrupt)
    is a DataError naming the file and its CSV row: training never skips a clip silently.

    ``cache=True`` keeps each fitted uint8 clip in memory after its first read (``T*S*S*3`` bytes per clip;
    fine for the embedded benchmark, use ``cache=False`` for large sets). With DataLoader workers each
    worker fills its own copy (use ``persistent_workers=True`` to keep it across epochs). ``hits`` and
    ``misses`` count cache look-ups."""

    def __init__(self, table: MetaTable, frames: int = 16, size: int | None = None, cache: bool = True,
                 crop: str = "start"):
        if not isinstance(table, MetaTable):
            raise UsageError(f"ClipDataset needs a MetaTable (from read_meta), got {type(table).__name__}")
        if len(table) == 0:
            raise UsageError("ClipDataset got a table with no rows",
                             "check the split / types given to MetaTable.select")
        if crop not in CROPS:
            raise UsageError(f"unknown temporal crop {crop!r}", f"use one of {', '.join(CROPS)}")
        self.table = table
        self.frames = _check_int("frames", frames)
        self.size = _check_int("size", size, allow_none=True)
        self.crop = crop
        self.cache = bool(cache)
        self._cache: dict[int, np.ndarray] = {}
        self._codes = table.codes()
        self.hits = 0
        self.misses = 0
        h, w = (self.size, self.size) if self.size is not None else self._probe(0)
        self.shape = (3, self.frames, h, w)
        """``(C, T, H, W)`` of every item's clip."""

    def __len__(self) -> int:
        return len(self.table)

    def _probe(self, index: int) -> tuple[int, int]:
        """Frame size ``(H, W)`` of the ``index``-th video, from its first decoded frame."""
        from affectkit.components.video import open_capture

        path = self.table.paths[index]
        try:
            cap = open_capture(path)
        except DataError as exc:
            raise self._error(index, exc) from None
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        if not ok or frame is None:
            raise DataError(path, f"empty or unreadable video: no frame decoded ({self.table.where(index)})")
        return int(frame.shape[0]), int(frame.shape[1])

    def _error(self, index: int, exc: Exception) -> DataError:
        """A DataError naming the ``index``-th video and its CSV row, from a reader's error."""
        path = self.table.paths[index]
        text = exc.message if isinstance(exc, DataError) else f"unreadable video ({exc})"
        text = text.removeprefix(f"{path}: ")
        return DataError(path, f"{text} ({self.table.where(index)})",
                         "re-encode or replace the video, or remove its row: training does not skip clips")

    def _decode(self, index: int) -> np.ndarray:
        """The ``index``-th video decoded and fitted (uint8 ``[T, H, W, 3]``)."""
        from affectkit.tasks.tqd.synth import load_clip

        try:
            raw = load_clip(self.table.paths[index])
        except Exception as exc:  # any reader failure is bad data: named with its file and row
            raise self._error(index, exc) from None
        clip = fit_clip(raw, self.frames, self.size, self.crop)
        if clip.shape[1:3] != self.shape[2:] or clip.shape[3] != self.shape[0]:
            path = self.table.paths[index]
            raise DataError(path, f"frames are {raw.shape[1]}x{raw.shape[2]} (channels {raw.shape[3]}) but the "
                            f"dataset's clips are {self.shape[2]}x{self.shape[3]} (from "
                            f"{self.table.paths[0].name}; {self.table.where(index)})",
                            "pass size=N to resize every clip (short side N, centre crop to N x N)")
        return clip

    def clip_uint8(self, index: int) -> np.ndarray:
        """The fitted uint8 clip ``[T, H, W, 3]`` of item ``index`` (from the cache when present)."""
        if self.cache and index in self._cache:
            self.hits += 1
            return self._cache[index]
        self.misses += 1
        clip = self._decode(index)
        if self.cache:
            clip.setflags(write=False)
            self._cache[index] = clip
        return clip

    def clear_cache(self) -> None:
        """Forget every cached clip."""
        self._cache.clear()

    @property
    def cache_bytes(self) -> int:
        """Memory held by the cache."""
        return sum(c.nbytes for c in self._cache.values())

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, torch.Tensor):
            index = int(index.item())
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"ClipDataset indices are integers, got {type(index).__name__}")
        n = len(self)
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} clips")
        u8 = self.clip_uint8(i)
        clip = torch.from_numpy(u8.copy()).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
        return {"clip": clip.contiguous(), "type": int(self._codes[i]), "flow": float(self.table.flow[i]),
                "vq": float(self.table.vq[i]), "index": i}


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of :class:`ClipDataset` items: ``clip`` float32 ``[B, C, T, H, W]``, ``type`` and
    ``index`` int64 ``[B]``, ``flow`` and ``vq`` float32 ``[B]``; other keys: tensors stacked, numbers as
    tensors, anything else as a list."""
    if not items:
        raise UsageError("collate got an empty batch")
    keys = list(items[0])
    for item in items[1:]:
        if list(item) != keys:
            raise UsageError(f"collate got items with different keys: {keys} and {list(item)}")
    out: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in items]
        if key in ("type", "index"):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif key in ("flow", "vq"):
            out[key] = torch.tensor([float(v) for v in values], dtype=torch.float32)
        elif all(isinstance(v, torch.Tensor) for v in values):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise UsageError(f"collate cannot stack {key!r}: shapes differ {sorted(shapes)}",
                                 "give ClipDataset a size so every clip has the same shape")
            out[key] = torch.stack(values)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif all(isinstance(v, (float, np.floating)) for v in values):
            out[key] = torch.tensor([float(v) for v in values], dtype=torch.float32)
        else:
            out[key] = values
    return out
