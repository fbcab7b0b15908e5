"""Downstream heads and losses of PRIME (spec 4 and 5.6): the SurvPath discrete-time NLL survival loss,
the Cox partial likelihood (Breslow ties), the risk of a discrete-time head, and the downstream model
(encoder + a linear head) with modality dropout for the supervised baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affectkit.core.errors import UsageError

HEADS = ("nll", "cox", "binary")


def nll_surv_loss(logits: torch.Tensor, bins: torch.Tensor, censored: torch.Tensor, alpha: float = 0.0,
                  eps: float = 1e-7, reduction: str = "mean") -> torch.Tensor:
    """Discrete-time survival NLL (Zadeh & Schmid 2020; SurvPath's NLLSurvLoss).

    hazards h = sigmoid(logits) [B, K]; S = cumprod(1 - h); S_pad = [1, S]; with c = 1 for censored:
    uncensored term -(1-c)(log S_pad[y] + log h[y]), censored term -c log S_pad[y+1] (each factor
    clamped at ``eps``); loss = (1-alpha)(uncensored + censored) + alpha * uncensored.
    """
    y = bins.long().view(-1, 1)
    c = censored.to(logits.dtype).view(-1, 1)
    hazards = torch.sigmoid(logits)
    surv = torch.cumprod(1 - hazards, dim=1)
    s_pad = torch.cat([torch.ones_like(c), surv], 1)
    s_prev = s_pad.gather(1, y).clamp_min(eps)
    h_this = hazards.gather(1, y).clamp_min(eps)
    s_this = s_pad.gather(1, y + 1).clamp_min(eps)
    uncensored = -(1 - c) * (torch.log(s_prev) + torch.log(h_this))
    censored_term = -c * torch.log(s_this)
    loss = (1 - alpha) * (uncensored + censored_term) + alpha * uncensored
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss.view(-1)
    raise UsageError(f"unknown reduction {reduction!r} (mean, sum, none)")


def cox_ph_loss(eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox log partial likelihood with Breslow ties, averaged over the events of the batch:
    -(1/N_e) sum_{i: e_i=1} [eta_i - log sum_{j: T_j >= T_i} exp(eta_j)]; 0 (with grad) without events."""
    eta = eta.view(-1)
    time = time.view(-1).to(eta.device)
    event = event.view(-1).to(eta.device).bool()
    if not bool(event.any()):
        return eta.sum() * 0.0
    order = torch.argsort(time, descending=True, stable=True)
    t_s, e_s, eta_s = time[order], event[order], eta[order]
    lcse = torch.logcumsumexp(eta_s, dim=0)
    # Breslow: the risk set of a tied time holds every tied subject -> use the value at the group's end
    _, counts = torch.unique_consecutive(t_s, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1
    log_risk = lcse[ends.repeat_interleave(counts)]
    return -(eta_s - log_risk)[e_s].mean()


def risk_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Risk of a discrete-time head: -sum_k prod_{l<=k} (1 - sigmoid(logit_l)) (higher = earlier event)."""
    return -torch.cumprod(1 - torch.sigmoid(logits), dim=-1).sum(-1)


def modality_dropout(observed: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each observed modality with probability ``p``; every patient keeps >= 1 of its observed ones
    (a random one when all were dropped). Patients without any observed modality stay as they are."""
    obs = observed.bool()
    if p <= 0:
        return obs.clone()
    u = torch.rand(obs.shape, generator=generator).to(obs.device)
    kept = obs & (u >= p)
    empty = ~kept.any(1) & obs.any(1)
    if bool(empty.any()):
        # pick one observed modality at random: argmax of random scores over the observed ones
        r = torch.rand(obs.shape, generator=generator).to(obs.device).masked_fill(~obs, -1.0)
        pick = F.one_hot(r.argmax(1), obs.shape[1]).bool()
        kept = torch.where(empty[:, None], pick, kept)
    return kept


class DownstreamModel(nn.Module):
    """A PRIME encoder and a linear head: ``nll`` Linear(D, bins) (discrete-time survival), ``cox``
    Linear(D, 1) (linear predictor) or ``binary`` Linear(D, 1) (horizon label logit)."""

    def __init__(self, encoder: nn.Module, head: str = "nll", bins: int = 4):
        super().__init__()
        if head not in HEADS:
            raise UsageError(f"unknown head {head!r} ({', '.join(HEADS)})")
        self.encoder = encoder
        self.kind = head
        self.head = nn.Linear(encoder.dim, int(bins) if head == "nll" else 1)
        self.frozen_encoder = False

    @classmethod
    def from_config(cls, encoder: nn.Module, finetune_cfg) -> DownstreamModel:
        """Head from ``FinetuneConfig``: horizon -> binary, else ``finetune_cfg.head`` (nll | cox)."""
        head = "binary" if finetune_cfg.target == "horizon" else finetune_cfg.head
        return cls(encoder, head, int(finetune_cfg.bins))

    def train(self, mode: bool = True) -> DownstreamModel:
        """Training mode, except a frozen encoder (linear probe) which stays in eval mode."""
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()
        return self

    def forward(self, batch: dict, observed: torch.Tensor | None = None) -> torch.Tensor:
        """Logits: [B, bins] for nll, [B] for cox / binary."""
        h = self.encoder(batch, observed)
        out = self.head(h)
        return out if self.kind == "nll" else out.squeeze(-1)

    def risk(self, batch: dict, observed: torch.Tensor | None = None) -> torch.Tensor:
        """Risk [B] (higher = earlier event / positive label for every head)."""
        logits = self.forward(batch, observed)
        return risk_from_logits(logits) if self.kind == "nll" else logits
