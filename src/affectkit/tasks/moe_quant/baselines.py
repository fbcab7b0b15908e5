"""The baselines the paper compares against, and the controls of the benchmark.

- RTN: round-to-nearest on the shared min-max grid (also GPTQ's fallback and the sensitivity probe);
- uniform allocation: every expert at the same bits;
- random order (the null the bench's z scores are measured against) and the frequency order (most
  routed experts first, QuantMoE-Bench / MC-MoE);
- the sensitivity order and its per-expert loss probes: a positive control that uses calibration data.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from affectkit.tasks.moe_quant.method_allocate import Allocation, LayerAllocation
from affectkit.tasks.moe_quant.moe_layers import moe_layers
from affectkit.tasks.moe_quant.quant_grid import (
    QuantResult,
    effective_group_size,
    grid_params,
    quantize_column,
)


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int | None = 128, sym: bool = False) -> QuantResult:
    """Round-to-nearest on a min-max grid per (row, group)."""
    w = weight.detach().float()
    out_f, in_f = w.shape
    g = effective_group_size(in_f, group_size)
    n_groups = math.ceil(in_f / g)
    codes = torch.empty(out_f, in_f, dtype=torch.uint8)
    scales = torch.empty(out_f, n_groups, dtype=torch.float16)
    zeros = torch.empty(out_f, n_groups, dtype=torch.float16)
    for k in range(n_groups):
        sl = slice(k * g, min((k + 1) * g, in_f))
        scale, zero = grid_params(w[:, sl], bits, sym)
        scales[:, k], zeros[:, k] = scale, zero
        codes[:, sl] = quantize_column(w[:, sl], scale[:, None], zero[:, None], bits).to(torch.uint8)
    return QuantResult(codes, scales, zeros, bits, g)


def uniform_allocation(model: nn.Module, bits: int) -> Allocation:
    layers = [LayerAllocation(v.name, list(range(v.num_experts)), [int(bits)] * v.num_experts)
              for v in moe_layers(model)]
    return Allocation("uniform", "none", [int(bits)], float(bits), layers)


def random_order(num_experts: int, rng: np.random.Generator) -> list[int]:
    return [int(i) for i in rng.permutation(num_experts)]


def frequency_order(counts: np.ndarray) -> list[int]:
    """Most-routed experts first (the frequency heuristic of QuantMoE-Bench / MC-MoE)."""
    return [int(i) for i in np.argsort(-np.asarray(counts, dtype=float), kind="stable")]


def sensitivity_order(loss_increase: np.ndarray) -> list[int]:
    """Largest loss increase (when the expert alone drops a level) first."""
    return [int(i) for i in np.argsort(-np.asarray(loss_increase, dtype=float), kind="stable")]


def expert_sensitivity(model: nn.Module, levels: list[int], loss_fn: Callable[[nn.Module], float],
                       group_size: int = 128, sym: bool = False) -> dict[str, list[float]]:
    """Loss increase when one expert alone drops from the top level to the next (RTN), with every
    other expert of every layer at the top level. Needs 1 + layers x experts evaluations."""
    lv = sorted(levels, reverse=True)
    hi, lo = lv[0], lv[1] if len(lv) > 1 else lv[0] - 1
    views = moe_layers(model)
    originals = {v.name: [v.expert_weights(e) for e in range(v.num_experts)] for v in views}
    originals = {k: [{p: t.clone() for p, t in d.items()} for d in ws] for k, ws in originals.items()}

    def q(ws, bits):
        return {p: rtn_quantize(t, bits, group_size, sym).dequantize() for p, t in ws.items()}

    high = {v.name: [q(w, hi) for w in originals[v.name]] for v in views}
    try:
        for v in views:
            for e in range(v.num_experts):
                v.set_expert_weights(e, high[v.name][e])
        base = loss_fn(model)
        out = {}
        for v in views:
            deltas = []
            for e in range(v.num_experts):
                v.set_expert_weights(e, q(originals[v.name][e], lo))
                deltas.append(loss_fn(model) - base)
                v.set_expert_weights(e, high[v.name][e])
            out[v.name] = deltas
    finally:
        for v in views:
            for e in range(v.num_experts):
                v.set_expert_weights(e, originals[v.name][e])
    return out
