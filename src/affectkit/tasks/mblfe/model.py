"""The MBLFE network (spec 1.3, as released) on a shared base that the baselines also use.

Nodes are users 0..U-1 then items U..U+I-1 (0-based; the folder format's padding row 0 is not
needed). Every model scores users against all items with ``score_users``; the scoring state
(propagated embeddings, the items through the experts) is cached between evaluation batches and
dropped whenever the model goes back to training or takes an optimizer step.

A training batch (``train.collate``) holds, for B users and the behaviors in funnel order (target
last): ``users`` (B,), ``pos`` (B, nb) one positive per behavior, ``neg`` (B, nb, n) negatives the user
never touched, and ``has`` (B, nb) whether the user has that behavior at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from affectkit.components.graph import bipartite_adjacency, node_degrees, propagate
from affectkit.tasks.mblfe.method_gate import NoisyAboveMeanGate
from affectkit.tasks.mblfe.method_losses import bce_loss, bpr_loss, embedding_loss, expert_infonce


@dataclass
class Graph:
    """What a model is built from: sizes and one binary user x item matrix per behavior (target last)."""

    n_users: int
    n_items: int
    behaviors: tuple[str, ...]
    matrices: tuple[sp.csr_matrix, ...]

    @property
    def target(self) -> int:
        return len(self.behaviors) - 1


class Recommender(nn.Module):
    """Shared ID embeddings, cached full-item scoring, and the batch layout."""

    def __init__(self, graph: Graph, dim: int):
        super().__init__()
        self.n_users, self.n_items = graph.n_users, graph.n_items
        self.target = graph.target
        self.embedding = nn.Embedding(self.n_users + self.n_items, dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        self._adjacency: dict[tuple[int, str], torch.Tensor] = {}
        self._cpu_adjacency: list[torch.Tensor] = []
        self._cache: Any = None

    # sparse graphs are plain attributes (not buffers: safetensors holds dense weights only)
    def set_graphs(self, matrices: list[sp.spmatrix]) -> None:
        self._cpu_adjacency = [bipartite_adjacency(m) for m in matrices]
        self._adjacency = {}

    def adjacency(self, b: int) -> torch.Tensor:
        device = self.embedding.weight.device
        key = (b, str(device))
        if key not in self._adjacency:
            self._adjacency[key] = self._cpu_adjacency[b].to(device)
        return self._adjacency[key]

    def train(self, mode: bool = True) -> Recommender:
        self._cache = None
        return super().train(mode)

    def clear_cache(self) -> None:
        self._cache = None

    def split(self, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return table[: self.n_users], table[self.n_users :]

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), n_items) scores against every item."""
        if self._cache is None:
            self._cache = self.scoring_state()
        return self.score_from_state(self._cache, users.to(self.embedding.weight.device))

    def scoring_state(self) -> Any:
        raise NotImplementedError

    def score_from_state(self, state: Any, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ExpertBank(nn.Module):
    """K two-layer MLPs d -> d/2 -> d' with a tanh between (no output activation), run as one einsum."""

    def __init__(self, experts: int, dim: int, out: int):
        super().__init__()
        hidden = max(1, dim // 2)
        self.w1 = nn.Parameter(torch.empty(experts, dim, hidden))
        self.b1 = nn.Parameter(torch.empty(experts, hidden))
        self.w2 = nn.Parameter(torch.empty(experts, hidden, out))
        self.b2 = nn.Parameter(torch.empty(experts, out))
        for w, b, fan_in in ((self.w1, self.b1, dim), (self.w2, self.b2, hidden)):  # nn.Linear's init
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, K, d')."""
        hidden = torch.tanh(torch.einsum("nd,kdh->nkh", x, self.w1) + self.b1)
        return torch.einsum("nkh,kho->nko", hidden, self.w2) + self.b2


class MBLFE(Recommender):
    """Per-behavior graph propagation, behavior-share enrichment, K experts, the gate, the projection."""

    def __init__(self, graph: Graph, cfg: Any):
        m, loss = cfg.model, cfg.loss
        super().__init__(graph, m.dim)
        self.layers, self.variant = m.layers, m.gcn_variant
        self.tau, self.ssl_reg, self.reg_weight, self.load_weight = loss.ssl_tau, loss.ssl_reg, loss.reg_weight, loss.load_balance
        self.set_graphs(list(graph.matrices))
        deg = np.stack([node_degrees(mat) for mat in graph.matrices], axis=1)  # (U+I, B)
        self.register_buffer("share", torch.from_numpy(deg / (deg.sum(axis=1, keepdims=True) + 1e-6)).float(),
                             persistent=False)
        self.experts = ExpertBank(m.num_experts, m.dim, m.label_size)
        self.gate = NoisyAboveMeanGate(m.dim, m.num_experts, m.gate_mode, m.gate_noise_floor)
        self.project = nn.Linear(m.label_size, m.label_size, bias=False)

    def behavior_embeddings(self) -> list[torch.Tensor]:
        """e_b for every node, one per behavior (shared layer-0 table)."""
        e0 = self.embedding.weight
        return [propagate(self.adjacency(b), e0, self.layers, self.variant) for b in range(len(self._cpu_adjacency))]

    def enrich(self, per_behavior: list[torch.Tensor]) -> torch.Tensor:
        """h_v = sum_b w_{v,b} e_b(v), w_{v,b} = deg_b(v) / (sum_b' deg_b'(v) + 1e-6)."""
        return sum(self.share[:, b : b + 1] * e for b, e in enumerate(per_behavior))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        users, pos, neg, has = batch["users"], batch["pos"], batch["neg"], batch["has"]
        u0 = self.n_users
        per_behavior = self.behavior_embeddings()

        # L1: BPR per behavior on its own propagated embeddings, (positive, first negative)
        l1_terms = []
        for b, e in enumerate(per_behavior):
            if has[:, b].any():
                eu = e[users]
                l1_terms.append(bpr_loss((eu * e[u0 + pos[:, b]]).sum(-1), (eu * e[u0 + neg[:, b, 0]]).sum(-1), has[:, b]))
        l1 = torch.stack(l1_terms).mean() if l1_terms else per_behavior[0].new_zeros(())

        h = self.enrich(per_behavior)
        f_user = self.experts(h[users])  # (B, K, d')
        weights, kept, load = self.gate(h[users])
        items = torch.cat([pos.unsqueeze(-1), neg], dim=-1)  # (B, nb, 1 + n)
        f_item = self.experts(h[u0 + items.reshape(-1)]).view(*items.shape, *f_user.shape[1:])

        # L_BCE: the label experts explain every behavior (1 positive, n negatives)
        s = torch.einsum("bkd,bjmkd,bk->bjm", f_user, f_item, weights)
        labels = torch.zeros_like(s)
        labels[..., 0] = 1.0
        l_bce = bce_loss(s, labels, has)

        # L3: BPR on the target-space score
        t_user = self.project(f_user)
        tgt = self.target
        y = torch.einsum("bkd,bmkd,bk->bm", t_user, f_item[:, tgt, :2], weights)
        l3 = bpr_loss(y[:, 0], y[:, 1], has[:, tgt])

        # L_SSL: users, then the target positives routed by their user's gate
        repeats = max(1, users.shape[0] // f_user.shape[1])
        l_ssl = expert_infonce(f_user, kept, self.tau, repeats)
        with_target = has[:, tgt]
        if with_target.sum() >= 2:
            l_ssl = l_ssl + expert_infonce(f_item[with_target, tgt, 0], kept[with_target], self.tau, repeats)

        user_table, item_table = self.split(self.embedding.weight)
        l_emb = embedding_loss(user_table, item_table)
        total = l1 + l_bce + self.ssl_reg * l_ssl + l3 + self.reg_weight * l_emb + self.load_weight * load
        logs = {"l1": l1.detach(), "l_bce": l_bce.detach(), "l_ssl": l_ssl.detach(), "l3": l3.detach(),
                "l_emb": l_emb.detach()}
        if self.gate.mode == "learned":
            logs["load"] = load.detach()
        return total, logs

    def scoring_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors h_u (U, d), items through all experts z_i (I, K d'))."""
        h = self.enrich(self.behavior_embeddings())
        users, items = self.split(h)
        return users, self.experts(items).flatten(1)

    def score_from_state(self, state: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor) -> torch.Tensor:
        h_users, z_items = state
        hu = h_users[users]
        weights, _, _ = self.gate(hu)
        t = self.project(self.experts(hu)) * weights.unsqueeze(-1)  # unselected slots are zero
        return t.flatten(1) @ z_items.T

    @torch.no_grad()
    def expert_outputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target-space user slots P f_k(h_u) (U, K, d'), item slots f_k(h_i) (I, K, d'), inference
        slot weights (U, K)): what the alignment analysis reads."""
        was = self.training
        self.eval()
        users, items = self.split(self.enrich(self.behavior_embeddings()))
        weights, _, _ = self.gate(users)
        out = self.project(self.experts(users)), self.experts(items), weights
        self.train(was)
        return out
