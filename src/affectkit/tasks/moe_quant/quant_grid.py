"""Pure-torch weight quantizers: round-to-nearest (RTN) and GPTQ, per output channel or per group.

A weight ``W [out, in]`` is split along the input dimension into groups of ``group_size`` columns
(``group_size <= 0`` means one group per row, i.e. per-channel). Each (row, group) has a scale and an
integer zero point on a min-max grid, asymmetric by default (the authors' GPTQ setting) or symmetric.
Scales are stored in float16 and rounded *up* to float16 before the codes are computed, so the stored
grid covers the whole range and the RTN error stays within half a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class QuantResult:
    codes: torch.Tensor  # uint8 [out, in], values in [0, 2**bits)
    scales: torch.Tensor  # float16 [out, n_groups]
    zeros: torch.Tensor  # float16 [out, n_groups] (integer values)
    bits: int
    group_size: int  # effective group size (== in_features for per-channel)
    fallback: str | None = None  # why GPTQ fell back to RTN, if it did

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes, self.scales, self.zeros, self.group_size)


def effective_group_size(in_features: int, group_size: int | None) -> int:
    if group_size is None or group_size <= 0 or group_size >= in_features:
        return in_features
    return int(group_size)


def _fp16_ceil(x: torch.Tensor) -> torch.Tensor:
    """Round positive float32 values up to the next representable float16."""
    y = x.to(torch.float16)
    low = y.float() < x
    if low.any():
        y = torch.where(low, torch.nextafter(y, torch.full_like(y, float("inf"))), y)
    return y


def grid_params(w: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float16, rounded up) and zero point for each row of ``w [rows, cols]``."""
    maxq = (1 << bits) - 1
    w = w.float()
    xmin = torch.clamp(w.min(dim=1).values, max=0.0)
    xmax = torch.clamp(w.max(dim=1).values, min=0.0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    flat = (xmin == 0) & (xmax == 0)
    xmin = torch.where(flat, torch.full_like(xmin, -1.0), xmin)
    xmax = torch.where(flat, torch.full_like(xmax, 1.0), xmax)
    scale = _fp16_ceil(torch.clamp((xmax - xmin) / maxq, min=1e-7))
    if sym:
        zero = torch.full_like(xmin, (maxq + 1) / 2)
        zero = torch.floor(zero)
    else:
        zero = torch.round(-xmin / scale.float())
    return scale, zero.clamp(0, maxq).to(torch.float16)


def quantize_column(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    maxq = (1 << bits) - 1
    return torch.clamp(torch.round(w / scale.float()) + zero.float(), 0, maxq)


def dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Float32 weight from codes ``[out, in]`` and per-group scales/zeros ``[out, n_groups]``."""
    out_f, in_f = codes.shape
    s = scales.float().repeat_interleave(group_size, dim=1)[:, :in_f]
    z = zeros.float().repeat_interleave(group_size, dim=1)[:, :in_f]
    return (codes.float() - z) * s


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
