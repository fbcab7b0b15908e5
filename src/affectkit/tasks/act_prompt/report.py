"""act-prompt's tables and plots: the per-method comparison (top-1 accuracy, trainable parameters, train
time per epoch, training memory, inference images/s) as rows, a rich table and a PNG of accuracy against
trainable parameters; the layer sweep's PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affectkit.core.report import new_figure, save_png

COLUMNS = (("method", "method"), ("layer", "layer"), ("accuracy", "top-1"), ("val_accuracy", "val top-1"),
           ("trainable_params", "trainable"), ("train_s_per_epoch", "s/epoch"), ("train_memory_mb", "train MB"),
           ("images_per_s", "images/s"))


def comparison_rows(summaries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per method from the runs' summaries (``recipe.adapt``)."""
    rows = []
    for method, s in summaries.items():
        costs = s.get("costs", {})
        rows.append({"method": method, "layer": s.get("layer"), "accuracy": s["accuracy"],
                     "val_accuracy": s["val"]["accuracy"], "trainable_params": int(costs.get("trainable_params", 0)),
                     "train_s_per_epoch": costs.get("train_s_per_epoch"),
                     "train_memory_mb": costs.get("train_memory_mb"), "images_per_s": costs.get("images_per_s")})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def comparison_table(rows: Sequence[Mapping[str, Any]], title: str = "act-prompt: methods compared") -> Any:
    from rich.table import Table

    table = Table(title=title)
    for _, header in COLUMNS:
        table.add_column(header, justify="left" if header == "method" else "right")
    for row in rows:
        table.add_row(*[_cell(row.get(key)) for key, _ in COLUMNS])
    return table


def plot_accuracy_vs_params(path: Path, rows: Sequence[Mapping[str, Any]], title: str = "",
                            errors: Mapping[str, float] | None = None) -> Path | None:
    """Top-1 accuracy against trainable parameters (log scale), one labelled point per row; ``errors``
    (method -> half-width) adds vertical bars. None when no row has both numbers."""
    points = [r for r in rows if r.get("trainable_params") and r.get("accuracy") is not None]
    if not points:
        return None
    fig, ax = new_figure((5.5, 4.0))
    for row in points:
        label = row.get("label") or row["method"]
        err = (errors or {}).get(label)
        ax.errorbar(row["trainable_params"], row["accuracy"], yerr=err, fmt="o", capsize=3)
        ax.annotate(label, (row["trainable_params"], row["accuracy"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("top-1 accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title or "accuracy against trainable parameters", fontsize=10)
    return save_png(fig, path)


def plot_sweep(path: Path, rows: Sequence[Mapping[str, Any]], chosen: int, title: str = "") -> Path:
    """Validation accuracy of AP per candidate layer, the chosen one marked."""
    fig, ax = new_figure((5.0, 3.5))
    layers = [r["layer"] for r in rows]
    ax.plot(layers, [r["accuracy"] for r in rows], marker="o")
    best = next(r for r in rows if r["layer"] == chosen)
    ax.scatter([chosen], [best["accuracy"]], s=120, facecolors="none", edgecolors="red", label=f"chosen: {chosen}")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = input, K = after block K)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "activation prompt: layer sweep", fontsize=10)
    return save_png(fig, path)
