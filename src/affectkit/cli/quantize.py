"""`affectkit quantize mixtral|switch`: expert-wise mixed-precision quantization of an MoE model."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import command_errors
from affectkit.cli._common import CONFIG_OPTION, SET_OPTION
from affectkit.core.errors import UsageError
from affectkit.core.output import get_output, rows_table

ARCHS = ("mixtral", "switch")


def register(app: typer.Typer) -> None:
    app.command(
        "quantize",
        help=(
            "Quantize a Mixtral or Switch MoE model with per-expert bits (moe-quant). Without --model, the "
            "embedded tiny model (trained on first use, cached). Example: affectkit quantize mixtral --bits auto "
            "--avg-bits 2.5 --levels 3,2 --out q/"
        ),
    )(quantize)


def _levels(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--levels {text!r}: expected integers separated by commas, e.g. 4,3,2") from None


@command_errors
def quantize(
    arch: str = typer.Argument(..., help="mixtral | switch"),
    out: Path = typer.Option(..., "--out", help="Directory to write (safetensors, config.json, report.json)."),
    model: Path | None = typer.Option(None, "--model", help="A transformers model directory [default: embedded tiny model]."),
    bits: str | None = typer.Option(None, "--bits", help="auto (mixed, needs --avg-bits) or 1..8 (uniform)."),
    avg_bits: float | None = typer.Option(None, "--avg-bits", help="Average bits per expert in each MoE layer."),
    levels: str | None = typer.Option(None, "--levels", help="Bit levels, e.g. 3,2 or 4,3,2 (equally spaced)."),
    order: str | None = typer.Option(None, "--order", help="combined | router | variance | inverted | random | frequency | sensitivity"),
    zeta: float | None = typer.Option(None, "--zeta", help="MaxVar factor of the combined order [3.0]."),
    policy: str | None = typer.Option(None, "--policy", help="paper (the authors' count rule) | milp."),
    router_ref: str | None = typer.Option(None, "--router-ref", help="auto | none | init-expected | checkpoint | snapshot."),
    router_ref_path: str | None = typer.Option(None, "--router-ref-path", help="Reference model for --router-ref checkpoint."),
    maxvar: str | None = typer.Option(None, "--maxvar", help="max-row-var | var-of-maxnorm-row."),
    method: str | None = typer.Option(None, "--method", help="gptq | rtn."),
    group_size: int | None = typer.Option(None, "--group-size", help="Columns per scale group (0 = per channel) [128]."),
    attn_bits: int | None = typer.Option(None, "--attn-bits", help="Quantize attention projections to this many bits."),
    quantize_router: bool = typer.Option(False, "--quantize-router", help="Quantize the router too (default: float)."),
    allow_over: bool = typer.Option(False, "--allow-over", help="Allow the achieved average above --avg-bits."),
    calib: str | None = typer.Option(None, "--calib", help="auto | pydoc | stdlib | a UTF-8 text file."),
    nsamples: int | None = typer.Option(None, "--nsamples", help="Calibration windows [64]."),
    seqlen: int | None = typer.Option(None, "--seqlen", help="Calibration window length [128]."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the calibration windows and the random order."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip held-out evaluation before/after."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
) -> None:
    if arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}", "choose mixtral or switch")
    from affectkit.core.config import resolve
    from affectkit.tasks.moe_quant.config import Config

    explicit = {
        "quant.bits": bits, "quant.avg_bits": avg_bits, "quant.levels": _levels(levels), "quant.order": order,
        "quant.zeta": zeta, "quant.policy": policy, "quant.router_ref": router_ref,
        "quant.router_ref_path": router_ref_path, "quant.maxvar": maxvar, "quant.method": method,
        "quant.group_size": group_size, "quant.attn_bits": attn_bits,
        "quant.quantize_router": True if quantize_router else None, "quant.allow_over": True if allow_over else None,
        "quant.calib": calib, "quant.nsamples": nsamples, "quant.seqlen": seqlen, "quant.seed": seed,
    }
    cfg = resolve(Config, config, overrides or [], explicit)
    qc = cfg.quant
    from affectkit.tasks.moe_quant.run import run_quantize, validate

    validate(qc)  # usage errors before any heavy import or training
    output = get_output()
    result = run_quantize(arch, model, qc, out, overwrite=overwrite, evaluate=not no_eval, output=output)
    rows = [{"layer": name, "bits": ",".join(map(str, b))} for name, b in result["expert_bits"].items()]
    output.table(rows_table(rows, title=f"per-expert bits (achieved average {result['achieved_avg_bits']:.3f})"))
    summary = {k: v for k, v in result.items() if k != "expert_bits"}
    output.result({"task": "moe-quant", "run_dir": str(out), **result},
                  human=None if output.json_mode else _human(summary))


def _human(summary: dict):
    from affectkit.core.output import key_value_table

    flat = {}
    for k, v in summary.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                flat[f"{k}.{kk}"] = vv
        else:
            flat[k] = v
    return key_value_table(flat)
