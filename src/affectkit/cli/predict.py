"""`affectkit predict TASK INPUT`: apply a trained run (or, where the task has one, an untrained
method) to new input, one row per frame or window. Rows are written as they come, so a stream
(rppg reading a camera) prints a line per window while it runs."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import typer

from affectkit.cli._common import task_for
from affectkit.cli._task_group import task_group
from affectkit.core.errors import UsageError
from affectkit.core.output import get_output
from affectkit.core.runs import atomic_write_text
from affectkit.core.task import PredictRequest


def _csv_line(row: dict[str, Any], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(row))
    if header:
        writer.writeheader()
    writer.writerow(row)
    return buf.getvalue()


def predict(
    task: str,
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Input (au-fe, rppg: a video; rppg also - or a camera index)."),
    run: Path | None = typer.Option(None, "--run", help="Run directory written by `affectkit train`."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one row per frame or window, then the result) | csv."),
    out: Path | None = typer.Option(None, "--out", help="Write the rows here instead of stdout."),
    *,
    options: tuple[Any, dict[str, Any], dict[str, str]],
) -> None:
    spec = task_for(task, "predict")
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"--format: expected jsonl or csv, got {fmt!r}")
    if checkpoint not in ("best", "last"):
        raise UsageError(f"--checkpoint: expected best or last, got {checkpoint!r}")
    if run is None and spec.predict_needs_run:
        raise UsageError("--run is required", f"pass the --out of `affectkit train {task}`")
    output = get_output()
    result = spec.predict(PredictRequest(run=run, input=input_path, checkpoint=checkpoint, options=options[0]))
    rows, finish = result.pop("rows"), result.pop("finish", None)
    to_stdout = out is None and not (fmt == "jsonl" and output.json_mode)
    kept: list[str] = []
    for i, row in enumerate(rows):
        text = json.dumps(row) + "\n" if fmt == "jsonl" else _csv_line(row, header=i == 0)
        if out is not None:
            kept.append(text)
        elif to_stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            output.event(result.get("row_event", "frame"), **row)
    if finish is not None:
        result.update(finish())
    result.pop("row_event", None)
    if out is not None:
        atomic_write_text(out, "".join(kept))
        result["out"] = str(out)
    summary = {"task": task, **({"run_dir": str(run)} if run is not None else {}), **result}
    message = summary.pop("message", None)
    if output.json_mode and (out is not None or fmt == "jsonl"):
        output.result(summary)
    else:
        output.log((message or f"{task}: predicted {input_path}") + (f"; wrote {out}" if out else ""))


app = task_group("predict", predict, "PredictOptions",
                 "Apply a trained run (or a task's untrained method) to an input; "
                 "`affectkit predict TASK --help` shows the task's own options.")
