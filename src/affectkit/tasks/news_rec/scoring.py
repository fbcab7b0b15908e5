"""The official MIND scorer's semantics (spec section 2.6), on top of ``components.ranking``.

Files, one impression per line:

* ``truth.txt``: ``<impression id> [l1,l2,...]`` with 0/1 click labels in candidate order. A
  labeled behaviors.tsv may be given instead (its labels are the truth); an unlabeled one (the
  MIND-large test split) is refused, since there is nothing to score against.
* ``prediction.txt``: ``<impression id> [r1,r2,...]`` where r_j is the 1-based rank of candidate j
  (a permutation of 1..n), written without spaces inside the brackets.

The two files are read in lockstep: line k of the prediction must carry the impression id of line k
of the truth, with as many ranks as labels. A truth line with an empty label list is skipped
together with its prediction line. Every rank r becomes the score 1/r, and the metrics are
``components.ranking.impression_metrics`` (AUC, MRR over all clicks, nDCG@5, nDCG@10), averaged
over impressions without weights. An impression whose labels are all 0 or all 1 has no AUC and is
left out of every mean and counted in ``skipped`` (the official script would crash on it).

``write_prediction`` turns raw scores into ranks by a stable descending sort (``stable_ranks``),
so ties go to the earlier candidate, exactly as ``impression_metrics`` treats ties in scores:
scoring the written file gives the same numbers as ``impression_metrics`` on the scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.components.ranking import impression_metrics, stable_ranks
from affectkit.core.errors import DataError, require_file
from affectkit.core.runs import atomic_write_text
from affectkit.tasks.news_rec.data import bad_line, read_behaviors

METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def _parse_list(path: Path, lineno: int, text: str, what: str) -> list[int]:
    """``[a,b,...]`` as a list of ints (spaces tolerated on reading)."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise bad_line(path, lineno, f"expected '<impression id> [{what},...]', got {text!r}")
    return values


