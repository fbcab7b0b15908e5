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
from tests.prime.helpers import TINY

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")



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


def test_pretrain_then_finetune_writes_folds_and_predictions(data: Path, runs: tuple[Path, Path]) -> None:
    pre, fine = runs
    assert (pre / "folds" / "0" / "featurizer.json").is_file()
    # pretraining (and so the bank) saw exactly the patients outside the test fold
    fold = json.loads((pre / "folds" / "0" / "fold.json").read_text())
    assert fold["train_patients"] == 686 - sum(r["fold"] == "0" for r in csv.DictReader((data / "manifest.csv").open()))
    result = json.loads((fine / "results.json").read_text())
    assert result["stage"] == "finetune" and result["n_folds"] == 1
    assert 0.0 <= result["metrics"]["c_index"] <= 1.0
    rows = list(csv.DictReader((fine / "predictions.csv").open()))
    assert rows and set(rows[0]) == {"case_id", "risk", "time", "event", "fold", "cohort"}
    assert {r["fold"] for r in rows} == {"0"}
    # the featurizer of the fine-tuned run is the pretraining run's (same standardisation and groups)
    a = json.loads((pre / "folds" / "0" / "featurizer.json").read_text())
    b = json.loads((fine / "folds" / "0" / "featurizer.json").read_text())
    assert a == b


