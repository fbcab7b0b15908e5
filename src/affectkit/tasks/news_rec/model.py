"""The SEIN-style network (spec 2.3) and its ablations, plus the NRMS-style content-only model.

- News encoder (NRMS-style): title word embeddings -> multi-head self-attention -> additive
  attention, plus a category embedding; x_n = content (+ a news ID embedding for news seen in
  training, ``model.news_ids``), so cold news get a vector from their text.
- Global module: LightGCN (layer mean, symmetric normalisation, no self-loops) over the snapshot
  graph of the impression's boundary (``prepare.py``): user ID embeddings and x_n in, g_u and g_n out.
- Stage encoder: LightGCN with ``gcn_layers_stage`` layers on each stage graph, from the same base
  features (shared: only the adjacency changes); u_t = the user row. A user without clicks in a
  stage gets the learned absent vector; every stage adds a position embedding and a time-gap
  embedding of (t - stage end), bucketed by stage widths.
- LSTM branch: the last hidden state over the T stages; self-attention branch: a Transformer
  encoder over the stages (key-padding mask on absent stages, unless all are absent) pooled by
  additive attention; local fusion l_u = beta h + (1 - beta) a, beta = sigmoid(W [h; a]).
- Global-local fusion z_u = gamma g_u + (1 - gamma) l_u, gamma = sigmoid(W [g; l]) (logged);
  the news side is z_n = g_n; the score is z_u . z_n.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from affectkit.components.graph import bipartite_adjacency, propagate
from affectkit.tasks.news_rec.prepare import Prepared


class AdditiveAttention(nn.Module):
    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.query = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, d) -> (B, d); ``mask`` (B, L) True where present."""
        logits = self.query(torch.tanh(self.proj(x))).squeeze(-1)
        if mask is not None:
            logits = logits.masked_fill(~mask, -1e9)
        return (torch.softmax(logits, dim=1).unsqueeze(-1) * x).sum(1)


