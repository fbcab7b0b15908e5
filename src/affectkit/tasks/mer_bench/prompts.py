"""The judge's instructions and the chat messages that carry two images.

The rubric follows the structure the MER-Bench judge uses (a system role with global rules, then a
user text with the labels, the emotions, optional references and a per-field rubric); the wording is
affectkit's own.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from affectkit.tasks.mer_bench.schema import BLOCKS, LABELS

SYSTEM_PROMPT = """\
You evaluate meme reappraisal: a negatively framed meme (SOURCE) was edited into a constructive one
(EDITED). You are given both images, the source emotion, the target emotion and possibly the two
captions and the editing instruction. Reply with one JSON object that follows the given schema and
nothing else.

Rules that apply to every block:
A. Content: the edited meme must show the same situation, entities and meaning. Penalise topic drift,
   new objects or events.
B. Layout: a single-panel meme must stay single-panel; a multi-panel or grid meme must keep the panel
   count, the panel order and the caption regions. Any mismatch means consistent = false.
C. Target gating: when the edit does not convey the TARGET emotion, every emotion-accuracy score is at
   most 2.
D. Each block's rationale justifies that block only; do not repeat rationales across blocks. State
   whether the target is matched, whether the scenario is preserved or drifted, and whether text and
   image are aligned, conflicting or unclear.
E. The classification label is the one primary emotion you perceive in the EDITED meme; use "other"
   and name it in other_emotion only when none of the listed emotions fits (otherwise other_emotion is
   null).
Output JSON only, with no extra keys, keys in schema order."""


def user_text(row: dict[str, Any], include_reference: bool = True) -> str:
    """The rubric text for one (source, edited) pair."""
    blocks = ", ".join(BLOCKS)
    lines = [
        "Task: judge how well the EDITED meme reappraises the SOURCE meme toward the target emotion.",
        f"Allowed labels: {', '.join(LABELS)}.",
        f"SOURCE emotion: {row['det_emo']}",
        f"TARGET emotion: {row['tgt_emo']}",
    ]
    if include_reference:
        lines += [
            "Reference (may be imperfect):",
            f"- source caption: {row.get('text', '')}",
            f"- target caption: {row.get('pos_txt', '')}",
            f"- editing instruction: {row.get('spec', '')}",
        ]
    lines += [
        f"Fill these blocks in order: {blocks}.",
        "visual_assessment.generation_quality_1_5: cleanliness, artefacts, coherent style.",
        "visual_assessment.emotion_accuracy_1_5: facial expression, posture, lighting, colour and tension"
        " cues against the target (at most 2 when the target is not conveyed).",
        "text_assessment.generation_quality_1_5: the caption is legible, not garbled or cropped, with a"
        " consistent font and outline and natural placement.",
        "text_assessment.emotion_accuracy_1_5: the wording conveys the target while describing the same"
        " scenario (at most 2 otherwise).",
        "layout_consistency.consistent: same panel structure (single vs multi-panel, panel count and"
        " order, caption regions).",
        "overall_emotion_classification.label: the primary emotion perceived from image and text together.",
        "perceived_emotion_shift.magnitude_1_5: how strongly the emotion changed from SOURCE to EDITED"
        " (1 very small ... 5 very large).",
        "overall_generation_quality.overall_generation_quality_1_5: holistic success (target, content,"
        " layout, readability) without repeating earlier rationales.",
    ]
    return "\n".join(lines)


def image_mime(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    if ext in ("jpg", "jpeg"):
        return "image/jpeg"
    return f"image/{ext or 'png'}"


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def build_messages(
    row: dict[str, Any],
    src: tuple[bytes, str],
    gen: tuple[bytes, str],
    images_first: bool = True,
    include_reference: bool = True,
    detail: str | None = "auto",
) -> list[dict[str, Any]]:
    """OpenAI chat messages: a system text and a user message with two standard ``image_url`` parts.

    Images go as ``{"type": "image_url", "image_url": {"url": <data URL>, "detail": ...}}`` (the
    object form the OpenAI and vLLM request models expect), SOURCE before EDITED; with
    ``images_first`` off the rubric comes before the images.
    """

    def image_part(blob: tuple[bytes, str]) -> dict[str, Any]:
        inner: dict[str, Any] = {"url": data_url(*blob)}
        if detail:
            inner["detail"] = detail
        return {"type": "image_url", "image_url": inner}

    images = [
        {"type": "text", "text": "SOURCE image:"},
        image_part(src),
        {"type": "text", "text": "EDITED image:"},
        image_part(gen),
    ]
    rubric = [{"type": "text", "text": user_text(row, include_reference)}]
    content = images + rubric if images_first else rubric + images
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": content},
    ]
