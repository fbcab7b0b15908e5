from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affectkit.cli import app
from affectkit.core.output import Output
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.evaluation import evaluate_judgments
from affectkit.tasks.mer_bench.judging import judge, read_records
from affectkit.tasks.mer_bench.synth import EXPECTED_RANKING, make_benchmark


@pytest.fixture(scope="module")
def bench24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bench24")
    make_benchmark(d, seed=11, n=24)
    return d


def test_rules_judge_ranks_systems(bench24: Path, tmp_path: Path) -> None:
    s = judge(JudgeConfig(backend="rules"), bench24, None, tmp_path / "run", output=Output(quiet=True))
    assert s["n_ok"] == s["n_total"] == 96
    recs = read_records(tmp_path / "run" / "judgments.jsonl")
    assert {r["judge"] for r in recs} == {"rules"}
    assert all("[rules judge]" in r["judgment"]["visual_assessment"]["rationale"] for r in recs)
    res = evaluate_judgments(tmp_path / "run")
    sc = res["scores"]["all"]
    overall = [sc[sys_]["Overall"]["mean"] for sys_ in EXPECTED_RANKING]
    affect = [(sc[s_]["VEAS"]["mean"] + sc[s_]["TEAS"]["mean"]) / 2 for s_ in EXPECTED_RANKING]
    assert overall == sorted(overall, reverse=True) and len(set(overall)) == 4
    assert affect == sorted(affect, reverse=True) and len(set(affect)) == 4
    ta = [sc[s_]["TA"]["mean"] for s_ in EXPECTED_RANKING]
    assert ta[0] > ta[1] >= ta[2] >= ta[3]
    nl = {r["system"]: r for r in res["nonllm"]}
    assert nl["identity"]["ssim"] == pytest.approx(1.0) and nl["identity"]["no_edit"] == 1.0
    assert nl["blank"]["panel_match"] == 0.0 and nl["caption-only"]["caption_chrf"] == pytest.approx(1.0)


def test_cli_judge_and_evaluate(bench24: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "j"
    r = runner.invoke(app, ["--json", "judge-memes", "--bench", str(bench24), "--system", "identity", "--system", "blank",
                            "--runs", "3", "--sample", "5", "--seed", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["event"] == "result" and last["run_dir"] == str(out) and last["judge"] == "rules"
    r = runner.invoke(app, ["--json", "evaluate", "mer-bench", "--judgments", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["metrics"]["identity.n_ok"] >= 5 and "blank.Overall" in res["metrics"]
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["strata"][0]["runs"]) == 3 and all(len(run) == 10 for run in plan["strata"][0]["runs"])
    # dry run counts calls and writes nothing
    r = runner.invoke(app, ["--json", "judge-memes", "--bench", str(bench24), "--dry-run", "--sample", "4"])
    assert r.exit_code == 0, r.output
    dry = json.loads(r.stdout.strip().splitlines()[-1])
    assert dry["unique_pairs"] == 16 and dry["calls_needed"] + dry["cache_hits"] == 16  # identity/blank pairs cached above


def test_cli_factor_view_stratified(bench24: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "f"
    r = runner.invoke(app, ["judge-memes", "--bench", str(bench24), "--view", "factor", "--stratify", "--runs", "2",
                            "--sample", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = evaluate_judgments(out, nonllm=False)
    assert res["view"] == "factor" and (out / "eval" / "table_3.md").is_file()
    assert any(row["stratum"].startswith("layout_type=") for row in res["table"])


@pytest.mark.parametrize("args,needle", [
    (["judge-memes", "--bench", "/nonexistent", "--out", "x"], "benchmark directory not found"),
    (["judge-memes", "--bench", "{bench}", "--system", "identiti", "--out", "{tmp}/o"], "did you mean 'identity'"),
    (["judge-memes", "--bench", "{bench}", "--judge", "openai", "--out", "{tmp}/o"], "needs a model name"),
    (["judge-memes", "--bench", "{bench}", "--set", "judge.concurency=3", "--out", "{tmp}/o"], "concurrency"),
    (["evaluate", "mer-bench", "--judgments", "{tmp}"], "no judgments.jsonl"),
])
def test_cli_errors_exit_2(bench24: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    args = [a.format(bench=bench24, tmp=tmp_path) for a in args]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Error:" in r.stderr and needle in r.stderr and "Traceback" not in r.output


def test_default_cache_is_under_the_affectkit_cache(bench1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "root"))
    s = judge(JudgeConfig(backend="rules"), bench1, None, tmp_path / "run", output=Output(quiet=True))
    path = tmp_path / "root" / "mer-bench" / "judge.sqlite3"
    assert path.is_file() and s["ledger"]["calls"] == 1
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["cache"] == str(path)
    again = judge(JudgeConfig(backend="rules"), bench1, None, tmp_path / "run2", output=Output(quiet=True))
    assert again["ledger"]["cache_hits"] == 1 and again["ledger"]["calls"] == 0
