"""``affectkit merge``: linear weight merging of policies (soups), mergekit-compatible."""

from __future__ import annotations

from pathlib import Path

import typer

from affectkit.cli._app import command_errors
from affectkit.core.errors import UsageError
from affectkit.core.output import get_output


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--weights {text!r}: expected comma-separated numbers", "for example --weights 0.3,0.7") from None


def register(app: typer.Typer) -> None:
    @app.command("merge")
    @command_errors
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
        from affectkit.tasks.vc_soup.merging import (
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
            from affectkit.tasks.vc_soup.config import Config

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
            norm = bool(normalize)
        if out.exists() and out.is_dir() and any(out.iterdir()) and not overwrite:
            raise UsageError(f"{out}: output directory is not empty", "pass --overwrite or choose another --out")
        dtype = torch_dtype(out_dtype)
        t0 = time.perf_counter()
        tensors, source = merge_models(models, ws, space=space, normalize=norm, base=base_model)
        adapter = space == "lora-factors"
        yaml_text = mergekit_yaml(models, ws, norm, out_dtype, base_model if space == "delta" else None)
        path = save_merged(tensors, out, source, adapter, yaml_text, dtype)
        if write_config is not None:
            atomic_write_text(write_config, yaml_text)
        n_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        secs = time.perf_counter() - t0
        output.log(f"merged {len(models)} models ({space}, normalize={norm}) into {path}")
        output.result({"out": str(out), "file": str(path), "space": space, "normalize": norm, "weights": ws,
                       "models": [str(m) for m in models], "tensors": len(tensors), "bytes": n_bytes, "seconds": round(secs, 3)})
