"""The embedded benchmark: a source task to pretrain the tiny backbones, and three downstream tasks
with a domain shift to adapt them to, written as ImageFolder PNGs (32 x 32 RGB).

- ``source``: 10 classes = 5 shapes (disc, square, triangle, cross, ring) x 2 fill patterns
  (stripes, dots), named ``<shape>-<pattern>``; random colours, position, scale, rotation, a smooth
  background texture and sensor noise.
- ``digits``: scikit-learn's bundled ``load_digits`` (1797 images, 8 x 8), upsampled to 32 x 32 with
  PIL's bicubic filter and colourised (a random background and a random stroke colour at least 0.3
  brighter in luma); classes ``0`` .. ``9``; split 60/20/20 % within each class.
- ``shapes-shift``: 6 shapes absent from the source (arrow, crescent, ellipse, hexagon, pentagon,
  star), drawn in another style: solid pastel fill with a dark outline on a dark vignetted, speckled
  background.
- ``textures``: 8 full-image textures (checker, dots, blobs, waves, and stripes whose lines run at
  0, 45, 90 or 135 degrees, counter-clockwise from horizontal, each within +-10 degrees) in two random
  colours, with a solid source shape drawn over 70 % of them as a distractor.

Layout: ``out/<task>/{train,val,test}/<class>/NNNN.png`` (digits: the image's index in
``load_digits``), ``out/README.txt`` and ``out/manifest.json`` (the summary ``make`` returns, plus the
class names). Every image is drawn from its own generator, seeded by (seed, task, split, class,
index), so the files are byte-identical for a seed and the quick set is a prefix of the full one.
Shapes are rendered at 2x and averaged down (anti-aliased edges). Coordinates are in [-1, 1] with y
pointing down; one pixel is 1/16.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from affectkit.core.errors import UsageError

SIZE = 32
SUPERSAMPLE = 2
PIXEL = 2.0 / SIZE  # one output pixel in image coordinates
SPLITS = ("train", "val", "test")
SOURCE_SHAPES = ("disc", "square", "triangle", "cross", "ring")
SOURCE_PATTERNS = ("stripes", "dots")
SHIFT_SHAPES = ("arrow", "crescent", "ellipse", "hexagon", "pentagon", "star")
TEXTURES = ("checker", "dots", "blobs", "waves", "stripes-0", "stripes-45", "stripes-90", "stripes-135")
TASKS = ("source", "digits", "shapes-shift", "textures")
# images per class and split (digits: fractions of each class)
COUNTS = {
    "source": {"full": (600, 100, 100), "quick": (120, 30, 30)},
    "shapes-shift": {"full": (100, 50, 50), "quick": (30, 15, 15)},
    "textures": {"full": (100, 50, 50), "quick": (30, 15, 15)},
}
DIGIT_FRACTIONS = (0.6, 0.2, 0.2)
LUMA = np.array([0.299, 0.587, 0.114])


# ---- geometry -----------------------------------------------------------------------------------


def _grid() -> tuple[np.ndarray, np.ndarray]:
    n = SIZE * SUPERSAMPLE
    axis = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    return np.meshgrid(axis, axis)


X, Y = _grid()


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _local(cx: float, cy: float, scale: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates in the frame of a shape centred at (cx, cy), radius ``scale``, rotated."""
    return _rotate((X - cx) / scale, (Y - cy) / scale, angle)


def _polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    """Regular polygon with circumradius 1, a vertex pointing up."""
    apothem = np.cos(np.pi / sides)
    inside = np.ones_like(u, dtype=bool)
    for k in range(sides):
        a = np.pi / 2 + np.pi / sides + 2 * np.pi * k / sides
        inside &= u * np.cos(a) - v * np.sin(a) <= apothem
    return inside


def _star(u: np.ndarray, v: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = (np.arctan2(u, -v) * points / (2 * np.pi)) % 1.0
    edge = inner + (1.0 - inner) * np.abs(1.0 - 2.0 * t)
    return np.hypot(u, v) < edge


def _arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    shaft = (np.abs(v) < 0.22) & (u > -1.0) & (u < 0.15)
    head = (u >= 0.15) & (u < 1.0) & (np.abs(v) < 0.75 * (1.0 - u) / 0.85)
    return shaft | head


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": lambda u, v: np.hypot(u, v) < 0.9,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) < 0.72,
    "triangle": lambda u, v: _polygon(u, v, 3),
    "cross": lambda u, v: ((np.abs(u) < 0.3) & (np.abs(v) < 0.95)) | ((np.abs(v) < 0.3) & (np.abs(u) < 0.95)),
    "ring": lambda u, v: (np.hypot(u, v) < 0.95) & (np.hypot(u, v) > 0.55),
    "arrow": _arrow,
    "crescent": lambda u, v: (np.hypot(u, v) < 0.95) & (np.hypot(u - 0.45, v) > 0.75),
    "ellipse": lambda u, v: np.hypot(u, v / 0.5) < 1.0,
    "hexagon": lambda u, v: _polygon(u, v, 6),
    "pentagon": lambda u, v: _polygon(u, v, 5),
    "star": _star,
}


