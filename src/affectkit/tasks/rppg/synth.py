"""The embedded rPPG benchmark: face videos with a known pulse, written in the UBFC-rPPG DATASET_2 layout.

``make(out, seed, quick)`` writes ``out/subject<N>/vid.avi`` and ``out/subject<N>/ground_truth.txt`` (three
whitespace-separated rows, one value per frame: PPG waveform, instantaneous heart rate in bpm, time in s),
``out/splits.csv`` (subject, split, subset, hr_mean, skin_tone, face, nuisances) and ``out/README.txt``.

Each video (spec §7.2, made realistic):

- pulse: real PPG morphology (beats of heartpy's example recordings, :mod:`.ppg_source`) following a
  known, slowly varying heart rate (mean 45-150 bpm, a smooth drift of 1-2.5 bpm plus respiratory sinus
  arrhythmia of 1.5-3.5 bpm at 0.15-0.35 Hz, so +-3-6 bpm in all);
- face: one of three kinds, each checked with OpenCV's Haar cascade on the first frame: ``astronaut``
  (the colour portrait shipped with scikit-image), ``lfw`` (one of the first 100 grey Labeled Faces in
  the Wild crops shipped with scikit-image, upscaled onto a drawn head) and ``drawn`` (a face drawn with
  OpenCV). The skin is recoloured to a skin albedo drawn between Fitzpatrick-like tones I-VI, modulated by
  the photograph's luminance so the face structure stays;
- image model: skin pixel = albedo * shading * I(t) * (1 + a * s_c * p(t)), a = 0.003-0.006 (varying over
  the face), blood-volume signature s = (0.33, 0.77, 0.53); pixels off the skin carry no pulse; sensor
  noise N(0, sigma) DN, then rounding to uint8;
- ``clean`` subset: sensor noise 1.5-2.5 DN and slight natural motion (<= 1 px);
- ``hard`` subset: head motion (+-3-6 px at 0.2-0.5 Hz and a 2-5 % scale change), slow illumination drift
  (3-8 % at 0.03-0.12 Hz), a colour-neutral 1 % flicker inside 0.7-3 Hz at least 15 bpm away from the
  heart rate, sensor noise 3-5 DN and a JPEG round trip (quality 60-75) per frame before writing.

Videos are Motion-JPEG AVI (OpenCV's built-in encoder, quality 95, about 6.5 KB per noisy 160x120 frame:
the full set is about 280 MB) at 30 fps; ``codec="ffv1"`` writes lossless FFV1 instead (about 4x larger,
over 1 GB for the full set). Everything derives from ``seed``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affectkit.tasks.rppg import ppg_source
from affectkit.tasks.rppg.postprocess import hr_fft, next_pow2

FPS = 30.0
PULSATILITY = np.array([0.33, 0.77, 0.53], dtype=np.float32)
"""Relative pulse amplitude per channel (R, G, B): the blood-volume pulse signature of skin."""
SKIN_TONES = np.array([  # Fitzpatrick-like skin albedos as RGB camera values (I lightest ... VI darkest)
    [236, 200, 178], [222, 178, 150], [200, 152, 118], [168, 118, 86], [126, 84, 60], [86, 56, 42]],
    dtype=np.float32)
FACE_KINDS = ("astronaut", "lfw", "drawn")
DEFAULT_SIZE = (160, 120)
"""Frame (width, height) in pixels."""
SIZES = {
    "quick": {"train": 6, "valid": 2, "test_clean": 3, "test_hard": 3, "seconds": 20.0},
    "full": {"train": 20, "valid": 4, "test_clean": 12, "test_hard": 12, "seconds": 30.0},
}
_HAAR_MIN_NEIGHBORS = 4
_NOISE_BANK = 61  # distinct noise frames per video, drawn at random for every frame


@dataclass
class Plan:
    """Everything random about one subject's video, drawn before rendering."""

    subject: int
    split: str
    subset: str
    face: str
    hr: np.ndarray
    ppg: np.ndarray
    tone: float
    amp: float
    noise: float
    motion: dict = field(default_factory=dict)
    illum: dict = field(default_factory=dict)
    flicker: dict = field(default_factory=dict)
    jpeg: int = 0


# ------------------------------------------------------------------ assets


def _skimage_data() -> Path | None:
    """scikit-image's bundled ``data`` folder (None if absent)."""
    return ppg_source.package_data_dir("skimage", "astronaut.png")


def _astronaut() -> np.ndarray | None:
    """The astronaut portrait as float32 RGB (512 x 512), or None."""
    import cv2

    folder = _skimage_data()
    img = cv2.imread(str(folder / "astronaut.png"), cv2.IMREAD_COLOR) if folder else None
    return None if img is None else img[:, :, ::-1].astype(np.float32)


