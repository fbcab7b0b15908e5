"""The weight grid shared by the quantizers (RTN in baselines.py, GPTQ in method_gptq.py), per output
channel or per group.

A weight ``W [out, in]`` is split along the input dimension into groups of ``group_size`` columns
(``group_size <= 0`` means one group per row, i.e. per-channel). Each (row, group) has a scale and an
integer zero point on a min-max grid, asymmetric by default (the authors' GPTQ setting) or symmetric.
Scales are stored in float16 and rounded *up* to float16 before the codes are computed, so the stored
grid covers the whole range and the RTN error stays within half a step.
"""

from __future__ import annotations

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
