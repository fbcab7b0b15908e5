"""`affectkit evaluate mer-bench`: metrics from judgments, composite scores, Table-2/3-style tables.

Per judged sample (failure records are excluded): six Likert scores (value if an integer in 1..5),
layout consistency (1 if ``consistent is True``) and the target hit (1 if the judge's label equals
``tgt_emo``). By default an invalid field is *missing* (coverage is reported per metric); with
``mer_compat`` it becomes 0.0 as in the reference, and failure records that parsed and broke only
ranges/types are scored too (the reference only rejected the ``other_emotion`` rule).

Composites (per run on run-level means, then mean and sample std over runs), with u(x) =
clamp((x - 1) / 4, 0, 1) for Likert means and rates clamped to [0, 1]:
TA = H * HM(Ev, Et); CF = L * GM(Qv, Qt, Qo); SS = 1 - exp(-alpha * S);
Overall = soft-AND(TA, CF, SS) = (exp(mean(log(f + x))) - f) / (1 - f), clamped to [0, 1].
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.runs import atomic_write_json, atomic_write_text

# short name -> (block, field, kind)
METRICS: dict[str, tuple[str, str, str]] = {
    "VQS": ("visual_assessment", "generation_quality_1_5", "likert"),
    "VEAS": ("visual_assessment", "emotion_accuracy_1_5", "likert"),
    "TQS": ("text_assessment", "generation_quality_1_5", "likert"),
    "TEAS": ("text_assessment", "emotion_accuracy_1_5", "likert"),
    "LC": ("layout_consistency", "consistent", "rate"),
    "OGQS": ("overall_generation_quality", "overall_generation_quality_1_5", "likert"),
    "OEC": ("overall_emotion_classification", "label", "hit"),
    "PESM": ("perceived_emotion_shift", "magnitude_1_5", "likert"),
}
COMPOSITES: tuple[str, ...] = ("TA", "CF", "SS", "Overall")
COLUMNS: tuple[str, ...] = (*METRICS, *COMPOSITES)


def _get(obj: Any, block: str, name: str) -> Any:
    sub = obj.get(block) if isinstance(obj, dict) else None
    return sub.get(name) if isinstance(sub, dict) else None


def extract_metrics(judgment: dict[str, Any], tgt_emo: str, zero_fill: bool = False) -> dict[str, float | None]:
    """The eight per-sample metrics; an invalid Likert value is None (or 0.0 with ``zero_fill``)."""
    out: dict[str, float | None] = {}
    for short, (block, name, kind) in METRICS.items():
        v = _get(judgment, block, name)
        if kind == "likert":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= float(v) <= 5
            out[short] = float(v) if ok else (0.0 if zero_fill else None)
        elif kind == "rate":
            out[short] = 1.0 if v is True else 0.0
        else:
            out[short] = 1.0 if isinstance(v, str) and v == tgt_emo else 0.0
    return out


def unit_likert(x: float) -> float:
    return min(1.0, max(0.0, (x - 1.0) / 4.0))


def unit_rate(x: float) -> float:
    return min(1.0, max(0.0, x))


def harmonic(a: float, b: float) -> float:
    return 0.0 if a + b <= 1e-12 else 2 * a * b / (a + b)


def geometric(xs: list[float], floor: float = 1e-12) -> float:
    return float(math.exp(sum(math.log(max(x, floor)) for x in xs) / len(xs)))


def soft_and(xs: list[float], f: float = 1e-3) -> float:
    g = math.exp(sum(math.log(f + x) for x in xs) / len(xs))
    value = (g - f) / (1 - f)
    return 0.0 if abs(value) < 1e-12 else min(1.0, max(0.0, value))  # exp(log(f)) - f is rounding noise


def composites(unit: dict[str, float], alpha: float = 3.0, soft_floor: float = 1e-3, gm_floor: float = 1e-12) -> dict[str, float]:
    """TA, CF, SS, Overall from unitised run-level means (keys VQS..PESM as in METRICS), plus the plain product."""
    ta = unit["OEC"] * harmonic(unit["VEAS"], unit["TEAS"])
    cf = unit["LC"] * geometric([unit["VQS"], unit["TQS"], unit["OGQS"]], gm_floor)
    ss = 1.0 - math.exp(-alpha * unit["PESM"])
    return {"TA": ta, "CF": cf, "SS": ss, "Overall": soft_and([ta, cf, ss], soft_floor), "Overall_product": ta * cf * ss}


def unitise(means: dict[str, float]) -> dict[str, float]:
    return {k: (unit_likert(v) if METRICS[k][2] == "likert" else unit_rate(v)) for k, v in means.items()}


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, sample std (ddof 1; 0 for one run) and the reference's order-statistic 95 % interval."""
    xs = [v for v in values if not math.isnan(v)]
    if not xs:
        return {"mean": float("nan"), "std": float("nan"), "ci95": [float("nan"), float("nan")], "runs": 0}
    ys = sorted(xs)
    return {
        "mean": float(np.mean(xs)),
        "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
        "ci95": [ys[int(0.025 * (len(ys) - 1))], ys[int(0.975 * (len(ys) - 1))]],
        "runs": len(xs),
    }


