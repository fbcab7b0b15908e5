"""From a dataset folder to what the methods consume: the recordings of a split, their face traces
(cached: decoding dominates), the classical pulse signals and the MSTmap clips."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import Output

TRACES_VERSION = 2  # bump when traces.py changes what it measures
# A decoded video may differ from its ground truth by this many frames (a dropped last frame).
FRAME_SLACK = 1


def recordings(cfg: Any, data_dir: Path, split: str) -> list[Any]:
    """The recordings of ``split`` (train | valid | test | all), filtered by ``data.subset``."""
    from affectkit.tasks.rppg.data import load_dataset, split_recordings

    dc = cfg.data
    recs = load_dataset(data_dir, None if dc.dataset == "auto" else dc.dataset, fps=dc.fps or None)
    if split != "all":
        name = dc.dataset if dc.dataset != "auto" else None
        parts = split_recordings(recs, name or _detected(data_dir), fold=dc.fold)
        if split not in parts:
            raise UsageError(f"unknown split {split!r}", "use train, valid, test or all")
        recs = parts[split]
    if dc.subset:
        recs = [r for r in recs if str(r.meta.get("subset", "")) == dc.subset]
    if not recs:
        raise DataError(data_dir, f"no recordings in split {split!r}" + (f" with subset {dc.subset!r}" if dc.subset else ""))
    return recs[: dc.max_videos] if dc.max_videos else recs


def _detected(data_dir: Path) -> str:
    from affectkit.tasks.rppg.data import detect_dataset

    return detect_dataset(data_dir)


def _trace_key(source_name: str, face: Any) -> str:
    p = Path(source_name)
    stat = p.stat() if p.exists() else None
    ident = {"path": str(p.resolve()) if stat else source_name, "size": stat.st_size if stat else 0,
             "mtime": stat.st_mtime_ns if stat else 0, "face": vars(face), "v": TRACES_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:24]


def traces_of(rec: Any, cfg: Any, cache: bool = True, progress: Callable[[int], None] | None = None) -> Any:
    """The face traces of one recording, from the cache when the video is unchanged; the decoded
    length must match the ground truth (within one frame, which is trimmed)."""
    from affectkit.core.cache import task_cache
    from affectkit.tasks.rppg.faces import FaceTracker
    from affectkit.tasks.rppg.traces import Traces, extract_traces

    path = task_cache("rppg") / "traces" / f"{_trace_key(rec.source.name, cfg.face)}.npz"
    if cache and path.is_file():
        tr = Traces.load(path)
    else:
        tracker = FaceTracker(detect_every=cfg.face.detect_every, box_scale=cfg.face.box_scale,
                              smooth=cfg.face.smooth,
                              deadband=cfg.face.deadband)
        tr = extract_traces(rec.source, tracker=tracker, progress=progress)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tr.save(path)
    n_gt = len(rec.bvp)
    if abs(len(tr) - n_gt) > FRAME_SLACK:
        raise DataError(rec.source.name, f"decoded {len(tr)} frames but the ground truth has {n_gt} samples "
                        "(truncated video or mismatched ground truth)")
    return tr


def aligned(tr: Any, bvp: np.ndarray) -> tuple[Any, np.ndarray]:
    """Traces and ground truth cut to their common length."""
    from affectkit.tasks.rppg.traces import Traces

    n = min(len(tr), len(bvp))
    if n == len(tr):
        return tr, np.asarray(bvp[:n], float)
    cut = Traces(fps=tr.fps, rgb=tr.rgb[:n], roi_means=tr.roi_means[:n], roi_counts=tr.roi_counts[:n],
                 found=tr.found[:n], boxes=tr.boxes[:n])
    return cut, np.asarray(bvp[:n], float)


def classical_signal(method: str, tr: Any) -> np.ndarray:
    """A classical method's pulse signal from the face's mean RGB (frames without a face take the
    nearest face frame's colour)."""
    from affectkit.tasks.rppg.baselines import METHODS
    from affectkit.tasks.rppg.traces import fill_missing

    if method not in METHODS:
        raise UsageError(f"unknown classical method {method!r}", f"choose one of {', '.join(METHODS)}")
    rgb = fill_missing(tr.rgb, tr.found)
    return np.asarray(METHODS[method](rgb, tr.fps), float)


def all_traces(recs: list[Any], cfg: Any, output: Output, what: str) -> list[Any]:
    """Traces of every recording, with one progress bar over the frames."""
    total = sum(max(r.source.n_frames, 0) for r in recs) or None
    out: list[Any] = []
    done = 0
    with output.progress(f"face traces ({what})", total=total) as bar:
        for rec in recs:
            def moved(n: int, base: int = done) -> None:
                if n % 64 == 0:
                    bar.update(completed=base + n)

            out.append(traces_of(rec, cfg, progress=moved))
            done += len(out[-1])
            bar.update(completed=done)
    return out
