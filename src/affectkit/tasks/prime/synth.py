"""The embedded prime benchmarks, built from survival data bundled in scikit-survival and lifelines.

Nothing is copied into the repository: the data are read at run time from the installed packages
and written into two folders in the manifest format of the design:

- ``bc`` (scikit-survival ``load_breast_cancer``: GEO GSE7390 / TRANSBIG, 198 patients), endpoint
  ``dm`` (distant metastasis, days). Modalities: ``genes`` (76 probe sets, ``expression.tsv`` genes x
  samples), ``clinical`` (inline ``age``, ``er``), ``report`` (text rendered from tumour size and
  grade only, so size/grade reach the model through the report alone). Half of the reports are files
  ``reports/<case>.txt``, the other half literal manifest text.
- ``gbsg`` (lifelines ``load_lymph_node``: GBSG trial 1984-89, 686 node-positive patients),
  endpoints ``os`` (survtime/censdead) and ``rfs`` (rectime/censrec). Modalities: ``clinical``
  (inline ``age``, ``menopause``, ``hormone``), ``labs`` (inline ``nodes``, ``prog_recp``,
  ``estrg_recp``), ``report`` (text from size, grade and nodes in words, partly overlapping labs).

Reports use 4 paraphrase templates picked per patient (seeded); the size is a number ("2.3 cm") or
a word (small <= 2 cm < intermediate <= 5 cm < large), grade in words; about 20 % of reports omit
one field (never the last one left). Each folder gets ``manifest.csv`` (complete, with 5 stratified
folds), ``manifest_<pattern>.csv`` for every other missingness pattern, ``prime.yaml`` and
``README.txt``. Same seed -> byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import UsageError
from affectkit.core.runs import atomic_write_text
from affectkit.tasks.prime import missingness

N_FOLDS = 5
OMIT_FIELD_RATE = 0.2
GRADE_WORDS_BC = {
    "well differentiated": "well differentiated",
    "intermediate": "moderately differentiated",
    "poorly differentiated": "poorly differentiated",
}  # "unkown" [sic] grade -> no grade sentence
GRADE_WORDS_GBSG = {1: "well differentiated", 2: "moderately differentiated", 3: "poorly differentiated"}
MENOPAUSE_WORDS = {1: "pre", 2: "post"}  # lifelines codes, checked against sksurv GBSG2 menostat
HORMONE_WORDS = {1: "no", 2: "yes"}  # checked against sksurv GBSG2 horTh

# Per template: an opening sentence and, per field, the sentence with a number and with words.
TEMPLATES: tuple[dict[str, str], ...] = (
    {
        "intro": "Invasive breast carcinoma.",
        "grade": "Histological grade: {g}.",
        "size_num": "Tumour size {s} cm.",
        "size_word": "Tumour size: {w}.",
        "nodes": "Lymph nodes: {n}.",
    },
    {
        "intro": "Pathology report of a primary breast tumour.",
        "grade": "The lesion is {g}.",
        "size_num": "It measures {s} cm in greatest dimension.",
        "size_word": "The lesion is of {w} size.",
        "nodes": "Axillary dissection shows {n}.",
    },
    {
        "intro": "Excision specimen with invasive ductal carcinoma.",
        "grade": "Differentiation: {g}.",
        "size_num": "Maximum diameter {s} cm.",
        "size_word": "Size category: {w}.",
        "nodes": "Nodal status: {n}.",
    },
    {
        "intro": "Breast resection, malignant.",
        "grade": "Tumour cells appear {g}.",
        "size_num": "The measured extent is {s} cm.",
        "size_word": "Overall the tumour is {w} in size.",
        "nodes": "Regional nodes: {n}.",
    },
)


@dataclass
class Benchmark:
    """One benchmark before writing: manifest rows, modality layout and extra files."""

    name: str
    case_ids: list[str]
    modalities: dict[str, str]
    modality_columns: dict[str, list[str]]  # modality -> manifest columns emptied when it is missing
    columns: dict[str, str]  # inline-column modalities for prime.yaml
    endpoints: dict[str, tuple[str, str]]
    table: dict[str, list[str]]  # manifest column -> cells (strings), without fold
    age: np.ndarray
    matrices: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    readme: list[str] = field(default_factory=list)


def _import_sources() -> tuple[Any, Any]:
    """The dataset modules of scikit-survival and lifelines, or UsageError when missing."""
    try:
        import lifelines.datasets as ll_data
        import sksurv.datasets as sk_data
    except ImportError:
        raise UsageError(
            "the prime benchmark needs scikit-survival and lifelines", "pip install 'affectkit[survival]'"
        ) from None
    return sk_data, ll_data


def _num(v: float) -> str:
    """A number as text: integers without a decimal point, other floats in shortest round-trip form."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def size_word(cm: float) -> str:
    """Tumour size in words: small (<= 2 cm), intermediate (<= 5 cm) or large."""
    return "small" if cm <= 2.0 else "intermediate" if cm <= 5.0 else "large"


