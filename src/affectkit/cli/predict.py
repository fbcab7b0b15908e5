"""`affectkit predict TASK --run RUN INPUT`: apply a trained run to new input (e.g. a video)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.cli._common import task_for
from affectkit.core.errors import UsageError
from affectkit.core.output import get_output
from affectkit.core.runs import atomic_write_text
from affectkit.core.task import PredictRequest

app = new_app("Apply a trained run.")


@app.command("predict", help="Apply a trained run to an input file (au-fe: a video -> per-frame AUs + expression).")
def predict(
    task: str = typer.Argument(..., help="Task name (see `affectkit tasks`)."),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Input file (au-fe: a video)."),
    run: Path = typer.Option(..., "--run", help="Run directory written by `affectkit train`."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (one row per frame, then the result) | csv (OpenFace-like)."),
    out: Path | None = typer.Option(None, "--out", help="Write the rows here instead of stdout."),
) -> None:
    spec = task_for(task, "predict")
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"--format: expected jsonl or csv, got {fmt!r}")
    if checkpoint not in ("best", "last"):
        raise UsageError(f"--checkpoint: expected best or last, got {checkpoint!r}")
    output = get_output()
    result = spec.predict(PredictRequest(run=run, input=input_path, checkpoint=checkpoint))
    rows = result.pop("rows")
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["frame"])
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    if out is not None:
        atomic_write_text(out, text)
        result["out"] = str(out)
    elif fmt == "jsonl" and output.json_mode:
        for row in rows:
            output.event("frame", **row)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    summary = {"task": task, "run_dir": str(run), **result}
    if output.json_mode and (out is not None or fmt == "jsonl"):
        output.result(summary)
    else:
        expr = result.get("expression") or {}
        output.log(f"{result['frames']} frames, face found in {result['face_found_frames']}; "
                   f"expression: {expr.get('label', 'n/a')}" + (f"; wrote {out}" if out else ""))
