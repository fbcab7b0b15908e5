"""Readers (and writers) of the multi-behavior recommendation formats, into one in-memory type.

Formats:

* the CRGCN/MBLFE folder (MingshiYan/* repositories): ``<behavior>.txt`` with ``<user> <item>``
  per line (whitespace, 1-based integer ids, extra columns ignored), ``validation.txt`` and
  ``test.txt`` (target behavior only), the JSON dicts ``<behavior>_dict.txt``, ``all_dict.txt``,
  ``validation_dict.txt``, ``test_dict.txt`` (``{"<user>": [item, ...]}``) and ``count.txt``
  (``{"user": U, "item": I}``, the largest ids). A file may be given as its ``.txt`` pairs or as
  its ``_dict.txt`` JSON; when both are there they are cross-checked;
* RecBole atomic files: ``<name>.inter`` (or ``<name>.train.inter`` / ``.valid.inter`` /
  ``.test.inter``, as ``benchmark_filename`` reads them), tab-separated with ``name:type``
  headers, the behavior as a ``behavior:token`` column or as one-hot ``<behavior>:float`` columns;
* a CSV ``user,item,behavior[,timestamp]`` (validation and test files: ``user,item`` at least).

Internally users and items are 0-based rows and columns; ``user_ids`` / ``item_ids`` map them back
to the file's ids (for the folder format, index ``k`` is id ``k + 1`` and id 0 is padding).
Behaviors are kept in funnel order, the target last. numpy and scipy only.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from affectkit.core.errors import DataError, require_dir, require_file
from affectkit.core.output import get_output
from affectkit.core.runs import atomic_write_json, atomic_write_text

# funnel orders of the released data sets (target last); used when a reader is not told the order
KNOWN_FUNNELS: tuple[tuple[str, ...], ...] = (
    ("click", "collect", "cart", "buy"),  # Tmall
    ("view", "collect", "cart", "buy"),  # the embedded benchmark
    ("view", "cart", "buy"),  # Taobao, Beibei
    ("tip", "neutral", "neg", "pos"),  # Yelp
    ("neutral", "neg", "pos"),  # ML10M
)
SPLITS = ("validation", "test")
FOLDER_RESERVED = {"validation", "test", "count", "all", "train"}


@dataclass
class MultiBehaviorData:
    """Users, items, one binary user x item CSR matrix per behavior, held-out target pairs."""

    behaviors: tuple[str, ...]  # funnel order; the last one is the target
    user_ids: np.ndarray  # file id of each user row
    item_ids: np.ndarray  # file id of each item column
    train: dict[str, sp.csr_matrix]  # behavior -> (n_users, n_items) binary matrix
    validation: np.ndarray  # (n, 2) int64 rows of (user row, item column), target behavior
    test: np.ndarray  # (n, 2) likewise
    source: Path | None = None
    fmt: str = ""
    id_base: int | None = None  # 1 for the folder format (ids 1..count); None: ids as read
    notes: dict[str, Any] = field(default_factory=dict)  # duplicates dropped, dict mismatches, ...

    @property
    def target(self) -> str:
        return self.behaviors[-1]

    @property
    def auxiliary(self) -> tuple[str, ...]:
        return self.behaviors[:-1]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def pairs(self, behavior: str) -> np.ndarray:
        """(n, 2) rows of (user row, item column) of a behavior, or of ``validation`` / ``test``."""
        if behavior in SPLITS:
            return getattr(self, behavior)
        coo = self.train[behavior].tocoo()
        return np.stack([coo.row, coo.col], axis=1).astype(np.int64)

    def as_dict(self, behavior: str) -> dict[int, np.ndarray]:
        """user row -> sorted item columns, for a behavior or a split."""
        return group_by_user(self.pairs(behavior))

    def raw_pairs(self, behavior: str) -> set[tuple[Any, Any]]:
        """The pairs of a behavior or split in the file's ids (to compare data sets across formats)."""
        p = self.pairs(behavior)
        return set(zip(self.user_ids[p[:, 0]].tolist(), self.item_ids[p[:, 1]].tolist(), strict=True))

    def union(self, behaviors: Iterable[str] | None = None) -> sp.csr_matrix:
        """Binary union of the training matrices of ``behaviors`` (all by default)."""
        mats = [self.train[b] for b in (behaviors if behaviors is not None else self.behaviors)]
        out = sum(mats[1:], mats[0].copy()) if mats else sp.csr_matrix((self.n_users, self.n_items))
        out.data[:] = 1
        return out.astype(np.float32).tocsr()