def test_evaluate_run_sweep_and_km(runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, fine = runs
    km = tmp_path / "km.png"
    plot = tmp_path / "sweep.png"
    r = invoke("--json", "evaluate", "prime", "--run", str(fine), "--sweep", "--km", str(km), "--plot", str(plot))
    assert r.exit_code == 0, r.stderr
    res = json_lines(r.stdout)[-1]
    names = [row["modalities"] for row in res["sweep"]]
    assert names[0] == "as observed" and "clinical+labs+report" in names and "report" in names and "mcar70" in names
    assert len(names) == 1 + 7 + 3
    assert km.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 0.0 <= res["km"]["logrank_p"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_predictions_with_cohorts_give_the_macro_average(tmp_path: Path) -> None:
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(0)
    rows, expected = [], {}
    for cohort in ("TCGA-BRCA", "TCGA-LUAD"):
        per_fold = []
        for fold in range(2):
            t = rng.integers(1, 2000, 40).astype(float)
            e = rng.integers(0, 2, 40)
            risk = rng.normal(size=40) - t / 1000
            per_fold.append(concordance_index(t, -risk, e))
            rows += [f"{cohort}-{fold}-{i},{r},{ti},{ei},{fold},{cohort}" for i, (r, ti, ei) in enumerate(zip(risk, t, e, strict=True))]
        expected[cohort] = float(np.mean(per_fold))
    path = _write(tmp_path / "p.csv", "case_id,risk,time,event,fold,cohort\n" + "\n".join(rows) + "\n")
    r = invoke("--json", "evaluate", "prime", "--predictions", str(path))
    assert r.exit_code == 0, r.stderr
    res = json_lines(r.stdout)[-1]
    for cohort, value in expected.items():
        assert res["cohorts"][cohort]["c_index"] == pytest.approx(value, abs=1e-9)
    assert res["macro_c_index"] == pytest.approx(np.mean(list(expected.values())), abs=1e-9)


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


@pytest.fixture(scope="module")
def tcga_like(tmp_path_factory) -> Path:
    """A TCGA-shaped cohort: CLAM bags (.h5 and .pt) for some patients, an expression matrix (genes x
    samples) for others, reports as text files, two cohorts, endpoints in days; no fold column."""
    import h5py
    import torch

    root = tmp_path_factory.mktemp("tcga")
    (root / "h5_files").mkdir()
    (root / "pt_files").mkdir()
    (root / "reports").mkdir()
    rng = np.random.default_rng(1)
    n, genes = 48, 12
    latent = rng.normal(size=n)
    expr = rng.normal(size=(genes, n)) + latent[None, :]
    header = "gene\t" + "\t".join(f"S{i}" for i in range(n))
    lines = [header] + [f"G{g}\t" + "\t".join(f"{v:.4f}" for v in expr[g]) for g in range(genes)]
    (root / "tpm.tsv").write_text("\n".join(lines) + "\n")
    rows = ["case_id,cohort,wsi,rna,report,os_time,os_event"]
    for i in range(n):
        case = f"TCGA-AA-{i:04d}"
        bag = rng.normal(size=(int(rng.integers(5, 30)), 16)).astype(np.float32) + latent[i]
        if i % 3 == 0:
            with h5py.File(root / "h5_files" / f"{case}.h5", "w") as f:
                f.create_dataset("features", data=bag)
                f.create_dataset("coords", data=np.zeros((len(bag), 2), int))
            wsi = f"h5_files/{case}.h5"
        elif i % 3 == 1:
            torch.save(torch.from_numpy(bag), root / "pt_files" / f"{case}.pt")
            wsi = f"pt_files/{case}.pt"
        else:
            wsi = ""
        rna = f"S{i}" if i % 4 != 0 else ""
        (root / "reports" / f"{case}.txt").write_text(f"Tumour grade {'high' if latent[i] > 0 else 'low'}. Case {i}.")
        report = f"reports/{case}.txt" if i % 5 != 0 or not (wsi or rna) else ""
        time_ = float(np.round(rng.exponential(1000 * np.exp(-latent[i])))) + 1
        rows.append(f"{case},{'TCGA-BRCA' if i % 2 else 'TCGA-LUAD'},{wsi},{rna},{report},{time_},{int(rng.random() < 0.7)}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_tcga_like_bags_matrix_reports_end_to_end(tcga_like: Path, tmp_path: Path) -> None:
    from affectkit.core import device

    common = ["--data", str(tcga_like), "--fold", "2", *TINY, "--set", "data.matrices={rna: tpm.tsv}",
              "--set", "train.batch_size=16"]
    r = invoke("--json", "train", "prime", *common, "--max-steps", "6", "--set", "model.bag_pooling=query",
               "--out", str(tmp_path / "pre"))
    assert r.exit_code == 0, r.stderr
    device.reset_accelerator()
    r = invoke("--json", "train", "prime", *common, "--stage", "finetune", "--init", str(tmp_path / "pre"),
               "--set", "model.bag_pooling=query", "--set", "finetune.mode=lora", "--set", "finetune.head=cox",
               "--max-steps", "4", "--set", "train.eval_every=2", "--out", str(tmp_path / "fine"))
    assert r.exit_code == 0, r.stderr
    res = json_lines(r.stdout)[-1]
    assert set(res["cohorts"]) == {"TCGA-BRCA", "TCGA-LUAD"} and "macro_c_index" in res
    assert 0.0 <= res["metrics"]["c_index"] <= 1.0 and "ibs" in res["metrics"]
    device.reset_accelerator()
    r = invoke("--json", "evaluate", "prime", "--run", str(tmp_path / "fine"), "--missing", "nopairs")
    assert r.exit_code == 0, r.stderr
    assert json_lines(r.stdout)[-1]["setting"] == "nopairs"


def test_h5_without_features_names_the_file(tcga_like: Path, tmp_path: Path) -> None:
    import shutil

    import h5py

    root = tmp_path / "d"
    shutil.copytree(tcga_like, root)
    bad = next(iter(sorted((root / "h5_files").glob("*.h5"))))
    with h5py.File(bad, "w") as f:
        f.create_dataset("coords", data=np.zeros((3, 2)))
    r = invoke("train", "prime", "--data", str(root), "--out", str(tmp_path / "r"), *TINY,
               "--set", "data.matrices={rna: tpm.tsv}")
    one_error(r.exit_code, r.stderr, bad.name, "features")


def test_horizon_label_linear_probe_with_a_quarter_of_the_labels(data: Path, runs: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    pre, _ = runs
    r = invoke("--json", "train", "prime", "--data", str(data), "--fold", "0", "--stage", "finetune", "--init", str(pre),
               "--endpoint", "rfs", "--max-steps", "4", *TINY, "--set", "finetune.target=horizon",
               "--set", "finetune.mode=linear", "--set", "finetune.label_fraction=0.25", "--set", "train.eval_every=2",
               "--out", str(tmp_path / "h"))
    assert r.exit_code == 0, r.stderr
    res = json_lines(r.stdout)[-1]
    assert 0.0 <= res["metrics"]["auroc"] <= 1.0 and "ibs" not in res["metrics"]
    fold = json.loads((tmp_path / "h" / "folds" / "0" / "fold.json").read_text())
    # a quarter of the training patients with a 3-year label (131 of 686 are censored before 3 years;
    # 15 % of the training fold validates)
    assert 0.2 < fold["train_patients"] / ((686 - 131) * 0.8 * 0.85) < 0.3