def _lfw_faces() -> np.ndarray | None:
    """The first 100 LFW face crops (grey, 25 x 25, values 0-1), or None."""
    folder = _skimage_data()
    path = folder / "lfw_subset.npy" if folder else None
    if path is None or not path.is_file():
        return None
    return np.load(path)[:100].astype(np.float32)


_ASTRONAUT_FACE = (177.0, 66.0, 95.0, 95.0)  # Haar box (x, y, w, h) of the face in astronaut.png


# ------------------------------------------------------------------ drawing helpers


def _ellipse_mask(w: int, h: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """1 inside the ellipse, 0 outside (float32)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0).astype(np.float32)


def _ellipse_radius(w: int, h: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """Normalised elliptical radius (1 on the ellipse)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)


def _soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Feather a mask with a Gaussian blur of ``sigma`` pixels."""
    import cv2

    return cv2.GaussianBlur(mask, (0, 0), max(sigma, 0.3))


def _smooth_field(rng: np.random.Generator, w: int, h: int, scale: float) -> np.ndarray:
    """A smooth random field, zero mean, unit max-abs, with features about ``scale`` pixels large."""
    import cv2

    coarse = rng.standard_normal((max(2, int(h / scale) + 2), max(2, int(w / scale) + 2))).astype(np.float32)
    f = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    f -= f.mean()
    return f / max(float(np.abs(f).max()), 1e-6)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """An indoor-looking static background: a tinted gradient wall, a few soft panels, faint texture."""
    import cv2

    base = rng.uniform(60, 220) * rng.uniform(0.8, 1.15, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = 1.0 + rng.uniform(-0.25, 0.25) * (xx / w - 0.5) + rng.uniform(-0.2, 0.2) * (yy / h - 0.5)
    bg = grad[..., None] * base.astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.uniform(0, w * 0.8)), int(rng.uniform(0, h * 0.8))
        x1, y1 = x0 + int(rng.uniform(0.1, 0.5) * w), y0 + int(rng.uniform(0.1, 0.6) * h)
        panel = np.zeros((h, w), np.float32)
        cv2.rectangle(panel, (x0, y0), (x1, y1), 1.0, -1)
        panel = _soften(panel, 0.01 * h)[..., None]
        bg = bg * (1 - panel) + panel * rng.uniform(30, 230, size=3).astype(np.float32)
    bg *= 1.0 + 0.04 * _smooth_field(rng, w, h, 0.05 * h)[..., None]
    return np.clip(bg, 0, 255).astype(np.float32)


def _luma(rgb: np.ndarray) -> float:
    """Rec. 601 luma of an RGB colour."""
    return float(np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def _hair_colour(rng: np.random.Generator, albedo: np.ndarray) -> np.ndarray:
    """A hair colour darker than the skin (at most 70 % of its luma), from black to brown."""
    tint = np.array([1.0, rng.uniform(0.7, 0.9), rng.uniform(0.5, 0.8)], np.float32)
    level = rng.uniform(0.2, 0.7) * _luma(albedo) / _luma(tint)
    return (level * tint).astype(np.float32)


def _albedo(tone: float) -> np.ndarray:
    """Skin albedo (RGB) at a continuous tone in [0, 5] (0 = type I, 5 = type VI)."""
    i = min(int(tone), 4)
    f = tone - i
    return (1 - f) * SKIN_TONES[i] + f * SKIN_TONES[i + 1]


def _ellipsoid_shading(radius: np.ndarray, light: float) -> np.ndarray:
    """Lambert-like shading of a convex head: brighter in the middle, darker at the rim, lit from one side."""
    h, w = radius.shape
    side = 1.0 + light * (np.arange(w, dtype=np.float32) / w - 0.5)
    return (0.72 + 0.3 * np.sqrt(np.clip(1.0 - radius**2, 0.0, 1.0))) * side[None, :]


@dataclass
class Sprite:
    """The moving person at the neutral pose, in frame coordinates: colour ``rgb`` (albedo x shading),
    coverage ``alpha`` and pulse weight ``skin`` (0 off the skin, ~1 on it), and the face centre."""

    rgb: np.ndarray
    alpha: np.ndarray
    skin: np.ndarray
    center: tuple[float, float]
    background: np.ndarray | None = None


def _body(w: int, h: int, cx: float, cy: float, fh: float, albedo: np.ndarray,
          shirt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neck (skin) and shoulders (shirt) below a head of height ``fh`` centred at (cx, cy)."""
    import cv2

    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    skin = np.zeros((h, w), np.float32)
    neck = np.zeros((h, w), np.float32)
    nw = 0.2 * fh
    cv2.rectangle(neck, (int(cx - nw), int(cy + 0.2 * fh)), (int(cx + nw), int(cy + 0.85 * fh)), 1.0, -1)
    shoulders = np.zeros((h, w), np.float32)
    cv2.ellipse(shoulders, (int(cx), int(cy + 1.25 * fh)), (int(0.95 * fh), int(0.5 * fh)), 0, 0, 360, 1.0, -1)
    neck_shade = np.float32(0.8)
    rgb += neck[..., None] * albedo * neck_shade
    skin += neck
    alpha += neck
    rgb = rgb * (1 - shoulders[..., None]) + shoulders[..., None] * shirt
    skin *= 1 - shoulders
    alpha = np.maximum(alpha, shoulders)
    return rgb, alpha, skin


