"""Benchmark reports: results.json, report.md (Markdown tables) and PNG bar plots; the figure helpers the
tasks' own plots share (``new_figure``, ``save_png``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affectkit.core.output import format_value
from affectkit.core.runs import atomic_save


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    if not columns:
        return "(empty)\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def numeric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in cols:
                cols.append(key)
    return cols


def label_column(rows: Sequence[Mapping[str, Any]]) -> str | None:
    for key in ("method", "name", "setting", "system", "order"):
        if any(key in r for r in rows):
            return key
    for key, value in (rows[0].items() if rows else ()):
        if isinstance(value, str):
            return key
    return None


def new_figure(size: tuple[float, float] = (6.0, 4.2)) -> tuple[Any, Any]:
    """A pyplot-free Agg figure with one axes: (figure, axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG, atomically; returns the path."""
    path = Path(path)
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def bar_plot(rows: Sequence[Mapping[str, Any]], path: Path, title: str, columns: Sequence[str] | None = None) -> Path | None:
    """One panel per numeric column, one bar per row. Returns the PNG path (None if nothing to plot)."""
    cols = list(columns) if columns else numeric_columns(rows)
    label = label_column(rows)
    cols = [c for c in cols if c != "seed"][:6]
    if not cols or not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r.get(label, i)) if label else str(i) for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols) + 1, 3.2), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=False):
        values = [r.get(col) for r in rows]
        heights = [v if isinstance(v, (int, float)) and math.isfinite(v) else 0.0 for v in values]
        ax.bar(range(len(rows)), heights, color="#4c72b0")
        ax.set_title(col, fontsize=9)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def bench_markdown(task: str, tables: Mapping[str, Sequence[Mapping[str, Any]]], notes: Sequence[str], plots: Sequence[Path], root: Path) -> str:
    lines = [f"## {task}", ""]
    for name, rows in tables.items():
        lines += [f"### {name}", "", markdown_table(rows)]
    for plot in plots:
        lines.append(f"![{plot.stem}]({plot.relative_to(root)})")
    if plots:
        lines.append("")
    for note in notes:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
