"""prime through the command line on the embedded GBSG benchmark: pretrain, fine-tune from it,
evaluate the run (test-time missingness sweep, Kaplan-Meier plot), evaluate a predictions file, and
the bad inputs users hit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from tests.cli.helpers import invoke, json_lines, one_error

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")

TINY = ["--set", "model.dim=8", "--set", "model.layers=1", "--set", "model.heads=1", "--set", "model.text_encoder=hashing",
        "--set", "model.text_chunks=1", "--set", "bank.size=8", "--set", "bank.topk=2", "--set", "bank.warmup_steps=3",
        "--set", "train.batch_size=32", "--set", "train.warmup_steps=0", "--set", "train.lr=0.003"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from affectkit.tasks.prime.synth import make

    root = tmp_path_factory.mktemp("prime")
    make(root, seed=0, quick=True)
    return root


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A pretraining run and a fine-tuned run from it, folds 0 only (shared by the tests below)."""
    from affectkit.core import device

    out = tmp_path_factory.mktemp("prime-runs")
    pre, fine = out / "pre", out / "fine"
    device.reset_accelerator()
    r = invoke("--json", "train", "prime", "--data", str(data), "--out", str(pre), "--fold", "0", "--max-steps", "8",
               *TINY, "--set", "train.checkpoint_every=4")
    assert r.exit_code == 0, r.stderr
    device.reset_accelerator()
    r = invoke("--json", "train", "prime", "--data", str(data), "--out", str(fine), "--fold", "0", "--stage", "finetune",
               "--init", str(pre), "--max-steps", "6", *TINY, "--set", "train.eval_every=3")
    assert r.exit_code == 0, r.stderr
    return pre, fine


def test_pretrain_then_finetune_writes_folds_and_predictions(runs: tuple[Path, Path]) -> None:
    pre, fine = runs
    assert (pre / "folds" / "0" / "featurizer.json").is_file()
    assert (pre / "folds" / "0" / "fold.json").is_file()
    result = json.loads((fine / "results.json").read_text())
    assert result["stage"] == "finetune" and result["n_folds"] == 1
    assert 0.0 <= result["metrics"]["c_index"] <= 1.0
    rows = list(csv.DictReader((fine / "predictions.csv").open()))
    assert rows and set(rows[0]) == {"case_id", "risk", "time", "event", "fold"}
    assert {r["fold"] for r in rows} == {"0"}
    # the featurizer of the fine-tuned run is the pretraining run's (same standardisation and groups)
    a = json.loads((pre / "folds" / "0" / "featurizer.json").read_text())
    b = json.loads((fine / "folds" / "0" / "featurizer.json").read_text())
    assert a == b


def test_evaluate_run_sweep_and_km(runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, fine = runs
    km = tmp_path / "km.png"
    r = invoke("--json", "evaluate", "prime", "--run", str(fine), "--sweep", "--km", str(km))
    assert r.exit_code == 0, r.stderr
    res = json_lines(r.stdout)[-1]
    names = [row["modalities"] for row in res["sweep"]]
    assert names[0] == "as observed" and "clinical+labs+report" in names and "report" in names and "mcar70" in names
    assert len(names) == 1 + 7 + 3
    assert km.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 0.0 <= res["km"]["logrank_p"] <= 1.0


def test_evaluate_predictions_file_matches_lifelines(runs: tuple[Path, Path]) -> None:
    from lifelines.utils import concordance_index

    _, fine = runs
    path = fine / "predictions.csv"
    r = invoke("--json", "evaluate", "prime", "--predictions", str(path))
    assert r.exit_code == 0, r.stderr
    res = json_lines(r.stdout)[-1]
    rows = list(csv.DictReader(path.open()))
    t = np.array([float(x["time"]) for x in rows])
    e = np.array([int(x["event"]) for x in rows])
    risk = np.array([float(x["risk"]) for x in rows])
    assert res["c_index"] == pytest.approx(concordance_index(t, -risk, e), abs=1e-9)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("content", "needles"), [
    ("case_id,risk,time\nA,1,2\n", ["missing column(s) event"]),
    ("case_id,risk,time,event\nA,1,-2,1\nB,0,3,0\n", ["row 2 (case A)", "negative"]),
    ("case_id,risk,time,event\nA,1,2,2\nB,0,3,0\n", ["row 2 (case A)", "event 2 must be 0 or 1"]),
    ("case_id,risk,time,event\nA,nan,2,1\nB,0,3,0\n", ["row 2 (case A)", "risk", "not a number"]),
])
def test_bad_predictions_files(tmp_path: Path, content: str, needles: list[str]) -> None:
    path = _write(tmp_path / "p.csv", content)
    r = invoke("evaluate", "prime", "--predictions", str(path))
    one_error(r.exit_code, r.stderr, str(path), *needles)


def test_bad_manifests_name_file_and_row(data: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "d"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns("bc"))
    man = root / "manifest.csv"
    rows = list(csv.DictReader(man.open()))
    rows[2]["os_time"] = "-5"
    with man.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    row = [rows[2]["case_id"]]
    r = invoke("train", "prime", "--data", str(root), "--out", str(tmp_path / "run"), "--max-steps", "2", *TINY)
    one_error(r.exit_code, r.stderr, "manifest.csv", row[0], "negative")


def test_pretraining_run_cannot_be_evaluated(runs: tuple[Path, Path]) -> None:
    pre, _ = runs
    r = invoke("evaluate", "prime", "--run", str(pre))
    one_error(r.exit_code, r.stderr, "pretraining run", "no prediction head")
    assert "--set stage=finetune" in r.stderr


def test_unknown_missing_pattern_is_a_usage_error(data: Path, tmp_path: Path) -> None:
    r = invoke("train", "prime", "--data", str(data), "--out", str(tmp_path / "r"), "--missing", "mcar99", *TINY)
    one_error(r.exit_code, r.stderr, "mcar99")
