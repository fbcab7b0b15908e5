"""The embedded vc-soup benchmark: VC-soup against the unfiltered soup, random filtering at the same
keep ratio, and a denoise-only control, in a conflicting and an aligned setting, paired seeds.

``run_setting`` is one seed in one setting (every method from the same reference, same steps);
``plot_front`` draws the fronts (also evaluate's front.png)."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.stats import mean_sd, paired_deltas, wins
from affectkit.core.task import BenchResult, MetricSpec
from affectkit.tasks.vc_soup.config import Config
from affectkit.tasks.vc_soup.data import load_setting
from affectkit.tasks.vc_soup.method_pareto import pareto_mask, weight_grid
from affectkit.tasks.vc_soup.metrics import front_summary
from affectkit.tasks.vc_soup.soup_eval import expected_rewards, reward_norm, soup_curve
from affectkit.tasks.vc_soup.train import METHODS, build_reference, select_pairs, train_value_policy

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
            row[f"{key}_mean"], row[f"{key}_std"] = mean_sd([r[key] for r in rs])
        if m != "vc" and by.get("vc"):
            vc = {r["seed"]: r for r in by["vc"]}
            other = {r["seed"]: r for r in rs}
            paired = [s for s in seeds if s in vc and s in other]
            for key, col in (("hv_ref_policy", "vc_wins_hv"), ("hv_pooled_min", "vc_wins_hv_pooled_min")):
                row[col] = wins(paired_deltas([vc[s][key] for s in paired], [other[s][key] for s in paired]))
        rows.append(row)
    return rows


def plot_front(curves: dict[str, np.ndarray], ref_point: np.ndarray, values: list[str], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, pts in curves.items():
        m = pareto_mask(pts)
        ax.plot(pts[:, 0], pts[:, 1], "-o", ms=3, label=name, alpha=0.8)
        ax.plot(pts[m, 0], pts[m, 1], "o", ms=6, mfc="none", color="k")
    ax.plot([ref_point[0]], [ref_point[1]], "kx", label="reference policy")
    ax.set_xlabel(f"mean {values[0]} (z)")
    ax.set_ylabel(f"mean {values[1]} (z)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_setting(cfg: Config, data_dir: Path, seed: int, methods: tuple[str, ...] = METHODS, log: Any = None) -> dict[str, Any]:
    """One seed of the benchmark in one setting: every method from the same reference, same steps."""
    setting = load_setting(data_dir, cfg.values)
    norm = reward_norm(setting, cfg.values)
    tok, ref, ref_info = build_reference(cfg, setting, seed)
    ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
    ref_point = expected_rewards(ref, tok, setting["evals"], cfg.values, norm)
    grid = weight_grid(len(cfg.values), cfg.grid_steps)
    model = copy.deepcopy(ref)
    curves, infos = {}, {}
    for method in methods:
        selected, sel_info = select_pairs(setting["rows"], cfg, method, seed)
        states = []
        for v in cfg.values:
            policy, info = train_value_policy(cfg, ref, tok, selected[v], seed)
            states.append({k: t.detach().clone() for k, t in policy.state_dict().items()})
            sel_info[v].update(info)
        curves[method] = soup_curve(states, ref_state, model, tok, setting["evals"], cfg.values, norm, grid, cfg.merge_space)
        infos[method] = sel_info
        if log:
            log(f"seed {seed} {Path(data_dir).name} {method}: " + ", ".join(f"{v} n={sel_info[v]['n_train']}" for v in cfg.values))
        del states
    pooled_min = np.min(np.concatenate([*curves.values(), ref_point[None]]), axis=0)
    rows = []
    for method, pts in curves.items():
        s = front_summary(pts, ref_point, pooled_min)
        rows.append({"method": method, "seed": seed, "hv_ref_policy": s["hv_ref_policy"], "hv_pooled_min": s["hv_pooled_min"],
                     "barrier_worst": s.get("barrier_worst", math.nan), "n_pareto": s["n_pareto"],
                     **{f"n_train_{v}": infos[method][v]["n_train"] for v in cfg.values},
                     **{f"flipped_{v}": infos[method][v]["flipped_in_train"] for v in cfg.values},
                     **{f"dpo_loss_{v}": infos[method][v]["loss_last"] for v in cfg.values}})
    return {"rows": rows, "curves": {m: c.tolist() for m, c in curves.items()}, "reference_point": ref_point.tolist(),
            "pooled_min": pooled_min.tolist(), "reference": ref_info, "truth": setting["truth"]}


def run_bench(ctx: Any) -> BenchResult:
    import torch

    from affectkit.core.cache import embedded_data
    from affectkit.tasks.vc_soup import TASK

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
            data = embedded_data(TASK, seed, quick)
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
