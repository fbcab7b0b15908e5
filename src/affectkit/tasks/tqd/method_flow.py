"""Rectified-flow objective and Euler sampler of the TQD toy (spec 7.2), in the one noise-level convention:
s in (0, 1), 1 = pure noise, x_s = (1 - s) x0 + s eps, target velocity v = eps - x0 (diffusers' FlowMatch
convention). Sampling integrates dx/ds = v from s = 1 (noise) down to s = 0 (data).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from affectkit.core.errors import UsageError


def _per_sample(s: Any, x: torch.Tensor) -> torch.Tensor:
    """Noise levels as a float tensor broadcastable against ``x`` (``[B, 1, 1, ...]``); a scalar broadcasts."""
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        return s
    s = s.reshape(-1)
    if s.numel() != x.shape[0]:
        raise UsageError(f"got {s.numel()} noise levels for a batch of {x.shape[0]}")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


def noisy(x0: torch.Tensor, s: Any, eps: torch.Tensor) -> torch.Tensor:
    """x_s = (1 - s) x0 + s eps, with ``s`` a scalar or one level per sample."""
    if eps.shape != x0.shape:
        raise UsageError(f"noise shape {tuple(eps.shape)} differs from the clips' {tuple(x0.shape)}")
    sb = _per_sample(s, x0)
    return (1 - sb) * x0 + sb * eps


def flow_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The velocity target v = eps - x0."""
    return eps - x0


def flow_loss(model: nn.Module, x0: torch.Tensor, s: Any, eps: torch.Tensor) -> torch.Tensor:
    """Per-sample loss ``[B]``: mean over all but the batch dim of (model(x_s, s) - (eps - x0))^2."""
    s_vec = _per_sample(s, x0).reshape(-1)
    if s_vec.numel() == 1 and x0.shape[0] != 1:
        s_vec = s_vec.expand(x0.shape[0])
    pred = model(noisy(x0, s, eps), s_vec)
    return (pred.float() - flow_target(x0, eps).float()).pow(2).flatten(1).mean(1)


def flow_training_loss(model: nn.Module, x0: torch.Tensor, s: Any = None,
                       generator: torch.Generator | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Scalar training loss: the mean of :func:`flow_loss` with eps ~ N(0, I) drawn from ``generator`` (on the
    CPU, so a seed gives the same noise on any device). ``s`` is one level per sample; None draws s ~ U(0, 1)
    (after eps) from the same generator. ``weights`` ``[B]`` gives a weighted mean."""
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device=x0.device, dtype=x0.dtype)
    if s is None:
        s = torch.rand(x0.shape[0], generator=generator)
    s = torch.as_tensor(s, dtype=torch.float32).to(x0.device)
    per = flow_loss(model, x0, s, eps)
    if weights is None:
        return per.mean()
    w = torch.as_tensor(weights, dtype=per.dtype, device=per.device).reshape(-1)
    if w.numel() != per.numel():
        raise UsageError(f"got {w.numel()} loss weights for a batch of {per.numel()}")
    return (w * per).sum() / w.sum().clamp_min(1e-12)


@torch.no_grad()
def euler_sample(model: nn.Module, shape: tuple[int, ...] | torch.Size, steps: int = 20,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """x0_hat ``shape`` by ``steps`` Euler steps from s = 1 to 0 on a uniform grid: x_{s - ds} = x_s - ds v.

    The starting noise is drawn on the CPU from ``generator`` (or given as ``noise``); the result is not
    clamped (:func:`affectkit.tasks.tqd.model.to_uint8` clamps)."""
    if int(steps) < 1:
        raise UsageError(f"euler_sample: steps must be >= 1, got {steps}")
    if device is None:
        device = next(model.parameters()).device
    x = noise.clone() if noise is not None else torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    x = x.to(device=device, dtype=torch.float32)
    grid = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
    for i in range(int(steps)):
        s, s_next = float(grid[i]), float(grid[i + 1])
        v = model(x, torch.full((x.shape[0],), s, device=x.device))
        x = x - (s - s_next) * v.float()
    return x
