"""SSM's four losses and their balancing: per-loss EMA normalisation (reset every epoch), the
sigmoid ramp on the prototype losses, and AU clip mixup. State lives in buffers, so it is
checkpointed with the weights and a resumed run continues exactly."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOSS_NAMES = ("fe_ce", "au_bce", "fe_proto", "au_proto")


def ramp(t: float, span: int) -> float:
    """r(t) = 2 / (1 + exp(-10 t / span)) - 1: 0 at t = 0, ~1 at t = span (t in epochs, or in steps)."""
    if span <= 0:
        return 1.0
    return 2.0 / (1.0 + math.exp(-10.0 * t / span)) - 1.0


class LossBalancer(nn.Module):
    """Divides each loss by an EMA of its own detached value. ``epoch`` is a buffer set before each step;
    when it changes the EMAs restart. ``step`` (optimizer steps done) is set with it, for a ramp over steps."""

    def __init__(self, momentum: float = 0.95, eps: float = 1e-8, enabled: bool = True):
        super().__init__()
        self.momentum, self.eps, self.enabled = momentum, eps, enabled
        self.register_buffer("ema", torch.zeros(len(LOSS_NAMES)))
        self.register_buffer("seen", torch.zeros(len(LOSS_NAMES)))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.step = 0

    def set_position(self, step: int, epoch: int) -> None:
        self.step = step
        if int(self.epoch) != epoch:
            self.epoch.fill_(epoch)
            self.seen.zero_()

    def normalise(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return loss
        i = LOSS_NAMES.index(name)
        value = loss.detach().to(self.ema.dtype)
        if self.training:
            if self.seen[i] == 0:
                self.ema[i] = value
            else:
                self.ema[i] = self.momentum * self.ema[i] + (1 - self.momentum) * value
            self.seen[i] = 1
        return loss / (self.ema[i] + self.eps)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE over coded entries (mask = 0 where an AU is not coded, e.g. BP4D's 9)."""
    loss = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none") * mask
    return loss.sum() / mask.sum().clamp(min=1.0)


def mixup(clips: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Clip-level mixup: one lambda ~ Beta(alpha, alpha) per batch, partners by a random permutation,
    the same lambda on every frame. Returns (mixed clips, permutation, lambda)."""
    perm = torch.randperm(clips.shape[0], device=clips.device, generator=generator)
    if alpha <= 0:
        return clips, torch.arange(clips.shape[0], device=clips.device), 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return lam * clips + (1 - lam) * clips[perm], perm, lam