def _head_parts(w: int, h: int, cx: float, cy: float, fh: float, hair: np.ndarray, light: float,
                albedo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Drawn head: skin ellipse with shading and a hair cap. Returns rgb, alpha, skin, face-ellipse radius."""
    import cv2

    ax, ay = 0.39 * fh, 0.52 * fh
    r = _ellipse_radius(w, h, cx, cy, ax, ay)
    head = (r <= 1.0).astype(np.float32)
    rgb = head[..., None] * albedo * _ellipsoid_shading(np.minimum(r, 1.0), light)[..., None]
    hair_m = np.zeros((h, w), np.float32)
    cv2.ellipse(hair_m, (int(cx), int(cy - 0.12 * fh)), (int(0.44 * fh), int(0.5 * fh)), 0, 180, 360, 1.0, -1)
    cut = _ellipse_mask(w, h, cx, cy + 0.05 * fh, 0.37 * fh, 0.47 * fh)
    hair_m = np.clip(hair_m * (1 - cut * (np.mgrid[0:h, 0:w][0] > cy - 0.32 * fh)), 0, 1)
    rgb = rgb * (1 - hair_m[..., None]) + hair_m[..., None] * hair
    alpha = np.maximum(head, hair_m)
    skin = head * (1 - hair_m)
    return rgb, alpha, skin, r


def _combine(lower: tuple, upper: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint layer ``upper`` (rgb, alpha, skin) over ``lower``."""
    a = upper[1][..., None]
    rgb = lower[0] * (1 - a) + upper[0] * a
    alpha = np.maximum(lower[1], upper[1])
    skin = lower[2] * (1 - upper[1]) + upper[2] * upper[1]
    return rgb, alpha, skin


def _draw_features(rgb: np.ndarray, skin: np.ndarray, cx: float, cy: float, fh: float, albedo: np.ndarray,
                   rng: np.random.Generator) -> None:
    """Eyes, brows, nose and mouth drawn in place; features are taken out of the skin mask."""
    import cv2

    ss = 4  # sub-pixel drawing precision (shift bits)

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * (1 << ss))), int(round(y * (1 << ss)))

    def s(v: float) -> int:
        return max(1, int(round(v * (1 << ss))))

    feat = np.zeros(skin.shape, np.float32)
    dark = tuple(float(v) for v in albedo * rng.uniform(0.2, 0.35))
    brow = tuple(float(v) for v in rng.uniform(20, 70) * np.array([1.0, 0.85, 0.7]))
    lips = tuple(float(v) for v in np.clip(albedo * np.array([0.75, 0.45, 0.45]), 0, 255))
    eye_y, eye_dx = cy - rng.uniform(0.04, 0.08) * fh, rng.uniform(0.15, 0.18) * fh
    eye_w, eye_h = rng.uniform(0.07, 0.09) * fh, rng.uniform(0.03, 0.04) * fh
    socket = np.zeros(skin.shape, np.float32)
    for side in (-1, 1):
        cv2.ellipse(socket, p(cx + side * eye_dx, eye_y - 0.01 * fh), (s(1.5 * eye_w), s(3.0 * eye_h)), 0, 0, 360,
                    1.0, -1, cv2.LINE_AA, ss)
    rgb *= (1.0 - 0.25 * _soften(socket, 0.03 * fh))[..., None]  # orbital shadow
    sclera = tuple(float(v) for v in np.minimum(albedo * 1.6 + 30.0, 235.0))
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(rgb, p(ex, eye_y), (s(eye_w), s(eye_h)), 0, 0, 360, sclera, -1, cv2.LINE_AA, ss)
        cv2.circle(rgb, p(ex, eye_y), s(0.75 * eye_h + 0.5), (35.0, 28.0, 24.0), -1, cv2.LINE_AA, ss)
        cv2.ellipse(feat, p(ex, eye_y), (s(eye_w), s(eye_h)), 0, 0, 360, 1.0, -1, cv2.LINE_AA, ss)
        by = eye_y - rng.uniform(0.09, 0.12) * fh
        bw = max(1, int(round(0.035 * fh)))
        for img, val in ((rgb, brow), (feat, 1.0)):
            cv2.line(img, p(ex - side * 0.05 * fh, by + 0.01 * fh), p(ex + side * 0.1 * fh, by), val, bw, cv2.LINE_AA,
                     ss)
    ny = cy + rng.uniform(0.1, 0.14) * fh
    cv2.line(rgb, p(cx, eye_y + 0.03 * fh), p(cx - 0.02 * fh, ny), dark, max(1, int(0.012 * fh)), cv2.LINE_AA, ss)
    for side in (-1, 1):
        cv2.circle(rgb, p(cx + side * 0.04 * fh, ny), s(0.015 * fh), dark, -1, cv2.LINE_AA, ss)
    my, mw = cy + rng.uniform(0.24, 0.28) * fh, rng.uniform(0.11, 0.15) * fh
    for img, val in ((rgb, lips), (feat, 1.0)):
        cv2.ellipse(img, p(cx, my), (s(mw), s(0.035 * fh)), 0, 0, 360, val, -1, cv2.LINE_AA, ss)
    cv2.line(rgb, p(cx - mw, my), p(cx + mw, my), dark, 1, cv2.LINE_AA, ss)
    skin *= 1 - np.clip(feat, 0, 1)


