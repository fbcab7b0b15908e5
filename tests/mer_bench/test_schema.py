from __future__ import annotations

import copy
import json

import pytest

from affectkit.tasks.mer_bench.loopback import valid_judgment
from affectkit.tasks.mer_bench.schema import (
    BLOCKS,
    ParseFailure,
    judgment_schema,
    parse_reply,
    schema_hash,
    validate_judgment,
)


def test_schema_is_strict_and_ordered() -> None:
    s = judgment_schema(rationale_first=True)
    assert list(s["properties"]) == list(BLOCKS)
    assert s["additionalProperties"] is False
    for _block, sub in s["properties"].items():
        assert sub["additionalProperties"] is False
        assert sub["required"] == list(sub["properties"])
        assert list(sub["properties"])[0] == "rationale"
    assert s["properties"]["overall_emotion_classification"]["properties"]["other_emotion"]["type"] == ["string", "null"]
    assert "nullable" not in json.dumps(s)
    last = judgment_schema(rationale_first=False)
    assert list(last["properties"]["visual_assessment"]["properties"])[-1] == "rationale"
    assert schema_hash(s) != schema_hash(last)


def test_parse_strict_fence_prose_last_object_repair() -> None:
    obj = valid_judgment()
    text = json.dumps(obj)
    assert parse_reply(text) == (obj, "strict")
    assert parse_reply(f"Here you go:\n```json\n{text}\n```\nThanks")[0] == obj
    # a JSON object quoted earlier (e.g. from a caption) must not win over the answer at the end
    assert parse_reply('The caption said {"label": "sad"}. My answer: ' + text)[0] == obj
    trailing = text[:-1] + ",}"
    assert parse_reply("answer: " + trailing)[0] == obj
    assert parse_reply("{'a': 1, 'b': None,}")[0] == {"a": 1, "b": None}
    for bad in ("", "   ", "no json here", "{unclosed"):
        with pytest.raises(ParseFailure):
            parse_reply(bad)


def test_valid_judgment_passes() -> None:
    assert validate_judgment(valid_judgment()) == []


def test_other_with_null_other_emotion_rejected() -> None:
    j = valid_judgment(label="other")
    errs = validate_judgment(j)
    assert [e["code"] for e in errs] == ["other_emotion"]
    j["overall_emotion_classification"]["other_emotion"] = "nostalgic"
    assert validate_judgment(j) == []
    k = valid_judgment(label="happy")
    k["overall_emotion_classification"]["other_emotion"] = "joy"
    assert [e["code"] for e in validate_judgment(k)] == ["other_emotion"]


def test_out_of_range_flagged_not_clamped() -> None:
    j = valid_judgment()
    j["visual_assessment"]["emotion_accuracy_1_5"] = 7
    j["perceived_emotion_shift"]["magnitude_1_5"] = 0
    before = copy.deepcopy(j)
    errs = validate_judgment(j)
    assert {(e["code"], e["where"]) for e in errs} == {
        ("range", "visual_assessment.emotion_accuracy_1_5"), ("range", "perceived_emotion_shift.magnitude_1_5")}
    assert j == before  # nothing was clamped in place


def test_structure_errors() -> None:
    j = valid_judgment()
    del j["text_assessment"]
    j["extra"] = 1
    j["layout_consistency"]["consistent"] = "yes"
    j["visual_assessment"]["generation_quality_1_5"] = True
    j["overall_emotion_classification"]["label"] = "joyful"
    codes = sorted(e["code"] for e in validate_judgment(j))
    assert codes == ["enum", "structure", "structure", "structure", "structure"]
    assert validate_judgment([1, 2])[0]["code"] == "structure"
