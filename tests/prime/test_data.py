"""PRIME manifest reading: every modality source on tiny files, every validation error, folds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.prime.data import (
    Cohort,
    bag_shape,
    clear_bag_cache,
    load_bag,
    load_cohort,
    make_folds,
    read_matrix,
)

MODS = {"wsi": "bag", "rna": "vector", "report": "text"}


def write_h5(
    path: Path, n: int, d: int, seed: int = 0, coords: bool = True, key: str = "features"
) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=x)
        if coords:
            f.create_dataset("coords", data=np.arange(2 * n).reshape(n, 2))
    return x


def write_pt(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def write_manifest(root: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    pd.DataFrame(rows).to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return path


def base(root: Path) -> list[dict]:
    """Three patients with a bag, a .npy vector and a report, and os labels; returns the rows."""
    write_h5(root / "h5_files/P1.h5", 5, 4, seed=1)
    write_pt(root / "pt_files/P2.pt", torch.randn(3, 4))
    (root / "rna").mkdir(parents=True, exist_ok=True)
    for i in (1, 2, 3):
        np.save(root / f"rna/P{i}.npy", np.arange(6, dtype=np.float64) + i)
    return [
        {
            "case_id": "P1",
            "wsi": "h5_files/P1.h5",
            "rna": "rna/P1.npy",
            "report": "ductal",
            "os_time": "10",
            "os_event": "1",
        },
        {
            "case_id": "P2",
            "wsi": "pt_files/P2.pt",
            "rna": "NA",
            "report": "",
            "os_time": "20",
            "os_event": "0",
        },
        {"case_id": "P3", "wsi": "", "rna": "rna/P3.npy", "report": "lobular", "os_time": "", "os_event": ""},
    ]


def message(exc: pytest.ExceptionInfo) -> str:
    return exc.value.message


# --------------------------------------------------------------------------------------------------
# reading


def test_bags_vectors_texts_and_labels(tmp_path):
    root = tmp_path / "d"
    rows = base(root)
    x3a = write_h5(root / "h5_files/P3a.h5", 2, 4, seed=3, coords=False)
    x3b = torch.randn(4, 4)
    write_pt(root / "pt_files/P3b.pt", {"features": x3b, "coords": torch.zeros(4, 2)})
    rows[2]["wsi"] = "h5_files/P3a.h5; pt_files/P3b.pt"
    (root / "reports").mkdir()
    (root / "reports/P2.txt").write_text("  invasive carcinoma, grade 2\n", encoding="utf-8")
    rows[1]["report"] = "reports/P2.txt"
    rows[0]["cohort"], rows[1]["cohort"], rows[2]["cohort"] = "TCGA-BRCA", "", "TCGA-LUAD"
    write_manifest(root, rows)

    c = load_cohort(root, modalities=MODS)
    assert c.n == 3 and c.case_ids == ["P1", "P2", "P3"] and c.modality_names == ["wsi", "rna", "report"]
    assert c.cohorts == ["TCGA-BRCA", "all", "TCGA-LUAD"]
    assert c.observed.tolist() == [[True, True, True], [True, False, True], [True, True, True]]
    assert c.vectors["rna"].dtype == np.float32 and c.vectors["rna"].shape == (3, 6)
    np.testing.assert_array_equal(c.vectors["rna"][2], np.arange(6) + 3)
    assert np.isnan(c.vectors["rna"][1]).all()
    assert c.feature_names["rna"] == [f"rna_{j}" for j in range(6)]
    assert c.texts["report"] == ["ductal", "invasive carcinoma, grade 2", "lobular"]
    assert [len(b) for b in c.bags["wsi"]] == [1, 1, 2]
    time, event = c.endpoint("os")
    np.testing.assert_array_equal(time[:2], [10, 20])
    np.testing.assert_array_equal(event[:2], [1, 0])
    assert np.isnan(time[2]) and np.isnan(event[2])
    assert c.folds is None

    clear_bag_cache()
    bag = load_bag(c.bags["wsi"][2])
    assert bag.dtype == np.float32 and bag.shape == (6, 4) and not bag.flags.writeable
    np.testing.assert_allclose(bag, np.concatenate([x3a, x3b.numpy()]))
    assert load_bag(tuple(c.bags["wsi"][2])) is bag  # cached, list and tuple give the same key
    assert load_bag([str(p) for p in c.bags["wsi"][0]]).shape == (5, 4)
    assert bag_shape(root / "pt_files/P2.pt") == (3, 4)
    with pytest.raises(UsageError):
        load_bag([])


def test_h5_leading_axis_and_default_manifest_order(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    with h5py.File(root / "a.h5", "w") as f:
        f.create_dataset("features", data=np.ones((1, 7, 3), np.float32))
    write_manifest(root, [{"case_id": "A", "wsi": "a.h5", "os_time": "1", "os_event": "0"}], "manifest.tsv")
    (root / "manifest.yaml").write_text("- {case_id: B}\n")  # .tsv comes before .yaml
    c = load_cohort(root, modalities={"wsi": "bag"})
    assert c.case_ids == ["A"] and load_bag(c.bags["wsi"][0]).shape == (7, 3)


def test_vector_text_files_named_and_plain(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.csv").write_text("value\n1\n2\n3\n")
    (root / "b.txt").write_text("4\n5\n6\n")
    (root / "c.tsv").write_text("gene\tvalue\nG1\t1\nG2\t2\nG3\t3\n")
    (root / "d.tsv").write_text("G3\t30\nG1\t10\nG2\t20\n")  # other order, no header
    write_pt(root / "e.pt", torch.tensor([7.0, 8.0, 9.0]))
    rows = [
        {"case_id": "A", "rna": "a.csv"},
        {"case_id": "B", "rna": "b.txt"},
        {"case_id": "E", "rna": "e.pt"},
    ]
    write_manifest(root, rows, "plain.csv")
    c = load_cohort(root, manifest="plain.csv", modalities={"rna": "vector"}, endpoints={})
    np.testing.assert_array_equal(c.vectors["rna"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert c.endpoints == {}

    write_manifest(root, [{"case_id": "C", "rna": "c.tsv"}, {"case_id": "D", "rna": "d.tsv"}], "named.csv")
    c = load_cohort(
        root, manifest=str(root / "named.csv"), modalities={"rna": "vector"}, endpoints={}, log2p1=True
    )
    assert c.feature_names["rna"] == ["G1", "G2", "G3"]
    np.testing.assert_allclose(c.vectors["rna"], np.log2(np.array([[1, 2, 3], [10, 20, 30]]) + 1), rtol=1e-6)


def write_matrix_dataset(root: Path, fmt: str) -> None:
    genes, samples = ["G1", "G2", "G3"], ["S1", "S2", "S3"]
    values = np.arange(9, dtype=float).reshape(3, 3)  # [genes, samples]
    gxs = pd.DataFrame(values, index=pd.Index(genes, name="gene"), columns=samples)
    if fmt == "gxs_tsv":
        gxs.to_csv(root / "expr.tsv", sep="\t")
    elif fmt == "sxg_csv":
        gxs.T.rename_axis("sample").to_csv(root / "expr.csv")
    elif fmt == "parquet_column":
        gxs.reset_index().to_parquet(root / "expr.parquet", index=False)
    elif fmt == "parquet_index":
        gxs.T.to_parquet(root / "expr.parquet")


@pytest.mark.parametrize("fmt", ["gxs_tsv", "sxg_csv", "parquet_column", "parquet_index"])
def test_matrix_lookup(tmp_path, fmt):
    if fmt.startswith("parquet") and importlib.util.find_spec("pyarrow") is None:
        pytest.skip("pyarrow not installed")
    root = tmp_path / "d"
    root.mkdir()
    write_matrix_dataset(root, fmt)
    name = {"gxs_tsv": "expr.tsv", "sxg_csv": "expr.csv"}.get(fmt, "expr.parquet")
    rows = [{"case_id": c, "rna": s, "note": "x"} for c, s in (("A", "S3"), ("B", ""), ("C", "S1"))]
    write_manifest(root, rows)
    c = load_cohort(root, modalities={"rna": "vector", "note": "text"}, matrices={"rna": name}, endpoints={})
    assert c.feature_names["rna"] == ["G1", "G2", "G3"]
    np.testing.assert_array_equal(c.vectors["rna"][0], [2, 5, 8])
    np.testing.assert_array_equal(c.vectors["rna"][2], [0, 3, 6])
    assert c.observed[:, 0].tolist() == [True, False, True]
    forced = "genes_x_samples" if fmt in ("gxs_tsv", "parquet_column") else "samples_x_genes"
    genes, samples, values = read_matrix(root / name, forced)
    assert genes == ["G1", "G2", "G3"] and samples == ["S1", "S2", "S3"] and values.dtype == np.float32
    np.testing.assert_array_equal(values, np.arange(9).reshape(3, 3))


def test_matrix_log2p1_and_missing_values(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "expr.tsv").write_text("gene\tS1\tS2\nG1\t3\t\nG2\t1\t7\n")
    write_manifest(root, [{"case_id": "A", "rna": "S1"}, {"case_id": "B", "rna": "S2"}])
    c = load_cohort(
        root, modalities={"rna": "vector"}, matrices={"rna": "expr.tsv"}, endpoints={}, log2p1=True
    )
    np.testing.assert_allclose(c.vectors["rna"][0], [2, 1])
    assert np.isnan(c.vectors["rna"][1, 0]) and c.vectors["rna"][1, 1] == pytest.approx(3)


def test_inline_columns_numeric_and_one_hot(tmp_path):
    root = tmp_path / "d"
    rows = [
        {"case_id": "A", "age": "50", "er": "positive", "grade": "2", "note": "x"},
        {"case_id": "B", "age": "", "er": "negative", "grade": "3", "note": "x"},
        {"case_id": "C", "age": "", "er": "", "grade": "", "note": "x"},
        {"case_id": "D", "age": "61.5", "er": "", "grade": "2", "note": "x"},
    ]
    write_manifest(root, rows)
    c = load_cohort(
        root,
        modalities={"clinical": "vector", "note": "text"},
        columns={"clinical": "age, er, grade:cat"},
        endpoints={},
    )
    assert c.feature_names["clinical"] == ["age", "er=negative", "er=positive", "grade=2", "grade=3"]
    v = c.vectors["clinical"]
    np.testing.assert_array_equal(v[0], [50, 0, 1, 1, 0])
    assert np.isnan(v[1, 0]) and v[1, 1:].tolist() == [1, 0, 0, 1]
    assert np.isnan(v[2]).all() and c.observed[:, 0].tolist() == [True, True, False, True]
    assert v[3, 0] == 61.5 and np.isnan(v[3, 1:3]).all() and v[3, 3:].tolist() == [1, 0]
    c2 = load_cohort(
        root, modalities={"clinical": "vector", "note": "text"}, columns={"clinical": ["grade"]}, endpoints={}
    )
    assert c2.feature_names["clinical"] == ["grade"]  # all numbers -> numeric unless :cat


def test_yaml_manifest(tmp_path):
    root = tmp_path / "d"
    write_h5(root / "h5/a.h5", 2, 3)
    write_h5(root / "h5/b.h5", 4, 3)
    (root / "manifest.yml").write_text(
        "- case_id: A\n  wsi: [h5/a.h5, h5/b.h5]\n  report: null\n  os_time: 5\n  os_event: true\n"
        "- case_id: B\n  report: |\n    two lines\n    of text\n  os_time: 7.5\n  os_event: 0\n"
    )
    c = load_cohort(root, modalities={"wsi": "bag", "report": "text"})
    assert [len(b) for b in c.bags["wsi"]] == [2, 0]
    assert c.texts["report"] == [None, "two lines\nof text"]
    assert c.observed.tolist() == [[True, False], [False, True]]
    np.testing.assert_array_equal(c.endpoints["os"][0], [5, 7.5])
    np.testing.assert_array_equal(c.endpoints["os"][1], [1, 0])
    assert load_bag(c.bags["wsi"][0]).shape == (6, 3)


def test_several_endpoints_and_fold_column(tmp_path):
    root = tmp_path / "d"
    rows = base(root)
    for r, f in zip(rows, (1, 0, 1), strict=True):
        r["fold"], r["rfs_t"], r["rfs_e"] = str(f), "3", "1"
    write_manifest(root, rows)
    c = load_cohort(root, modalities=MODS, endpoints={"os": "os_time,os_event", "rfs": "rfs_t, rfs_e"})
    assert list(c.endpoints) == ["os", "rfs"] and c.endpoint("rfs")[1].tolist() == [1, 1, 1]
    assert c.folds.tolist() == [1, 0, 1] and c.folds.dtype == np.int64


# --------------------------------------------------------------------------------------------------
# Cohort helpers


def test_subset_and_with_observed(tmp_path):
    root = tmp_path / "d"
    write_manifest(root, base(root))
    c = load_cohort(root, modalities=MODS)
    s = c.subset([2, 0])
    assert s.case_ids == ["P3", "P1"] and s.observed.tolist() == [[False, True, True], [True, True, True]]
    assert s.texts["report"] == ["lobular", "ductal"] and s.bags["wsi"][0] == []
    np.testing.assert_array_equal(s.vectors["rna"][1], c.vectors["rna"][0])
    assert c.subset(np.array([False, True, False])).case_ids == ["P2"]

    mask = np.ones_like(c.observed)
    mask[0] = False
    mask[2, 1] = False
    m = c.with_observed(mask)
    assert m.observed.tolist() == [[False, False, False], [True, False, False], [False, False, True]]
    assert (
        m.bags["wsi"][0] == [] and m.texts["report"][0] is None and np.isnan(m.vectors["rna"][[0, 2]]).all()
    )
    assert c.observed[0].all() and c.texts["report"][0] == "ductal"  # the original is untouched
    with pytest.raises(DataError, match="unknown endpoint 'pfi'"):
        c.endpoint("pfi")


# --------------------------------------------------------------------------------------------------
# folds


def test_make_folds_stratified_and_seeded():
    rng = np.random.default_rng(0)
    event = rng.integers(0, 2, 100).astype(float)
    event[:10] = np.nan
    folds = make_folds(event, 5, seed=3)
    assert folds.shape == (100,) and sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for f in range(5):
        part = event[folds == f]
        assert np.isnan(part).sum() == 2  # the unknown stratum is spread evenly
        assert abs(np.nansum(part) - np.nansum(event) / 5) <= 1
    np.testing.assert_array_equal(folds, make_folds(event, 5, seed=3))
    assert not np.array_equal(folds, make_folds(event, 5, seed=4))
    assert sorted(make_folds(np.array([0.0, 1.0, np.nan]), 3, 0).tolist()) == [0, 1, 2]
    with pytest.raises(DataError, match="2 patient"):
        make_folds(np.array([0.0, 1.0]), 3, 0)


# --------------------------------------------------------------------------------------------------
# errors


def fail(root: Path, rows: list[dict] | None, exc=DataError, name: str = "manifest.csv", **kw) -> str:
    if rows is not None:
        write_manifest(root, rows, name)
    kw.setdefault("modalities", MODS)
    with pytest.raises(exc) as e:
        load_cohort(root, **kw)
    return e.value.message


def test_manifest_level_errors(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    assert "manifest not found" in fail(root, None)
    assert "other.csv: manifest not found" in fail(root, None, manifest="other.csv")
    msg = fail(root, [{"id": "P1", "wsi": "", "rna": "", "report": "x"}])
    assert "manifest.csv: no case_id column" in msg
    rows = base(root)
    rows[2]["case_id"] = "P1"
    assert "row 3 (case P1): duplicate case_id 'P1' (also row 1)" in fail(root, rows)
    rows[2]["case_id"] = ""
    assert "manifest.csv: row 3: empty case_id" in fail(root, rows)
    rows = base(root)
    for r in rows:
        del r["rna"]
    assert "no column 'rna' for modality rna" in fail(root, rows)
    assert "unknown kind 'image'" in fail(root, base(root), UsageError, modalities={"x": "image"})
    rows = base(root)
    for r in rows:
        del r["os_event"]
    assert "no column 'os_event' for endpoint os" in fail(root, rows)


def test_bag_errors(tmp_path):
    root = tmp_path / "d"
    rows = base(root)
    rows[1]["wsi"] = "h5_files/missing.h5"
    assert "manifest.csv: row 2 (case P2): wsi file h5_files/missing.h5 not found" in fail(root, rows)
    write_h5(root / "h5_files/nof.h5", 3, 4, key="feats")
    rows[1]["wsi"] = "h5_files/nof.h5"
    msg = fail(root, rows)
    assert "row 2 (case P2): wsi file h5_files/nof.h5" in msg and "no 'features' dataset" in msg
    write_pt(root / "pt_files/flat.pt", torch.randn(5))
    rows[1]["wsi"] = "pt_files/flat.pt"
    msg = fail(root, rows)
    assert "row 2 (case P2): wsi file pt_files/flat.pt" in msg and "2-D" in msg
    write_pt(root / "pt_files/dict.pt", {"x": torch.randn(2, 4)})
    rows[1]["wsi"] = "pt_files/dict.pt"
    assert "dict with 'features'" in fail(root, rows)
    write_pt(root / "pt_files/wide.pt", torch.randn(2, 8))
    rows[1]["wsi"] = "pt_files/wide.pt"
    msg = fail(root, rows)
    assert "row 2 (case P2): wsi features in pt_files/wide.pt are 8-wide but 4-wide in h5_files/P1.h5" in msg
    (root / "pt_files/bad.pt").write_bytes(b"not a torch file")
    rows[1]["wsi"] = "pt_files/bad.pt"
    assert "row 2 (case P2): wsi file pt_files/bad.pt: cannot read" in fail(root, rows)


def test_vector_errors(tmp_path):
    root = tmp_path / "d"
    rows = base(root)
    np.save(root / "rna/short.npy", np.zeros(4))
    rows[2]["rna"] = "rna/short.npy"
    msg = fail(root, rows)
    assert (
        "row 3 (case P3): rna file rna/short.npy has 4 values but rna/P1.npy (row 1 (case P1)) has 6" in msg
    )
    rows[2]["rna"] = "rna/none.npy"
    assert "row 3 (case P3): rna file rna/none.npy not found" in fail(root, rows)
    (root / "rna/bad.csv").write_text("1\n2\nx\n")
    rows[2]["rna"] = "rna/bad.csv"
    assert "rna file rna/bad.csv: line 3: 'x' is not a number" in fail(root, rows)
    np.save(root / "rna/neg.npy", -np.ones(6))
    rows[2]["rna"] = "rna/neg.npy"
    assert "log2(x+1) needs x >= 0" in fail(root, rows, log2p1=True)
    np.save(root / "rna/nan.npy", np.full(6, np.nan))
    rows[2]["rna"] = "rna/nan.npy"
    assert "row 3 (case P3): rna file rna/nan.npy is NaN everywhere" in fail(root, rows)


def test_matrix_errors(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    kw = {"modalities": {"rna": "vector"}, "matrices": {"rna": "expr.tsv"}, "endpoints": {}}
    rows = [{"case_id": "A", "rna": "S1"}, {"case_id": "B", "rna": "S9"}]
    (root / "expr.tsv").write_text("gene\tS1\tS2\nG1\t1\t2\nG2\t3\t4\n")
    assert "row 2 (case B): rna sample 'S9' not found in expr.tsv" in fail(root, rows, **kw)
    (root / "expr.tsv").write_text("gene\tS1\tS9\nG1\t1\t2\nG1\t3\t4\n")
    assert "expr.tsv: duplicate gene 'G1'" in fail(root, rows, **kw)
    (root / "expr.tsv").write_text("sample\tG1\tG1\nS1\t1\t2\nS9\t3\t4\n")  # duplicate in the header
    assert "expr.tsv: duplicate gene 'G1'" in fail(root, rows, **kw)
    (root / "expr.tsv").write_text("gene\tS1\tS9\nG1\t1\t2\nG2\tabc\t4\n")
    assert "expr.tsv: non-numeric value 'abc' for gene G2, sample S1" in fail(root, rows, **kw)
    (root / "expr.tsv").write_text("gene\tX1\tX2\nG1\t1\t2\n")
    assert "none of the manifest's sample ids" in fail(root, rows, **kw)
    (root / "expr.tsv").write_text("gene\tS1\tS9\nG1\t1\t-2\n")
    assert "negative value -2" in fail(root, rows, **kw, log2p1=True)
    assert "not found" in fail(root, rows, **{**kw, "matrices": {"rna": "nope.tsv"}})
    assert "not a vector modality" in fail(
        root, rows, UsageError, modalities={"rna": "text"}, matrices={"rna": "expr.tsv"}, endpoints={}
    )


def test_inline_and_text_errors(tmp_path):
    root = tmp_path / "d"
    rows = [{"case_id": f"C{i}", "age": str(40 + i), "report": "r"} for i in range(4)]
    rows[2]["age"] = "fifty"
    kw = {"modalities": {"clin": "vector", "report": "text"}, "columns": {"clin": "age"}, "endpoints": {}}
    msg = fail(root, rows, **kw)
    assert "row 3 (case C2): column age: 'fifty' is not a finite number" in msg
    assert "no column 'weight'" in fail(root, rows, **{**kw, "columns": {"clin": "weight"}})
    assert "cannot use column" in fail(root, rows, UsageError, **{**kw, "columns": {"clin": "case_id"}})
    rows[2]["age"] = "50"
    rows[1]["report"] = "reports/none.txt"
    assert "row 2 (case C1): report file reports/none.txt not found" in fail(root, rows, **kw)


def test_label_and_fold_errors(tmp_path):
    root = tmp_path / "d"
    rows = base(root)
    rows[1]["os_time"] = "-3"
    assert "row 2 (case P2): os_time -3 is negative" in fail(root, rows)
    rows[1]["os_time"], rows[1]["os_event"] = "3", "2"
    assert "row 2 (case P2): os_event 2 must be 0 or 1" in fail(root, rows)
    rows[1]["os_event"] = ""
    assert "row 2 (case P2): os_time is given but os_event is empty" in fail(root, rows)
    rows[1]["os_time"], rows[1]["os_event"] = "", "1"
    assert "row 2 (case P2): os_event is given but os_time is empty" in fail(root, rows)
    rows[1]["os_time"] = "ten"
    assert "os_time 'ten' is not a finite number" in fail(root, rows)
    rows = base(root)
    for r, f in zip(rows, ("0", "1", "x"), strict=True):
        r["fold"] = f
    assert "row 3 (case P3): fold 'x' must be an integer" in fail(root, rows)
    rows[2]["fold"] = "-1"
    assert "fold '-1' must be an integer 0..k-1" in fail(root, rows)
    rows[1]["fold"], rows[2]["fold"] = "2", "2"
    assert "fold 1 has no patient" in fail(root, rows)


def test_patient_without_modality(tmp_path):
    root = tmp_path / "d"
    rows = base(root)
    rows[1]["wsi"] = ""
    assert "row 2 (case P2): no observed modality" in fail(root, rows)


def test_missing_h5py_hint(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py")
        return real_import(name, *args, **kwargs)

    write_h5(tmp_path / "a.h5", 2, 2)
    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(UsageError) as e:
        bag_shape(tmp_path / "a.h5")
    assert "pip install h5py" in e.value.hint


def test_cohort_is_plain_dataclass():
    c = Cohort(
        Path("."), ["a"], ["all"], {"t": "text"}, np.ones((1, 1), bool), {}, {}, {}, {"t": ["x"]}, {}, None
    )
    assert c.n == 1 and c.modality_index("t") == 0
    with pytest.raises(UsageError):
        c.modality_index("u")