# ------------------------------------------------------------------ the three face kinds


def _drawn_face(rng: np.random.Generator, w: int, h: int, albedo: np.ndarray) -> Sprite:
    """A face drawn with OpenCV: head, hair, eyes, brows, nose, mouth, neck and shoulders."""
    fh = h * rng.uniform(0.44, 0.52)
    cx, cy = w / 2 + rng.uniform(-0.06, 0.06) * w, h * rng.uniform(0.42, 0.48)
    hair = _hair_colour(rng, albedo)
    shirt = rng.uniform(20, 230, size=3).astype(np.float32)
    body = _body(w, h, cx, cy, fh, albedo, shirt)
    rgb, alpha, skin, _ = _head_parts(w, h, cx, cy, fh, hair, rng.uniform(-0.3, 0.3), albedo)
    _draw_features(rgb, skin, cx, cy, fh, albedo, rng)
    rgb, alpha, skin = _combine(body, (rgb, alpha, skin))
    return Sprite(rgb, alpha, skin, (cx, cy))


def _lfw_face(rng: np.random.Generator, w: int, h: int, albedo: np.ndarray, faces: np.ndarray,
              index: int) -> Sprite:
    """An LFW face crop (grey) upscaled onto a drawn head; its luminance modulates the skin albedo."""
    import cv2

    fh = h * rng.uniform(0.46, 0.54)
    cx, cy = w / 2 + rng.uniform(-0.06, 0.06) * w, h * rng.uniform(0.42, 0.48)
    hair = _hair_colour(rng, albedo)
    shirt = rng.uniform(20, 230, size=3).astype(np.float32)
    body = _body(w, h, cx, cy, fh, albedo, shirt)
    rgb, alpha, skin, _ = _head_parts(w, h, cx, cy, fh, hair, rng.uniform(-0.3, 0.3), albedo)
    side = 0.86 * fh  # the crop spans about brows-to-chin and cheek to cheek
    crop = faces[index]
    lum = crop / max(float(np.median(crop[6:19, 6:19])), 1e-3)
    m = np.float32([[side / 25.0, 0, cx - side / 2], [0, side / 25.0, cy - side / 2 + 0.03 * fh]])
    big = cv2.warpAffine(lum, m, (w, h), flags=cv2.INTER_CUBIC, borderValue=1.0)
    place = _soften(_ellipse_mask(w, h, cx, cy + 0.03 * fh, 0.34 * side, 0.42 * side), 0.03 * fh)
    shade = 1.0 + place * (np.clip(big, 0.05, 1.8) - 1.0)
    rgb = rgb * shade[..., None]
    skin = skin * np.clip((shade - 0.45) / 0.25, 0, 1)  # eyes, brows, nostrils and mouth carry little pulse
    rgb, alpha, skin = _combine(body, (rgb, alpha, skin))
    return Sprite(rgb, alpha, skin, (cx, cy))


