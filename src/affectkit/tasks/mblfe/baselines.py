"""Baselines trained by the same loop, sampler and evaluator as MBLFE (``model.name``), and popularity.

- ``mf-bpr``: matrix factorisation with BPR on the target behavior only (Rendle et al. 2009);
- ``lightgcn-target``: LightGCN (He et al. 2020; standard: mean of layers, no normalisation) on the
  target graph, BPR on target pairs;
- ``lightgcn-merged``: LightGCN on the union of all behaviors treated as one, BPR on every
  behavior's (positive, negative) pairs;
- ``crgcn``: a CRGCN-style cascade (Yan et al., TOIS 2023): the behaviors in funnel order, each
  behavior's propagation (the release's normalised-and-summed variant) starting from the previous
  behavior's output, with a residual connection, and a BPR term per behavior (multi-task); the
  target's output embeddings score.
- popularity: items by their training target count (no training).

Every trained baseline uses the same L_emb regulariser and weight as MBLFE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from affectkit.components.graph import propagate
from affectkit.tasks.mblfe.method_losses import bpr_loss, embedding_loss
from affectkit.tasks.mblfe.model import Graph, Recommender


def _pair_scores(e_user: torch.Tensor, e_items: torch.Tensor, users: torch.Tensor, pos: torch.Tensor,
                 neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    eu = e_user[users]
    return (eu * e_items[pos]).sum(-1), (eu * e_items[neg]).sum(-1)


class _DotProduct(Recommender):
    """Models that score by a dot product of final user and item embeddings."""

    def __init__(self, graph: Graph, cfg: Any):
        super().__init__(graph, cfg.model.dim)
        self.reg_weight = cfg.loss.reg_weight

    def final_embeddings(self) -> torch.Tensor:
        raise NotImplementedError

    def scoring_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.final_embeddings())

    def score_from_state(self, state: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor) -> torch.Tensor:
        e_user, e_items = state
        return e_user[users] @ e_items.T

    def regulariser(self) -> torch.Tensor:
        return self.reg_weight * embedding_loss(*self.split(self.embedding.weight))


class MFBPR(_DotProduct):
    def final_embeddings(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = self.target
        e_user, e_items = self.split(self.final_embeddings())
        s_pos, s_neg = _pair_scores(e_user, e_items, batch["users"], batch["pos"][:, t], batch["neg"][:, t, 0])
        bpr = bpr_loss(s_pos, s_neg, batch["has"][:, t])
        return bpr + self.regulariser(), {"bpr": bpr.detach()}


class LightGCN(_DotProduct):
    """``behaviors='target'``: the target graph, target pairs; ``'merged'``: the union graph, all pairs."""

    def __init__(self, graph: Graph, cfg: Any, behaviors: str):
        super().__init__(graph, cfg)
        self.layers, self.merged = cfg.model.layers, behaviors == "merged"
        if self.merged:
            union = sum(graph.matrices[1:], graph.matrices[0].copy())
            self.set_graphs([sp.csr_matrix(union > 0, dtype=np.float32)])
        else:
            self.set_graphs([graph.matrices[graph.target]])

    def final_embeddings(self) -> torch.Tensor:
        return propagate(self.adjacency(0), self.embedding.weight, self.layers, "standard")

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        e_user, e_items = self.split(self.final_embeddings())
        behaviors = range(batch["pos"].shape[1]) if self.merged else [self.target]
        terms = []
        for b in behaviors:
            if batch["has"][:, b].any():
                s_pos, s_neg = _pair_scores(e_user, e_items, batch["users"], batch["pos"][:, b], batch["neg"][:, b, 0])
                terms.append(bpr_loss(s_pos, s_neg, batch["has"][:, b]))
        bpr = torch.stack(terms).mean() if terms else e_user.new_zeros(())
        return bpr + self.regulariser(), {"bpr": bpr.detach()}


class CascadeGCN(_DotProduct):
    """CRGCN-style: E_b = E_{b-1} + sum_{l>=1} of behavior b's propagation layers from E_{b-1}."""

    def __init__(self, graph: Graph, cfg: Any):
        super().__init__(graph, cfg)
        self.layers = cfg.model.layers
        self.set_graphs(list(graph.matrices))

    def cascade(self) -> list[torch.Tensor]:
        out, e = [], self.embedding.weight
        for b in range(len(self._cpu_adjacency)):
            e = propagate(self.adjacency(b), e, self.layers, "official")  # = e + the normalised layers
            out.append(e)
        return out

    def final_embeddings(self) -> torch.Tensor:
        return self.cascade()[-1]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = []
        for b, e in enumerate(self.cascade()):
            if batch["has"][:, b].any():
                e_user, e_items = self.split(e)
                s_pos, s_neg = _pair_scores(e_user, e_items, batch["users"], batch["pos"][:, b], batch["neg"][:, b, 0])
                terms.append(bpr_loss(s_pos, s_neg, batch["has"][:, b]))
        bpr = torch.stack(terms).mean()
        return bpr + self.regulariser(), {"bpr": bpr.detach()}


def build_recommender(graph: Graph, cfg: Any) -> Recommender:
    from affectkit.tasks.mblfe.model import MBLFE

    name = cfg.model.name
    if name == "mblfe":
        return MBLFE(graph, cfg)
    if name == "mf-bpr":
        return MFBPR(graph, cfg)
    if name in ("lightgcn-target", "lightgcn-merged"):
        return LightGCN(graph, cfg, name.split("-")[1])
    if name == "crgcn":
        return CascadeGCN(graph, cfg)
    raise ValueError(f"unknown model.name {name!r}")


def popularity_scores(target: sp.spmatrix) -> np.ndarray:
    """(n_items,) training target counts: the same ranking for every user."""
    return np.asarray(sp.csr_matrix(target).sum(axis=0)).ravel().astype(np.float32)
