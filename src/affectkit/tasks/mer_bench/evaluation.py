"""`affectkit evaluate mer-bench`: a judge-memes run in, Table-2/3-style tables out.

Reads ``plan.json`` and ``judgments.jsonl`` of a run, scores them (``metrics.score_plan``, the
formulas in ``method``) and writes ``eval/table_2.{csv,md}`` (model view) or ``eval/table_3.{csv,md}``
(factor view), ``eval/nonllm.csv`` (the non-LLM metrics, when the benchmark images are found) and
``eval/scores.json`` (summaries and per-run scores).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError
from affectkit.core.report import markdown_table
from affectkit.core.runs import atomic_write_json, atomic_write_text
from affectkit.tasks.mer_bench.method import COLUMNS
from affectkit.tasks.mer_bench.metrics import nonllm_rows, score_plan, table_rows

PLAN_FIELDS: tuple[str, ...] = ("view", "runs", "sample", "seed", "systems", "strata")


def load_judgments(judgments_dir: str | Path) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    d = Path(judgments_dir)
    plan_path, jpath = d / "plan.json", d / "judgments.jsonl"
    if not jpath.is_file():
        raise DataError(d, "no judgments.jsonl here", "pass the --out directory of `affectkit judge-memes`")
    if not plan_path.is_file():
        raise DataError(d, "no plan.json here", "pass the --out directory of `affectkit judge-memes`")
    try:
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(plan_path, f"invalid JSON ({getattr(exc, 'msg', exc)})") from None
    missing = [k for k in PLAN_FIELDS if not isinstance(plan, dict) or k not in plan]
    if missing:
        raise DataError(plan_path, f"not a judge-memes plan (missing {', '.join(missing)})",
                        "pass the --out directory of `affectkit judge-memes`")
    if plan["view"] not in ("model", "factor") or not isinstance(plan["strata"], list) or not all(
            isinstance(st, dict) and isinstance(st.get("name"), str) and isinstance(st.get("runs"), list)
            for st in plan["strata"]):
        raise DataError(plan_path, "not a judge-memes plan (view must be model or factor, strata a list of "
                        "{name, runs})", "pass the --out directory of `affectkit judge-memes`")
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for ln, raw in enumerate(jpath.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise DataError(jpath, f"line {ln}: invalid JSON", "a killed run leaves a cut line: rerun judge-memes with --resume") from None
        if not isinstance(rec, dict):
            raise DataError(jpath, f"line {ln}: expected a judgment record (an object), got {type(rec).__name__}")
        for field in ("id", "system", "status", "tgt_emo"):
            if field not in rec:
                raise DataError(jpath, f"line {ln}: missing field {field!r}")
        records[(rec["id"], rec["system"])] = rec
    return plan, records


def write_csv(path: Path, scored: dict[str, Any]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["group", "stratum"] + [f"{c}_{x}" for c in COLUMNS for x in ("mean", "std")] + ["n_ok", "n_total"]
    w.writerow(head)
    for sname, st in scored["strata"].items():
        for g, summ in st["groups"].items():
            line: list[Any] = [g, sname]
            for c in COLUMNS:
                s = summ.get(c, {"mean": float("nan"), "std": float("nan")})
                line += [f"{100 * s['mean']:.4f}", f"{100 * s['std']:.4f}"]
            line += [summ["coverage"]["n_ok"], summ["coverage"]["n_total"]]
            w.writerow(line)
    atomic_write_text(path, buf.getvalue())


def nonllm_table(judgments_dir: Path, records: dict[tuple[str, str], dict[str, Any]], bench: str | Path | None,
                 use_ocr: bool = False) -> list[dict[str, Any]]:
    """Mean non-LLM metrics per system over the judged pairs (needs the benchmark images)."""
    from affectkit.core.output import get_output
    from affectkit.tasks.mer_bench.data import UnsafePath, load_bench
    from affectkit.tasks.mer_bench.metrics import pair_metrics

    if bench is None:
        meta_path = judgments_dir / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(meta_path, f"invalid JSON ({getattr(exc, 'msg', exc)})",
                            "pass the benchmark with --data DIR, or --set evaluate.nonllm=false") from None
        bench = meta.get("bench") if isinstance(meta, dict) else None
        if not isinstance(bench, str) or not bench or not Path(bench).is_dir():
            return []
    systems = sorted({s for _, s in records})
    try:
        b = load_bench(bench, systems)
    except UnsafePath:
        raise
    except (DataError, UsageError) as exc:  # the images moved: the judge scores still stand
        get_output().warn(f"non-LLM metrics skipped: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
        return []
    by_id = b.by_id()
    pairs = []
    for (rid, s) in sorted(records):
        row = by_id.get(rid)
        if row is None:
            continue
        pairs.append((s, pair_metrics(b.src_path(row), b.gen_path(s, row), row, b.captions[s].get(row["gen_id"]),
                                      use_ocr=use_ocr)))
    return nonllm_rows(pairs, systems)


def titled_table(rows: list[dict[str, Any]], title: str) -> str:
    """A Markdown section: ``### title`` over the table; cells are written with ``str`` (the rows are
    already formatted)."""
    return f"### {title}\n\n" + markdown_table([{k: str(v) for k, v in r.items()} for r in rows])


def evaluate_judgments(
    judgments_dir: str | Path,
    *,
    out: str | Path | None = None,
    compat: bool = False,
    alpha: float = 3.0,
    soft_floor: float = 1e-3,
    gm_floor: float = 1e-12,
    bench: str | Path | None = None,
    nonllm: bool = True,
    use_ocr: bool = False,
) -> dict[str, Any]:
    """Score a judge-memes run; write table_2/table_3 CSV+Markdown, nonllm.csv and scores.json into ``out``."""
    jdir = Path(judgments_dir)
    plan, records = load_judgments(jdir)
    scored = score_plan(plan, records, compat=compat, alpha=alpha, soft_floor=soft_floor, gm_floor=gm_floor)
    out_dir = Path(out) if out is not None else jdir / "eval"
    judges = sorted({r.get("judge", "?") for r in records.values()})
    rows = table_rows(scored)
    name = "table_2" if plan["view"] == "model" else "table_3"
    title = ("Table 2 style (model view)" if plan["view"] == "model" else "Table 3 style (factor view)") + \
        f", judge: {', '.join(judges)}, runs {plan['runs']}, sample {plan['sample']}, seed {plan['seed']}" + \
        (", mer-compat zero-fill" if compat else "")
    write_csv(out_dir / f"{name}.csv", scored)
    md = titled_table(rows, title)
    nl_rows: list[dict[str, Any]] = []
    if nonllm:
        nl_rows = nonllm_table(jdir, records, bench, use_ocr)
        if nl_rows:
            md += "\n" + titled_table(nl_rows, "Non-LLM metrics (mean per system over judged pairs)")
            buf = io.StringIO()
            cols = sorted({k for r in nl_rows for k in r}, key=lambda c: (c != "system", c))
            w = csv.DictWriter(buf, fieldnames=cols)
            w.writeheader()
            w.writerows(nl_rows)
            atomic_write_text(out_dir / "nonllm.csv", buf.getvalue())
    atomic_write_text(out_dir / f"{name}.md", md)
    result = {"judgments_dir": str(jdir), "out": str(out_dir), "judges": judges, "view": plan["view"],
              "table": rows, "nonllm": nl_rows, "scores": {k: {g: {c: v for c, v in s.items() if c != "per_run"}
                                                            for g, s in st["groups"].items()}
                                                        for k, st in scored["strata"].items()},
              "mer_compat": compat}
    atomic_write_json(out_dir / "scores.json", {**result, "per_run": {k: st["per_run"] for k, st in scored["strata"].items()}})
    return result