def _run_scores(items: list[dict[str, float | None]], alpha: float, soft_floor: float, gm_floor: float) -> dict[str, float]:
    means = {k: _mean([x[k] for x in items if x[k] is not None]) for k in METRICS}
    if any(math.isnan(v) for v in means.values()):
        return {**{k: float("nan") for k in METRICS}, **{k: float("nan") for k in COMPOSITES}, "Overall_product": float("nan"),
                **{f"raw_{k}": v for k, v in means.items()}}
    unit = unitise(means)
    return {**unit, **composites(unit, alpha, soft_floor, gm_floor), **{f"raw_{k}": v for k, v in means.items()}}


def load_judgments(judgments_dir: str | Path) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    d = Path(judgments_dir)
    plan_path, jpath = d / "plan.json", d / "judgments.jsonl"
    if not jpath.is_file():
        raise DataError(d, "no judgments.jsonl here", "pass the --out directory of `affectkit judge-memes`")
    if not plan_path.is_file():
        raise DataError(d, "no plan.json here", "pass the --out directory of `affectkit judge-memes`")
    try:
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(plan_path, f"invalid JSON ({exc.msg})") from None
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for ln, line in enumerate(jpath.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(jpath, f"line {ln}: invalid JSON", "a killed run leaves a cut line: rerun judge-memes with --resume") from None
        for field in ("id", "system", "status", "tgt_emo"):
            if field not in rec:
                raise DataError(jpath, f"line {ln}: missing field {field!r}")
        records[(rec["id"], rec["system"])] = rec
    return plan, records


def _usable(rec: dict[str, Any], compat: bool) -> dict[str, Any] | None:
    if rec["status"] == "ok" and isinstance(rec.get("judgment"), dict):
        return rec["judgment"]
    if compat and isinstance(rec.get("parsed"), dict):
        codes = {e.get("code") for e in rec.get("errors", [])}
        if "other_emotion" not in codes:
            return rec["parsed"]
    return None


def score_plan(plan: dict[str, Any], records: dict[tuple[str, str], dict[str, Any]], *, compat: bool = False,
               alpha: float = 3.0, soft_floor: float = 1e-3, gm_floor: float = 1e-12) -> dict[str, Any]:
    """Per stratum: per-run scores (by system in the model view, pooled in the factor view) and summaries."""
    view = plan["view"]
    systems = plan["systems"]
    strata_out = {}
    for stratum in plan["strata"]:
        groups = systems if view == "model" else ["pooled"]
        per_run: dict[str, list[dict[str, float]]] = {g: [] for g in groups}
        coverage: dict[str, dict[str, Any]] = {g: {"n_ok": 0, "n_total": 0, "failure_kinds": {},
                                                   "missing": {k: 0 for k in METRICS}} for g in groups}
        counted: set[tuple[str, str, str]] = set()
        for run in stratum["runs"]:
            items: dict[str, list[dict[str, float | None]]] = {g: [] for g in groups}
            for rid, system in run:
                g = system if view == "model" else "pooled"
                rec = records.get((rid, system))
                first = (g, rid, system) not in counted
                counted.add((g, rid, system))
                cov = coverage[g]
                if first:
                    cov["n_total"] += 1
                if rec is None:
                    if first:
                        cov["failure_kinds"]["not_judged"] = cov["failure_kinds"].get("not_judged", 0) + 1
                    continue
                judgment = _usable(rec, compat)
                if judgment is None:
                    if first:
                        kind = rec.get("error_kind") or "unknown"
                        cov["failure_kinds"][kind] = cov["failure_kinds"].get(kind, 0) + 1
                    continue
                if first:
                    cov["n_ok"] += 1
                m = extract_metrics(judgment, rec["tgt_emo"], zero_fill=compat)
                if first:
                    for k, v in m.items():
                        cov["missing"][k] += v is None
                items[g].append(m)
            for g in groups:
                per_run[g].append(_run_scores(items[g], alpha, soft_floor, gm_floor))
        summary = {}
        for g in groups:
            keys = list(per_run[g][0]) if per_run[g] else []
            summary[g] = {k: summarise([r[k] for r in per_run[g]]) for k in keys}
            summary[g]["coverage"] = coverage[g]
        strata_out[stratum["name"]] = {"filters": stratum["filters"], "n_rows": stratum.get("n_rows"),
                                       "groups": summary, "per_run": per_run}
    return {"view": view, "systems": systems, "runs": plan["runs"], "sample": plan["sample"], "seed": plan["seed"],
            "strata": strata_out}


def _fmt(s: dict[str, float]) -> str:
    if math.isnan(s["mean"]):
        return "n/a"
    return f"{100 * s['mean']:.2f}±{100 * s['std']:.2f}"


def table_rows(scored: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per system (model view) or per stratum (factor view), numbers in percent."""
    rows = []
    for sname, st in scored["strata"].items():
        for g, summ in st["groups"].items():
            label = g if scored["view"] == "model" else sname
            cov = summ["coverage"]
            row: dict[str, Any] = {"system" if scored["view"] == "model" else "stratum": label}
            if scored["view"] == "model" and len(scored["strata"]) > 1:
                row["stratum"] = sname
            for c in COLUMNS:
                row[c] = _fmt(summ[c]) if c in summ else "n/a"
            row["n_ok/n_total"] = f"{cov['n_ok']}/{cov['n_total']}"
            rows.append(row)
    return rows


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


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    if not rows:
        return f"### {title}\n\n(no rows)\n"
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def nonllm_table(judgments_dir: Path, records: dict[tuple[str, str], dict[str, Any]], bench: str | Path | None,
                 use_ocr: bool = False) -> list[dict[str, Any]]:
    """Mean non-LLM metrics per system over the judged pairs (needs the benchmark images)."""
    from affectkit.tasks.mer_bench.data import load_bench
    from affectkit.tasks.mer_bench.nonllm import pair_metrics

    if bench is None:
        meta_path = judgments_dir / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        bench = meta.get("bench")
        if not bench or not Path(bench).is_dir():
            return []
    systems = sorted({s for _, s in records})
    b = load_bench(bench, systems)
    by_id = b.by_id()
    acc: dict[str, dict[str, list[float]]] = {}
    for (rid, s) in sorted(records):
        row = by_id.get(rid)
        if row is None:
            continue
        m = pair_metrics(b.src_path(row), b.gen_path(s, row), row, b.captions[s].get(row["gen_id"]), use_ocr=use_ocr)
        a = acc.setdefault(s, {})
        for k in ("ssim", "panel_match", "dhash_distance", "caption_tone_shift", "caption_chrf", "caption_rouge_l",
                  "caption_edit_ratio", "annotation_tone_shift"):
            if k in m and m[k] is not None:
                a.setdefault(k, []).append(float(m[k]))
        a.setdefault("no_edit", []).append(float(m["dhash_distance"] == 0 and m["ssim"] > 0.999))
        a.setdefault("caption_coverage", []).append(float(m.get("caption") is not None))
    rows = []
    for s in systems:
        row = {"system": s, "n": len(acc.get(s, {}).get("ssim", []))}
        for k, v in acc.get(s, {}).items():
            row[k] = round(float(np.mean(v)), 4)
        rows.append(row)
    return rows


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
    md = markdown_table(rows, title)
    nl_rows: list[dict[str, Any]] = []
    if nonllm:
        try:
            nl_rows = nonllm_table(jdir, records, bench, use_ocr)
        except (DataError, UsageError) as exc:  # the images moved: the judge scores still stand
            from affectkit.core.output import get_output

            get_output().warn(f"non-LLM metrics skipped: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
            nl_rows = []
        if nl_rows:
            md += "\n" + markdown_table(nl_rows, "Non-LLM metrics (mean per system over judged pairs)")
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
