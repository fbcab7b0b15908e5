"""The pre-registered act-prompt protocol (fixed before the confirmatory run; docs/tasks/act-prompt.md).

Data: the embedded benchmark (``synth.make``), data seed = ``--seed``: the source task (10 shape x pattern
classes, 600 training images per class) for pretraining, and the three downstream tasks with a domain
shift: ``digits`` (scikit-learn's digits, colourised, 32 px; 1,078 / 359 / 360 train / val / test),
``shapes-shift`` (6 new shapes in another style; 100 / 50 / 50 per class) and ``textures`` (8 textures
with distractor shapes; 100 / 50 / 50 per class).

Backbones: the tiny ResNet (4 basic blocks, widths 16-128) and the tiny ViT (32 px, patch 4, width 64, 6
layers), each pretrained once with a linear head on the source task (``pretrain``: ``SOURCE_STEPS`` AdamW
steps, batch 64, one-cycle lr 2e-3, seed = data seed) and then frozen, or tuned as the method says.

Methods, all on the same data, trainer and budget: ``STEPS`` optimizer steps, batch 32, AdamW without
weight decay, 20 warm-up steps then cosine decay, a new linear head at lr 1e-3 (``head_lr``), inputs
normalised with mean / std 0.5; the last weights are scored (no checkpoint selection). The learning rate
of what the method tunes besides the head (``LR``), fixed per family before any run: prompts (AP, VP,
VPT) and norm tuning 1e-2 (the spec's prompt rate), LoRA 1e-3, full fine-tuning 5e-4.
- ``ap``: Activation Prompt, shape ``full``, placed after a block, zero init, its layer chosen per
  (task, seed) by the ``layer=auto`` sweep: every block 1..L trained ``SWEEP_STEPS`` steps, the highest
  validation accuracy wins (ties: the deeper layer); then the full budget at that layer;
- ``vp``: the padding visual prompt (border 4 px of 32; the paper's 30 of 224 scaled), linear head;
- ``vpt``: VPT-shallow with 8 prompt tokens (ViT only);
- ``linear``: linear probe; ``norm``: norm tuning (BatchNorm / LayerNorm affine weights; BatchNorm
  statistics frozen); ``lora``: peft LoRA r 8, alpha 16 (ViT: query / value; ResNet: convolutions);
  ``full``: full fine-tuning;
- ``linear-random``: the linear probe of the same architecture randomly initialised (the control);
- ``vp-copy``: ``vp`` with model seed + 1000: how far two identical methods differ.
Model seeds ``--seed`` + 0, 1, 2 (initialisation of head and prompts, batch order). Cells: 3 tasks x 3
seeds = 9 per backbone, paired across methods.

Scored per run: top-1 accuracy on the test split, and the method's costs on one training batch of 32
(``recipe.measure_costs``): trainable parameters, seconds per step x batches per epoch (train time per
epoch; median of 5 steps in a worker with one torch thread), training memory (weights + gradients and
AdamW moments of what trains + bytes autograd saves for backward: exact, device-independent), inference
images/s.

Tests (decided here, before the run):
1. the paper's claim, per backbone, AP at its selected layer against VP: (a) accuracy: mean paired delta
   ``ap`` - ``vp`` over the 9 cells with the Student-t 95 % interval: "supported" when the interval lies
   above 0, "direction only" when only the mean does, else "not supported"; (b) efficiency: AP's train
   time per epoch and its training memory below VP's in every cell (ratios AP / VP reported). Deltas of
   AP against linear, norm, LoRA and full are reported the same way, beside ``vp-copy`` - ``vp``.
2. positive control: on every (backbone, task), the mean test accuracy over seeds of ``full`` and of
   ``linear`` above ``linear-random``'s (the pretrained source weights carry features).
3. layer preference: the layers the sweep chose per backbone, as a fraction of its depth (the spec: CNNs
   deeper, ViTs shallow-to-middle, unverified): reported, not asserted.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from affectkit.core.config import apply_overrides
from affectkit.core.stats import mean_sd, paired_deltas, paired_summary
from affectkit.core.task import BenchContext, BenchResult
from affectkit.tasks.act_prompt.config import METHOD_LR as LR

ARCHS = ("resnet", "vit")
TASKS = ("digits", "shapes-shift", "textures")
SETTINGS = ["train.batch_size=32", "train.weight_decay=0.0", "train.warmup_steps=20", "train.schedule=cosine",
            "train.eval_every=0", "train.checkpoint_every=0", "head_lr=0.001", "prompt.shape=full",
            "prompt.placement=block", "prompt.init=zero", "prompt.vp_pad=4", "prompt.vp_mode=pad", "prompt.vpt_tokens=8",
            "prompt.head=linear", "lora.r=8", "lora.alpha=16", "lora.dropout=0.0", "data.image_size=32"]
METHODS = ("ap", "vp", "vpt", "linear", "norm", "lora", "full", "linear-random", "vp-copy")
COPY_SEED_OFFSET = 1000
WORKERS = 2
FULL = {"seeds": 3, "steps": 300, "sweep_steps": 100, "source_steps": 1500, "tasks": TASKS}
QUICK = {"seeds": 1, "steps": 40, "sweep_steps": 15, "source_steps": 150, "tasks": ("digits",)}
STEPS, SWEEP_STEPS, SOURCE_STEPS = FULL["steps"], FULL["sweep_steps"], FULL["source_steps"]
BASELINES = ("vp", "linear", "norm", "lora", "full")


def methods_for(arch: str) -> list[str]:
    return [m for m in METHODS if m != "vpt" or arch == "vit"]


def config_for(task: Any, method: str, arch: str, data_task: str, backbone_dir: str, plan: dict[str, Any]) -> Any:
    base = "vp" if method == "vp-copy" else "linear" if method == "linear-random" else method
    extra = [f"method={base}", f"backbone.arch={arch}", f"data.task={data_task}", f"train.max_steps={plan['steps']}",
             f"train.lr={LR[base]}", f"sweep.steps={plan['sweep_steps']}", "sweep.layers=[]",
             "layer=auto" if base == "ap" else "layer=0"]
    if method == "linear-random":
        extra += ["backbone.pretrained=false", "backbone.path="]
    else:
        extra += [f"backbone.path={backbone_dir}"]
    return apply_overrides(task.Config(), [*SETTINGS, *extra])


def pretrain_job(job: tuple[Any, ...]) -> str:
    from affectkit.core.config import apply_overrides as overrides
    from affectkit.tasks.act_prompt.config import ActPromptConfig
    from affectkit.tasks.act_prompt.pretrain import pretrained_backbone_dir

    arch, steps, seed, quick = job
    data = overrides(ActPromptConfig(), SETTINGS).data
    return str(pretrained_backbone_dir(arch, steps, data.image_size, data.mean, data.std, seed=seed, quick=quick))


def run_job(job: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Every method on one (backbone, task, model seed), in a worker with one torch thread."""
    from affectkit.core.device import get_accelerator
    from affectkit.core.output import Output
    from affectkit.tasks.act_prompt.recipe import adapt
    from affectkit.tasks.act_prompt.sweep import run_sweep

    task, arch, data_task, seed, data_dir, backbone_dir, plan = job
    out, accelerator = Output(quiet=True), get_accelerator("no")
    records = []
    for method in methods_for(arch):
        cfg = config_for(task, method, arch, data_task, backbone_dir, plan)
        run_seed = seed + (COPY_SEED_OFFSET if method == "vp-copy" else 0)
        sweep: list[dict[str, Any]] = []
        if method == "ap":
            chosen, sweep = run_sweep(cfg, data_dir, run_seed, out, accelerator, None)
            cfg.layer = str(chosen)
        start = time.perf_counter()
        summary = adapt(cfg, data_dir, run_seed, out, accelerator)["summary"]
        costs = summary["costs"]
        records.append({"arch": arch, "task": data_task, "seed": seed, "method": method,
                        "accuracy": summary["test"]["accuracy"], "val_accuracy": summary["val"]["accuracy"],
                        "layer": summary.get("layer"), "sweep": sweep, "run_s": time.perf_counter() - start,
                        **{k: costs[k] for k in ("trainable_params", "train_s_per_epoch", "train_memory_mb",
                                                 "activation_mb", "images_per_s", "train_step_s")}})
    return records


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_bench(task: Any, ctx: BenchContext) -> BenchResult:
    """The protocol above. The two pretrainings run first, one per worker; each backbone's jobs start as
    soon as its weights are cached. Jobs run in ``WORKERS`` spawned single-thread processes and every job
    is seeded by itself, so the records do not depend on the schedule."""
    import multiprocessing as mp
    import os
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from affectkit.core.cache import embedded_data

    plan = QUICK if ctx.quick else FULL
    seeds = [ctx.seed + k for k in range(plan["seeds"])]
    t0 = time.perf_counter()
    ctx.output.log(f"act-prompt bench: embedded data (seed {ctx.seed}{', quick' if ctx.quick else ''})")
    data_dir = embedded_data(task, ctx.seed, ctx.quick)
    workers = max(1, min(WORKERS, os.cpu_count() or 1))
    records: list[dict[str, Any]] = []
    backbones: dict[str, str] = {}
    n_jobs = len(ARCHS) * len(plan["tasks"]) * len(seeds)
    with ctx.output.progress("act-prompt runs (backbone x task x seed)", total=n_jobs) as bar, \
            ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_one_thread) as pool:
        pending = {pool.submit(pretrain_job, (arch, plan["source_steps"], ctx.seed, ctx.quick)): ("pretrain", arch)
                   for arch in ARCHS}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                kind, what = pending.pop(future)
                if kind == "pretrain":
                    backbones[what] = future.result()
                    ctx.output.log(f"pretrained {what}: {backbones[what]}")
                    for data_task in plan["tasks"]:
                        for seed in seeds:
                            job = (task, what, data_task, seed, data_dir, backbones[what], plan)
                            pending[pool.submit(run_job, job)] = ("run", f"{what}/{data_task}/seed {seed}")
                else:
                    records.extend(future.result())
                    bar.advance(status=what)
    order = {m: i for i, m in enumerate(METHODS)}
    records.sort(key=lambda r: (ARCHS.index(r["arch"]), TASKS.index(r["task"]), r["seed"], order[r["method"]]))
    tables, extra = summarize(records, backbones)
    plots = write_plots(ctx.out_dir, records)
    notes = [f"data seed {ctx.seed}, model seeds {seeds}, tasks {', '.join(plan['tasks'])}; {plan['steps']} steps "
             f"(sweep {plan['sweep_steps']} per layer), source pretraining {plan['source_steps']} steps; settings: "
             f"{' '.join(SETTINGS)}; lr {LR}; {workers} worker processes",
             f"protocol time {time.perf_counter() - t0:.0f} s", *(f"plot: {p}" for p in plots)]
    if ctx.quick:
        notes.append("quick protocol: the quick data set, digits only, 1 seed, 40 steps, 150 pretraining steps; the "
                     "claim needs the full protocol")
    extra["records"] = [{k: v for k, v in r.items() if k != "sweep"} for r in records]
    extra["sweeps"] = [{k: r[k] for k in ("arch", "task", "seed", "layer", "sweep")} for r in records
                       if r["method"] == "ap"]
    return BenchResult(task=task.name, tables=tables, metrics=task.metrics, notes=notes, extra=extra)


