"""`affectkit config TASK`: the task's full default config as commented YAML."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.core.config import to_yaml
from affectkit.core.output import get_output
from affectkit.core.registry import load_task
from affectkit.core.runs import atomic_write_text

app = new_app("Print a task's config.")


@app.command("config", help="Print (or write) a task's default config as commented YAML.")
def config(
    task: str = typer.Argument(..., help="Task name (see `affectkit tasks`)."),
    out: Path | None = typer.Option(None, "--out", help="Write the YAML here instead of stdout."),
) -> None:
    spec = load_task(task)
    text = to_yaml(spec.Config())
    output = get_output()
    if out is None and not output.json_mode:
        typer.echo(text, nl=False)
        return
    if out is not None:
        atomic_write_text(out, text)
        output.log(f"wrote {out}")
    output.result({"task": task, "path": str(out) if out else None, "yaml": None if out else text})
