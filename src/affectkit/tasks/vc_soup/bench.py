"""The embedded vc-soup benchmark: VC-soup against the unfiltered soup, random filtering at the same
keep ratio, and a denoise-only control, in a conflicting and an aligned setting, paired seeds."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.task import BenchResult, MetricSpec
from affectkit.tasks.vc_soup.config import Config
from affectkit.tasks.vc_soup.experiment import METHODS, plot_front, run_setting

SETTINGS = ("conflicting", "aligned")


def bench_config(quick: bool) -> Config:
    cfg = Config()
    cfg.dpo.trainer = "native"  # 80 policies per full run: the in-repo loop, same loss as TRL's sigmoid DPO
    if quick:
        cfg.sft.steps = 150
        cfg.dpo.steps = 60
    return cfg


def summarise(per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over seeds per method, and paired win counts of vc against each other method."""
    by = {m: [r for r in per_seed if r["method"] == m] for m in METHODS}
    seeds = sorted({r["seed"] for r in per_seed})
    rows = []
    for m, rs in by.items():
        if not rs:
            continue
        row: dict[str, Any] = {"method": m, "seeds": len(rs)}
        for key in ("hv_ref_policy", "hv_pooled_min", "barrier_worst"):
            vals = np.array([r[key] for r in rs], dtype=float)
            row[f"{key}_mean"] = float(vals.mean())
            row[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        if m != "vc" and by.get("vc"):
            vc = {r["seed"]: r for r in by["vc"]}
            other = {r["seed"]: r for r in rs}
            row["vc_wins_hv"] = sum(vc[s]["hv_ref_policy"] > other[s]["hv_ref_policy"] for s in seeds if s in vc and s in other)
            row["vc_wins_hv_pooled_min"] = sum(vc[s]["hv_pooled_min"] > other[s]["hv_pooled_min"] for s in seeds if s in vc and s in other)
        rows.append(row)
    return rows


def run_bench(ctx: Any) -> BenchResult:
    import torch

    from affectkit.core.cache import materialize
    from affectkit.tasks.vc_soup.synth import make_benchmark

    torch.set_num_threads(1)
    quick = bool(ctx.quick)
    cfg = bench_config(quick)
    seeds = [ctx.seed] if quick else [ctx.seed + i for i in range(5)]
    out = ctx.output
    tables: dict[str, list[dict[str, Any]]] = {}
    extra: dict[str, Any] = {"seeds": seeds, "config": {"sft_steps": cfg.sft.steps, "dpo_steps": cfg.dpo.steps,
                                                          "beta": cfg.dpo.beta, "lr": cfg.dpo.lr, "threshold": cfg.threshold}}
    notes = []
    timing = []
    for setting in SETTINGS:
        per_seed, curves_first = [], None
        corr = []
        for seed in seeds:
            data = Path(ctx.data_root) / f"vc-soup-seed{seed}{'-quick' if quick else ''}"
            if not data.exists():
                materialize(data, lambda d, s=seed: make_benchmark(d, s, quick))
            t0 = time.perf_counter()
            res = run_setting(cfg, data / setting, seed, log=out.info)
            timing.append({"setting": setting, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)})
            per_seed.extend(res["rows"])
            corr.append(res["truth"].get("reward_correlation", math.nan))
            if curves_first is None:
                curves_first = res
            out.log(f"vc-soup {setting} seed {seed}: " + ", ".join(f"{r['method']} HV={r['hv_ref_policy']:.3f}" for r in res["rows"]))
        tables[f"{setting}: mean over seeds"] = summarise(per_seed)
        tables[f"{setting}: per seed"] = per_seed
        extra[f"{setting}_reward_correlation"] = corr
        extra[f"{setting}_reference_point_seed{seeds[0]}"] = curves_first["reference_point"]
        extra[f"{setting}_curves_seed{seeds[0]}"] = curves_first["curves"]
        plot_front({m: np.array(c) for m, c in curves_first["curves"].items()}, np.array(curves_first["reference_point"]),
                   cfg.values, Path(ctx.out_dir) / f"front-{setting}.png", f"{setting}, seed {seeds[0]}")
        summary = {r["method"]: r for r in tables[f"{setting}: mean over seeds"]}
        vc = summary["vc"]
        n = len(seeds)
        line = (f"{setting} (measured reward correlation {np.mean(corr):+.2f}): VC-soup HV {vc['hv_ref_policy_mean']:.3f} vs "
                f"unfiltered {summary['unfiltered']['hv_ref_policy_mean']:.3f} (VC higher in {summary['unfiltered']['vc_wins_hv']}/{n} seeds), "
                f"random {summary['random']['hv_ref_policy_mean']:.3f} ({summary['random']['vc_wins_hv']}/{n}), "
                f"denoise {summary['denoise']['hv_ref_policy_mean']:.3f} ({summary['denoise']['vc_wins_hv']}/{n}); "
                f"mean worst barrier VC {vc['barrier_worst_mean']:.3f} vs unfiltered {summary['unfiltered']['barrier_worst_mean']:.3f}, "
                f"random {summary['random']['barrier_worst_mean']:.3f}")
        notes.append(line)
        if setting == "conflicting" and not quick:
            ok = (summary["unfiltered"]["vc_wins_hv"] >= 4 and summary["random"]["vc_wins_hv"] >= 4
                  and vc["barrier_worst_mean"] < min(summary["unfiltered"]["barrier_worst_mean"], summary["random"]["barrier_worst_mean"]))
            notes.append(f"acceptance (conflicting: VC beats unfiltered and random in >= 4/5 seeds with a lower mean worst barrier): {'met' if ok else 'NOT met'}")
    notes.append("HV reference point: the reference (SFT) policy's mean normalised rewards; hv_pooled_min uses the per-objective "
                 "minimum over every evaluated point of the seed. Rewards: positivity = VADER compound, relevance = MiniLM cosine, "
                 "z-normalised with the training pool's mean/std; a policy's reward is its exact expectation over each held-out "
                 "prompt's candidate responses.")
    tables["timing"] = timing
    return BenchResult(task="vc-soup", tables=tables, metrics=(MetricSpec("hv_ref_policy_mean", True), MetricSpec("barrier_worst_mean", False)),
                       notes=notes, extra=json.loads(json.dumps(extra, default=float)))