def _cells(records: list[dict[str, Any]], arch: str, method: str, key: str) -> list[float]:
    return [float(r[key]) for r in records if r["arch"] == arch and r["method"] == method]


def verdict(row: dict[str, Any]) -> str:
    if row.get("ci95 low", -np.inf) > 0:
        return "supported"
    return "direction only" if row["mean delta"] > 0 else "not supported"


def summarize(records: list[dict[str, Any]], backbones: dict[str, str]) -> tuple[dict[str, list[dict[str, Any]]],
                                                                                 dict[str, Any]]:
    import json
    from pathlib import Path

    tables: dict[str, list[dict[str, Any]]] = {}
    extra: dict[str, Any] = {"source_accuracy": {}}
    for arch, path in backbones.items():
        report = Path(path) / "pretraining.json"
        if report.is_file():
            extra["source_accuracy"][arch] = json.loads(report.read_text())["source_test_accuracy"]
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    rows = []
    for arch in ARCHS:
        for method in methods_for(arch):
            mine = [r for r in records if r["arch"] == arch and r["method"] == method]
            if not mine:
                continue
            mean, sd = mean_sd([r["accuracy"] for r in mine])
            row: dict[str, Any] = {"backbone": arch, "method": method, "top-1": mean, "sd": sd}
            row.update({t: float(np.mean([r["accuracy"] for r in mine if r["task"] == t])) for t in tasks})
            row.update({"trainable": int(np.median([r["trainable_params"] for r in mine])),
                        "s/epoch": float(np.mean([r["train_s_per_epoch"] for r in mine])),
                        "train MB": float(np.mean([r["train_memory_mb"] for r in mine])),
                        "images/s": float(np.mean([r["images_per_s"] for r in mine]))})
            rows.append(row)
    tables["top-1 test accuracy and costs by method (mean over tasks x seeds; per-task means)"] = rows

    claim, efficiency = [], []
    for arch in ARCHS:
        for base in [*BASELINES, "vp-copy"]:
            a, b = ("vp-copy", "vp") if base == "vp-copy" else ("ap", base)
            if not _cells(records, arch, a, "accuracy") or not _cells(records, arch, b, "accuracy"):
                continue
            deltas = paired_deltas(_cells(records, arch, a, "accuracy"), _cells(records, arch, b, "accuracy"))
            row = {"backbone": arch, "comparison": f"{a} - {b}", **paired_summary(deltas)}
            row["verdict"] = verdict(row) if (a, b) == ("ap", "vp") else "reported"
            claim.append(row)
        if _cells(records, arch, "ap", "accuracy") and _cells(records, arch, "vp", "accuracy"):
            for key, name in (("train_s_per_epoch", "train time per epoch"), ("train_memory_mb", "training memory"),
                              ("images_per_s", "inference images/s")):
                ratios = [x / y for x, y in zip(_cells(records, arch, "ap", key), _cells(records, arch, "vp", key),
                                                strict=True)]
                below = sum(x < 1 for x in ratios)
                row = {"backbone": arch, "measure": f"{name}, AP / VP", "mean ratio": float(np.mean(ratios)),
                       "min": float(np.min(ratios)), "max": float(np.max(ratios)), "AP below VP": f"{below}/{len(ratios)}"}
                if key != "images_per_s":
                    row["verdict"] = "supported" if below == len(ratios) else "not supported"
                efficiency.append(row)
    tables["claim (a): top-1 accuracy, paired deltas over tasks x seeds (positive: AP better; 95 % t interval; "
           "wins = cells where the first is better)"] = claim
    tables["claim (b): AP's costs against VP's, per cell ratio"] = efficiency

    control = []
    for arch in ARCHS:
        for t in tasks:
            def mean_of(method: str, arch: str = arch, t: str = t) -> float:
                return float(np.mean([r["accuracy"] for r in records
                                      if r["arch"] == arch and r["task"] == t and r["method"] == method]))
            if not any(r["arch"] == arch and r["task"] == t for r in records):
                continue
            full, linear, random = mean_of("full"), mean_of("linear"), mean_of("linear-random")
            control.append({"backbone": arch, "task": t, "full": full, "linear": linear, "linear-random": random,
                            "pass": "yes" if full > random and linear > random else "no"})
    tables["positive control: pretrained full and linear above the random-init linear probe (mean over seeds)"] = control

    preference = []
    for arch in ARCHS:
        chosen = [r for r in records if r["arch"] == arch and r["method"] == "ap"]
        if not chosen:
            continue
        depth = max(row["layer"] for row in chosen[0]["sweep"])
        layers = [r["layer"] for r in chosen]
        curve = {}
        for k in range(1, depth + 1):
            vals = [row["accuracy"] for r in chosen for row in r["sweep"] if row["layer"] == k]
            curve[f"val@{k}"] = float(np.mean(vals)) if vals else None
        preference.append({"backbone": arch, "blocks": depth, "chosen layers": " ".join(map(str, layers)),
                           "median depth fraction": float(np.median(layers)) / depth, **curve})
    tables["layer preference: AP layers chosen by the sweep (reported, not asserted) and the mean sweep "
           "validation accuracy per layer"] = preference
    return tables, extra


def write_plots(out_dir: Any, records: list[dict[str, Any]]) -> list[str]:
    from affectkit.tasks.act_prompt.report import plot_accuracy_vs_params

    paths = []
    for arch in ARCHS:
        rows, errors = [], {}
        for method in methods_for(arch):
            acc = _cells(records, arch, method, "accuracy")
            if not acc:
                continue
            params = [r["trainable_params"] for r in records if r["arch"] == arch and r["method"] == method]
            rows.append({"method": method, "accuracy": float(np.mean(acc)), "trainable_params": float(np.median(params))})
            errors[method] = mean_sd(acc)[1]
        path = plot_accuracy_vs_params(out_dir / f"act_prompt_{arch}_accuracy_vs_params.png", rows,
                                       f"tiny {arch}: mean top-1 over tasks x seeds (bars: sd)", errors)
        if path is not None:
            paths.append(str(path))
    return paths
