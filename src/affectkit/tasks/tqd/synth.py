"""The embedded TQD benchmark: procedurally rendered video clips with known motion and visual quality.

Each clip (spec §7.1) is a textured background (oriented sinusoidal stripes or a soft checkerboard with
random period, orientation, phase, contrast and colours: the high-frequency detail that quality
degradations destroy) with 1-3 soft-edged discs or squares moving at ``speed`` px/frame (at the clip's
own resolution), each in its own random direction and bouncing off the borders. Two independent knobs:

- motion: ``speed``; with ``motion_blur`` each frame integrates the scene over ``exposure`` of the frame
  interval (temporal supersampling), so the blur kernel is ``speed * exposure`` px long and fast clips
  get blurrier (the physical origin of the "motion-vision quality dilemma");
- visual quality: ``degradation`` d in [0, 1] maps deterministically (:func:`degradation_params`) to
  Gaussian blur sigma 1.5 d px, down-up resampling by 1 + 2 d (x1 to x3), additive Gaussian noise of
  0.02 d of the range, then per-frame JPEG at quality round(90 - 80 d) (only when d > 0). At d = 0.6 that
  is sigma 0.9, x2.2, noise 0.012, quality 42: mostly high-frequency damage (spec §7.4-7.5).

``make(out, seed, quick)`` writes ``out/clips/clip_00000.avi ...`` (8 fps, 32x32, 16 frames, RGB) and
``out/meta.csv`` (Open-Sora columns ``path, text, aes, flow`` plus ``vq, type`` and the ground truth; see
:data:`META_COLUMNS`). ``aes``, ``flow`` and ``vq`` are left empty for the scorer. Pools:

- ``natural`` (train): speed ~ U(0.05, 2) px/frame at 16 px, degradation rising with speed plus noise,
  exposure U(0.3, 1): motion and quality negatively correlated, golden clips scarce;
- typed train subsets ``golden`` (speed 1-2, d <= 0.1, fast shutter), ``motion`` (speed 1-2,
  d 0.4-0.8), ``quality`` (speed 0.3-0.6: some motion, spec §7.5; d <= 0.1) and ``low`` (speed
  0.1-0.6, d 0.4-0.8);
- ``heldout`` (split test): golden clips never trained on;
- ``pair`` (split test): the same ``content_seed`` rendered as ``golden`` (fast, d = 0), ``degraded``
  (same motion, d 0.5-0.7) and ``static`` (speed 0.05-0.1, d = 0) for the gradient-similarity
  diagnostic (columns ``pair`` and ``variant``).

Speeds above are in px/frame at 16 px and scale with the size (x2 at 32 px); the ``speed`` column is in
px/frame at the clip's resolution. ``type`` is the ground truth from the generator's parameters:
fast = speed >= 0.8 px/frame at 16 px, clean = degradation <= 0.25 (:func:`type_of`); golden = fast and
clean, motion = fast and degraded, quality = slow and clean, low = slow and degraded.

Codec: OpenCV's FFmpeg backend writes FFV1 (lossless) in AVI, so decoded frames equal the rendered
ones bit for bit and a clip can be re-rendered from its meta row (``content_seed``, ``speed``,
``degradation``, ``exposure``). Lossy codecs would add their own unrecorded degradation: at 32x32,
mp4v and Motion-JPEG both decode with a mean absolute error of about 25/255 on striped colour content
(4:2:0 chroma and coarse quantisation), larger than the damage of a golden clip. When FFV1 is missing
the writer falls back to PNG-in-AVI (lossless), then mp4v (.mp4), then MJPG (.avi), and the codec used
is reported. The same seed gives byte-identical files with the same OpenCV/FFmpeg build (files are
written under a temporary name and moved into place).
"""

from __future__ import annotations

import csv
import functools
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError

FPS = 8.0
SIZE = 32
FRAMES = 16
REF_SIZE = 16
"""Speeds of the typed subsets are given in px/frame at this size and scale with the clip size."""
FAST = 0.8
"""A clip is fast when its speed is at least this many px/frame at :data:`REF_SIZE` px."""
CLEAN = 0.25
"""A clip is clean when its degradation is at most this."""
TYPES = ("golden", "motion", "quality", "low")
META_COLUMNS = ("path", "text", "aes", "flow", "vq", "type", "speed", "degradation", "split", "content_seed",
                "subset", "pair", "variant", "exposure", "background", "blur_sigma", "resample", "noise_std",
                "jpeg_quality")
