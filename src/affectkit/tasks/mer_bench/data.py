"""MER-Bench on disk: the released index, the image tree, and the missing-file pruning report.

Released layout (``github.com/one-seven17/MER-Bench`` + the Hub image archive)::

    DIR/index_final.json                 JSON array (or JSONL) of 11-string-field objects
    DIR/Original/<id>                    source meme, e.g. Original/17.png
    DIR/EditedResults/<system>/<gen_id>  one folder per editing system

``DIR`` may also be the repository root holding ``data/``. affectkit extension: a system folder may
hold ``captions.jsonl`` (``{"gen_id", "caption"}`` per line) with the caption the system says it
wrote; the non-LLM caption metrics use it when present (OCR otherwise, when installed).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError

FIELDS: tuple[str, ...] = (
    "id", "gen_id", "det_emo", "tgt_emo", "img_desc", "text", "pos_txt", "spec",
    "visual_type", "sentiment_polarity", "layout_type",
)  # fmt: skip
FACTORS: tuple[str, ...] = ("visual_type", "sentiment_polarity", "layout_type")
INDEX_NAMES: tuple[str, ...] = ("index_final.json", "index_final.jsonl", "index.json", "index.jsonl", "index_filtered.json")
ORIGINAL = "Original"
EDITED = "EditedResults"
CAPTIONS_FILE = "captions.jsonl"


PATH_FIELDS: tuple[str, ...] = ("id", "gen_id")  # the fields that name a file under the benchmark root


class UnsafePath(DataError):
    """An index row names a file outside the benchmark root: never a warning, always an error."""


def _unsafe_name(value: str) -> str | None:
    """Why a file name from the index may not be used (None: it is a plain relative path)."""
    if "\x00" in value:
        return "holds a NUL byte"
    parts = re.split(r"[/\\]", value)
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[/\\]", value) or Path(value).is_absolute():
        return "is an absolute path"
    if ".." in parts:
        return "climbs out with '..'"
    return None


def _check_row(obj: Any, where: str, path: Path) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise DataError(path, f"{where}: expected an object, got {type(obj).__name__}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise DataError(path, f"{where}: missing field(s) {', '.join(missing)}",
                        f"every MER-Bench row has these fields: {', '.join(FIELDS)}")
    bad = [f for f in FIELDS if not isinstance(obj[f], str)]
    if bad:
        raise DataError(path, f"{where}: field(s) {', '.join(bad)} must be strings")
    if not obj["id"]:
        raise DataError(path, f"{where}: empty id")
    for f in PATH_FIELDS:
        why = _unsafe_name(obj[f])
        if why:
            raise UnsafePath(path, f"{where} (id {obj['id']!r}): {f} {obj[f]!r} {why}; refused before any file is read",
                            "ids and gen_ids name files under Original/ and EditedResults/<system>/ of the benchmark")
    return {f: obj[f] for f in FIELDS}


def read_index(path: str | Path) -> list[tuple[str, dict[str, str]]]:
    """The index rows with where each came from (``row N`` of a JSON array, ``line N`` of JSONL)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "index file not found", "pass --index PATH or a --bench DIR holding index_final.json")
    try:
        raw = p.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise DataError(p, "index is not UTF-8 text") from None
    rows: list[tuple[str, dict[str, str]]] = []
    if raw.startswith("["):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataError(p, f"invalid JSON array ({msg})") from None
        for i, obj in enumerate(data):
            rows.append((f"row {i}", _check_row(obj, f"row {i}", p)))
    else:
        for ln, line in enumerate(raw.splitlines(), start=1):
            s = line.strip()
            if not s:
                continue
            if s.endswith(","):
                s = s[:-1].rstrip()
            try:
                obj = json.loads(s)
            except (json.JSONDecodeError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise DataError(p, f"line {ln}: invalid JSON ({msg})", "the index must be a JSON array or JSONL") from None
            rows.append((f"line {ln}", _check_row(obj, f"line {ln}", p)))
    if not rows:
        raise DataError(p, "index holds no rows")
    seen: set[str] = set()
    for where, r in rows:
        if r["id"] in seen:
            raise DataError(p, f"{where}: duplicate id {r['id']!r}")
        seen.add(r["id"])
    return rows


def load_index(path: str | Path) -> list[dict[str, str]]:
    """Read the index: a JSON array, or JSONL (one object per line, a trailing comma tolerated)."""
    return [r for _, r in read_index(path)]


def confine(root: Path, index_path: Path, rows: list[tuple[str, dict[str, str]]], systems: list[str]) -> None:
    """Every file a row names must resolve (symlinks followed) inside the benchmark root; else a
    DataError naming the index and the row, raised before any file is read or sent."""
    top = root.resolve()
    for where, r in rows:
        named = [("id", r["id"], root / ORIGINAL / r["id"])]
        named += [("gen_id", r["gen_id"], root / EDITED / s / r["gen_id"]) for s in systems]
        for f, value, p in named:
            real = p.resolve()
            if real != top and top not in real.parents:
                raise UnsafePath(index_path, f"{where} (id {r['id']!r}): {f} {value!r} resolves to {real}, outside the "
                                f"benchmark root {top}; refused before any file is read",
                                "a symbolic link under the benchmark points out of it: copy the file in instead")


def check_image(path: Path) -> None:
    """A DataError naming ``path`` unless it is an image PIL can open and verify (checked before a
    judge sees it: nothing else is ever sent)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except UnidentifiedImageError:
        raise DataError(path, "not an image (PIL cannot identify its format)",
                        "every source and edited file must be a PNG, JPEG or another image PIL reads") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure means the same to the user: a broken file
        raise DataError(path, f"corrupt image ({type(exc).__name__}: {exc})", "replace the file or remove its row") from None


def find_root(bench: str | Path) -> Path:
    """The folder that holds ``Original/`` and ``EditedResults/`` (``DIR`` or ``DIR/data``)."""
    p = Path(bench)
    if not p.is_dir():
        raise DataError(p, "benchmark directory not found")
    for cand in (p, p / "data"):
        if (cand / ORIGINAL).is_dir():
            return cand
    raise DataError(p, f"no {ORIGINAL}/ folder here or under data/",
                    "expected the released layout: index_final.json, Original/<id>, EditedResults/<system>/<gen_id>")


def find_index(root: Path) -> Path:
    for name in INDEX_NAMES:
        for cand in (root / name, root.parent / name):
            if cand.is_file():
                return cand
    raise DataError(root, f"no index file ({', '.join(INDEX_NAMES)})", "pass --index PATH")


def list_systems(root: Path) -> list[str]:
    edited = root / EDITED
    if not edited.is_dir():
        return []
    return sorted(d.name for d in edited.iterdir() if d.is_dir() and not d.name.startswith("."))


@dataclass
class Bench:
    root: Path
    index_path: Path
    rows: list[dict[str, str]]
    systems: list[str]
    pruning: dict[str, Any] = field(default_factory=dict)
    captions: dict[str, dict[str, str]] = field(default_factory=dict)

    def src_path(self, row: dict[str, str]) -> Path:
        return self.root / ORIGINAL / row["id"]

    def gen_path(self, system: str, row: dict[str, str]) -> Path:
        return self.root / EDITED / system / row["gen_id"]

    def by_id(self) -> dict[str, dict[str, str]]:
        return {r["id"]: r for r in self.rows}


def prune_missing(
    rows: list[dict[str, str]], root: Path, systems: list[str], max_examples: int = 20
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Drop rows whose source or any system's edited image is missing; report what went and why."""
    kept: list[dict[str, str]] = []
    report: dict[str, Any] = {
        "total": len(rows),
        "missing_source": 0,
        "missing_source_examples": [],
        "missing_by_system": {s: 0 for s in systems},
        "missing_examples": {s: [] for s in systems},
    }
    for r in rows:
        src = root / ORIGINAL / r["id"]
        if not src.is_file():
            report["missing_source"] += 1
            if len(report["missing_source_examples"]) < max_examples:
                report["missing_source_examples"].append(str(src))
            continue
        missing = False
        for s in systems:
            gen = root / EDITED / s / r["gen_id"]
            if not gen.is_file():
                report["missing_by_system"][s] += 1
                if len(report["missing_examples"][s]) < max_examples:
                    report["missing_examples"][s].append(str(gen))
                missing = True
        if not missing:
            kept.append(r)
    report["kept"] = len(kept)
    report["dropped"] = len(rows) - len(kept)
    return kept, report


def filter_rows(rows: list[dict[str, str]], filters: dict[str, str | None]) -> list[dict[str, str]]:
    """Keep rows matching every given factor value (one value per factor, or none)."""
    for key, value in filters.items():
        if key not in FACTORS:
            raise UsageError(f"unknown filter {key!r}", f"filters: {', '.join(FACTORS)}")
        if value is None:
            continue
        known = sorted({r[key] for r in rows})
        if value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            raise UsageError(f"--{key.replace('_', '-')} {value!r} matches no row",
                             f"did you mean {close[0]!r}?" if close else f"values present: {', '.join(known)}")
    return [r for r in rows if all(v is None or r[k] == v for k, v in filters.items())]


def read_captions(root: Path, system: str) -> dict[str, str]:
    path = root / EDITED / system / CAPTIONS_FILE
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    for ln, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            out[str(obj["gen_id"])] = str(obj["caption"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(path, f"line {ln}: expected {{\"gen_id\": ..., \"caption\": ...}}") from None
    return out


def load_bench(
    bench: str | Path, systems: list[str] | None = None, index: str | Path | None = None
) -> Bench:
    """Read the index and the image tree, check the systems exist, prune rows with missing files."""
    root = find_root(bench)
    index_path = Path(index) if index is not None else find_index(root)
    indexed = read_index(index_path)
    rows = [r for _, r in indexed]
    available = list_systems(root)
    if not systems:
        systems = available
        if not systems:
            raise DataError(root / EDITED, "no system folders", "each editing system's outputs go to EditedResults/<system>/")
    for s in systems:
        if s not in available:
            close = difflib.get_close_matches(s, available, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"system {s!r} not found under {root / EDITED}",
                             f"{hint}available: {', '.join(available) or 'none'}")
    confine(root, index_path, indexed, list(systems))
    kept, report = prune_missing(rows, root, systems)
    if not kept:
        raise DataError(root, f"no row has a source image and an edited image for every system ({report['total']} rows checked)",
                        "check the file names: Original/<id> and EditedResults/<system>/<gen_id>")
    captions = {s: read_captions(root, s) for s in systems}
    return Bench(root=root, index_path=index_path, rows=kept, systems=list(systems), pruning=report, captions=captions)
