"""Deterministic metrics that need no judge model (spec B9.4).

* caption tone: VADER compound of a caption (``vaderSentiment``, the ``text`` extra);
* caption fidelity: chrF (character n-grams 1..6, beta 2), ROUGE-L F1 over words and the
  difflib edit ratio between a produced caption and ``pos_txt`` (quote marks stripped first);
* structure: SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range
  255) on grey images resized to a common size, a panel counter from gutter projection profiles,
  a difference hash to flag "no edit";
* an image valence proxy (brightness and warmth), used only by the ``rules`` judge;
* OCR through pytesseract when it and the tesseract binary are installed (optional).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import UsageError

QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb`"


def strip_quotes(text: str) -> str:
    return text.strip().strip(QUOTES).strip()


# ---- text --------------------------------------------------------------------------------------


@functools.cache
def _vader() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise UsageError("caption tone needs the vaderSentiment package",
                         "pip install 'affectkit[text]' (or pip install vadersentiment)") from None
    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER compound score in [-1, 1] (0.0 for an empty caption)."""
    text = strip_quotes(text or "")
    if not text:
        return 0.0
    return float(_vader().polarity_scores(text)["compound"])


def tone_shift(source_caption: str, caption: str) -> float:
    """compound(caption) - compound(source caption); > 0 means the caption moved toward positive."""
    return vader_compound(caption) - vader_compound(source_caption)


def _char_ngrams(text: str, n: int) -> Counter[str]:
    s = re.sub(r"\s+", "", text)  # chrF ignores whitespace
    return Counter(s[i : i + n] for i in range(len(s) - n + 1))


def chrf(hypothesis: str, reference: str, max_order: int = 6, beta: float = 2.0) -> float:
    """Sentence chrF in [0, 1]: precision and recall averaged over orders 1..6, combined with F-beta.

    Orders with no n-gram on either side are left out of the averages (as sacreBLEU does).
    """
    precisions, recalls = [], []
    for n in range(1, max_order + 1):
        hyp, ref = _char_ngrams(hypothesis, n), _char_ngrams(reference, n)
        if not hyp or not ref:
            continue
        overlap = sum((hyp & ref).values())
        precisions.append(overlap / sum(hyp.values()))
        recalls.append(overlap / sum(ref.values()))
    if not precisions:
        return 0.0
    p, r = float(np.mean(precisions)), float(np.mean(recalls))
    if p + r == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens (longest common subsequence)."""
    a, b = _tokens(hypothesis), _tokens(reference)
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def edit_ratio(a: str, b: str) -> float:
    """difflib's similarity ratio of the lower-cased strings (1 = identical)."""
    return difflib.SequenceMatcher(None, a.lower(), b.lower(), autojunk=False).ratio()


def caption_fidelity(caption: str, reference: str) -> dict[str, float]:
    c, r = strip_quotes(caption or ""), strip_quotes(reference or "")
    return {"chrf": chrf(c, r), "rouge_l": rouge_l(c, r), "edit_ratio": edit_ratio(c, r)}


# ---- images ------------------------------------------------------------------------------------


