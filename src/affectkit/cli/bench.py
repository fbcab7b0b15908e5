"""`affectkit bench`: each task's method against its baselines on its embedded benchmark."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.cli._common import PRECISION_OPTION, SEED_OPTION, task_for
from affectkit.core.output import get_output, rows_table
from affectkit.core.registry import load_task, task_names
from affectkit.core.runs import atomic_write_json, atomic_write_text

app = new_app("Benchmarks.", no_args_is_help=False)


@app.command("bench", help="Run the method and its baselines of each TASK (default: all) on the embedded benchmarks.")
def bench(
    tasks: list[str] | None = typer.Argument(None, help="Tasks to run [default: every task that supports bench]."),
    quick: bool = typer.Option(False, "--quick", help="The short protocol (all tasks in under 10 minutes on 2 cores)."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Directory for results.json, report.md and plots."),
    seed: int = SEED_OPTION,
    precision: str = PRECISION_OPTION,
) -> None:
    from affectkit.core.report import bar_plot, bench_markdown
    from affectkit.core.task import BenchContext

    output = get_output()
    names = list(tasks) if tasks else [n for n in task_names() if "bench" in load_task(n).verbs]
    specs = [task_for(n, "bench") for n in names]
    if not specs:
        output.log("no task supports bench yet")
    out.mkdir(parents=True, exist_ok=True)
    all_results: dict[str, dict] = {}
    report = [f"# affectkit bench ({'quick' if quick else 'full'} protocol, seed {seed})", ""]
    for spec in specs:
        task_dir = out / spec.name
        task_dir.mkdir(parents=True, exist_ok=True)
        output.log(f"bench {spec.name} ({'quick' if quick else 'full'})")
        t0 = time.perf_counter()
        ctx = BenchContext(out_dir=task_dir, quick=quick, seed=seed, output=output, precision=precision)
        result = spec.bench(ctx)
        seconds = round(time.perf_counter() - t0, 1)
        plots = []
        for name, rows in result.tables.items():
            output.table(rows_table(rows, title=f"{spec.name}: {name}"))
            plot = bar_plot(rows, task_dir / f"{_slug(name)}.png", f"{spec.name}: {name}")
            if plot is not None:
                plots.append(plot)
        payload = {"task": spec.name, "seconds": seconds, "tables": result.tables, "notes": result.notes,
                   "extra": result.extra, "plots": [str(p) for p in plots]}
        atomic_write_json(task_dir / "results.json", payload)
        section = bench_markdown(spec.name, result.tables, result.notes, plots, out)
        atomic_write_text(task_dir / "report.md", section)
        report.append(section)
        all_results[spec.name] = payload
        output.event("bench", **payload)
        output.log(f"bench {spec.name}: {seconds}s")
    atomic_write_json(out / "results.json", {"quick": quick, "seed": seed, "tasks": all_results})
    atomic_write_text(out / "report.md", "\n".join(report))
    output.result({"out_dir": str(out), "quick": quick, "tasks": list(all_results),
                   "seconds": {k: v["seconds"] for k, v in all_results.items()}},
                  human=f"wrote {out / 'results.json'} and {out / 'report.md'}")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