COUNTS = {
    "full": {"natural": 480, "golden": 180, "motion": 180, "quality": 180, "low": 180, "heldout": 200, "pairs": 64},
    "quick": {"natural": 80, "golden": 30, "motion": 30, "quality": 30, "low": 30, "heldout": 34, "pairs": 11},
}
# per subset: speed (px/frame at REF_SIZE), degradation and exposure ranges
SUBSETS = {
    "golden": {"speed": (1.0, 2.0), "degradation": (0.0, 0.1), "exposure": (0.0, 0.15)},
    "motion": {"speed": (1.0, 2.0), "degradation": (0.4, 0.8), "exposure": (0.3, 1.0)},
    "quality": {"speed": (0.3, 0.6), "degradation": (0.0, 0.1), "exposure": (0.0, 0.5)},
    "low": {"speed": (0.1, 0.6), "degradation": (0.4, 0.8), "exposure": (0.3, 1.0)},
}
NATURAL = {"speed": (0.05, 2.0), "exposure": (0.3, 1.0), "base": 0.05, "slope": 0.3, "noise": 0.2, "max": 0.9}
PAIR = {"speed": (1.0, 2.0), "exposure": (0.0, 0.15), "degradation": (0.5, 0.7), "static_speed": (0.05, 0.1)}
PALETTE = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 215, 40),
    "cyan": (40, 200, 210), "magenta": (210, 50, 200), "orange": (240, 140, 30), "white": (240, 240, 240),
    "black": (20, 20, 20), "purple": (120, 50, 170),
}
KINDS = ("stripes", "checker")
# candidate writers: name, fourcc, file suffix; the first that round-trips a probe clip is used
CODECS = (("ffv1", "FFV1", ".avi"), ("png", "MPNG", ".avi"), ("mp4v", "mp4v", ".mp4"), ("mjpg", "MJPG", ".avi"))
_DIRECTIONS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def type_of(speed: float, degradation: float, size: int = SIZE) -> str:
    """The ground-truth data type of a clip from its speed (px/frame at ``size``) and degradation."""
    fast = speed / (size / REF_SIZE) >= FAST
    clean = degradation <= CLEAN
    if fast:
        return "golden" if clean else "motion"
    return "quality" if clean else "low"


def degradation_params(degradation: float) -> dict[str, float]:
    """The visual-quality degradations that level ``degradation`` in [0, 1] stands for."""
    d = float(degradation)
    if not 0.0 <= d <= 1.0:
        raise UsageError(f"degradation must be in [0, 1], got {degradation}")
    return {"blur_sigma": 1.5 * d, "resample": 1.0 + 2.0 * d, "noise_std": 0.02 * d,
            "jpeg_quality": int(round(90 - 80 * d)) if d > 0 else 0}


# ----------------------------------------------------------------------------------------------- rendering


