"""Survival endpoints from TCGA-CDR, GDC clinical.tsv and legacy clinical_patient tables, and their merge
onto a manifest."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectkit.core import output
from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.prime.clinical import read_clinical
from affectkit.tasks.prime.data import load_cohort

CDR_HEADER = "\tbcr_patient_barcode\ttype\tOS\tOS.time\tDSS\tDSS.time\tDFI\tDFI.time\tPFI\tPFI.time"
CDR_ROWS = [
    "1\tTCGA-AA-0001\tBRCA\t1\t400\t1\t400\t#N/A\t#N/A\t1\t200",
    "2\tTCGA-AA-0002\tBRCA\t0\t1200\t0\t1200\t0\t1200\t0\t1200",
    "3\tTCGA-AA-0003\tLUAD\t0\t-5\t0\t-5\t#N/A\t#N/A\t2\t100",
    "4\tTCGA-AA-0004\tLUAD\t1\t\t1\t\t#N/A\t#N/A\t1\t90",
]


def nan_equal(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, float), np.asarray(b, float))


def warnings_of(df: pd.DataFrame) -> str:
    return "\n".join(df.attrs["warnings"])


@pytest.mark.parametrize("sep", ["\t", ","])
def test_cdr(tmp_path, sep):
    path = tmp_path / ("cdr.tsv" if sep == "\t" else "cdr.csv")
    path.write_text("\n".join(line.replace("\t", sep) for line in [CDR_HEADER, *CDR_ROWS]) + "\n")
    df = read_clinical(path)
    assert list(df.columns) == [
        "case_id", "os_time", "os_event", "pfi_time", "pfi_event", "dss_time", "dss_event", "dfi_time",
        "dfi_event",
    ]  # fmt: skip
    assert df["case_id"].tolist() == ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003", "TCGA-AA-0004"]
    nan_equal(df["os_time"], [400, 1200, np.nan, np.nan])
    nan_equal(df["os_event"], [1, 0, np.nan, np.nan])
    nan_equal(df["pfi_event"], [1, 0, np.nan, 1])
    nan_equal(df["dfi_time"], [np.nan, 1200, np.nan, np.nan])
    text = warnings_of(df)
    assert "1 case(s) with a negative or infinite os_time" in text and "TCGA-AA-0003" in text
    assert "pfi_event not 0 or 1" in text and "os_time without os_event" in text


def test_cdr_xlsx(tmp_path):
    path = tmp_path / "TCGA-CDR-SupplementalTableS1.xlsx"
    if importlib.util.find_spec("openpyxl") is None:
        path.write_bytes(b"PK")
        with pytest.raises(UsageError) as e:
            read_clinical(path)
        assert "openpyxl" in e.value.message and "tsv" in e.value.hint
        return
    rows = [r.split("\t") for r in CDR_ROWS]
    pd.DataFrame(rows, columns=CDR_HEADER.split("\t")).to_excel(path, index=False)
    df = read_clinical(path)
    nan_equal(df["os_time"], [400, 1200, np.nan, np.nan])


GDC = """\
{id}\tproject.project_id\t{vital}\t{death}\t{follow}\ttreatments.treatment_type
TCGA-AA-0001\tTCGA-BRCA\tDead\t100\t'--\tRadiation
TCGA-AA-0001\tTCGA-BRCA\tDead\t100\t80\tChemotherapy
TCGA-AA-0002\tTCGA-BRCA\tAlive\t'--\t50\tRadiation
TCGA-AA-0002\tTCGA-BRCA\tAlive\t'--\t300\t'--
TCGA-AA-0002\tTCGA-BRCA\tAlive\t'--\t'--\tChemotherapy
TCGA-AA-0003\tTCGA-BRCA\tDead\t'--\t700\t'--
TCGA-AA-0004\tTCGA-BRCA\tNot Reported\t'--\t20\t'--
TCGA-AA-0005\tTCGA-BRCA\tAlive\t'--\t'--\t'--
"""


@pytest.mark.parametrize("prefixed", [True, False])
def test_gdc_clinical_tsv(tmp_path, prefixed):
    names = (
        {"id": "cases.submitter_id", "vital": "demographic.vital_status", "death": "demographic.days_to_death",
         "follow": "diagnoses.days_to_last_follow_up"}
        if prefixed
        else {"id": "case_submitter_id", "vital": "vital_status", "death": "days_to_death",
              "follow": "days_to_last_follow_up"}
    )  # fmt: skip
    path = tmp_path / "clinical.tsv"
    path.write_text(GDC.format(**names))
    df = read_clinical(path)
    assert list(df.columns) == ["case_id", "os_time", "os_event"]
    assert df["case_id"].tolist() == [f"TCGA-AA-000{i}" for i in range(1, 6)]  # one row per case, in order
    nan_equal(df["os_time"], [100, 300, np.nan, np.nan, np.nan])
    nan_equal(df["os_event"], [1, 0, np.nan, np.nan, np.nan])
    text = warnings_of(df)
    assert "1 case(s) are Dead without days_to_death; their os labels are unknown (TCGA-AA-0003)" in text
    assert "have no vital status" in text and "TCGA-AA-0004" in text
    assert "Alive without days_to_last_follow_up" in text and "TCGA-AA-0005" in text


LEGACY = """\
bcr_patient_uuid\tbcr_patient_barcode\tvital_status\tdeath_days_to\tlast_contact_days_to\tgender
bcr_patient_uuid\tbcr_patient_barcode\tvital_status\tdays_to_death\tdays_to_last_followup\tgender
CDE_ID:\tCDE_ID:2003301\tCDE_ID:5\tCDE_ID:3165475\tCDE_ID:3008273\tCDE_ID:2200604
u1\tTCGA-BB-0001\tDead\t365\t[Not Applicable]\tFEMALE
u2\tTCGA-BB-0002\tAlive\t[Not Applicable]\t1000\tFEMALE
u3\tTCGA-BB-0003\tDead\t[Not Available]\t[Not Available]\tMALE
u4\tTCGA-BB-0004\tAlive\t[Not Applicable]\t[Discrepancy]\tMALE
"""


def test_legacy_clinical_patient(tmp_path):
    path = tmp_path / "nationwidechildrens.org_clinical_patient_brca.txt"
    path.write_text(LEGACY)
    df = read_clinical(path)
    assert df["case_id"].tolist() == ["TCGA-BB-0001", "TCGA-BB-0002", "TCGA-BB-0003", "TCGA-BB-0004"]
    nan_equal(df["os_time"], [365, 1000, np.nan, np.nan])
    nan_equal(df["os_event"], [1, 0, np.nan, np.nan])
    text = warnings_of(df)
    assert "1 case(s) are Dead without days_to_death" in text and "TCGA-BB-0003" in text
    assert "TCGA-BB-0004" in text


def test_generic_and_unrecognised_tables(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("case_id,os_time,os_event,pfi_time,pfi_event\nA,10,1,5,1\nB,,,7,0\n")
    df = read_clinical(path)
    nan_equal(df["os_time"], [10, np.nan])
    nan_equal(df["pfi_event"], [1, 0])
    (tmp_path / "other.csv").write_text("patient,age\nA,50\n")
    with pytest.raises(DataError, match="other.csv: not a recognised clinical table"):
        read_clinical(tmp_path / "other.csv")
    with pytest.raises(DataError, match="clinical table not found"):
        read_clinical(tmp_path / "none.tsv")


def manifest_root(tmp_path: Path, extra: dict[str, list[str]] | None = None) -> Path:
    root = tmp_path / "d"
    root.mkdir()
    rows = {
        "case_id": ["TCGA-AA-0001-01A", "TCGA-AA-0002", "TCGA-AA-0009", "X-1"],
        "report": ["a", "b", "c", "d"],
    }
    rows.update(extra or {})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_merge_onto_manifest(tmp_path):
    root = manifest_root(tmp_path)
    (root / "cdr.tsv").write_text("\n".join([CDR_HEADER, *CDR_ROWS]) + "\n")
    err = io.StringIO()
    output.set_output(output.Output(stderr=err))
    c = load_cohort(root, modalities={"report": "text"}, endpoints={"os": "os_time,os_event",
                    "pfi": "pfi_time,pfi_event"}, clinical="cdr.tsv")  # fmt: skip
    nan_equal(c.endpoint("os")[0], [400, 1200, np.nan, np.nan])  # 0001-01A matched by its 12 characters
    nan_equal(c.endpoint("pfi")[1], [1, 0, np.nan, np.nan])
    assert "2 of 4 patients are not in this table" in err.getvalue()
    assert "negative or infinite os_time" in err.getvalue()


def test_merge_fills_only_missing_columns(tmp_path):
    root = manifest_root(tmp_path, {"os_time": ["1", "2", "3", "4"], "os_event": ["0", "0", "1", "1"]})
    (root / "labels.csv").write_text("case_id,os_time,os_event,pfi_time,pfi_event\nX-1,10,1,5,1\n")
    c = load_cohort(root, modalities={"report": "text"}, endpoints={"os": "os_time,os_event",
                    "pfi": "pfi_time,pfi_event"}, clinical="labels.csv")  # fmt: skip
    nan_equal(c.endpoint("os")[0], [1, 2, 3, 4])  # the manifest's own columns win
    nan_equal(c.endpoint("pfi")[0], [np.nan, np.nan, np.nan, 5])  # exact id match for non-TCGA ids
