"""The method end to end on a model: scores per expert, an order per layer, bits per expert.

``allocate_model`` turns (order kind, levels, average budget, policy) into an :class:`Allocation`;
the paper's orders (combined, router, variance, inverted) need no forward pass; ``frequency``
needs routed-token counts and ``sensitivity`` per-expert loss probes on calibration data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from affectkit.tasks.moe_quant import allocate as alloc
from affectkit.tasks.moe_quant import scores as sc
from affectkit.tasks.moe_quant.adapters import MoELayerView, init_router_std, moe_layers
from affectkit.tasks.moe_quant.quantizers import rtn_quantize

ROUTER_REFS = ("none", "init-expected", "checkpoint", "snapshot")


def expert_scores(model: nn.Module, router_ref: str = "none", ref_weights: dict[str, torch.Tensor] | None = None,
                  maxvar_mode: str = "max-row-var") -> dict[str, dict[str, list[float]]]:
    """Per MoE layer: router norm, Lambda (router-norm change under ``router_ref``) and MaxVar."""
    out = {}
    for v in moe_layers(model):
        ref_w = None
        if router_ref in ("checkpoint", "snapshot"):
            if not ref_weights or v.name not in ref_weights:
                raise ValueError(f"router reference {router_ref} has no weight for {v.name}")
            ref_w = ref_weights[v.name]
        lam = sc.router_change(v.router_weight(), router_ref, ref_w, init_router_std(model, v.style))
        mv = [sc.maxvar(v.expert_weights(e)[v.first_proj], maxvar_mode) for e in range(v.num_experts)]
        out[v.name] = {"router_norm": sc.router_norms(v.router_weight()).tolist(),
                       "lambda": [float(x) for x in lam], "maxvar": mv}
    return out


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


def layer_orders(kind: str, scores: dict[str, dict[str, list[float]]], zeta: float = 3.0, seed: int = 0,
                 counts: dict[str, list[int]] | None = None,
                 sensitivity: dict[str, list[float]] | None = None) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, s in scores.items():
        lam, mv = np.asarray(s["lambda"]), np.asarray(s["maxvar"])
        if kind == "combined":
            out[name] = sc.combined_order(lam, mv, zeta)
        elif kind == "router":
            out[name] = sc.router_order(lam)
        elif kind == "variance":
            out[name] = sc.variance_order(mv)
        elif kind == "inverted":
            out[name] = sc.inverted_order(sc.combined_order(lam, mv, zeta))
        elif kind == "random":
            out[name] = sc.random_order(len(lam), rng)
        elif kind == "frequency":
            if counts is None:
                raise ValueError("order 'frequency' needs routed-token counts from calibration data")
            out[name] = sc.frequency_order(np.asarray(counts[name]))
        elif kind == "sensitivity":
            if sensitivity is None:
                raise ValueError("order 'sensitivity' needs per-expert loss probes on calibration data")
            out[name] = sc.sensitivity_order(np.asarray(sensitivity[name]))
        else:
            raise ValueError(f"unknown order {kind!r}; choose from {', '.join(sc.ORDERS)}")
    return out


def allocate_from_orders(orders: dict[str, list[int]], levels: list[int], avg_bits: float, policy: str = "paper",
                         allow_over: bool = False, order_kind: str = "combined", rank_weight: str = "harmonic",
                         scores: dict[str, Any] | None = None) -> alloc.Allocation:
    lv = sorted((int(b) for b in levels), reverse=True)
    layers = []
    extra: dict[str, Any] = {}
    for name, order in orders.items():
        E = len(order)
        if policy == "paper":
            counts = alloc.paper_counts(E, avg_bits, lv, allow_over)
            bits = alloc.bits_from_order(order, counts, lv)
            extra["counts"] = counts
        elif policy == "milp":
            w = alloc.rank_weights(E, rank_weight)
            sens = np.empty(E)
            sens[np.asarray(order)] = w
            bits = alloc.milp_bits(sens, lv, avg_bits, allow_over)
        else:
            raise ValueError(f"unknown policy {policy!r}; choose paper or milp")
        layers.append(alloc.LayerAllocation(name, list(order), bits, dict((scores or {}).get(name, {}))))
    return alloc.Allocation(policy, order_kind, lv, float(avg_bits), layers, extra)


def uniform_allocation(model: nn.Module, bits: int) -> alloc.Allocation:
    layers = [alloc.LayerAllocation(v.name, list(range(v.num_experts)), [int(bits)] * v.num_experts)
              for v in moe_layers(model)]
    return alloc.Allocation("uniform", "none", [int(bits)], float(bits), layers)


def views_by_name(model: nn.Module) -> dict[str, MoELayerView]:
    return {v.name: v for v in moe_layers(model)}
