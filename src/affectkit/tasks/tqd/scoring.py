"""Data scoring for TQD: how much each clip moves, how clean it looks, and its data type.

Videos are streamed with OpenCV: at most one pair of frames is held in memory (the previous and the
current sampled frame), at a fixed processing resolution and a fixed frame rate.

* Processing resolution: frames are resized (``INTER_AREA``) so that their short side is ``size``
  (default 256). A source whose short side is already ``<= size`` is processed at its native size: it is
  never upsampled, since upsampling invents no detail and would only blur the quality features.
* Frame rate: frames are taken at ``fps`` (default 8, VBench's rate): frame ``i`` of a source at
  ``src_fps`` is kept when it is the first frame of a new ``1 / fps`` time bin (``floor(i * fps / src_fps)``
  increases). A source at or below ``fps`` keeps every frame. Each kept frame carries its time ``i / src_fps``;
  a source without a usable declared rate is taken as already being at ``fps``.

Motion (column ``flow``). Dense Farneback flow between consecutive sampled frames,
``cv2.calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0)`` on 8-bit grey frames. A pair's
magnitudes ``d`` (pixels at the processing resolution, over the pair's time gap ``dt``) are normalised to
**pixels per frame at a 256-pixel short side and the reference rate ``fps``**::

    d_norm = d * (256 / short_side) / (dt * fps)

so a clip gets the same score whether it is stored at 64 or 1080 pixels, at 8 or 30 fps (up to the flow
estimator's own accuracy). Method ``"farneback"`` scores a pair by its mean ``d_norm`` and a clip by the mean
over pairs. Method ``"vbench"`` uses VBench's dynamic-degree statistic instead: a pair's score is the mean of
its top 5 % magnitudes (``int(0.05 * H * W)`` pixels), the clip's score the mean over pairs (normalised the
same way). Both methods also report VBench's ``is_dynamic``: at least ``round(4 * n_frames / 16)`` pairs above
``6.0 * min(H, W) / 256`` pixels, i.e. above 6.0 in normalised units (VBench counts the sampled *frames*, not
the pairs, in that rule; with ``dt = 1 / fps`` the normalised test is VBench's raw test).

Visual quality (column ``vq``), averaged over sampled frames (see :func:`frame_quality`): sharpness (variance
of the Laplacian), high-frequency energy ratio (windowed FFT power above half the Nyquist radius over all
non-DC power), blockiness (8x8-grid discontinuity ratio, on the native-resolution frame where the codec's
grid lies) and a noise estimate (Immerkaer's operator in flat regions). :func:`vq_score` combines them with a
fixed monotone formula, so a clip's ``vq`` does not depend on which other clips were scored. Learned metrics
(DOVER, MUSIQ, LAION aesthetic) need downloaded weights: plug one in as a :class:`QualityPredictor`
(``--vq-model module:attr``); none ships.

Types (column ``type``, see :func:`assign_types`): golden, motion, quality or low, by dataset percentiles.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from affectkit.core.errors import DataError, UsageError

__all__ = [
    "FARNEBACK_PARAMS",
    "FEATURE_COLUMNS",
    "META_COLUMNS",
    "METHODS",
    "REF_SIZE",
    "TYPES",
    "VIDEO_SUFFIXES",
    "MotionAccumulator",
    "MotionResult",
    "QualityAccumulator",
    "QualityPredictor",
    "SampledFrame",
    "ScoringWarning",
    "assign_types",
    "frame_quality",
    "iter_frames",
    "load_quality_predictor",
    "motion_score",
    "processing_size",
    "quality_features",
    "register_quality_predictor",
    "score_video",
    "score_videos",
    "spearman",
    "top_fraction_mean",
    "vbench_is_dynamic",
    "vq_score",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
REF_SIZE = 256
"""Short side (pixels) at which motion scores are expressed."""
METHODS = ("farneback", "vbench")
FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)
"""pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags (Open-Sora's offline stand-in)."""
TYPES = ("golden", "motion", "quality", "low")
META_COLUMNS = ("path", "text", "aes", "flow", "vq", "type")
"""Open-Sora's meta-CSV columns (``path``, ``text``, ``aes``, ``flow``) plus TQD's ``vq`` and ``type``."""
FEATURE_COLUMNS = ("sharpness", "hf_ratio", "blockiness", "noise")
EXTRA_COLUMNS = ("dynamic", "n_frames", "score_error")
"""``dynamic``: VBench's is-dynamic flag (1/0); ``n_frames``: sampled frames; ``score_error``: why a row
has no scores (empty when scored)."""

# Immerkaer's noise operator: the difference of two Laplacians; zero on any locally linear image.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
_VQ_WEIGHTS = {"sharpness": 1.0, "hf_ratio": 4.0, "blockiness": 4.0, "noise": 0.1}


class ScoringWarning(UserWarning):
    """A video that could not be scored (reported, not fatal), when no Output sink is given."""


def _cv2():
    """OpenCV, or a UsageError naming the package to install."""
    try:
        import cv2
    except ImportError:
        raise UsageError("video scoring needs OpenCV", "pip install 'opencv-python-headless<5'") from None
    return cv2


# ---- reading ------------------------------------------------------------------------------------


class SampledFrame(NamedTuple):
    """One frame taken from a video: its index in the source, its time in seconds, the BGR uint8 image at
    the processing resolution and the native-resolution frame (the same array when not resized)."""

    index: int
    time: float
    image: np.ndarray
    source: np.ndarray


def processing_size(height: int, width: int, size: int = REF_SIZE) -> tuple[int, int]:
    """``(height, width)`` with the short side brought down to ``size``; never enlarged."""
    if size <= 0:
        raise UsageError(f"the processing size must be a positive number of pixels, got {size}")
    short = min(height, width)
    if short <= size:
        return int(height), int(width)
    scale = size / short
    if height <= width:
        return int(size), max(1, round(width * scale))
    return max(1, round(height * scale)), int(size)


def _usable_fps(value: float) -> float | None:
    """A container's declared rate when plausible, else None."""
    return float(value) if value and math.isfinite(value) and 0 < value <= 1000 else None


def iter_frames(
    path: str | Path, size: int = REF_SIZE, fps: float = 8.0, max_frames: int | None = None
) -> Iterator[SampledFrame]:
    """Stream a video's frames at ``fps`` and short side ``size`` (see the module doc for both rules).

    Raises DataError naming the file when it is missing or OpenCV cannot open it. A video that decodes no
    frame yields nothing (the caller reports it); ``max_frames`` stops after that many sampled frames."""
    if not fps or fps <= 0:
        raise UsageError(f"the frame rate must be positive, got {fps}")
    from affectkit.components.video import open_capture

    cv2 = _cv2()
    cap = open_capture(path)
    src_fps = _usable_fps(cap.get(cv2.CAP_PROP_FPS)) or float(fps)
    return _sampled(cap, src_fps, float(fps), size, max_frames)


def _sampled(cap: Any, src_fps: float, fps: float, size: int, max_frames: int | None) -> Iterator[SampledFrame]:
    """Keep the first decoded frame of every ``1 / fps`` bin, resized; releases the capture at the end."""
    cv2 = _cv2()
    last_bin, index, taken = -1, 0, 0
    try:
        while max_frames is None or taken < max_frames:
            if not cap.grab():
                return
            t = index / src_fps
            b = math.floor(t * fps + 1e-6)
            index += 1
            if b <= last_bin:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                return
            last_bin = b
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            h, w = processing_size(frame.shape[0], frame.shape[1], size)
            image = frame if (h, w) == frame.shape[:2] else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            taken += 1
            yield SampledFrame(index - 1, t, image, frame)
    finally:
        cap.release()


def _unpack(frame: Any) -> tuple[np.ndarray, float | None, np.ndarray]:
    """``(image, time or None, native image)`` of a SampledFrame or a bare array."""
    if isinstance(frame, SampledFrame):
        return frame.image, frame.time, frame.source
    arr = np.asarray(frame)
    return arr, None, arr


def _gray(image: np.ndarray) -> np.ndarray:
    """8-bit grey version of a 2-D grey or ``[H, W, 3]`` BGR frame (uint8, or float on the 0..255 scale)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return _cv2().cvtColor(arr, _cv2().COLOR_BGR2GRAY)
    if arr.ndim != 2:
        raise ValueError(f"expected a grey [H, W] or BGR [H, W, 3] frame, got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


# ---- motion -------------------------------------------------------------------------------------


def top_fraction_mean(values: np.ndarray, fraction: float = 0.05) -> float:
    """Mean of the largest ``int(fraction * n)`` values (at least one): VBench's per-pair statistic."""
    flat = np.asarray(values, np.float64).ravel()
    if flat.size == 0:
        return math.nan
    k = max(1, int(flat.size * fraction))
    return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())


