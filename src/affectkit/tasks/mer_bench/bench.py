"""`affectkit bench mer-bench`: the rules judge on the embedded benchmark, and the transport's speed.

1. Ranking: the offline rules judge scores the four synthetic systems (full-edit, caption-only,
   identity, blank); the known order must come out on Overall and on the affect axis.
2. Transport: the openai judge against a loopback server with a fixed latency per request,
   concurrency 16 vs the baseline concurrency 1 (same requests, cache off), then a cache-hit rerun.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from affectkit.core.output import Output
from affectkit.core.task import BenchContext, BenchResult
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.evaluation import evaluate_judgments
from affectkit.tasks.mer_bench.judging import judge
from affectkit.tasks.mer_bench.loopback import Reply, ScriptedServer, valid_judgment
from affectkit.tasks.mer_bench.synth import EXPECTED_RANKING, bench_size

QUIET = Output(quiet=True)


def rules_table(data: Path, out: Path, cache: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    cfg = JudgeConfig(backend="rules", cache=str(cache))
    t0 = time.perf_counter()
    s = judge(cfg, data, None, out, overwrite=True, output=QUIET)
    res = evaluate_judgments(out, nonllm=True)
    sc = res["scores"]["all"]
    rows = []
    for system in EXPECTED_RANKING:
        g = sc[system]
        rows.append({
            "system": system,
            "VEAS": round(100 * g["VEAS"]["mean"], 2), "TEAS": round(100 * g["TEAS"]["mean"], 2),
            "Affect": round(50 * (g["VEAS"]["mean"] + g["TEAS"]["mean"]), 2),
            "OEC": round(100 * g["OEC"]["mean"], 2), "LC": round(100 * g["LC"]["mean"], 2),
            "TA": round(100 * g["TA"]["mean"], 2), "CF": round(100 * g["CF"]["mean"], 2),
            "SS": round(100 * g["SS"]["mean"], 2), "Overall": round(100 * g["Overall"]["mean"], 2),
            "n_ok/n_total": f"{g['coverage']['n_ok']}/{g['coverage']['n_total']}",
        })
    overall = [r["Overall"] for r in rows]
    affect = [r["Affect"] for r in rows]
    info = {
        "ranking_overall_ok": all(a > b for a, b in zip(overall, overall[1:], strict=False)),
        "ranking_affect_ok": all(a > b for a, b in zip(affect, affect[1:], strict=False)),
        "rules_seconds": round(time.perf_counter() - t0, 2), "pairs": s["unique_pairs"],
    }
    return rows, info


def transport_table(data: Path, out: Path, n_rows: int, latency_s: float = 0.1,
                    concurrencies: tuple[int, ...] = (1, 16)) -> list[dict[str, Any]]:
    """Requests/s of the openai judge against a loopback server with ``latency_s`` per reply."""
    rows: list[dict[str, Any]] = []
    payload = Reply(content=__import__("json").dumps(valid_judgment()))
    with ScriptedServer(responder=lambda body: payload, latency_s=latency_s) as server:
        base_rate = None
        for c in concurrencies:
            cfg = JudgeConfig(backend="openai", concurrency=c, use_cache=False, sample=n_rows, backoff_base_s=0.0)
            cfg.openai.base_url, cfg.openai.model = server.base_url, "loopback"
            before = len(server.requests)
            t0 = time.perf_counter()
            s = judge(cfg, data, None, out / f"c{c}", overwrite=True, output=QUIET)
            dt = time.perf_counter() - t0
            n = len(server.requests) - before
            rate = n / dt
            base_rate = base_rate or rate
            rows.append({"setting": f"concurrency {c}", "requests": n, "ok": s["n_ok"], "seconds": round(dt, 3),
                         "req_per_s": round(rate, 2), "speedup_vs_c1": round(rate / base_rate, 2)})
        c = max(concurrencies)
        cfg = JudgeConfig(backend="openai", concurrency=c, cache=str(out / "cache.sqlite3"), sample=n_rows)
        cfg.openai.base_url, cfg.openai.model = server.base_url, "loopback"
        t0 = time.perf_counter()
        judge(cfg, data, None, out / "warm", overwrite=True, output=QUIET)
        warm = time.perf_counter() - t0
        before = len(server.requests)
        t0 = time.perf_counter()
        s = judge(cfg, data, None, out / "hit", overwrite=True, output=QUIET)
        dt = time.perf_counter() - t0
        rows.append({"setting": f"cache-hit rerun (c{c})", "requests": len(server.requests) - before, "ok": s["n_ok"],
                     "seconds": round(dt, 3), "req_per_s": None,
                     "speedup_vs_c1": round(rows[0]["seconds"] / dt, 2) if dt > 0 else None,
                     "first_run_seconds": round(warm, 3)})
    return rows


def run_bench(ctx: BenchContext) -> BenchResult:
    from affectkit.core.cache import embedded_data
    from affectkit.tasks.mer_bench import TASK

    n = bench_size(ctx.quick)
    data = embedded_data(TASK, ctx.seed, ctx.quick)
    rows, info = rules_table(data, ctx.out_dir / "rules", ctx.out_dir / "rules_cache.sqlite3")
    ctx.output.log(f"rules judge on {n} memes x 4 systems: Overall order ok={info['ranking_overall_ok']}, "
                   f"affect order ok={info['ranking_affect_ok']}")
    transport = transport_table(data, ctx.out_dir / "transport", n_rows=8 if ctx.quick else 48,
                                latency_s=0.1)
    notes = [
        "judge: rules (offline heuristic from non-LLM metrics, not an MLLM); scores in percent, one run over every row",
        "Affect = mean of unitised VEAS and TEAS (the spec's 'affect controllability' axis); "
        "TA is 0 whenever the visual emotion accuracy is at its floor (caption-only, identity, blank)",
        "transport: loopback server with 100 ms latency per reply; baseline = concurrency 1, same requests, cache off",
    ]
    return BenchResult(task=TASK.name, tables={"rules_judge": rows, "transport": transport}, metrics=TASK.metrics,
                       notes=notes, extra=info)
