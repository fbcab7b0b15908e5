"""`affectkit train TASK`: train a task's method; the run directory keeps everything.

The config is resolved in full (defaults, --config, --set, the task's flags, --max-steps) before
anything runs, and that config is what config.yaml holds, for both task families.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from affectkit.cli._common import CONFIG_OPTION, PRECISION_OPTION, SEED_OPTION, SET_OPTION, task_for
from affectkit.cli._task_group import task_group
from affectkit.core.config import resolve, to_yaml
from affectkit.core.errors import UsageError, require_dir
from affectkit.core.output import format_value, get_output
from affectkit.core.runs import RunDir
from affectkit.core.task import LoopTask, TrainRequest


def train(
    task: str,
    data: Path | None = typer.Option(None, "--data", help="Dataset directory in the task's format."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
    out: Path | None = typer.Option(None, "--out", help="Run directory [default: runs/TASK-seedN]."),
    seed: int = SEED_OPTION,
    max_steps: int | None = typer.Option(None, "--max-steps", help="Optimizer steps (the task's step count key)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    precision: str = PRECISION_OPTION,
    *,
    options: tuple[Any, dict[str, Any], dict[str, str]],
) -> None:
    spec = task_for(task, "train")
    options, explicit, flags = options
    if max_steps is not None:
        if spec.max_steps_key is None:
            raise UsageError(f"--max-steps does not apply to task {task!r}", "set its step count with --set")
        explicit[spec.max_steps_key] = max_steps
        flags[spec.max_steps_key] = "--max-steps"
    output = get_output()
    out = out or Path("runs") / f"{task}-seed{seed}"
    run = RunDir.open(out, resume=resume, overwrite=overwrite)
    # resuming: the saved config is the base; a config file, --set and flags given now apply on top
    base = run.load_config(spec.Config) if resume and run.config_path.exists() else None
    cfg = resolve(spec.Config, config, overrides or [], explicit, base=base, flags=flags)

    from affectkit.core.device import get_accelerator

    accelerator = get_accelerator(precision)
    if data is not None:
        data_dir = require_dir(data, "data directory")
    elif (named := spec.configured_data(cfg)) is not None:
        data_dir = named
    else:
        from affectkit.core.cache import embedded_data

        output.log(f"no --data: using the embedded {task} benchmark (seed {seed})")
        data_dir = _main_first(accelerator, lambda: embedded_data(spec, seed))
    cfg = _main_first(accelerator, lambda: spec.resolve_config(cfg, Path(data_dir)))
    accelerator.wait_for_everyone()
    run.create()
    run.write_config(to_yaml(cfg))
    run.write_meta(seed, {"task": task, "data_dir": str(Path(data_dir).resolve()), "precision": precision,
                          "num_processes": accelerator.num_processes})

    if isinstance(spec, LoopTask):
        from affectkit.core.loop import fit

        bundle = spec.build_data(cfg, Path(data_dir))
        fitted = fit(spec, cfg, bundle, accelerator, output, seed, run=run, resume=resume)
        summary = {"step": fitted.step, "metrics": fitted.metrics, "best": fitted.best,
                   "stopped_early": fitted.stopped_early}
    else:
        request = TrainRequest(cfg=cfg, data_dir=Path(data_dir), run=run, seed=seed, output=output,
                               precision=precision, resume=resume, options=options)
        summary = dict(spec.train(request))

    result = {"task": task, "run_dir": str(run.path), "seed": seed, **summary}
    run.write_results(result)
    run.write_report(_report(task, result))
    output.result(result)


app = task_group("train", train, "TrainOptions",
                    "Train TASK (on its embedded benchmark unless --data is given); "
                    "`affectkit train TASK --help` shows the task's own options.")


def _main_first(accelerator, fn):
    """Run ``fn`` on the main process first (it may build something into a cache), then on every
    process, which finds it done."""
    if accelerator.is_main_process:
        fn()
    accelerator.wait_for_everyone()
    return fn()


def _report(task: str, result: dict) -> str:
    lines = [f"# {task} run", "", f"- run dir: `{result['run_dir']}`", f"- seed: {result['seed']}"]
    if "step" in result:
        lines.append(f"- steps: {result['step']}")
    best = result.get("best") or {}
    if best.get("step") is not None:
        lines.append(f"- best {best['metric']}: {format_value(best['value'])} at step {best['step']}")
    metrics = result.get("metrics") or {}
    if metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {format_value(v)} |" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"
