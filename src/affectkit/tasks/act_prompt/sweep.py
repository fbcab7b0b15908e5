"""``layer=auto``: AP's layer chosen by a short validation sweep. Every candidate layer (``sweep.layers``,
default every block 1..L) trains ``sweep.steps`` steps from the same seed and is scored on the validation
split; the highest validation accuracy wins, ties going to the deeper layer (cheaper: fewer activations
kept for backward). The table goes to ``sweep.json`` / ``sweep.csv`` and ``sweep.png`` in the run
directory; ``sweep.json`` is rewritten after each candidate, so a resumed run keeps the layers done."""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path
from typing import Any

from affectkit.core.errors import UsageError
from affectkit.core.output import Output

SWEEP_FILE = "sweep"


def candidates(cfg: Any, num_layers: int) -> list[int]:
    layers = list(cfg.sweep.layers) or list(range(1, num_layers + 1))
    bad = [k for k in layers if not 0 <= int(k) <= num_layers]
    if bad:
        raise UsageError(f"sweep.layers: {bad} out of range 0..{num_layers} (0 = the input, K = after block K)")
    return sorted({int(k) for k in layers})


def sweep_settings(cfg: Any) -> dict[str, Any]:
    """What a saved sweep must match to be reused."""
    from affectkit.core.config import to_dict

    settings = to_dict(cfg)
    settings.pop("layer")
    return settings


def candidate_config(cfg: Any, layer: int) -> Any:
    trial = copy.deepcopy(cfg)
    trial.layer = str(layer)
    trial.train.max_steps = cfg.sweep.steps
    trial.train.eval_every = cfg.sweep.steps
    trial.train.early_stop_patience = 0
    return trial


def choose(rows: list[dict[str, Any]]) -> int:
    return max(rows, key=lambda r: (r["accuracy"], r["layer"]))["layer"]


def run_sweep(cfg: Any, data_dir: Path, seed: int, out: Any, accelerator: Any,
              run_path: Path | None) -> tuple[int, list[dict[str, Any]]]:
    """(the chosen layer, the sweep's rows: layer, validation accuracy and loss, trainable entries)."""
    from affectkit.core.loop import fit
    from affectkit.core.runs import atomic_write_json, atomic_write_text, read_json
    from affectkit.tasks.act_prompt.baselines import count_trainable
    from affectkit.tasks.act_prompt.train import ActPromptLoop, load_configured_backbone

    num_layers = load_configured_backbone(cfg).num_layers
    layers = candidates(cfg, num_layers)
    settings = sweep_settings(cfg)
    saved_path = run_path / f"{SWEEP_FILE}.json" if run_path is not None else None
    rows: list[dict[str, Any]] = []
    if saved_path is not None and saved_path.is_file():
        saved = read_json(saved_path)
        if saved.get("settings") == settings:
            rows = [r for r in saved.get("rows", []) if r["layer"] in layers]
    loop = ActPromptLoop()
    bundle = loop.build_data(cfg, data_dir)
    quiet = Output(quiet=True)
    out.log(f"layer sweep: {len(layers)} candidate layers x {cfg.sweep.steps} steps on {cfg.data.eval_split}")
    with out.progress("act-prompt layer sweep", total=len(layers)) as bar:
        for layer in layers:
            if not any(r["layer"] == layer for r in rows):
                trial = candidate_config(cfg, layer)
                fitted = fit(loop, trial, bundle, accelerator, quiet, seed)
                rows.append({"layer": layer, "accuracy": fitted.metrics["accuracy"], "loss": fitted.metrics["loss"],
                             "trainable_params": count_trainable(fitted.model.prompt)})
                rows.sort(key=lambda r: r["layer"])
                if saved_path is not None and accelerator.is_main_process:
                    atomic_write_json(saved_path, {"settings": settings, "rows": rows, "chosen": None})
            row = next(r for r in rows if r["layer"] == layer)
            out.log(f"layer sweep: layer {layer}: validation accuracy {row['accuracy']:.4f}")
            bar.advance(status=f"layer {layer}: {row['accuracy']:.3f}")
    chosen = choose(rows)
    out.log(f"layer sweep: chose layer {chosen}")
    if run_path is not None and accelerator.is_main_process:
        from affectkit.tasks.act_prompt.report import plot_sweep

        atomic_write_json(saved_path, {"settings": settings, "rows": rows, "chosen": chosen})
        atomic_write_text(run_path / f"{SWEEP_FILE}.csv", rows_csv(rows))
        plot_sweep(run_path / f"{SWEEP_FILE}.png", rows, chosen)
    return chosen, rows


def rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
