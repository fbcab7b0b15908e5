"""Linear weight merging ("soups") of policies, natively in torch, with mergekit-compatible YAML.

Spaces (VC-soup brief A2.9):
- ``full``:         theta = sum_i w_i theta_i (LoRA adapters are first merged into ``base``);
- ``delta``:        theta = base + sum_i w_i (theta_i - base) (task arithmetic; equals ``full`` when
                    the weights sum to one and every input shares the base);
- ``lora-factors``: A = sum_i w_i A_i and B = sum_i w_i B_i, as the reference ``soup.py`` does. Not an
                    interpolation of the deltas B.A (bilinear); kept for reproducing that code.
With ``normalize`` the weights are divided by their sum (mergekit's ``linear`` default). Arithmetic
is in float32 (float64 when the inputs are float64) and the result is cast back to the input dtype.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError

SPACES = ("full", "delta", "lora-factors")
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
COPY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json")


@dataclass
class Loaded:
    path: Path
    tensors: dict[str, Any]
    is_adapter: bool
    adapter_config: dict[str, Any] | None = None


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
    for f in _weights_file(p):
        try:
            tensors.update(load_file(str(f)))
        except (SafetensorError, OSError) as exc:
            raise DataError(f, f"cannot read safetensors ({exc})") from None
    is_adapter = any(".lora_A." in k for k in tensors)
    cfg = None
    if is_adapter and p.is_dir() and (p / ADAPTER_CONFIG).is_file():
        cfg = json.loads((p / ADAPTER_CONFIG).read_text())
    return Loaded(p, tensors, is_adapter, cfg)


def _scale(cfg: Mapping[str, Any] | None, r: int) -> float:
    cfg = cfg or {}
    alpha = float(cfg.get("lora_alpha", r))
    if cfg.get("use_rslora"):
        return alpha / math.sqrt(r)
    return alpha / r


def adapter_deltas(adapter: Loaded, base: Mapping[str, Any]) -> dict[str, Any]:
    """Per base weight: scale * B @ A (transposed for fan-in-fan-out layers such as GPT-2 Conv1D)."""
    out: dict[str, Any] = {}
    fan = bool((adapter.adapter_config or {}).get("fan_in_fan_out", False))
    for key, a in adapter.tensors.items():
        if ".lora_A." not in key:
            continue
        b_key = key.replace(".lora_A.", ".lora_B.")
        if b_key not in adapter.tensors:
            raise DataError(adapter.path, f"{key} has no matching lora_B tensor")
        b = adapter.tensors[b_key]
        target = key.split(".lora_A.")[0] + ".weight"
        for prefix in ("base_model.model.", "base_model."):
            if target.startswith(prefix) and target[len(prefix):] in base:
                target = target[len(prefix):]
                break
        if target not in base:
            raise DataError(adapter.path, f"adapter targets {target!r}, which the base model does not have")
        delta = (b.double() @ a.double()) * _scale(adapter.adapter_config, a.shape[0])
        if fan or tuple(delta.shape) != tuple(base[target].shape):
            delta = delta.T
        if tuple(delta.shape) != tuple(base[target].shape):
            raise DataError(adapter.path, f"{target}: adapter delta {tuple(delta.shape)} does not fit base {tuple(base[target].shape)}")
        out[target] = delta
    return out


def _check_float(name: str, t: Any, where: Path) -> None:
    if not t.is_floating_point():
        raise DataError(where, f"tensor {name!r} has dtype {t.dtype}; only floating-point tensors can be merged",
                        "integer buffers (ids, masks) cannot be averaged: drop them from the checkpoint")


def _check_same_keys(models: Sequence[Loaded], ref: Mapping[str, Any], ref_path: Path) -> None:
    keys = set(ref)
    for m in models:
        mk = set(m.tensors)
        if mk != keys:
            missing, extra = sorted(keys - mk), sorted(mk - keys)
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} (e.g. {missing[0]!r})")
            if extra:
                parts.append(f"unexpected {len(extra)} (e.g. {extra[0]!r})")
            raise DataError(m.path, f"tensor names differ from {ref_path}: {'; '.join(parts)}",
                            "all models must share one architecture (vocab resizes change embed/lm_head)")
        for k in keys:
            if tuple(m.tensors[k].shape) != tuple(ref[k].shape):
                raise DataError(m.path, f"{k}: shape {tuple(m.tensors[k].shape)} differs from {tuple(ref[k].shape)} in {ref_path}")


def linear_combine(states: Sequence[Mapping[str, Any]], weights: Sequence[float], base: Mapping[str, Any] | None = None, base_weight: float = 0.0) -> dict[str, Any]:
    """sum_i w_i * states_i (+ base_weight * base), per tensor in fp32/fp64, cast back to states[0]'s dtype."""
    import torch

    out = {}
    for key in sorted(states[0]):
        t0 = states[0][key]
        acc_dtype = torch.float64 if any(s[key].dtype == torch.float64 for s in states) else torch.float32
        acc = torch.mul(states[0][key].to(acc_dtype), float(weights[0]))  # a fresh tensor, inputs untouched
        for s, w in zip(states[1:], weights[1:], strict=True):
            acc.add_(s[key].to(acc_dtype), alpha=float(w))
        if base is not None and base_weight != 0.0:
            acc.add_(base[key].to(acc_dtype), alpha=float(base_weight))
        out[key] = acc.to(t0.dtype).contiguous()
    return out


