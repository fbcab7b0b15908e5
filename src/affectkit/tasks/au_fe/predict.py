"""``affectkit predict au-fe --run RUN VIDEO``: per-frame AU probabilities and the clip's expression,
like OpenFace's FeatureExtraction output (one row per frame).

The result says how far to trust it: ``frames_expected`` (the container's count) against
``frames_decoded``, ``face_found_frames``, and ``status`` (``ok``; ``partial``: some frames did not
decode; ``no_face``: no face in any frame, so the AUs and the expression, marked ``valid: false``, come
from whole frames), with each problem in ``warnings`` and as a ``Warning:`` line on stderr."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectkit.components.video import HaarFaceDetector, Video, read_video
from affectkit.core.errors import DataError
from affectkit.core.loop import load_weights
from affectkit.core.output import get_output
from affectkit.core.runs import RunDir
from affectkit.tasks.au_fe.clips import clip_tensor
from affectkit.tasks.au_fe.data import tsn_indices


def load_run(task: Any, run_dir: Path, checkpoint: str = "best"):
    cfg, weights = run_config(task, run_dir, checkpoint)
    return cfg, load_weights(task.build_model(cfg), weights).eval()


def run_config(task: Any, run_dir: Path, checkpoint: str = "best") -> tuple[Any, Path]:
    """The run's config and the weights file of ``checkpoint`` (cheap checks; no model is built)."""
    run = RunDir.existing(run_dir)
    return run.load_config(task.Config), run.weights(checkpoint)


def _looks_like_text(path: Path) -> bool:
    """FFmpeg renders a text file as a video of its characters (the tty demuxer): refuse those."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the end of the sample
    return True


def decode_video(video: Path) -> tuple[Video, dict[str, Any]]:
    """Every frame that decodes, and what was found on the way: the container's frame count, the frames
    decoded, warnings. A file with no decodable frame (or a text file) is a DataError naming it."""
    import cv2

    video = Path(video)
    if video.is_file() and _looks_like_text(video):
        raise DataError(video, "a text file, not a video", "pass a video file (mp4, avi, mkv, ...)")
    vid = read_video(video)
    cap = cv2.VideoCapture(str(video))
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if cap.isOpened() else 0
    cap.release()
    expected = int(count) if 0 < count < 2**31 else None  # streams without an index report 0 or garbage
    decoded = len(vid.frames)
    info: dict[str, Any] = {"frames_expected": expected, "frames_decoded": decoded, "warnings": []}
    if expected is not None and decoded < expected:
        info["warnings"].append(f"{video}: {expected - decoded} of {expected} frames did not decode (truncated or "
                                f"corrupt video); predicting on the {decoded} that did")
    return vid, info


@torch.no_grad()
def predict_video(task: Any, run_dir: Path, video: Path, checkpoint: str = "best", detect_every: int = 5,
                  batch: int = 8) -> dict[str, Any]:
    cfg, weights = run_config(task, run_dir, checkpoint)
    vid, decoding = decode_video(video)  # the input is checked before the model is built
    warnings = decoding["warnings"]
    boxes, found = HaarFaceDetector(every=detect_every).boxes(vid.frames)
    status = "partial" if warnings else "ok"
    if not found.any():
        status = "no_face"
        warnings.append(f"{video}: no face found in any of the {len(found)} frames; the AUs and the expression "
                        "are computed on whole frames and are not valid face predictions")
    output = get_output()
    for message in warnings:
        output.warn(message)
    model = load_weights(task.build_model(cfg), weights).eval()
    ssm = model.ssm
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
                          "probs": dict(zip(ssm.expressions, probs.round(4).tolist(), strict=True)),
                          "valid": status != "no_face"}
    rows = []
    for i in range(t):
        row: dict[str, Any] = {"frame": i + 1, "timestamp": round(i / vid.fps, 4),
                               "confidence": 1.0 if found[i] else 0.0, "success": int(bool(found[i]))}
        if au_prob is not None:
            for j, au in enumerate(ssm.aus):
                row[f"AU{au:02d}_p"] = round(float(au_prob[i, j]), 4)
                row[f"AU{au:02d}_c"] = int(au_prob[i, j] >= 0.5)
        rows.append(row)
    return {"video": str(video), "frames": t, "fps": vid.fps, "frames_expected": decoding["frames_expected"],
            "frames_decoded": decoding["frames_decoded"], "face_found_frames": int(found.sum()), "status": status,
            "warnings": warnings, "expression": expression, "rows": rows,
            "message": f"{t} frames, face found in {int(found.sum())}; "
                       f"expression: {(expression or {}).get('label', 'n/a')}"}