def _astronaut_face(rng: np.random.Generator, w: int, h: int, albedo: np.ndarray, photo: np.ndarray) -> Sprite:
    """The astronaut portrait framed around her face; the face skin is recoloured to ``albedo`` times the
    photo's relative luminance. The head and shoulders move; the rest of the photo is the background."""
    import cv2

    fx, fy, fw, fhh = _ASTRONAUT_FACE
    fh = h * rng.uniform(0.36, 0.44)
    scale = fh / fhh
    flip = bool(rng.integers(2))
    cx, cy = w / 2 + rng.uniform(-0.05, 0.05) * w, h * rng.uniform(0.4, 0.46)
    src = photo[:, ::-1] if flip else photo
    sx = (512 - fx - fw / 2) if flip else fx + fw / 2
    m = np.float32([[scale, 0, cx - sx * scale], [0, scale, cy - (fy + fhh / 2) * scale]])
    img = cv2.warpAffine(np.ascontiguousarray(src), m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    ycc = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8)[:, :, ::-1], cv2.COLOR_BGR2YCrCb).astype(np.float32)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    face_zone = _ellipse_mask(w, h, cx, cy + 0.08 * fh, 0.5 * fh, 0.68 * fh)
    skin_col = ((cr > 135) & (cr < 175) & (cb > 85) & (cb < 130) & (y > 60)).astype(np.float32)
    skin = _soften(cv2.erode(skin_col * face_zone, np.ones((2, 2), np.uint8)), 0.01 * fh + 0.3)
    lum = y / max(float(np.median(y[skin > 0.5])) if (skin > 0.5).any() else 128.0, 1.0)
    recol = albedo * np.clip(lum, 0.05, 1.8)[..., None]
    rgb = img * (1 - skin[..., None]) + recol * skin[..., None]
    # her light hair would be unusual above dark skin: repaint it with a hair colour darker than the skin
    above = (np.mgrid[0:h, 0:w][0] < cy - 0.1 * fh).astype(np.float32)
    hair = _ellipse_mask(w, h, cx, cy - 0.15 * fh, 0.7 * fh, 0.75 * fh) * above * (cr > 133) * (1 - skin)
    hair = _soften(hair, 0.01 * fh + 0.3)[..., None]
    hair_lum = y / max(float(np.median(y[hair[..., 0] > 0.5])) if (hair > 0.5).any() else 128.0, 1.0)
    repaint = _hair_colour(rng, albedo) * np.clip(hair_lum, 0.2, 1.8)[..., None]
    rgb = rgb * (1 - hair) + repaint * hair
    head = _ellipse_mask(w, h, cx, cy - 0.05 * fh, 0.78 * fh, 0.85 * fh)
    torso = np.zeros((h, w), np.float32)
    cv2.rectangle(torso, (int(cx - 1.2 * fh), int(cy + 0.5 * fh)), (int(cx + 1.2 * fh), h), 1.0, -1)
    alpha = _soften(np.maximum(head, torso), 0.04 * fh)
    return Sprite(rgb.astype(np.float32), alpha, skin, (cx, cy), background=rgb.astype(np.float32))


# ------------------------------------------------------------------ plans


def _hr_curve(rng: np.random.Generator, mean: float, n: int, drift: float) -> np.ndarray:
    """Instantaneous HR (bpm) per frame: mean + smooth drift (max |.| = ``drift``) + respiratory sinus
    arrhythmia (1.5-3.5 bpm at 0.15-0.35 Hz)."""
    t = np.arange(n) / FPS
    span = n / FPS
    slow = sum(rng.normal() / k * np.sin(np.pi * k * t / span + rng.uniform(0, 2 * np.pi)) for k in (1, 2))
    slow = slow - slow.mean()
    slow *= drift / max(float(np.abs(slow).max()), 1e-9)
    rsa = rng.uniform(1.5, 3.5) * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 2 * np.pi))
    return mean + slow + rsa


