"""The embedded bidirectional-transfer protocol.

Settings are fixed in advance (``SETTINGS``) and identical for every variant: the same pretrained
tiny tower (``model.vision=embedded``), the same steps and learning rates. Two directions:

- FE direction: 10 % of the FE training clips keep their labels, all AU clips are used; SSM must beat
  FE-only by >= 2 UAR points on average and on >= 4 of 5 seeds.
- AU direction: 10 % of the AU training clips keep their labels, all FE clips are used; SSM must be no
  worse than AU-only by more than 1 mean-F1 point.

Controls in the same table: joint without DPM, joint without TSP. A gain is credited to DPM (TSP)
only where SSM minus no-DPM (no-TSP) is >= 2 points on >= 4 of 5 seeds. Everything is scored at the
last step, never at a checkpoint chosen on test labels.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from affectkit.core.config import apply_overrides
from affectkit.core.stats import mean_sd, paired_deltas, paired_summary, wins
from affectkit.core.task import BenchContext, BenchResult
from affectkit.tasks.au_fe.baselines import SINGLE_TASK, VARIANTS

# The embedded protocol: the pretrained tiny tower (see pretrain.py) with a small encoder lr, as SSM
# fine-tunes CLIP; mixup, clip augmentation and the pair smoother are release regularisers for
# 30-epoch runs and are off in this few-hundred-step CPU budget (they slowed learning in a check).
SETTINGS = [
    "data.image_size=48", "data.cache_frames=true", "data.augment=false",
    "model.vision=embedded", "model.moe_blocks=2", "model.moe_hidden=128", "model.fe_mlp=256", "model.fe_heads=4",
    "model.smoothing=none", "loss.mixup_alpha=0", "loss.ramp_epochs=5",
    "optim.lr_encoder=1e-4", "optim.lr_other=1e-3",
    "train.batch_size=8", "train.eval_every=0", "train.checkpoint_every=0", "train.schedule=multistep",
]
FULL = {"steps": 400, "seeds": 5, "variants": ("ssm", "no-dpm", "no-tsp", "single")}
QUICK = {"steps": 30, "seeds": 1, "variants": ("ssm", "single")}
DIRECTIONS = {
    # metric: the gate's; also: its companion on the same test set; other: the other task's headline metric
    "fe": {"labels": "data.fe_label_fraction=0.1", "metric": "fe_uar", "also": "fe_war", "other": "au_f1"},
    "au": {"labels": "data.au_label_fraction=0.1", "metric": "au_f1", "also": "au_auc", "other": "fe_uar"},
}


def variant_config(task: Any, direction: str, variant: str, steps: int, seed: int) -> Any:
    d = DIRECTIONS[direction]
    extra = [SINGLE_TASK[direction]] if variant == "single" else VARIANTS[variant]
    return apply_overrides(task.Config(), [*SETTINGS, d["labels"], *extra, f"train.max_steps={steps}",
                                           f"train.milestones=[{int(steps * 0.7)}, {int(steps * 0.9)}]",
                                           f"data.subset_seed={seed}"])


def run_bench(task: Any, ctx: BenchContext) -> BenchResult:
    import torch

    from affectkit.core.cache import embedded_data
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import fit
    from affectkit.core.output import Output

    plan = QUICK if ctx.quick else FULL
    # the full-size benchmark even when quick: 10 % of the quick AU source is smaller than one batch
    data_dir = embedded_data(task, ctx.seed, quick=False)
    acc = get_accelerator(ctx.precision)
    seeds = [ctx.seed + i for i in range(plan["seeds"])]
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    runs = [(dr, v, s) for dr in DIRECTIONS for s in seeds for v in plan["variants"]]
    threads = torch.get_num_threads()
    with ctx.output.progress("au-fe bench runs", total=len(runs)) as bar:
        for direction, variant, seed in runs:
            cfg = task.resolve_config(variant_config(task, direction, variant, plan["steps"], seed), data_dir)
            t0 = time.perf_counter()
            res = fit(task, cfg, task.build_data(cfg, data_dir), acc, Output(quiet=True), seed)
            metrics = {k: v for k, v in res.metrics.items() if not k.startswith("f1_au")}
            results[(direction, variant, seed)] = {**metrics, "seconds": time.perf_counter() - t0}
            ctx.output.event("run", direction=direction, variant=variant, seed=seed, metrics=metrics)
            bar.advance(status=f"{direction}/{variant}/seed {seed}")
    torch.set_num_threads(threads)

    notes = [f"{plan['steps']} steps, seeds {seeds}, settings fixed in advance: {' '.join(SETTINGS)}",
             "scored at the last step (no checkpoint selection on test labels)"]
    if ctx.quick:
        notes.append("quick protocol: 1 seed, few steps, SSM vs single-task only; the gates need the full protocol")
    return BenchResult(task=task.name, tables=summarize(results, seeds, plan["variants"]), metrics=task.metrics,
                       notes=notes,
                       extra={"runs": [{"direction": k[0], "variant": k[1], "seed": k[2], **r}
                                       for k, r in results.items()]})


def summarize(results: dict[tuple[str, str, int], dict[str, float]], seeds: list[int],
              variants: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Per-direction tables (x100, deltas paired by seed) and the gates, from the runs' last-step metrics
    keyed by (direction, variant, seed)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    gates: list[dict[str, Any]] = []
    for direction, d in DIRECTIONS.items():
        key = d["metric"]
        rows = []
        vs_single: dict[str, list[float]] = {}  # per variant: its paired deltas against the single-task model, x100
        single = [results[(direction, "single", s)][key] for s in seeds]
        for variant in variants:
            vals = [results[(direction, variant, s)][key] for s in seeds]
            mean, sd = mean_sd(vals)
            row = {"method": variant if variant != "single" else f"{direction.upper()}-only",
                   f"{key} mean": 100 * mean, "sd": 100 * sd,
                   f"{d['also']} mean": 100 * statistics.fmean(results[(direction, variant, s)][d["also"]] for s in seeds)}
            other = d["other"]
            others = [results[(direction, variant, s)].get(other) for s in seeds]
            if all(o is not None for o in others):
                row[f"{other} mean"] = 100 * statistics.fmean(others)
            if variant != "single":
                deltas = vs_single[variant] = paired_deltas(vals, single, scale=100)
                row["delta vs single"] = statistics.fmean(deltas)
                row["wins"] = f"{wins(deltas)}/{len(deltas)}"
            row["s/run"] = statistics.fmean(results[(direction, variant, s)]["seconds"] for s in seeds)
            rows.append(row)
        tables[f"{direction.upper()} direction (10% {direction.upper()} labels): {key}"] = rows
        ssm = [100 * results[(direction, "ssm", s)][key] for s in seeds]
        deltas = vs_single["ssm"]
        if direction == "fe":
            passed = statistics.fmean(deltas) >= 2.0 and wins(deltas) >= min(4, len(seeds))
            rule = "SSM - FE-only UAR: mean >= 2 and positive on >= 4/5 seeds"
        else:
            passed = statistics.fmean(deltas) >= -1.0
            rule = "SSM - AU-only F1: mean >= -1"
        gates.append({"gate": f"{direction.upper()} direction", "rule": rule,
                      **paired_summary(deltas), "seeds >= 2": "",
                      "pass": "yes" if passed else "no"})
        for module, variant in (("DPM", "no-dpm"), ("TSP", "no-tsp")):
            if variant not in variants:
                continue
            without = [100 * results[(direction, variant, s)][key] for s in seeds]
            dd = paired_deltas(ssm, without)
            credited = sum(x >= 2.0 for x in dd) >= min(4, len(seeds))
            gates.append({"gate": f"{module} effect ({direction.upper()})", "rule": "SSM - without >= 2 on >= 4/5 seeds",
                          **paired_summary(dd),
                          "seeds >= 2": f"{sum(x >= 2.0 for x in dd)}/{len(dd)}",
                          "pass": "credited" if credited else "no measurable effect"})
    tables["gates"] = gates
    return tables
