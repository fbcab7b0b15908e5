"""The embedded prime benchmarks built from scikit-survival / lifelines bundled data."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("sksurv")
pytest.importorskip("lifelines")

from affectkit.core.errors import UsageError  # noqa: E402
from affectkit.tasks.prime import missingness, synth  # noqa: E402

BC_COLUMNS = ["case_id", "fold", "genes", "age", "er", "report", "dm_time", "dm_event"]
GBSG_COLUMNS = [
    "case_id", "fold", "age", "menopause", "hormone", "nodes", "prog_recp", "estrg_recp", "report",
    "os_time", "os_event", "rfs_time", "rfs_event",
]  # fmt: skip
MOD_COLUMNS = {
    "bc": {"genes": ["genes"], "clinical": ["age", "er"], "report": ["report"]},
    "gbsg": {
        "clinical": ["age", "menopause", "hormone"],
        "labs": ["nodes", "prog_recp", "estrg_recp"],
        "report": ["report"],
    },
}
FIRST_EVENT = {"bc": "dm_event", "gbsg": "os_event"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("prime_bench")
    return out, synth.make(out, seed=0, quick=True)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _report_text(root: Path, cell: str) -> str:
    return (root / cell).read_text(encoding="utf-8").strip() if cell.endswith(".txt") else cell


def test_same_seed_byte_identical(built, tmp_path):
    out, _ = built
    synth.make(tmp_path, seed=0, quick=False)
    a, b = _files(out), _files(tmp_path)
    assert sorted(a) == sorted(b)
    assert all(a[k] == b[k] for k in a)
    assert not any(".tmp" in k or k.startswith(".") for k in a)
    # a rebuild into the same folder with another seed leaves no stale report files
    synth.make(tmp_path, seed=1, quick=True)
    man = _read(tmp_path / "bc" / "manifest.csv")
    refs = {c for c in man["report"] if c.endswith(".txt")}
    on_disk = {p.relative_to(tmp_path / "bc").as_posix() for p in (tmp_path / "bc" / "reports").iterdir()}
    assert refs == on_disk
    assert not _read(tmp_path / "bc" / "manifest.csv").equals(_read(out / "bc" / "manifest.csv"))


def _folder(out, name):
    """GBSG is written into the root itself, BC into bc/."""
    return out if name == "gbsg" else out / name


def test_counts_and_events_match_package_data(built):
    from lifelines.datasets import load_lymph_node
    from sksurv.datasets import load_breast_cancer

    out, res = built
    X, y = load_breast_cancer()
    bc = _read(out / "bc" / "manifest.csv")
    assert len(bc) == 198 and bc["case_id"].iloc[0] == "BC-0001" and bc["case_id"].is_unique
    assert bc["dm_event"].astype(int).sum() == int(y["e.tdm"].sum()) == 51
    np.testing.assert_array_equal(bc["dm_time"].astype(float), y["t.tdm"])
    np.testing.assert_array_equal(bc["age"].astype(float), X["age"])
    assert list(bc["er"]) == list(X["er"].astype(str))

    df = load_lymph_node()
    gb = _read(out / "manifest.csv")
    assert len(gb) == 686 and gb["case_id"].iloc[-1] == "GBSG-0686"
    assert gb["rfs_event"].astype(int).sum() == int(df["censrec"].sum()) == 299
    assert gb["os_event"].astype(int).sum() == int(df["censdead"].sum()) == 171
    np.testing.assert_array_equal(gb["os_time"].astype(int), df["survtime"])
    np.testing.assert_array_equal(gb["rfs_time"].astype(int), df["rectime"])
    np.testing.assert_array_equal(gb["nodes"].astype(int), df["nodes"])
    assert set(gb["menopause"]) == {"pre", "post"} and set(gb["hormone"]) == {"no", "yes"}
    assert ((gb["menopause"] == "post") == (df["menopause"].to_numpy() == 2)).all()

    truth = res["known_truth"]
    assert truth["bc"]["n"] == 198 and truth["bc"]["events"] == {"dm": 51}
    assert truth["gbsg"]["n"] == 686 and truth["gbsg"]["events"] == {"os": 171, "rfs": 299}
    assert set(truth["bc"]["missing_rates"]) == set(missingness.PATTERNS)


def test_layout_columns_yaml_matrix(built):
    from sksurv.datasets import load_breast_cancer

    out, _ = built
    assert list(_read(out / "bc" / "manifest.csv").columns) == BC_COLUMNS
    assert list(_read(out / "manifest.csv").columns) == GBSG_COLUMNS
    for name in ("bc", "gbsg"):
        names = {p.name for p in (_folder(out, name)).iterdir()}
        assert {f"manifest_{p}.csv" for p in missingness.PATTERNS if p != "complete"} <= names
        assert "manifest_complete.csv" not in names
        readme = (_folder(out, name) / "README.txt").read_text().splitlines()
        assert len(readme) == 5
    cfg = yaml.safe_load((out / "bc" / "prime.yaml").read_text())["data"]
    assert cfg == {
        "manifest": "manifest.csv",
        "modalities": {"genes": "vector", "clinical": "vector", "report": "text"},
        "matrices": {"genes": "expression.tsv"},
        "columns": {"clinical": "age,er"},
        "endpoints": {"dm": "dm_time,dm_event"},
    }
    assert list(cfg["modalities"]) == ["genes", "clinical", "report"]
    g = yaml.safe_load((out / "prime.yaml").read_text())["data"]
    assert list(g["endpoints"].items()) == [("os", "os_time,os_event"), ("rfs", "rfs_time,rfs_event")]
    assert g["columns"] == {"clinical": "age,menopause,hormone", "labs": "nodes,prog_recp,estrg_recp"}
    assert "matrices" not in g and list(g["modalities"]) == ["clinical", "labs", "report"]

    expr = pd.read_csv(out / "bc" / "expression.tsv", sep="\t")
    X, _ = load_breast_cancer()
    assert expr.columns[0] == "gene" and expr.shape == (76, 199)
    assert list(expr.columns[1:]) == [f"BC-{i:04d}" for i in range(1, 199)]
    assert expr["gene"].is_unique and expr["gene"].iloc[0] == "200726_at"
    np.testing.assert_array_equal(expr.iloc[:, 1:].to_numpy().T, X.iloc[:, :76].to_numpy())


def test_bc_reports(built):
    from sksurv.datasets import load_breast_cancer

    out, _ = built
    root = out / "bc"
    man = _read(root / "manifest.csv")
    X, _ = load_breast_cancer()
    cells = list(man["report"])
    as_file = [c.endswith(".txt") for c in cells]
    assert sum(as_file) == 99 and all((root / c).is_file() for c, f in zip(cells, as_file, strict=True) if f)
    texts = [_report_text(root, c) for c in cells]
    assert all(texts)
    omitted = 0
    for text, age, grade in zip(texts, X["age"], X["grade"].astype(str), strict=True):
        assert not re.search(rf"(?<![\d.]){int(age)}(?![\d])", text), text
        assert "positive" not in text and "negative" not in text
        has_size = bool(re.search(r"\d\.\d cm|small|intermediate|large", text))
        has_grade = "differentiated" in text
        if grade == "unkown":
            assert not has_grade
        omitted += (not has_size) + (grade != "unkown" and not has_grade)
    assert 15 <= omitted <= 65  # ~20 % of 198
    assert sum(bool(re.search(r"\d\.\d cm", t)) for t in texts) > 40
    assert sum(bool(re.search(r"small|intermediate", t)) for t in texts) > 40
    intros = {t["intro"] for t in synth.TEMPLATES}
    assert {next(i for i in intros if t.startswith(i)) for t in texts} == intros


def test_gbsg_reports_overlap_labs(built):
    out, _ = built
    man = _read(out / "manifest.csv")
    texts = list(man["report"])
    assert all(texts) and not any(t.endswith(".txt") for t in texts)
    nodes = man["nodes"].astype(int).to_numpy()
    with_nodes = [("lymph node" in t or "nodal involvement" in t or "involved nodes" in t) for t in texts]
    assert np.mean(with_nodes) > 0.8
    for t, k, w in zip(texts, nodes, with_nodes, strict=True):
        if w and k >= 10:
            assert "extensive nodal involvement (>= 10)" in t
        elif w:
            assert f"{k} positive lymph node" in t
    assert any("large" in t for t in texts)  # GBSG has tumours > 5 cm


@pytest.mark.parametrize("name", ["bc", "gbsg"])
def test_pattern_manifests_empty_right_cells(built, name):
    out, res = built
    root = _folder(out, name)
    full = _read(root / "manifest.csv")
    mods = MOD_COLUMNS[name]
    mod_cols = {c for cols in mods.values() for c in cols}
    for pattern in missingness.PATTERNS:
        fname = "manifest.csv" if pattern == "complete" else f"manifest_{pattern}.csv"
        man = _read(root / fname)
        assert list(man.columns) == list(full.columns)
        for c in full.columns:
            if c not in mod_cols:
                assert (man[c] == full[c]).all(), (pattern, c)
        observed = np.zeros((len(man), len(mods)), dtype=bool)
        for m, cols in enumerate(mods.values()):
            empty = man[cols] == ""
            assert (empty.all(axis=1) == empty.any(axis=1)).all()  # all of a modality's cells together
            observed[:, m] = ~empty.all(axis=1).to_numpy()
            for c in cols:
                kept = man[c] != ""
                assert (man.loc[kept, c] == full.loc[kept, c]).all()
        assert observed.any(axis=1).all()
        expected = missingness.pattern_mask(
            pattern, list(full["case_id"]), len(mods), 0, covariate=full["age"].astype(float).to_numpy()
        )
        assert np.array_equal(observed, expected), pattern
        rates = res["known_truth"][name]["missing_rates"][pattern]
        np.testing.assert_allclose(list(rates.values()), 1 - observed.mean(axis=0), atol=1e-6)
        if pattern == "complete":
            assert observed.all()
        if pattern == "nopairs":
            assert not observed.all(axis=1).any()
            assert {tuple(r) for r in observed.astype(int).tolist()} == {(1, 1, 0), (0, 1, 1), (1, 0, 1)}
        if pattern == "mnar":
            assert observed[:, 1:].all() and 0.3 < (~observed[:, 0]).mean() < 0.5


@pytest.mark.parametrize("name", ["bc", "gbsg"])
def test_folds_stratified(built, name):
    out, _ = built
    man = _read(_folder(out, name) / "manifest.csv")
    fold = man["fold"].astype(int).to_numpy()
    event = man[FIRST_EVENT[name]].astype(int).to_numpy()
    assert sorted(set(fold)) == [0, 1, 2, 3, 4]
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 1
    for f in range(5):
        assert abs(event[fold == f].mean() - event.mean()) <= 0.08


def test_missing_packages_usage_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sksurv.datasets", None)
    with pytest.raises(UsageError) as exc:
        synth.make(tmp_path, seed=0, quick=True)
    assert "scikit-survival and lifelines" in exc.value.message
    assert "affectkit[survival]" in (exc.value.hint or "")
    assert not (tmp_path / "bc").exists()