class NewsEncoder(nn.Module):
    """``nrms``: self-attention over the title words, then additive attention; ``bow``: their mean."""

    def __init__(self, vocab: int, categories: int, word_dim: int, dim: int, heads: int, dropout: float,
                 kind: str = "nrms"):
        super().__init__()
        self.kind = kind
        self.words = nn.Embedding(vocab, word_dim, padding_idx=0)
        if kind == "nrms":
            self.attn = nn.MultiheadAttention(word_dim, heads if word_dim % heads == 0 else 1, dropout=dropout,
                                              batch_first=True)
            self.pool = AdditiveAttention(word_dim)
        self.category = nn.Embedding(categories, word_dim)
        self.out = nn.Linear(word_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        present = tokens > 0
        present = present | ~present.any(1, keepdim=True)  # an empty title attends to its padding
        w = self.drop(self.words(tokens))
        if self.kind == "bow":
            pooled = (w * present.unsqueeze(-1)).sum(1) / present.sum(1, keepdim=True)
        else:
            h, _ = self.attn(w, w, w, key_padding_mask=~present, need_weights=False)
            pooled = self.pool(self.drop(h), present)
        return self.out(pooled + self.category(category))


class NewsGraphs:
    """Normalised adjacencies of the global snapshots and of the stages, built on first use."""

    def __init__(self, prep: Prepared):
        self.n_users, self.n_news = prep.n_users, len(prep.news_ids)
        self.base, self.clicks, self.stage_of = prep.base_edges, prep.click_edges, prep.click_stage
        self._global: dict[int, torch.Tensor] = {}
        self._stage: dict[int, torch.Tensor] = {}
        self._stage_users: dict[int, np.ndarray] = {}

    def _adjacency(self, edges: np.ndarray) -> torch.Tensor:
        m = sp.csr_matrix((np.ones(len(edges), np.float32), (edges[:, 0], edges[:, 1])),
                          shape=(self.n_users, self.n_news))
        return bipartite_adjacency(m)

    def global_at(self, k: int, device: torch.device) -> torch.Tensor:
        if k not in self._global:
            self._global[k] = self._adjacency(np.concatenate([self.base, self.clicks[self.stage_of < k]]))
        return self._global[k].to(device)

    def stage(self, s: int, device: torch.device) -> torch.Tensor:
        if s not in self._stage:
            self._stage[s] = self._adjacency(self.clicks[self.stage_of == s])
        return self._stage[s].to(device)

    def has_clicks(self, s: int, users: np.ndarray) -> np.ndarray:
        if s not in self._stage_users:
            self._stage_users[s] = np.unique(self.clicks[self.stage_of == s, 0])
        return np.isin(users, self._stage_users[s])


class NewsRecommender(nn.Module):
    """All variants: ``sein``, ``sein-no-lstm``, ``sein-no-sa``, ``global``, ``local``, ``nrms``."""

    def __init__(self, prep: Prepared, cfg: Any):
        super().__init__()
        m = cfg.model
        self.variant, self.dim, self.T = m.variant, m.dim, m.n_stages
        self.layers_g, self.layers_s = m.gcn_layers_global, m.gcn_layers_stage
        self.use_global = self.variant in ("sein", "sein-no-lstm", "sein-no-sa", "global")
        self.use_lstm = self.variant in ("sein", "sein-no-sa", "local")
        self.use_sa = self.variant in ("sein", "sein-no-lstm", "local")
        self.last_gate: torch.Tensor | None = None  # the global share gamma of the last batch (logged)
        self.graphs = NewsGraphs(prep)
        self.register_buffer("tokens", torch.from_numpy(prep.tokens), persistent=False)
        self.register_buffer("category", torch.from_numpy(prep.category), persistent=False)
        self.register_buffer("seen", torch.from_numpy(prep.seen), persistent=False)
        self.news_encoder = NewsEncoder(prep.vocab, prep.n_categories, m.word_dim, m.dim, m.heads, m.dropout,
                                        m.news_encoder)
        self.news_id = nn.Embedding(len(prep.news_ids), m.dim) if m.news_ids and self.variant != "nrms" else None
        if self.news_id is not None:
            nn.init.normal_(self.news_id.weight, std=0.01)
        if self.variant == "nrms":
            self.user_attn = nn.MultiheadAttention(m.dim, m.heads if m.dim % m.heads == 0 else 1, dropout=m.dropout,
                                                   batch_first=True)
            self.user_pool = AdditiveAttention(m.dim)
            return
        self.user = nn.Embedding(prep.n_users, m.dim)
        nn.init.normal_(self.user.weight, std=0.01)
        if self.use_lstm or self.use_sa:
            self.absent = nn.Parameter(torch.zeros(m.dim))
            self.position = nn.Embedding(m.n_stages, m.dim)
            self.gap = nn.Embedding(m.n_stages + 2, m.dim)
        if self.use_lstm:
            self.lstm = nn.LSTM(m.dim, m.dim, batch_first=True)
        if self.use_sa:
            layer = nn.TransformerEncoderLayer(m.dim, m.sa_heads if m.dim % m.sa_heads == 0 else 1, 2 * m.dim,
                                               m.dropout, batch_first=True)
            self.sa = nn.TransformerEncoder(layer, m.sa_layers, enable_nested_tensor=False)
            self.sa_pool = AdditiveAttention(m.dim)
        if self.use_lstm and self.use_sa:
            self.local_gate = nn.Linear(2 * m.dim, m.dim) if m.local_fuse == "gate" else None
            self.local_linear = nn.Linear(2 * m.dim, m.dim) if m.local_fuse == "linear" else None
        if self.use_global and (self.use_lstm or self.use_sa):
            self.fuse_gate = nn.Linear(2 * m.dim, m.dim)

    # ----------------------------------------------------------------------------- pieces
    def train(self, mode: bool = True) -> NewsRecommender:
        self._eval_cache: dict[Any, torch.Tensor] = {}  # weights change in training: nothing is kept
        return super().train(mode)

    def _cached(self, key: Any, compute: Any) -> Any:
        """In evaluation the news vectors and the propagations are computed once for all batches."""
        if self.training:
            return compute()
        cache = self.__dict__.setdefault("_eval_cache", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def news_features(self) -> torch.Tensor:
        def compute() -> torch.Tensor:
            x = self.news_encoder(self.tokens, self.category)
            if self.news_id is not None:
                x = x + self.news_id.weight * self.seen.unsqueeze(1)
            return x

        return self._cached("news", compute)

    def global_vectors(self, x_news: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(g for every user, g for every news) at snapshot k."""
        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            nodes = torch.cat([self.user.weight, x_news])
            out = propagate(self.graphs.global_at(k, nodes.device), nodes, self.layers_g, "standard")
            return out[: self.graphs.n_users], out[self.graphs.n_users :]

        return self._cached(("global", k), compute)

    def stage_vectors(self, x_news: torch.Tensor, s: int) -> torch.Tensor:
        """Every user's vector from stage s's graph."""
        def compute() -> torch.Tensor:
            nodes = torch.cat([self.user.weight, x_news])
            return propagate(self.graphs.stage(s, nodes.device), nodes, self.layers_s, "standard")[: self.graphs.n_users]

        return self._cached(("stage", s), compute)

    def stage_sequence(self, x_news: torch.Tensor, users: torch.Tensor, k: torch.Tensor, time: torch.Tensor,
                       width: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d) stage inputs and (B, T) presence, for stages k-T .. k-1 of each row."""
        B, T, dev = len(users), self.T, x_news.device
        seq = self.absent.expand(B, T, self.dim).clone()
        present = torch.zeros(B, T, dtype=torch.bool, device=dev)
        stages = k.unsqueeze(1) + torch.arange(-T, 0, device=dev).unsqueeze(0)  # (B, T)
        u_np = users.cpu().numpy()
        for s in torch.unique(stages).tolist():
            rows, cols = torch.nonzero(stages == s, as_tuple=True)
            has = torch.from_numpy(self.graphs.has_clicks(s, u_np[rows.cpu().numpy()])).to(dev)
            if not has.any():
                continue
            rows, cols = rows[has], cols[has]
            vec = self.stage_vectors(x_news, s)[users[rows]]
            seq = seq.index_put((rows, cols), vec)
            present[rows, cols] = True
        end = (stages + 1).to(time.dtype) * width
        gap = ((time.unsqueeze(1) - end) / width).floor().clamp(0, self.T + 1).long()
        pos = torch.arange(T, device=dev)
        return seq + self.position(pos).unsqueeze(0) + self.gap(gap), present

    def local_vectors(self, seq: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.use_lstm:
            parts.append(self.lstm(seq)[0][:, -1])
        if self.use_sa:
            mask = present | ~present.any(1, keepdim=True)
            h = self.sa(seq, src_key_padding_mask=~mask)
            parts.append(self.sa_pool(h, mask))
        if len(parts) == 1:
            return parts[0]
        both = torch.cat(parts, dim=1)
        if self.local_gate is not None:
            beta = torch.sigmoid(self.local_gate(both))
            return beta * parts[0] + (1 - beta) * parts[1]
        return self.local_linear(both)

    def nrms_users(self, x_news: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        present = history >= 0
        present = present | ~present.any(1, keepdim=True)
        h = x_news[history.clamp_min(0)]
        h, _ = self.user_attn(h, h, h, key_padding_mask=~present, need_weights=False)
        return self.user_pool(h, present)

    # ----------------------------------------------------------------------------- scoring
    def score(self, batch: dict[str, torch.Tensor], width: float) -> torch.Tensor:
        """(B, C) scores of the batch's candidates (padding -1 scores 0)."""
        x_news = self.news_features()
        cands = batch["candidates"]
        safe = cands.clamp_min(0)
        if self.variant == "nrms":
            z_u = self.nrms_users(x_news, batch["history"])
            return (z_u.unsqueeze(1) * x_news[safe]).sum(-1)
        users, ks = batch["users"], batch["k"]
        z_u = torch.zeros(len(users), self.dim, device=x_news.device)
        z_n = torch.zeros(*cands.shape, self.dim, device=x_news.device)
        g_u = torch.zeros_like(z_u)
        if self.use_global:
            for k in torch.unique(ks).tolist():
                rows = torch.nonzero(ks == k).squeeze(1)
                g_users, g_news = self.global_vectors(x_news, k)
                g_u[rows] = g_users[users[rows]]
                z_n[rows] = g_news[safe[rows]]
        else:  # local only: the news side is the content (+ ID) vector
            z_n = x_news[safe]
        if self.use_lstm or self.use_sa:
            seq, present = self.stage_sequence(x_news, users, ks, batch["time"], width)
            l_u = self.local_vectors(seq, present)
            if self.use_global:
                gamma = torch.sigmoid(self.fuse_gate(torch.cat([g_u, l_u], dim=1)))
                self.last_gate = gamma.detach().mean(1)
                z_u = gamma * g_u + (1 - gamma) * l_u
            else:
                z_u = l_u
        else:
            z_u = g_u
        # a batch whose users clicked in none of its stages leaves the ID table out of the graph;
        # a zero term keeps every parameter in it (DistributedDataParallel expects that)
        z_u = z_u + 0.0 * self.user.weight[:1].sum()
        return (z_u.unsqueeze(1) * z_n).sum(-1)

    def forward(self, batch: dict[str, torch.Tensor], width: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Softmax cross-entropy of the clicked candidate (column 0) against the sampled unclicked ones."""
        scores = self.score(batch, width)
        loss = nn.functional.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))
        logs = {"ce": loss.detach()}
        if self.last_gate is not None:
            logs["gate_global"] = self.last_gate.mean()
        return loss, logs
