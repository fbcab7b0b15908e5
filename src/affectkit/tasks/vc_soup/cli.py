"""vc-soup's own verbs: ``affectkit filter-prefs`` (value-consistency filtering of preference pairs)
and ``affectkit merge`` (linear weight merging of policies, mergekit-compatible)."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from affectkit.cli._app import new_app
from affectkit.cli._common import key_option, with_config
from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import get_output
from affectkit.tasks.vc_soup.config import Config

DEFAULT_VALUES = ("helpful", "harmless")  # filter-prefs's values without --values or a recipe


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, backend = item.partition("=")
        if not sep or not name.strip() or not backend.strip():
            raise UsageError(f"{flag} {item!r}: expected VALUE=BACKEND", f"for example {flag} harmless=vader")
        out[name.strip()] = backend.strip()
    return out


def _names(text: str) -> list[str] | None:
    """``--values a,b``; an empty list leaves the key as the recipe (or the default) has it."""
    return [v.strip() for v in text.split(",") if v.strip()] or None


def _listed(items: list[str]) -> list[str] | None:
    """A repeatable flag given zero times leaves the key as the recipe has it."""
    return list(items) or None


def _ranged(key: str, flag: str) -> Callable[[float], float]:
    """A ``parse`` that checks the flag against the range the config field ``key`` declares, so the
    error names the flag."""
    meta = {f.name: f.metadata for f in dataclasses.fields(Config)}[key]
    low, high = meta.get("min"), meta.get("max")

    def parse(value: float) -> float:
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            raise UsageError(f"{flag} {value}: must be a number between {low} and {high}", f"see `affectkit config vc-soup` ({key})")
        return value

    return parse


def _writable_file(path: str | Path | None, flag: str) -> None:
    """Refuse an output path that is a directory before any work."""
    if path is not None and str(path) != "-" and Path(path).is_dir():
        raise UsageError(f"{flag} {path}: is a directory", "give a file name")


filter_prefs_app = new_app("Value-consistency filtering of preference pairs (vc-soup).")


@filter_prefs_app.command("filter-prefs")
@with_config(Config)
def filter_prefs_cmd(
    source: str = typer.Argument(..., metavar="IN", help="JSONL/JSON(.gz), parquet, an HF dataset directory, or - for stdin."),
    values: str | None = key_option("values", "--values", parse=_names, help="Comma-separated value names, one reward model each [default: helpful,harmless, or the recipe's]."),
    reward: list[str] = typer.Option([], "--reward", help="VALUE=BACKEND (repeatable): precomputed, precomputed:COL_C,COL_R, vader, minilm-relevance, brevity[:N], profanity, hf-seqcls:PATH, python:MOD:FN."),
    cost_model: list[str] | None = key_option("cost_models", "--cost-model", parse=_listed, help="Value whose reward model is a cost (lower is better); its scores are negated first (repeatable)."),
    threshold: float | None = key_option("threshold", "--threshold", parse=_ranged("threshold", "--threshold"), help="Keep pairs with consistency >= T (inclusive; default 0.0)."),
    keep_ratio: float | None = key_option("keep_ratio", "--keep-ratio", parse=_ranged("keep_ratio", "--keep-ratio"), help="Keep the top ceil(Q*N) pairs by consistency per value dataset (ties: input order)."),
    out: str = typer.Option("-", "--out", "-o", help="Output JSONL (default: stdout)."),
    stats: Path | None = typer.Option(None, "--stats", help="Write the statistics JSON here."),
    fmt: str = typer.Option("auto", "--format", help="Input format: auto, canonical, hh-rlhf, pku-saferlhf, ultrafeedback, helpsteer2, summarize-feedback."),
    split: str | None = typer.Option(None, "--split", help="Split of an HF dataset directory (default train)."),
    value_tag: str | None = typer.Option(None, "--dataset-value", help="Value the labels were collected for, when rows carry no 'value' field (default: the first value)."),
    template: str = typer.Option("{prompt}{response}", "--template", help="Reward-model input for hf-seqcls: a template with {prompt} and {response}, or response-only."),
    min_margin: float = typer.Option(1.0, "--min-margin", help="Importers with ratings (UltraFeedback, HelpSteer2): least rating difference for a pair (>= 0)."),
    keep_all: bool = typer.Option(False, "--keep-all", help="Write every valid row with a 'kept' flag instead of the kept rows only."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first invalid row instead of counting and skipping."),
    cache: Path | None = typer.Option(None, "--cache", help="JSONL file caching backend scores by text hash (one file per value)."),
    device: str = typer.Option("cpu", "--device", help="Device for model backends."),
    config: Path | None = typer.Option(None, "--config", help="A vc-soup recipe (values, rewards, cost_models, threshold, keep_ratio); flags win."),
    *,
    cfg: Config,
) -> None:
    """Score, z-normalise and keep value-consistent preference pairs."""
    from affectkit.core.runs import atomic_save, atomic_write_json
    from affectkit.tasks.vc_soup.data import dumps_row, read_rows, to_canonical
    from affectkit.tasks.vc_soup.filtering import FilterSpec, filter_prefs

    output = get_output()
    # cfg: the recipe (--config) with the flags on top; --reward adds to the recipe's rewards
    rewards = {**cfg.rewards, **_pairs(reward, "--reward")}
    vals = tuple(cfg.values) if (config is not None or _names(values or "")) else DEFAULT_VALUES
    if threshold is None and keep_ratio is None:  # neither flag: the recipe's rule (default: c >= 0.0)
        if cfg.keep_ratio > 0:
            keep_ratio = cfg.keep_ratio
        else:
            threshold = cfg.threshold
    spec = FilterSpec(
        values=vals, rewards=rewards, cost_models=tuple(cfg.cost_models),
        threshold=threshold, keep_ratio=keep_ratio, template=template, keep_all=keep_all,
        strict=strict, device=device, cache=cache,
    )
    spec.validate()
    if not (math.isfinite(min_margin) and min_margin >= 0):
        raise UsageError(f"--min-margin {min_margin}: must be a number >= 0")
    _writable_file(out, "--out")
    _writable_file(stats, "--stats")
    rows = read_rows(source, split)
    where = "<stdin>" if source == "-" else source
    if not rows:
        raise DataError(where, "no rows (the input is empty)", "filter-prefs needs preference pairs, one JSON object per line")
    n_read = len(rows)
    rows, detected = to_canonical(rows, fmt, vals, value_tag, min_margin)
    if not rows:
        raise DataError(where, f"no preference pairs in {n_read} {detected} rows for values {','.join(vals)}",
                        "lower --min-margin, or check --values and --format")
    output.info(f"read {len(rows)} rows ({detected}) from {source}")
    kept, st = filter_prefs(rows, spec, source=str(source), progress=output.log)
    st["format"] = detected
    if st["n_dropped_invalid"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in st["invalid_reasons"].items())
        output.warn(f"skipped {st['n_dropped_invalid']} invalid rows ({reasons})")
    output.log(f"kept {st['kept']} of {st['n_valid']} valid pairs (ratio {st['ratio']:.4f})" if st["n_valid"] else "no rows")

    def write(fh) -> None:
        for row in kept:
            fh.write(dumps_row(row))
            fh.write("\n")

    if out == "-":
        write(sys.stdout)
        sys.stdout.flush()
    else:
        def writer(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                write(fh)

        atomic_save(Path(out), writer)
    if stats is not None:
        atomic_write_json(stats, st)
    if out != "-":
        output.result({k: st.get(k) for k in ("n_rows", "n_valid", "n_dropped_invalid", "kept", "ratio", "consistency_mean", "sign_agreement_rate")}
                      | {"out": out, "stats": str(stats) if stats else None})


def _floats(text: str) -> list[float]:
    try:
        ws = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--weights {text!r}: expected comma-separated numbers", "for example --weights 0.3,0.7") from None
    if not all(math.isfinite(w) for w in ws):
        raise UsageError(f"--weights {text!r}: every weight must be a finite number", "for example --weights 0.3,0.7")
    return ws


merge_app = new_app("Linear merging of policies (vc-soup).")


@merge_app.command("merge")
def merge_cmd(
    models: list[str] = typer.Argument(None, metavar="MODEL...", help="Model directories or .safetensors files (or LoRA adapter directories)."),
    weights: str | None = typer.Option(None, "--weights", help="One weight per model, comma-separated: 0.3,0.7."),
    space: str | None = typer.Option(None, "--space", help="full | delta | lora-factors [default: full, or the recipe's]."),
    normalize: bool | None = typer.Option(None, "--normalize/--no-normalize", help="Divide the weights by their sum [default: off; on for mergekit YAML without the key]."),
    base: Path | None = typer.Option(None, "--base", help="Base model (needed for --space delta and for adapters in full space)."),
    config: Path | None = typer.Option(None, "--config", help="A mergekit YAML (merge_method: linear) instead of MODEL... and --weights, or a vc-soup recipe (merge_space)."),
    write_config: Path | None = typer.Option(None, "--write-config", help="Also write the merge as mergekit YAML here."),
    out_dtype: str | None = typer.Option(None, "--out-dtype", help="Cast the result (default: keep the input dtype)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files in an existing non-empty --out."),
) -> None:
    """Linearly combine model weights: sum_i w_i theta_i, in full, delta or LoRA-factor space."""
    import time

    from affectkit.core.config import load_yaml
    from affectkit.core.runs import atomic_write_text
    from affectkit.tasks.vc_soup.merge_io import (
        merge_models,
        mergekit_yaml,
        read_mergekit_yaml,
        save_merged,
        torch_dtype,
    )

    output = get_output()
    base_model = str(base) if base else None
    if config is not None and "merge_method" not in load_yaml(config):
        from affectkit.core.config import resolve

        space = space or resolve(Config, config).merge_space
        config = None
    space = space or "full"
    if config is not None:
        if models or weights:
            raise UsageError("--config replaces MODEL... and --weights; give one or the other")
        mk = read_mergekit_yaml(config)
        models, ws = mk["models"], mk["weights"]
        norm = mk["normalize"] if normalize is None else normalize
        out_dtype = out_dtype or mk["out_dtype"]
        base_model = base_model or mk["base_model"]
    else:
        if not models:
            raise UsageError("no models given", "affectkit merge A B --weights 0.5,0.5 --out DIR")
        if weights is None:
            raise UsageError("--weights is required", f"give {len(models)} comma-separated weights")
        ws = _floats(weights)
        if len(ws) != len(models):
            raise UsageError(f"--weights {weights!r}: {len(ws)} weights for {len(models)} models", "give one weight per model")
        norm = bool(normalize)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file", "give a directory name")
    if out.exists() and out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"{out}: output directory is not empty", "pass --overwrite or choose another --out")
    _writable_file(write_config, "--write-config")
    dtype = torch_dtype(out_dtype)
    t0 = time.perf_counter()
    tensors, source = merge_models(models, ws, space=space, normalize=norm, base=base_model)
    adapter = space == "lora-factors"
    yaml_text = mergekit_yaml(models, ws, norm, out_dtype, base_model if space == "delta" else None)
    path = save_merged(tensors, out, source, adapter, yaml_text, dtype)
    if not adapter and not (out / "config.json").is_file():
        output.warn(f"{source.path}: no config.json to copy, so {out} holds only the weights (transformers cannot load it alone)")
    if write_config is not None:
        atomic_write_text(write_config, yaml_text)
    n_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    secs = time.perf_counter() - t0
    output.log(f"merged {len(models)} models ({space}, normalize={norm}) into {path}")
    output.result({"out": str(out), "file": str(path), "space": space, "normalize": norm, "weights": ws,
                   "models": [str(m) for m in models], "tensors": len(tensors), "bytes": n_bytes, "seconds": round(secs, 3)})
