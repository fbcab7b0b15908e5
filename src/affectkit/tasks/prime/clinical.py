"""Survival endpoints from public TCGA clinical tables, one row per case.

:func:`read_clinical` recognises, by their columns:

- the TCGA Pan-Cancer Clinical Data Resource (``TCGA-CDR-SupplementalTableS1``; ``bcr_patient_barcode``,
  ``OS``, ``OS.time``, ``DSS``, ``DSS.time``, ``DFI``, ``DFI.time``, ``PFI``, ``PFI.time``), as .tsv/.csv,
  or as .xlsx when openpyxl is installed;
- a GDC ``clinical.tsv`` (``cases.submitter_id`` or ``case_submitter_id``, vital status, days to death,
  days to last follow-up, with or without the ``demographic.``/``diagnoses.`` prefixes; ``'--`` = missing;
  one row per diagnosis/treatment, collapsed to one row per case);
- a legacy ``nationwidechildrens.org_clinical_patient_<project>.txt`` (``bcr_patient_barcode``,
  ``vital_status``, ``death_days_to``, ``last_contact_days_to``; its two extra header rows — the
  repeated names and the ``CDE_ID:`` row — are skipped; ``[Not Available]`` and the like = missing);
- a table that already has ``case_id`` and endpoint columns (``os_time``, ``os_event``, ...).

From vital status: ``os_event`` = 1 when Dead, ``os_time`` = days to death when Dead, else the largest
days to last follow-up. Labels that cannot be formed (Dead without days to death, Alive without
follow-up, unknown vital status, a negative time, an event other than 0/1, a time without its event)
are set unknown (NaN) and counted in ``df.attrs["warnings"]`` (a list of strings).
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.core.errors import DataError, UsageError, require_file

ENDPOINTS = ("os", "pfi", "dss", "dfi")
CDR_COLUMNS = {
    "os": ("OS.time", "OS"),
    "pfi": ("PFI.time", "PFI"),
    "dss": ("DSS.time", "DSS"),
    "dfi": ("DFI.time", "DFI"),
}
GDC_ID = ("cases.submitter_id", "case_submitter_id")
GDC_VITAL = ("demographic.vital_status", "vital_status")
GDC_DEATH = ("demographic.days_to_death", "days_to_death")
GDC_FOLLOW = ("diagnoses.days_to_last_follow_up", "days_to_last_follow_up", "follow_ups.days_to_follow_up")
LEGACY_DEATH = ("death_days_to", "days_to_death")
LEGACY_FOLLOW = ("last_contact_days_to", "days_to_last_followup", "days_to_last_follow_up")
_MISSING = frozenset(
    {"", "'--", "--", "na", "nan", "n/a", "#n/a", "null", "none", "not reported", "unknown", "not applicable"}
)
_BRACKETED = re.compile(r"^\[.*\]$")  # legacy "[Not Available]", "[Discrepancy]", ...
_EXAMPLES = 5


def _missing(cell: str) -> bool:
    s = str(cell).strip()
    return s.lower() in _MISSING or bool(_BRACKETED.match(s))


def _examples(ids: list[str]) -> str:
    more = f", ... ({len(ids)} in all)" if len(ids) > _EXAMPLES else ""
    return ", ".join(ids[:_EXAMPLES]) + more


def _numbers(cells: pd.Series, column: str, warns: list[str]) -> np.ndarray:
    """Cells as float64; missing tokens -> NaN; other non-numbers -> NaN and a warning."""
    raw = cells.astype(str).str.strip()
    missing = raw.map(_missing).to_numpy(dtype=bool)
    values = pd.to_numeric(raw.mask(missing), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & ~missing)
    if bad.size:
        warns.append(
            f"{bad.size} non-numeric value(s) in {column} (e.g. {raw.iloc[bad[0]]!r}) read as unknown"
        )
    return values


# --------------------------------------------------------------------------------------------------
# reading the file


def _read_table(path: Path) -> pd.DataFrame:
    """The table with every cell a string (missing cells "")."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls"):
        engine = "openpyxl" if suffix == ".xlsx" else "xlrd"
        if importlib.util.find_spec(engine) is None:
            raise UsageError(
                f"reading {suffix} clinical tables needs {engine}",
                f"pip install {engine}, or save the sheet as .tsv/.csv",
            )
        df = pd.read_excel(path, sheet_name=0, dtype=str, engine=engine)
        return df.fillna("").rename(columns=lambda c: str(c).strip())
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline()
        sep = "\t" if "\t" in first else ","
        df = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            encoding_errors="replace",
        )
    except pd.errors.EmptyDataError:
        raise DataError(path, "the clinical table is empty") from None
    except pd.errors.ParserError as e:
        raise DataError(path, f"cannot parse the clinical table ({str(e).strip().splitlines()[0]})") from None
    return df.rename(columns=lambda c: str(c).strip())