def _shape_mask(rng: np.random.Generator, shape: str, scale: tuple[float, float], spread: float) -> tuple:
    """A randomly placed shape: (mask, (cx, cy, scale, angle))."""
    s = rng.uniform(*scale)
    cx, cy = rng.uniform(-spread, spread, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    u, v = _local(cx, cy, s, angle)
    return SHAPES[shape](u, v), (cx, cy, s, angle)


# ---- patterns and colours -----------------------------------------------------------------------


def _stripes(rng: np.random.Generator, period_px: tuple[float, float], angle: float | None = None) -> np.ndarray:
    """Binary stripes; ``angle`` is the direction the lines run (radians, counter-clockwise)."""
    angle = rng.uniform(0, np.pi) if angle is None else angle
    period = rng.uniform(*period_px) * PIXEL
    across = -np.sin(angle) * X - np.cos(angle) * Y  # y points down: counter-clockwise on screen
    return np.sin(2 * np.pi * across / period + rng.uniform(0, 2 * np.pi)) > 0


def _dots(rng: np.random.Generator, period_px: tuple[float, float], radius: float = 0.3) -> np.ndarray:
    period = rng.uniform(*period_px) * PIXEL
    u, v = _rotate(X, Y, rng.uniform(0, np.pi / 2))
    du = (u / period + rng.uniform()) % 1.0 - 0.5
    dv = (v / period + rng.uniform()) % 1.0 - 0.5
    return np.hypot(du, dv) < radius


def _checker(rng: np.random.Generator, period_px: tuple[float, float]) -> np.ndarray:
    period = rng.uniform(*period_px) * PIXEL
    u, v = _rotate(X, Y, rng.uniform(0, np.pi / 2))
    return (np.floor(u / period + rng.uniform()) + np.floor(v / period + rng.uniform())) % 2 == 0


def _smooth_field(rng: np.random.Generator, waves: int, cycles: tuple[float, float]) -> np.ndarray:
    """Sum of random plane waves, ``cycles`` per image width, roughly unit variance."""
    field = np.zeros_like(X)
    for _ in range(waves):
        angle = rng.uniform(0, 2 * np.pi)
        freq = rng.uniform(*cycles) * np.pi  # image width is 2 units
        field += np.cos(freq * (np.cos(angle) * X + np.sin(angle) * Y) + rng.uniform(0, 2 * np.pi))
    return field * np.sqrt(2.0 / waves)


def _waves(rng: np.random.Generator, period_px: tuple[float, float]) -> np.ndarray:
    u, v = _rotate(X, Y, rng.uniform(0, np.pi))
    period = rng.uniform(*period_px) * PIXEL
    warp = rng.uniform(0.12, 0.2) * np.sin(np.pi * rng.uniform(1.5, 2.5) * u + rng.uniform(0, 2 * np.pi))
    return np.sin(2 * np.pi * (v + warp) / period + rng.uniform(0, 2 * np.pi)) > 0


def _colour_pair(rng: np.random.Generator, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours whose luma differs by at least ``contrast``."""
    while True:
        a, b = rng.uniform(0, 1, size=(2, 3))
        if abs(float(LUMA @ a - LUMA @ b)) >= contrast:
            return a, b


def _colour_with_luma(rng: np.random.Generator, luma: float) -> np.ndarray:
    """A random hue at exactly ``luma``: a random colour scaled toward black or mixed toward white."""
    c = rng.uniform(0, 1, size=3)
    own = float(LUMA @ c)
    if own >= luma:
        return c * (luma / own)
    return 1.0 - (1.0 - c) * ((1.0 - luma) / (1.0 - own))


def _separated_colours(rng: np.random.Generator, n: int, gap: float) -> list[np.ndarray]:
    """``n`` random colours whose lumas differ pairwise by at least ``gap``, in random order (no
    rejection sampling: the lumas are drawn in increasing order, then shuffled)."""
    slack = 1.0 - gap * (n - 1)
    cuts = np.sort(rng.uniform(0, slack, size=n))
    lumas = cuts + gap * np.arange(n)
    return [_colour_with_luma(rng, float(lumas[k])) for k in rng.permutation(n)]


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    canvas[mask] = colour


def _finish(rng: np.random.Generator, canvas: np.ndarray, noise: float) -> np.ndarray:
    """Supersampled float canvas -> uint8 [SIZE, SIZE, 3], with Gaussian sensor noise."""
    img = canvas.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    img = img + rng.normal(0.0, noise, size=img.shape)
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def _canvas(colour: np.ndarray) -> np.ndarray:
    return np.broadcast_to(colour, (*X.shape, 3)).copy()


# ---- the tasks' renderers -----------------------------------------------------------------------


def render_source(rng: np.random.Generator, shape: str, pattern: str) -> np.ndarray:
    """A patterned shape on a textured background (the pretraining style)."""
    base, ink, background = _separated_colours(rng, 3, 0.25)
    canvas = _canvas(background) + 0.08 * _smooth_field(rng, 3, (0.5, 1.5))[..., None]
    mask, _ = _shape_mask(rng, shape, (0.55, 0.8), 0.2)
    fill = _stripes(rng, (4.5, 6.5)) if pattern == "stripes" else _dots(rng, (5.0, 7.0), 0.3)
    _paint(canvas, mask, base)
    _paint(canvas, mask & fill, ink)
    return _finish(rng, canvas, 0.03)


def render_shift(rng: np.random.Generator, shape: str) -> np.ndarray:
    """A solid pastel shape with a dark outline on a dark vignetted, speckled background."""
    background = rng.uniform(0.0, 0.3, size=3)
    vignette = 1.0 - 0.5 * (X**2 + Y**2)[..., None]
    canvas = background * vignette + 0.06 * rng.standard_normal(X.shape)[..., None]
    outer, (cx, cy, s, angle) = _shape_mask(rng, shape, (0.45, 0.7), 0.25)
    u, v = _local(cx, cy, s * 0.85, angle)
    inner = SHAPES[shape](u, v)
    fill = rng.uniform(0.55, 1.0, size=3)
    _paint(canvas, outer, fill * 0.45)
    _paint(canvas, inner, fill)
    return _finish(rng, canvas, 0.02)


def _texture(rng: np.random.Generator, name: str) -> np.ndarray:
    if name == "checker":
        return _checker(rng, (6.0, 10.0))
    if name == "dots":
        return _dots(rng, (5.0, 8.0), 0.28)
    if name == "blobs":
        return _smooth_field(rng, 6, (1.5, 3.0)) > 0
    if name == "waves":
        return _waves(rng, (5.0, 8.0))
    degrees = float(name.split("-")[1])
    return _stripes(rng, (4.0, 8.0), np.deg2rad(degrees + rng.uniform(-10, 10)))


def render_texture(rng: np.random.Generator, name: str) -> np.ndarray:
    """A two-colour texture over the whole image, with a solid shape over it 70 % of the time."""
    a, b = _colour_pair(rng, 0.3)
    canvas = _canvas(a)
    _paint(canvas, _texture(rng, name), b)
    if rng.uniform() < 0.7:
        mask, _ = _shape_mask(rng, SOURCE_SHAPES[rng.integers(len(SOURCE_SHAPES))], (0.25, 0.45), 0.5)
        _paint(canvas, mask, rng.uniform(0, 1, size=3))
    return _finish(rng, canvas, 0.03)


def colourise_digit(rng: np.random.Generator, image8: np.ndarray) -> np.ndarray:
    """An 8 x 8 ``load_digits`` image (0..16) -> 32 x 32 RGB: bicubic upsampling, random colours."""
    gray = Image.fromarray(np.round(image8 * (255.0 / 16.0)).astype(np.uint8))
    ink = np.asarray(gray.resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float64)[..., None] / 255.0
    while True:
        background, stroke = rng.uniform(0, 1, size=(2, 3))
        if float(LUMA @ stroke - LUMA @ background) >= 0.3:
            break
    img = background + (stroke - background) * ink
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# ---- writing ------------------------------------------------------------------------------------


def _image_rng(seed: int, task: str, split: str, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, TASKS.index(task), SPLITS.index(split), label, index])


def _write_png(path: Path, pixels: np.ndarray) -> None:
    Image.fromarray(pixels, mode="RGB").save(path, format="PNG")


def _write_rendered(out: Path, task: str, seed: int, classes: Sequence[str], counts: tuple[int, int, int],
                    render: Callable[[np.random.Generator, str], np.ndarray]) -> dict[str, int]:
    for split, n in zip(SPLITS, counts, strict=True):
        for label, name in enumerate(classes):
            folder = out / task / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                _write_png(folder / f"{i:04d}.png", render(_image_rng(seed, task, split, label, i), name))
    return {"classes": len(classes), **{s: n * len(classes) for s, n in zip(SPLITS, counts, strict=True)}}


def digit_splits(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Indices of each split, 60/20/20 % within each class, shuffled with ``seed``."""
    rng = np.random.default_rng([seed, TASKS.index("digits")])
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = round(len(idx) * DIGIT_FRACTIONS[0])
        n_val = round(len(idx) * DIGIT_FRACTIONS[1])
        parts["train"] += idx[:n_train].tolist()
        parts["val"] += idx[n_train:n_train + n_val].tolist()
        parts["test"] += idx[n_train + n_val:].tolist()
    return {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in parts.items()}


def _write_digits(out: Path, seed: int) -> dict[str, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    summary = {"classes": 10}
    for split, indices in digit_splits(digits.target, seed).items():
        for c in range(10):
            (out / "digits" / split / str(c)).mkdir(parents=True)
        for i in indices:
            label = int(digits.target[i])
            pixels = colourise_digit(_image_rng(seed, "digits", split, label, int(i)), digits.images[i])
            _write_png(out / "digits" / split / str(label) / f"{i:04d}.png", pixels)
        summary[split] = len(indices)
    return summary


def _classes(task: str) -> list[str]:
    if task == "source":
        return [f"{shape}-{pattern}" for shape in SOURCE_SHAPES for pattern in SOURCE_PATTERNS]
    if task == "digits":
        return [str(d) for d in range(10)]
    return list(SHIFT_SHAPES if task == "shapes-shift" else TEXTURES)


def _write_task(out: Path, task: str, seed: int, quick: bool) -> dict[str, int]:
    if task == "digits":
        return _write_digits(out, seed)
    counts = COUNTS[task]["quick" if quick else "full"]
    if task == "source":
        def render(rng: np.random.Generator, name: str) -> np.ndarray:
            shape, pattern = name.split("-")
            return render_source(rng, shape, pattern)
    elif task == "shapes-shift":
        render = render_shift
    else:
        render = render_texture
    return _write_rendered(out, task, seed, _classes(task), counts, render)


README = """affectkit act-prompt embedded benchmark (seed {seed}{quick}): 32 x 32 RGB PNGs in the ImageFolder
layout TASK/{{train,val,test}}/CLASS/NNNN.png. Every image is generated from (seed, task, split, class,
index), so the same seed gives byte-identical files.

source        pretraining task. 10 classes SHAPE-PATTERN: shapes disc, square, triangle, cross, ring,
              filled with stripes or dots; random colours, position, scale, rotation, smooth background
              texture, Gaussian noise.
digits        scikit-learn's load_digits (1797 images of 8 x 8) upsampled bicubically to 32 x 32 and
              colourised (random background, stroke at least 0.3 brighter in luma). Classes 0..9,
              60/20/20 % per class; the file name is the index in load_digits.
shapes-shift  6 shapes not in the source (arrow, crescent, ellipse, hexagon, pentagon, star), solid pastel
              fill with a dark outline on a dark vignetted, speckled background.
textures      8 textures (checker, dots, blobs, waves, stripes-0/45/90/135: the direction the lines run,
              counter-clockwise from horizontal, +-10 degrees) in two random colours, with a solid
              source shape over 70 % of the images as a distractor.

Images per split:
{table}
"""


def _readme(summary: dict[str, Any], quick: bool) -> str:
    rows = [f"  {name:<13} {s['classes']:>3} classes  train {s['train']:>5}  val {s['val']:>5}  test {s['test']:>5}"
            for name, s in summary["tasks"].items()]
    return README.format(seed=summary["seed"], quick=", quick" if quick else "", table="\n".join(rows))


def make(out: Path, seed: int, quick: bool, tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the benchmark (all ``TASKS`` unless ``tasks`` names some) under ``out`` and return
    {"tasks": {name: {"classes", "train", "val", "test"}}, "seed", "size"}."""
    out = Path(out)
    tasks = list(TASKS if tasks is None else tasks)
    for task in tasks:
        if task not in TASKS:
            raise UsageError(f"unknown act-prompt benchmark task {task!r}", f"choose from {', '.join(TASKS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    for task in tasks:
        if (out / task).exists() and any((out / task).iterdir()):
            raise UsageError(f"{out / task}: directory exists and is not empty", "write the benchmark into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"tasks": {task: _write_task(out, task, int(seed), quick) for task in tasks},
               "seed": int(seed), "size": SIZE}
    (out / "README.txt").write_text(_readme(summary, quick), encoding="utf-8")
    manifest = {**summary, "quick": bool(quick), "classes": {task: _classes(task) for task in tasks}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary
