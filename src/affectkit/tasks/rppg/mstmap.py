"""Multi-scale spatial-temporal maps (MSTmap, CVD / Dual-GAN preprocessing) as consumed by FreqPhys.

Spec §2.1 steps 3-7 and "Loader tensors", from per-frame ROI traces (:mod:`.traces`):

3. per ROI the mean of R, G, B, Y, U, V and the pixel count (done by :class:`.traces.TraceExtractor`);
4. all 63 non-empty ROI subsets (:data:`SUBSETS`, MATLAB ``ff2n`` order): pixel-count weighted means;
5. clips of 300 frames starting at ``floor(0.5 * fps * i)``, ``floor((N - 300) / fps * 2)`` of them, a clip
   being dropped when a frame of it has no face;
6. per clip, row and channel: moving mean (window 3), min-max to [0, 255], rounded to uint8 (the PNGs);
7. clip HR from the clip BVP: periodogram, nfft 3600 at fs 30, arg-max within 0.66-3.0 Hz, x60.

Deviations: traces and the per-frame BVP are first resampled (linear) to 30 fps, because FreqPhys
fixes fs = 30 for its band-pass masks and HR (CVD cut clips at the native rate). Clip indices are the
loop index ``i`` of step 5, so dropped clips leave gaps in the numbering.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from affectkit.core.errors import DataError, require_dir
from affectkit.tasks.rppg.frames import _cv2
from affectkit.tasks.rppg.postprocess import hr_fft
from affectkit.tasks.rppg.traces import Traces, resample

__all__ = [
    "CLIP_LENGTH",
    "FS",
    "HR_BAND",
    "SUBSETS",
    "Clip",
    "bvp_target",
    "clip_hr",
    "clip_starts",
    "clip_tensors",
    "make_clips",
    "normalise_map",
    "pbf_mask",
    "read_clip_folder",
    "read_mst_dataset",
    "resample_to_length",
    "subset_signals",
    "write_clip_folder",
]

CLIP_LENGTH = 300
FS = 30.0
HR_BAND: tuple[float, float] = (0.66, 3.0)
"""FreqPhys physiological band (Hz), 40-180 bpm, for the PBF mask and the clip HR."""
HR_NFFT = 3600

SUBSETS: np.ndarray = np.array([[(k >> (5 - i)) & 1 for i in range(6)] for k in range(1, 64)], dtype=bool)
"""``[63, 6]`` ROI subsets in MATLAB ``ff2n(6)`` order without the empty set: row r is the binary number
r + 1 with ROI 1 the most significant bit (row 0 = ROI 6 alone, row 62 = all six)."""
SUBSETS.setflags(write=False)


def subset_signals(roi_means: np.ndarray, roi_counts: np.ndarray) -> np.ndarray:
    """``[63, T, C]`` pixel-count weighted means ``sum_i n_i mean_i / sum_i n_i`` over each ROI subset.

    ``roi_means [T, 6, C]``, ``roi_counts [T, 6]``; a subset with no pixels in a frame gives 0."""
    m = np.asarray(roi_means, np.float64)
    n = np.asarray(roi_counts, np.float64)
    if m.ndim != 3 or m.shape[1] != 6 or n.shape != m.shape[:2]:
        raise ValueError(f"expected roi_means [T, 6, C] and roi_counts [T, 6], got {m.shape} and {n.shape}")
    s = SUBSETS.astype(np.float64)
    num = np.einsum("sk,tkc->stc", s, m * n[:, :, None])
    den = (s @ n.T)[:, :, None]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def clip_starts(n_frames: int, fps: float, length: int = CLIP_LENGTH) -> list[int]:
    """Start frames of the clips: ``floor(0.5 * fps * i)`` for i < ``floor((N - length) / fps * 2)``.

    Exact rational arithmetic on the float ``fps`` (fps 30 gives 0, 15, 30, ...); [] when N < length."""
    if n_frames < length or fps <= 0:
        return []
    f = Fraction(float(fps))
    count = int((Fraction(n_frames - length) * 2) // f)
    return [int(f * i // 2) for i in range(count)]


def movmean3(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """MATLAB ``movmean(x, 3)`` along ``axis``: centred window of 3, shrinking to 2 at both ends."""
    a = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    n = a.shape[-1]
    if n < 2:
        return np.moveaxis(a.copy(), -1, axis)
    pad = np.concatenate([np.zeros(a.shape[:-1] + (1,)), a, np.zeros(a.shape[:-1] + (1,))], -1)
    total = pad[..., :-2] + pad[..., 1:-1] + pad[..., 2:]
    width = np.full(n, 3.0)
    width[0] = width[-1] = 2.0
    return np.moveaxis(total / width, -1, axis)


def normalise_map(sig: np.ndarray) -> np.ndarray:
    """``[63, L, C]`` -> float32: moving mean (window 3, MATLAB edges) along L, then min-max of each row and
    channel to [0, 255]; a constant row becomes 0."""
    a = movmean3(np.asarray(sig, np.float64), axis=1)
    lo = a.min(axis=1, keepdims=True)
    span = a.max(axis=1, keepdims=True) - lo
    out = np.divide((a - lo) * 255.0, span, out=np.zeros_like(a), where=span > 0)
    return out.astype(np.float32)


def resample_to_length(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of a 1-D signal to exactly ``length`` samples (first and last samples kept),
    as CVD does for the BVP cut of a clip."""
    a = np.asarray(x, np.float64).ravel()
    if a.size == length:
        return a.copy()
    if a.size == 0:
        raise ValueError("cannot resample an empty signal")
    if a.size == 1:
        return np.full(length, a[0])
    return np.interp(np.linspace(0.0, a.size - 1.0, length), np.arange(a.size), a)


