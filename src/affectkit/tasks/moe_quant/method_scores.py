"""Expert scores and orders. An *order* lists a layer's experts from most to least bits.

- Router-norm change (the paper's primary key, ascending: the smallest change is most sensitive),
  with the reference ``none`` (final norm, the authors' Mixtral rule), ``init-expected`` (minus the
  expected init norm ``sigma * sqrt(d - 1/2)``), ``checkpoint`` or ``snapshot`` (minus the norms of a
  given router weight: the exact change).
- MaxVar in the authors' two variants: ``max-row-var`` (Switch script: max over neurons of the
  unbiased variance of a row of the first projection) and ``var-of-maxnorm-row`` (Mixtral script: the
  variance of the largest-norm row).
- ``combined_order``: the router order re-ordered by MaxVar with the factor zeta.
- Further orders for ablation: variance, inverted (the baselines and controls, random, frequency and
  sensitivity, are in baselines.py).
- ``expert_scores``: all of it for every MoE layer of a model (no forward pass).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from affectkit.tasks.moe_quant.moe_layers import init_router_std, moe_layers

MAXVAR_MODES = ("max-row-var", "var-of-maxnorm-row")


def router_norms(router_weight: torch.Tensor) -> np.ndarray:
    return torch.linalg.vector_norm(router_weight.detach().double(), dim=1).numpy()


def expected_init_norm(std: float, d: int) -> float:
    """E||w|| for w ~ N(0, std^2 I_d): std * sqrt(2) * Gamma((d+1)/2) / Gamma(d/2) ~ std * sqrt(d - 1/2)."""
    return float(std * math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2)))


def router_change(router_weight: torch.Tensor, ref: str = "none", ref_weight: torch.Tensor | None = None,
                  init_std: float | None = None) -> np.ndarray:
    """Lambda_s per expert. ``ref``: none | init-expected | checkpoint | snapshot."""
    norms = router_norms(router_weight)
    if ref == "none":
        return norms
    if ref == "init-expected":
        if init_std is None:
            raise ValueError("router-ref init-expected needs the init std")
        return norms - expected_init_norm(init_std, router_weight.shape[1])
    if ref in ("checkpoint", "snapshot"):
        if ref_weight is None:
            raise ValueError(f"router-ref {ref} needs the reference router weight")
        if tuple(ref_weight.shape) != tuple(router_weight.shape):
            raise ValueError(f"reference router shape {tuple(ref_weight.shape)} != {tuple(router_weight.shape)}")
        return norms - router_norms(ref_weight)
    raise ValueError(f"unknown router reference {ref!r}")


def maxvar(w1: torch.Tensor, mode: str = "max-row-var") -> float:
    """MaxVar of one expert's first projection ``w1 [d_ff, d]`` (unbiased variance, as torch.var)."""
    w = w1.detach().double()
    if mode == "max-row-var":
        return float(torch.var(w, dim=1).max())
    if mode == "var-of-maxnorm-row":
        j = int(torch.argmax(torch.linalg.vector_norm(w, dim=1)))
        return float(torch.var(w[j]))
    raise ValueError(f"unknown MaxVar mode {mode!r}; choose from {MAXVAR_MODES}")


def router_order(lam: np.ndarray) -> list[int]:
    """Ascending Lambda (stable): index 0 is the most sensitive expert, it gets the most bits."""
    return [int(i) for i in np.argsort(np.asarray(lam), kind="stable")]


def combined_order(lam: np.ndarray, var: np.ndarray, zeta: float = 3.0) -> list[int]:
    """Router order, then each expert (visited from least to most sensitive) moves ahead of the first
    expert ``i`` in the current list with ``zeta * MaxVar_i < MaxVar_j``."""
    var = np.asarray(var, dtype=float)
    c = router_order(lam)
    for j in list(reversed(c)):
        k = next((pos for pos, i in enumerate(c) if zeta * var[i] < var[j]), None)
        if k is None:
            continue
        pos_j = c.index(j)
        if pos_j > k:
            c.pop(pos_j)
            c.insert(k, j)
    return c


def variance_order(var: np.ndarray) -> list[int]:
    """Ascending MaxVar, as in the authors' ``compute_variance_order`` (kept as an ablation)."""
    return [int(i) for i in np.argsort(np.asarray(var), kind="stable")]


def inverted_order(order: list[int]) -> list[int]:
    return list(reversed(order))


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
        lam = router_change(v.router_weight(), router_ref, ref_w, init_router_std(model, v.style))
        mv = [maxvar(v.expert_weights(e)[v.first_proj], maxvar_mode) for e in range(v.num_experts)]
        out[v.name] = {"router_norm": router_norms(v.router_weight()).tolist(),
                       "lambda": [float(x) for x in lam], "maxvar": mv}
    return out
