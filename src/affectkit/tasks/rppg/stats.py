"""``affectkit data stats rppg --data DIR``: what a dataset holds, per split, with its problems named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError
from affectkit.core.output import get_output


def statistics_of(cfg: Any, data_dir: Path) -> dict[str, Any]:
    """Recordings, subjects, frame rates, durations and reference heart rates per split; warns about
    splits that share a subject and recordings whose ground truth has no usable pulse band."""
    from affectkit.tasks.rppg.data import detect_dataset, load_dataset, split_recordings
    from affectkit.tasks.rppg.metrics import PRESETS, hr_of

    out = get_output()
    name = cfg.data.dataset if cfg.data.dataset != "auto" else detect_dataset(data_dir)
    recs = load_dataset(data_dir, name, fps=cfg.data.fps or None)
    if not recs:
        raise DataError(data_dir, "no recordings found")
    parts = split_recordings(recs, name, fold=cfg.data.fold)
    splits: dict[str, Any] = {}
    subjects: dict[str, set[str]] = {}
    for split, items in parts.items():
        subjects[split] = {r.subject for r in items}
        if not items:
            splits[split] = {"recordings": 0}
            continue
        seconds = [len(r.bvp) / r.fps for r in items]
        hrs = [hr_of(r.bvp, r.fps, PRESETS["toolbox"]) for r in items]
        splits[split] = {"recordings": len(items), "subjects": len(subjects[split]),
                         "fps": sorted({round(r.fps, 2) for r in items}),
                         "seconds_mean": round(float(np.mean(seconds)), 1),
                         "seconds_min": round(float(np.min(seconds)), 1),
                         "hr_bpm_min": round(float(np.min(hrs)), 1), "hr_bpm_max": round(float(np.max(hrs)), 1)}
        short = sum(s < 10.0 for s in seconds)
        if short:
            out.warn(f"{split}: {short} recordings are shorter than one 10-s clip (FreqPhys cannot use them)")
    names = list(subjects)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = subjects[a] & subjects[b]
            if shared:
                out.warn(f"subjects in both {a} and {b}: {', '.join(sorted(shared)[:5])}")
    return {"dataset": name, "recordings": len(recs), "splits": splits}