def _pulse(rng: np.random.Generator, mean: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR curve, PPG) whose PPG spectrum peaks within 0.5 bpm of the mean HR (redrawn, with a smaller
    drift each time, until it does), so the FFT heart rate of the ground truth is the stated one."""
    drift = rng.uniform(1.0, 2.5)
    for _ in range(40):
        hr = _hr_curve(rng, mean, n, drift)
        ppg = ppg_source.synthesize(hr, FPS, rng)
        if abs(hr_fft(ppg, FPS, nfft=max(8192, next_pow2(n))) - hr.mean()) < 0.5:
            return hr, ppg
        drift *= 0.85
    return hr, ppg


def _flicker_freq(rng: np.random.Generator, hr: np.ndarray) -> float:
    """A flicker frequency (Hz) in 0.7-3 Hz at least 15 bpm from every value of the HR curve."""
    lo, hi = float(hr.min()) - 15.0, float(hr.max()) + 15.0
    for _ in range(100):
        f = rng.uniform(0.7, 3.0)
        if not lo < 60 * f < hi:
            return float(f)
    return 3.0 if hi < 180 else 0.7


def _groups(sizes: dict) -> list[tuple[str, str]]:
    """(split, subset) per subject in order: train and valid alternate clean/hard, then test clean, test hard."""
    out = [("train", "clean" if i % 2 == 0 else "hard") for i in range(sizes["train"])]
    out += [("valid", "clean" if i % 2 == 0 else "hard") for i in range(sizes["valid"])]
    out += [("test", "clean")] * sizes["test_clean"] + [("test", "hard")] * sizes["test_hard"]
    return out


def plan_subjects(seed: int, quick: bool, duration: float | None = None) -> list[Plan]:
    """The draws for every subject of the benchmark (independent of which subjects are rendered)."""
    sizes = SIZES["quick" if quick else "full"]
    seconds = float(duration if duration is not None else sizes["seconds"])
    n_frames = int(round(seconds * FPS))
    groups = _groups(sizes)
    master = np.random.default_rng([seed, 0])
    # heart rates and skin tones stratified over their ranges, shuffled over subjects
    hr_means = 45.0 + 105.0 * (master.permutation(len(groups)) + master.uniform(size=len(groups))) / len(groups)
    tones = 5.0 * (master.permutation(len(groups)) + master.uniform(size=len(groups))) / len(groups)
    offset = int(master.integers(3))
    plans = []
    for i, (split, subset) in enumerate(groups):
        rng = np.random.default_rng([seed, i + 1])
        hr, ppg = _pulse(rng, float(hr_means[i]), n_frames)
        hard = subset == "hard"
        plan = Plan(subject=i + 1, split=split, subset=subset, face=FACE_KINDS[(i + offset) % 3], hr=hr, ppg=ppg,
                    tone=float(min(tones[i], 4.999)), amp=float(rng.uniform(0.003, 0.006)),
                    noise=float(rng.uniform(3.0, 5.0) if hard else rng.uniform(1.5, 2.5)))
        if hard:
            plan.motion = {"px": float(rng.uniform(3.0, 6.0)), "fx": float(rng.uniform(0.2, 0.5)),
                           "fy": float(rng.uniform(0.2, 0.5)), "scale": float(rng.uniform(0.02, 0.05)),
                           "fs": float(rng.uniform(0.1, 0.3))}
            plan.illum = {"depth": float(rng.uniform(0.03, 0.08)), "hz": float(rng.uniform(0.03, 0.12))}
            plan.flicker = {"depth": 0.01, "hz": _flicker_freq(rng, hr)}
            plan.jpeg = int(rng.integers(60, 76))
        else:
            plan.motion = {"px": float(rng.uniform(0.3, 1.0)), "fx": float(rng.uniform(0.05, 0.3)),
                           "fy": float(rng.uniform(0.05, 0.3)), "scale": 0.0, "fs": 0.1}
        plans.append(plan)
    return plans


def _nuisance_text(p: Plan) -> str:
    """The nuisances of one video as ``key=value`` pairs joined by ``;`` (for splits.csv)."""
    parts = [f"noise={p.noise:.1f}dn", f"motion={p.motion['px']:.1f}px"]
    if p.subset == "hard":
        parts += [f"motion_hz={p.motion['fx']:.2f}/{p.motion['fy']:.2f}", f"scale={100 * p.motion['scale']:.1f}%",
                  f"illum={100 * p.illum['depth']:.1f}%@{p.illum['hz']:.2f}hz",
                  f"flicker={100 * p.flicker['depth']:.0f}%@{p.flicker['hz']:.2f}hz", f"jpeg={p.jpeg}"]
    return ";".join(parts)


# ------------------------------------------------------------------ rendering


def _sprite(p: Plan, rng: np.random.Generator, kind: str, w: int, h: int, assets: dict) -> Sprite:
    """Build the face sprite of one kind (the LFW identity drawn from ``rng``)."""
    albedo = _albedo(p.tone)
    if kind == "astronaut":
        return _astronaut_face(rng, w, h, albedo, assets["astronaut"])
    if kind == "lfw":
        return _lfw_face(rng, w, h, albedo, assets["lfw"], int(rng.integers(len(assets["lfw"]))))
    return _drawn_face(rng, w, h, albedo)


def _affine(p: Plan, k: int, center: tuple[float, float], unit: float, phases: np.ndarray) -> np.ndarray:
    """2x3 head-motion matrix at frame ``k``: translation and scale about the face centre."""
    t = k / FPS
    mo = p.motion
    dx = mo["px"] * unit * np.sin(2 * np.pi * mo["fx"] * t + phases[0])
    dy = 0.6 * mo["px"] * unit * np.sin(2 * np.pi * mo["fy"] * t + phases[1])
    s = 1.0 + mo["scale"] * np.sin(2 * np.pi * mo["fs"] * t + phases[2])
    cx, cy = center
    return np.float32([[s, 0, (1 - s) * cx + dx], [0, s, (1 - s) * cy + dy]])


def _illumination(p: Plan, n: int, rng: np.random.Generator) -> np.ndarray:
    """I(t) per frame: 1, times slow drift and in-band colour-neutral flicker for hard videos."""
    t = np.arange(n) / FPS
    out = np.ones(n)
    if p.illum:
        out *= 1.0 + p.illum["depth"] * np.sin(2 * np.pi * p.illum["hz"] * t + rng.uniform(0, 2 * np.pi))
    if p.flicker:
        out *= 1.0 + p.flicker["depth"] * np.sin(2 * np.pi * p.flicker["hz"] * t + rng.uniform(0, 2 * np.pi))
    return out.astype(np.float32)


def _frames(p: Plan, sprite: Sprite, bg: np.ndarray, rng: np.random.Generator, unit: float):
    """Yield the video's RGB uint8 frames."""
    import cv2

    h, w = bg.shape[:2]
    pulse_map = sprite.skin * (1.0 + 0.3 * _smooth_field(rng, w, h, 0.15 * h))  # a varies over the face
    layers = np.concatenate([sprite.rgb * sprite.alpha[..., None],
                             (sprite.rgb * (sprite.alpha * pulse_map)[..., None]) * p.amp,
                             sprite.alpha[..., None]], axis=2).astype(np.float32)
    gains = (PULSATILITY[None, :] * p.ppg[:, None]).astype(np.float32)
    illum = _illumination(p, p.ppg.size, rng)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    noise = rng.standard_normal((_NOISE_BANK, h, w, 3), dtype=np.float32) * np.float32(p.noise)
    picks = rng.integers(_NOISE_BANK, size=p.ppg.size)
    for k in range(p.ppg.size):
        warped = cv2.warpAffine(layers, _affine(p, k, sprite.center, unit, phases), (w, h), flags=cv2.INTER_LINEAR)
        a = warped[..., 6:7]
        img = bg * (1.0 - a) + warped[..., :3] + warped[..., 3:6] * gains[k]
        img *= illum[k]
        img += noise[picks[k]]
        np.clip(img, 0.0, 255.0, out=img)
        frame = (img + 0.5).astype(np.uint8)
        if p.jpeg:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, p.jpeg])
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
        yield frame