def merge_models(paths: Sequence[str | Path], weights: Sequence[float], space: str = "full", normalize: bool = False, base: str | Path | None = None) -> tuple[dict[str, Any], Loaded]:
    """Merge the checkpoints at ``paths``; returns (tensors, the first input) for saving."""
    if space not in SPACES:
        raise UsageError(f"unknown merge space {space!r}", "spaces: " + ", ".join(SPACES))
    if len(paths) < 1:
        raise UsageError("no models to merge")
    if len(weights) != len(paths):
        raise UsageError(f"{len(paths)} models but {len(weights)} weights", "give one --weights entry per model")
    if not all(math.isfinite(w) for w in weights):
        raise UsageError("weights must be finite numbers")
    w = [float(x) for x in weights]
    if normalize:
        total = sum(w)
        if abs(total) < 1e-12:
            raise UsageError("weights sum to zero; cannot normalise", "pass --no-normalize or other weights")
        w = [x / total for x in w]
    models = [load_model(p) for p in paths]
    kinds = {m.is_adapter for m in models}
    if len(kinds) > 1:
        raise UsageError("cannot mix LoRA adapters and full models in one merge")
    adapters = models[0].is_adapter
    for m in models:
        for k, t in m.tensors.items():
            _check_float(k, t, m.path)

    if space == "lora-factors":
        if not adapters:
            raise UsageError("--space lora-factors needs LoRA adapter directories", "use --space full or delta for full models")
        _check_same_keys(models[1:], models[0].tensors, models[0].path)
        return linear_combine([m.tensors for m in models], w), models[0]

    base_m = load_model(base) if base is not None else None
    if base_m is not None:
        if base_m.is_adapter:
            raise UsageError("--base must be a full model, not an adapter")
        for k, t in base_m.tensors.items():
            _check_float(k, t, base_m.path)
    if adapters:
        if base_m is None:
            raise UsageError(f"merging LoRA adapters in --space {space} needs --base MODEL", "or use --space lora-factors")
        states = []
        for m in models:
            deltas = adapter_deltas(m, base_m.tensors)
            full = {}
            for k, t in base_m.tensors.items():
                full[k] = (t.double() + deltas[k]).to(t.dtype) if k in deltas else t
            states.append(full)
        ref = base_m
    else:
        _check_same_keys(models[1:], models[0].tensors, models[0].path)
        states = [m.tensors for m in models]
        ref = models[0]
    if space == "full":
        return linear_combine(states, w), ref if adapters else models[0]
    if base_m is None:
        raise UsageError("--space delta needs --base MODEL (the common starting point)")
    _check_same_keys([Loaded(models[0].path, states[0], False)], base_m.tensors, base_m.path)
    # base + sum w (theta_i - base) = (1 - sum w) base + sum w theta_i
    return linear_combine(states, w, base=base_m.tensors, base_weight=1.0 - sum(w)), ref if adapters else models[0]


def save_merged(tensors: Mapping[str, Any], out: Path, source: Loaded, adapter: bool, config_yaml: str | None = None, out_dtype: Any = None) -> Path:
    """Write ``model.safetensors`` (or ``adapter_model.safetensors``) and copy configs from ``source``."""
    from safetensors.torch import save_file

    from affectkit.core.runs import atomic_save, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    data = {k: (v.to(out_dtype) if out_dtype is not None else v).contiguous() for k, v in sorted(tensors.items())}
    name = ADAPTER_FILE if adapter else "model.safetensors"
    atomic_save(out / name, lambda tmp: save_file(data, tmp, metadata={"format": "pt"}))
    if source.path.is_dir():
        for f in COPY_FILES + ((ADAPTER_CONFIG,) if adapter else ()):
            if (source.path / f).is_file():
                shutil.copyfile(source.path / f, out / f)
    if config_yaml is not None:
        atomic_write_text(out / "mergekit_config.yml", config_yaml)
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
