"""``affectkit predict au-fe --run RUN VIDEO``: per-frame AU probabilities and the clip's expression,
like OpenFace's FeatureExtraction output (one row per frame)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectkit.components.video import HaarFaceDetector, read_video
from affectkit.core.loop import load_weights
from affectkit.core.runs import RunDir
from affectkit.tasks.au_fe.clips import clip_tensor
from affectkit.tasks.au_fe.data import tsn_indices


def load_run(task: Any, run_dir: Path, checkpoint: str = "best"):
    run = RunDir.existing(run_dir)
    cfg = run.load_config(task.Config)
    model = load_weights(task.build_model(cfg), run.weights(checkpoint)).eval()
    return cfg, model


@torch.no_grad()
def predict_video(task: Any, run_dir: Path, video: Path, checkpoint: str = "best", detect_every: int = 5,
                  batch: int = 8) -> dict[str, Any]:
    cfg, model = load_run(task, run_dir, checkpoint)
    ssm = model.ssm
    vid = read_video(video)
    boxes, found = HaarFaceDetector(every=detect_every).boxes(vid.frames)
    crops = [f[y0:y1, x0:x1] for f, (x0, y0, x1, y1) in zip(vid.frames, boxes, strict=True)]
    size, n = cfg.data.image_size, cfg.data.n_frames
    t = len(crops)
    ema = model.weight_ema.applied(ssm) if model.weight_ema is not None else nullcontext()
    with ema:
        au_prob = None
        if ssm.use_au:
            starts = list(range(0, max(1, t - n + 1), n))
            if starts[-1] + n < t:
                starts.append(max(0, t - n))
            prob = np.zeros((t, len(ssm.aus)))
            count = np.zeros(t)
            for i in range(0, len(starts), batch):
                chunk = starts[i : i + batch]
                clips = [clip_tensor([crops[min(s + k, t - 1)] for k in range(n)], size, False, False) for s in chunk]
                p = torch.sigmoid(ssm(au=torch.stack(clips))["z_a"]).numpy()
                for s, ps in zip(chunk, p, strict=True):
                    span = min(n, t - s)
                    prob[s : s + span] += ps[:span]
                    count[s : s + span] += 1
            au_prob = prob / np.maximum(count, 1)[:, None]
        expression = None
        if ssm.use_fe:
            idx = tsn_indices(t, n, train=False)
            logits = ssm(fe=clip_tensor([crops[i] for i in idx], size, False, False)[None])["z_e"][0]
            probs = logits.softmax(-1).numpy()
            expression = {"label": ssm.expressions[int(probs.argmax())],
                          "probs": dict(zip(ssm.expressions, probs.round(4).tolist(), strict=True))}
    rows = []
    for i in range(t):
        row: dict[str, Any] = {"frame": i + 1, "timestamp": round(i / vid.fps, 4),
                               "confidence": 1.0 if found[i] else 0.0, "success": int(bool(found[i]))}
        if au_prob is not None:
            for j, au in enumerate(ssm.aus):
                row[f"AU{au:02d}_p"] = round(float(au_prob[i, j]), 4)
                row[f"AU{au:02d}_c"] = int(au_prob[i, j] >= 0.5)
        rows.append(row)
    return {"video": str(video), "frames": t, "fps": vid.fps, "face_found_frames": int(found.sum()),
            "expression": expression, "rows": rows}

