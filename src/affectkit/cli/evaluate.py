"""`affectkit evaluate TASK`: metrics of a trained run, or of what the task evaluates (its own options,
e.g. moe-quant's --model or mer-bench's --judgments, see `affectkit evaluate TASK --help`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from affectkit.cli._common import CONFIG_OPTION, PRECISION_OPTION, SEED_OPTION, SET_OPTION, task_for
from affectkit.cli._task_group import task_group
from affectkit.core.config import resolve
from affectkit.core.errors import DataError, UsageError, require_dir
from affectkit.core.output import get_output, key_value_table
from affectkit.core.runs import RunDir
from affectkit.core.task import EvaluateRequest, LoopTask


def evaluate(
    task: str,
    run: Path | None = typer.Option(None, "--run", help="Run directory written by `affectkit train`."),
    data: Path | None = typer.Option(None, "--data", help="Dataset directory [default: the run's data]."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
    seed: int = SEED_OPTION,
    precision: str = PRECISION_OPTION,
    *,
    options: tuple[Any, dict[str, Any], dict[str, str]],
) -> None:
    spec = task_for(task, "evaluate")
    options, explicit, flags = options
    output = get_output()
    if checkpoint not in ("best", "last"):
        raise UsageError(f"--checkpoint: expected best or last, got {checkpoint!r}")
    rundir = RunDir.existing(run) if run is not None else None
    base = rundir.load_config(spec.Config) if rundir is not None else None
    cfg = resolve(spec.Config, config, overrides or [], explicit, base=base, flags=flags)
    data_dir = require_dir(data, "data directory") if data is not None else None

    if not isinstance(spec, LoopTask):
        request = EvaluateRequest(cfg=cfg, run=rundir, data_dir=data_dir, checkpoint=checkpoint, seed=seed,
                                  output=output, precision=precision, options=options)
        result = dict(spec.evaluate(request))
        output.result({"task": task, **result}, human=key_value_table(result.get("metrics", result)))
        return

    if rundir is None:
        raise UsageError("--run is required", f"pass the --out of `affectkit train {task}`")
    if data_dir is None:
        saved = rundir.meta().get("data_dir")
        if not saved or not Path(saved).is_dir():
            raise DataError(saved or rundir.path, "the run's data directory is gone", "pass --data DIR")
        data_dir = Path(saved)
    weights = rundir.weights(checkpoint)

    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import evaluate_model, load_weights
    from affectkit.core.seeding import seed_everything

    accelerator = get_accelerator(precision)
    seed_everything(seed)
    bundle = spec.build_data(cfg, data_dir)
    if bundle.eval is None:
        raise DataError(data_dir, "the dataset has no evaluation split")
    net = accelerator.prepare(load_weights(spec.build_model(cfg), weights))
    metrics = evaluate_model(spec, net, bundle, cfg, accelerator, output)
    result = {"task": task, "run_dir": str(rundir.path), "checkpoint": str(weights.parent.name),
              "data_dir": str(data_dir), "metrics": metrics}
    output.result(result, human=key_value_table(metrics, title=f"{task}: {weights.parent.name} checkpoint"))


app = task_group("evaluate", evaluate, "EvaluateOptions",
                    "Evaluate a trained run (or what TASK evaluates) and print metrics; "
                    "`affectkit evaluate TASK --help` shows the task's own options.")