def vbench_is_dynamic(
    pair_scores: Sequence[float], n_frames: int, short_side: int = REF_SIZE, threshold: float = 6.0,
    count: float = 4.0,
) -> bool:
    """VBench's dynamic-degree rule: at least ``round(count * n_frames / 16)`` pair scores strictly above
    ``threshold * short_side / 256``. Pass raw top-5 % scores with the frames' short side, or scores already
    normalised to a 256-pixel short side with the default. As in VBench, a clip with at least one pair whose
    required count rounds to 0 is dynamic."""
    scores = [float(s) for s in pair_scores]
    if not scores:
        return False
    thres = threshold * short_side / 256.0
    need = round(count * n_frames / 16.0)
    return sum(s > thres for s in scores) >= need


@dataclass
class MotionResult:
    """A clip's motion: ``score`` by ``method`` (normalised px/frame, see the module doc), the per-pair
    scores behind it, the Farneback mean and the VBench top-5 % mean, and VBench's ``is_dynamic``."""

    method: str
    score: float
    pair_scores: list[float]
    flow_mean: float
    flow_top: float
    is_dynamic: bool
    n_frames: int
    height: int = 0
    width: int = 0

    @property
    def n_pairs(self) -> int:
        return len(self.pair_scores)

    def __float__(self) -> float:
        return float(self.score)