def clip_hr(bvp: np.ndarray, fs: float = FS) -> float:
    """Spec step 7: 60 x the periodogram peak (nfft 3600) of the clip BVP within 0.66-3.0 Hz."""
    return hr_fft(np.asarray(bvp, np.float64), fs, band=HR_BAND, nfft=max(HR_NFFT, len(bvp)))


@dataclass
class Clip:
    """One MSTmap clip: ``rgb``/``yuv`` uint8 ``[63, L, 3]`` (rows = ROI subsets, columns = frames),
    ``bvp`` float32 ``[L]`` or None, ``hr`` (bpm) or None. ``start`` is the first frame at 30 fps
    (-1 when read from disk)."""

    video: str
    index: int
    start: int
    rgb: np.ndarray
    yuv: np.ndarray
    bvp: np.ndarray | None
    hr: float | None


def _valid_frames(traces: Traces) -> np.ndarray:
    """Frames with a face box and at least one ROI pixel."""
    return np.asarray(traces.found, bool) & (np.asarray(traces.roi_counts).sum(axis=1) > 0)


def make_clips(
    traces: Traces, bvp: np.ndarray | None, video: str, length: int = CLIP_LENGTH, fps_out: float = FS
) -> list[Clip]:
    """MSTmap clips of a video (spec §2.1 steps 4-7).

    ``bvp`` is the per-frame reference pulse (one sample per trace frame; a signal of another length is
    first mapped proportionally onto the frames by linear resampling). Traces and BVP are resampled to
    ``fps_out`` before cutting; a resampled frame counts as valid only when both source frames around it
    are. Clips with any invalid frame are dropped."""
    valid = _valid_frames(traces).astype(np.float64)
    means, counts = traces.roi_means, traces.roi_counts
    if traces.fps != fps_out:
        means = resample(np.asarray(means, np.float64), traces.fps, fps_out)
        counts = resample(counts, traces.fps, fps_out)
        valid = resample(valid, traces.fps, fps_out)
    ok = valid > 1.0 - 1e-9
    pulse = None
    if bvp is not None:
        pulse = np.asarray(bvp, np.float64).ravel()
        if pulse.size != len(traces):
            pulse = resample_to_length(pulse, len(traces))
        pulse = resample(pulse, traces.fps, fps_out)
    sig = subset_signals(means, counts)
    clips = []
    for i, s in enumerate(clip_starts(sig.shape[1], fps_out, length)):
        if not ok[s : s + length].all():
            continue
        norm = np.round(normalise_map(sig[:, s : s + length]))
        norm = np.clip(norm, 0, 255).astype(np.uint8)
        b = hr = None
        if pulse is not None:
            b = pulse[s : s + length].astype(np.float32)
            hr = clip_hr(b, fps_out)
        clips.append(Clip(video, i, s, norm[..., :3].copy(), norm[..., 3:].copy(), b, hr))
    return clips