def _pick(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in columns), None)


# --------------------------------------------------------------------------------------------------
# labels


def _clean_pair(
    ids: list[str], time: np.ndarray, event: np.ndarray, name: str, warns: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Unknown (NaN) for an event not 0/1, a negative time, or a time without event (or the reverse)."""
    time, event = time.astype(np.float64).copy(), event.astype(np.float64).copy()
    checks = (
        (~np.isnan(event) & ~np.isin(event, (0.0, 1.0)), f"{name}_event not 0 or 1"),
        (~np.isnan(time) & ((time < 0) | np.isinf(time)), f"a negative or infinite {name}_time"),
        (np.isnan(time) != np.isnan(event), f"{name}_time without {name}_event or the reverse"),
    )
    for bad, what in checks:
        idx = np.flatnonzero(bad)
        if idx.size:
            warns.append(
                f"{idx.size} case(s) with {what}; their {name} labels are unknown "
                f"({_examples([ids[i] for i in idx])})"
            )
            time[idx], event[idx] = math.nan, math.nan
    return time, event


def _os_from_vital(
    ids: list[str], vital: list[str], death: np.ndarray, follow: np.ndarray, warns: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """OS from vital status, days to death and days to last follow-up."""
    n = len(ids)
    time, event = np.full(n, np.nan), np.full(n, np.nan)
    no_death, no_follow, unknown = [], [], []
    for i in range(n):
        if vital[i] == "dead":
            if math.isnan(death[i]):
                no_death.append(ids[i])
            else:
                time[i], event[i] = death[i], 1.0
        elif vital[i] == "alive":
            if math.isnan(follow[i]):
                no_follow.append(ids[i])
            else:
                time[i], event[i] = follow[i], 0.0
        else:
            unknown.append(ids[i])
    for cases, what in (
        (no_death, "are Dead without days_to_death"),
        (no_follow, "are Alive without days_to_last_follow_up"),
        (unknown, "have no vital status"),
    ):
        if cases:
            warns.append(f"{len(cases)} case(s) {what}; their os labels are unknown ({_examples(cases)})")
    return _clean_pair(ids, time, event, "os", warns)


def _vital(cell: str) -> str:
    s = str(cell).strip().lower()
    return s if s in ("dead", "alive") else ""


def _frame(ids: list[str], labels: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    data: dict[str, object] = {"case_id": ids}
    for name in ENDPOINTS:
        if name in labels:
            data[f"{name}_time"], data[f"{name}_event"] = labels[name]
    return pd.DataFrame(data)


def _dedupe(df: pd.DataFrame, id_col: str, warns: list[str]) -> pd.DataFrame:
    df = df[df[id_col].astype(str).str.strip() != ""]
    dup = df[id_col].duplicated()
    if dup.any():
        warns.append(
            f"{int(dup.sum())} repeated case row(s) ignored (kept the first): "
            f"{_examples(df.loc[dup, id_col].tolist())}"
        )
        df = df[~dup]
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# formats


def _from_cdr(df: pd.DataFrame, warns: list[str]) -> pd.DataFrame:
    df = _dedupe(df, "bcr_patient_barcode", warns)
    ids = df["bcr_patient_barcode"].astype(str).str.strip().tolist()
    labels = {}
    for name, (tc, ec) in CDR_COLUMNS.items():
        if tc in df.columns and ec in df.columns:
            t, e = _numbers(df[tc], tc, warns), _numbers(df[ec], ec, warns)
            labels[name] = _clean_pair(ids, t, e, name, warns)
    labels.setdefault("os", (np.full(len(ids), np.nan), np.full(len(ids), np.nan)))
    return _frame(ids, labels)


def _max_over(df: pd.DataFrame, columns: list[str], warns: list[str]) -> np.ndarray:
    """Row-wise max over numeric columns (NaN when all are missing)."""
    if not columns:
        return np.full(len(df), np.nan)
    stacked = np.stack([_numbers(df[c], c, warns) for c in columns], axis=1)
    out = np.full(len(df), np.nan)
    has = ~np.isnan(stacked).all(axis=1)
    out[has] = np.nanmax(stacked[has], axis=1)
    return out


def _from_gdc(df: pd.DataFrame, path: Path, warns: list[str]) -> pd.DataFrame:
    cols = list(df.columns)
    id_col, vital_col = _pick(cols, GDC_ID), _pick(cols, GDC_VITAL)
    death_col = _pick(cols, GDC_DEATH)
    follow_cols = [c for c in GDC_FOLLOW if c in cols]
    if vital_col is None:
        raise DataError(path, f"GDC clinical table without a vital status column ({' or '.join(GDC_VITAL)})")
    ids_all = df[id_col].astype(str).str.strip()
    keep = ids_all != ""
    df, ids_all = df[keep].reset_index(drop=True), ids_all[keep].reset_index(drop=True)
    death = _numbers(df[death_col], death_col, warns) if death_col else np.full(len(df), np.nan)
    follow = _max_over(df, follow_cols, warns)
    if not follow_cols:
        warns.append(f"no follow-up column ({' or '.join(GDC_FOLLOW)}): Alive cases have unknown os labels")
    per_case = pd.DataFrame(
        {
            "id": ids_all,
            "dead": df[vital_col].map(_vital) == "dead",
            "alive": df[vital_col].map(_vital) == "alive",
            "death": death,
            "follow": follow,
        }
    )
    grouped = per_case.groupby("id", sort=False).agg(
        {"dead": "any", "alive": "any", "death": "max", "follow": "max"}
    )
    ids = grouped.index.astype(str).tolist()
    vital = [
        "dead" if d else "alive" if a else "" for d, a in zip(grouped["dead"], grouped["alive"], strict=True)
    ]
    os_pair = _os_from_vital(ids, vital, grouped["death"].to_numpy(), grouped["follow"].to_numpy(), warns)
    return _frame(ids, {"os": os_pair})


def _drop_cde_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the legacy files' extra header rows: the repeated column names and the ``CDE_ID:`` row."""
    drop = 0
    for k in range(min(2, len(df))):
        row = df.iloc[k].astype(str).str.strip()
        if row["bcr_patient_barcode"] == "bcr_patient_barcode" or row.str.startswith("CDE_ID").any():
            drop = k + 1
    return df.iloc[drop:].reset_index(drop=True)


def _from_legacy(df: pd.DataFrame, path: Path, warns: list[str]) -> pd.DataFrame:
    df = _dedupe(_drop_cde_rows(df), "bcr_patient_barcode", warns)
    cols = list(df.columns)
    death_col = _pick(cols, LEGACY_DEATH)
    follow_cols = [c for c in LEGACY_FOLLOW if c in cols]
    if death_col is None:
        raise DataError(
            path, f"legacy clinical table without a days-to-death column ({' or '.join(LEGACY_DEATH)})"
        )
    ids = df["bcr_patient_barcode"].astype(str).str.strip().tolist()
    vital = df["vital_status"].map(_vital).tolist()
    death = _numbers(df[death_col], death_col, warns)
    return _frame(ids, {"os": _os_from_vital(ids, vital, death, _max_over(df, follow_cols, warns), warns)})


def _from_generic(df: pd.DataFrame, warns: list[str]) -> pd.DataFrame:
    df = _dedupe(df, "case_id", warns)
    ids = df["case_id"].astype(str).str.strip().tolist()
    labels = {}
    for name in ENDPOINTS:
        tc, ec = f"{name}_time", f"{name}_event"
        if tc in df.columns and ec in df.columns:
            labels[name] = _clean_pair(
                ids, _numbers(df[tc], tc, warns), _numbers(df[ec], ec, warns), name, warns
            )
    return _frame(ids, labels)


def read_clinical(path: Path) -> pd.DataFrame:
    """Endpoints of a TCGA clinical table (see the module docstring) -> DataFrame with ``case_id``,
    ``os_time``, ``os_event`` and, when the table has them, ``pfi_*``, ``dss_*``, ``dfi_*`` (float64,
    NaN = unknown), one row per case; ``df.attrs["warnings"]`` lists what was set unknown and why."""
    path = require_file(Path(path), "clinical table")
    raw = _read_table(path)
    cols = list(raw.columns)
    warns: list[str] = []
    if "bcr_patient_barcode" in cols and ("OS" in cols or "OS.time" in cols):
        df = _from_cdr(raw, warns)
    elif _pick(cols, GDC_ID) is not None:
        df = _from_gdc(raw, path, warns)
    elif "bcr_patient_barcode" in cols and "vital_status" in cols:
        df = _from_legacy(raw, path, warns)
    elif "case_id" in cols and any(f"{e}_time" in cols for e in ENDPOINTS):
        df = _from_generic(raw, warns)
    else:
        raise DataError(
            path,
            "not a recognised clinical table",
            "expected TCGA-CDR columns (bcr_patient_barcode, OS, OS.time, ...), a GDC clinical.tsv "
            "(cases.submitter_id, demographic.vital_status, ...), a legacy clinical_patient table "
            "(bcr_patient_barcode, vital_status, death_days_to, ...) or case_id + os_time/os_event",
        )
    if df.empty:
        raise DataError(path, "the clinical table has no case rows")
    df.attrs["warnings"] = warns
    return df