@dataclass
class MotionAccumulator:
    """Streaming motion scorer: ``add`` frames one by one (only the previous one is kept), then ``result``.

    ``fps`` is the reference rate (and the assumed rate of frames given without a time); ``ref_size`` the
    reference short side."""

    fps: float = 8.0
    ref_size: int = REF_SIZE
    top_fraction: float = 0.05
    _prev: np.ndarray | None = field(default=None, init=False, repr=False)
    _prev_time: float | None = field(default=None, init=False, repr=False)
    _n_frames: int = field(default=0, init=False)
    _means: list[float] = field(default_factory=list, init=False, repr=False)
    _tops: list[float] = field(default_factory=list, init=False, repr=False)

    def add(self, image: np.ndarray, time: float | None = None) -> None:
        """One more frame (grey or BGR), with its time in seconds when known."""
        cv2 = _cv2()
        gray = _gray(image)
        if self._prev is not None:
            if gray.shape != self._prev.shape:
                raise ValueError(f"frame size changed from {self._prev.shape} to {gray.shape} mid-video")
            flow = cv2.calcOpticalFlowFarneback(self._prev, gray, None, *FARNEBACK_PARAMS)
            mag = np.hypot(flow[..., 0], flow[..., 1])
            dt = 1.0 / self.fps
            if time is not None and self._prev_time is not None and time > self._prev_time:
                dt = time - self._prev_time
            scale = (self.ref_size / min(gray.shape)) / (dt * self.fps)
            self._means.append(float(mag.mean()) * scale)
            self._tops.append(top_fraction_mean(mag, self.top_fraction) * scale)
        self._prev, self._prev_time = gray, time
        self._n_frames += 1

    def result(self, method: str = "farneback") -> MotionResult:
        """The clip's score so far (NaN with fewer than two frames)."""
        if method not in METHODS:
            raise UsageError(f"unknown motion method {method!r}", f"choose one of {', '.join(METHODS)}")
        pairs = self._means if method == "farneback" else self._tops
        mean = float(np.mean(self._means)) if self._means else math.nan
        top = float(np.mean(self._tops)) if self._tops else math.nan
        h, w = self._prev.shape if self._prev is not None else (0, 0)
        return MotionResult(
            method=method,
            score=mean if method == "farneback" else top,
            pair_scores=list(pairs),
            flow_mean=mean,
            flow_top=top,
            is_dynamic=vbench_is_dynamic(self._tops, self._n_frames),
            n_frames=self._n_frames,
            height=int(h),
            width=int(w),
        )


