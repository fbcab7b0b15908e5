"""MBLFE's noisy above-mean gate over K experts (users only), in the three modes of the task.

logits_u = h_u W_g, plus eps * (softplus(h_u W_n) + floor) with eps ~ N(0, I) while training;
p_u = softmax(logits_u); expert k is kept when p_{u,k} >= mean_k p_u, and the kept p are renormalised.

- ``random_subset`` (the release): W_g and W_n start at zero and get no gradient there (selection
  goes through ``nonzero`` and the slots are not scaled by p), so they stay zero. In training the
  logits are pure noise of scale softplus(0) + floor and each user keeps a random above-mean subset;
  at inference all experts are kept. W_g, W_n are therefore constant zero buffers here.
- ``learned``: W_g and W_n are trained; the slot weights are the renormalised kept p (the mask is
  a constant, the gradient flows through p), plus the CV^2 of expert importance (the sum of gate
  values over the batch) as the load-balancing term of Shazeer et al. (2017).
- ``all``: every expert is kept with weight 1 (no gate).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GateMode = Literal["random_subset", "learned", "all"]


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation; 0 for a single value."""
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.float().var() / (x.float().mean() ** 2 + 1e-10)


class NoisyAboveMeanGate(nn.Module):
    def __init__(self, dim: int, experts: int, mode: GateMode, noise_floor: float = 0.01):
        super().__init__()
        self.mode, self.experts, self.noise_floor = mode, experts, noise_floor
        if mode == "learned":
            self.w_gate = nn.Parameter(torch.zeros(dim, experts))
            self.w_noise = nn.Parameter(torch.zeros(dim, experts))
        else:
            self.register_buffer("w_gate", torch.zeros(dim, experts), persistent=False)
            self.register_buffer("w_noise", torch.zeros(dim, experts), persistent=False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(slot weights (N, K), kept mask (N, K) bool, load-balancing loss) for user vectors ``h``."""
        n = h.shape[0]
        if self.mode == "all":
            kept = torch.ones(n, self.experts, dtype=torch.bool, device=h.device)
            return kept.to(h.dtype), kept, h.new_zeros(())
        logits = h @ self.w_gate
        if self.training:
            scale = F.softplus(h @ self.w_noise) + self.noise_floor
            logits = logits + torch.randn_like(logits) * scale
        p = torch.softmax(logits, dim=1)
        # equal probabilities (the untrained gate at inference) must all count as above the mean
        kept = p >= p.mean(dim=1, keepdim=True) * (1.0 - 1e-6)
        if self.mode == "random_subset":
            return kept.to(h.dtype), kept, h.new_zeros(())
        gates = p * kept
        gates = gates / gates.sum(dim=1, keepdim=True).clamp_min(1e-12)
        load = cv_squared(gates.sum(dim=0)) if self.training else h.new_zeros(())
        return gates, kept, load
