"""The six-block judgment schema of MER-Bench, a tolerant reply parser and post-validation.

The schema is emitted in JSON-Schema 2020 style (``{"type": ["string", "null"]}`` rather than the
OpenAPI ``nullable`` keyword the reference code uses), strict: every object closes with
``additionalProperties: false`` and lists all of its keys as required. Backends differ in how much of
it they enforce, so every parsed reply is validated again here: ranges are checked (out-of-range
values are flagged, never clamped) and the ``label``/``other_emotion`` rule is enforced.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

EMOTIONS: tuple[str, ...] = ("angry", "sad", "tense", "bored", "calm", "happy", "excited", "relaxed")
LABELS: tuple[str, ...] = (*EMOTIONS, "other")
# The released index maps each detected emotion to one target emotion, always the same one.
TARGET_OF: dict[str, str] = {"sad": "happy", "tense": "relaxed", "angry": "calm", "bored": "excited"}

SCHEMA_NAME = "meme_reappraisal_judgment"

# block -> ordered (field, kind); kinds: likert (int 1..5), bool, label, other (string|null)
BLOCKS: dict[str, tuple[tuple[str, str], ...]] = {
    "visual_assessment": (("generation_quality_1_5", "likert"), ("emotion_accuracy_1_5", "likert")),
    "text_assessment": (("generation_quality_1_5", "likert"), ("emotion_accuracy_1_5", "likert")),
    "layout_consistency": (("consistent", "bool"),),
    "overall_emotion_classification": (("label", "label"), ("other_emotion", "other")),
    "perceived_emotion_shift": (("magnitude_1_5", "likert"),),
    "overall_generation_quality": (("overall_generation_quality_1_5", "likert"),),
}


def _field_schema(kind: str) -> dict[str, Any]:
    if kind == "likert":
        return {"type": "integer", "minimum": 1, "maximum": 5}
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "label":
        return {"type": "string", "enum": list(LABELS)}
    return {"type": ["string", "null"]}


def judgment_schema(rationale_first: bool = True) -> dict[str, Any]:
    """The strict JSON schema of one judgment; ``rationale`` opens (or closes) every block."""
    props: dict[str, Any] = {}
    for block, fields in BLOCKS.items():
        inner: dict[str, Any] = {}
        if rationale_first:
            inner["rationale"] = {"type": "string"}
        for name, kind in fields:
            inner[name] = _field_schema(kind)
        if not rationale_first:
            inner["rationale"] = {"type": "string"}
        props[block] = {
            "type": "object",
            "properties": inner,
            "required": list(inner),
            "additionalProperties": False,
        }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_hash(schema: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(schema).encode("utf-8")).hexdigest()


# ---- tolerant parsing --------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


class ParseFailure(ValueError):
    """The reply holds no JSON object we could recover."""


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` span of ``text`` (string literals and escapes respected)."""
    spans: list[str] = []
    depth = 0
    start = -1
    in_str: str | None = None
    escaped = False
    for i, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_str:
                in_str = None
            continue
        if ch == '"' and depth > 0:
            in_str = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PY_LITERALS = {"None": "null", "True": "true", "False": "false"}


def _repair(text: str) -> str:
    """Light repairs: trailing commas, Python literals, single-quoted strings when no double quotes."""
    fixed = _TRAILING_COMMA.sub(r"\1", text)
    fixed = re.sub(r"\b(None|True|False)\b", lambda m: _PY_LITERALS[m.group(1)], fixed)
    if '"' not in fixed and "'" in fixed:
        fixed = fixed.replace("'", '"')
    return fixed


def _loads_object(text: str) -> dict[str, Any] | None:
    for candidate in (text, _repair(text)):
        try:
            obj = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def parse_reply(text: str | None) -> tuple[dict[str, Any], str]:
    """Recover the judgment object from a reply; returns ``(object, method)``.

    Order: the whole reply as JSON; the last fenced block; the **last** balanced top-level object
    (a judge may quote JSON from the captions it was shown before its own answer); each with light
    repairs. Raises ParseFailure when nothing parses to an object.
    """
    if text is None or not text.strip():
        raise ParseFailure("empty reply")
    stripped = text.strip()
    obj = _loads_object(stripped)
    if obj is not None:
        return obj, "strict"
    fences = _FENCE.findall(stripped)
    for block in reversed(fences):
        obj = _loads_object(block.strip())
        if obj is not None:
            return obj, "fence"
    for span in reversed(_balanced_objects(stripped)):
        obj = _loads_object(span)
        if obj is not None:
            return obj, "last_object"
    raise ParseFailure(f"no JSON object in reply ({len(text)} chars)")


# ---- post-validation ---------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (
        isinstance(value, float) and value.is_integer()
    )


def validate_judgment(obj: Any, rationale_required: bool = True) -> list[dict[str, str]]:
    """Schema and cross-field errors of a parsed judgment; an empty list means valid.

    Each error is ``{"code", "where", "message"}``; codes: ``structure`` (missing/extra key, wrong
    type), ``range`` (Likert value outside 1..5), ``enum`` (unknown label), ``other_emotion`` (the
    ``label == "other"`` iff non-empty ``other_emotion`` rule).
    """
    errors: list[dict[str, str]] = []

    def err(code: str, where: str, message: str) -> None:
        errors.append({"code": code, "where": where, "message": message})

    if not isinstance(obj, dict):
        err("structure", "$", f"expected an object, got {type(obj).__name__}")
        return errors
    for extra in sorted(set(obj) - set(BLOCKS)):
        err("structure", extra, "unexpected key")
    for block, fields in BLOCKS.items():
        sub = obj.get(block)
        if not isinstance(sub, dict):
            err("structure", block, "missing block" if sub is None else "block is not an object")
            continue
        allowed = {name for name, _ in fields} | {"rationale"}
        for extra in sorted(set(sub) - allowed):
            err("structure", f"{block}.{extra}", "unexpected key")
        if rationale_required and not isinstance(sub.get("rationale"), str):
            err("structure", f"{block}.rationale", "missing or not a string")
        for name, kind in fields:
            where = f"{block}.{name}"
            if name not in sub:
                err("structure", where, "missing")
                continue
            value = sub[name]
            if kind == "likert":
                if not _is_int(value):
                    err("structure", where, f"expected an integer 1-5, got {value!r}")
                elif not 1 <= value <= 5:
                    err("range", where, f"{value!r} is outside 1-5")
            elif kind == "bool":
                if not isinstance(value, bool):
                    err("structure", where, f"expected a boolean, got {value!r}")
            elif kind == "label":
                if value not in LABELS:
                    err("enum", where, f"{value!r} is not one of {', '.join(LABELS)}")
            elif kind == "other" and value is not None and not isinstance(value, str):
                err("structure", where, f"expected a string or null, got {value!r}")
    cls = obj.get("overall_emotion_classification")
    if isinstance(cls, dict) and "label" in cls and "other_emotion" in cls:
        label, other = cls.get("label"), cls.get("other_emotion")
        has_other = isinstance(other, str) and other.strip() != ""
        if label == "other" and not has_other:
            err("other_emotion", "overall_emotion_classification", 'label is "other" but other_emotion is empty')
        elif label != "other" and other is not None:
            err("other_emotion", "overall_emotion_classification", 'other_emotion must be null unless label is "other"')
    return errors
