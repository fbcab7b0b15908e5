"""Calibration and quantization of a whole model, group by group.

A *group* is one transformer block: its MoE experts (and, with ``attn_bits``, its attention
projections). Groups are processed in network order; for each, one pass over the calibration
batches (through the already-quantized earlier groups) collects every target's input Hessian, then
all targets of the group are quantized together (the authors put all linears of a decoder layer in
one GPTQ group). Experts get Hessians only from the tokens routed to them; an expert that saw fewer
than ``min_tokens`` tokens falls back to RTN (never zeroed), and every expert's token count is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from affectkit.tasks.moe_quant.baselines import rtn_quantize
from affectkit.tasks.moe_quant.method_gptq import gptq_quantize
from affectkit.tasks.moe_quant.moe_layers import moe_layers
from affectkit.tasks.moe_quant.packed_modules import MixedBitExperts, QuantLinear
from affectkit.tasks.moe_quant.quant_grid import effective_group_size

ATTN_PATTERN = re.compile(r"(self_attn\.(q|k|v|o)_proj|(SelfAttention|EncDecAttention)\.(q|k|v|o))$")


@dataclass
class QuantOptions:
    method: str = "gptq"  # gptq | rtn
    group_size: int = 128
    sym: bool = False
    damp: float = 0.01
    min_tokens: int = 16
    attn_bits: int | None = None
    quantize_router: bool = False
    router_bits: int = 4


@dataclass
class _Hess:
    sum: torch.Tensor | None = None
    n: int = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        if x.shape[0] == 0:
            if self.sum is None:
                self.sum = torch.zeros(x.shape[1], x.shape[1])
            return
        xtx = x.T @ x
        self.sum = xtx if self.sum is None else self.sum + xtx
        self.n += x.shape[0]


def group_key(name: str) -> str:
    for sep in (".self_attn", ".mlp", ".block_sparse_moe", ".layer."):
        if sep in name:
            return name.split(sep)[0]
    return name


def attention_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and ATTN_PATTERN.search(n)]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _quant(weight: torch.Tensor, bits: int, opts: QuantOptions, hess: _Hess | None) -> tuple[Any, str]:
    if opts.method == "gptq" and hess is not None and hess.n >= opts.min_tokens:
        res = gptq_quantize(weight, hess.sum, bits, opts.group_size, opts.sym, opts.damp)
        return res, ("rtn-fallback" if res.fallback else "gptq")
    res = rtn_quantize(weight, bits, opts.group_size, opts.sym)
    return res, ("rtn" if opts.method == "rtn" else "rtn-fallback")


def forward_with_hooks(model: nn.Module, batches: Iterable[dict], run: Callable[[nn.Module, dict], Any],
                       handles: list) -> None:
    """Run every batch without gradients, then remove the hooks (also on error)."""
    try:
        with torch.no_grad():
            for b in batches:
                run(model, b)
    finally:
        for h in handles:
            h.remove()


def count_routed_tokens(model: nn.Module, batches: Iterable[dict], run: Callable[[nn.Module, dict], Any]) -> dict[str, list[int]]:
    """Tokens routed to each expert of each MoE layer over the batches."""
    views = moe_layers(model)
    counts = {v.name: [0] * v.num_experts for v in views}
    handles = []
    for v in views:
        def cb(e, x, name=v.name):
            counts[name][e] += int(x.reshape(-1, x.shape[-1]).shape[0])
        handles += v.capture_routed(cb)
    forward_with_hooks(model, batches, run, handles)
    return counts


def quantize_model(
    model: nn.Module,
    expert_bits: dict[str, list[int]],
    opts: QuantOptions,
    batches: list[dict] | None,
    run: Callable[[nn.Module, dict], Any],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Quantize every MoE layer's experts (and attention with ``attn_bits``) in place.

    Returns a report: per layer and expert the bits, routed calibration tokens and the method used.
    """
    model.eval()
    views = {v.name: v for v in moe_layers(model)}
    missing = set(views) - set(expert_bits)
    if missing:
        raise ValueError(f"no bits given for MoE layers {sorted(missing)}")
    attn = attention_linears(model) if opts.attn_bits else []
    order: list[str] = []
    for name, _ in model.named_modules():
        if name in views or any(name == a for a, _ in attn):
            key = group_key(name)
            if key not in order:
                order.append(key)
    report: dict[str, Any] = {"layers": {}, "attention": {}}
    need_calib = batches is not None and len(batches) > 0
    for key in order:
        gviews = [v for n, v in views.items() if group_key(n) == key]
        gattn = [(n, m) for n, m in attn if group_key(n) == key]
        hx: dict[str, list[_Hess]] = {v.name: [_Hess() for _ in range(v.num_experts)] for v in gviews}
        hmid: dict[str, list[_Hess]] = {v.name: [_Hess() for _ in range(v.num_experts)] for v in gviews}
        hattn = {n: _Hess() for n, _ in gattn}
        if need_calib:
            handles = []
            gptq = opts.method == "gptq"
            for v in gviews:
                float_w = [v.expert_weights(e) for e in range(v.num_experts)] if gptq else None

                def cb(e, x, v=v, float_w=float_w, gptq=gptq, hx=hx, hmid=hmid):
                    x = x.reshape(-1, x.shape[-1]).float()
                    if not gptq:
                        hx[v.name][e].n += x.shape[0]
                        return
                    hx[v.name][e].add(x)
                    hmid[v.name][e].add(v.expert_forward_float(e, x, float_w[e]))
                handles += v.capture_routed(cb)
            for n, m in gattn:
                if gptq:
                    handles.append(m.register_forward_pre_hook(lambda _m, a, n=n, hattn=hattn: hattn[n].add(a[0].detach())))
            forward_with_hooks(model, batches, run, handles)
        for v in gviews:
            bits = expert_bits[v.name]
            if len(bits) != v.num_experts:
                raise ValueError(f"{v.name}: {len(bits)} bit widths for {v.num_experts} experts")
            layer_rep = []
            new_experts = []
            for e in range(v.num_experts):
                w = v.expert_weights(e)
                mods, how = {}, []
                for p in v.proj_names:
                    h = hmid[v.name][e] if p in ("w2", "wo") else hx[v.name][e]
                    res, used = _quant(w[p], int(bits[e]), opts, h if need_calib else None)
                    mods[p] = QuantLinear.from_result(res)
                    how.append(used)
                new_experts.append(mods)
                layer_rep.append({"expert": e, "bits": int(bits[e]), "calib_tokens": hx[v.name][e].n,
                                  "method": "gptq" if all(u == "gptq" for u in how) else how[-1]})
            if v.kind == "mixtral-list":
                for e, mods in enumerate(new_experts):
                    for p, m in mods.items():
                        setattr(v.block.experts[e], p, m)
            else:
                v.block.experts = MixedBitExperts(v.style, v.num_experts, v.act, new_experts)
            if opts.quantize_router:
                r = v.router_module()
                with torch.no_grad():
                    r.weight.copy_(rtn_quantize(r.weight, opts.router_bits, opts.group_size, opts.sym).dequantize())
            report["layers"][v.name] = layer_rep
            if progress:
                progress(v.name)
        for n, m in gattn:
            res, used = _quant(m.weight, int(opts.attn_bits), opts, hattn[n] if need_calib else None)
            _replace(model, n, QuantLinear.from_result(res, m.bias))
            report["attention"][n] = {"bits": int(opts.attn_bits), "method": used, "calib_tokens": hattn[n].n}
    return report


