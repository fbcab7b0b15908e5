"""`affectkit tasks`: every registered task, its summary and the verbs it supports."""

from __future__ import annotations

import typer

from affectkit.cli._app import command_errors
from affectkit.core.output import get_output, rows_table
from affectkit.core.registry import load_task, task_names


def register(app: typer.Typer) -> None:
    app.command("tasks", help="List the registered tasks and the verbs each supports.")(tasks)


@command_errors
def tasks() -> None:
    out = get_output()
    rows = []
    for name in task_names():
        task = load_task(name)
        row = {"task": name, "summary": task.summary, "verbs": list(task.verbs)}
        out.event("task", **row)
        rows.append(row)
    human = rows_table([{**r, "verbs": ", ".join(r["verbs"])} for r in rows], title="affectkit tasks")
    if not rows:
        human = "no tasks registered"
    out.result({"tasks": [r["task"] for r in rows]}, human=human)