def motion_score(
    frames: Iterable[Any], method: str = "farneback", *, fps: float = 8.0, ref_size: int = REF_SIZE
) -> MotionResult:
    """Motion of a clip from an iterable of frames (SampledFrame from :func:`iter_frames`, or grey / BGR
    arrays taken at ``fps``). ``float(result)`` is the score; see the module doc for the normalisation."""
    if method not in METHODS:
        raise UsageError(f"unknown motion method {method!r}", f"choose one of {', '.join(METHODS)}")
    acc = MotionAccumulator(fps=fps, ref_size=ref_size)
    for frame in frames:
        image, time, _ = _unpack(frame)
        acc.add(image, time)
    return acc.result(method)


# ---- visual quality -----------------------------------------------------------------------------


def _hf_ratio(gray: np.ndarray) -> float:
    """Fraction of the (Hann-windowed, mean-removed) FFT power whose radial frequency is above half the
    Nyquist frequency (per-axis frequencies in units of Nyquist, radius > 0.5), DC excluded."""
    h, w = gray.shape
    g = gray - gray.mean()
    window = np.outer(np.hanning(h), np.hanning(w)) if min(h, w) > 2 else 1.0
    power = np.abs(np.fft.fft2(g * window)) ** 2
    fy = np.fft.fftfreq(h)[:, None] / 0.5
    fx = np.fft.fftfreq(w)[None, :] / 0.5
    radius = np.sqrt(fy**2 + fx**2)
    total = float(power[radius > 0].sum())
    return float(power[radius > 0.5].sum() / total) if total > 1e-12 else 0.0


def _blockiness(gray: np.ndarray, block: int = 8, eps: float = 0.5) -> float:
    """``(on + eps) / (off + eps)``: the mean absolute step across the ``block``-pixel grid lines (``on``)
    over the mean step elsewhere (``off``), grey levels, both directions pooled. 1 = no grid; block coding
    (JPEG, MPEG) raises it, most visibly on smooth content. ``eps`` keeps near-flat frames near 1; 1.0 for
    frames too small to hold a grid."""
    g = gray.astype(np.float64)
    sums = np.zeros(2)
    counts = np.zeros(2)
    for axis in (0, 1):
        n = g.shape[axis]
        if n < 2 * block:
            continue
        steps = np.abs(np.diff(g, axis=axis))
        on_grid = (np.arange(n - 1) + 1) % block == 0
        at = steps.compress(on_grid, axis=axis)
        off = steps.compress(~on_grid, axis=axis)
        sums += (at.sum(), off.sum())
        counts += (at.size, off.size)
    if counts[0] == 0 or counts[1] == 0:
        return 1.0
    on, off = sums / counts
    return float((on + eps) / (off + eps))


def _noise_sigma(gray: np.ndarray, flat_quantile: float = 0.5) -> float:
    """Immerkaer's noise standard deviation (grey levels): ``sqrt(pi / 2) * mean|I * M| / 6`` over the flattest
    ``flat_quantile`` of the pixels (lowest Sobel gradient), so texture and edges are not counted as noise."""
    cv2 = _cv2()
    g = gray.astype(np.float64)
    if min(g.shape) < 3:
        return 0.0
    resp = np.abs(cv2.filter2D(g, cv2.CV_64F, _IMMERKAER, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    grad = np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3))[1:-1, 1:-1]
    flat = grad <= np.quantile(grad, flat_quantile)
    return float(math.sqrt(math.pi / 2) * resp[flat].mean() / 6.0)


