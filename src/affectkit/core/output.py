"""One sink for everything a command prints.

stdout carries data: one JSON object per line with ``--json`` (the last one ``{"event": "result"}``),
or a human table. stderr carries messages for people: logs, warnings, progress bars. Only the main
process (rank 0) prints anything, and progress bars switch off when stderr is not a terminal.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def is_main_process() -> bool:
    """True on rank 0 (or without a launcher). Uses the launcher's env so torch need not load."""
    return int(os.environ.get("RANK", "0")) == 0


def to_jsonable(value: Any) -> Any:
    """Convert numpy / torch scalars, Paths and non-finite floats into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    return str(value)


@dataclass
class Output:
    json_mode: bool = False
    quiet: bool = False
    verbosity: int = 0
    debug: bool = False
    stdout: Any = field(default=None, repr=False)
    stderr: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._out = self.stdout or sys.stdout
        self._err = Console(file=self.stderr or sys.stderr, highlight=False, soft_wrap=True)

    # ---- data on stdout -------------------------------------------------------------------
    def event(self, event: str, **fields: Any) -> None:
        """A machine-readable line (only with --json); people see nothing."""
        if self.json_mode and is_main_process():
            self._write_json({"event": event, **fields})

    def result(self, fields: Mapping[str, Any], human: str | Table | None = None) -> None:
        """The final result: a JSON line with --json, else ``human`` (or a key/value table)."""
        if not is_main_process():
            return
        if self.json_mode:
            self._write_json({"event": "result", **fields})
            return
        if human is None:
            human = key_value_table(fields)
        self._stdout_console().print(human)

    def table(self, table: Table) -> None:
        """A human table on stdout (skipped with --json, where the data goes in events)."""
        if self.json_mode or not is_main_process():
            return
        self._stdout_console().print(table)

    def _stdout_console(self) -> Console:
        """Tables on stdout; when stdout is a file or a pipe, wide enough that columns are not cut."""
        console = Console(file=self._out, highlight=False, soft_wrap=True)
        if not console.is_terminal:
            console = Console(file=self._out, highlight=False, soft_wrap=True, width=240)
        return console

    def _write_json(self, obj: Mapping[str, Any]) -> None:
        self._out.write(json.dumps(to_jsonable(obj), sort_keys=False) + "\n")
        self._out.flush()

    # ---- messages on stderr ---------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.quiet and is_main_process():
            self._err.print(message, markup=False)

    def info(self, message: str) -> None:
        if self.verbosity >= 1 and not self.quiet and is_main_process():
            self._err.print(message, markup=False)

    def warn(self, message: str) -> None:
        if is_main_process():
            self._err.print(f"Warning: {message}", markup=False, style="yellow")

    def error(self, message: str, hint: str | None = None) -> None:
        """One ``Error:`` line and one ``Hint:`` line; printed by every rank (errors are rare)."""
        self._err.print(f"Error: {message}", markup=False, style="bold red", soft_wrap=True)
        if hint:
            self._err.print(f"Hint: {hint}", markup=False, soft_wrap=True)

    @property
    def console(self) -> Console:
        return self._err

    # ---- progress on stderr ---------------------------------------------------------------
    def progress_enabled(self) -> bool:
        return not self.quiet and is_main_process() and self._err.is_terminal

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[ProgressHandle]:
        """A rich progress bar on stderr; a no-op handle when stderr is not a terminal."""
        if not self.progress_enabled():
            # no terminal to draw on: a log line when the phase starts, at each quarter, and at its end
            phase = PhaseLog(self, description, total)
            yield ProgressHandle(None, None, phase)
            phase.finish()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self._err,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
        )
        with bar:
            task_id = bar.add_task(description, total=total, status="")
            yield ProgressHandle(bar, task_id)

    def track(self, items: Iterable[Any], description: str, total: int | None = None) -> Iterator[Any]:
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        with self.progress(description, total) as handle:
            for item in items:
                yield item
                handle.advance()


class PhaseLog:
    """Progress as a few log lines, for a log file: where a long phase is, without a bar."""

    def __init__(self, output: Output, description: str, total: int | None):
        self.output, self.description, self.total = output, description, total
        self.done, self.status, self.reported = 0, "", -1
        if self._on():
            output.log(f"{description}: started" + (f" (0/{total})" if total else ""))

    def _on(self) -> bool:
        return not self.output.quiet and is_main_process()

    def move(self, done: int, status: str | None) -> None:
        self.done = done
        if status:
            self.status = status
        if not self.total or not self._on():
            return
        quarter = 4 * self.done // self.total
        if 0 < quarter < 4 and quarter > self.reported:
            self.reported = quarter
            self.output.log(f"{self.description}: {self.done}/{self.total}" + (f", {self.status}" if self.status else ""))

    def finish(self) -> None:
        if self._on():
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
            self.output.log(f"{self.description}: done ({count}" + (f", {self.status})" if self.status else ")"))


class ProgressHandle:
    def __init__(self, bar: Any, task_id: Any, phase: PhaseLog | None = None):
        self._bar = bar
        self._task_id = task_id
        self._phase = phase

    def advance(self, n: int = 1, status: str | None = None) -> None:
        if self._phase is not None:
            self._phase.move(self._phase.done + n, status)
        if self._bar is not None:
            kwargs = {"status": status} if status is not None else {}
            self._bar.update(self._task_id, advance=n, **kwargs)

    def update(self, completed: int | None = None, status: str | None = None, total: int | None = None) -> None:
        """Set the count done (and the total, when it becomes known only once the work has started)."""
        if self._phase is not None:
            if total is not None:
                self._phase.total = total
            self._phase.move(self._phase.done if completed is None else completed, status)
        if self._bar is not None:
            kwargs: dict[str, Any] = {} if total is None else {"total": total}
            if completed is not None:
                kwargs["completed"] = completed
            if status is not None:
                kwargs["status"] = status
            self._bar.update(self._task_id, **kwargs)


def key_value_table(fields: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in fields.items():
        table.add_row(str(key), format_value(value))
    return table


def rows_table(rows: list[Mapping[str, Any]], title: str | None = None) -> Table:
    """A table with one row per mapping; columns are the union of keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    table = Table(title=title)
    for col in columns:
        numeric = all(isinstance(r.get(col), (int, float)) or r.get(col) is None for r in rows)
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(format_value(row.get(c, "")) for c in columns))
    return table


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


_OUTPUT = Output()


def get_output() -> Output:
    return _OUTPUT


def set_output(output: Output) -> Output:
    global _OUTPUT
    _OUTPUT = output
    return output
