"""MER-Bench's metrics: the judge scores aggregated per run and stratum, and the non-LLM metrics.

Judge scores (``score_plan``): per run, the mean of each per-sample metric (``method.extract_metrics``)
over the usable judgments of a group (a system in the model view, all systems pooled in the factor
view), unitised and turned into the composites (``method.composites``); then mean, sample std and
the reference's order-statistic 95 % interval over runs, with coverage (``n_ok/n_total``, failure
kinds, missing fields). Failure records are excluded, and a run with no usable judgment has no
score (it is left out of the mean over runs). With ``compat`` the reference (``main.py`` and
``results/table_2.py`` of the MER-Bench repository) is reproduced exactly: every reply that parsed
is scored whatever rule it broke (``other_emotion``, ranges, types), an invalid Likert field counts
0.0 and a boolean counts as the number it is (``true`` = 1), and a run with no usable judgment
records 0.0 for every metric.

Deterministic metrics that need no judge model (spec B9.4):

* caption tone: VADER compound of a caption (``affectkit.components.sentiment``, the ``text`` extra);
* caption fidelity: chrF (character n-grams 1..6, beta 2), ROUGE-L F1 over words and the
  difflib edit ratio between a produced caption and ``pos_txt`` (quote marks stripped first);
* structure: SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range
  255) on grey images resized to a common size, a panel counter from gutter projection profiles,
  a difference hash to flag "no edit";
* an image valence proxy (brightness and warmth), used only by the ``rules`` judge (baselines.py);
* OCR through pytesseract when it and the tesseract binary are installed (optional).
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.components.sentiment import vader_compound
from affectkit.core.errors import DataError
from affectkit.tasks.mer_bench.method import (
    COLUMNS,
    COMPOSITES,
    METRICS,
    composites,
    extract_metrics,
    unitise,
)

QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb`"


def strip_quotes(text: str) -> str:
    return text.strip().strip(QUOTES).strip()


# ---- text --------------------------------------------------------------------------------------


def caption_tone(text: str) -> float:
    """VADER compound score in [-1, 1] of a caption, quote marks stripped (0.0 for an empty caption)."""
    text = strip_quotes(text or "")
    if not text:
        return 0.0
    return vader_compound([text])[0]


def tone_shift(source_caption: str, caption: str) -> float:
    """compound(caption) - compound(source caption); > 0 means the caption moved toward positive."""
    return caption_tone(caption) - caption_tone(source_caption)


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
    """The image as float RGB; a file PIL cannot decode is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float64)
    except UnidentifiedImageError:
        raise DataError(path, "not an image (PIL cannot identify its format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        if isinstance(exc, OSError) and not Path(path).is_file():
            raise
        raise DataError(path, f"corrupt image ({type(exc).__name__}: {exc})", "replace the file or remove its row") from None


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
        out["caption_tone"] = caption_tone(caption)
        out["caption_tone_shift"] = tone_shift(row["text"], caption)
        for k, v in caption_fidelity(caption, row["pos_txt"]).items():
            out[f"caption_{k}"] = v
    return out


NONLLM_MEANS: tuple[str, ...] = ("ssim", "panel_match", "dhash_distance", "caption_tone_shift", "caption_chrf",
                                 "caption_rouge_l", "caption_edit_ratio", "annotation_tone_shift")


def nonllm_rows(pairs: list[tuple[str, dict[str, Any]]], systems: list[str]) -> list[dict[str, Any]]:
    """Mean non-LLM metrics per system from ``(system, pair_metrics(...))`` items, plus the rates of
    "no edit" (identical hash, SSIM > 0.999) and of pairs with a caption."""
    acc: dict[str, dict[str, list[float]]] = {}
    for s, m in pairs:
        a = acc.setdefault(s, {})
        for k in NONLLM_MEANS:
            if k in m and m[k] is not None:
                a.setdefault(k, []).append(float(m[k]))
        a.setdefault("no_edit", []).append(float(m["dhash_distance"] == 0 and m["ssim"] > 0.999))
        a.setdefault("caption_coverage", []).append(float(m.get("caption") is not None))
    rows = []
    for s in systems:
        row: dict[str, Any] = {"system": s, "n": len(acc.get(s, {}).get("ssim", []))}
        for k, v in acc.get(s, {}).items():
            row[k] = round(float(np.mean(v)), 4)
        rows.append(row)
    return rows


# ---- judge scores ------------------------------------------------------------------------------


def _mean(xs: list[float], empty: float = float("nan")) -> float:
    return float(np.mean(xs)) if xs else empty


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, sample std (ddof 1; 0 for one run) and the reference's order-statistic 95 % interval."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return {"mean": float("nan"), "std": float("nan"), "ci95": [float("nan"), float("nan")], "runs": 0}
    ys = sorted(xs)
    return {
        "mean": float(np.mean(xs)),
        "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
        "ci95": [ys[int(0.025 * (len(ys) - 1))], ys[int(0.975 * (len(ys) - 1))]],
        "runs": len(xs),
    }


def _run_scores(items: list[dict[str, float | None]], alpha: float, soft_floor: float, gm_floor: float,
                compat: bool = False) -> dict[str, float]:
    # the reference's mean of no value is 0.0: with compat a run with no usable judgment scores 0
    empty = 0.0 if compat else float("nan")
    means = {k: _mean([x[k] for x in items if x[k] is not None], empty) for k in METRICS}
    if any(math.isnan(v) for v in means.values()):
        return {**{k: float("nan") for k in METRICS}, **{k: float("nan") for k in COMPOSITES}, "Overall_product": float("nan"),
                **{f"raw_{k}": v for k, v in means.items()}}
    unit = unitise(means)
    return {**unit, **composites(unit, alpha, soft_floor, gm_floor), **{f"raw_{k}": v for k, v in means.items()}}


def _usable(rec: dict[str, Any], compat: bool) -> dict[str, Any] | None:
    """The judgment a record contributes: a valid one; with ``compat`` also any reply that parsed to
    an object, whatever rule it broke (the reference scores every reply ``json.loads`` accepts,
    ``other_emotion`` violations included: its post-validation only flags them)."""
    if rec["status"] == "ok" and isinstance(rec.get("judgment"), dict):
        return rec["judgment"]
    if compat and isinstance(rec.get("parsed"), dict):
        return rec["parsed"]
    return None


def score_plan(plan: dict[str, Any], records: dict[tuple[str, str], dict[str, Any]], *, compat: bool = False,
               alpha: float = 3.0, soft_floor: float = 1e-3, gm_floor: float = 1e-12) -> dict[str, Any]:
    """Per stratum: per-run scores (by system in the model view, pooled in the factor view) and summaries."""
    view = plan["view"]
    systems = plan["systems"]
    strata_out = {}
    for stratum in plan["strata"]:
        groups = systems if view == "model" else ["pooled"]
        per_run: dict[str, list[dict[str, float]]] = {g: [] for g in groups}
        coverage: dict[str, dict[str, Any]] = {g: {"n_ok": 0, "n_total": 0, "failure_kinds": {},
                                                   "missing": {k: 0 for k in METRICS}} for g in groups}
        counted: set[tuple[str, str, str]] = set()
        for run in stratum["runs"]:
            items: dict[str, list[dict[str, float | None]]] = {g: [] for g in groups}
            for rid, system in run:
                g = system if view == "model" else "pooled"
                rec = records.get((rid, system))
                first = (g, rid, system) not in counted
                counted.add((g, rid, system))
                cov = coverage[g]
                if first:
                    cov["n_total"] += 1
                if rec is None:
                    if first:
                        cov["failure_kinds"]["not_judged"] = cov["failure_kinds"].get("not_judged", 0) + 1
                    continue
                judgment = _usable(rec, compat)
                if judgment is None:
                    if first:
                        kind = rec.get("error_kind") or "unknown"
                        cov["failure_kinds"][kind] = cov["failure_kinds"].get(kind, 0) + 1
                    continue
                if first:
                    cov["n_ok"] += 1
                m = extract_metrics(judgment, rec["tgt_emo"], zero_fill=compat)
                if first:
                    for k, v in m.items():
                        cov["missing"][k] += v is None
                items[g].append(m)
            for g in groups:
                per_run[g].append(_run_scores(items[g], alpha, soft_floor, gm_floor, compat))
        summary = {}
        for g in groups:
            keys = list(per_run[g][0]) if per_run[g] else []
            summary[g] = {k: summarise([r[k] for r in per_run[g]]) for k in keys}
            summary[g]["coverage"] = coverage[g]
        strata_out[stratum["name"]] = {"filters": stratum["filters"], "n_rows": stratum.get("n_rows"),
                                       "groups": summary, "per_run": per_run}
    return {"view": view, "systems": systems, "runs": plan["runs"], "sample": plan["sample"], "seed": plan["seed"],
            "strata": strata_out}


def _fmt(s: dict[str, float]) -> str:
    if math.isnan(s["mean"]):
        return "n/a"
    return f"{100 * s['mean']:.2f}±{100 * s['std']:.2f}"


def table_rows(scored: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system (model view) or per stratum (factor view), numbers in percent."""
    rows = []
    for sname, st in scored["strata"].items():
        for g, summ in st["groups"].items():
            label = g if scored["view"] == "model" else sname
            cov = summ["coverage"]
            row: dict[str, Any] = {"system" if scored["view"] == "model" else "stratum": label}
            if scored["view"] == "model" and len(scored["strata"]) > 1:
                row["stratum"] = sname
            for c in COLUMNS:
                row[c] = _fmt(summ[c]) if c in summ else "n/a"
            row["n_ok/n_total"] = f"{cov['n_ok']}/{cov['n_total']}"
            rows.append(row)
    return rows
