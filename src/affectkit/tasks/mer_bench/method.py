"""MER-Bench's scoring method (the paper's formulas), free of I/O.

Per judged sample: six Likert scores (value if a number in 1..5, booleans excluded), layout
consistency (1 if ``consistent is True``) and the target hit (1 if the judge's label equals
``tgt_emo``). An invalid Likert field is *missing* (None). With ``zero_fill`` the reference's
extraction is reproduced exactly: an invalid field counts 0.0, and a boolean is the number it is in
Python (``true`` counts 1.0, ``false`` 0.0).

Composites, from unitised run-level means, with u(x) = clamp((x - 1) / 4, 0, 1) for Likert means and
rates clamped to [0, 1]:
TA = H * HM(Ev, Et); CF = L * GM(Qv, Qt, Qo); SS = 1 - exp(-alpha * S);
Overall = soft-AND(TA, CF, SS) = (exp(mean(log(f + x))) - f) / (1 - f), clamped to [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

# short name -> (block, field, kind)
METRICS: dict[str, tuple[str, str, str]] = {
    "VQS": ("visual_assessment", "generation_quality_1_5", "likert"),
    "VEAS": ("visual_assessment", "emotion_accuracy_1_5", "likert"),
    "TQS": ("text_assessment", "generation_quality_1_5", "likert"),
    "TEAS": ("text_assessment", "emotion_accuracy_1_5", "likert"),
    "LC": ("layout_consistency", "consistent", "rate"),
    "OGQS": ("overall_generation_quality", "overall_generation_quality_1_5", "likert"),
    "OEC": ("overall_emotion_classification", "label", "hit"),
    "PESM": ("perceived_emotion_shift", "magnitude_1_5", "likert"),
}
COMPOSITES: tuple[str, ...] = ("TA", "CF", "SS", "Overall")
COLUMNS: tuple[str, ...] = (*METRICS, *COMPOSITES)


def _get(obj: Any, block: str, name: str) -> Any:
    sub = obj.get(block) if isinstance(obj, dict) else None
    return sub.get(name) if isinstance(sub, dict) else None


def extract_metrics(judgment: dict[str, Any], tgt_emo: str, zero_fill: bool = False) -> dict[str, float | None]:
    """The eight per-sample metrics; an invalid Likert value is None, or with ``zero_fill`` (the
    reference's extraction) 0.0, a boolean then counting as the number it is (``True`` = 1.0)."""
    out: dict[str, float | None] = {}
    for short, (block, name, kind) in METRICS.items():
        v = _get(judgment, block, name)
        if kind == "likert":
            ok = isinstance(v, (int, float)) and (zero_fill or not isinstance(v, bool)) and 1 <= float(v) <= 5
            out[short] = float(v) if ok else (0.0 if zero_fill else None)
        elif kind == "rate":
            out[short] = 1.0 if v is True else 0.0
        else:
            out[short] = 1.0 if isinstance(v, str) and v == tgt_emo else 0.0
    return out


def unit_likert(x: float) -> float:
    return min(1.0, max(0.0, (x - 1.0) / 4.0))


def unit_rate(x: float) -> float:
    return min(1.0, max(0.0, x))


def harmonic(a: float, b: float) -> float:
    return 0.0 if a + b <= 1e-12 else 2 * a * b / (a + b)


def geometric(xs: list[float], floor: float = 1e-12) -> float:
    return float(math.exp(sum(math.log(max(x, floor)) for x in xs) / len(xs)))


def soft_and(xs: list[float], f: float = 1e-3) -> float:
    g = math.exp(sum(math.log(f + x) for x in xs) / len(xs))
    value = (g - f) / (1 - f)
    return 0.0 if abs(value) < 1e-12 else min(1.0, max(0.0, value))  # exp(log(f)) - f is rounding noise


def composites(unit: dict[str, float], alpha: float = 3.0, soft_floor: float = 1e-3, gm_floor: float = 1e-12) -> dict[str, float]:
    """TA, CF, SS, Overall from unitised run-level means (keys VQS..PESM as in METRICS), plus the plain product."""
    ta = unit["OEC"] * harmonic(unit["VEAS"], unit["TEAS"])
    cf = unit["LC"] * geometric([unit["VQS"], unit["TQS"], unit["OGQS"]], gm_floor)
    ss = 1.0 - math.exp(-alpha * unit["PESM"])
    return {"TA": ta, "CF": cf, "SS": ss, "Overall": soft_and([ta, cf, ss], soft_floor), "Overall_product": ta * cf * ss}


def unitise(means: dict[str, float]) -> dict[str, float]:
    return {k: (unit_likert(v) if METRICS[k][2] == "likert" else unit_rate(v)) for k, v in means.items()}
