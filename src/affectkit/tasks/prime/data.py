"""PRIME datasets: a manifest of patients with optional modalities, read into one :class:`Cohort`.

The data root holds ``manifest.csv`` (or ``.tsv``, ``.yaml``/``.yml`` = a list of row mappings), one row
per patient:

- ``case_id`` (required, unique, non-empty); ``cohort`` (optional, default ``all``); ``fold`` (optional
  integer 0..k-1, every fold used).
- one column per modality (``modalities`` maps name -> kind, kind in ``bag``/``vector``/``text``; the
  order of that mapping is the modality order everywhere). An empty cell = the modality is missing.

  - ``bag``: one or more paths separated by ``;`` (relative to the root, or absolute) to CLAM
    ``.h5`` files (dataset ``features`` [N, d], optional ``coords``) or ``.pt`` files (a tensor [N, d] or a
    dict with ``features``), concatenated along N. Only their shapes are read at load time; the
    features themselves come from :func:`load_bag`.
  - ``vector``: (a) a per-patient file (``.npy``, ``.pt``, or ``.csv``/``.tsv``/``.txt`` with one number
    per line or two columns ``gene<sep>value``, header optional); (b) a sample id looked up in a
    matrix file (``matrices: {M: "expression.tsv"}``, see :func:`read_matrix`); or (c) inline manifest
    columns (``columns: {M: "age,er,grade"}``): numeric columns are kept as they are, other columns
    are one-hot encoded with their levels sorted (feature names ``col=level``). A column is numeric
    when more than half of its non-empty cells are numbers (then every other cell is an error); add
    ``:num`` or ``:cat`` to a column name (``grade:cat``) to force its type. The modality is missing
    when all of its columns are empty.
  - ``text``: the report itself, or a path ending in ``.txt`` (read as UTF-8).

- endpoint columns: ``endpoints`` maps a name to ``"time_col,event_col"`` (default ``os``:
  ``os_time,os_event``). time >= 0, event 0/1; both empty = label unknown (NaN).

In every cell read as data (modality columns, inline columns, endpoints, fold) the tokens ``NA``,
``NaN``, ``N/A``, ``null``, ``None``, ``--`` and ``'--`` (any case) count as empty. Inside an OBSERVED
vector, NaN entries are allowed (an empty inline cell, a NaN in a matrix or a vector file; an empty
categorical cell gives NaN on all of its one-hot features): the model mean-imputes them with
training-fold means. Raw data are never imputed here, and a vector that is NaN everywhere is an error.

Errors name the manifest and the row: ``row 7 (case TCGA-XX)`` is the 7th patient row (the header is
not counted, so in a spreadsheet it is line 8).
"""

from __future__ import annotations

import functools
import math
import pickle
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from affectkit.core.errors import DataError, UsageError, require_dir
from affectkit.core.output import get_output

KINDS = ("bag", "vector", "text")
DEFAULT_MODALITIES = {"wsi": "bag", "rna": "vector", "report": "text"}
DEFAULT_ENDPOINTS = {"os": "os_time,os_event"}
MANIFEST_NAMES = ("manifest.csv", "manifest.tsv", "manifest.yaml", "manifest.yml")
ORIENTATIONS = ("auto", "genes_x_samples", "samples_x_genes")
BAG_SUFFIXES = (".h5", ".pt")
VECTOR_SUFFIXES = (".npy", ".pt", ".csv", ".tsv", ".txt")
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none", "--", "'--"})
_TCGA_PATIENT = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}", re.IGNORECASE)
_BAG_CACHE_SIZE = 64


# --------------------------------------------------------------------------------------------------
# the loaded representation


