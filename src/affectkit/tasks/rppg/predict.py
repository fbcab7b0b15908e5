"""Heart rate from any video, with no ground truth: frames are read one at a time (a file, an MJPEG
stream on stdin, a camera index), face traces accumulate (a few numbers per frame), and each
completed window yields a row at once. FreqPhys windows are its 10-s clips at 30 fps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.task import PredictRequest

CLIP_S = 10.0  # FreqPhys sees 300 frames at 30 fps


def _window_hr(signal: np.ndarray, fs: float, preset: Any, hr_method: str) -> tuple[float, float]:
    """(HR bpm, self-SNR dB: the power at that HR and its harmonic over the rest of the band)."""
    from affectkit.tasks.rppg.metrics import hr_of
    from affectkit.tasks.rppg.postprocess import snr

    hr = hr_of(signal, fs, preset, method=hr_method)
    quality = snr(signal, hr, fs, preset.band, preset.nfft) if np.isfinite(hr) else float("nan")
    return hr, quality


def predict_video(request: PredictRequest) -> dict[str, Any]:
    from affectkit.core.runs import RunDir
    from affectkit.tasks.rppg.config import RppgConfig
    from affectkit.tasks.rppg.faces import FaceTracker
    from affectkit.tasks.rppg.frames import open_stream
    from affectkit.tasks.rppg.pipeline import classical_signal
    from affectkit.tasks.rppg.recipe import load_freqphys, predict_clips, preset_of
    from affectkit.tasks.rppg.traces import TraceExtractor

    opts = request.options
    method = opts.method or ("freqphys" if request.run is not None else "pos")
    cfg = RppgConfig()
    model = None
    if request.run is not None:
        run = RunDir.existing(request.run)
        cfg = run.load_config(RppgConfig)
        if method == "freqphys":
            model = load_freqphys(cfg, run.weights(request.checkpoint))
    elif method == "freqphys":
        raise UsageError("--method freqphys needs --run", "train one first: affectkit train rppg --out RUN")
    cfg.method = method
    if opts.preset or request.run is None:
        # without a run: the fine 0.5-bpm grid (nfft 3600); the toolbox's next-pow2 FFT has 7-bpm bins
        # on a 5-s window
        cfg.eval.preset = opts.preset or "freqphys"
    preset = preset_of(cfg)
    window_s = CLIP_S if model is not None else (opts.window or 10.0)
    hop_s = opts.hop or window_s
    if window_s <= 0 or hop_s <= 0:
        raise UsageError("--window and --hop must be positive seconds")
    source = open_stream(str(request.input), opts.fps)
    fs = source.fps
    win, hop = max(int(round(window_s * fs)), 9), max(int(round(hop_s * fs)), 1)
    tracker = FaceTracker(detect_every=cfg.face.detect_every, box_scale=cfg.face.box_scale, smooth=cfg.face.smooth,
                              deadband=cfg.face.deadband)
    extractor = TraceExtractor(fs, tracker)
    state: dict[str, Any] = {"frames": 0, "rows": [], "signal": None}

    def window_row(index: int, lo: int, hi: int) -> dict[str, Any]:
        tr = extractor.result()
        found = tr.found[lo:hi]
        row: dict[str, Any] = {"window": index, "start_s": round(lo / fs, 3), "end_s": round(hi / fs, 3),
                               "face_frames": int(found.sum()), "hr": None, "snr_self_db": None}
        if found.sum() < 0.5 * (hi - lo):
            return row  # too little face in the window to say anything
        if model is not None:
            from affectkit.tasks.rppg.mstmap import make_clips
            from affectkit.tasks.rppg.pipeline import aligned

            part, _ = aligned(_slice(tr, lo, hi), np.zeros(hi - lo))
            clips = make_clips(part, None, "window")
            if not clips:
                return row
            signal, rate = predict_clips(model, clips[:1], cfg)[0], 30.0
        else:
            signal, rate = classical_signal(method, _slice(tr, lo, hi)), fs
        hr, quality = _window_hr(signal, rate, preset, cfg.eval.hr_method)
        row.update(hr=round(float(hr), 2), snr_self_db=round(float(quality), 2))
        return row

    def rows() -> Iterator[dict[str, Any]]:
        next_end, index = win, 0
        for frame in source.frames():
            extractor.push(frame)
            state["frames"] += 1
            if state["frames"] == next_end:
                row = window_row(index, next_end - win, next_end)
                state["rows"].append(row)
                yield row
                index, next_end = index + 1, next_end + hop
        if state["frames"] == 0:
            raise DataError(source.name, "no frame could be decoded (corrupt, truncated or empty video)")
        if state["frames"] < win:
            raise DataError(source.name, f"{state['frames']} frames is shorter than one {window_s:g}-s window",
                            "pass a shorter --window")

    def finish() -> dict[str, Any]:
        tr = extractor.result()
        if not tr.found.any():
            raise DataError(source.name, "no face found in any frame", "the face must be frontal and visible")
        hrs = [r["hr"] for r in state["rows"] if r["hr"] is not None]
        summary = {"input": source.name, "method": method, "fps": fs, "frames": state["frames"],
                   "face_found_frames": int(tr.found.sum()), "windows": len(state["rows"]),
                   "hr_median": float(np.median(hrs)) if hrs else None,
                   "hr_mean": float(np.mean(hrs)) if hrs else None}
        if opts.plot is not None:
            from affectkit.tasks.rppg.metrics import WindowRow, trace_plot_png

            if model is not None:
                signal, rate = _freqphys_trace(model, tr, cfg), 30.0
            else:
                signal, rate = classical_signal(method, tr), fs
            nan = float("nan")
            marks = [WindowRow(source.name, r["window"], r["start_s"], r["end_s"], nan,
                               nan if r["hr"] is None else r["hr"], nan, nan) for r in state["rows"]]
            trace_plot_png(Path(opts.plot), signal, rate, marks, f"{source.name}: {method}")
            summary["plot"] = str(opts.plot)
        hr_text = f"median HR {summary['hr_median']:.1f} bpm" if hrs else "no HR (too little face)"
        summary["message"] = f"{state['frames']} frames, {len(state['rows'])} windows, {hr_text}"
        return summary

    return {"rows": rows(), "finish": finish, "row_event": "window"}


def _slice(tr: Any, lo: int, hi: int) -> Any:
    from affectkit.tasks.rppg.traces import Traces

    return Traces(fps=tr.fps, rgb=tr.rgb[lo:hi], roi_means=tr.roi_means[lo:hi], roi_counts=tr.roi_counts[lo:hi],
                  found=tr.found[lo:hi], boxes=tr.boxes[lo:hi])


def _freqphys_trace(model: Any, tr: Any, cfg: Any) -> np.ndarray:
    from affectkit.tasks.rppg.mstmap import make_clips
    from affectkit.tasks.rppg.recipe import overlap_add, predict_clips
    from affectkit.tasks.rppg.traces import resample

    clips = make_clips(tr, None, "video")
    n = len(resample(tr.rgb, tr.fps, 30.0))
    return overlap_add(predict_clips(model, clips, cfg), [c.start for c in clips], n)
