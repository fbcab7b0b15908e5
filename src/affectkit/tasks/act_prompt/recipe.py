"""`train act-prompt` and `evaluate act-prompt` (`predict act-prompt` is in ``predict``).

A training run: with ``method=ap layer=auto`` the validation sweep picks the layer first (``sweep``); then
one fit on the shared loop (best step by validation accuracy), the best weights scored on the test split,
the method's costs measured on one training batch (``costs.cost_report``), and the adapter saved
(``adapter``: the prompt or the tuned weights with a JSON of layer and shape). ``--compare`` runs several
methods, one sub-run each, and writes the comparison table and plot."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from affectkit.core.errors import UsageError
from affectkit.core.task import EvaluateRequest, TrainRequest
from affectkit.tasks.act_prompt.config import METHOD_LR, METHODS

COMPARE_FILE = "comparison"


def with_method(cfg: Any, method: str) -> Any:
    """``cfg`` for ``method`` at its family's learning rate (``METHOD_LR``)."""
    new = copy.deepcopy(cfg)
    new.method = method
    new.train.lr = METHOD_LR[method]
    return new


def available_split(cfg: Any, data_dir: Path, split: str) -> str | None:
    from affectkit.tasks.act_prompt.data import splits
    from affectkit.tasks.act_prompt.train import dataset_root

    return split if split and split in splits(dataset_root(cfg, data_dir)) else None


def score_split(cfg: Any, data_dir: Path, model: Any, split: str, accelerator: Any, out: Any) -> dict[str, float]:
    """Accuracy and loss of ``model`` on ``split`` (the train split's class numbering)."""
    from affectkit.core.loop import evaluate_model
    from affectkit.tasks.act_prompt.train import ActPromptLoop

    loop = ActPromptLoop(split=split)
    bundle = loop.build_data(cfg, data_dir)
    return evaluate_model(loop, model, bundle, cfg, accelerator, out)