def prepare_quantized_modules(model: nn.Module, qcfg: dict[str, Any]) -> nn.Module:
    """Replace a freshly built float model's experts (and listed attention projections) with empty
    packed modules shaped as ``qcfg`` says, so a saved state dict loads into it."""
    gs = int(qcfg.get("group_size", 128))
    bits_map = qcfg["expert_bits"]
    for v in moe_layers(model):
        if v.name not in bits_map:
            raise ValueError(f"quantization_config has no bits for MoE layer {v.name}")
        bits = bits_map[v.name]
        experts = []
        for e in range(v.num_experts):
            shapes = {p: tuple(t.shape) for p, t in v.expert_weights(e).items()}
            experts.append({p: QuantLinear(s[1], s[0], int(bits[e]), effective_group_size(s[1], gs))
                            for p, s in shapes.items()})
        v.block.experts = MixedBitExperts(v.style, v.num_experts, v.act, experts)
    for name in qcfg.get("attn_modules", []):
        m = model.get_submodule(name)
        _replace(model, name, QuantLinear(m.in_features, m.out_features, int(qcfg["attn_bits"]),
                                          effective_group_size(m.in_features, gs), bias=m.bias is not None))
    return model


def packed_tensor_census(model: nn.Module) -> dict[str, Any]:
    """Count packed expert tensors and their bytes, per MoE layer (coverage check)."""
    out: dict[str, Any] = {"layers": {}, "expert_bytes": 0, "expert_params": 0, "expert_param_bits": 0}
    for v in moe_layers(model):
        if v.kind != "mixed-bit":
            out["layers"][v.name] = {"packed": 0}
            continue
        packed, bits = 0, []
        for e, mods in enumerate(v.block.experts.experts):
            for p in v.proj_names:
                m = mods[p]
                if isinstance(m, QuantLinear):
                    packed += 1
                    out["expert_bytes"] += m.storage_bytes()
                    n = m.in_features * m.out_features
                    out["expert_params"] += n
                    out["expert_param_bits"] += n * m.bits
            bits.append(v.block.experts.expert_bits()[e])
        out["layers"][v.name] = {"packed": packed, "bits": bits}
    return out
