from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.mer_bench.data import FIELDS, filter_rows, load_bench, load_index
from affectkit.tasks.mer_bench.judging import allocate_quota, draw_runs
from affectkit.tasks.mer_bench.metrics import caption_tone, chrf, edit_ratio, panel_count, rouge_l, ssim
from affectkit.tasks.mer_bench.schema import TARGET_OF


def row(i: int) -> dict:
    return {f: "x" for f in FIELDS} | {"id": f"{i}.png", "gen_id": f"{i}.png"}


def test_index_json_and_jsonl(tmp_path: Path) -> None:
    rows = [row(1), row(5)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + ",\n" for r in rows))  # trailing commas tolerated
    assert load_index(tmp_path / "a.json") == rows == load_index(tmp_path / "b.jsonl")


@pytest.mark.parametrize("content,problem", [
    ("[{\"id\": \"1.png\"}]", "missing field"),
    ("[" + json.dumps(row(1) | {"text": 3}) + "]", "must be strings"),
    ("[" + json.dumps(row(1)) + "," + json.dumps(row(1)) + "]", "duplicate id"),
    ("{broken\n", "invalid JSON"),
    ("[]", "no rows"),
])
def test_index_errors(tmp_path: Path, content: str, problem: str) -> None:
    p = tmp_path / "index_final.json"
    p.write_text(content)
    with pytest.raises(DataError, match=problem):
        load_index(p)


def test_released_schema_of_generated_index(bench4: Path) -> None:
    rows = json.loads((bench4 / "index_final.json").read_text())
    assert all(list(r) == list(FIELDS) and all(isinstance(v, str) for v in r.values()) for r in rows)
    assert all(r["tgt_emo"] == TARGET_OF[r["det_emo"]] and r["gen_id"] == r["id"] for r in rows)


def test_pruning_report(bench4: Path, tmp_path: Path) -> None:
    d = tmp_path / "b"
    shutil.copytree(bench4, d)
    ids = [r["id"] for r in load_index(d / "index_final.json")]
    (d / "Original" / ids[0]).unlink()
    (d / "EditedResults" / "blank" / ids[1]).unlink()
    b = load_bench(d, ["blank", "identity"])
    rep = b.pruning
    assert rep["total"] == 4 and rep["kept"] == 2 and rep["missing_source"] == 1
    assert rep["missing_by_system"] == {"blank": 1, "identity": 0}
    assert rep["missing_examples"]["blank"][0].endswith(f"blank/{ids[1]}")
    assert {r["id"] for r in b.rows} == set(ids[2:])
    # the repository-root layout (data/) is found too
    root = tmp_path / "repo"
    shutil.copytree(bench4, root / "data")
    assert len(load_bench(root).rows) == 4
    with pytest.raises(UsageError, match="not found") as exc:
        load_bench(d, ["blnk"])
    assert "did you mean 'blank'" in exc.value.hint
    with pytest.raises(UsageError, match="matches no row"):
        filter_rows(b.rows, {"visual_type": "Nope"})


def test_sampling_follows_reference_rng() -> None:
    rows = [row(i) for i in range(10)]
    plan = draw_runs(rows, ["A", "B"], "model", runs=2, sample=3, seed=7)
    rng = random.Random(7)
    for run in plan:
        picked = rng.sample(rows, 3)
        assert run == [(r["id"], s) for r in picked for s in ("A", "B")]
    assert plan[0] != plan[1]
    q = allocate_quota(7, 3, random.Random(0))
    assert sum(q) == 7 and sorted(q) == [2, 2, 3]
    fplan = draw_runs(rows, ["A", "B", "C"], "factor", runs=1, sample=7, seed=1)
    assert len(fplan[0]) == 7
    few = draw_runs(rows[:2], ["A"], "model", runs=1, sample=5, seed=0)  # with replacement when short
    assert len(few[0]) == 5


def test_chrf_by_hand() -> None:
    # "ab" vs "ab": perfect; "ab" vs "ac": order 1: P=R=1/2, order 2: P=R=0 -> P=R=1/4 -> F=1/4
    assert chrf("ab", "ab") == pytest.approx(1.0)
    assert chrf("ab", "ac") == pytest.approx(0.25)
    assert chrf("a b", "ab") == pytest.approx(1.0)  # whitespace ignored
    assert chrf("", "abc") == 0.0


def test_rouge_l_by_hand() -> None:
    # LCS("the cat sat", "the dog sat") = 2 -> P = R = 2/3
    assert rouge_l("the cat sat", "the dog sat") == pytest.approx(2 / 3)
    # LCS = 2 of 2 and 4 -> P=1, R=0.5, F=2/3
    assert rouge_l("a b", "a x b y") == pytest.approx(2 / 3)
    assert edit_ratio("abc", "abc") == 1.0


def test_ssim_uniform_window_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (20, 20))
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    w = 7
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(20 - w + 1):
        for j in range(20 - w + 1):
            x, y = a[i:i + w, j:j + w].ravel(), b[i:i + w, j:j + w].ravel()
            mx, my = x.mean(), y.mean()
            vx, vy = x.var(ddof=1), y.var(ddof=1)
            cxy = ((x - mx) * (y - my)).sum() / (x.size - 1)
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert ssim(a, b, window="uniform", win_size=7) == pytest.approx(np.mean(vals), abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 255 - a) < 0.1


def test_panel_count_on_generated_memes(bench4: Path) -> None:
    from affectkit.tasks.mer_bench.metrics import load_rgb

    for r in load_index(bench4 / "index_final.json"):
        want = 4 if r["layout_type"] == "MultiPanel_Meme" else 1
        assert panel_count(load_rgb(bench4 / "Original" / r["id"])) == want
        assert panel_count(load_rgb(bench4 / "EditedResults" / "blank" / r["id"])) == 0


def test_vader_direction() -> None:
    assert caption_tone("I hate this, terrible day") < 0 < caption_tone("\u201cWhat a great, happy day!\u201d")
    assert caption_tone("") == 0.0
