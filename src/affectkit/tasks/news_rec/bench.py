"""The pre-registered news-rec protocol (fixed before the confirmatory run; docs/tasks/news-rec.md).

Data: the embedded benchmark at full size (1,000 users, 14 days, 150 news a day; training days
0-12, of which day 12 validates; test day 13), data seed = ``--seed``, in two versions: with interest
drift (each day a user's current topic is redrawn with probability 0.25) and without (0.0).
Model seeds ``--seed`` + 0, 1, 2.

Every learned variant gets the same settings (``SETTINGS``) and budget: ``EPOCHS`` epochs over the
training clicks, validation AUC after each epoch, the best-validation epoch scored on test. Nothing
was tuned. Variants: ``sein`` (global + local, both branches), ``global`` only, ``local`` only,
``sein-no-lstm``, ``sein-no-sa`` (the branch ablations), ``nrms`` (content-only, NRMS-style user
encoder over the history); non-learned: popularity (last-stage CTR) and recency.

The paper's claim: global + local beats each ablation and the content-only model; tested as paired
deltas (sein minus each variant, by seed) of test nDCG@10 and AUC with Student-t 95 % intervals, on
both data versions; the gain is expected to shrink without drift.
Positive control: sein and global beat popularity and recency on test AUC, on every seed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from affectkit.core.config import apply_overrides
from affectkit.core.stats import mean_sd, paired_deltas, paired_summary, wins
from affectkit.core.task import BenchContext, BenchResult

SETTINGS = ["train.batch_size=1024", "train.lr=0.001", "train.weight_decay=0.00001", "model.dim=64",
            "model.news_encoder=nrms", "model.stage_hours=24", "model.n_stages=7", "data.npratio=4",
            "data.valid_hours=24"]
EPOCHS = 3
FULL = {"quick_data": False, "seeds": 3, "drifts": (0.25, 0.0),
        "variants": ("sein", "global", "local", "sein-no-lstm", "sein-no-sa", "nrms")}
QUICK = {"quick_data": True, "seeds": 1, "drifts": (0.25,), "variants": ("sein", "global")}
METHOD = "sein"
HEADLINE = ("ndcg@10", "auc")
REPORTED = ("auc", "mrr", "ndcg@5", "ndcg@10")


def data_dir_for(task: Any, seed: int, quick: bool, drift: float) -> Path:
    """The default generator (drift 0.25) from the shared cache; other drifts beside it."""
    from affectkit.core.cache import embedded_data, materialize, task_cache
    from affectkit.tasks.news_rec.synth import make

    if drift == 0.25:
        return embedded_data(task, seed, quick)
    path = task_cache(task.name) / f"data-v{task.data_version}-seed{seed}{'-quick' if quick else ''}-drift{drift:g}"
    if not path.exists():
        materialize(path, lambda d: make(d, seed, quick, drift=drift))
    return path


def variant_config(task: Any, variant: str) -> Any:
    return apply_overrides(task.Config(), [*SETTINGS, f"model.variant={variant}", f"schedule.epochs={EPOCHS}",
                                           "schedule.patience=0"])


def train_and_test(task: Any, cfg: Any, data_dir: Path, seed: int, accelerator: Any) -> dict[str, float]:
    from affectkit.core.loop import evaluate_model, fit
    from affectkit.core.output import Output
    from affectkit.core.runs import RunDir
    from affectkit.tasks.news_rec.recipe import _model
    from affectkit.tasks.news_rec.train import NewsRecLoop

    loop = NewsRecLoop("valid")
    with tempfile.TemporaryDirectory(prefix="news-rec-bench-") as tmp:
        run = RunDir(Path(tmp))
        res = fit(loop, cfg, loop.build_data(cfg, data_dir), accelerator, Output(quiet=True), seed, run=run)
        tester = NewsRecLoop("test")
        bundle = tester.build_data(cfg, data_dir)
        model = _model(cfg, run.weights("best"))
        metrics = evaluate_model(tester, model, bundle, cfg, accelerator, Output(quiet=True))
    return {**metrics, "best epoch": (res.best.get("step") or 0) // cfg.train.eval_every}


def heuristic_rows(task: Any, data_dir: Path) -> dict[str, dict[str, float]]:
    from affectkit.tasks.news_rec.baselines import popularity_scores, recency_scores
    from affectkit.tasks.news_rec.train import impression_scores, load

    cfg = task.resolve_config(variant_config(task, METHOD), data_dir)
    prep = load(cfg, data_dir)
    return {name: impression_scores(fn(prep, prep.test), prep.test.labels)
            for name, fn in (("popularity", popularity_scores), ("recency", recency_scores))}


def run_bench(task: Any, ctx: BenchContext) -> BenchResult:
    from affectkit.core.device import get_accelerator
    from affectkit.core.seeding import seed_everything

    plan = QUICK if ctx.quick else FULL
    acc = get_accelerator(ctx.precision)
    seeds = [ctx.seed + k for k in range(plan["seeds"])]
    tables: dict[str, list[dict[str, Any]]] = {}
    extra: dict[str, Any] = {"runs": []}
    runs = [(d, v, s) for d in plan["drifts"] for s in seeds for v in plan["variants"]]
    results: dict[tuple[float, str, int], dict[str, float]] = {}
    heuristics: dict[float, dict[str, dict[str, float]]] = {}
    with ctx.output.progress("news-rec bench runs", total=len(runs)) as bar:
        for drift, variant, seed in runs:
            data_dir = data_dir_for(task, ctx.seed, plan["quick_data"], drift)
            if drift not in heuristics:
                heuristics[drift] = heuristic_rows(task, data_dir)
            cfg = task.resolve_config(variant_config(task, variant), data_dir)
            seed_everything(seed)
            t0 = time.perf_counter()
            metrics = train_and_test(task, cfg, data_dir, seed, acc)
            results[(drift, variant, seed)] = {**metrics, "seconds": time.perf_counter() - t0}
            extra["runs"].append({"drift": drift, "variant": variant, "seed": seed, **results[(drift, variant, seed)]})
            ctx.output.event("run", drift=drift, variant=variant, seed=seed, metrics={k: metrics[k] for k in HEADLINE})
            bar.advance(status=f"drift {drift:g}/{variant}/seed {seed}")
    for drift in plan["drifts"]:
        tables.update(summarize(drift, results, heuristics[drift], seeds, plan["variants"]))
    extra["heuristics"] = {str(d): h for d, h in heuristics.items()}
    notes = [f"data seed {ctx.seed} ({'quick' if plan['quick_data'] else 'full'} size), model seeds {seeds}, "
             f"{EPOCHS} epochs, best validation epoch scored on test; settings: {' '.join(SETTINGS)}"]
    if ctx.quick:
        notes.append("quick protocol: quick data with drift, 1 seed, sein and global only; the claim needs the full protocol")
    return BenchResult(task=task.name, tables=tables, metrics=task.metrics, notes=notes, extra=extra)


def summarize(drift: float, results: dict, heuristic: dict[str, dict[str, float]], seeds: list[int],
              variants: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    tag = f"drift {drift:g}"
    table = []
    for v in variants:
        row: dict[str, Any] = {"model": v}
        for key in REPORTED:
            mean, sd = mean_sd([results[(drift, v, s)][key] for s in seeds])
            row[f"{key} mean"], row[f"{key} sd"] = 100 * mean, 100 * sd
        row["gate (global share)"] = statistics.fmean(results[(drift, v, s)].get("gate_global", float("nan")) for s in seeds)
        row["s/run"] = statistics.fmean(results[(drift, v, s)]["seconds"] for s in seeds)
        table.append(row)
    for name, m in heuristic.items():
        table.append({"model": name, **{f"{k} mean": 100 * m[k] for k in REPORTED}})
    claims = []
    for v in (x for x in variants if x != METHOD):
        for key in HEADLINE:
            deltas = paired_deltas([results[(drift, METHOD, s)][key] for s in seeds],
                                   [results[(drift, v, s)][key] for s in seeds], scale=100)
            claims.append({"comparison": f"sein - {v}", "metric": key, **paired_summary(deltas)})
    control = []
    for v in (x for x in (METHOD, "global") if x in variants):
        for name, m in heuristic.items():
            deltas = paired_deltas([results[(drift, v, s)]["auc"] for s in seeds], [m["auc"]] * len(seeds), scale=100)
            control.append({"model": v, "against": name, "rule": "higher test AUC on every seed", **paired_summary(deltas),
                            "pass": "yes" if wins(deltas) == len(deltas) else "no"})
    return {f"{tag}: test (x100; best validation epoch)": table, f"{tag}: paired deltas (x100)": claims,
            f"{tag}: positive control": control}