@dataclass
class Cohort:
    """A loaded dataset: per patient its ids, which modalities are observed, their data and labels.

    ``observed`` is bool [n, M] in the order of ``modalities``. Missing cells hold NaN rows
    (``vectors``), ``[]`` (``bags``) or None (``texts``). Endpoint times/events are float64 with NaN for
    an unknown label."""

    root: Path
    case_ids: list[str]
    cohorts: list[str]
    modalities: dict[str, str]
    observed: np.ndarray
    vectors: dict[str, np.ndarray]
    feature_names: dict[str, list[str]]
    bags: dict[str, list[list[Path]]]
    texts: dict[str, list[str | None]]
    endpoints: dict[str, tuple[np.ndarray, np.ndarray]]
    folds: np.ndarray | None

    @property
    def n(self) -> int:
        """Number of patients."""
        return len(self.case_ids)

    @property
    def modality_names(self) -> list[str]:
        """Modality names in modality order."""
        return list(self.modalities)

    def modality_index(self, name: str) -> int:
        """Column of ``name`` in ``observed``; UsageError for an unknown modality."""
        if name not in self.modalities:
            raise UsageError(f"unknown modality {name!r}", f"this dataset has: {', '.join(self.modalities)}")
        return self.modality_names.index(name)

    def endpoint(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(time, event) of endpoint ``name``; DataError naming it when the dataset lacks it."""
        if name not in self.endpoints:
            have = ", ".join(self.endpoints) or "none"
            raise DataError(None, f"unknown endpoint {name!r} (this dataset has: {have})")
        return self.endpoints[name]

    def subset(self, indices: Sequence[int] | np.ndarray) -> Cohort:
        """A new Cohort with the patients at ``indices`` (ints, in that order, or a bool mask [n])."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (self.n,):
                raise ValueError(f"a boolean subset mask needs shape ({self.n},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        pick = idx.tolist()
        return Cohort(
            root=self.root,
            case_ids=[self.case_ids[i] for i in pick],
            cohorts=[self.cohorts[i] for i in pick],
            modalities=dict(self.modalities),
            observed=self.observed[idx].copy(),
            vectors={m: v[idx].copy() for m, v in self.vectors.items()},
            feature_names={m: list(f) for m, f in self.feature_names.items()},
            bags={m: [list(b[i]) for i in pick] for m, b in self.bags.items()},
            texts={m: [t[i] for i in pick] for m, t in self.texts.items()},
            endpoints={k: (t[idx].copy(), e[idx].copy()) for k, (t, e) in self.endpoints.items()},
            folds=None if self.folds is None else self.folds[idx].copy(),
        )

    def with_observed(self, mask: np.ndarray) -> Cohort:
        """A copy whose ``observed`` is ``observed & mask`` (bool [n, M]); the data of newly missing
        cells are blanked (NaN vector rows, ``[]`` bags, None texts). Patients may end with no
        observed modality: callers that need one check it."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.observed.shape:
            raise ValueError(f"mask shape {mask.shape} does not match observed {self.observed.shape}")
        out = self.subset(np.arange(self.n))
        out.observed = self.observed & mask
        for j, (name, kind) in enumerate(self.modalities.items()):
            gone = np.flatnonzero(self.observed[:, j] & ~out.observed[:, j]).tolist()
            if not gone:
                continue
            if kind == "vector":
                out.vectors[name][gone] = np.nan
            elif kind == "bag":
                for i in gone:
                    out.bags[name][i] = []
            else:
                for i in gone:
                    out.texts[name][i] = None
        return out


# --------------------------------------------------------------------------------------------------
# small helpers


def _problem(e: DataError) -> str:
    """The problem part of a DataError's message (without its ``path: `` prefix)."""
    prefix = f"{e.path}: "
    return e.message[len(prefix) :] if e.path is not None and e.message.startswith(prefix) else e.message


def _is_missing(raw: str) -> bool:
    return raw.strip().lower() in MISSING_TOKENS


def _number(raw: str) -> float | None:
    """A cell as a number: NaN for an empty/NA cell, None when it is not a number."""
    s = raw.strip()
    if s.lower() in MISSING_TOKENS:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return None


def _resolve(root: Path, rel: str) -> Path:
    p = Path(rel).expanduser()
    return p if p.is_absolute() else root / p


def _split_spec(spec: Any, what: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; UsageError when empty."""
    parts = [str(s).strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    parts = [p for p in parts if p]
    if not parts:
        raise UsageError(f"{what}: no column names given")
    return parts


def tcga_patient(case_id: str) -> str | None:
    """The 12-character patient barcode ``TCGA-XX-XXXX`` of a TCGA id (upper case), else None."""
    m = _TCGA_PATIENT.match(case_id.strip())
    return m.group().upper() if m else None


# --------------------------------------------------------------------------------------------------
# manifest


@dataclass
class _Manifest:
    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    ids: list[str]

    def where(self, i: int) -> str:
        """``row 7 (case X)`` for the 0-based row ``i``."""
        cid = self.ids[i] if i < len(self.ids) else ""
        return f"row {i + 1} (case {cid})" if cid else f"row {i + 1}"

    def fail(self, i: int, problem: str, hint: str | None = None) -> DataError:
        return DataError(self.path, f"{self.where(i)}: {problem}", hint)

    def cell(self, i: int, column: str) -> str:
        return self.rows[i].get(column, "")

    def value(self, i: int, column: str) -> str:
        """The cell of a modality column, "" when it is empty or an NA token."""
        cell = self.cell(i, column)
        return "" if _is_missing(cell) else cell


def find_manifest(root: Path, manifest: str = "") -> Path:
    """The manifest file: ``manifest`` relative to ``root`` (or absolute), or the first of
    :data:`MANIFEST_NAMES` present in ``root``; DataError when there is none."""
    if manifest:
        path = _resolve(root, manifest)
        if not path.is_file():
            raise DataError(path, "manifest not found")
        return path
    for name in MANIFEST_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(root, "manifest not found", f"write one of {', '.join(MANIFEST_NAMES)} in the data root")


def _yaml_cell(value: Any, path: Path, i: int, key: str) -> str:
    """A YAML value as a manifest cell string (lists of paths are joined with ``;``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value).strip()
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ";".join(str(v).strip() for v in value)
    raise DataError(path, f"row {i + 1}: the value of {key!r} must be a string, a number or a list of paths")


def _read_yaml_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(path, f"not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, dict) and isinstance(data.get("patients"), list):
        data = data["patients"]
    if not isinstance(data, list):
        raise DataError(path, "a YAML manifest must be a list of row mappings (one per patient)")
    columns: list[str] = []
    rows = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(path, f"row {i + 1}: expected a mapping of column -> value")
        row = {str(k).strip(): _yaml_cell(v, path, i, str(k)) for k, v in item.items()}
        columns += [k for k in row if k not in columns]
        rows.append(row)
    return columns, rows


def _read_table_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        df = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
        )
    except pd.errors.EmptyDataError:
        raise DataError(path, "the manifest is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot parse the manifest ({str(e).strip().splitlines()[0]})") from None
    columns = [str(c).strip() for c in df.columns]
    rows = [
        {c: str(v).strip() for c, v in zip(columns, values, strict=True)}
        for values in df.itertuples(index=False, name=None)
    ]
    return columns, rows


def _read_manifest(path: Path) -> _Manifest:
    """Read the manifest rows as strings and check the case ids (present, non-empty, unique)."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        columns, rows = _read_yaml_rows(path)
    elif suffix in (".csv", ".tsv", ".txt"):
        columns, rows = _read_table_rows(path)
    else:
        raise DataError(path, f"unsupported manifest type {suffix!r}", "use .csv, .tsv, .yaml or .yml")
    if not rows:
        raise DataError(path, "the manifest has no patient rows")
    if "case_id" not in columns:
        raise DataError(path, "no case_id column", f"the columns are: {', '.join(columns)}")
    ids = [r.get("case_id", "").strip() for r in rows]
    mf = _Manifest(path, columns, rows, ids)
    seen: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if not cid:
            raise mf.fail(i, "empty case_id")
        if cid in seen:
            raise mf.fail(i, f"duplicate case_id {cid!r} (also row {seen[cid] + 1})")
        seen[cid] = i
    return mf


# --------------------------------------------------------------------------------------------------
# bags


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise UsageError(
            "reading CLAM .h5 feature bags needs h5py",
            "pip install h5py (or pip install 'affectkit[survival]')",
        ) from None
    return h5py


def _as_2d(shape: tuple[int, ...], path: Path) -> tuple[int, int]:
    """A bag shape as (N, d); [1, N, d] is accepted; anything else is a DataError."""
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise DataError(path, f"features must be 2-D [N, d], found shape {list(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise DataError(path, f"the bag is empty (shape {list(shape)})")
    return int(shape[0]), int(shape[1])


def _h5_dataset(f: Any, path: Path) -> Any:
    if "features" not in f:
        raise DataError(path, f"no 'features' dataset (found: {', '.join(sorted(f.keys())) or 'nothing'})")
    return f["features"]


def _open_h5(path: Path) -> Any:
    h5py = _import_h5py()
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(path, f"cannot read as HDF5 ({e})") from None


def _torch_load(path: Path, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` on CPU; DataError when the file cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as e:
        if mmap and "mmap" in str(e):  # legacy (non-zip) torch.save format: no lazy loading
            return _torch_load(path, mmap=False)
        raise DataError(path, f"cannot read as a torch file ({str(e).splitlines()[0]})") from None
    except pickle.UnpicklingError:
        raise DataError(
            path,
            "cannot read as a tensor file (torch.load with weights_only=True refused it: not a torch file, "
            "or it holds Python objects other than tensors)",
            "save the features with torch.save(tensor, path)",
        ) from None
    except Exception as e:  # noqa: BLE001 - unpickling raises many types; all mean "not a tensor file"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(path, f"cannot read as a tensor file ({msg[:200]})") from None


def _pt_tensor(obj: Any, path: Path) -> torch.Tensor:
    """The bag tensor of a loaded .pt object (a tensor, or a dict with ``features``)."""
    if isinstance(obj, dict) and "features" in obj:
        obj = obj["features"]
    if not isinstance(obj, torch.Tensor):
        raise DataError(
            path, f"expected a tensor [N, d] or a dict with 'features', found {type(obj).__name__}"
        )
    return obj


def bag_shape(path: Path) -> tuple[int, int]:
    """(N, d) of one bag file without reading its features into memory (h5: the dataset shape; .pt:
    a memory-mapped load). DataError for a missing file, a wrong type or a wrong shape."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found")
    suffix = path.suffix.lower()
    if suffix == ".h5":
        with _open_h5(path) as f:
            return _as_2d(tuple(_h5_dataset(f, path).shape), path)
    if suffix == ".pt":
        tensor = _pt_tensor(_torch_load(path, mmap=True), path)
        return _as_2d(tuple(tensor.shape), path)
    raise DataError(path, f"unsupported bag file type {suffix!r}", "use CLAM .h5 or .pt feature files")


def _read_bag_file(path: Path) -> np.ndarray:
    """Features of one bag file as float32 [N, d]."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(path, "not found")
    if suffix == ".h5":
        with _open_h5(path) as f:
            ds = _h5_dataset(f, path)
            _as_2d(tuple(ds.shape), path)
            if ds.dtype == np.float32 and ds.size:
                arr = np.empty(ds.shape, np.float32)
                ds.read_direct(arr)  # straight into the array: no intermediate copy
            else:
                arr = np.asarray(ds[()], dtype=np.float32)
    elif suffix == ".pt":
        tensor = _pt_tensor(_torch_load(path), path)
        _as_2d(tuple(tensor.shape), path)
        arr = tensor.detach().to(torch.float32).numpy()
    else:
        raise DataError(path, f"unsupported bag file type {suffix!r}", "use CLAM .h5 or .pt feature files")
    return arr.reshape(arr.shape[-2], arr.shape[-1])


@functools.lru_cache(maxsize=_BAG_CACHE_SIZE)
def _load_bag_cached(paths: tuple[Path, ...]) -> np.ndarray:
    parts = [_read_bag_file(p) for p in paths]
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
        desc = ", ".join(f"{path.name}: {a.shape[1]}" for path, a in zip(paths, parts, strict=True))
        raise DataError(paths[0], f"the files of one bag have different feature widths ({desc})")
    arr = np.ascontiguousarray(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0))
    arr.flags.writeable = False
    return arr


def load_bag(paths: Sequence[Path | str]) -> np.ndarray:
    """The features of one patient's bag: its files concatenated along N, float32 [N, d].

    Results are cached (LRU, the last 64 bags) and returned READ-ONLY: copy before changing them
    (``torch.tensor(x)`` or ``x.copy()``; ``torch.from_numpy`` warns on read-only arrays)."""
    key = tuple(Path(p) for p in paths)
    if not key:
        raise UsageError("load_bag needs at least one file (the modality is missing for this patient)")
    return _load_bag_cached(key)


def clear_bag_cache() -> None:
    """Forget the bags cached by :func:`load_bag`."""
    _load_bag_cached.cache_clear()


# --------------------------------------------------------------------------------------------------
# gene-expression matrices


def _table_kind(path: Path) -> str:
    name = path.name.lower()
    for ext in (".gz", ".bz2", ".zip", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    for kind in ("parquet", "csv", "tsv", "txt"):
        if name.endswith("." + kind):
            return kind
    raise DataError(path, "unsupported matrix type", "use .tsv, .csv, .txt (tab-separated) or .parquet")


def _read_raw_matrix(path: Path) -> pd.DataFrame:
    """The matrix as read: index = first column (str), columns = the header after it (str, not
    de-duplicated), values as parsed (numbers where they parse)."""
    kind = _table_kind(path)
    if kind == "parquet":
        try:
            df = pd.read_parquet(path)
        except ImportError:
            raise UsageError("reading .parquet matrices needs pyarrow", "pip install pyarrow") from None
        if isinstance(df.index, pd.RangeIndex) and df.index.name is None:
            df = df.set_index(df.columns[0])
        df.index = df.index.map(lambda v: str(v).strip())
        df.columns = [str(c).strip() for c in df.columns]
        return df
    sep = "," if kind == "csv" else "\t"
    try:
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        df = pd.read_csv(path, sep=sep, header=None, skiprows=1, index_col=0, dtype={0: str})
    except pd.errors.EmptyDataError:
        raise DataError(path, "the matrix is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot parse the matrix ({str(e).strip().splitlines()[0]})") from None
    labels = [str(v).strip() for v in header.iloc[0].tolist()[1:]]
    if len(labels) != df.shape[1]:
        raise DataError(
            path,
            f"the header has {len(labels)} labels after the first column but rows have {df.shape[1]} values",
        )
    df.columns = labels
    df.index = df.index.map(lambda v: str(v).strip())
    return df


def _decide_orientation(
    df: pd.DataFrame, orientation: str, sample_ids: Iterable[str] | None, path: Path
) -> str:
    """``genes_x_samples`` or ``samples_x_genes``; for ``auto`` by where the sample ids occur."""
    if orientation not in ORIENTATIONS:
        raise UsageError(
            f"unknown matrix orientation {orientation!r}", f"choose one of: {', '.join(ORIENTATIONS)}"
        )
    if orientation != "auto":
        return orientation
    ids = {s for s in (sample_ids or []) if s}
    if not ids:
        raise UsageError("orientation 'auto' needs the sample ids to look for")
    in_header = len(ids & set(df.columns))
    in_first = len(ids & set(df.index))
    if in_header == 0 and in_first == 0:
        example = ", ".join(sorted(ids)[:3])
        raise DataError(
            path,
            f"none of the manifest's sample ids (e.g. {example}) is in the header or in the first column",
            "check the ids, or set the orientation (genes_x_samples / samples_x_genes)",
        )
    return "genes_x_samples" if in_header >= in_first else "samples_x_genes"


def _numeric_values(df: pd.DataFrame, path: Path, genes_on_rows: bool) -> np.ndarray:
    """The values as float32 (missing cells NaN); DataError naming gene and sample of the first
    non-numeric value."""
    out = np.empty(df.shape, dtype=np.float32)
    for j, col in enumerate(df.columns):
        series = df.iloc[:, j]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            out[:, j] = series.to_numpy(dtype=np.float32, na_value=np.nan)
            continue
        raw = series.astype(str).str.strip()
        missing = raw.str.lower().isin(MISSING_TOKENS).to_numpy() | series.isna().to_numpy()
        coerced = pd.to_numeric(raw.mask(missing), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(coerced) & ~missing)
        if bad.size:
            row_label, value = df.index[bad[0]], raw.iloc[bad[0]]
            gene, sample = (row_label, col) if genes_on_rows else (col, row_label)
            raise DataError(path, f"non-numeric value {value!r} for gene {gene}, sample {sample}")
        out[:, j] = coerced
    return out


def _first_duplicate(labels: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            return label
        seen.add(label)
    return None


def read_matrix(
    path: Path, orientation: str = "genes_x_samples", sample_ids: Iterable[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Read an expression matrix (TSV/TXT tab-separated, CSV, parquet; optionally compressed) ->
    (genes, samples, values float32 [genes, samples]).

    ``orientation``: ``genes_x_samples`` (first column gene ids, header = sample ids),
    ``samples_x_genes`` (first column sample ids, header = gene ids), or ``auto`` (decided by whether
    more of ``sample_ids`` are in the header or in the first column). Empty/NA cells become NaN.
    DataError for a duplicate gene or sample (named) and for a non-numeric value (gene and sample)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "matrix file not found")
    df = _read_raw_matrix(path)
    genes_on_rows = _decide_orientation(df, orientation, sample_ids, path) == "genes_x_samples"
    rows, cols = list(df.index), list(df.columns)
    genes, samples = (rows, cols) if genes_on_rows else (cols, rows)
    dup = _first_duplicate(genes)
    if dup is not None:
        raise DataError(
            path, f"duplicate gene {dup!r}", "collapse duplicate genes (e.g. keep the mean) first"
        )
    dup = _first_duplicate(samples)
    if dup is not None:
        raise DataError(path, f"duplicate sample {dup!r}")
    values = _numeric_values(df, path, genes_on_rows)
    return genes, samples, (values if genes_on_rows else values.T.copy())


# --------------------------------------------------------------------------------------------------
# per-patient vector files


def _split_line(line: str) -> list[str]:
    if "\t" in line:
        return [p.strip() for p in line.split("\t")]
    if "," in line:
        return [p.strip() for p in line.split(",")]
    return line.split()


def _read_vector_text(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """One number per line, or ``gene<sep>value`` per line; an optional header line."""
    lines = [ln for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]
    rows = [(i + 1, _split_line(ln)) for i, ln in enumerate(lines)]
    if rows and _number(rows[0][1][-1]) is None:
        rows = rows[1:]  # header
    if not rows:
        raise DataError(path, "the vector file has no values")
    width = len(rows[0][1])
    if width not in (1, 2):
        raise DataError(path, f"expected one value or two columns (gene, value) per line, found {width}")
    values, names = [], []
    for line_no, parts in rows:
        if len(parts) != width:
            raise DataError(path, f"line {line_no} has {len(parts)} column(s), expected {width}")
        v = _number(parts[-1])
        if v is None:
            raise DataError(path, f"line {line_no}: {parts[-1]!r} is not a number")
        values.append(v)
        names.append(parts[0])
    if width == 2:
        dup = _first_duplicate(names)
        if dup is not None:
            raise DataError(path, f"duplicate gene {dup!r}")
    return np.asarray(values, dtype=np.float64), (names if width == 2 else None)


def read_vector_file(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """A per-patient vector (.npy, .pt, .csv/.tsv/.txt) -> (float64 [d], gene names or None)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found")
    suffix = path.suffix.lower()
    names = None
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(path, f"cannot read as .npy ({str(e).splitlines()[0]})") from None
    elif suffix == ".pt":
        obj = _torch_load(path)
        if isinstance(obj, dict) and "features" in obj:
            obj = obj["features"]
        if not isinstance(obj, torch.Tensor):
            raise DataError(path, f"expected a tensor, found {type(obj).__name__}")
        arr = obj.detach().to(torch.float64).numpy()
    elif suffix in (".csv", ".tsv", ".txt"):
        arr, names = _read_vector_text(path)
    else:
        raise DataError(path, f"unsupported vector file type {suffix!r}", f"use {', '.join(VECTOR_SUFFIXES)}")
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(path, f"expected numbers, found dtype {arr.dtype}")
    if arr.ndim != 1 and sum(s > 1 for s in arr.shape) > 1:
        raise DataError(path, f"expected a 1-D vector, found shape {list(arr.shape)}")
    arr = arr.astype(np.float64).ravel()
    if arr.size == 0:
        raise DataError(path, "the vector is empty")
    return arr, names


# --------------------------------------------------------------------------------------------------
# modality readers (each returns data for all patients + the observed column)


def _check_vector(mf: _Manifest, i: int, name: str, vec: np.ndarray, source: str) -> None:
    """An observed vector may hold NaN but not inf, and not only NaN."""
    if np.isinf(vec).any():
        raise mf.fail(i, f"{name} {source} holds infinite values")
    if np.isnan(vec).all():
        raise mf.fail(
            i, f"{name} {source} is NaN everywhere", "leave the cell empty when the modality is missing"
        )


def _log2p1(mf: _Manifest, i: int, name: str, vec: np.ndarray, source: str) -> np.ndarray:
    neg = np.flatnonzero(vec < 0)
    if neg.size:
        raise mf.fail(
            i,
            f"{name} {source} has negative value {vec[neg[0]]:g} (index {int(neg[0])}); log2(x+1) needs x >= 0",
            "set log2p1: false when the values are already log-scaled",
        )
    return np.log2(vec + 1.0)


def _read_row_file(mf: _Manifest, root: Path, i: int, name: str, rel: str, reader: Any) -> tuple[Path, Any]:
    """``reader(path)`` of the file a manifest cell names; a missing or unreadable file is a
    DataError naming the manifest row and the file."""
    path = _resolve(root, rel)
    if not path.is_file():
        raise mf.fail(i, f"{name} file {rel} not found")
    try:
        return path, reader(path)
    except DataError as e:
        raise mf.fail(i, f"{name} file {rel}: {_problem(e)}", e.hint) from None


def _read_bags(mf: _Manifest, root: Path, name: str) -> tuple[list[list[Path]], np.ndarray]:
    """Resolve and shape-check each patient's bag files; all files must share the feature width."""
    bags: list[list[Path]] = []
    width: tuple[int, str, int] | None = None  # (d, file, row) of the first file seen
    for i in range(len(mf.rows)):
        files = []
        for rel in (p.strip() for p in mf.value(i, name).split(";")):
            if not rel:
                continue
            path, (_, d) = _read_row_file(mf, root, i, name, rel, bag_shape)
            if width is None:
                width = (d, rel, i)
            elif d != width[0]:
                raise mf.fail(
                    i,
                    f"{name} features in {rel} are {d}-wide but {width[0]}-wide in {width[1]} "
                    f"({mf.where(width[2])})",
                    "all bags of a modality must come from the same feature extractor",
                )
            files.append(path)
        bags.append(files)
    return bags, np.array([bool(b) for b in bags])


def _align_named(
    mf: _Manifest, i: int, name: str, rel: str, vec: np.ndarray, names: list[str], ref: list[str]
) -> np.ndarray:
    """Reorder a named vector to the reference gene order; DataError when the gene sets differ."""
    if names == ref:
        return vec
    pos = {g: k for k, g in enumerate(names)}
    missing = [g for g in ref if g not in pos]
    extra = [g for g in names if g not in set(ref)]
    if missing or extra:
        what = f"lacks gene {missing[0]!r}" if missing else f"has extra gene {extra[0]!r}"
        raise mf.fail(i, f"{name} file {rel} {what} (compared with the first {name} file)")
    return vec[[pos[g] for g in ref]]


def _read_vector_files(
    mf: _Manifest, root: Path, name: str, log2p1: bool
) -> tuple[np.ndarray, list[str], np.ndarray]:
    vecs: dict[int, np.ndarray] = {}
    ref_names: list[str] | None = None
    first: tuple[int, str, int] | None = None  # (row, file, length) of the first vector file
    for i in range(len(mf.rows)):
        rel = mf.value(i, name)
        if not rel:
            continue
        path, (vec, names) = _read_row_file(mf, root, i, name, rel, read_vector_file)
        if first is None:
            first, ref_names = (i, rel, vec.size), names
        elif ref_names is not None and names is not None:
            vec = _align_named(mf, i, name, rel, vec, names, ref_names)
        if vec.size != first[2]:
            raise mf.fail(
                i,
                f"{name} file {rel} has {vec.size} values but {first[1]} ({mf.where(first[0])}) has {first[2]}",
            )
        _check_vector(mf, i, name, vec, f"file {rel}")
        vecs[i] = _log2p1(mf, i, name, vec, f"file {rel}") if log2p1 else vec
    d = first[2] if first else 0
    feature_names = ref_names if ref_names is not None else [f"{name}_{j}" for j in range(d)]
    return _stack(vecs, len(mf.rows), d), feature_names, np.array([i in vecs for i in range(len(mf.rows))])


def _stack(vecs: dict[int, np.ndarray], n: int, d: int) -> np.ndarray:
    out = np.full((n, d), np.nan, dtype=np.float32)
    for i, v in vecs.items():
        out[i] = v
    return out


def _read_vector_matrix(
    mf: _Manifest, root: Path, name: str, matrix: str, orientation: str, log2p1: bool, cache: dict
) -> tuple[np.ndarray, list[str], np.ndarray]:
    path = _resolve(root, matrix)
    ids = [mf.value(i, name) for i in range(len(mf.rows))]
    key = (path, orientation)
    if key not in cache:
        if not path.is_file():
            raise DataError(path, f"matrix file for modality {name} not found")
        cache[key] = read_matrix(path, orientation, ids)
    genes, samples, values = cache[key]
    col = {s: k for k, s in enumerate(samples)}
    vecs = {}
    for i, sid in enumerate(ids):
        if not sid:
            continue
        if sid not in col:
            raise mf.fail(i, f"{name} sample {sid!r} not found in {matrix}")
        vec = values[:, col[sid]].astype(np.float64)
        _check_vector(mf, i, name, vec, f"sample {sid} in {matrix}")
        vecs[i] = _log2p1(mf, i, name, vec, f"sample {sid} in {matrix}") if log2p1 else vec
    return _stack(vecs, len(mf.rows), len(genes)), list(genes), np.array([i in vecs for i in range(len(ids))])


def _inline_column_type(mf: _Manifest, col: str, forced: str) -> str:
    """``num`` or ``cat`` for an inline column (see the module docstring)."""
    cells = [(i, mf.cell(i, col)) for i in range(len(mf.rows)) if not _is_missing(mf.cell(i, col))]
    if not cells:
        raise DataError(mf.path, f"column {col} is empty for every patient")
    if forced == "cat":
        return "cat"
    numbers = [(i, raw, _number(raw)) for i, raw in cells]
    bad = [(i, raw) for i, raw, v in numbers if v is None or not math.isfinite(v)]
    if forced == "num" or len(bad) < len(cells) / 2:
        if bad:
            i, raw = bad[0]
            raise mf.fail(
                i,
                f"column {col}: {raw!r} is not a finite number",
                f"write {col}:cat in the columns list if {col} is categorical",
            )
        return "num"
    return "cat"


def _read_vector_inline(
    mf: _Manifest, name: str, spec: Any, forbidden: set[str]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    n = len(mf.rows)
    blocks, names = [], []
    present = np.zeros(n, dtype=bool)
    for item in _split_spec(spec, f"columns for modality {name}"):
        col, _, forced = item.partition(":")
        col, forced = col.strip(), forced.strip().lower()
        if forced not in ("", "num", "cat"):
            raise UsageError(f"column {item!r} of modality {name}: the type must be :num or :cat")
        if col in forbidden:
            raise UsageError(f"modality {name} cannot use column {col!r} (an id, fold or endpoint column)")
        if col not in mf.columns:
            raise DataError(mf.path, f"no column {col!r} (listed in columns for modality {name})")
        raw = [mf.cell(i, col) for i in range(n)]
        empty = np.array([_is_missing(r) for r in raw])
        present |= ~empty
        if _inline_column_type(mf, col, forced) == "num":
            blocks.append(np.array([[math.nan if e else float(r)] for r, e in zip(raw, empty, strict=True)]))
            names.append(col)
        else:
            levels = sorted({r.strip() for r, e in zip(raw, empty, strict=True) if not e})
            onehot = np.array(
                [
                    [math.nan] * len(levels) if e else [float(r.strip() == lv) for lv in levels]
                    for r, e in zip(raw, empty, strict=True)
                ]
            )
            blocks.append(onehot)
            names += [f"{col}={lv}" for lv in levels]
    values = np.concatenate(blocks, axis=1).astype(np.float32)
    values[~present] = np.nan
    return values, names, present


def _read_texts(mf: _Manifest, root: Path, name: str) -> tuple[list[str | None], np.ndarray]:
    texts: list[str | None] = []
    for i in range(len(mf.rows)):
        cell = mf.value(i, name)
        if not cell:
            texts.append(None)
            continue
        if cell.lower().endswith(".txt") and "\n" not in cell:
            path = _resolve(root, cell)
            if not path.is_file():
                raise mf.fail(i, f"{name} file {cell} not found")
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if not text:
                raise mf.fail(
                    i, f"{name} file {cell} is empty", "leave the cell empty when there is no report"
                )
            cell = text
        texts.append(cell)
    return texts, np.array([t is not None for t in texts])


# --------------------------------------------------------------------------------------------------
# labels, folds, clinical merge


def _endpoint_columns(endpoints: dict[str, Any]) -> dict[str, tuple[str, str]]:
    out = {}
    for name, spec in endpoints.items():
        cols = _split_spec(spec, f"endpoint {name}")
        if len(cols) != 2:
            raise UsageError(f"endpoint {name}: expected 'time_col,event_col', got {spec!r}")
        out[str(name)] = (cols[0], cols[1])
    return out


def _read_endpoint(mf: _Manifest, time_col: str, event_col: str) -> tuple[np.ndarray, np.ndarray]:
    n = len(mf.rows)
    time, event = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        t_raw, e_raw = mf.cell(i, time_col).strip(), mf.cell(i, event_col).strip()
        t, e = _number(t_raw), _number(e_raw)
        if t is None or math.isinf(t):
            raise mf.fail(i, f"{time_col} {t_raw!r} is not a finite number")
        if not math.isnan(t) and t < 0:
            raise mf.fail(i, f"{time_col} {t_raw} is negative")
        if e is None or (not math.isnan(e) and e not in (0.0, 1.0)):
            raise mf.fail(i, f"{event_col} {e_raw} must be 0 or 1")
        if math.isnan(t) != math.isnan(e):
            given, empty = (time_col, event_col) if math.isnan(e) else (event_col, time_col)
            raise mf.fail(i, f"{given} is given but {empty} is empty", "give both or neither")
        time[i], event[i] = t, e
    return time, event


def _read_folds(mf: _Manifest) -> np.ndarray | None:
    if "fold" not in mf.columns:
        return None
    folds = np.zeros(len(mf.rows), dtype=np.int64)
    for i in range(len(mf.rows)):
        raw = mf.cell(i, "fold").strip()
        v = _number(raw)
        if v is None or math.isnan(v) or not float(v).is_integer() or v < 0:
            raise mf.fail(i, f"fold {raw!r} must be an integer 0..k-1")
        folds[i] = int(v)
    k = int(folds.max()) + 1
    unused = sorted(set(range(k)) - set(folds.tolist()))
    if unused:
        raise DataError(mf.path, f"fold {unused[0]} has no patient (folds must be 0..k-1, k={k})")
    if k < 2:
        raise DataError(mf.path, "the fold column has a single fold; cross-validation needs at least 2")
    return folds


def make_folds(event: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded stratified k-fold assignment int [n] on ``event`` (NaN = unknown is its own stratum).

    Falls back to an unstratified shuffled split when every stratum is smaller than ``k``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    event = np.asarray(event, dtype=np.float64).ravel()
    n = event.size
    if k < 2:
        raise UsageError(f"the number of folds must be at least 2, got {k}")
    if n < k:
        raise DataError(None, f"{n} patient(s) cannot be split into {k} folds")
    strata = np.where(np.isnan(event), -1, event).astype(np.int64)
    _, counts = np.unique(strata, return_counts=True)
    if (counts >= k).any():
        splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.zeros(n, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only ... members"
        for f, (_, test) in enumerate(splitter.split(np.zeros(n), strata)):
            folds[test] = f
    return folds


def _merge_clinical(mf: _Manifest, root: Path, clinical: str) -> None:
    """Fill endpoint columns the manifest lacks from a clinical table (see :mod:`.clinical`)."""
    from affectkit.tasks.prime.clinical import read_clinical

    path = _resolve(root, clinical)
    table = read_clinical(path)
    out = get_output()
    for w in table.attrs.get("warnings", []):
        out.warn(f"{path.name}: {w}")
    new_cols = [c for c in table.columns if c != "case_id" and c not in mf.columns]
    if not new_cols:
        out.warn(f"{path.name}: the manifest already has every endpoint column of this table; nothing merged")
        return
    exact: dict[str, int] = {}
    short: dict[str, int] = {}
    for k, cid in enumerate(table["case_id"].astype(str)):
        exact.setdefault(cid, k)
        barcode = tcga_patient(cid)
        if barcode is not None:
            short.setdefault(barcode, k)
    unmatched = 0
    for i, cid in enumerate(mf.ids):
        k = exact.get(cid)
        if k is None and tcga_patient(cid) is not None:
            k = short.get(tcga_patient(cid))
        if k is None:
            unmatched += 1
        for c in new_cols:
            v = None if k is None else table[c].iloc[k]
            mf.rows[i][c] = "" if v is None or pd.isna(v) else repr(float(v))
    mf.columns += new_cols
    if unmatched:
        out.warn(f"{path.name}: {unmatched} of {len(mf.ids)} patients are not in this table (labels unknown)")


# --------------------------------------------------------------------------------------------------
# entry point


def _check_config(modalities: dict[str, str], matrices: dict[str, str], columns: dict[str, Any]) -> None:
    if not modalities:
        raise UsageError("no modalities declared")
    for name, kind in modalities.items():
        if kind not in KINDS:
            raise UsageError(f"modality {name}: unknown kind {kind!r}", f"choose one of: {', '.join(KINDS)}")
    for what, mapping in (("matrices", matrices), ("columns", columns)):
        for name in mapping:
            if modalities.get(name) != "vector":
                raise UsageError(
                    f"{what}: {name!r} is not a vector modality",
                    f"vector modalities: {', '.join(m for m, k in modalities.items() if k == 'vector')}",
                )
    both = set(matrices) & set(columns)
    if both:
        raise UsageError(f"modality {sorted(both)[0]} is given both a matrix and inline columns; choose one")


def load_cohort(
    root: Path,
    manifest: str = "",
    modalities: dict[str, str] | None = None,
    matrices: dict[str, str] | None = None,
    columns: dict[str, str] | None = None,
    endpoints: dict[str, str] | None = None,
    orientation: str = "auto",
    log2p1: bool = False,
    clinical: str = "",
) -> Cohort:
    """Read and validate a PRIME dataset (see the module docstring for the format).

    ``manifest``: a path relative to ``root`` (or absolute); "" = the first of :data:`MANIFEST_NAMES`.
    ``matrices``/``columns``: vector modalities read from a matrix file / inline manifest columns.
    ``orientation``: of the matrices (``auto``, ``genes_x_samples``, ``samples_x_genes``).
    ``log2p1``: apply log2(x+1) to matrix and file vectors (TPM/RSEM). ``clinical``: a clinical table
    (TCGA-CDR, GDC clinical.tsv, legacy clinical_patient) whose endpoint columns fill those the manifest
    lacks, matched by case id or 12-character TCGA patient barcode."""
    root = require_dir(Path(root).expanduser(), "data root")
    modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    matrices, columns = dict(matrices or {}), dict(columns or {})
    ep_cols = _endpoint_columns(DEFAULT_ENDPOINTS if endpoints is None else endpoints)
    if orientation not in ORIENTATIONS:
        raise UsageError(
            f"unknown matrix orientation {orientation!r}", f"choose one of: {', '.join(ORIENTATIONS)}"
        )
    _check_config(modalities, matrices, columns)
    mf = _read_manifest(find_manifest(root, manifest))
    if clinical:
        _merge_clinical(mf, root, clinical)

    for name in modalities:
        if name not in columns and name not in mf.columns:
            raise DataError(
                mf.path,
                f"no column {name!r} for modality {name} ({modalities[name]})",
                "add the column (empty cells = missing), or remove the modality from the config",
            )
    for name, (tc, ec) in ep_cols.items():
        for c in (tc, ec):
            if c not in mf.columns:
                raise DataError(
                    mf.path,
                    f"no column {c!r} for endpoint {name}",
                    "add the column (empty cells = unknown label), or pass a clinical table",
                )
    forbidden = {"case_id", "fold"} | {c for pair in ep_cols.values() for c in pair}

    n = len(mf.rows)
    observed = np.zeros((n, len(modalities)), dtype=bool)
    vectors, feature_names, bags, texts = {}, {}, {}, {}
    matrix_cache: dict = {}
    for j, (name, kind) in enumerate(modalities.items()):
        if kind == "bag":
            bags[name], observed[:, j] = _read_bags(mf, root, name)
        elif kind == "text":
            texts[name], observed[:, j] = _read_texts(mf, root, name)
        elif name in columns:
            vectors[name], feature_names[name], observed[:, j] = _read_vector_inline(
                mf, name, columns[name], forbidden
            )
        elif name in matrices:
            vectors[name], feature_names[name], observed[:, j] = _read_vector_matrix(
                mf, root, name, matrices[name], orientation, log2p1, matrix_cache
            )
        else:
            vectors[name], feature_names[name], observed[:, j] = _read_vector_files(mf, root, name, log2p1)
    none = np.flatnonzero(~observed.any(axis=1))
    if none.size:
        raise mf.fail(
            int(none[0]),
            f"no observed modality (all of {', '.join(modalities)} are empty)",
            "drop the patient from the manifest",
        )

    return Cohort(
        root=root,
        case_ids=list(mf.ids),
        cohorts=[mf.cell(i, "cohort") or "all" for i in range(n)],
        modalities=modalities,
        observed=observed,
        vectors=vectors,
        feature_names=feature_names,
        bags=bags,
        texts=texts,
        endpoints={name: _read_endpoint(mf, tc, ec) for name, (tc, ec) in ep_cols.items()},
        folds=_read_folds(mf),
    )