def _luma(rgb: Sequence[float]) -> float:
    """Rec. 601 luma of an RGB triple."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _content(rng: np.random.Generator, size: int, kind: str, channels: int) -> dict[str, Any]:
    """Draw everything about a clip that does not depend on its speed, degradation or exposure.

    The number of draws is fixed, so the same seed gives the same scene whatever the motion and quality.
    """
    names = list(PALETTE)
    drawn_kind = KINDS[int(rng.integers(len(KINDS)))]
    kind = drawn_kind if kind == "random" else kind
    bg_order = rng.permutation(len(names))
    fg, base = names[bg_order[0]], names[bg_order[1]]
    if abs(_luma(PALETTE[fg]) - _luma(PALETTE[base])) < 60:  # keep the texture visible (also in grey)
        fg, base = next((names[i], names[j]) for i in bg_order for j in bg_order
                        if abs(_luma(PALETTE[names[i]]) - _luma(PALETTE[names[j]])) >= 60)
    bg = {
        "kind": kind, "fg": fg, "base": base,
        "period": float(rng.uniform(3.0, 6.0)), "theta": float(rng.uniform(0, np.pi)),
        "phase": rng.uniform(0, 2 * np.pi, size=2), "contrast": float(rng.uniform(0.7, 1.0)),
    }
    n = int(rng.integers(1, 4))
    shape_kinds = rng.integers(0, 2, size=3)
    colour_order = rng.permutation(len(names))
    radii = rng.uniform(0.12, 0.2, size=3) * size
    starts = rng.uniform(0.0, 1.0, size=(3, 2))
    angles = rng.uniform(0, 2 * np.pi, size=3)
    bg_mean = 0.5 * (np.array(PALETTE[fg]) + np.array(PALETTE[base]))
    colours = [names[i] for i in colour_order if names[i] not in (fg, base)
               and (channels == 3 or abs(_luma(PALETTE[names[i]]) - _luma(bg_mean)) >= 50)]
    if not colours:  # grey clips with no colour far from the background mean: take the farthest
        colours = sorted(names, key=lambda c: -abs(_luma(PALETTE[c]) - _luma(bg_mean)))[:1]
    shapes = []
    for i in range(n):
        r = float(radii[i])
        shapes.append({
            "shape": "disc" if shape_kinds[i] == 0 else "square", "colour": colours[i % len(colours)],
            "radius": r, "start": r + starts[i] * (size - 2 * r), "angle": float(angles[i]),
        })
    return {"background": bg, "shapes": shapes}


def _background(bg: dict[str, Any], size: int) -> np.ndarray:
    """The static background image, float RGB in [0, 255], [H, W, 3]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    k = 2 * np.pi / bg["period"]
    if bg["kind"] == "stripes":
        u = xx * np.cos(bg["theta"]) + yy * np.sin(bg["theta"])
        pattern = 0.5 + 0.5 * np.sin(k * u + bg["phase"][0])
    elif bg["kind"] == "checker":
        u = xx * np.cos(bg["theta"]) + yy * np.sin(bg["theta"])
        v = -xx * np.sin(bg["theta"]) + yy * np.cos(bg["theta"])
        prod = np.sin(0.5 * k * u + bg["phase"][0]) * np.sin(0.5 * k * v + bg["phase"][1])
        pattern = 0.5 + 0.5 * np.tanh(4.0 * prod)  # soft-edged cells
    else:
        raise UsageError(f"background kind must be one of {KINDS + ('random',)}, got {bg['kind']!r}")
    pattern = 0.5 + bg["contrast"] * (pattern - 0.5)
    fg, base = np.array(PALETTE[bg["fg"]], float), np.array(PALETTE[bg["base"]], float)
    return base + pattern[..., None] * (fg - base)