def frame_quality(image: np.ndarray, source: np.ndarray | None = None) -> dict[str, float]:
    """The four quality features of one frame (grey levels 0..255): ``sharpness`` = variance of the
    4-neighbour Laplacian, ``hf_ratio`` (see :func:`_hf_ratio`), ``blockiness`` on ``source`` (the
    native-resolution frame, default ``image``) and ``noise`` (Immerkaer sigma in flat regions)."""
    cv2 = _cv2()
    gray = _gray(image).astype(np.float64)
    native = gray if source is None or source is image else _gray(source)
    return {
        "sharpness": float(cv2.Laplacian(gray, cv2.CV_64F, ksize=1).var()),
        "hf_ratio": _hf_ratio(gray),
        "blockiness": _blockiness(native),
        "noise": _noise_sigma(gray),
    }


@dataclass
class QualityAccumulator:
    """Streaming quality features: ``add`` frames, ``result`` gives each feature's mean over frames."""

    _sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURE_COLUMNS, 0.0), init=False)
    n_frames: int = field(default=0, init=False)

    def add(self, image: np.ndarray, source: np.ndarray | None = None) -> None:
        """One more frame (and its native-resolution original for blockiness)."""
        for k, v in frame_quality(image, source).items():
            self._sums[k] += v
        self.n_frames += 1

    def result(self) -> dict[str, float]:
        """Mean of each feature over the frames added (NaN for none)."""
        if not self.n_frames:
            return dict.fromkeys(FEATURE_COLUMNS, math.nan)
        return {k: v / self.n_frames for k, v in self._sums.items()}


def quality_features(frames: Iterable[Any]) -> dict[str, float]:
    """Mean quality features of a clip (SampledFrame or grey / BGR arrays); ValueError for no frames."""
    acc = QualityAccumulator()
    for frame in frames:
        image, _, source = _unpack(frame)
        acc.add(image, source)
    if not acc.n_frames:
        raise ValueError("quality_features needs at least one frame")
    return acc.result()


def vq_score(features: dict[str, Any]) -> Any:
    """One visual-quality number per clip from its features (higher = cleaner), a FIXED formula::

        vq = log10(1 + sharpness) + 4 * hf_ratio - 4 * log2(max(blockiness, 1)) - 0.1 * noise

    Each term is monotone in its feature (sharper / more high-frequency energy up; 8x8 blocking / noise down),
    so blur, JPEG coding and added noise all lower it, and the value does not depend on the other clips of
    the set. The noise term counters the Laplacian variance and FFT power that noise itself adds (sigma 10
    grey levels costs one unit). Values may be numbers or numpy arrays (one entry per clip)."""
    sharp = np.maximum(np.asarray(features["sharpness"], np.float64), 0.0)
    block = np.maximum(np.asarray(features["blockiness"], np.float64), 1.0)
    w = _VQ_WEIGHTS
    out = (
        w["sharpness"] * np.log10(1.0 + sharp)
        + w["hf_ratio"] * np.asarray(features["hf_ratio"], np.float64)
        - w["blockiness"] * np.log2(block)
        - w["noise"] * np.asarray(features["noise"], np.float64)
    )
    return float(out) if np.ndim(out) == 0 else out


# ---- pluggable learned quality metrics ----------------------------------------------------------


@runtime_checkable
class QualityPredictor(Protocol):
    """A learned visual-quality metric (DOVER, MUSIQ, LAION aesthetic, ... from local weights).

    ``__call__`` receives an iterator of RGB uint8 ``[H, W, 3]`` frames at the processing resolution and
    frame rate (streamed: call ``list(frames)`` to hold them) and returns one number, higher = better."""

    name: str

    def __call__(self, frames: Iterator[np.ndarray]) -> float: ...


_PREDICTORS: dict[str, Callable[[], QualityPredictor]] = {}


def register_quality_predictor(name: str, factory: Callable[[], QualityPredictor]) -> None:
    """Make ``--vq-model NAME`` build a predictor with ``factory()`` (called once, when scoring starts)."""
    _PREDICTORS[name] = factory


@dataclass
class _NamedPredictor:
    """A bare callable given a name."""

    name: str
    fn: Callable[[Iterator[np.ndarray]], float]

    def __call__(self, frames: Iterator[np.ndarray]) -> float:
        return self.fn(frames)


