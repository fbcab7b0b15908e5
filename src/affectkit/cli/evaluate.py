"""`affectkit evaluate TASK`: metrics of a trained run (or of what the task evaluates) on a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import command_errors
from affectkit.cli._common import CONFIG_OPTION, PRECISION_OPTION, SEED_OPTION, SET_OPTION, task_for
from affectkit.core.config import load_yaml, merge, resolve
from affectkit.core.errors import DataError, UsageError, require_dir
from affectkit.core.output import get_output, key_value_table
from affectkit.core.runs import MODEL_FILE, RunDir
from affectkit.core.task import EvaluateRequest


def register(app: typer.Typer) -> None:
    app.command("evaluate", help="Evaluate a trained run (or a task's model / judgments) and print metrics.")(evaluate)


@command_errors
def evaluate(
    task: str = typer.Argument(..., help="Task name (see `affectkit tasks`)."),
    run: Path | None = typer.Option(None, "--run", help="Run directory written by `affectkit train`."),
    data: Path | None = typer.Option(None, "--data", help="Dataset directory [default: the run's data]."),
    model: Path | None = typer.Option(None, "--model", help="A model directory (tasks that evaluate models, e.g. moe-quant)."),
    judgments: Path | None = typer.Option(None, "--judgments", help="A judgments directory (mer-bench)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
    seed: int = SEED_OPTION,
    precision: str = PRECISION_OPTION,
) -> None:
    spec = task_for(task, "evaluate")
    output = get_output()
    if checkpoint not in ("best", "last"):
        raise UsageError(f"--checkpoint: expected best or last, got {checkpoint!r}")

    if hasattr(spec, "evaluate_command"):
        request = EvaluateRequest(run=run, data_dir=data, model=model, judgments=judgments, config_file=config,
                                  overrides=list(overrides or []), checkpoint=checkpoint, seed=seed,
                                  output=output, precision=precision)
        result = dict(spec.evaluate_command(request))
        output.result({"task": task, **result}, human=key_value_table(result.get("metrics", result)))
        return

    if run is None:
        raise UsageError("--run is required", f"pass the --out of `affectkit train {task}`")
    rundir = RunDir.existing(run)
    saved = merge(spec.Config(), load_yaml(rundir.config_path), str(rundir.config_path))
    cfg = resolve(spec.Config, config, overrides or [], base=saved)
    data_dir = require_dir(data, "data directory") if data else Path(rundir.meta().get("data_dir", ""))
    if not data_dir or not Path(data_dir).is_dir():
        raise DataError(data_dir, "the run's data directory is gone", "pass --data DIR")

    if checkpoint == "best" and rundir.best_checkpoint() is not None:
        weights = rundir.best_checkpoint() / MODEL_FILE
    elif rundir.latest_checkpoint() is not None:
        weights = rundir.latest_checkpoint() / MODEL_FILE
    else:
        raise DataError(rundir.path, "no checkpoint in the run directory", "train it first, or --resume it")

    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import evaluate_model, load_weights
    from affectkit.core.seeding import seed_everything

    accelerator = get_accelerator(precision)
    seed_everything(seed)
    bundle = spec.build_data(cfg, Path(data_dir))
    if bundle.eval is None:
        raise DataError(data_dir, "the dataset has no evaluation split")
    net = load_weights(spec.build_model(cfg), weights)
    net = accelerator.prepare(net)
    metrics = evaluate_model(spec, net, bundle, cfg, accelerator, output)
    result = {"task": task, "run_dir": str(rundir.path), "checkpoint": str(weights.parent.name),
              "data_dir": str(data_dir), "metrics": metrics}
    output.result(result, human=key_value_table(metrics, title=f"{task}: {weights.parent.name} checkpoint"))