def nodes_words(k: int) -> str:
    """Number of involved lymph nodes in words."""
    if k <= 0:
        return "no involved nodes"
    if k >= 10:
        return "extensive nodal involvement (>= 10)"
    return "1 positive lymph node" if k == 1 else f"{k} positive lymph nodes"


def render_reports(fields: Sequence[dict[str, Any]], rng: np.random.Generator) -> list[str]:
    """One report per patient from its fields (``grade`` words or None, ``size_cm``, optional
    ``nodes`` count): seeded template, number-or-word size, ~20 % omit one of the present fields."""
    n = len(fields)
    template = rng.integers(len(TEMPLATES), size=n)
    numeric = rng.random(n) < 0.5
    omit = rng.random(n) < OMIT_FIELD_RATE
    pick = rng.random(n)
    out = []
    for i, f in enumerate(fields):
        t = TEMPLATES[int(template[i])]
        parts: list[tuple[str, str]] = []
        if f.get("grade"):
            parts.append(("grade", t["grade"].format(g=f["grade"])))
        if numeric[i]:
            parts.append(("size", t["size_num"].format(s=f"{f['size_cm']:.1f}")))
        else:
            parts.append(("size", t["size_word"].format(w=size_word(f["size_cm"]))))
        if f.get("nodes") is not None:
            parts.append(("nodes", t["nodes"].format(n=nodes_words(int(f["nodes"])))))
        if omit[i] and len(parts) > 1:
            del parts[int(pick[i] * len(parts))]
        out.append(" ".join([t["intro"]] + [p for _, p in parts]))
    return out


def _rng(seed: int, tag: str) -> np.random.Generator:
    """Independent stream per (seed, purpose)."""
    return np.random.default_rng([int(seed), zlib.crc32(tag.encode("utf-8"))])