def _haar():
    """OpenCV's frontal-face Haar cascade."""
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def detect_faces(frame_rgb: np.ndarray, cascade=None) -> np.ndarray:
    """Haar face boxes (x, y, w, h) in an RGB uint8 frame (scale 1.1, minNeighbors 4)."""
    import cv2

    cascade = cascade if cascade is not None else _haar()
    grey = cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2GRAY)
    boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=_HAAR_MIN_NEIGHBORS,
                                     minSize=(max(16, grey.shape[0] // 8),) * 2)
    return np.asarray(boxes, dtype=int).reshape(-1, 4)


def _detectable_sprite(p: Plan, rng: np.random.Generator, w: int, h: int, assets: dict, cascade,
                       bg: np.ndarray, unit: float) -> tuple[Sprite, str, int]:
    """A sprite whose first frame Haar detects: up to 8 draws of the planned kind, then the other kinds.
    Returns the sprite, its kind and the seed of the frame noise/motion draws (the first frame checked is
    the first frame written)."""
    kinds = [p.face] + [k for k in FACE_KINDS if k != p.face]
    for kind in kinds:
        if assets.get(kind, True) is None:
            continue
        for _ in range(8):
            sprite = _sprite(p, rng, kind, w, h, assets)
            frame_seed = int(rng.integers(2**63))
            first = next(_frames(p, sprite, sprite.background if sprite.background is not None else bg,
                                 np.random.default_rng(frame_seed), unit))
            if len(detect_faces(first, cascade)):
                return sprite, kind, frame_seed
    raise RuntimeError(f"no face rendering of subject {p.subject} was detected by the Haar cascade")


def _write_ground_truth(path: Path, p: Plan) -> None:
    """UBFC-rPPG ground_truth.txt: rows PPG, HR (bpm), time (s), one column per frame."""
    t = np.arange(p.ppg.size) / FPS
    rows = [" ".join(f"{v:.7e}" for v in p.ppg), " ".join(f"{v:.7e}" for v in p.hr), " ".join(f"{v:.7e}" for v in t)]
    path.write_text("\n".join(rows) + "\n")


def _open_writer(path: Path, w: int, h: int, codec: str):
    """An OpenCV VideoWriter: Motion-JPEG (OpenCV's own encoder, quality 95) or FFV1 (lossless)."""
    import cv2

    if codec == "mjpg":
        writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    elif codec == "ffv1":
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), FPS, (w, h))
    else:
        raise ValueError(f"codec must be 'mjpg' or 'ffv1', got {codec!r}")
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} video to {path}")
    return writer