def measure_costs(model: Any, cfg: Any, bundle: Any) -> dict[str, float]:
    """The method's costs on one training batch, on a copy (the timed steps update weights): trainable
    entries, seconds per step and per epoch, training memory (all weights + gradients and AdamW moments of
    the trainable ones + what autograd keeps for backward), inference images/s."""
    import torch

    from affectkit.core.loop import batches_per_epoch
    from affectkit.tasks.act_prompt.costs import cost_report
    from affectkit.tasks.act_prompt.train import parameter_groups

    n = min(cfg.train.batch_size, len(bundle.train))
    batch = bundle.collate_fn([bundle.train[i] for i in range(n)])
    twin = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(parameter_groups(twin, cfg))
    costs = cost_report(twin, batch["pixel_values"], batch["labels"], optimizer, repeats=5)
    weights_mb = sum(p.numel() * p.element_size() for p in twin.parameters()) / 2**20
    trainable_mb = sum(p.numel() * p.element_size() for p in twin.parameters() if p.requires_grad) / 2**20
    costs["train_memory_mb"] = weights_mb + costs["state_mb"] - trainable_mb + costs["activation_mb"]
    costs["train_s_per_epoch"] = costs["train_step_s"] * batches_per_epoch(len(bundle.train), cfg.train.batch_size)
    if torch.cuda.is_available():
        costs["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return costs


def adapt(cfg: Any, data_dir: Path, seed: int, out: Any, accelerator: Any, run: Any = None, resume: bool = False,
          costs: bool = True) -> dict[str, Any]:
    """One adaptation run: fit, score the selected weights (the best validation step with a run directory,
    else the last) on the test split, measure costs. Returns the summary and the model."""
    from affectkit.core.loop import fit, load_weights
    from affectkit.tasks.act_prompt.train import ActPromptLoop

    loop = ActPromptLoop()
    bundle = loop.build_data(cfg, data_dir)
    out.log(f"act-prompt {cfg.method}" + (f" at layer {cfg.layer}" if cfg.method == "ap" else "")
            + f": {bundle.info['train']} training images, {len(loop.classes)} classes")
    start = time.perf_counter()
    fitted = fit(loop, cfg, bundle, accelerator, out, seed, run=run, resume=resume)
    seconds = time.perf_counter() - start
    model = fitted.model
    if run is not None and run.best_checkpoint() is not None:
        model = load_weights(loop.build_model(cfg), run.weights("best"))
    model = model.eval()
    summary: dict[str, Any] = {"method": cfg.method, "step": fitted.step, "best": fitted.best,
                               "stopped_early": fitted.stopped_early, "train_seconds": seconds,
                               "classes": loop.classes}
    if cfg.method == "ap":
        summary["layer"] = int(cfg.layer)
    summary["val"] = score_split(cfg, data_dir, accelerator.prepare(model), cfg.data.eval_split, accelerator, out)
    test = available_split(cfg, data_dir, cfg.data.test_split)
    if test:
        summary["test"] = score_split(cfg, data_dir, accelerator.prepare(model), test, accelerator, out)
    summary["accuracy"] = (summary.get("test") or summary["val"])["accuracy"]
    if costs and accelerator.is_main_process:
        summary["costs"] = measure_costs(model, cfg, bundle)
    return {"summary": summary, "model": model}


def resolve_layer(cfg: Any, data_dir: Path, seed: int, out: Any, accelerator: Any, run: Any) -> Any:
    """``layer=auto`` for AP: the sweep picks the layer (saved in the run, which a resume reuses) and the
    run's config.yaml records it. Other methods and fixed layers pass through unchanged."""
    if cfg.method != "ap" or str(cfg.layer) != "auto":
        return cfg
    from affectkit.core.config import to_yaml
    from affectkit.tasks.act_prompt.sweep import run_sweep

    chosen, _ = run_sweep(cfg, data_dir, seed, out, accelerator, run.path if run is not None else None)
    cfg = copy.deepcopy(cfg)
    cfg.layer = str(chosen)
    if run is not None and accelerator.is_main_process:
        run.write_config(to_yaml(cfg))
    return cfg


def train_one(cfg: Any, request: TrainRequest, run: Any) -> dict[str, Any]:
    from affectkit.core.device import get_accelerator
    from affectkit.tasks.act_prompt.adapter import save_adapter

    accelerator = get_accelerator(request.precision)
    cfg = resolve_layer(cfg, request.data_dir, request.seed, request.output, accelerator, run)
    done = adapt(cfg, request.data_dir, request.seed, request.output, accelerator, run=run, resume=request.resume)
    summary = done["summary"]
    if accelerator.is_main_process:
        summary["adapter"] = str(save_adapter(run.path / "adapter", done["model"], cfg, summary["classes"]))
    return summary


def parse_methods(text: str) -> list[str]:
    names = list(METHODS) if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise UsageError(f"--compare: unknown method {', '.join(unknown) or '(none)'}",
                         f"choose from {', '.join(METHODS)} or all")
    return list(dict.fromkeys(names))


def train_run(request: TrainRequest) -> dict[str, Any]:
    options = request.options
    if options is None or not options.compare:
        return train_one(request.cfg, request, request.run)
    return compare(request, parse_methods(options.compare))


def compare(request: TrainRequest, methods: list[str]) -> dict[str, Any]:
    """Each method in its own sub-run ``RUN/<method>`` at its family's learning rate (``METHOD_LR``; a
    finished sub-run is kept on --resume), then the table, ``comparison.json`` and ``comparison.png`` (accuracy against trainable parameters)."""
    from affectkit.core.config import to_yaml
    from affectkit.core.runs import RunDir, atomic_write_json, read_json
    from affectkit.tasks.act_prompt.report import comparison_rows, comparison_table, plot_accuracy_vs_params

    out, run = request.output, request.run
    summaries: dict[str, Any] = {}
    for method in methods:
        sub = RunDir(run.path / method)
        if request.resume and (sub.path / "results.json").is_file():
            summaries[method] = read_json(sub.path / "results.json")
            out.log(f"compare: {method} already finished in {sub.path}")
            continue
        cfg = with_method(request.cfg, method)
        if not sub.path.exists():
            sub.create()
        sub.write_config(to_yaml(cfg))
        sub.write_meta(request.seed, {"task": "act-prompt", "data_dir": str(Path(request.data_dir).resolve())})
        summaries[method] = train_one(cfg, request, sub)
        sub.write_results(summaries[method])
    rows = comparison_rows(summaries)
    atomic_write_json(run.path / f"{COMPARE_FILE}.json", rows)
    plot = plot_accuracy_vs_params(run.path / f"{COMPARE_FILE}.png", rows)
    out.table(comparison_table(rows))
    return {"accuracy": {r["method"]: r["accuracy"] for r in rows},
            "comparison": str(run.path / f"{COMPARE_FILE}.json"), "plot": str(plot) if plot else None}


def evaluate_request(request: EvaluateRequest) -> dict[str, Any]:
    """The run's weights (``--checkpoint``) on ``--split`` (default: the test split, else validation)."""
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import evaluate_model, load_weights
    from affectkit.core.runs import read_json
    from affectkit.tasks.act_prompt.train import ActPromptLoop

    if request.run is None:
        raise UsageError("--run is required", "pass the --out of `affectkit train act-prompt`")
    cfg = request.cfg
    if cfg.method == "ap" and str(cfg.layer) == "auto":
        raise UsageError(f"{request.run.config_path}: layer is still auto (the run never finished its sweep)",
                         "train it to the end first (affectkit train act-prompt --resume)")
    data_dir = request.trained_data_dir()
    options = request.options
    split = (options.split if options is not None and options.split else None) or \
        available_split(cfg, data_dir, cfg.data.test_split) or cfg.data.eval_split
    weights = request.run.weights(request.checkpoint)
    accelerator = get_accelerator(request.precision)
    loop = ActPromptLoop(split=split)
    bundle = loop.build_data(cfg, data_dir)
    model = load_weights(loop.build_model(cfg), weights).eval()
    metrics = evaluate_model(loop, accelerator.prepare(model), bundle, cfg, accelerator, request.output)
    result: dict[str, Any] = {"run_dir": str(request.run.path), "checkpoint": weights.parent.name, "split": split,
                              "method": cfg.method, "metrics": metrics}
    if cfg.method == "ap":
        result["layer"] = int(cfg.layer)
    trained = request.run.path / "results.json"
    if trained.is_file() and "costs" in (saved := read_json(trained)):
        result["costs"] = saved["costs"]
    return result
