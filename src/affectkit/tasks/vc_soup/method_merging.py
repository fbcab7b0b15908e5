"""Linear weight merging ("soups") of policies: the arithmetic on loaded tensors (files: merge_io).

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError

SPACES = ("full", "delta", "lora-factors")


@dataclass
class Loaded:
    path: Path
    tensors: dict[str, Any]
    is_adapter: bool
    adapter_config: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)  # tensor name -> the file it was read from

    def file_of(self, name: str) -> Path:
        return self.files.get(name, self.path)


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




def merge_weights(n_models: int, weights: Sequence[float], space: str = "full", normalize: bool = False) -> list[float]:
    """The weights of a merge of ``n_models`` in ``space``, checked (and divided by their sum with ``normalize``)."""
    if space not in SPACES:
        raise UsageError(f"unknown merge space {space!r}", "spaces: " + ", ".join(SPACES))
    if n_models < 1:
        raise UsageError("no models to merge")
    if len(weights) != n_models:
        raise UsageError(f"{n_models} models but {len(weights)} weights", "give one --weights entry per model")
    if not all(math.isfinite(w) for w in weights):
        raise UsageError("weights must be finite numbers")
    w = [float(x) for x in weights]
    if normalize:
        total = sum(w)
        if abs(total) < 1e-12:
            raise UsageError("weights sum to zero; cannot normalise", "pass --no-normalize or other weights")
        w = [x / total for x in w]
    return w


def first_nonfinite(tensors: Mapping[str, Any]) -> str | None:
    """The first tensor name (sorted) holding a NaN or an infinity, or None."""
    import torch

    for k in sorted(tensors):
        t = tensors[k]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return k
    return None


def refuse_nonfinite(m: Loaded) -> None:
    """A DataError naming the file and tensor of ``m`` that holds a NaN or an infinity, if any."""
    import torch

    name = first_nonfinite(m.tensors)
    if name is not None:
        n = int((~torch.isfinite(m.tensors[name])).sum())
        raise DataError(m.file_of(name), f"tensor {name!r} holds {n} NaN or infinite values; the merge would be NaN",
                        "the checkpoint is broken (a diverged run?); merge a finite one")


def check_finite(merged: Mapping[str, Any], inputs: Sequence[Loaded]) -> None:
    """Refuse a merge whose result holds NaN or infinities, naming the input file and tensor they come
    from (every tensor of ``inputs`` reaches the result, and 0 * NaN is NaN), else the overflow."""
    bad = first_nonfinite(merged)
    if bad is None:
        return
    for m in inputs:
        refuse_nonfinite(m)
    raise UsageError(f"the merged tensor {bad!r} overflows {merged[bad].dtype}", "use smaller weights")


def check_inputs(models: Sequence[Loaded]) -> None:
    """All full models or all LoRA adapters, every tensor floating-point."""
    kinds = {m.is_adapter for m in models}
    if len(kinds) > 1:
        raise UsageError("cannot mix LoRA adapters and full models in one merge")
    for m in models:
        for k, t in m.tensors.items():
            _check_float(k, t, m.path)


def combine(models: Sequence[Loaded], w: Sequence[float], space: str, base_m: Loaded | None = None) -> tuple[dict[str, Any], Loaded]:
    """The merged tensors of checked inputs (``check_inputs``) with weights ``w`` in ``space``, and the
    input whose configs the result takes: the base in delta space and for adapters merged in full
    space, else the first model (``base_m`` is not used in lora-factors space)."""
    adapters = models[0].is_adapter
    if space == "lora-factors":
        if not adapters:
            raise UsageError("--space lora-factors needs LoRA adapter directories", "use --space full or delta for full models")
        _check_same_keys(models[1:], models[0].tensors, models[0].path)
        return linear_combine([m.tensors for m in models], w), models[0]

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
    # base + sum w (theta_i - base) = (1 - sum w) base + sum w theta_i; configs and tokenizer from the
    # base, as mergekit takes them
    return linear_combine(states, w, base=base_m.tensors, base_weight=1.0 - sum(w)), base_m