def build_bc(seed: int) -> Benchmark:
    """The breast-cancer (GSE7390) benchmark from scikit-survival."""
    sk_data, _ = _import_sources()
    X, y = sk_data.load_breast_cancer()
    n = len(X)
    ids = [f"BC-{i + 1:04d}" for i in range(n)]
    gene_cols = [c for c in X.columns if c not in ("age", "er", "grade", "size")]
    probe_ids = [c[1:] if c.startswith("X") and c[1:2].isdigit() else c for c in gene_cols]
    expr = X[gene_cols].to_numpy(dtype=float)
    lines = ["\t".join(["gene", *ids])]
    lines += ["\t".join([pid] + [repr(float(v)) for v in expr[:, j]]) for j, pid in enumerate(probe_ids)]
    fields = [
        {"grade": GRADE_WORDS_BC.get(str(g)), "size_cm": float(s)}
        for g, s in zip(X["grade"].astype(str), X["size"], strict=True)
    ]
    reports = render_reports(fields, _rng(seed, "bc-report"))
    as_file = np.zeros(n, dtype=bool)
    as_file[_rng(seed, "bc-report-file").permutation(n)[: n // 2]] = True
    files = {"expression.tsv": "\n".join(lines) + "\n"}
    report_cells = []
    for i, text in enumerate(reports):
        if as_file[i]:
            files[f"reports/{ids[i]}.txt"] = text + "\n"
            report_cells.append(f"reports/{ids[i]}.txt")
        else:
            report_cells.append(text)
    table = {
        "case_id": ids,
        "genes": ids,
        "age": [_num(a) for a in X["age"]],
        "er": [str(e) for e in X["er"].astype(str)],
        "report": report_cells,
        "dm_time": [_num(t) for t in y["t.tdm"]],
        "dm_event": [str(int(e)) for e in y["e.tdm"]],
    }
    return Benchmark(
        name="bc",
        case_ids=ids,
        modalities={"genes": "vector", "clinical": "vector", "report": "text"},
        modality_columns={"genes": ["genes"], "clinical": ["age", "er"], "report": ["report"]},
        columns={"clinical": "age,er"},
        endpoints={"dm": ("dm_time", "dm_event")},
        table=table,
        age=X["age"].to_numpy(dtype=float),
        matrices={"genes": "expression.tsv"},
        files=files,
        readme=[
            "prime embedded benchmark 'bc': 198 breast-cancer patients, endpoint dm = distant metastasis (days).",
            "Source: scikit-survival's bundled load_breast_cancer() (GEO GSE7390, TRANSBIG), read at build time.",
            "Modalities: genes (76 probe sets in expression.tsv), clinical (age, er), report (size, grade).",
            "manifest.csv is complete; manifest_<pattern>.csv empty the cells of missing modalities.",
            "Folds: 5-fold stratified on dm_event; prime.yaml holds the data keys (--data this folder).",
        ],
    )


def build_gbsg(seed: int) -> Benchmark:
    """The GBSG node-positive breast-cancer benchmark from lifelines."""
    _, ll_data = _import_sources()
    df = ll_data.load_lymph_node().reset_index(drop=True)
    n = len(df)
    ids = [f"GBSG-{i + 1:04d}" for i in range(n)]
    fields = [
        {"grade": GRADE_WORDS_GBSG.get(int(g)), "size_cm": float(s) / 10.0, "nodes": int(k)}
        for g, s, k in zip(df["grade"], df["size"], df["nodes"], strict=True)
    ]
    table = {
        "case_id": ids,
        "age": [_num(a) for a in df["age"]],
        "menopause": [MENOPAUSE_WORDS[int(v)] for v in df["menopause"]],
        "hormone": [HORMONE_WORDS[int(v)] for v in df["hormone"]],
        "nodes": [_num(v) for v in df["nodes"]],
        "prog_recp": [_num(v) for v in df["prog_recp"]],
        "estrg_recp": [_num(v) for v in df["estrg_recp"]],
        "report": render_reports(fields, _rng(seed, "gbsg-report")),
        "os_time": [_num(v) for v in df["survtime"]],
        "os_event": [str(int(v)) for v in df["censdead"]],
        "rfs_time": [_num(v) for v in df["rectime"]],
        "rfs_event": [str(int(v)) for v in df["censrec"]],
    }
    return Benchmark(
        name="gbsg",
        case_ids=ids,
        modalities={"clinical": "vector", "labs": "vector", "report": "text"},
        modality_columns={
            "clinical": ["age", "menopause", "hormone"],
            "labs": ["nodes", "prog_recp", "estrg_recp"],
            "report": ["report"],
        },
        columns={"clinical": "age,menopause,hormone", "labs": "nodes,prog_recp,estrg_recp"},
        endpoints={"os": ("os_time", "os_event"), "rfs": ("rfs_time", "rfs_event")},
        table=table,
        age=df["age"].to_numpy(dtype=float),
        readme=[
            "prime embedded benchmark 'gbsg': 686 node-positive breast-cancer patients, endpoints os and rfs (days).",
            "Source: lifelines' bundled load_lymph_node() (German Breast Cancer Study Group trial 1984-89).",
            "Modalities: clinical (age, menopause, hormone), labs (nodes, prog_recp, estrg_recp), report.",
            "manifest.csv is complete; manifest_<pattern>.csv empty the cells of missing modalities.",
            "Folds: 5-fold stratified on os_event; prime.yaml holds the data keys (--data this folder).",
        ],
    )


def stratified_folds(event: Sequence[int], seed: int, k: int = N_FOLDS) -> np.ndarray:
    """Fold index per patient: sklearn StratifiedKFold(k, shuffle=True, random_state=seed)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(event, dtype=int)
    folds = np.full(y.size, -1, dtype=int)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(seed))
    for f, (_, test) in enumerate(splitter.split(np.zeros((y.size, 1)), y)):
        folds[test] = f
    return folds


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    """CSV with '\\n' line ends and minimal quoting."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def manifest_text(bench: Benchmark, folds: np.ndarray, mask: np.ndarray) -> str:
    """The manifest with the cells of missing modalities (mask False) emptied."""
    cols = list(bench.table)
    header = [cols[0], "fold", *cols[1:]]
    empty_cols = [set() for _ in bench.case_ids]
    for m, name in enumerate(bench.modalities):
        for i in np.flatnonzero(~mask[:, m]):
            empty_cols[i].update(bench.modality_columns[name])
    rows = []
    for i in range(len(bench.case_ids)):
        cells = ["" if c in empty_cols[i] else bench.table[c][i] for c in cols]
        rows.append([cells[0], str(int(folds[i])), *cells[1:]])
    return _csv_text(header, rows)


def yaml_text(bench: Benchmark) -> str:
    """prime.yaml with the data keys (JSON-quoted strings are valid YAML scalars)."""
    q = json.dumps

    def mapping(d: dict[str, str]) -> str:
        return "{" + ", ".join(f"{k}: {q(v)}" for k, v in d.items()) + "}"

    lines = ["data:", f"  manifest: {q('manifest.csv')}", f"  modalities: {mapping(bench.modalities)}"]
    if bench.matrices:
        lines.append(f"  matrices: {mapping(bench.matrices)}")
    lines.append(f"  columns: {mapping(bench.columns)}")
    lines.append(f"  endpoints: {mapping({k: ','.join(v) for k, v in bench.endpoints.items()})}")
    return "\n".join(lines) + "\n"


def _remove_stale_reports(folder: Path, keep: set[str]) -> None:
    """Delete report files an earlier build (other seed) left that this build does not write."""
    rdir = folder / "reports"
    if rdir.is_dir():
        for p in rdir.glob("*.txt"):
            if f"reports/{p.name}" not in keep:
                p.unlink()


def write_benchmark(bench: Benchmark, folder: Path, seed: int) -> dict[str, Any]:
    """Write one benchmark folder atomically file by file; return its known truth."""
    first_event = bench.endpoints[next(iter(bench.endpoints))][1]
    folds = stratified_folds([int(e) for e in bench.table[first_event]], seed)
    M = len(bench.modalities)
    names = list(bench.modalities)
    rates: dict[str, dict[str, float]] = {}
    for pattern in missingness.PATTERNS:
        mask = missingness.pattern_mask(pattern, bench.case_ids, M, seed, covariate=bench.age, which=0)
        fname = "manifest.csv" if pattern == "complete" else f"manifest_{pattern}.csv"
        atomic_write_text(folder / fname, manifest_text(bench, folds, mask))
        rates[pattern] = {
            nm: round(float(r), 6) for nm, r in zip(names, missingness.realised_rate(mask), strict=True)
        }
    for rel, text in sorted(bench.files.items()):
        atomic_write_text(folder / rel, text)
    _remove_stale_reports(folder, set(bench.files))
    atomic_write_text(folder / "prime.yaml", yaml_text(bench))
    atomic_write_text(folder / "README.txt", "\n".join(bench.readme) + "\n")
    return {
        "n": len(bench.case_ids),
        "events": {ep: int(sum(int(e) for e in bench.table[ev])) for ep, (_, ev) in bench.endpoints.items()},
        "modalities": dict(bench.modalities),
        "fold_sizes": np.bincount(folds, minlength=N_FOLDS).tolist(),
        "missing_rates": rates,
    }


def make(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    """Build GBSG in ``out`` itself (the dataset ``train prime`` uses without ``--data``) and BC in
    ``out/bc``. ``quick`` changes nothing (both data sets are small) and is recorded only. Returns per benchmark its folder, counts, events and realised missing rates, and
    ``known_truth`` (the same facts without paths)."""
    out = Path(out)
    _import_sources()
    benchmarks: dict[str, Any] = {}
    truth: dict[str, Any] = {}
    for build in (build_bc, build_gbsg):
        bench = build(seed)
        folder = out if bench.name == "gbsg" else out / bench.name
        facts = write_benchmark(bench, folder, seed)
        truth[bench.name] = facts
        benchmarks[bench.name] = {"root": str(folder), **facts}
    return {"seed": int(seed), "quick": bool(quick), "benchmarks": benchmarks, "known_truth": truth}
