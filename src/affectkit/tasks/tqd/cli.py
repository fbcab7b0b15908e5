"""tqd's data verb, `affectkit data score-videos DIR|CSV [--out meta.csv]`: motion and visual-quality
scores and a data type per video, written as an Open-Sora-compatible meta CSV (``path, text, aes,
flow`` plus ``vq, type``). Streaming, one video at a time; unreadable videos are reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.core.errors import UsageError
from affectkit.core.output import get_output, key_value_table

app = new_app("Score videos for TQD (tqd).")


def default_out(source: Path) -> Path:
    """``DIR/meta.csv`` for a folder, ``NAME_scored.csv`` beside a CSV (the input is never overwritten)."""
    return source / "meta.csv" if source.is_dir() else source.with_name(f"{source.stem}_scored.csv")


@app.command(
    "score-videos",
    help=(
        "Score every video of a folder (recursively) or of a meta CSV's path column: motion (optical flow at "
        "a fixed resolution and frame rate) and visual quality (sharpness, high-frequency energy, blockiness, "
        "noise, or a plugged-in model), then type each clip golden / motion / quality / low by percentiles. "
        "Example: affectkit data score-videos clips/ --out meta.csv"
    ),
)
def score_videos(
    source: Path = typer.Argument(..., help="A folder of videos, or a meta CSV with a path column."),
    out: Path | None = typer.Option(None, "--out", help="Meta CSV to write [default: DIR/meta.csv or NAME_scored.csv]."),
    method: str = typer.Option("farneback", "--method", help="farneback (mean flow) | vbench (top-5 % flow, VBench)."),
    size: int = typer.Option(256, "--size", min=16, help="Processing short side in pixels (never upsampled)."),
    fps: float = typer.Option(8.0, "--fps", min=0.1, help="Frames per second sampled (VBench uses 8)."),
    vq_model: str | None = typer.Option(None, "--vq-model",
                                        help="A quality predictor: a registered name or module:attr (local weights)."),
    motion_pct: float = typer.Option(70, "--motion-pct", min=0, max=100, help="Motion-rich: flow >= this percentile."),
    quality_pct: float = typer.Option(70, "--quality-pct", min=0, max=100, help="High quality: vq >= this percentile."),
    low_pct: float = typer.Option(50, "--low-pct", min=0, max=100,
                                  help="Motion-rich needs vq <= this percentile, high quality flow <= it."),
    on_error: str = typer.Option("report", "--on-error",
                                 help="report (keep the row, empty scores) | skip (drop it) | raise (stop)."),
    max_frames: int | None = typer.Option(None, "--max-frames", min=2, help="Score at most this many sampled frames."),
) -> None:
    from affectkit.tasks.tqd.scoring import score_videos as run

    if on_error not in ("report", "skip", "raise"):
        raise UsageError(f"--on-error: expected report, skip or raise, got {on_error!r}")
    if method not in ("farneback", "vbench"):
        raise UsageError(f"--method: expected farneback or vbench, got {method!r}")
    output = get_output()
    target = out or default_out(source)
    output.log(f"scoring {source} -> {target}")
    with output.progress("scoring videos") as bar:
        def advance(i: int, n: int, path: str) -> None:
            bar.update(completed=i, status=Path(path).name, total=n)

        summary = run(source, target, size=size, fps=fps, method=method, output=output, on_error=on_error,
                      progress=advance, vq_model=vq_model, motion_pct=motion_pct, quality_pct=quality_pct,
                      low_pct=low_pct, max_frames=max_frames)
    flat = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
    flat.update({f"type {k}": v for k, v in summary["types"].items()})
    output.result(summary, human=key_value_table(flat, title=f"scored {summary['n_scored']} of {summary['n_videos']} videos"))