def _bounce(p0: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect unbounded 1-D positions back into [lo, hi] (a triangle wave: bouncing off both walls)."""
    span = max(hi - lo, 1e-6)
    u = np.mod(p0 - lo, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def _positions(shape: dict[str, Any], speed: float, times: np.ndarray, size: int) -> np.ndarray:
    """Centre (x, y) of a shape at the given (fractional) frame times, bouncing off the borders: [N, 2]."""
    r = shape["radius"]
    direction = np.array([np.cos(shape["angle"]), np.sin(shape["angle"])])
    free = shape["start"][None, :] + speed * times[:, None] * direction[None, :]
    return np.stack([_bounce(free[:, a], r, size - r) for a in range(2)], axis=1)


def _alpha(shape: dict[str, Any], centre: np.ndarray, size: int) -> np.ndarray:
    """Soft coverage (0..1, about 1 px edge ramp) of a disc or square centred at ``centre``: [H, W]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xx - centre[0], yy - centre[1]
    dist = np.hypot(dx, dy) if shape["shape"] == "disc" else np.maximum(np.abs(dx), np.abs(dy))
    return np.clip(shape["radius"] - dist + 0.5, 0.0, 1.0)


def _scene(content: dict[str, Any], background: np.ndarray, speed: float, times: np.ndarray,
           size: int) -> np.ndarray:
    """Composite frames at the given times (float RGB [N, H, W, 3]); shapes are painted in order."""
    out = np.repeat(background[None], len(times), axis=0)
    for shape in content["shapes"]:
        colour = np.array(PALETTE[shape["colour"]], float)
        for i, centre in enumerate(_positions(shape, speed, times, size)):
            a = _alpha(shape, centre, size)[..., None]
            out[i] = out[i] * (1 - a) + colour * a
    return out


def _sharp_frames(content: dict[str, Any], size: int, frames: int, speed: float, exposure: float,
                  motion_blur: bool) -> np.ndarray:
    """Frames with motion blur: the scene averaged over ``exposure`` of each frame interval: [T, H, W, 3]."""
    background = _background(content["background"], size)
    length = speed * exposure if motion_blur else 0.0
    n_sub = 1 if length < 0.25 else int(math.ceil(length / 0.5)) + 1  # sub-samples <= 0.5 px apart
    offsets = np.linspace(-0.5 * exposure, 0.5 * exposure, n_sub) if n_sub > 1 else np.zeros(1)
    times = (np.arange(frames)[:, None] + offsets[None, :]).reshape(-1)
    scene = _scene(content, background, speed, times, size)
    return scene.reshape(frames, n_sub, size, size, 3).mean(axis=1)


def _degrade(frames: np.ndarray, params: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Blur, down-up resampling, additive noise and JPEG per frame; float [T, H, W, C] -> uint8."""
    import cv2

    t, h, w, c = frames.shape
    out = frames.astype(np.float32)
    sigma, factor = params["blur_sigma"], params["resample"]
    noise = params["noise_std"] * 255.0
    if noise > 0:
        draws = rng.normal(0.0, noise, size=out.shape).astype(np.float32)
    result = np.empty((t, h, w, c), np.uint8)
    for i in range(t):
        img = out[i]
        if sigma >= 0.05:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
        if factor > 1.05:
            small = (max(2, int(round(w / factor))), max(2, int(round(h / factor))))
            img = cv2.resize(cv2.resize(img, small, interpolation=cv2.INTER_AREA), (w, h),
                             interpolation=cv2.INTER_LINEAR)
        img = img.reshape(h, w, c)
        if noise > 0:
            img = img + draws[i]
        u8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if params["jpeg_quality"] > 0:
            bgr = np.ascontiguousarray(u8[..., ::-1]) if c == 3 else u8[..., 0]
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(params["jpeg_quality"])])
            if not ok:
                raise RuntimeError("OpenCV could not JPEG-encode a frame")
            dec = cv2.imdecode(buf, cv2.IMREAD_COLOR if c == 3 else cv2.IMREAD_GRAYSCALE)
            u8 = dec[..., ::-1] if c == 3 else dec[..., None]
        result[i] = u8
    return result


def _direction_word(angle: float) -> str:
    """Compass word for an angle in image coordinates (y down)."""
    return _DIRECTIONS[int(round(angle / (np.pi / 4))) % 8]


def _article(word: str) -> str:
    """"a" or "an" before ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def caption(content: dict[str, Any], speed: float, size: int = SIZE) -> str:
    """A short caption such as "a red disc moving left over blue stripes"."""
    shapes = content["shapes"]
    things = [f"{_article(s['colour'])} {s['colour']} {s['shape']}" for s in shapes]
    subject = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    ref = speed / (size / REF_SIZE)
    # one shape: name its initial direction; several shapes move in different directions
    where = f" {_direction_word(shapes[0]['angle'])}" if len(shapes) == 1 else ""
    verb = "resting" if ref < 0.2 else f"drifting slowly{where}" if ref < FAST else (
        f"moving fast{where}" if ref >= 1.5 else f"moving{where}")
    bg = content["background"]
    backdrop = (f"{bg['fg']} stripes" if bg["kind"] == "stripes"
                else f"{_article(bg['fg'])} {bg['fg']} and {bg['base']} checkerboard")
    return f"{subject} {verb} over {backdrop}"


def render_clip(rng: np.random.Generator, size: int = SIZE, frames: int = FRAMES, speed: float = 1.0,
                degradation: float = 0.0, motion_blur: bool = True, channels: int = 3, kind: str = "random",
                exposure: float = 0.5, info: dict | None = None) -> np.ndarray:
    """Render one clip: uint8 [T, H, W, C].

    ``speed`` is in px/frame at this ``size``; ``kind`` is the background (``stripes``, ``checker`` or
    ``random``); ``exposure`` is the shutter-open fraction of the frame interval (0.5 = a 180-degree
    shutter) that sets the motion-blur length ``speed * exposure`` px. The scene is drawn from ``rng``
    first (a fixed number of draws), then the noise, so the same seed gives the same content at any
    speed, degradation or exposure. When ``info`` is a dict it receives the parameters used (background,
    shapes, caption, exposure, blur length and :func:`degradation_params`).
    """
    if size < 8 or frames < 1:
        raise UsageError(f"size must be >= 8 and frames >= 1, got size={size}, frames={frames}")
    if channels not in (1, 3):
        raise UsageError(f"channels must be 1 or 3, got {channels}")
    if kind not in KINDS + ("random",):
        raise UsageError(f"kind must be one of {KINDS + ('random',)}, got {kind!r}")
    if speed < 0 or not 0 <= exposure <= 1:
        raise UsageError(f"speed must be >= 0 and exposure in [0, 1], got speed={speed}, exposure={exposure}")
    params = degradation_params(degradation)
    content = _content(rng, size, kind, channels)
    clip = _sharp_frames(content, size, frames, float(speed), float(exposure), motion_blur)
    if channels == 1:
        clip = (clip @ np.array([0.299, 0.587, 0.114]))[..., None]
    out = _degrade(clip, params, rng)
    if info is not None:
        info.update(params)
        info.update({"background": content["background"]["kind"], "content": content,
                     "caption": caption(content, speed, size), "exposure": float(exposure),
                     "blur_length": float(speed * exposure) if motion_blur else 0.0})
    return out


# ------------------------------------------------------------------------------------------------- video io


def _write_video(path: Path, clip: np.ndarray, fourcc: str) -> None:
    """Write uint8 RGB [T, H, W, 3] with OpenCV under a temporary name, then move it to ``path``."""
    import cv2

    t, h, w, _ = clip.shape
    # same folder (so os.replace is atomic) and same suffix (FFmpeg picks the container from it)
    tmp = str(path.with_name(f".{path.stem}.{os.getpid()}.part{path.suffix}"))
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), FPS, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {fourcc} video to {path}")
        try:
            for frame in clip:
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        finally:
            writer.release()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_clip(path: str | Path) -> np.ndarray:
    """Read a video back with OpenCV: uint8 RGB [T, H, W, 3].

    Raises DataError naming the file when it is missing, unreadable, empty, or shorter than the frame
    count in its header (a truncated file; one frame or 5 % of slack is allowed because some containers
    only estimate that count from the duration).
    """
    import cv2

    from affectkit.components.video import open_capture

    p = Path(path)
    cap = open_capture(p)
    try:
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            frames.append(frame[:, :, ::-1])
    except cv2.error as exc:
        raise DataError(p, f"unreadable video ({exc})") from None
    finally:
        cap.release()
    if not frames:
        raise DataError(p, "empty or unreadable video (no frame decoded)")
    if declared - len(frames) > max(1, declared // 20):
        raise DataError(p, f"truncated video: decoded {len(frames)} of the {declared} frames in its header")
    return np.ascontiguousarray(np.stack(frames))


@functools.lru_cache(maxsize=1)
def choose_codec() -> dict[str, Any]:
    """The first writer in :data:`CODECS` whose probe clip OpenCV reads back with every frame.

    Returns name, fourcc, suffix and the probe's mean absolute decoding error (0 = lossless).
    """
    rng = np.random.default_rng(0)
    probe = render_clip(rng, size=SIZE, frames=4, speed=2.0)
    tried = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fourcc, suffix in CODECS:
            path = Path(tmp) / f"probe{suffix}"
            try:
                _write_video(path, probe, fourcc)
                back = load_clip(path)
            except (RuntimeError, DataError) as exc:
                tried.append(f"{name}: {exc}")
                continue
            if back.shape == probe.shape:
                mae = float(np.abs(back.astype(np.float64) - probe).mean())
                return {"name": name, "fourcc": fourcc, "suffix": suffix, "probe_mae": mae, "lossless": mae == 0.0}
            tried.append(f"{name}: read back {back.shape}, wrote {probe.shape}")
    raise RuntimeError("no OpenCV video writer round-trips a clip here: " + "; ".join(tried))


# ------------------------------------------------------------------------------------------------- the pool


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # average the ranks of ties
            tie = x == v
            if tie.sum() > 1:
                r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _row(subset: str, split: str, speed16: float, degradation: float, exposure: float, content_seed: int,
         size: int, pair: str = "", variant: str = "") -> dict[str, Any]:
    """A planned clip (speed converted to px/frame at ``size``)."""
    speed = speed16 * size / REF_SIZE
    return {"subset": subset, "split": split, "speed": speed, "degradation": degradation, "exposure": exposure,
            "content_seed": int(content_seed), "pair": pair, "variant": variant,
            "type": type_of(speed, degradation, size)}


def plan(seed: int, counts: dict[str, int], size: int = SIZE) -> list[dict[str, Any]]:
    """The clips of a pool with their ground-truth parameters, in file order."""
    missing = set(COUNTS["full"]) - set(counts)
    if missing:
        raise UsageError(f"counts lacks {sorted(missing)}")
    rng = np.random.default_rng([seed, 7])
    n_contents = sum(v for k, v in counts.items() if k in COUNTS["full"])
    seeds = iter(rng.choice(2**31 - 1, size=n_contents, replace=False).tolist())
    rows = []
    nat = NATURAL
    for _ in range(counts["natural"]):
        s = float(rng.uniform(*nat["speed"]))
        d = float(np.clip(nat["base"] + nat["slope"] * s + rng.normal(0, nat["noise"]), 0.0, nat["max"]))
        rows.append(_row("natural", "train", s, d, float(rng.uniform(*nat["exposure"])), next(seeds), size))
    for kind in TYPES:
        r = SUBSETS[kind]
        for _ in range(counts[kind]):
            rows.append(_row(kind, "train", float(rng.uniform(*r["speed"])), float(rng.uniform(*r["degradation"])),
                             float(rng.uniform(*r["exposure"])), next(seeds), size))
    g = SUBSETS["golden"]
    for _ in range(counts["heldout"]):
        rows.append(_row("heldout", "test", float(rng.uniform(*g["speed"])), float(rng.uniform(*g["degradation"])),
                         float(rng.uniform(*g["exposure"])), next(seeds), size))
    for i in range(counts["pairs"]):
        s, e = float(rng.uniform(*PAIR["speed"])), float(rng.uniform(*PAIR["exposure"]))
        d, slow = float(rng.uniform(*PAIR["degradation"])), float(rng.uniform(*PAIR["static_speed"]))
        cs, pid = next(seeds), f"p{i:03d}"
        rows.append(_row("pair", "test", s, 0.0, e, cs, size, pid, "golden"))
        rows.append(_row("pair", "test", s, d, e, cs, size, pid, "degraded"))
        rows.append(_row("pair", "test", slow, 0.0, e, cs, size, pid, "static"))
    return rows


def _fmt(v: float) -> str:
    """A float written for the CSV (6 significant digits, stable across runs)."""
    return f"{v:.6g}"


README = """affectkit embedded TQD benchmark (procedural; seed {seed}, {mode})

clips/clip_NNNNN{suffix}  {size}x{size} RGB, {frames} frames at {fps:g} fps, codec {codec} (lossless: {lossless})
meta.csv                 Open-Sora columns path, text, aes, flow (aes/flow/vq empty: run the scorer), vq,
                         type (ground truth: golden|motion|quality|low from speed and degradation), speed
                         (px/frame at {size} px), degradation (0 clean .. 1), split (train|test), content_seed,
                         subset (natural|golden|motion|quality|low|heldout|pair), pair, variant
                         (golden|degraded|static), exposure, background, blur_sigma, resample, noise_std,
                         jpeg_quality
Thresholds: fast = speed >= {fast:g} px/frame at {ref} px (x{scale:g} here), clean = degradation <= {clean:g}.
Held-out golden test clips: split == test and subset == heldout. Generated by affectkit.tasks.tqd.synth.
"""


def make(out: Path, seed: int, quick: bool, counts: dict[str, int] | None = None, size: int = SIZE,
         frames: int = FRAMES) -> dict[str, Any]:
    """Write the benchmark (clips + meta.csv + README.txt) under ``out`` and return the known truth.

    ``counts`` overrides the pool sizes of :data:`COUNTS` (keys natural, golden, motion, quality, low,
    heldout, pairs); the same seed gives byte-identical files with the same OpenCV build.
    """
    out = Path(out)
    counts = dict(counts if counts is not None else COUNTS["quick" if quick else "full"])
    codec = choose_codec()
    rows = plan(seed, counts, size)
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    names = set()
    for i, row in enumerate(rows):
        info: dict[str, Any] = {}
        clip = render_clip(np.random.default_rng(row["content_seed"]), size=size, frames=frames, speed=row["speed"],
                           degradation=row["degradation"], exposure=row["exposure"], info=info)
        name = f"clip_{i:05d}{codec['suffix']}"
        names.add(name)
        _write_video(clips / name, clip, codec["fourcc"])
        row.update({"path": f"clips/{name}", "text": info["caption"], "background": info["background"],
                    "blur_sigma": info["blur_sigma"], "resample": info["resample"], "noise_std": info["noise_std"],
                    "jpeg_quality": info["jpeg_quality"]})
    for stale in clips.glob("clip_*"):  # clips of an earlier, larger pool in the same folder
        if stale.name not in names and stale.suffix in (".avi", ".mp4"):
            stale.unlink()
    _write_meta(out / "meta.csv", rows)
    scale = size / REF_SIZE
    (out / "README.txt").write_text(README.format(
        seed=seed, mode="quick" if quick else "full", suffix=codec["suffix"], size=size, frames=frames, fps=FPS,
        codec=codec["name"], lossless=codec["lossless"], fast=FAST, ref=REF_SIZE, scale=scale, clean=CLEAN))
    return _truth(rows, codec, seed, quick, size, frames, out)


def _write_meta(path: Path, rows: list[dict[str, Any]]) -> None:
    """meta.csv with :data:`META_COLUMNS`, written under a temporary name then moved into place."""
    floats = ("speed", "degradation", "exposure", "blur_sigma", "resample", "noise_std")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(META_COLUMNS), lineterminator="\n")
        w.writeheader()
        for row in rows:
            rec = {k: row.get(k, "") for k in META_COLUMNS}
            rec.update({k: _fmt(row[k]) for k in floats})
            rec.update({"aes": "", "flow": "", "vq": ""})
            w.writerow(rec)
    os.replace(tmp, path)


def _truth(rows: list[dict[str, Any]], codec: dict[str, Any], seed: int, quick: bool, size: int, frames: int,
           out: Path) -> dict[str, Any]:
    """Counts per split/type and subset, the natural pool's dilemma statistic and the codec."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["split"], {t: 0 for t in TYPES})[row["type"]] += 1
    subsets: dict[str, int] = {}
    for row in rows:
        subsets[row["subset"]] = subsets.get(row["subset"], 0) + 1
    nat = [r for r in rows if r["subset"] == "natural"]
    rho = spearman([r["speed"] for r in nat], [r["degradation"] for r in nat]) if len(nat) > 2 else float("nan")
    nat_types = {t: sum(r["type"] == t for r in nat) for t in TYPES}
    return {
        "out": str(out), "meta": str(out / "meta.csv"), "seed": seed, "quick": quick, "n_clips": len(rows),
        "size": size, "frames": frames, "fps": FPS, "counts": counts, "subsets": subsets,
        "natural_types": nat_types, "natural_spearman_speed_degradation": rho,
        "natural_spearman_speed_quality": -rho,
        "n_pairs": sum(r["variant"] == "golden" for r in rows),
        "codec": {k: codec[k] for k in ("name", "fourcc", "suffix", "lossless", "probe_mae")},
        "thresholds": {"fast_px_per_frame": FAST * size / REF_SIZE, "clean_degradation": CLEAN},
    }
