"""The prime protocol's machinery: pretraining (and so the bank) sees only the training fold, every
method is scored on the same test patients, and the tables apply the pre-registered rules."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from affectkit.tasks.prime import TASK
    from affectkit.tasks.prime.bench import prepare_dataset
    from affectkit.tasks.prime.synth import make

    root = tmp_path_factory.mktemp("prime-bench")
    make(root, seed=0, quick=True)
    return prepare_dataset(TASK, root, 0, "hashing")


def test_pretraining_sees_only_the_training_fold(base, monkeypatch) -> None:
    from affectkit.tasks.prime import TASK, bench

    seen: list[np.ndarray] = []
    real = bench.train_lean

    def spy(module, loss_fn, batch_all, idx, cfg, seed, after_step=None):
        seen.append(np.asarray(idx).copy())
        return real(module, loss_fn, batch_all, idx, cfg, seed, after_step)

    monkeypatch.setattr(bench, "train_lean", spy)
    cell = bench.cells_of("mcar50", 0, (1,), base)[0]
    plan = {"pretrain": 4, "finetune": 3}
    out = bench.neural_runs(TASK, cell, ("os",), 0, plan, "hashing")
    assert set(out) == {(m, "os") for m in ("prime", "zero-fill", "mean-imputation", "modality-dropout", "null-copy")}
    test = set(cell.test_idx.tolist())
    assert seen and all(not (set(idx.tolist()) & test) for idx in seen)
    assert set(seen[0].tolist()) == set(cell.train_idx.tolist())  # the pretraining: the whole training fold
    assert all(0.0 <= v["c_index"] <= 1.0 for v in out.values())


def test_cells_hide_the_same_modalities_for_every_method(base) -> None:
    from affectkit.tasks.prime import bench

    a = bench.cells_of("site", 0, None, base)
    b = bench.cells_of("site", 0, None, base)
    assert len(a) == 5
    assert all((x.prepared.cohort.observed == y.prepared.cohort.observed).all() for x, y in zip(a, b, strict=True))
    hidden = ~a[0].prepared.cohort.observed[:, 2]
    assert hidden.any() and (a[0].prepared.text_emb["report"][hidden] == 0).all()
    folds = np.concatenate([c.test_idx for c in a])
    assert sorted(folds.tolist()) == list(range(base.cohort.n))


def _records(prime_delta: float, null_delta: float = 0.0) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for setting in ("complete", "mcar70"):
        for fold in range(5):
            for seed in range(3):
                base_c = 0.68 if setting == "complete" else 0.60
                noise = rng.normal(0, 0.005)
                for method, c in (("zero-fill", base_c), ("mean-imputation", base_c - 0.01),
                                  ("prime", base_c + prime_delta + noise), ("null-copy", base_c + null_delta),
                                  ("ridge-cox", 0.69 if setting == "complete" else 0.65)):
                    out.append({"dataset": "gbsg", "endpoint": "os", "setting": setting, "fold": fold, "seed": seed,
                                "method": method, "c_index": c, "auroc": c})
    return out


def test_tables_apply_the_registered_rules() -> None:
    from affectkit.tasks.prime.bench_tables import summarize

    plan = {"datasets": {"gbsg": ("os",)}, "missing": ("complete", "mcar70")}
    claim = summarize(_records(-0.01), plan)["claim: pre-registered tests on GBSG (C-index deltas, Nadeau-Bengio 95 % interval)"]
    ni, ridge = claim
    assert ni["comparison"] == "prime - zero-fill" and ni["cells"] == 15
    assert ni["mean delta"] == pytest.approx(-0.01, abs=0.003) and ni["pass"] == "yes"
    assert ni["ci95 low"] < ni["mean delta"] < ni["ci95 high"]
    assert ridge["comparison"] == "prime - ridge-cox" and ridge["pass"] == "yes"  # 0.67 vs 0.69
    failing = summarize(_records(-0.05), plan)
    ni, ridge = failing["claim: pre-registered tests on GBSG (C-index deltas, Nadeau-Bengio 95 % interval)"]
    assert ni["pass"] == "no" and ridge["pass"] == "no"
    control = failing["positive control: C-index with no missing data above 70 % missing (mean over endpoints)"]
    assert all(row["pass"] == "yes" for row in control)
