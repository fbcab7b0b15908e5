"""Heart-rate evaluation of predicted pulse signals against ground-truth PPG: presets, windows, scores,
tables and plots (numpy/scipy; matplotlib only inside the plotting functions).

Two protocols are offered as :class:`Preset` objects (affectkit spec §4.3 and §2.6):

``toolbox`` (rPPG-Toolbox, current main)
    Whole video by default. Per unit: [cumsum when the signals are first differences] -> smoothness-priors
    detrend (lambda 100) -> Butterworth order 1, [0.6, 3.3] Hz, ``filtfilt`` -> periodogram with nfft = the
    next power of two >= N -> arg-max in band. ``window_s=10`` reproduces ``USE_SMALLER_WINDOW``:
    non-overlapping windows of ``WINDOW_SIZE * FS`` frames from frame 0 (capped at the video length);
    the last, partial window is kept, and any window shorter than 9 frames is skipped. The ground-truth
    HR of each unit comes from the ground-truth PPG through the same pipeline; SNR is that of the processed
    prediction at the ground-truth HR; MACC is that of the processed prediction and processed ground truth.
    Every window is one unit of the metrics.

``freqphys`` (FreqPhys evaluation)
    Per 10-s window: standardise -> Butterworth order 1, [0.66, 3.0] Hz, ``filtfilt`` (no detrend) ->
    periodogram with nfft 3600 (0.5 bpm at 30 fps) -> arg-max in band. Per video: the mean of the window
    HRs, ground truth likewise, and each per-video mean rounded to an integer with Python's ``round``
    (half to even), as the released training scripts do (``round(sum / count)``). Videos are the units.

One deviation shared by both: ``filtfilt`` with an order-1 band-pass pads 9 samples and needs more than
9, so the toolbox's 9-frame minimum would crash on a window of exactly 9 frames; :func:`score_video`
skips windows shorter than :func:`min_window_frames` (10 for order 1) instead.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal as sps

from affectkit.core.errors import DataError, UsageError
from affectkit.core.runs import atomic_save, atomic_write_text
from affectkit.tasks.rppg import postprocess as pp

__all__ = [
    "AGGREGATES",
    "CSV_HEADER",
    "METHODS",
    "MIN_WINDOW_FRAMES",
    "PRESETS",
    "Preset",
    "WindowRow",
    "bland_altman_png",
    "bland_altman_stats",
    "effective_nfft",
    "hr_of",
    "min_window_frames",
    "predict_windows",
    "preset",
    "process",
    "score_video",
    "summarize",
    "trace_plot_png",
    "video_level",
    "windows",
    "write_windows_csv",
]

AGGREGATES: tuple[str, ...] = ("windows", "video-mean")
METHODS: tuple[str, ...] = ("fft", "peak")
MIN_WINDOW_FRAMES = 9
"""rPPG-Toolbox: windows shorter than this many frames are skipped ("minimum pad length of 9")."""
CSV_HEADER: tuple[str, ...] = ("video", "window", "start_s", "end_s", "hr_gt", "hr_pred", "snr", "macc")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Preset:
    """Post-processing and aggregation settings of one evaluation protocol.

    ``nfft=None`` is the next power of two >= the unit length; ``window_s=None`` scores the whole video as
    one window; ``aggregate`` is ``"windows"`` (every window is a unit) or ``"video-mean"`` (the mean of a
    video's window HRs is the unit); ``round_hr`` rounds each unit's HRs to integers; ``standardize``
    z-scores each window before filtering (FreqPhys); ``hop_s`` makes windows overlap: full windows
    only, one every ``hop_s`` seconds (FreqPhys' clips: 10 s every 0.5 s).
    """

    name: str
    band: tuple[float, float]
    order: int
    detrend_lambda: float | None
    nfft: int | None
    window_s: float | None
    aggregate: str
    round_hr: bool
    standardize: bool = False
    hop_s: float | None = None

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise UsageError(f"aggregate must be one of {', '.join(AGGREGATES)}; got {self.aggregate!r}")
        lo, hi = self.band
        if not 0 < lo < hi:
            raise UsageError(f"band must be (low, high) Hz with 0 < low < high; got {self.band}")
        if self.order < 1:
            raise UsageError(f"filter order must be >= 1; got {self.order}")
        if self.nfft is not None and self.nfft < 1:
            raise UsageError(f"nfft must be a positive integer or None; got {self.nfft}")
        if self.window_s is not None and self.window_s <= 0:
            raise UsageError(f"window_s must be positive seconds or None (whole video); got {self.window_s}")
        if self.detrend_lambda is not None and self.detrend_lambda <= 0:
            raise UsageError(f"detrend_lambda must be positive or None; got {self.detrend_lambda}")


PRESETS: dict[str, Preset] = {
    "toolbox": Preset(
        "toolbox", pp.TOOLBOX_BAND, 1, 100.0, None, window_s=None, aggregate="windows", round_hr=False
    ),
    "freqphys": Preset(
        "freqphys",
        (0.66, 3.0),
        1,
        None,
        3600,
        window_s=10.0,
        aggregate="video-mean",
        round_hr=True,
        standardize=True,
        hop_s=0.5,
    ),
}


def preset(name: str, **overrides: object) -> Preset:
    """The named preset with fields replaced by ``overrides`` (e.g. ``preset("toolbox", window_s=10)``)."""
    if name not in PRESETS:
        raise UsageError(
            f"unknown rPPG evaluation preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
        )
    fields = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"unknown preset field(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return dataclasses.replace(PRESETS[name], **overrides)


# ---- windows and per-signal processing -------------------------------------------------------


def windows(
    n: int, fs: float, window_s: float | None, min_frames: int = MIN_WINDOW_FRAMES, hop_s: float | None = None
) -> list[tuple[int, int]]:
    """``(start, end)`` frame ranges. Without ``hop_s``: non-overlapping, as the rPPG-Toolbox cuts
    them: window length = ``round(window_s * fs)`` frames, capped at ``n`` (``None`` = the whole video);
    windows start at frame 0 and the last one may be partial; windows shorter than ``min_frames`` are
    dropped. With ``hop_s``: full windows only, window k starting at ``floor(k * hop_s * fs)``
    (the CVD/FreqPhys clip rule; a video shorter than one window gives none).
    """
    if n <= 0:
        return []
    if hop_s is not None and window_s is not None:
        size = max(1, int(round(window_s * fs)))
        starts, k = [], 0
        while int(np.floor(k * hop_s * fs + 1e-9)) + size <= n:
            starts.append(int(np.floor(k * hop_s * fs + 1e-9)))
            k += 1
        return [(s, s + size) for s in starts if size >= min_frames]
    size = n if window_s is None else min(n, max(1, int(round(window_s * fs))))
    spans = [(s, min(s + size, n)) for s in range(0, n, size)]
    return [(s, e) for s, e in spans if e - s >= min_frames]


def min_window_frames(p: Preset) -> int:
    """Shortest window :func:`score_video` keeps: the toolbox's 9 frames, or more when ``filtfilt``'s
    default padding (3 * (2 * order + 1) samples for a Butterworth band-pass) needs it."""
    return max(MIN_WINDOW_FRAMES, 3 * (2 * p.order + 1) + 1)


def _vector(x: object, name: str) -> np.ndarray:
    a = np.squeeze(np.asarray(x, dtype=np.float64))
    if a.ndim != 1:
        raise DataError(None, f"{name} must be a one-dimensional signal, got shape {np.shape(x)}")
    return a


def _standardize(z: np.ndarray) -> np.ndarray:
    """(z - mean) / std (population std); zeros for a constant signal."""
    sd = float(z.std())
    return np.zeros_like(z) if sd == 0.0 else (z - z.mean()) / sd


def process(signal: object, fs: float, p: Preset, diff: bool = False) -> np.ndarray:
    """The preset's signal chain: [cumsum if ``diff``] -> [standardise] -> [detrend] -> band-pass."""
    z = _vector(signal, "signal")
    if diff:
        z = np.cumsum(z)
    if p.standardize:
        z = _standardize(z)
    if p.detrend_lambda is not None:
        z = pp.detrend(z, p.detrend_lambda)
    return pp.bandpass(z, fs, p.band, p.order)


def effective_nfft(n: int, p: Preset) -> int:
    """FFT length for a unit of ``n`` samples: next power of two >= n when the preset's nfft is None,
    else the preset's nfft, raised to ``n`` when the unit is longer (a periodogram must not truncate)."""
    return pp.next_pow2(n) if p.nfft is None else max(int(p.nfft), n)


def _hr_filtered(z: np.ndarray, fs: float, p: Preset, method: str) -> float:
    if method == "fft":
        return pp.hr_fft(z, fs, p.band, effective_nfft(z.size, p))
    if method == "peak":
        return pp.hr_peaks(z, fs)
    raise UsageError(f"HR method must be one of {', '.join(METHODS)}; got {method!r}")


def hr_of(signal: object, fs: float, p: Preset, method: str = "fft", diff: bool = False) -> float:
    """Heart rate (bpm) of one unit after the preset's post-processing, by FFT peak or peak counting."""
    return _hr_filtered(process(signal, fs, p, diff), fs, p, method)


# ---- per-window scores -------------------------------------------------------------------------


@dataclass
class WindowRow:
    """One scored window; ``start_s``/``end_s`` in seconds from the video start, HRs in bpm, SNR in dB."""

    video: str
    window: int
    start_s: float
    end_s: float
    hr_gt: float
    hr_pred: float
    snr: float
    macc: float


def _snr(z_pred: np.ndarray, hr_gt: float, fs: float, p: Preset) -> float:
    if not math.isfinite(hr_gt):
        return float("nan")
    return pp.snr(z_pred, hr_gt, fs, p.band, effective_nfft(z_pred.size, p))


def score_video(
    video: str,
    pred_signal: object,
    gt_signal: object,
    fs: float,
    p: Preset,
    method: str = "fft",
    *,
    diff: bool = False,
) -> list[WindowRow]:
    """Score a predicted pulse signal against the ground-truth PPG window by window.

    Both signals go through the same chain (``diff`` = both are first differences); the ground-truth HR
    comes from the processed ground truth, the SNR from the processed prediction at that HR, and MACC from
    the two processed signals. Windows shorter than :func:`min_window_frames` are left out.
    """
    pred, gt = _vector(pred_signal, "prediction"), _vector(gt_signal, "ground truth")
    if pred.size != gt.size:
        raise DataError(None, f"{video}: prediction has {pred.size} samples, ground truth {gt.size}")
    rows = []
    for k, (s, e) in enumerate(windows(pred.size, fs, p.window_s, min_window_frames(p), p.hop_s)):
        zp, zg = process(pred[s:e], fs, p, diff), process(gt[s:e], fs, p, diff)
        hr_gt = _hr_filtered(zg, fs, p, method)
        rows.append(
            WindowRow(
                video=video,
                window=k,
                start_s=s / fs,
                end_s=e / fs,
                hr_gt=hr_gt,
                hr_pred=_hr_filtered(zp, fs, p, method),
                snr=_snr(zp, hr_gt, fs, p),
                macc=pp.macc(zp, zg),
            )
        )
    return rows


def predict_windows(
    video: str, signal: object, fs: float, p: Preset, method: str = "fft", *, diff: bool = False
) -> list[WindowRow]:
    """Per-window predicted HR without ground truth (for ``predict``): hr_gt, snr and macc are ``nan``."""
    z = _vector(signal, "signal")
    nan = float("nan")
    return [
        WindowRow(video, k, s / fs, e / fs, nan, hr_of(z[s:e], fs, p, method, diff), nan, nan)
        for k, (s, e) in enumerate(windows(z.size, fs, p.window_s, min_window_frames(p), p.hop_s))
    ]


# ---- aggregation and metrics ---------------------------------------------------------------------


def _round(x: float, enabled: bool) -> float:
    return float(round(x)) if enabled and math.isfinite(x) else float(x)


def video_level(rows: Sequence[WindowRow], p: Preset) -> list[dict]:
    """The units the metrics are computed over, as ``{"video", "hr_gt", "hr_pred"}`` dicts.

    ``aggregate="windows"``: one unit per row, in order. ``"video-mean"``: one unit per video (in order of
    first appearance) with the mean window HRs. With ``round_hr`` each unit's HRs are rounded to integers
    (Python ``round``, half to even, as FreqPhys). A ``nan`` window HR makes its video's mean ``nan``.
    """
    if p.aggregate == "windows":
        return [
            {"video": r.video, "hr_gt": _round(r.hr_gt, p.round_hr), "hr_pred": _round(r.hr_pred, p.round_hr)}
            for r in rows
        ]
    groups: dict[str, list[WindowRow]] = {}
    for r in rows:
        groups.setdefault(r.video, []).append(r)
    return [
        {
            "video": v,
            "hr_gt": _round(float(np.mean([r.hr_gt for r in rs])), p.round_hr),
            "hr_pred": _round(float(np.mean([r.hr_pred for r in rs])), p.round_hr),
        }
        for v, rs in groups.items()
    ]


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean and the toolbox's standard error std(x) / sqrt(n) (ddof 0)."""
    return float(x.mean()), float(x.std() / np.sqrt(x.size))


def summarize(rows: Sequence[WindowRow], p: Preset) -> dict:
    """MAE, RMSE, MAPE and Pearson r (each with the toolbox standard error) over the units of
    :func:`video_level`, mean SNR and MACC (with standard errors) over the window rows, and the counts.

    Pearson r and its standard error are ``nan`` with fewer than 3 units (r of 2 points is always +-1).
    """
    if not rows:
        raise DataError(None, "no window to score: every video is shorter than the minimum window")
    units = video_level(rows, p)
    pred = np.array([u["hr_pred"] for u in units], dtype=np.float64)
    gt = np.array([u["hr_gt"] for u in units], dtype=np.float64)
    out: dict = {}
    for key, fn in (("mae", pp.mae), ("rmse", pp.rmse), ("mape", pp.mape)):
        out[key], out[f"{key}_se"] = fn(pred, gt)
    nan = float("nan")
    out["pearson"], out["pearson_se"] = pp.pearson(pred, gt) if len(units) >= 3 else (nan, nan)
    out["snr"], out["snr_se"] = _mean_se(np.array([r.snr for r in rows], dtype=np.float64))
    out["macc"], out["macc_se"] = _mean_se(np.array([r.macc for r in rows], dtype=np.float64))
    out["n_units"] = len(units)
    out["n_videos"] = len({r.video for r in rows})
    return out


# ---- files -----------------------------------------------------------------------------------------


def write_windows_csv(path: str | Path, rows: Sequence[WindowRow]) -> None:
    """Write the window rows as CSV (header :data:`CSV_HEADER`, floats at full precision), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        writer.writerow([getattr(r, name) for name in CSV_HEADER])
    atomic_write_text(Path(path), buf.getvalue())


def bland_altman_stats(units: Sequence[dict]) -> tuple[float, float, float]:
    """(bias, lower, upper) of d = hr_pred - hr_gt: mean d and mean d -+ 1.96 * SD(d).

    SD uses ddof 1 (the toolbox's pandas ``std``); with one unit the limits are ``nan``. The toolbox plots
    gt - pred; affectkit uses pred - gt, so a positive bias means over-estimation.
    """
    if not units:
        raise DataError(None, "Bland-Altman needs at least one unit")
    d = np.array([u["hr_pred"] - u["hr_gt"] for u in units], dtype=np.float64)
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    return bias, bias - 1.96 * sd, bias + 1.96 * sd


def _new_figure(figsize: tuple[float, float], nrows: int = 1):
    """A pyplot-free Agg figure and its axes (no global figure registry, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, squeeze=False)[:, 0]
    return fig, axes


def _save_png(fig, path: str | Path) -> None:
    atomic_save(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def bland_altman_png(path: str | Path, units: Sequence[dict]) -> None:
    """Bland-Altman plot of the units: mean of predicted and true HR vs their difference (pred - gt),
    with the bias line and the +-1.96 SD limits of agreement; written atomically as PNG."""
    bias, lo, hi = bland_altman_stats(units)
    gt = np.array([u["hr_gt"] for u in units], dtype=np.float64)
    pred = np.array([u["hr_pred"] for u in units], dtype=np.float64)
    fig, (ax,) = _new_figure((6.0, 4.5))
    ax.scatter((pred + gt) / 2.0, pred - gt, s=18, alpha=0.7, color="tab:blue")
    ax.axhline(bias, color="black", lw=1.2)
    for y in (lo, hi):
        if math.isfinite(y):
            ax.axhline(y, color="tab:red", lw=1.0, ls="--")
    ax.set_xlabel("Mean of predicted and ground-truth HR (bpm)")
    ax.set_ylabel("Predicted - ground-truth HR (bpm)")
    ax.set_title(f"Bland-Altman (n={len(units)}): bias {bias:.2f} bpm, 95% limits [{lo:.2f}, {hi:.2f}]")
    _save_png(fig, path)


def trace_plot_png(
    path: str | Path,
    signal: object,
    fs: float,
    rows: Sequence[WindowRow],
    title: str,
    p: Preset | None = None,
) -> None:
    """Two-panel PNG for ``predict``: the preset-filtered trace (top) and its spectrogram in bpm (bottom)
    with each row's predicted HR (solid) and, where known, ground-truth HR (dashed) over its window.

    ``p`` defaults to the toolbox preset; written atomically.
    """
    p = p or PRESETS["toolbox"]
    z = process(signal, fs, p)
    fig, (top, bottom) = _new_figure((9.0, 6.0), nrows=2)
    top.plot(np.arange(z.size) / fs, z, lw=0.8, color="tab:green")
    top.set_xlabel("Time (s)")
    top.set_ylabel("Filtered pulse (a.u.)")
    top.set_title(title)
    nper = min(z.size, max(16, int(round(10 * fs))))
    f, t, sxx = sps.spectrogram(z, fs=fs, nperseg=nper, noverlap=nper * 9 // 10, nfft=max(1024, nper))
    bpm = f * 60.0
    keep = (bpm >= p.band[0] * 60.0) & (bpm <= p.band[1] * 60.0)
    bottom.pcolormesh(t, bpm[keep], sxx[keep], shading="auto", cmap="viridis")
    for r in rows:
        bottom.hlines(r.hr_pred, r.start_s, r.end_s, colors="white", lw=2.0)
        if math.isfinite(r.hr_gt):
            bottom.hlines(r.hr_gt, r.start_s, r.end_s, colors="tab:red", lw=1.5, linestyles="--")
    bottom.set_xlim(0.0, z.size / fs)
    bottom.set_xlabel("Time (s)")
    bottom.set_ylabel("Frequency (bpm)")
    bottom.set_title("Spectrogram; lines: per-window HR (white predicted, red dashed ground truth)")
    _save_png(fig, path)