def _records(path: Path, what: str) -> Iterator[tuple[int, str, list[int]]]:
    """(line number, impression id, integer list) of each non-blank line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                raise bad_line(path, lineno, f"expected '<impression id> [{what},...]', got {line.strip()!r}")
            yield lineno, parts[0], _parse_list(path, lineno, parts[1], what)


def _check_labels(path: Path, lineno: int, labels: list[int]) -> None:
    if any(v not in (0, 1) for v in labels):
        raise bad_line(path, lineno, "labels must be 0 or 1")


def _truth_from_txt(path: Path) -> Iterator[tuple[int, str, list[int]]]:
    for lineno, imp, labels in _records(path, "label"):
        _check_labels(path, lineno, labels)
        yield lineno, imp, labels


def _truth_from_behaviors(path: Path) -> Iterator[tuple[int, str, list[int]]]:
    b = read_behaviors(path)
    if b.labels is None:
        raise DataError(path, "this behaviors.tsv has no labels (bare NewsID candidates, e.g. the MIND-large "
                        "test split): there is no truth to score against",
                        hint="score against a labeled split (train or dev), or submit to the MIND leaderboard")
    lines = _line_numbers(path)
    for i, labels in enumerate(b.per_impression(b.labels)):
        yield lines[i], str(b.impression_ids[i]), labels.astype(int).tolist()


def _line_numbers(path: Path) -> list[int]:
    with open(path, encoding="utf-8") as fh:
        return [k for k, line in enumerate(fh, 1) if line.strip()]


def _is_behaviors(path: Path) -> bool:
    if path.suffix == ".tsv":
        return True
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                return "\t" in line
    return False


def read_truth(path: str | Path) -> Iterator[tuple[int, str, list[int]]]:
    """(line number, impression id, labels) of a truth.txt, or of a labeled behaviors.tsv
    (recognised by the .tsv suffix or tab-separated lines)."""
    path = require_file(path, "truth file")
    return _truth_from_behaviors(path) if _is_behaviors(path) else _truth_from_txt(path)


def read_prediction(path: str | Path) -> Iterator[tuple[int, str, list[int]]]:
    """(line number, impression id, ranks) of a prediction.txt."""
    path = require_file(path, "prediction file")
    return _records(path, "rank")


def _check_ranks(path: Path, lineno: int, ranks: list[int]) -> None:
    if sorted(ranks) != list(range(1, len(ranks) + 1)):
        raise bad_line(path, lineno, f"the ranks must be a permutation of 1..{len(ranks)}")


def read_pairs(truth: str | Path, prediction: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str], int]:
    """Labels and 1/rank scores of the impressions to score, their ids, and the number of truth lines
    skipped for an empty label list; lockstep checks as in the module docstring."""
    pred_path = Path(prediction)
    preds = read_prediction(prediction)
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    ids: list[str] = []
    empty = 0
    for t_line, t_id, y in read_truth(truth):
        p = next(preds, None)
        if p is None:
            raise bad_line(pred_path, _last_line(pred_path) + 1,
                           f"the prediction ends here, but the truth goes on (impression {t_id}, {Path(truth).name} line {t_line})")
        p_line, p_id, ranks = p
        if p_id != t_id:
            raise bad_line(pred_path, p_line, f"impression id {p_id!r} does not match {t_id!r} on line {t_line} of {truth}")
        if not y:
            empty += 1
            continue
        if len(ranks) != len(y):
            raise bad_line(pred_path, p_line, f"impression {p_id}: {len(ranks)} ranks but {len(y)} labels in the truth")
        _check_ranks(pred_path, p_line, ranks)
        labels.append(np.asarray(y, np.float64))
        scores.append(1.0 / np.asarray(ranks, np.float64))
        ids.append(t_id)
    extra = next(preds, None)
    if extra is not None:
        raise bad_line(pred_path, extra[0], f"impression {extra[1]}: the prediction has more lines than the truth")
    return labels, scores, ids, empty


def _last_line(path: Path) -> int:
    lines = _line_numbers(path)
    return lines[-1] if lines else 0


def score(truth: str | Path, prediction: str | Path) -> dict[str, Any]:
    """The official metrics of a prediction.txt against a truth.txt (or a labeled behaviors.tsv):
    ``auc``, ``mrr``, ``ndcg@5``, ``ndcg@10`` (means), ``impressions`` (scored), ``skipped``
    (all-0 or all-1 labels) and ``empty`` (truth lines with no labels)."""
    labels, scores, _, empty = read_pairs(truth, prediction)
    result = impression_metrics(labels, scores, ks=(5, 10))
    return {**result.mean(), "impressions": len(result.ids), "skipped": result.skipped, "empty": empty}


def format_list(values: Sequence[int]) -> str:
    """``[a,b,c]`` with no spaces, as both official files write their lists."""
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def write_prediction(path: str | Path, impression_ids: Sequence[Any], scores: Sequence[Any]) -> Path:
    """Write a prediction.txt from raw scores per impression (stable ranks: ties keep candidate order)."""
    if len(impression_ids) != len(scores):
        raise ValueError(f"{len(impression_ids)} impression ids but {len(scores)} score lists")
    lines = []
    for imp, s in zip(impression_ids, scores, strict=True):
        if np.isnan(np.asarray(s, np.float64)).any():
            raise ValueError(f"impression {imp}: scores contain NaN")
        lines.append(f"{imp} {format_list(stable_ranks(s))}\n")
    path = Path(path)
    atomic_write_text(path, "".join(lines))
    return path


def write_truth(path: str | Path, impression_ids: Sequence[Any], labels: Sequence[Any]) -> Path:
    """Write a truth.txt (``<impression id> [l1,l2,...]`` per line)."""
    if len(impression_ids) != len(labels):
        raise ValueError(f"{len(impression_ids)} impression ids but {len(labels)} label lists")
    path = Path(path)
    atomic_write_text(path, "".join(f"{imp} {format_list(y)}\n" for imp, y in zip(impression_ids, labels, strict=True)))
    return path