# ---------------------------------------------------------------------------------------------
# shared helpers


def group_by_user(p: np.ndarray) -> dict[int, np.ndarray]:
    """(n, 2) pairs -> {user: sorted items}."""
    if len(p) == 0:
        return {}
    p = p[np.lexsort((p[:, 1], p[:, 0]))]
    users, starts = np.unique(p[:, 0], return_index=True)
    return {int(u): items for u, items in zip(users, np.split(p[:, 1], starts[1:]), strict=True)}


def _matrix(pairs: np.ndarray, shape: tuple[int, int]) -> tuple[sp.csr_matrix, int]:
    """Binary CSR of ``pairs`` and the number of duplicate pairs dropped."""
    m = sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=shape)
    m.sum_duplicates()
    dups = len(pairs) - m.nnz
    m.data[:] = 1
    return m, int(dups)


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    return np.unique(pairs.reshape(-1, 2), axis=0).astype(np.int64) if len(pairs) else np.zeros((0, 2), np.int64)


def _order(behaviors: Sequence[str] | None, found: dict[str, int], target: str | None, path: Path) -> tuple[str, ...]:
    """The funnel order: as given; else a known funnel with exactly these names; else by falling
    count (the funnel narrows toward the target). ``target``, when given, is moved last."""
    names = set(found)
    if behaviors is not None:
        missing = [b for b in behaviors if b not in names]
        if missing:
            raise DataError(path, f"no interactions of behavior {missing[0]!r} (found: {', '.join(sorted(names)) or 'none'})")
        order = tuple(behaviors)
    else:
        known = [f for f in KNOWN_FUNNELS if set(f) == names]
        order = known[0] if known else tuple(sorted(names, key=lambda b: (-found[b], b)))
        if not known and len(order) > 1:
            get_output().info(f"{path}: behavior order inferred from counts: {' -> '.join(order)}")
    if target is not None:
        if target not in order:
            raise DataError(path, f"target behavior {target!r} not found (found: {', '.join(order)})")
        order = tuple(b for b in order if b != target) + (target,)
    if not order:
        raise DataError(path, "no behavior found")
    return order