def load_quality_predictor(spec: str) -> QualityPredictor:
    """A registered name, or ``module:attr`` (dots allowed in attr): a class is instantiated without
    arguments, an instance or a plain function is used as is. UsageError when it cannot be loaded."""
    if spec in _PREDICTORS:
        obj: Any = _PREDICTORS[spec]()
    else:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            known = ", ".join(sorted(_PREDICTORS)) or "none registered"
            raise UsageError(f"--vq-model {spec!r} is neither a registered name ({known}) nor module:attr",
                             "e.g. --vq-model my_metrics:Dover (a class with name and __call__(frames))")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"cannot load --vq-model {spec!r}: {exc}") from None
        if isinstance(obj, type):
            obj = obj()
    if not callable(obj):
        raise UsageError(f"--vq-model {spec!r} is not callable", "it must map frames to one float")
    if not isinstance(getattr(obj, "name", None), str):
        obj = _NamedPredictor(spec, obj)
    return obj


# ---- types and statistics -----------------------------------------------------------------------


def assign_types(
    flow: Sequence[float], vq: Sequence[float], motion_pct: float = 70, quality_pct: float = 70,
    low_pct: float = 50,
) -> list[str]:
    """Data type of each clip from dataset percentiles (linear interpolation, over the clips whose two
    scores are finite; others get ``""``). With M = flow, Q = vq and Pk the k-th percentile:

    * ``golden``: M >= P[motion_pct](M) and Q >= P[quality_pct](Q)
    * ``motion``: M >= P[motion_pct](M) and Q <= P[low_pct](Q)   (motion-rich, low quality)
    * ``quality``: Q >= P[quality_pct](Q) and M <= P[low_pct](M)  (clean, little motion)
    * ``low``: the rest (including clips between the two cut-offs on one axis).

    ``low_pct`` must not exceed the two high percentiles, so the types never overlap."""
    for name, p in (("motion_pct", motion_pct), ("quality_pct", quality_pct), ("low_pct", low_pct)):
        if not 0 <= p <= 100:
            raise UsageError(f"{name} must be a percentile in [0, 100], got {p}")
    if low_pct > min(motion_pct, quality_pct):
        raise UsageError(f"low_pct ({low_pct}) must not exceed motion_pct ({motion_pct}) or quality_pct "
                         f"({quality_pct})")
    m = np.asarray(flow, np.float64)
    q = np.asarray(vq, np.float64)
    if m.shape != q.shape or m.ndim != 1:
        raise ValueError(f"flow and vq need the same 1-D length, got {m.shape} and {q.shape}")
    ok = np.isfinite(m) & np.isfinite(q)
    out = [""] * m.size
    if not ok.any():
        return out
    m_hi, m_lo = np.percentile(m[ok], [motion_pct, low_pct])
    q_hi, q_lo = np.percentile(q[ok], [quality_pct, low_pct])
    for i in np.flatnonzero(ok):
        if m[i] >= m_hi and q[i] >= q_hi:
            out[i] = "golden"
        elif m[i] >= m_hi and q[i] <= q_lo:
            out[i] = "motion"
        elif q[i] >= q_hi and m[i] <= m_lo:
            out[i] = "quality"
        else:
            out[i] = "low"
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both values are finite (NaN for fewer than two
    pairs or a constant side)."""
    from scipy import stats

    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"spearman needs two sequences of the same length, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


# ---- one video, and a whole source --------------------------------------------------------------


def score_video(
    path: str | Path, size: int = REF_SIZE, fps: float = 8.0, method: str = "farneback",
    predictor: QualityPredictor | None = None, max_frames: int | None = None,
) -> dict[str, Any]:
    """All scores of one video in a single streaming pass (a second pass feeds ``predictor``, if any):
    ``flow``, ``dynamic``, ``n_frames``, the four features and ``vq``. DataError naming the file when it
    cannot be opened, decodes no frame, or has fewer than two sampled frames."""
    if method not in METHODS:
        raise UsageError(f"unknown motion method {method!r}", f"choose one of {', '.join(METHODS)}")
    motion = MotionAccumulator(fps=fps)
    quality = QualityAccumulator()
    for frame in iter_frames(path, size, fps, max_frames):
        motion.add(frame.image, frame.time)
        quality.add(frame.image, frame.source)
    if quality.n_frames == 0:
        raise DataError(path, "no frame could be decoded (empty or corrupt video)")
    if quality.n_frames < 2:
        raise DataError(path, f"only one frame at {fps:g} fps: motion needs at least two")
    m = motion.result(method)
    feats = quality.result()
    if predictor is not None:
        cv2 = _cv2()
        rgb = (cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB) for f in iter_frames(path, size, fps, max_frames))
        vq = float(predictor(rgb))
        if not math.isfinite(vq):
            raise DataError(path, f"quality model {predictor.name} returned {vq}")
    else:
        vq = vq_score(feats)
    return {"flow": m.score, "dynamic": int(m.is_dynamic), "n_frames": m.n_frames, **feats, "vq": vq}


@dataclass
class _Item:
    """One row of the output: the input columns and where its video is."""

    row: dict[str, str]
    video: Path | None
    problem: str = ""
    scores: dict[str, Any] = field(default_factory=dict)


def _items_from_folder(folder: Path) -> list[_Item]:
    """Every video file under ``folder`` (recursively), sorted by relative path."""
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise DataError(folder, f"no video files ({', '.join(VIDEO_SUFFIXES)}) found",
                        "point at a folder of videos or at a meta CSV with a path column")
    return [_Item({"path": str(p)}, p) for p in files]


def _items_from_csv(meta: Path) -> tuple[list[_Item], list[str]]:
    """The rows of a meta CSV (all columns kept as text) and its column order; paths relative to its folder."""
    try:
        with open(meta, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = [dict(r) for r in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(meta, f"not a readable CSV ({exc})") from None
    if "path" not in columns:
        raise DataError(meta, f"no 'path' column (columns: {', '.join(columns) or 'none'})",
                        "a meta CSV needs a path column, relative to the CSV's folder or absolute")
    if not rows:
        raise DataError(meta, "the meta CSV has no rows")
    items = []
    for row in rows:
        clean = {k: ("" if v is None else v) for k, v in row.items() if k is not None}
        raw = clean.get("path", "").strip()
        if not raw:
            items.append(_Item(clean, None, "empty path"))
            continue
        p = Path(raw)
        items.append(_Item(clean, p if p.is_absolute() else meta.parent / p))
    return items, columns


def _relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when possible (POSIX separators), else absolute."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return str(path.resolve())


def _fmt(value: Any) -> str:
    """A CSV cell: empty for missing / non-finite numbers, 7 significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return format(float(value), ".7g") if math.isfinite(value) else ""
    return str(value)


