"""MBLFE's losses (spec 1.4): BPR, the label experts' BCE, the experts' InfoNCE (L_SSL) and L_emb.

All take a boolean ``mask`` of the rows that exist: a user without a behavior has no positive
there, and its row is left out (the release lets such padded rows in as (0, 0) pairs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    while mask.ndim < x.ndim:
        mask = mask.unsqueeze(-1)
    mask = mask.expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-log(1e-10 + sigmoid(s+ - s-)), averaged over the rows that exist (the release's form)."""
    return masked_mean(-torch.log(1e-10 + torch.sigmoid(pos - neg)), mask)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """BCE-with-logits averaged over the entries of the rows that exist."""
    return masked_mean(F.binary_cross_entropy_with_logits(logits, labels, reduction="none"), mask)


def embedding_loss(*tables: torch.Tensor) -> torch.Tensor:
    """sum over tables of ||E||_2 / rows: the non-squared Frobenius norm per row (RecBole's EmbLoss form)."""
    return sum(torch.linalg.norm(t) / max(1, t.shape[0]) for t in tables)


def expert_infonce(outputs: torch.Tensor, routed: torch.Tensor, tau: float, repeats: int) -> torch.Tensor:
    """L_SSL over expert outputs (N, K, d') of N rows, ``routed`` (N, K) saying which rows each expert saw.

    For every expert k with two or more rows, draw two different rows a, b routed to k; the positive
    is (a, b) through expert k, the negatives every output of every other expert for the rows routed
    to it: l_k = -log(exp(a.b/tau) / (exp(a.b/tau) + sum_x exp(a.x/tau))), on L2-normalised outputs.
    The mean over experts and ``repeats`` draws.
    """
    n, k, _ = outputs.shape
    avail = routed.T.to(outputs.dtype)
    experts = torch.nonzero(avail.sum(dim=1) >= 2).squeeze(1)
    if n < 2 or k < 2 or len(experts) == 0 or repeats < 1:
        return outputs.new_zeros(())
    z = F.normalize(outputs, dim=-1)
    draw = torch.multinomial(avail[experts].repeat(repeats, 1), 2, replacement=False)
    which = experts.repeat(repeats)
    a, b = z[draw[:, 0], which], z[draw[:, 1], which]
    pos = (a * b).sum(-1) / tau
    flat = z.reshape(n * k, -1)
    owner = torch.arange(k, device=z.device).repeat(n)
    negative = routed.reshape(-1)[None, :] & (owner[None, :] != which[:, None])
    sim = (a @ flat.T / tau).masked_fill(~negative, float("-inf"))
    return (torch.logsumexp(torch.cat([pos[:, None], sim], dim=1), dim=1) - pos).mean()
