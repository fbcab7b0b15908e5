"""`affectkit tasks`: every registered task, its summary and the verbs it supports."""

from __future__ import annotations

from affectkit.cli._app import new_app
from affectkit.core.output import get_output, rows_table
from affectkit.core.registry import load_task, task_names

app = new_app("List the registered tasks.", no_args_is_help=False)


@app.command("tasks", help="List the registered tasks and the verbs each supports (their own verbs included).")
def tasks() -> None:
    out = get_output()
    rows = []
    for name in task_names():
        task = load_task(name)
        row = {"task": name, "summary": task.summary, "verbs": list(task.verb_names())}
        out.event("task", **row)
        rows.append(row)
    human = rows_table([{**r, "verbs": ", ".join(r["verbs"])} for r in rows], title="affectkit tasks")
    if not rows:
        human = "no tasks registered"
    out.result({"tasks": [r["task"] for r in rows]}, human=human)
