"""The files of ``affectkit merge``: safetensors checkpoints and LoRA adapter directories in, the soup
(weights plus the configs and tokenizer of the first input, or of ``--base`` in delta space, as
mergekit does) out, and mergekit's ``linear`` YAML both ways. The arithmetic is in ``method_merging``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.method_merging import (
    Loaded,
    check_finite,
    check_inputs,
    combine,
    first_nonfinite,
    merge_weights,
    refuse_nonfinite,
)

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
COPY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json")


def _weights_file(p: Path) -> list[Path]:
    if p.is_file():
        if p.suffix != ".safetensors":
            raise DataError(p, "expected a .safetensors file or a model directory", "weights are read as safetensors only")
        return [p]
    if not p.exists():
        raise DataError(p, "model not found")
    for name in (ADAPTER_FILE, "model.safetensors"):
        if (p / name).is_file():
            return [p / name]
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as exc:
            raise DataError(index, f"bad shard index ({exc})") from None
        return [p / s for s in shards]
    raise DataError(p, "no model.safetensors, sharded index or adapter_model.safetensors in the directory",
                    "pickled .bin checkpoints are not read; convert them to safetensors")


def load_model(path: str | Path) -> Loaded:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    tensors: dict[str, Any] = {}
    files: dict[str, Path] = {}
    for f in _weights_file(p):
        try:
            part = load_file(str(f))
        except (SafetensorError, OSError) as exc:
            raise DataError(f, f"cannot read safetensors ({exc})") from None
        if not part:
            raise DataError(f, "holds no tensors")
        tensors.update(part)
        files.update(dict.fromkeys(part, f))
    is_adapter = any(".lora_A." in k for k in tensors)
    cfg = None
    if is_adapter and p.is_dir() and (p / ADAPTER_CONFIG).is_file():
        try:
            cfg = json.loads((p / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(p / ADAPTER_CONFIG, f"invalid JSON ({exc.__class__.__name__})") from None
        if not isinstance(cfg, dict):
            raise DataError(p / ADAPTER_CONFIG, "expected a JSON object")
    return Loaded(p, tensors, is_adapter, cfg, files)


def merge_models(paths: Sequence[str | Path], weights: Sequence[float], space: str = "full", normalize: bool = False, base: str | Path | None = None) -> tuple[dict[str, Any], Loaded]:
    """Merge the checkpoints at ``paths``; returns (tensors, the input whose configs to copy) for saving."""
    w = merge_weights(len(paths), weights, space, normalize)
    models = [load_model(p) for p in paths]
    check_inputs(models)
    base_m = load_model(base) if base is not None and space != "lora-factors" else None
    if base_m is not None:  # the base does not always reach the result (delta space, weights summing to 1)
        refuse_nonfinite(base_m)
    merged, source = combine(models, w, space, base_m)
    check_finite(merged, models)
    return merged, source


def save_merged(tensors: Mapping[str, Any], out: Path, source: Loaded, adapter: bool, config_yaml: str | None = None, out_dtype: Any = None) -> Path:
    """Write ``model.safetensors`` (or ``adapter_model.safetensors``), the configs and tokenizer of
    ``source`` and the mergekit YAML into ``out``, all or nothing: the files are written into a
    temporary directory beside ``out`` and moved into place only when every one is complete."""
    import os

    from safetensors.torch import save_file

    from affectkit.core.runs import staging_dir

    out = Path(out)
    data = {k: (v.to(out_dtype) if out_dtype is not None else v).contiguous() for k, v in sorted(tensors.items())}
    bad = first_nonfinite(data) if out_dtype is not None else None
    if bad is not None:
        raise UsageError(f"--out-dtype: the merged tensor {bad!r} overflows {out_dtype}", "choose a wider --out-dtype")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file", "give a directory name")
    name = ADAPTER_FILE if adapter else "model.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out.parent, out.name)
    try:
        save_file(data, str(tmp / name), metadata={"format": "pt"})
        if source.path.is_dir():
            for f in COPY_FILES + ((ADAPTER_CONFIG,) if adapter else ()):
                if (source.path / f).is_file():
                    shutil.copyfile(source.path / f, tmp / f)
        if config_yaml is not None:
            (tmp / "mergekit_config.yml").write_text(config_yaml, encoding="utf-8")
        if out.is_dir() and any(out.iterdir()):  # --overwrite: replace our files one by one, keep the others
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
            tmp.rmdir()
        else:
            if out.is_dir():
                out.rmdir()
            os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(out, f"cannot write ({exc.strerror or exc.__class__.__name__})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / name


# ---- mergekit YAML ----------------------------------------------------------------------------


def read_mergekit_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a mergekit ``linear`` config: models, weights, normalize (default true), out_dtype."""
    from affectkit.core.config import load_yaml

    cfg = load_yaml(path)
    method = cfg.get("merge_method")
    if method != "linear":
        raise DataError(path, f"merge_method {method!r} is not supported", "affectkit merges with merge_method: linear")
    entries = cfg.get("models")
    if not isinstance(entries, list) or not entries:
        raise DataError(path, "models: expected a non-empty list of {model, parameters: {weight}}")
    models, weights = [], []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "model" not in e:
            raise DataError(path, f"models[{i}]: expected a mapping with a 'model' key")
        params = e.get("parameters") or {}
        wt = params.get("weight")
        if isinstance(wt, bool) or not isinstance(wt, (int, float)):
            raise DataError(path, f"models[{i}].parameters.weight: expected a number, got {wt!r}",
                            "per-layer weight gradients (lists) are not supported")
        models.append(str(e["model"]))
        weights.append(float(wt))
    params = cfg.get("parameters") or {}
    normalize = params.get("normalize", True)
    if not isinstance(normalize, bool):
        raise DataError(path, f"parameters.normalize: expected true or false, got {normalize!r}")
    return {"models": models, "weights": weights, "normalize": normalize, "out_dtype": cfg.get("out_dtype"),
            "dtype": cfg.get("dtype"), "base_model": cfg.get("base_model")}


def mergekit_yaml(models: Sequence[str | Path], weights: Sequence[float], normalize: bool, out_dtype: str | None = None, base_model: str | None = None) -> str:
    import yaml

    cfg: dict[str, Any] = {
        "merge_method": "linear",
        "models": [{"model": str(m), "parameters": {"weight": float(w)}} for m, w in zip(models, weights, strict=True)],
        "parameters": {"normalize": bool(normalize)},
    }
    if base_model:
        cfg["base_model"] = str(base_model)
    if out_dtype:
        cfg["out_dtype"] = out_dtype
    return yaml.safe_dump(cfg, sort_keys=False)


DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16", "float64": "float64"}


def torch_dtype(name: str | None) -> Any:
    if name is None:
        return None
    import torch

    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}", "dtypes: " + ", ".join(sorted(set(DTYPES.values()))))
    return getattr(torch, DTYPES[name])
