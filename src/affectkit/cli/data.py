"""`affectkit data make TASK --out DIR`: write a task's embedded benchmark in its real format."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from affectkit.cli._app import new_app, task_verb_group
from affectkit.cli._common import CONFIG_OPTION, SEED_OPTION, SET_OPTION, task_for
from affectkit.core.cache import materialize
from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import get_output

app = new_app("Datasets: embedded benchmarks in each task's real format, statistics, and the tasks' own data verbs.",
              cls=task_verb_group("data"))


@app.callback()
def data() -> None:
    """Datasets: embedded benchmarks in each task's real format, statistics, and the tasks' own data verbs."""


@app.command("make", help="Write TASK's embedded benchmark (seeded, known ground truth) to --out.")
def make(
    task: str = typer.Argument(..., help="Task name (see `affectkit tasks`)."),
    out: Path = typer.Option(..., "--out", help="Directory to create."),
    seed: int = SEED_OPTION,
    quick: bool = typer.Option(False, "--quick", help="A smaller benchmark for smoke tests."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing directory."),
) -> None:
    spec = task_for(task, "data")
    output = get_output()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out}: directory exists and is not empty", "pass --overwrite or choose another --out")
    t0 = time.perf_counter()
    output.log(f"writing the {task} embedded benchmark (seed {seed}{', quick' if quick else ''}) to {out}")
    summary = materialize(out, lambda d: spec.make_data(d, seed, quick), replace=True)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    fields = {
        "task": task,
        "out": str(out),
        "seed": seed,
        "quick": quick,
        "n_files": len(files),
        "seconds": round(time.perf_counter() - t0, 2),
        **dict(summary or {}),
    }
    output.result(fields)


@app.command("stats", help="Statistics of a dataset in TASK's formats, with its known issues (leakage, id gaps).")
def stats(
    task: str = typer.Argument(..., help="Task name (see `affectkit tasks`)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder or file."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
) -> None:
    from affectkit.core.config import resolve
    from affectkit.core.output import key_value_table
    from affectkit.core.task import Task

    spec = task_for(task, "data")
    if type(spec).data_stats is Task.data_stats:
        raise UsageError(f"task {task} has no dataset statistics", "`affectkit tasks` lists what each task supports")
    cfg = resolve(spec.Config, config, overrides or [], {})
    if not data.exists():
        raise DataError(data, "no such file or directory")
    result = dict(spec.data_stats(data, cfg))
    flat = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    get_output().result({"task": task, **result}, human=key_value_table(flat, title=f"{task}: {data}"))