def _int_id(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def _id_map(tokens: Iterable[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Sorted unique ids (as ints when every token is an integer) and token -> index."""
    uniq = set(tokens)
    ints = {t: _int_id(t) for t in uniq}
    if all(v is not None for v in ints.values()):
        ordered = sorted(uniq, key=lambda t: ints[t])
        ids = np.array([ints[t] for t in ordered], dtype=np.int64)
    else:
        ordered = sorted(uniq)
        ids = np.array(ordered, dtype=object)
    return ids, {t: k for k, t in enumerate(ordered)}


def _from_tokens(rows: dict[str, list[tuple[str, str]]], validation: list[tuple[str, str]], test: list[tuple[str, str]],
                 behaviors: Sequence[str] | None, target: str | None, path: Path, fmt: str) -> MultiBehaviorData:
    """A data set from (user token, item token) rows per behavior and per split."""
    found = {b: len(r) for b, r in rows.items() if r}
    order = _order(behaviors, found, target, path)
    if not rows.get(order[-1]):
        raise DataError(path, f"no interactions of the target behavior {order[-1]!r}")
    all_rows = [r for b in order for r in rows[b]] + validation + test
    user_ids, umap = _id_map(u for u, _ in all_rows)
    item_ids, imap = _id_map(i for _, i in all_rows)
    shape = (len(user_ids), len(item_ids))

    def index(pairs: list[tuple[str, str]]) -> np.ndarray:
        return np.array([(umap[u], imap[i]) for u, i in pairs], dtype=np.int64).reshape(-1, 2)

    train, dups = {}, {}
    for b in order:
        train[b], dups[b] = _matrix(index(rows[b]), shape)
    return MultiBehaviorData(order, user_ids, item_ids, train, _unique_pairs(index(validation)),
                             _unique_pairs(index(test)), path, fmt, None, {"duplicates": dups})


# ---------------------------------------------------------------------------------------------
# the CRGCN/MBLFE folder


def _read_pairs_txt(path: Path) -> np.ndarray:
    """``<user> <item>`` per line (more columns ignored, blank lines skipped) as an (n, 2) array."""
    out: list[tuple[int, int]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(path, f"line {lineno}: expected '<user> <item>', got {line.strip()!r}")
            try:
                out.append((int(parts[0]), int(parts[1])))
            except ValueError:
                raise DataError(path, f"line {lineno}: ids must be integers, got {' '.join(parts[:2])!r}") from None
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _line_of(text: str, needle: str) -> int:
    at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _read_json(path: Path) -> tuple[Any, str]:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _read_dict_json(path: Path) -> np.ndarray:
    """``{"<user>": [item, ...]}`` as an (n, 2) array; keys must be integer strings."""
    obj, text = _read_json(path)
    if not isinstance(obj, dict):
        raise DataError(path, 'line 1: expected a JSON object {"<user>": [item, ...]}')
    out: list[tuple[int, int]] = []
    for key, items in obj.items():
        user = _int_id(key)
        if user is None:
            raise DataError(path, f"line {_line_of(text, json.dumps(key))}: key {key!r} is not an integer user id")
        if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise DataError(path, f"line {_line_of(text, json.dumps(key))}: the value of user {key} must be a list of integer item ids")
        out.extend((user, i) for i in items)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _read_count(folder: Path) -> tuple[int, int]:
    path = require_file(folder / "count.txt", "count.txt")
    obj, text = _read_json(path)
    if not isinstance(obj, dict) or not {"user", "item"} <= set(obj):
        raise DataError(path, 'line 1: expected {"user": U, "item": I}')
    for key in ("user", "item"):
        if not isinstance(obj[key], int) or isinstance(obj[key], bool) or obj[key] < 1:
            raise DataError(path, f"line {_line_of(text, json.dumps(key))}: {key!r} must be a positive integer, got {obj[key]!r}")
    return int(obj["user"]), int(obj["item"])


def _check_range(pairs: np.ndarray, n_users: int, n_items: int, path: Path) -> None:
    for col, n, what in ((0, n_users, "user"), (1, n_items, "item")):
        bad = np.flatnonzero((pairs[:, col] < 1) | (pairs[:, col] > n)) if len(pairs) else []
        if len(bad):
            k = int(bad[0])
            where = _locate(path, pairs[k]) if path.name.endswith("_dict.txt") else f"line {_pair_line(path, k)}"
            raise DataError(path, f"{where}: {what} id {int(pairs[k, col])} is outside 1..{n} (count.txt)",
                            hint="count.txt holds the largest user and item ids; ids are 1-based (0 is padding)")


def _pair_line(path: Path, k: int) -> int:
    """The line number of the k-th non-blank line of a pairs file."""
    with open(path, encoding="utf-8") as fh:
        seen = -1
        for lineno, line in enumerate(fh, 1):
            if line.split():
                seen += 1
                if seen == k:
                    return lineno
    return 1


def _locate(path: Path, pair: np.ndarray) -> str:
    return f"line {_line_of(path.read_text(encoding='utf-8'), json.dumps(str(int(pair[0]))))}"


def _read_folder_part(folder: Path, name: str, n_users: int, n_items: int, notes: dict) -> np.ndarray | None:
    """``<name>.txt`` pairs, else ``<name>_dict.txt``; cross-checked when both exist. Ids 1-based."""
    txt, dct = folder / f"{name}.txt", folder / f"{name}_dict.txt"
    pairs = None
    if txt.is_file():
        pairs = _read_pairs_txt(txt)
        _check_range(pairs, n_users, n_items, txt)
    if dct.is_file():
        from_dict = _read_dict_json(dct)
        _check_range(from_dict, n_users, n_items, dct)
        if pairs is None:
            pairs = from_dict
        else:
            a = {tuple(p) for p in _unique_pairs(pairs).tolist()}
            b = {tuple(p) for p in _unique_pairs(from_dict).tolist()}
            if a != b:
                notes.setdefault("dict_mismatch", {})[name] = len(a ^ b)
    return pairs


def read_folder(folder: str | Path, behaviors: Sequence[str] | None = None, target: str | None = None,
                warn: bool = True) -> MultiBehaviorData:
    """Read a CRGCN/MBLFE data folder. ``behaviors`` (funnel order, target last) defaults to a known
    funnel matching the files, else falling interaction count."""
    folder = require_dir(folder, "data folder")
    n_users, n_items = _read_count(folder)
    if behaviors is None:
        names = {re.sub(r"(_dict)?\.txt$", "", p.name) for p in folder.glob("*.txt")}
        names -= FOLDER_RESERVED
        candidates = sorted(names)
    else:
        candidates = list(behaviors)
    if target is not None and target not in candidates:
        candidates.append(target)
    notes: dict[str, Any] = {"duplicates": {}}
    raw: dict[str, np.ndarray] = {}
    for b in candidates:
        pairs = _read_folder_part(folder, b, n_users, n_items, notes)
        if pairs is None:
            raise DataError(folder / f"{b}.txt", "behavior file not found (nor its _dict.txt)")
        raw[b] = pairs
    order = _order(behaviors, {b: len(p) for b, p in raw.items()}, target, folder)
    if len(raw[order[-1]]) == 0:
        path = folder / f"{order[-1]}.txt"
        raise DataError(path if path.is_file() else folder / f"{order[-1]}_dict.txt",
                        f"the target behavior {order[-1]!r} has no interactions (empty file)")
    splits = {}
    for name in SPLITS:
        pairs = _read_folder_part(folder, name, n_users, n_items, notes)
        if pairs is None:
            raise DataError(folder / f"{name}.txt", f"{name} file not found (nor {name}_dict.txt)")
        splits[name] = _unique_pairs(pairs - 1)
    all_dict = folder / "all_dict.txt"
    if all_dict.is_file():  # checked for shape and range; the union is recomputed from the behaviors
        _check_range(_read_dict_json(all_dict), n_users, n_items, all_dict)
    shape = (n_users, n_items)
    train = {}
    for b in order:
        train[b], notes["duplicates"][b] = _matrix(raw[b] - 1, shape)
    ds = MultiBehaviorData(order, np.arange(1, n_users + 1), np.arange(1, n_items + 1), train,
                           splits["validation"], splits["test"], folder, "crgcn", 1, notes)
    if warn:
        warn_issues(ds)
    return ds


def write_folder(ds: MultiBehaviorData, folder: str | Path) -> Path:
    """Write ``ds`` in the CRGCN/MBLFE folder format (ids ``row + 1``; ``count.txt`` = U, I)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def pairs_text(p: np.ndarray) -> str:
        p = p[np.lexsort((p[:, 1], p[:, 0]))] + 1
        return "".join(f"{u} {i}\n" for u, i in p.tolist())

    def dict_json(d: dict[int, np.ndarray]) -> str:
        return json.dumps({str(u + 1): (items + 1).tolist() for u, items in sorted(d.items())}) + "\n"

    for b in ds.behaviors:
        atomic_write_text(folder / f"{b}.txt", pairs_text(ds.pairs(b)))
        atomic_write_text(folder / f"{b}_dict.txt", dict_json(ds.as_dict(b)))
    for name in SPLITS:
        atomic_write_text(folder / f"{name}.txt", pairs_text(ds.pairs(name)))
        atomic_write_text(folder / f"{name}_dict.txt", dict_json(ds.as_dict(name)))
    union = ds.union().tocoo()
    atomic_write_text(folder / "all_dict.txt", dict_json(group_by_user(np.stack([union.row, union.col], 1).astype(np.int64))))
    atomic_write_json(folder / "count.txt", {"user": ds.n_users, "item": ds.n_items})
    return folder


# ---------------------------------------------------------------------------------------------
# RecBole atomic files


def atomic_records(fh: Iterable[str], n_fields: int, path: Path) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of the data lines of a RecBole atomic file after its header: blank
    lines skipped, a line whose field count is not the header's is a DataError."""
    for lineno, line in enumerate(fh, 2):
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != n_fields:
            raise DataError(path, f"line {lineno}: {len(parts)} tab-separated fields, the header has {n_fields}")
        yield lineno, parts


def _atomic_rows(path: Path, target: str | None, behaviors: Sequence[str] | None) -> dict[str, list[tuple[str, str]]]:
    """Rows of one ``.inter`` file, grouped by behavior (``behavior:token`` or one-hot ``:float``)."""
    require_file(path, ".inter file")
    with open(path, encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        fields = {}
        for col, h in enumerate(header):
            name, _, typ = h.partition(":")
            if typ not in {"token", "token_seq", "float", "float_seq"}:
                raise DataError(path, f"line 1: header field {h!r} is not 'name:type' with type token, token_seq, float or float_seq")
            fields[name] = (col, typ)
        for need in ("user_id", "item_id"):
            if need not in fields:
                raise DataError(path, f"line 1: no {need}:token column (header: {' '.join(header)})")
        ucol, icol = fields["user_id"][0], fields["item_id"][0]
        bcol = fields["behavior"][0] if "behavior" in fields else None
        onehot: list[tuple[str, int]] = []
        if bcol is None:
            names = behaviors if behaviors is not None else [n for n, (_, t) in fields.items()
                                                            if t == "float" and n not in {"timestamp", "rating", "label"}]
            for n in names:
                if n not in fields:
                    raise DataError(path, f"line 1: no behavior column {n!r} (header: {' '.join(header)})")
                onehot.append((n, fields[n][0]))
        rows: dict[str, list[tuple[str, str]]] = {n: [] for n, _ in onehot}
        for lineno, parts in atomic_records(fh, len(header), path):
            pair = (parts[ucol], parts[icol])
            if not pair[0] or not pair[1]:
                raise DataError(path, f"line {lineno}: empty user or item id")
            if bcol is not None:
                rows.setdefault(parts[bcol], []).append(pair)
                continue
            if not onehot:  # a split file without behavior columns: target rows
                rows.setdefault(target or "", []).append(pair)
            for n, col in onehot:
                try:
                    v = float(parts[col])
                except ValueError:
                    raise DataError(path, f"line {lineno}: {n} must be a number, got {parts[col]!r}") from None
                if v not in (0.0, 1.0):
                    raise DataError(path, f"line {lineno}: one-hot column {n} must be 0 or 1, got {parts[col]!r}")
                if v == 1.0:
                    rows[n].append(pair)
    return rows


def read_atomic(path: str | Path, behaviors: Sequence[str] | None = None, target: str | None = None,
                warn: bool = True) -> MultiBehaviorData:
    """Read RecBole atomic files: ``path`` is an ``.inter`` file, or a folder with ``<name>.inter`` or
    ``<name>.train.inter`` plus ``.valid.inter`` / ``.test.inter`` (the validation and test rows
    are the target behavior's; without them both splits are empty)."""
    path = Path(path)
    if path.is_dir():
        trains = sorted(path.glob("*.train.inter"))
        if trains:
            stem = trains[0].name[: -len(".train.inter")]
            files = {s: path / f"{stem}.{s}.inter" for s in ("train", "valid", "test")}
        else:
            inters = sorted(path.glob("*.inter"))
            if not inters:
                raise DataError(path, "no .inter file in the folder")
            files = {"train": inters[0]}
    else:
        files = {"train": require_file(path, ".inter file")}
    rows = _atomic_rows(files["train"], target, behaviors)
    order = _order(behaviors, {b: len(r) for b, r in rows.items() if r}, target, files["train"])
    split_rows = {}
    for split, name in (("valid", "validation"), ("test", "test")):
        if split in files:
            got = _atomic_rows(files[split], order[-1], None)
            split_rows[name] = got.get(order[-1], [])
        else:
            split_rows[name] = []
    ds = _from_tokens(rows, split_rows["validation"], split_rows["test"], order, None, files["train"], "atomic")
    ds.source = path
    if warn:
        warn_issues(ds)
    return ds


def write_atomic(ds: MultiBehaviorData, folder: str | Path, name: str, onehot: bool = False) -> Path:
    """Write ``<name>.train.inter`` / ``.valid.inter`` / ``.test.inter`` with a ``behavior:token``
    column, or one-hot ``<behavior>:float`` columns (one row per user-item pair)."""
    folder = Path(folder)
    uid, iid = ds.user_ids, ds.item_ids
    if onehot:
        head = "user_id:token\titem_id:token\t" + "\t".join(f"{b}:float" for b in ds.behaviors) + "\n"
        mats = [ds.train[b].tocsr() for b in ds.behaviors]
        union = ds.union().tocoo()
        lines = []
        for u, i in sorted(zip(union.row.tolist(), union.col.tolist(), strict=True)):
            flags = "\t".join("1" if m[u, i] else "0" for m in mats)
            lines.append(f"{uid[u]}\t{iid[i]}\t{flags}\n")
        train = head + "".join(lines)
    else:
        head = "user_id:token\titem_id:token\tbehavior:token\n"
        train = head + "".join(f"{uid[u]}\t{iid[i]}\t{b}\n" for b in ds.behaviors for u, i in ds.pairs(b).tolist())
    atomic_write_text(folder / f"{name}.train.inter", train)
    for split, attr in (("valid", "validation"), ("test", "test")):
        text = "user_id:token\titem_id:token\tbehavior:token\n" + "".join(
            f"{uid[u]}\t{iid[i]}\t{ds.target}\n" for u, i in getattr(ds, attr).tolist())
        atomic_write_text(folder / f"{name}.{split}.inter", text)
    return folder


# ---------------------------------------------------------------------------------------------
# plain CSV


def _csv_rows(path: Path, need_behavior: bool) -> list[tuple[str, str, str]]:
    require_file(path, "CSV file")
    allowed = ["user", "item", "behavior", "timestamp"]
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        required = ["user", "item", "behavior"] if need_behavior else ["user", "item"]
        if header[: len(required)] != required or any(h not in allowed for h in header) or len(set(header)) != len(header):
            raise DataError(path, f"line 1: columns must be {','.join(required)}"
                                  f"{'[,timestamp]' if need_behavior else '[,behavior[,timestamp]]'}, got {','.join(header) or 'nothing'}")
        rows = []
        bcol = header.index("behavior") if "behavior" in header else None
        for lineno, parts in enumerate(reader, 2):
            if not any(p.strip() for p in parts):
                continue
            if len(parts) != len(header):
                raise DataError(path, f"line {lineno}: {len(parts)} fields, the header has {len(header)}")
            u, i = parts[0].strip(), parts[1].strip()
            if not u or not i:
                raise DataError(path, f"line {lineno}: empty user or item id")
            rows.append((u, i, parts[bcol].strip() if bcol is not None else ""))
    return rows


def read_csv(path: str | Path, validation: str | Path | None = None, test: str | Path | None = None,
             behaviors: Sequence[str] | None = None, target: str | None = None, warn: bool = True) -> MultiBehaviorData:
    """Read ``user,item,behavior[,timestamp]`` rows; ``validation`` / ``test`` are CSVs of target
    pairs (``user,item[,behavior[,timestamp]]``; rows of other behaviors are dropped). A folder
    holding ``train.csv`` (and ``validation.csv``, ``test.csv``) may be given instead."""
    path = Path(path)
    if path.is_dir():
        validation = validation or (path / "validation.csv" if (path / "validation.csv").is_file() else None)
        test = test or (path / "test.csv" if (path / "test.csv").is_file() else None)
        path = path / "train.csv"
    rows: dict[str, list[tuple[str, str]]] = {}
    for u, i, b in _csv_rows(path, True):
        if not b:
            raise DataError(path, f"empty behavior for user {u}, item {i}")
        rows.setdefault(b, []).append((u, i))
    order = _order(behaviors, {b: len(r) for b, r in rows.items()}, target, path)
    splits = {}
    for name, p in (("validation", validation), ("test", test)):
        splits[name] = [(u, i) for u, i, b in _csv_rows(Path(p), False) if b in ("", order[-1])] if p else []
    ds = _from_tokens(rows, splits["validation"], splits["test"], order, None, path, "csv")
    if warn:
        warn_issues(ds)
    return ds


def write_csv(ds: MultiBehaviorData, folder: str | Path) -> Path:
    """Write ``train.csv`` (user,item,behavior), ``validation.csv`` and ``test.csv`` (user,item)."""
    folder = Path(folder)
    uid, iid = ds.user_ids, ds.item_ids
    atomic_write_text(folder / "train.csv", "user,item,behavior\n" + "".join(
        f"{uid[u]},{iid[i]},{b}\n" for b in ds.behaviors for u, i in ds.pairs(b).tolist()))
    for name in SPLITS:
        atomic_write_text(folder / f"{name}.csv", "user,item\n" + "".join(
            f"{uid[u]},{iid[i]}\n" for u, i in getattr(ds, name).tolist()))
    return folder


def load(path: str | Path, behaviors: Sequence[str] | None = None, target: str | None = None,
         warn: bool = True) -> MultiBehaviorData:
    """Any of the three formats: a folder with ``count.txt`` (CRGCN), ``.inter`` files (RecBole)
    or ``train.csv``; an ``.inter`` or ``.csv`` file."""
    p = Path(path)
    kw = {"behaviors": behaviors, "target": target, "warn": warn}
    if p.is_dir():
        if (p / "count.txt").exists():
            return read_folder(p, **kw)
        if any(p.glob("*.inter")):
            return read_atomic(p, **kw)
        if (p / "train.csv").exists():
            return read_csv(p, **kw)
        raise DataError(p, "not a data folder: no count.txt (CRGCN/MBLFE), .inter files (RecBole) or train.csv",
                        hint="see docs/tasks/mblfe.md for the accepted formats")
    if p.suffix == ".inter":
        return read_atomic(p, **kw)
    if p.suffix == ".csv":
        return read_csv(p, **kw)
    require_file(p, "data file")
    raise DataError(p, "unknown format: expected a folder, an .inter file or a .csv file")


# ---------------------------------------------------------------------------------------------
# statistics and warnings


def _pair_set(p: np.ndarray, n_items: int) -> np.ndarray:
    return np.unique(p[:, 0] * n_items + p[:, 1]) if len(p) else np.zeros(0, np.int64)


def _id_gaps(ids: np.ndarray, used: np.ndarray, base: int | None) -> int:
    """How many integer ids between the first id (``base``, else 1 or the smallest) and the largest
    never occur; 0 for non-integer ids."""
    if ids.dtype == object or not used.any():
        return 0
    seen = ids[used]
    lo = base if base is not None else min(1, int(seen.min()))
    return int(ids.max()) - lo + 1 - len(seen)


def statistics(ds: MultiBehaviorData) -> dict[str, Any]:
    """Counts per behavior and split, density, and the leakage / difficulty indicators."""
    n_u, n_i = ds.n_users, ds.n_items
    per = {}
    for b in ds.behaviors:
        m = ds.train[b]
        per[b] = {"interactions": int(m.nnz), "users": int((m.getnnz(axis=1) > 0).sum()),
                  "items": int((m.getnnz(axis=0) > 0).sum()), "density": m.nnz / max(1, n_u * n_i),
                  "duplicates": int(ds.notes.get("duplicates", {}).get(b, 0))}
    val, test = _pair_set(ds.validation, n_i), _pair_set(ds.test, n_i)
    target = _pair_set(ds.pairs(ds.target), n_i)
    aux_any = _pair_set(np.concatenate([ds.pairs(b) for b in ds.auxiliary] or [np.zeros((0, 2), np.int64)]), n_i)
    used_u = np.zeros(n_u, bool)
    used_i = np.zeros(n_i, bool)
    for p in [ds.pairs(b) for b in ds.behaviors] + [ds.validation, ds.test]:
        used_u[p[:, 0]] = True
        used_i[p[:, 1]] = True

    def share(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.isin(a, b).mean()) if len(a) else 0.0

    return {
        "format": ds.fmt, "users": n_u, "items": n_i, "behaviors": list(ds.behaviors), "target": ds.target,
        "per_behavior": per,
        "validation": {"pairs": len(val), "users": int(len(np.unique(ds.validation[:, 0])))},
        "test": {"pairs": len(test), "users": int(len(np.unique(ds.test[:, 0])))},
        "validation_equals_test": bool(len(test) > 0 and np.array_equal(val, test)),
        "validation_test_overlap": int(np.isin(val, test).sum()),
        "test_in_train_target": int(np.isin(test, target).sum()),
        "validation_in_train_target": int(np.isin(val, target).sum()),
        "test_seen_in_auxiliary": {b: share(test, _pair_set(ds.pairs(b), n_i)) for b in ds.auxiliary},
        "test_seen_in_any_auxiliary": share(test, aux_any),
        "unused_user_ids": _id_gaps(ds.user_ids, used_u, ds.id_base),
        "unused_item_ids": _id_gaps(ds.item_ids, used_i, ds.id_base),
        "dict_mismatch": dict(ds.notes.get("dict_mismatch", {})),
    }


def warn_issues(ds: MultiBehaviorData, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """Warn (with counts) about the known data issues; returns the statistics."""
    s = stats if stats is not None else statistics(ds)
    out = get_output()
    where = ds.source or "data"
    if s["validation_equals_test"]:
        out.warn(f"{where}: validation is identical to test ({s['test']['pairs']} pairs): "
                 "model selection on validation reads the test set")
    elif s["validation_test_overlap"]:
        out.warn(f"{where}: {s['validation_test_overlap']} of {s['test']['pairs']} test pairs are also validation pairs")
    if s["test_in_train_target"]:
        out.warn(f"{where}: {s['test_in_train_target']} of {s['test']['pairs']} test pairs are in the training "
                 f"{ds.target!r} file (leak; they are masked in full ranking)")
    if s["validation_in_train_target"]:
        out.warn(f"{where}: {s['validation_in_train_target']} of {s['validation']['pairs']} validation pairs are in "
                 f"the training {ds.target!r} file")
    for what in ("user", "item"):
        gaps = s[f"unused_{what}_ids"]
        if gaps:
            out.warn(f"{where}: {what} ids are not contiguous: {gaps} ids up to the largest never occur "
                     "(they still get embedding rows)")
    for name, n in s["dict_mismatch"].items():
        out.warn(f"{where}: {name}.txt and {name}_dict.txt disagree on {n} pairs (the .txt file is used)")
    dups = {b: v["duplicates"] for b, v in s["per_behavior"].items() if v["duplicates"]}
    if dups:
        out.info(f"{where}: duplicate pairs dropped: " + ", ".join(f"{b} {n}" for b, n in dups.items()))
    if s["test"]["pairs"]:
        out.info(f"{where}: {s['test_seen_in_any_auxiliary']:.1%} of test pairs occur in an auxiliary behavior")
    return s