def _write_csv_atomic(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """Write the CSV to a temporary file next to ``path``, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: _fmt(row.get(c)) for c in columns})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _warn(output: Any, message: str) -> None:
    """A warning line on the Output sink when given, else a ScoringWarning."""
    if output is not None:
        output.warn(message)
    else:
        warnings.warn(message, ScoringWarning, stacklevel=3)


def score_videos(
    source: str | Path,
    out_csv: str | Path,
    size: int = REF_SIZE,
    fps: float = 8.0,
    method: str = "farneback",
    output: Any = None,
    on_error: str = "report",
    progress: Callable[[int, int, str], None] | None = None,
    vq_model: str | QualityPredictor | None = None,
    motion_pct: float = 70,
    quality_pct: float = 70,
    low_pct: float = 50,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Score every video of ``source`` and write the Open-Sora-compatible meta CSV ``out_csv`` atomically.

    ``source``: a folder (every .mp4/.avi/.mov/.mkv/.webm under it, recursively, sorted) or a meta CSV with
    a ``path`` column (relative to the CSV's folder, or absolute; every other column is kept). Output
    columns: ``path`` (relative to ``out_csv``'s folder when possible), ``text``, ``aes`` (kept from the
    input, else empty), ``flow``, ``vq``, ``type``, the features, ``dynamic``, ``n_frames``, ``score_error``,
    then the input's other columns. ``vq`` comes from ``vq_model`` (a QualityPredictor, a registered name or
    ``module:attr``) when given, else from :func:`vq_score`; ``type`` from :func:`assign_types`.

    A video that cannot be read (missing, empty, corrupt, too short) is reported: a warning naming it (on
    ``output.warn`` when an Output is given, else a ScoringWarning), counted in the summary and, with
    ``on_error="report"`` (default), kept with empty scores and type; ``"skip"`` drops its row; ``"raise"``
    stops with the DataError. DataError naming ``source`` when no video at all could be read.
    ``progress(i, n, path)`` is called after each video (``i`` from 1 to ``n``). Returns a summary dict."""
    if on_error not in ("report", "skip", "raise"):
        raise UsageError(f"unknown on_error {on_error!r}", "choose report, skip or raise")
    if method not in METHODS:
        raise UsageError(f"unknown motion method {method!r}", f"choose one of {', '.join(METHODS)}")
    src, out = Path(source), Path(out_csv)
    if not src.exists():
        raise DataError(src, "not found", "give a folder of videos or a meta CSV with a path column")
    if src.is_dir():
        items, in_columns = _items_from_folder(src), ["path"]
    elif src.suffix.lower() == ".csv":
        items, in_columns = _items_from_csv(src)
    else:
        raise DataError(src, "expected a folder of videos or a meta CSV (.csv) with a path column")
    predictor = load_quality_predictor(vq_model) if isinstance(vq_model, str) else vq_model

    n = len(items)
    for i, item in enumerate(items, start=1):
        if not item.problem:
            try:
                item.scores = score_video(item.video, size, fps, method, predictor, max_frames)
            except DataError as exc:
                item.problem = exc.message.removeprefix(f"{item.video}: ")
            except (ValueError, _cv2().error) as exc:
                item.problem = f"could not be scored ({str(exc).strip().splitlines()[-1]})"
        if item.problem:
            where = item.video if item.video is not None else f"row {i} of {src}"
            if on_error == "raise":
                raise DataError(where, item.problem)
            _warn(output, f"{where}: {item.problem}; kept with empty scores" if on_error == "report"
                  else f"{where}: {item.problem}; skipped")
        if progress is not None:
            progress(i, n, str(item.video if item.video is not None else ""))

    failed = [it for it in items if it.problem]
    scored = [it for it in items if not it.problem]
    if not scored:
        raise DataError(src, f"none of its {n} video(s) could be read (first: {failed[0].video}: "
                        f"{failed[0].problem})")
    types = assign_types([it.scores["flow"] for it in scored], [it.scores["vq"] for it in scored],
                         motion_pct, quality_pct, low_pct)
    for it, t in zip(scored, types, strict=True):
        it.scores["type"] = t

    keep = items if on_error == "report" else scored
    new = [*META_COLUMNS, *FEATURE_COLUMNS, *EXTRA_COLUMNS]
    columns = new + [c for c in in_columns if c not in new]
    rows = []
    for it in keep:
        row: dict[str, Any] = {**it.row}
        for c in ("flow", "vq", "type", *FEATURE_COLUMNS, "dynamic", "n_frames"):
            row[c] = it.scores.get(c)
        row["score_error"] = it.problem
        if it.video is not None:
            row["path"] = _relative_to(it.video, out.parent)
        rows.append(row)
    _write_csv_atomic(out, columns, rows)

    flows = [it.scores["flow"] for it in scored]
    vqs = [it.scores["vq"] for it in scored]
    return {
        "source": str(src),
        "out": str(out),
        "method": method,
        "size": size,
        "fps": fps,
        "vq_model": predictor.name if predictor is not None else "handcrafted",
        "n_videos": n,
        "n_scored": len(scored),
        "n_failed": len(failed),
        "failed": [{"path": str(it.video) if it.video is not None else "", "problem": it.problem}
                   for it in failed],
        "types": {t: types.count(t) for t in TYPES},
        "n_dynamic": sum(it.scores["dynamic"] for it in scored),
        "flow_vq_spearman": spearman(flows, vqs),
    }
