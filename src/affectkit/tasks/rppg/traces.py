"""Per-frame face traces for rPPG: whole-box mean RGB (input of the classical methods) and the six CVD ROI
means of R, G, B, Y, U, V (input of the MSTmap), streamed one frame at a time.

Y, U, V are the full-range YCbCr of spec §2.1 (Y = .299R + .587G + .114B, U = 128 - .168736R - .331264G
+ .5B, V = 128 + .5R - .418688G - .081312B) computed in floating point. Because they are affine in R, G, B,
the ROI mean of Y/U/V equals the same formula applied to the ROI mean of R/G/B, so only RGB means are
measured per frame (exact up to float rounding; MATLAB's uint8 ``rgb2ycbcr`` would quantise per pixel).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectkit.core.errors import DataError
from affectkit.tasks.rppg.faces import FaceTracker
from affectkit.tasks.rppg.frames import FrameSource, _cv2

__all__ = ["YUV_MATRIX", "YUV_OFFSET", "TraceExtractor", "Traces", "extract_traces", "fill_missing",
           "resample", "rgb_to_yuv"]

YUV_MATRIX = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float64
)
"""Full-range YCbCr rows (Y, U=Cb, V=Cr) applied to R, G, B (spec §2.1)."""
YUV_OFFSET = np.array([0.0, 128.0, 128.0])

_FIELDS = ("rgb", "roi_means", "roi_counts", "found", "boxes")


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """Full-range YCbCr of ``[..., 3]`` RGB values (float64)."""
    return np.asarray(rgb, np.float64) @ YUV_MATRIX.T + YUV_OFFSET


@dataclass
class Traces:
    """Traces of one video. ``rgb [T, 3]`` float64 mean RGB over the whole face box; ``roi_means
    [T, 6, 6]`` float32 ROI means of R, G, B, Y, U, V; ``roi_counts [T, 6]`` int32 ROI pixel counts;
    ``found [T]`` whether a face box existed; ``boxes [T, 4]`` int32 x0, y0, x1, y1 (zeros when none)."""

    fps: float
    rgb: np.ndarray
    roi_means: np.ndarray
    roi_counts: np.ndarray
    found: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.found.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` atomically (temporary file in the same folder, then ``os.replace``)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, fps=np.float64(self.fps), **{k: getattr(self, k) for k in _FIELDS})
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return p

    @classmethod
    def load(cls, path: str | Path) -> Traces:
        """Read a file written by :meth:`save`; DataError naming it when missing, corrupt or incomplete."""
        p = Path(path)
        if not p.is_file():
            raise DataError(p, "traces file not found")
        try:
            with np.load(p, allow_pickle=False) as z:
                missing = [k for k in ("fps", *_FIELDS) if k not in z.files]
                if missing:
                    raise DataError(p, f"not a traces file: missing {', '.join(missing)}")
                t = cls(float(z["fps"]), *(np.asarray(z[k]) for k in _FIELDS))
        except DataError:
            raise
        except Exception as e:  # zipfile/format errors
            raise DataError(p, f"cannot read traces file ({e})") from None
        n = len(t)
        shapes = {"rgb": (n, 3), "roi_means": (n, 6, 6), "roi_counts": (n, 6), "boxes": (n, 4)}
        for k, shape in shapes.items():
            if getattr(t, k).shape != shape:
                raise DataError(p, f"{k} has shape {getattr(t, k).shape}, expected {shape}")
        return t


class TraceExtractor:
    """Accumulate traces frame by frame: ``push(frame)`` per RGB uint8 frame, then ``result()``.

    Per frame the face box is cropped once (a view); the whole-box mean and the six ROI means come
    from ``cv2.mean`` (with the cached ROI masks), so no float copy of the frame is made. ROIs partly
    outside the frame are clipped with the box; their counts shrink accordingly. Frames before the first
    face get zeros and ``found=False``."""

    def __init__(self, fps: float, tracker: FaceTracker | None = None):
        self.fps = float(fps)
        self.tracker = tracker if tracker is not None else FaceTracker()
        self._cv2 = _cv2()
        self._masks: dict[tuple[int, int], tuple[list[np.ndarray], np.ndarray]] = {}
        self._rgb: list[np.ndarray] = []
        self._roi_rgb: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._found: list[bool] = []
        self._boxes: list[np.ndarray] = []

    def _masks_for(self, w: int, h: int) -> tuple[list[np.ndarray], np.ndarray]:
        """uint8 masks (one contiguous array per ROI) and their pixel counts for a full box of w x h."""
        key = (w, h)
        if key not in self._masks:
            if len(self._masks) > 256:
                self._masks.clear()
            m = self.tracker.roi_masks(w, h)
            self._masks[key] = ([np.ascontiguousarray(mk, np.uint8) for mk in m], m.sum((1, 2)).astype(np.int32))
        return self._masks[key]

    def _append_empty(self) -> int:
        self._rgb.append(np.zeros(3))
        self._roi_rgb.append(np.zeros((6, 3)))
        self._counts.append(np.zeros(6, np.int32))
        self._found.append(False)
        self._boxes.append(np.zeros(4, np.int32))
        return len(self._found)

    def push(self, frame_rgb: np.ndarray) -> int:
        """Add one frame's sample; returns the number of frames so far."""
        cv2 = self._cv2
        box, _ = self.tracker.update(frame_rgb)
        raw = self.tracker.raw_box()
        if box is None or raw is None:
            return self._append_empty()
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return self._append_empty()
        crop = frame_rgb[y0:y1, x0:x1]
        bw, bh = int(raw[2] - raw[0]), int(raw[3] - raw[1])
        masks, counts = self._masks_for(bw, bh)
        ox, oy = x0 - int(raw[0]), y0 - int(raw[1])
        clipped = (ox, oy, x1 - x0, y1 - y0) != (0, 0, bw, bh)
        roi = np.zeros((6, 3))
        n = counts.copy()
        for k, mk in enumerate(masks):
            if clipped:
                mk = np.ascontiguousarray(mk[oy : oy + crop.shape[0], ox : ox + crop.shape[1]])
                n[k] = cv2.countNonZero(mk)
            if n[k]:
                roi[k] = cv2.mean(crop, mask=mk)[:3]
        self._rgb.append(np.array(cv2.mean(crop)[:3]))
        self._roi_rgb.append(roi)
        self._counts.append(n)
        self._found.append(True)
        self._boxes.append(np.asarray(box, np.int32))
        return len(self._found)

    def __len__(self) -> int:
        return len(self._found)

    def result(self) -> Traces:
        """The traces so far (arrays are copies)."""
        t = len(self._found)
        roi_rgb = np.asarray(self._roi_rgb, np.float64).reshape(t, 6, 3)
        counts = np.asarray(self._counts, np.int32).reshape(t, 6)
        yuv = rgb_to_yuv(roi_rgb)
        yuv[counts == 0] = 0.0  # an empty ROI has no mean: keep the zero marker for all six channels
        means = np.concatenate([roi_rgb, yuv], axis=-1).astype(np.float32)
        return Traces(
            fps=self.fps,
            rgb=np.asarray(self._rgb, np.float64).reshape(t, 3),
            roi_means=means,
            roi_counts=counts,
            found=np.asarray(self._found, bool).reshape(t),
            boxes=np.asarray(self._boxes, np.int32).reshape(t, 4),
        )


def extract_traces(
    source: FrameSource,
    tracker: FaceTracker | None = None,
    progress: Callable[[int], None] | None = None,
    max_frames: int | None = None,
) -> Traces:
    """Stream ``source.frames()`` through a :class:`TraceExtractor` (one frame in memory at a time).

    ``progress(n)`` is called after each frame with the count so far; ``max_frames`` stops early.
    Raises DataError naming the source when no frame decodes or no frame has a face."""
    if tracker is not None:
        tracker.reset()
    ex = TraceExtractor(source.fps, tracker)
    frames = source.frames()
    try:
        for frame in frames:
            n = ex.push(frame)
            if progress is not None:
                progress(n)
            if max_frames is not None and n >= max_frames:
                break
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    if len(ex) == 0:
        raise DataError(source.name, "no frame could be decoded")
    traces = ex.result()
    if not traces.found.any():
        raise DataError(
            source.name,
            "no face found in any frame",
            "the Haar detector needs a frontal face of at least ~50 px; check the video, or lower min_size",
        )
    return traces


def fill_missing(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Copy of ``x [T, ...]`` where frames with ``found`` False take the value of the nearest found frame
    (ties: the earlier one). Returned unchanged (a copy) when no frame was found."""
    a = np.array(x, copy=True)
    ok = np.asarray(found, bool)
    if ok.shape[0] != a.shape[0]:
        raise ValueError(f"found has {ok.shape[0]} frames, x has {a.shape[0]}")
    idx = np.flatnonzero(ok)
    if idx.size == 0 or idx.size == ok.size:
        return a
    t = np.arange(ok.size)
    right = np.clip(np.searchsorted(idx, t), 0, idx.size - 1)
    left = np.clip(right - 1, 0, idx.size - 1)
    nearest = np.where(np.abs(t - idx[left]) <= np.abs(idx[right] - t), idx[left], idx[right])
    return a[nearest]


def resample(x: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Linear interpolation of ``x [T, ...]`` on the time axis from ``fps_in`` to ``fps_out``.

    Output sample k is at time k / fps_out for every k with k / fps_out <= (T - 1) / fps_in (no
    extrapolation), i.e. ``floor((T - 1) * fps_out / fps_in) + 1`` samples. Float inputs keep their
    dtype, others become float64; equal rates return a float copy."""
    a = np.asarray(x)
    dtype = a.dtype if a.dtype.kind == "f" else np.float64
    if fps_in <= 0 or fps_out <= 0:
        raise ValueError("frame rates must be positive")
    t = a.shape[0]
    if t == 0 or fps_in == fps_out:
        return a.astype(dtype, copy=True)
    n_out = int(np.floor((t - 1) * fps_out / fps_in + 1e-9)) + 1
    pos = np.arange(n_out) * (fps_in / fps_out)
    i0 = np.minimum(np.floor(pos).astype(np.int64), t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    frac = (pos - i0).reshape((-1,) + (1,) * (a.ndim - 1))
    a64 = a.astype(np.float64, copy=False)
    return ((1.0 - frac) * a64[i0] + frac * a64[i1]).astype(dtype)
