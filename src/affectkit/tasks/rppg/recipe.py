"""rppg's recipe: train FreqPhys on a dataset's MSTmap clips, evaluate any method on a split with a
post-processing preset, and statistics of a dataset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import Output
from affectkit.core.runs import atomic_write_json
from affectkit.core.task import EvaluateRequest, TrainRequest
from affectkit.tasks.rppg.pipeline import aligned, all_traces, classical_signal, recordings


def preset_of(cfg: Any) -> Any:
    from affectkit.tasks.rppg.metrics import preset

    overrides: dict[str, Any] = {}
    if cfg.eval.window_s:
        overrides["window_s"] = cfg.eval.window_s
    if cfg.eval.nfft:
        overrides["nfft"] = cfg.eval.nfft
    if cfg.eval.preset == "freqphys" and cfg.eval.clip_every > 1:
        overrides["hop_s"] = 0.5 * cfg.eval.clip_every
    return preset(cfg.eval.preset, **overrides)


def clips_of(recs: list[Any], cfg: Any, output: Output, what: str, every: int = 1) -> list[Any]:
    """MSTmap clips (300 frames at 30 fps, every 0.5 s; every ``every``-th kept) of every recording,
    with their pulse."""
    from affectkit.tasks.rppg.mstmap import make_clips

    clips: list[Any] = []
    for rec, tr in zip(recs, all_traces(recs, cfg, output, what), strict=True):
        tr, bvp = aligned(tr, rec.bvp)
        made = make_clips(tr, bvp, rec.id)[::every]
        if not made:
            output.warn(f"{rec.source.name}: no full 10-s clip with a face in every frame; skipped")
        clips.extend(made)
    return clips


def train_run(request: TrainRequest) -> dict[str, Any]:
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import epoch_schedule, fit
    from affectkit.tasks.rppg.train import FreqPhysLoop

    cfg, out = request.cfg, request.output
    train = clips_of(recordings(cfg, request.data_dir, "train"), cfg, out, "train", cfg.data.clip_every)
    try:
        valid = clips_of(recordings(cfg, request.data_dir, "valid"), cfg, out, "valid", cfg.eval.clip_every)
    except DataError:
        valid = []
    if not valid:
        out.warn("no validation recordings: the best epoch is chosen on the test split, as the release does")
        valid = clips_of(recordings(cfg, request.data_dir, "test"), cfg, out, "test", cfg.eval.clip_every)
    if not train:
        raise DataError(request.data_dir, "no training clip (videos shorter than 10 s, or no face found)")
    tc = epoch_schedule(cfg.train, len(train), cfg.epochs, cfg.patience, request.data_dir, "training clips")
    loop = FreqPhysLoop(train, valid)
    bundle = loop.build_data(cfg, request.data_dir)
    fitted = fit(loop, replace(cfg, train=tc), bundle, get_accelerator(request.precision), out, request.seed,
                 run=request.run, resume=request.resume)
    return {"step": fitted.step, "metrics": fitted.metrics, "best": fitted.best, "stopped_early": fitted.stopped_early,
            "data": bundle.info}


def load_freqphys(cfg: Any, weights: Path) -> Any:
    from affectkit.core.loop import load_weights
    from affectkit.tasks.rppg.train import build_network

    try:
        model = load_weights(build_network(cfg), weights)
    except (RuntimeError, KeyError) as exc:
        raise DataError(weights, f"weights do not fit the run's config ({str(exc).splitlines()[0]})") from None
    return model.eval().requires_grad_(False)


def predict_clips(model: Any, clips: list[Any], cfg: Any, batch_size: int = 16) -> np.ndarray:
    """FreqPhys pulse of each clip ``[n, 300]`` (DDIM, seeded per batch)."""
    import torch

    from affectkit.tasks.rppg.train import Collate, sample_clips

    collate = Collate(cfg)
    preds = []
    with torch.no_grad():
        for lo in range(0, len(clips), batch_size):
            batch = collate([(c, 0) for c in clips[lo : lo + batch_size]])
            preds.append(sample_clips(model, batch, cfg).numpy())
    return np.concatenate(preds) if preds else np.zeros((0, 300), np.float32)


def overlap_add(preds: np.ndarray, starts: list[int], n: int) -> np.ndarray:
    """One signal of ``n`` samples from standardised overlapping clip predictions, Hann-weighted."""
    length = preds.shape[1] if len(preds) else 0
    acc, weight = np.zeros(n), np.zeros(n)
    w = np.hanning(length + 2)[1:-1] if length else np.zeros(0)
    for p, s in zip(preds, starts, strict=True):
        z = (p - p.mean()) / (p.std() + 1e-8)
        acc[s : s + length] += w * z
        weight[s : s + length] += w
    return np.divide(acc, weight, out=np.zeros(n), where=weight > 0)


def _freqphys_rows(rec: Any, tr: Any, cfg: Any, model: Any, preset: Any, output: Output) -> list[Any]:
    from affectkit.tasks.rppg.metrics import WindowRow, hr_of, score_video
    from affectkit.tasks.rppg.mstmap import make_clips
    from affectkit.tasks.rppg.postprocess import macc, snr
    from affectkit.tasks.rppg.traces import resample

    tr, bvp = aligned(tr, rec.bvp)
    clips = make_clips(tr, bvp, rec.id)[:: cfg.eval.clip_every]
    if not clips:
        output.warn(f"{rec.source.name}: no full 10-s clip with a face in every frame; not scored")
        return []
    preds = predict_clips(model, clips, cfg)
    if preset.name == "freqphys" and not cfg.eval.window_s:
        # the release: every clip is a unit of 10 s; its truth from the clip's pulse, same pipeline
        rows = []
        for i, (clip, p) in enumerate(zip(clips, preds, strict=True)):
            gt_hr = hr_of(clip.bvp, 30.0, preset)
            rows.append(WindowRow(rec.id, i, clip.start / 30.0, (clip.start + len(p)) / 30.0, gt_hr,
                                  hr_of(p, 30.0, preset), snr(p, gt_hr, 30.0, preset.band, preset.nfft),
                                  macc(p, clip.bvp)))
        return rows
    gt30 = resample(bvp, tr.fps, 30.0)
    signal = overlap_add(preds, [c.start for c in clips], len(gt30))
    covered = slice(clips[0].start, clips[-1].start + preds.shape[1])
    return score_video(rec.id, signal[covered], gt30[covered], 30.0, preset, method=cfg.eval.hr_method)


def score(cfg: Any, data_dir: Path, split: str, model: Any, output: Output) -> tuple[list[Any], dict[str, Any], Any]:
    """(window rows, summary, preset) of ``cfg.method`` on a split; ``model`` is FreqPhys' network
    (None for a classical method)."""
    from affectkit.tasks.rppg.metrics import score_video, summarize
    from affectkit.tasks.rppg.pipeline import traces_of

    preset = preset_of(cfg)
    rows: list[Any] = []
    for rec in output.track(recordings(cfg, data_dir, split), f"{cfg.method} on {split}"):
        tr = traces_of(rec, cfg)
        if model is not None:
            rows.extend(_freqphys_rows(rec, tr, cfg, model, preset, output))
            continue
        tr, bvp = aligned(tr, rec.bvp)
        rows.extend(score_video(rec.id, classical_signal(cfg.method, tr), bvp, tr.fps, preset,
                                method=cfg.eval.hr_method))
    if not rows:
        raise DataError(data_dir, "nothing could be scored (no recording had a usable window)")
    return rows, summarize(rows, preset), preset


def evaluate_request(request: EvaluateRequest) -> dict[str, Any]:
    from affectkit.tasks.rppg.metrics import bland_altman_png, video_level, write_windows_csv

    cfg, out, opts = request.cfg, request.output, request.options
    split = getattr(opts, "split", None) or "test"
    data_dir = request.data_dir
    if data_dir is None and request.run is not None:
        saved = request.run.meta().get("data_dir")
        data_dir = Path(saved) if saved else None
    if data_dir is None or not data_dir.is_dir():
        raise UsageError("--data is required", "pass a dataset folder (or a run whose data folder still exists)")
    model = None
    if cfg.method == "freqphys":
        if request.run is None:
            raise UsageError("--method freqphys needs --run", "train one: affectkit train rppg --data DIR --out RUN")
        model = load_freqphys(cfg, request.run.weights(request.checkpoint))
    rows, summary, preset = score(cfg, data_dir, split, model, out)
    metrics = {k: summary[k] for k in ("mae", "rmse", "mape", "pearson", "snr")}
    result: dict[str, Any] = {"method": cfg.method, "preset": preset.name, "split": split, "metrics": metrics,
                              "standard_errors": {k: summary.get(f"{k}_se") for k in ("mae", "rmse", "mape", "pearson")},
                              "macc": summary.get("macc"), "n_units": summary["n_units"], "n_videos": summary["n_videos"]}
    report = getattr(opts, "report", None)
    if report is not None:
        report = Path(report)
        report.mkdir(parents=True, exist_ok=True)
        write_windows_csv(report / "windows.csv", rows)
        units = video_level(rows, preset)
        bland_altman_png(report / "bland_altman.png", units)
        atomic_write_json(report / "results.json", result)
        result["report"] = str(report)
    return result