def pbf_mask(n: int, fs: float = FS, band: tuple[float, float] = HR_BAND) -> np.ndarray:
    """Boolean rFFT mask (``n // 2 + 1`` bins) keeping ``band[0] <= f <= band[1]`` Hz; bin k is at
    ``k * fs / n`` exactly (T=300 at 30 fps: 24 bins, 0.7-3.0 Hz)."""
    f = np.arange(n // 2 + 1) * fs / n
    return (f >= band[0] - 1e-9) & (f <= band[1] + 1e-9)


def clip_tensors(
    clip: Clip,
    mean: tuple[float, ...] = (0.49,) * 6,
    std: tuple[float, ...] = (0.26,) * 6,
    fs: float = FS,
) -> tuple[np.ndarray, np.ndarray]:
    """FreqPhys loader tensors ``(st_maps [12, 63, L], phys_maps [6, 63, L])``, float32.

    feature = concat(rgb, yuv) / 255, normalised per channel ``(x - mean) / std`` -> ``[6, 63, L]``;
    diff = temporal first difference of feature (last column 0) / its global std (population std,
    ddof 0; unchanged when 0); st = concat(feature, diff); phys = every row of feature band-passed by
    the ideal rFFT mask :func:`pbf_mask`."""
    feat = np.concatenate([clip.rgb, clip.yuv], axis=-1).astype(np.float64) / 255.0  # [63, L, 6]
    feat = np.transpose(feat, (2, 0, 1))
    feat = (feat - np.asarray(mean, np.float64)[:, None, None]) / np.asarray(std, np.float64)[:, None, None]
    diff = np.zeros_like(feat)
    diff[..., :-1] = feat[..., 1:] - feat[..., :-1]
    sd = diff.std()
    if sd > 0:
        diff /= sd
    n = feat.shape[-1]
    spec = np.fft.rfft(feat, axis=-1) * pbf_mask(n, fs)
    phys = np.fft.irfft(spec, n=n, axis=-1)
    return np.concatenate([feat, diff]).astype(np.float32), phys.astype(np.float32)


def bvp_target(clip: Clip) -> np.ndarray:
    """The clip BVP z-scored (float32 ``[L]``); mean-removed only when constant."""
    if clip.bvp is None:
        raise ValueError(f"clip {clip.video}/{clip.index} has no BVP")
    b = np.asarray(clip.bvp, np.float64)
    b = b - b.mean()
    sd = b.std()
    return (b / sd if sd > 0 else b).astype(np.float32)


def write_clip_folder(root: str | Path, clip: Clip) -> Path:
    """Write ``<root>/<video>/<index>/`` with ``img_rgb.png``, ``img_yuv.png`` (63 rows x L columns, RGB
    stored as PNG's BGR via OpenCV), ``bvp.mat`` (key ``bvp``) and ``hr.mat`` (key ``hr``) when known.

    Atomic: written into a temporary folder beside it, then renamed (replacing an existing clip)."""
    from scipy.io import savemat

    cv2 = _cv2()
    parent = Path(root) / clip.video
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / str(clip.index)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{clip.index}.tmp"))
    try:
        for name, img in (("img_rgb.png", clip.rgb), ("img_yuv.png", clip.yuv)):
            if not cv2.imwrite(str(tmp / name), np.ascontiguousarray(np.asarray(img, np.uint8)[..., ::-1])):
                raise OSError(f"cannot write {tmp / name}")
        if clip.bvp is not None:
            savemat(tmp / "bvp.mat", {"bvp": np.asarray(clip.bvp, np.float64)})
        if clip.hr is not None:
            savemat(tmp / "hr.mat", {"hr": float(clip.hr)})
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{clip.index}.old"))
            dest.rename(old / "clip")
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _read_png(path: Path, length: int | None) -> np.ndarray:
    cv2 = _cv2()
    if not path.is_file():
        raise DataError(path, "MSTmap image not found")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(path, "cannot read MSTmap image (corrupt or not a PNG)")
    if img.ndim != 3 or img.shape[0] != 63 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DataError(path, f"expected a 63 x L x 3 uint8 MSTmap image, got {img.shape} {img.dtype}")
    if length is not None and img.shape[1] != length:
        raise DataError(path, f"expected {length} columns (frames), got {img.shape[1]}")
    return np.ascontiguousarray(img[..., ::-1])


def _read_mat(path: Path, key: str) -> np.ndarray | None:
    from scipy.io import loadmat

    if not path.is_file():
        return None
    try:
        data = loadmat(str(path))
    except Exception as e:
        raise DataError(path, f"cannot read .mat file ({e})") from None
    if key not in data:
        raise DataError(path, f"missing key {key!r}", f"found: {', '.join(k for k in data if not k.startswith('__'))}")
    value = np.asarray(data[key], np.float64).ravel()
    if value.size == 0 or not np.all(np.isfinite(value)):
        raise DataError(path, f"{key!r} is empty or not finite")
    return value


def read_clip_folder(path: str | Path, length: int | None = CLIP_LENGTH) -> Clip:
    """Read one ``<video>/<clip_idx>/`` folder. PNGs are required (63 x ``length`` x 3; ``length=None``
    accepts any width); ``bvp.mat``/``hr.mat`` are optional (None when absent). A BVP whose length
    differs from the map width is linearly resampled to it. ``start`` is -1 (unknown)."""
    p = require_dir(path, "MSTmap clip folder")
    rgb = _read_png(p / "img_rgb.png", length)
    yuv = _read_png(p / "img_yuv.png", rgb.shape[1])
    bvp = _read_mat(p / "bvp.mat", "bvp")
    if bvp is not None and bvp.size != rgb.shape[1]:
        bvp = resample_to_length(bvp, rgb.shape[1])
    hr = _read_mat(p / "hr.mat", "hr")
    try:
        index = int(p.name)
    except ValueError:
        raise DataError(p, "clip folder name must be the clip index (an integer)") from None
    return Clip(
        p.parent.name, index, -1, rgb, yuv, None if bvp is None else bvp.astype(np.float32),
        None if hr is None else float(hr[0]),
    )


def read_mst_dataset(root: str | Path, length: int | None = CLIP_LENGTH) -> list[Clip]:
    """All clips of a ``<DATASET>_MST/<video_id>/<clip_idx>/`` tree, sorted by video id then clip index.

    Hidden entries (temporary folders) and non-integer clip folder names are skipped."""
    r = require_dir(root, "MSTmap dataset folder")
    clips = []
    for video in sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")):
        idx = sorted((d for d in video.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
        clips.extend(read_clip_folder(d, length) for d in idx)
    if not clips:
        raise DataError(r, "no MSTmap clip folders found", "expected <root>/<video_id>/<clip_idx>/img_rgb.png")
    return clips