def load_rgb(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def resize_grey(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.clip(to_grey(rgb), 0, 255).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, window: str = "gaussian",
         sigma: float = 1.5, win_size: int = 7) -> float:
    """Mean SSIM of two grey images of equal shape.

    ``window="gaussian"``: Wang et al.'s 11x11 Gaussian (sigma 1.5); ``"uniform"``: a ``win_size``
    box filter with the sample covariance correction (scikit-image's default); the map's border of
    half a window is dropped in both cases.
    """
    from scipy import ndimage

    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    if window == "gaussian":
        def filt(x: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(x, sigma=sigma, truncate=3.5, mode="reflect")
        pad, cov_norm = int(3.5 * sigma + 0.5), 1.0
    else:
        def filt(x: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(x, size=win_size, mode="reflect")
        n = win_size * win_size
        pad, cov_norm = win_size // 2, n / (n - 1)
    ux, uy = filt(a), filt(b)
    vx = cov_norm * (filt(a * a) - ux * ux)
    vy = cov_norm * (filt(b * b) - uy * uy)
    vxy = cov_norm * (filt(a * b) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    if pad and s.shape[0] > 2 * pad and s.shape[1] > 2 * pad:
        s = s[pad:-pad, pad:-pad]
    return float(s.mean())


def image_ssim(src: np.ndarray, gen: np.ndarray, size: int = 256) -> float:
    return ssim(resize_grey(src, size), resize_grey(gen, size))


def _segments(is_content: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    segs, start = [], None
    for i, v in enumerate(list(is_content) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start >= min_len:
                segs.append((start, i))
            start = None
    return segs


def _gutter(lines: np.ndarray, flat_std: float, light: float, dark: float) -> np.ndarray:
    """Which rows of ``lines`` (one line per row) are gutters: near-constant and near-white or near-black."""
    mean, std = lines.mean(axis=1), lines.std(axis=1)
    return (std < flat_std) & ((mean >= light) | (mean <= dark))


def panel_count(rgb: np.ndarray, min_frac: float = 0.15, flat_std: float = 4.0,
                light: float = 235.0, dark: float = 20.0) -> int:
    """Panels found from gutters: near-white (or near-black) constant rows and columns split the image.

    Bands shorter than ``min_frac`` of the side (caption lines, title bars) do not count. Returns
    the number of row bands times the column segments of the tallest band; 0 for a flat image.
    """
    grey = to_grey(rgb)
    h, w = grey.shape
    if grey.std() < flat_std:
        return 0
    bands = _segments(~_gutter(grey, flat_std, light, dark), max(1, int(min_frac * h)))
    if not bands:
        return 1
    top, bottom = max(bands, key=lambda s: s[1] - s[0])
    cols = _segments(~_gutter(grey[top:bottom].T, flat_std, light, dark), max(1, int(min_frac * w)))
    return len(bands) * max(1, len(cols))


def dhash(rgb: np.ndarray, size: int = 8) -> int:
    """Difference hash: 64 bits from horizontal gradients of a 9x8 grey thumbnail."""
    from PIL import Image

    im = Image.fromarray(np.clip(to_grey(rgb), 0, 255).astype(np.uint8)).resize((size + 1, size), Image.Resampling.BILINEAR)
    px = np.asarray(im, dtype=np.int32)
    bits = (px[:, 1:] > px[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def valence_proxy(rgb: np.ndarray) -> float:
    """A crude image-mood cue in [-1, 1]: mean brightness and warmth (red minus blue), each scaled."""
    bright = rgb.mean() / 255.0
    warm = (rgb[..., 0].mean() - rgb[..., 2].mean()) / 255.0
    return float(np.clip((bright - 0.5) + warm, -1.0, 1.0))


@functools.cache
def ocr_available() -> bool:
    try:
        import shutil

        import pytesseract  # noqa: F401

        return shutil.which("tesseract") is not None
    except ImportError:
        return False


def ocr_text(path: str | Path) -> str | None:
    """Text read by tesseract, or None when OCR is not installed."""
    if not ocr_available():
        return None
    import pytesseract
    from PIL import Image

    with Image.open(path) as im:
        return " ".join(pytesseract.image_to_string(im.convert("RGB")).split())


def pair_metrics(src_path: Path, gen_path: Path, row: dict[str, str], caption: str | None,
                 use_ocr: bool = False) -> dict[str, Any]:
    """All non-LLM metrics of one (source, edited) pair; caption = what the system reports, if any."""
    src, gen = load_rgb(src_path), load_rgb(gen_path)
    caption_source = "reported" if caption is not None else None
    if caption is None and use_ocr:
        caption = ocr_text(gen_path)
        caption_source = "ocr" if caption is not None else None
    out: dict[str, Any] = {
        "ssim": image_ssim(src, gen),
        "panels_src": panel_count(src),
        "panels_gen": panel_count(gen),
        "aspect_delta": abs(src.shape[1] / src.shape[0] - gen.shape[1] / gen.shape[0]),
        "dhash_distance": hamming(dhash(src), dhash(gen)),
        "gen_contrast": float(to_grey(gen).std()),
        "src_contrast": float(to_grey(src).std()),
        "valence_src": valence_proxy(src),
        "valence_gen": valence_proxy(gen),
        "caption_source": caption_source,
        "annotation_tone_shift": tone_shift(row["text"], row["pos_txt"]),
    }
    out["panel_match"] = float(out["panels_src"] == out["panels_gen"])
    if caption is not None:
        out["caption"] = caption
        out["caption_tone"] = vader_compound(caption)
        out["caption_tone_shift"] = tone_shift(row["text"], caption)
        for k, v in caption_fidelity(caption, row["pos_txt"]).items():
            out[f"caption_{k}"] = v
    return out
