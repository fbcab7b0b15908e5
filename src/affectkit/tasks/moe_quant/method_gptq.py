"""GPTQ (Frantar et al., 2022), the quantizer the method runs under its per-expert bits: column by
column on the min-max grid of quant_grid.py, with second-order error feedback from the layer's input
Hessian. A Hessian that stays singular under damping falls back to RTN (baselines.py).
"""

from __future__ import annotations

import math

import torch

from affectkit.tasks.moe_quant.baselines import rtn_quantize
from affectkit.tasks.moe_quant.quant_grid import (
    QuantResult,
    effective_group_size,
    grid_params,
    quantize_column,
)


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    group_size: int | None = 128,
    sym: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
) -> QuantResult:
    """GPTQ (Frantar et al., 2022): column-by-column quantization with second-order error feedback.

    ``hessian`` is ``X^T X`` (any positive scale) of the layer's inputs. Columns whose input never
    fires (zero diagonal) get a unit diagonal: they are rounded without compensation rather than
    zeroed (the reference zeroes them). ``damp`` is the fraction of the mean diagonal added to H.
    """
    W = weight.detach().float().clone()
    out_f, in_f = W.shape
    if hessian.shape != (in_f, in_f):
        raise ValueError(f"hessian shape {tuple(hessian.shape)} does not match in_features={in_f}")
    g = effective_group_size(in_f, group_size)
    n_groups = math.ceil(in_f / g)
    H = hessian.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    mean_diag = torch.mean(torch.diag(H)).item()
    Hinv = None
    for attempt in range(5):
        try:
            Hd = H + (damp * (10**attempt)) * mean_diag * torch.eye(in_f, dtype=H.dtype)
            L = torch.linalg.cholesky(Hd)
            Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).float()
            break
        except RuntimeError:
            continue
    if Hinv is None:
        res = rtn_quantize(weight, bits, group_size, sym)
        res.fallback = "hessian not positive definite"
        return res

    codes = torch.empty(out_f, in_f, dtype=torch.uint8)
    scales = torch.empty(out_f, n_groups, dtype=torch.float16)
    zeros = torch.empty(out_f, n_groups, dtype=torch.float16)
    scale = zero = None
    for i1 in range(0, in_f, block_size):
        i2 = min(i1 + block_size, in_f)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % g == 0:
                upcoming = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :g]
                scale, zero = grid_params(upcoming, bits, sym)
                scales[:, col // g], zeros[:, col // g] = scale, zero
            w = W1[:, i]
            q = quantize_column(w, scale, zero, bits)
            codes[:, col] = q.to(torch.uint8)
            wq = (q - zero.float()) * scale.float()
            err = (w - wq) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return QuantResult(codes, scales, zeros, bits, g)
