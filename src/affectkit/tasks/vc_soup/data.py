"""Preference data as released, and the training directories ``train``/``evaluate`` read.

Readers (JSONL, parquet, HF dataset directories, stdin) and importers from HH-RLHF, PKU-SafeRLHF,
UltraFeedback (fine-grained), HelpSteer2 and summarize_from_feedback to the canonical record

    {"id", "prompt", "chosen", "rejected", "value"}

Rows are plain dicts in file order, so the output of ``filter-prefs`` is deterministic. A training
directory (the embedded benchmark's layout) holds one ``{value}_train.jsonl`` per value, and
optionally ``sft.jsonl``, ``eval_prompts.jsonl`` and ``truth.json``; it may sit in one
sub-directory per setting.
"""
from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError

FORMATS = ("auto", "canonical", "hh-rlhf", "pku-saferlhf", "ultrafeedback", "helpsteer2", "summarize-feedback")
ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
HH_ASSISTANT = "\n\nAssistant:"


# ---- readers ----------------------------------------------------------------------------------


def _jsonl_lines(fh: io.TextIOBase, where: str) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(where, f"line {lineno}: invalid JSON ({exc.msg})", "each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(where, f"line {lineno}: expected a JSON object, found {type(obj).__name__}")
        yield obj


def _read_json_file(p: Path) -> list[dict[str, Any]]:
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            head = fh.read(1)
            while head and head.isspace():
                head = fh.read(1)
            fh.seek(0)
            if head == "[":
                try:
                    rows = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise DataError(p, f"invalid JSON ({exc.msg})") from None
                if not all(isinstance(r, dict) for r in rows):
                    raise DataError(p, "expected a JSON array of objects")
                return rows
            return list(_jsonl_lines(fh, str(p)))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(p, f"cannot read ({exc.__class__.__name__}: {exc})") from None


def _read_parquet(p: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("reading parquet needs pyarrow", "pip install pyarrow") from None
    try:
        return pq.read_table(p).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(p, f"cannot read parquet ({exc.__class__.__name__}: {exc})") from None


def _data_files(d: Path, split: str | None) -> list[Path]:
    exts = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")
    files = sorted(f for f in d.rglob("*") if f.is_file() and f.name.endswith(exts) and not f.name.startswith("."))
    files = [f for f in files if f.name not in ("dataset_info.json", "state.json", "dataset_dict.json")]
    if split:
        chosen = [f for f in files if split in f.relative_to(d).parts or f.name.startswith(split)]
        if chosen:
            files = chosen
    return files


def read_rows(source: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL/JSON(.gz) file, a parquet file, an HF dataset directory, or ``-`` (stdin)."""
    import gc

    was = gc.isenabled()
    gc.disable()  # millions of new dicts: no full collections while reading (no cycles here)
    try:
        return _read_rows(source, split)
    finally:
        if was:
            gc.enable()


def _read_rows(source: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    if str(source) == "-":
        return list(_jsonl_lines(sys.stdin, "<stdin>"))
    p = Path(source)
    if not p.exists():
        raise DataError(p, "input not found")
    if p.is_dir():
        if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            from datasets import DatasetDict, load_from_disk

            try:
                ds = load_from_disk(str(p))
            except Exception as exc:  # datasets raises several types for a damaged directory
                raise DataError(p, f"cannot read the Hugging Face dataset directory ({exc.__class__.__name__}: {exc})",
                                "save it with Dataset.save_to_disk, or pass a JSONL/parquet file") from None
            if isinstance(ds, DatasetDict):
                name = split or ("train" if "train" in ds else next(iter(ds)))
                if name not in ds:
                    raise UsageError(f"{p}: no split {name!r}", f"splits: {', '.join(ds)}")
                ds = ds[name]
            return ds.to_list()
        files = _data_files(p, split)
        if not files:
            raise DataError(p, "no .jsonl, .json, .json.gz or .parquet files in the directory")
        rows: list[dict[str, Any]] = []
        for f in files:
            rows.extend(_read_parquet(f) if f.suffix == ".parquet" else _read_json_file(f))
        return rows
    if p.suffix == ".parquet":
        return _read_parquet(p)
    return _read_json_file(p)


# ---- training directories ------------------------------------------------------------------------


def setting_dir(data_dir: Path, cfg: Any) -> Path:
    """``data_dir`` itself, or its ``cfg.setting`` sub-directory when it holds several settings."""
    d = Path(data_dir)
    if not (d / f"{cfg.values[0]}_train.jsonl").is_file() and (d / cfg.setting).is_dir():
        return d / cfg.setting
    return d


def load_setting(data_dir: Path, values: list[str]) -> dict[str, Any]:
    """The pairs of each value, the SFT examples, the held-out prompts and the ground truth of a
    training directory (the last three empty when absent)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(d, "data directory not found", "make one with `affectkit data make vc-soup --out DIR`")
    rows = {}
    for v in values:
        f = d / f"{v}_train.jsonl"
        if not f.is_file():
            raise DataError(f, f"no training pairs for value {v!r}", f"expected {v}_train.jsonl (canonical prompt/chosen/rejected JSONL)")
        rows[v] = read_rows(f)
        if not rows[v]:
            raise DataError(f, "no preference pairs (the file is empty)")
        to_canonical(rows[v], "canonical", (v,))  # id, value and prompt where missing
    sft = read_rows(d / "sft.jsonl") if (d / "sft.jsonl").is_file() else []
    _check_fields(sft, d / "sft.jsonl", ("prompt", "response"))
    evals = read_rows(d / "eval_prompts.jsonl") if (d / "eval_prompts.jsonl").is_file() else []
    check_evals(evals, d / "eval_prompts.jsonl", values)
    truth = _read_truth(d / "truth.json") if (d / "truth.json").is_file() else {}
    return {"rows": rows, "sft": sft, "evals": evals, "truth": truth, "dir": d}


def _check_fields(rows: list[dict[str, Any]], path: Path, keys: tuple[str, ...]) -> None:
    for i, r in enumerate(rows):
        for k in keys:
            if not isinstance(r.get(k), str):
                raise DataError(path, f"row {i + 1}: {k!r} must be a string, got {r.get(k)!r}", f"each row needs {', '.join(keys)}")


def check_evals(evals: list[dict[str, Any]], path: Path, values: list[str]) -> None:
    """Held-out prompts: a prompt, its candidate responses and one reward per candidate and value."""
    hint = 'each row: {"prompt": str, "candidates": [str, ...], "rewards": {VALUE: [number per candidate]}}'
    for i, e in enumerate(evals):
        cands, rewards = e.get("candidates"), e.get("rewards")
        if not isinstance(e.get("prompt"), str) or not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
            raise DataError(path, f"row {i + 1}: needs a prompt string and a non-empty list of candidate strings", hint)
        if not isinstance(rewards, dict):
            raise DataError(path, f"row {i + 1}: 'rewards' must be a mapping of value to rewards", hint)
        for v in values:
            r = rewards.get(v)
            if not isinstance(r, list) or len(r) != len(cands) or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf") for x in r):
                raise DataError(path, f"row {i + 1}: rewards[{v!r}] must hold {len(cands)} finite numbers, one per candidate", hint)


def _read_truth(path: Path) -> dict[str, Any]:
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc.__class__.__name__})") from None
    if not isinstance(truth, dict):
        raise DataError(path, "expected a JSON object")
    return truth


# ---- importers ---------------------------------------------------------------------------------


def detect_format(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "canonical"
    keys = set().union(*(r.keys() for r in rows[:50]))
    if {"response_0", "response_1"} <= keys and ("better_response_id" in keys or "safer_response_id" in keys):
        return "pku-saferlhf"
    if {"summaries", "choice"} <= keys and "info" in keys:
        return "summarize-feedback"
    if "completions" in keys and ("instruction" in keys or "prompt" in keys):
        return "ultrafeedback"
    if {"prompt", "response"} <= keys and keys & set(HELPSTEER2_ATTRIBUTES):
        return "helpsteer2"
    if {"chosen", "rejected"} <= keys and "prompt" not in keys:
        sample = next((r.get("chosen") for r in rows if isinstance(r.get("chosen"), str)), "")
        if HH_ASSISTANT in sample:
            return "hh-rlhf"
    return "canonical"


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF transcripts -> (prompt, chosen response, rejected response).

    The prompt is the longest common prefix that ends at an ``\\n\\nAssistant:`` marker; the
    responses are the remainders (leading whitespace stripped).
    """
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    common = chosen[:n]
    cut = common.rfind(HH_ASSISTANT)
    if cut < 0:
        cut = chosen.rfind(HH_ASSISTANT)
        if cut < 0:
            return "", chosen, rejected
        cut_end = cut + len(HH_ASSISTANT)
        return chosen[:cut_end], chosen[cut_end:].lstrip(), rejected[cut_end:].lstrip() if rejected.startswith(chosen[:cut_end]) else rejected
    end = cut + len(HH_ASSISTANT)
    return chosen[:end], chosen[end:].lstrip(), rejected[end:].lstrip()


def _import_hh(rows: list[dict[str, Any]], value: str) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(rows):
        c, rj = r.get("chosen"), r.get("rejected")
        if isinstance(c, str) and isinstance(rj, str):
            prompt, c, rj = split_hh(c, rj)
        else:
            prompt = None
        rec = {"id": r.get("id", f"{value}-{i}"), "prompt": prompt, "chosen": c, "rejected": rj, "value": value}
        out.append(rec)
    return out


def _import_pku(rows: list[dict[str, Any]], values: tuple[str, ...]) -> list[dict[str, Any]]:
    """PKU-SafeRLHF: one row gives a helpful pair (better_response_id) and a harmless pair (safer_response_id)."""
    out = []
    fields = {"helpful": "better_response_id", "harmless": "safer_response_id"}
    for value in values:
        if value not in fields:
            raise UsageError(f"PKU-SafeRLHF has values helpful and harmless, not {value!r}", "pass --values helpful,harmless")
    for value in values:
        col = fields[value]
        for i, r in enumerate(rows):
            best = r.get(col)
            extra = {k: v for k, v in r.items() if k not in ("prompt", "response_0", "response_1")}
            if best not in (0, 1, "0", "1"):
                chosen = rejected = None
            else:
                b = int(best)
                chosen, rejected = r.get(f"response_{b}"), r.get(f"response_{1 - b}")
            out.append({"id": f"{value}-{i}", "prompt": r.get("prompt"), "chosen": chosen, "rejected": rejected, "value": value, **extra})
    return out


def _rating(x: Any) -> float | None:
    if isinstance(x, dict):
        x = x.get("Rating", x.get("rating"))
    try:
        return float(x)
    except (TypeError, ValueError):
        return None  # "N/A" and missing ratings


def _import_ultrafeedback(rows: list[dict[str, Any]], values: tuple[str, ...], min_margin: float = 1.0) -> list[dict[str, Any]]:
    """UltraFeedback fine-grained: per aspect, the best- vs worst-rated completion when they differ by >= margin."""
    for v in values:
        if v not in ULTRAFEEDBACK_ASPECTS:
            raise UsageError(f"UltraFeedback aspects are {', '.join(ULTRAFEEDBACK_ASPECTS)}, not {v!r}")
    out = []
    for value in values:
        for i, r in enumerate(rows):
            comps = r.get("completions") or []
            scored = []
            for j, c in enumerate(comps):
                if not isinstance(c, dict):
                    continue
                s = _rating((c.get("annotations") or {}).get(value))
                if s is not None and isinstance(c.get("response"), str):
                    scored.append((s, j, c["response"], c))
            if len(scored) < 2:
                continue
            best = max(scored, key=lambda t: (t[0], -t[1]))
            worst = min(scored, key=lambda t: (t[0], t[1]))
            if best[0] - worst[0] < min_margin:
                continue
            out.append({
                "id": f"{value}-{i}",
                "prompt": r.get("instruction", r.get("prompt")),
                "chosen": best[2],
                "rejected": worst[2],
                "value": value,
                "source": r.get("source"),
                "rewards_chosen": {a: _rating((best[3].get("annotations") or {}).get(a)) for a in ULTRAFEEDBACK_ASPECTS},
                "rewards_rejected": {a: _rating((worst[3].get("annotations") or {}).get(a)) for a in ULTRAFEEDBACK_ASPECTS},
            })
    return out


def _import_helpsteer2(rows: list[dict[str, Any]], values: tuple[str, ...], min_margin: float = 1.0) -> list[dict[str, Any]]:
    """HelpSteer2: consecutive responses to the same prompt, paired per attribute by score difference."""
    for v in values:
        if v not in HELPSTEER2_ATTRIBUTES:
            raise UsageError(f"HelpSteer2 attributes are {', '.join(HELPSTEER2_ATTRIBUTES)}, not {v!r}")
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for r in rows:
        if groups and groups[-1][0] == r.get("prompt"):
            groups[-1][1].append(r)
        else:
            groups.append((r.get("prompt"), [r]))
    out = []
    for value in values:
        for gi, (prompt, group) in enumerate(groups):
            scored = [(_rating(r.get(value)), j, r.get("response"), r) for j, r in enumerate(group)]
            scored = [t for t in scored if t[0] is not None and isinstance(t[2], str)]
            for a in range(len(scored)):
                for b in range(a + 1, len(scored)):
                    sa, sb = scored[a], scored[b]
                    if abs(sa[0] - sb[0]) < min_margin:
                        continue
                    hi, lo = (sa, sb) if sa[0] > sb[0] else (sb, sa)
                    out.append({
                        "id": f"{value}-{gi}-{a}-{b}",
                        "prompt": prompt,
                        "chosen": hi[2],
                        "rejected": lo[2],
                        "value": value,
                        "rewards_chosen": {a: _rating(hi[3].get(a)) for a in HELPSTEER2_ATTRIBUTES},
                        "rewards_rejected": {a: _rating(lo[3].get(a)) for a in HELPSTEER2_ATTRIBUTES},
                    })
    return out


def _import_summarize(rows: list[dict[str, Any]], value: str) -> list[dict[str, Any]]:
    """openai/summarize_from_feedback comparisons: the post is the prompt (TL;DR format), the chosen
    summary is ``summaries[choice]``."""
    out = []
    for i, r in enumerate(rows):
        info = r.get("info") or {}
        sums = r.get("summaries") or []
        choice = r.get("choice")
        prompt = f"SUBREDDIT: r/{info.get('subreddit', '')}\nTITLE: {info.get('title', '')}\nPOST: {info.get('post', '')}\nTL;DR:"
        chosen = rejected = None
        if choice in (0, 1) and len(sums) == 2 and all(isinstance(x, dict) for x in sums):
            chosen, rejected = sums[choice].get("text"), sums[1 - choice].get("text")
            chosen = chosen.strip() if isinstance(chosen, str) else None
            rejected = rejected.strip() if isinstance(rejected, str) else None
        out.append({"id": r.get("id", f"{value}-{i}"), "prompt": prompt, "chosen": chosen, "rejected": rejected, "value": value,
                    "worker": r.get("worker"), "batch": r.get("batch"), "split": r.get("split")})
    return out


def to_canonical(rows: list[dict[str, Any]], fmt: str = "auto", values: tuple[str, ...] = (), default_value: str | None = None, min_margin: float = 1.0) -> tuple[list[dict[str, Any]], str]:
    """Rows in the canonical record; returns (rows, detected format). Canonical rows are completed in
    place (``id``, ``value`` and ``prompt`` added where missing)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown input format {fmt!r}", "formats: " + ", ".join(FORMATS))
    if fmt == "auto":
        fmt = detect_format(rows)
    tag = default_value or (values[0] if values else "default")
    if fmt == "canonical":
        # in place: these rows were just read, and filter-prefs copies each row it writes
        for i, r in enumerate(rows):
            if "id" not in r:
                r["id"] = f"{r.get('value', tag)}-{i}"
            if "value" not in r:
                r["value"] = tag
            if "prompt" not in r:
                r["prompt"] = ""
        return rows, fmt
    if fmt == "hh-rlhf":
        return _import_hh(rows, tag), fmt
    if fmt == "summarize-feedback":
        return _import_summarize(rows, tag), fmt
    if fmt == "pku-saferlhf":
        return _import_pku(rows, values or ("helpful", "harmless")), fmt
    if fmt == "ultrafeedback":
        return _import_ultrafeedback(rows, values or ULTRAFEEDBACK_ASPECTS, min_margin), fmt
    return _import_helpsteer2(rows, values or ("helpfulness", "correctness"), min_margin), fmt


# ---- writer -----------------------------------------------------------------------------------


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return str(o)


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_default)


def dumps_row(row: dict[str, Any]) -> str:
    """One JSONL line; key order kept and floats written by repr, so output is byte-stable."""
    return _ENCODER.encode(row)
