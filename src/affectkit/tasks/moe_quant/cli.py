"""moe-quant's own verb, `affectkit quantize mixtral|switch`: expert-wise mixed-precision
quantization of an MoE model. Each flag sets the ``quant.*`` key it names."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.cli._common import CONFIG_OPTION, SET_OPTION, comma_ints, key_option, with_config
from affectkit.core.errors import UsageError
from affectkit.core.output import get_output, key_value_table, rows_table
from affectkit.tasks.moe_quant.config import Config

ARCHS = ("mixtral", "switch")

app = new_app("Quantize an MoE model (moe-quant).")


@app.command(
    "quantize",
    help=(
        "Quantize a Mixtral or Switch MoE model with per-expert bits (moe-quant). Without --model, the "
        "embedded tiny model (trained on first use, cached). Example: affectkit quantize mixtral --bits auto "
        "--avg-bits 2.5 --levels 3,2 --out q/"
    ),
)
@with_config(Config)
def quantize(
    arch: str = typer.Argument(..., help="mixtral | switch"),
    out: Path = typer.Option(..., "--out", help="Directory to write (safetensors, config.json, report.json)."),
    model: Path | None = typer.Option(None, "--model", help="A transformers model directory [default: embedded tiny model]."),
    bits: str | None = key_option("quant.bits", "--bits", help="auto (mixed, needs --avg-bits) or 1..8 (uniform)."),
    avg_bits: float | None = key_option("quant.avg_bits", "--avg-bits", help="Average bits per expert in each MoE layer."),
    levels: str | None = key_option("quant.levels", "--levels", parse=comma_ints("--levels"),
                                    help="Bit levels, e.g. 3,2 or 4,3,2 (equally spaced)."),
    order: str | None = key_option("quant.order", "--order",
                                   help="combined | router | variance | inverted | random | frequency | sensitivity"),
    zeta: float | None = key_option("quant.zeta", "--zeta", help="MaxVar factor of the combined order [3.0]."),
    policy: str | None = key_option("quant.policy", "--policy", help="paper (the authors' count rule) | milp."),
    router_ref: str | None = key_option("quant.router_ref", "--router-ref",
                                        help="auto | none | init-expected | checkpoint | snapshot."),
    router_ref_path: str | None = key_option("quant.router_ref_path", "--router-ref-path",
                                             help="Reference model for --router-ref checkpoint."),
    maxvar: str | None = key_option("quant.maxvar", "--maxvar", help="max-row-var | var-of-maxnorm-row."),
    method: str | None = key_option("quant.method", "--method", help="gptq | rtn."),
    group_size: int | None = key_option("quant.group_size", "--group-size", help="Columns per scale group (0 = per channel) [128]."),
    attn_bits: int | None = key_option("quant.attn_bits", "--attn-bits", help="Quantize attention projections to this many bits."),
    quantize_router: bool = key_option("quant.quantize_router", "--quantize-router", value=True,
                                       help="Quantize the router too (default: float)."),
    allow_over: bool = key_option("quant.allow_over", "--allow-over", value=True,
                                  help="Allow the achieved average above --avg-bits."),
    calib: str | None = key_option("quant.calib", "--calib", help="auto | pydoc | stdlib | a UTF-8 text file."),
    nsamples: int | None = key_option("quant.nsamples", "--nsamples", help="Calibration windows [64]."),
    seqlen: int | None = key_option("quant.seqlen", "--seqlen", help="Calibration window length [128]."),
    seed: int | None = key_option("quant.seed", "--seed", help="Seed of the calibration windows and the random order."),
    fmt: str = typer.Option("native", "--format",
                            help="native (affectkit's, reloads with load_quantized) | gptq (GPTQ with per-module bits "
                                 "in GPTQModel's dynamic config, Mixtral; levels among 2,3,4,8)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip held-out evaluation before/after."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = SET_OPTION,
    *,
    cfg: Config,
) -> None:
    if arch not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}", "choose mixtral or switch")
    qc = cfg.quant
    from affectkit.tasks.moe_quant.quantize import FORMATS, run_quantize, validate

    _, levels = validate(qc)  # usage errors before any heavy import or training
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected native or gptq")
    if fmt == "gptq":
        from affectkit.tasks.moe_quant.gptq_format import precheck

        precheck(arch, levels, qc, {})
    output = get_output()
    result = run_quantize(arch, model, qc, out, overwrite=overwrite, evaluate=not no_eval, output=output, fmt=fmt)
    rows = [{"layer": name, "bits": ",".join(map(str, b))} for name, b in result["expert_bits"].items()]
    output.table(rows_table(rows, title=f"per-expert bits (achieved average {result['achieved_avg_bits']:.3f})"))
    summary = {k: v for k, v in result.items() if k != "expert_bits"}
    output.result({"task": "moe-quant", "run_dir": str(out), **result},
                  human=None if output.json_mode else _human(summary))


def _human(summary: dict):
    flat = {}
    for k, v in summary.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                flat[f"{k}.{kk}"] = vv
        else:
            flat[k] = v
    return key_value_table(flat)
