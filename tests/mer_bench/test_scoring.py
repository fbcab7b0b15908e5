from __future__ import annotations

import json
import math

import numpy as np
import pytest

from affectkit.tasks.mer_bench.evaluation import evaluate_judgments
from affectkit.tasks.mer_bench.loopback import valid_judgment
from affectkit.tasks.mer_bench.method import (
    composites,
    extract_metrics,
    geometric,
    harmonic,
    soft_and,
    unit_likert,
)
from affectkit.tasks.mer_bench.metrics import score_plan, summarise


def test_spec_worked_example() -> None:
    unit = {"VEAS": unit_likert(4), "TEAS": unit_likert(3), "OEC": 0.6, "LC": 0.8, "VQS": 0.75, "TQS": 0.5,
            "OGQS": unit_likert(3.5), "PESM": unit_likert(3)}
    assert unit["OGQS"] == 0.625
    c = composites(unit)
    assert c["TA"] == pytest.approx(0.36, abs=1e-9)
    assert c["CF"] == pytest.approx(0.49324, abs=5e-6)
    assert c["SS"] == pytest.approx(0.77687, abs=5e-6)
    assert c["Overall"] == pytest.approx(0.51726, abs=5e-6)
    assert c["Overall_product"] == pytest.approx(0.13795, abs=5e-6)
    # independent hand computation of the pieces
    assert c["CF"] == pytest.approx(0.8 * (0.75 * 0.5 * 0.625) ** (1 / 3))
    f = 1e-3
    g = math.exp((math.log(f + c["TA"]) + math.log(f + c["CF"]) + math.log(f + c["SS"])) / 3)
    assert c["Overall"] == pytest.approx((g - f) / (1 - f))


def test_pieces() -> None:
    assert harmonic(0, 0) == 0
    assert harmonic(0.5, 0.5) == pytest.approx(0.5)
    assert geometric([0.0, 1.0]) == pytest.approx(1e-6)  # floored at 1e-12 each
    assert soft_and([0, 0, 0]) == pytest.approx(0, abs=1e-12)
    assert soft_and([1, 1, 1]) == pytest.approx(1)
    assert unit_likert(0.0) == 0 and unit_likert(5) == 1 and unit_likert(9) == 1


def test_summarise_matches_numpy() -> None:
    xs = [0.2, 0.4, 0.9, 0.5]
    s = summarise(xs)
    assert s["mean"] == pytest.approx(np.mean(xs))
    assert s["std"] == pytest.approx(np.std(xs, ddof=1))
    assert s["ci95"] == [0.2, 0.5]  # order statistics at int(0.025*3)=0 and int(0.975*3)=2
    assert summarise([0.3])["std"] == 0.0


def test_extract_missing_vs_zero_fill() -> None:
    j = valid_judgment(label="calm", score=4)
    j["text_assessment"]["emotion_accuracy_1_5"] = 9
    m = extract_metrics(j, "calm")
    assert m["TEAS"] is None and m["VEAS"] == 4.0 and m["OEC"] == 1.0 and m["LC"] == 1.0
    assert extract_metrics(j, "calm", zero_fill=True)["TEAS"] == 0.0
    assert extract_metrics(j, "happy")["OEC"] == 0.0


def _rec(rid: str, system: str, judgment: dict | None, status: str = "ok", **kw: object) -> dict:
    return {"id": rid, "system": system, "status": status, "tgt_emo": "happy", "judgment": judgment, **kw}


def test_failures_excluded_and_compat() -> None:
    bad = valid_judgment(score=3)
    bad["visual_assessment"]["generation_quality_1_5"] = 6
    records = {
        ("1", "A"): _rec("1", "A", valid_judgment(score=5)),
        ("2", "A"): _rec("2", "A", None, status="failed", error_kind="invalid", parsed=bad,
                         errors=[{"code": "range"}]),
        ("3", "A"): _rec("3", "A", None, status="failed", error_kind="parse_error", parsed=None),
    }
    plan = {"view": "model", "systems": ["A"], "runs": 1, "sample": 0, "seed": 0,
            "strata": [{"name": "all", "filters": {}, "runs": [[["1", "A"], ["2", "A"], ["3", "A"]]]}]}
    default = score_plan(plan, records)["strata"]["all"]["groups"]["A"]
    assert default["coverage"]["n_ok"] == 1 and default["coverage"]["n_total"] == 3
    assert default["coverage"]["failure_kinds"] == {"invalid": 1, "parse_error": 1}
    assert default["raw_VQS"]["mean"] == 5.0
    compat = score_plan(plan, records, compat=True)["strata"]["all"]["groups"]["A"]
    assert compat["coverage"]["n_ok"] == 2
    assert compat["raw_VQS"]["mean"] == pytest.approx((5 + 0) / 2)  # the reference's zero-fill
    assert compat["raw_VEAS"]["mean"] == pytest.approx((5 + 3) / 2)


def test_runs_mean_and_std_over_runs(tmp_path) -> None:
    records = {("1", "A"): _rec("1", "A", valid_judgment(score=5)), ("2", "A"): _rec("2", "A", valid_judgment(score=1))}
    plan = {"view": "model", "systems": ["A"], "runs": 2, "sample": 1, "seed": 0,
            "strata": [{"name": "all", "filters": {}, "runs": [[["1", "A"]], [["2", "A"]]]}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records.values()))
    res = evaluate_judgments(tmp_path, nonllm=False)
    s = res["scores"]["all"]["A"]
    assert s["VQS"]["mean"] == pytest.approx(0.5) and s["VQS"]["std"] == pytest.approx(np.std([1, 0], ddof=1))
    assert (tmp_path / "eval" / "table_2.csv").is_file() and (tmp_path / "eval" / "table_2.md").is_file()
    assert res["table"][0]["n_ok/n_total"] == "2/2"
    assert res["table"][0]["VQS"] == "50.00±70.71"
