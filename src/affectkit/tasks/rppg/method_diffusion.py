"""Conditional diffusion for FreqPhys (spec §2.4): cosine schedule, x0-prediction loss, DDIM sampler.

DiffusionDet-style signal diffusion: the z-scored BVP is scaled by ``scale`` (0.5), noised with a cosine
schedule of 1000 steps, clamped to ``+-clamp * scale`` and divided by ``scale`` before entering the denoiser,
which predicts the clean BVP directly. Sampling uses DDIM with K steps (default 5) and ``eta`` (default 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from affectkit.tasks.rppg.method_losses import freqphys_loss

Denoiser = Callable[..., torch.Tensor]
"""``model(x_t [B, T], st_maps, phys_maps, t [B] long) -> x0_hat [B, T]`` (e.g. ``FreqPhys``)."""


def cosine_alphas_cumprod(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    """Cumulative products ``alpha_bar_t`` (t = 0 .. T-1, float64) of the cosine schedule (Nichol & Dhariwal).

    ``f(u) = cos^2(((u / T) + s) / (1 + s) * pi / 2)``, ``beta_t = clip(1 - f(t + 1) / f(t), 0, 0.999)``,
    ``alpha_bar_t = prod_{i <= t} (1 - beta_i)``; this equals ``f(t + 1) / f(0)`` wherever the clip is
    inactive (all t except the last step, whose beta is clipped from 1 to 0.999).
    """
    u = torch.linspace(0, T, T + 1, dtype=torch.float64)
    f = torch.cos(((u / T) + s) / (1 + s) * math.pi * 0.5) ** 2
    f = f / f[0]
    betas = (1 - f[1:] / f[:-1]).clamp(0, 0.999)
    return torch.cumprod(1 - betas, dim=0)


class Diffusion:
    """Cosine-schedule x0-prediction diffusion over ``[B, T]`` signals (no parameters, not an nn.Module).

    Args:
        timesteps: number of diffusion steps (1000).
        scale: signal scale applied to the z-scored BVP (0.5).
        clamp: clamp noisy/predicted signals to ``+-clamp * scale`` (2.2).
    """

    def __init__(self, timesteps: int = 1000, scale: float = 0.5, clamp: float = 2.2) -> None:
        self.timesteps, self.scale, self.clamp = timesteps, scale, clamp
        self.alphas_cumprod = cosine_alphas_cumprod(timesteps)
        self.last_times: list[int] = []

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``alpha_bar`` at integer steps ``t`` as a ``[B, 1]`` tensor with the dtype/device of ``like``."""
        return self.alphas_cumprod[t.cpu()].to(like.device, like.dtype)[:, None]

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp to ``+-clamp * scale`` and divide by ``scale`` (denoiser input convention)."""
        lim = self.clamp * self.scale
        return x.clamp(-lim, lim) / self.scale

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def training_loss(
        self,
        model: Denoiser,
        bvp: torch.Tensor,
        st_maps: torch.Tensor,
        phys_maps: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One training loss: ``t ~ U{0..T-1}`` per sample, ``x0 = scale * bvp``, ``x_t = q_sample``, clamp,
        divide by ``scale``, ``pred = model(x_t, st_maps, phys_maps, t)``, ``freqphys_loss(pred, bvp)``.

        ``generator`` (a CPU generator) makes ``t`` and the noise reproducible; the parts dict also holds
        ``t_mean``.
        """
        b = bvp.shape[0]
        t = torch.randint(0, self.timesteps, (b,), generator=generator)
        noise = torch.randn(bvp.shape, generator=generator).to(bvp.device, bvp.dtype)
        x_t = self._model_input(self.q_sample(self.scale * bvp, t, noise))
        pred = model(x_t, st_maps, phys_maps, t.to(bvp.device))
        loss, parts = freqphys_loss(pred, bvp)
        parts["t_mean"] = float(t.float().mean())
        return loss, parts

    def ddim_times(self, steps: int = 5) -> list[int]:
        """Timesteps the DDIM sampler evaluates the model at, e.g. ``[999, 799, 599, 399, 199]`` for 5 of 1000.

        ``int()`` of ``linspace(-1, T-1, steps+1)`` reversed, without the final -1 ("return x0") entry.
        """
        if not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be in 1..{self.timesteps}, got {steps}")
        times = torch.linspace(-1, self.timesteps - 1, steps + 1).int().tolist()
        return list(reversed(times))[:-1]

    @torch.no_grad()
    def sample(
        self,
        model: Denoiser,
        st_maps: torch.Tensor,
        phys_maps: torch.Tensor | None,
        steps: int = 5,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDIM sampling of ``[B, T]`` BVP estimates (T, B from ``st_maps [B, C, R, T]``).

        Start from ``x ~ N(0, I)`` (scaled space). At each step t with successor t' (from :meth:`ddim_times`,
        t' = -1 after the last): ``x0 = model(clamp(x)/scale, ...)``, standardised over the whole batch
        tensor, times ``scale``, clamped to ``+-clamp * scale``; ``eps = (x / sqrt(abar_t) - x0) /
        sqrt(1 / abar_t - 1)``; ``sigma = eta sqrt((1 - abar_t / abar_t') (1 - abar_t') / (1 - abar_t))``;
        ``x = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z``. After the last step the final
        ``x0`` is returned divided by ``scale`` (unit-std, in the units of the z-scored training target).
        The model's train/eval mode is left unchanged; visited steps are stored in ``last_times``.
        """
        b, length = st_maps.shape[0], st_maps.shape[-1]
        dev, dtype = st_maps.device, st_maps.dtype
        times = self.ddim_times(steps)
        lim = self.clamp * self.scale
        x = torch.randn((b, length), generator=generator).to(dev, dtype)
        self.last_times = []
        x0 = x
        for i, time in enumerate(times):
            self.last_times.append(time)
            t = torch.full((b,), time, dtype=torch.long)
            pred = model(self._model_input(x), st_maps, phys_maps, t.to(dev))
            x0 = ((pred - pred.mean()) / (pred.std() + 1e-8) * self.scale).clamp(-lim, lim)
            if i == len(times) - 1:
                break
            abar = float(self.alphas_cumprod[time])
            abar_next = float(self.alphas_cumprod[times[i + 1]])
            eps = (x / math.sqrt(abar) - x0) / math.sqrt(1 / abar - 1)
            sigma = eta * math.sqrt((1 - abar / abar_next) * (1 - abar_next) / (1 - abar))
            c = math.sqrt(max(1 - abar_next - sigma**2, 0.0))
            z = torch.randn((b, length), generator=generator).to(dev, dtype)
            x = math.sqrt(abar_next) * x0 + c * eps + sigma * z
        return x0 / self.scale