def render_subject(p: Plan, folder: Path, seed: int, size: tuple[int, int], assets: dict, cascade,
                   codec: str = "mjpg") -> str:
    """Write ``folder/vid.avi`` and ``folder/ground_truth.txt`` for one planned subject; returns the face kind
    used (the planned one unless no rendering of it was detected)."""
    w, h = size
    rng = np.random.default_rng([seed, p.subject, 1])
    unit = h / DEFAULT_SIZE[1]  # motion amplitudes are given for 120-pixel-high frames
    bg = _background(rng, w, h)
    sprite, kind, frame_seed = _detectable_sprite(p, rng, w, h, assets, cascade, bg, unit)
    if sprite.background is not None:
        bg = sprite.background
    folder.mkdir(parents=True, exist_ok=True)
    writer = _open_writer(folder / "vid.avi", w, h, codec)
    try:
        for frame in _frames(p, sprite, bg, np.random.default_rng(frame_seed), unit):
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()
    _write_ground_truth(folder / "ground_truth.txt", p)
    return kind


README = """affectkit embedded rPPG benchmark (synthetic; UBFC-rPPG DATASET_2 layout)

subject<N>/vid.avi           {w}x{h} RGB video, {fps:g} fps, {seconds:g} s, {codec}
subject<N>/ground_truth.txt  3 rows, one value per frame: PPG waveform, instantaneous HR (bpm), time (s)
splits.csv                   subject, split (train|valid|test), subset (clean|hard), hr_mean (bpm),
                             skin_tone (Fitzpatrick-like 1-6), face (astronaut|lfw|drawn), nuisances

Generated by affectkit.tasks.rppg.synth (seed {seed}, {mode}). Pulse: {source} beat templates time-warped
to a known HR curve (mean 45-150 bpm, drift and respiratory sinus arrhythmia of +-3-6 bpm). Skin pixel =
albedo * shading * I(t) * (1 + a * s * p(t)), a = 0.003-0.006, s = (0.33, 0.77, 0.53); background carries
no pulse. clean: sensor noise 1.5-2.5 DN, motion <= 1 px. hard: head motion 3-6 px at 0.2-0.5 Hz with
2-5 % scaling, 3-8 % illumination drift below 0.12 Hz, 1 % colour-neutral flicker in 0.7-3 Hz at least
15 bpm away from the HR, noise 3-5 DN, JPEG quality 60-75 per frame. Faces: scikit-image's astronaut
portrait and LFW crops (skin recoloured) and OpenCV-drawn faces; each is detected by OpenCV's Haar
cascade in its first frame. This is synthetic data for testing pipelines, not a physiological dataset.
"""


def _assets() -> dict:
    """Face sources available here (None for a missing one)."""
    return {"astronaut": _astronaut(), "lfw": _lfw_faces(), "drawn": True}


def make(out: Path, seed: int, quick: bool, size: tuple[int, int] | None = None, duration: float | None = None,
         subjects: Sequence[int] | None = None, codec: str = "mjpg") -> dict:
    """Write the benchmark under ``out`` and return a summary.

    ``size`` is the frame (width, height) (default 160x120); ``duration`` the seconds per video (quick 20,
    full 30); ``subjects`` the subject numbers to render (default all; the draws of a subject do not depend
    on which others are rendered); ``codec`` ``"mjpg"`` or ``"ffv1"``.
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w, h = size or DEFAULT_SIZE
    plans = plan_subjects(seed, quick, duration)
    chosen = set(subjects) if subjects is not None else {p.subject for p in plans}
    assets, cascade = _assets(), _haar()
    rows, counts, faces = [], {}, {}
    total_bytes = 0
    for p in plans:
        if p.subject not in chosen:
            continue
        folder = out / f"subject{p.subject}"
        kind = render_subject(p, folder, seed, (w, h), assets, cascade, codec)
        total_bytes += sum(f.stat().st_size for f in folder.iterdir())
        rows.append({"subject": f"subject{p.subject}", "split": p.split, "subset": p.subset,
                     "hr_mean": f"{p.hr.mean():.2f}", "skin_tone": int(p.tone) + 1, "face": kind,
                     "nuisances": _nuisance_text(p)})
        counts.setdefault(p.split, {"clean": 0, "hard": 0})[p.subset] += 1
        faces[kind] = faces.get(kind, 0) + 1
    with (out / "splits.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["subject", "split", "subset", "hr_mean", "skin_tone", "face",
                                                "nuisances"])
        writer.writeheader()
        writer.writerows(rows)
    seconds = plans[0].ppg.size / FPS
    source = ppg_source.load_bank().source
    (out / "README.txt").write_text(README.format(w=w, h=h, fps=FPS, seconds=seconds, codec=codec.upper(),
                                                  seed=seed, mode="quick" if quick else "full",
                                                  source="heartpy PPG" if source == "heartpy" else "3-harmonic"))
    return {"n_videos": len(rows), "counts": counts, "fps": FPS, "size": [w, h], "seconds": seconds,
            "frames": plans[0].ppg.size, "codec": codec, "ppg_source": source,
            "ppg_fallback": source != "heartpy", "faces": faces, "bytes": total_bytes,
            "elapsed_s": round(time.perf_counter() - start, 2)}
