"""The baseline judge, ``rules``: a deterministic, offline stand-in for the MLLM, built from the non-LLM metrics.

It fills the same six-block schema so the whole pipeline runs without a model, and every record it
writes names it ``rules``. It is a heuristic: visual emotion comes from a brightness/warmth proxy,
text emotion from VADER and chrF against ``pos_txt`` on the caption the system reports (or OCR),
layout from the panel counter and SSIM. Do not read its scores as an MLLM's.
"""

from __future__ import annotations

import math
from typing import Any

from affectkit.tasks.mer_bench.backends import Outcome, Sample
from affectkit.tasks.mer_bench.config import JudgeConfig, RulesConfig
from affectkit.tasks.mer_bench.metrics import caption_tone, chrf, pair_metrics
from affectkit.tasks.mer_bench.schema import validate_judgment

RULES_VERSION = 1


def _likert(x: float) -> int:
    """Map [0, 1] to 1..5 (round half up)."""
    x = min(1.0, max(0.0, x))
    return 1 + int(math.floor(4 * x + 0.5))


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def rules_judgment(m: dict[str, Any], row: dict[str, str], rc: RulesConfig, rationale_first: bool = True) -> dict[str, Any]:
    """The six blocks computed from one pair's non-LLM metrics ``m`` (see ``metrics.pair_metrics``)."""
    flat = m["gen_contrast"] < rc.flat_contrast
    ratio = m["gen_contrast"] / max(m["src_contrast"], 1e-6)
    qv = 1 if flat else _likert(ratio / rc.quality_ref)
    dv = 0.0 if flat else m["valence_gen"] - m["valence_src"]
    ev = 1 if flat else _likert(dv / rc.valence_ref)
    if dv < rc.valence_min:
        ev = min(ev, 2)
    ev = min(ev, qv)
    caption = m.get("caption")
    if caption is None or not caption.strip():
        qt, et, tshift = 1, 1, 0.0
    else:
        words = len(caption.split())
        qt = _likert(words / 3.0)
        tshift = m["caption_tone_shift"]
        tone_pos = (caption_tone(caption) + 1.0) / 2.0
        et = _likert(0.5 * tone_pos + 0.5 * chrf(caption, row["pos_txt"]))
        if tshift < rc.tone_min:
            et = min(et, 2)
    consistent = bool(m["panel_match"]) and m["ssim"] >= rc.ssim_min and not flat
    if flat:
        label, other = "other", "none (empty image)"
    elif (ev + et) / 2.0 >= 3.0:
        label, other = row["tgt_emo"], None
    else:
        label, other = row["det_emo"], None
    shift_vis = _clip01(dv / rc.valence_ref)
    shift_txt = _clip01(tshift / 2.0)
    s = _likert((shift_vis + shift_txt) / 2.0)
    qo = _likert(((qv + qt + ev + et) / 4.0 - 1.0) / 4.0)
    if not consistent:
        qo = min(qo, 2)

    def block(fields: dict[str, Any], why: str) -> dict[str, Any]:
        why = f"[rules judge] {why}"
        return {"rationale": why, **fields} if rationale_first else {**fields, "rationale": why}

    cap_note = "no caption reported" if caption is None else f"caption tone shift {tshift:+.2f}"
    return {
        "visual_assessment": block({"generation_quality_1_5": qv, "emotion_accuracy_1_5": ev},
                                   f"contrast ratio {ratio:.2f}, valence proxy change {dv:+.3f}"),
        "text_assessment": block({"generation_quality_1_5": qt, "emotion_accuracy_1_5": et}, cap_note),
        "layout_consistency": block({"consistent": consistent},
                                    f"panels {m['panels_src']}->{m['panels_gen']}, SSIM {m['ssim']:.3f}"),
        "overall_emotion_classification": block({"label": label, "other_emotion": other},
                                                f"mean emotion accuracy {(ev + et) / 2:.1f} (target {row['tgt_emo']})"),
        "perceived_emotion_shift": block({"magnitude_1_5": s}, f"visual {shift_vis:.2f}, text {shift_txt:.2f}"),
        "overall_generation_quality": block({"overall_generation_quality_1_5": qo},
                                            "mean of the four quality/accuracy scores, capped at 2 when the layout broke"),
    }


class RulesBackend:
    kind = "rules"
    prices = None

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg

    @property
    def identity(self) -> str:
        return "rules"

    def settings(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"version": RULES_VERSION, **asdict(self.cfg.rules)}

    def judge_sync(self, sample: Sample) -> Outcome:
        m = pair_metrics(sample.src_path, sample.gen_path, sample.row, sample.caption, use_ocr=self.cfg.rules.use_ocr)
        obj = rules_judgment(m, sample.row, self.cfg.rules, self.cfg.rationale_first)
        errs = validate_judgment(obj)
        if errs:  # cannot happen unless the formulas above break; recorded, not raised
            return Outcome(status="failed", error_kind="invalid", errors=errs, attempts=1, parsed=obj)
        return Outcome(status="ok", judgment=obj, attempts=1, attempt_log=[{"attempt": 1, "kind": "ok"}])

    def preflight(self) -> None:
        pass

    async def judge(self, sample: Sample) -> Outcome:
        return self.judge_sync(sample)

    def close(self) -> None:
        pass
