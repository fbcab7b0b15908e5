"""SSM's building blocks, each small and testable on its own (shapes follow the authors' release).

- ``MoEMLP``: the shared/private mixture patched into the last blocks of the visual encoder.
- ``FETemporalHead``: CLS-token temporal transformer -> one clip feature.
- ``AULocalTemporal``: window-3 local attention over frames, exactly the identity at init.
- ``PromptLearner``: CoOp class-specific contexts on a frozen text tower (Textual Semantic Prototypes).
- ``DynamicPriorMapping``: FACS-prior maps between AU and expression prototypes, gated fusion.
- ``PairSmoother`` / ``TemporalSmoother``: the release's AU-logit smoothing and a clean alternative.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MoEMLP(nn.Module):
    """out = shared(x) + alpha * sum_{top-k} w_k * expert_k(x); weights not renormalised."""

    def __init__(self, shared: nn.Module, dim: int, n_experts: int = 4, hidden: int = 512, top_k: int = 2,
                 alpha: float = 0.1, noise_std: float = 0.01):
        super().__init__()
        self.shared = shared
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)) for _ in range(n_experts)
        )
        for expert in self.experts:
            for layer in (expert[0], expert[2]):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.gate = nn.Linear(dim, n_experts)
        nn.init.xavier_uniform_(self.gate.weight, gain=0.1)
        nn.init.zeros_(self.gate.bias)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.top_k = top_k
        self.noise_std = noise_std

    def routing(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse routing weights [..., E]: softmax over experts, zero outside the top-k."""
        logits = self.gate(x)
        if self.training and self.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.noise_std
        probs = logits.softmax(dim=-1)
        top, idx = probs.topk(self.top_k, dim=-1)
        return torch.zeros_like(probs).scatter(-1, idx, top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.routing(x)
        private = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [..., E, D]
        mixed = (weights.unsqueeze(-1) * private).sum(dim=-2)
        return self.shared(x) + self.alpha * mixed


def patch_moe(encoder_layers: nn.ModuleList, last_n: int, dim: int, **moe_kwargs) -> int:
    """Replace the MLP of the last ``last_n`` transformer blocks by ``MoEMLP`` (in place)."""
    patched = 0
    for layer in list(encoder_layers)[len(encoder_layers) - last_n:] if last_n > 0 else []:
        layer.mlp = MoEMLP(layer.mlp, dim, **moe_kwargs)
        patched += 1
    return patched


class FETemporalHead(nn.Module):
    """Prepend a CLS token, add positions, one pre-norm transformer layer; LN(cls_out + g * cls_in)."""

    def __init__(self, dim: int, n_frames: int = 16, heads: int = 8, mlp_dim: int = 1024, dropout: float = 0.0):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n_frames + 1, dim) * 0.02)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        self.g = nn.Parameter(torch.ones(1))
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, D]
        b, t, _ = frames.shape
        cls_in = self.cls.expand(b, -1, -1)
        x = torch.cat([cls_in, frames], dim=1) + self.pos[:, : t + 1]
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.out_norm(x[:, 0] + self.g * cls_in[:, 0])


class AULocalTemporal(nn.Module):
    """Each frame attends to t-1, t, t+1. Values are the raw features (no V projection); the update
    x + 0.25 * tanh(c) * (context - x) with c = 0 at init makes the module exactly the identity."""

    def __init__(self, dim: int, heads: int = 8, radius: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.radius = heads, radius
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.q.weight, gain=0.5)
        with torch.no_grad():
            self.k.weight.copy_(self.q.weight)  # tied at init
        bias = torch.zeros(heads, 2 * radius + 1)
        bias[:, radius] = 1.0  # [0, 1, 0]: a preference for the frame itself
        self.rel_bias = nn.Parameter(bias)
        self.c = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T, D]
        b, t, d = x.shape
        h, r = self.heads, self.radius
        hd = d // h
        q = self.q(x).view(b, t, h, hd)
        k = self.k(x).view(b, t, h, hd)
        v = x.view(b, t, h, hd)
        offsets = torch.arange(-r, r + 1, device=x.device)
        idx = (torch.arange(t, device=x.device)[:, None] + offsets[None, :])  # [T, W]
        valid = (idx >= 0) & (idx < t)
        idx = idx.clamp(0, t - 1)
        k_win = k[:, idx]  # [B, T, W, H, hd]
        v_win = v[:, idx]
        scores = torch.einsum("bthd,btwhd->bthw", q, k_win) / math.sqrt(hd)
        scores = scores + self.rel_bias[None, None]  # [1, 1, H, W]
        scores = scores.masked_fill(~valid[None, :, None, :], float("-inf"))
        attn = scores.softmax(dim=-1)
        context = torch.einsum("bthw,btwhd->bthd", attn, v_win).reshape(b, t, d)
        return x + 0.25 * torch.tanh(self.c) * (context - x)


class PromptLearner(nn.Module):
    """CoOp with class-specific contexts: "[start] ctx_1..ctx_n descriptor [end]" per class.

    The context vectors replace the placeholder token embeddings through a forward hook on the
    frozen text tower's token-embedding layer, so any HF text encoder works (CLIP, BERT-like).
    """

    def __init__(self, tower: TextTower, descriptors: list[str], n_ctx: int = 8, init_std: float = 0.02):
        super().__init__()
        self.n_ctx = n_ctx
        ids, mask = tower.tokenize_with_placeholders(descriptors, n_ctx)
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.ctx = nn.Parameter(torch.randn(len(descriptors), n_ctx, tower.token_dim) * init_std)

    def forward(self, tower: TextTower) -> torch.Tensor:
        return F.normalize(tower.encode(self.ids, self.mask, self.ctx), dim=-1)


class TextTower(nn.Module):
    """A frozen HF text encoder. ``kind="clip"``: EOS state x text_projection (CLIPTextModelWithProjection);
    ``kind="mean"``: mean pooling of the last hidden states (sentence-transformers encoders)."""

    def __init__(self, model: nn.Module, tokenizer, kind: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._ctx: torch.Tensor | None = None
        self.model.get_input_embeddings().register_forward_hook(self._inject)

    @property
    def token_dim(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    @property
    def out_dim(self) -> int:
        cfg = self.model.config
        return cfg.projection_dim if self.kind == "clip" else cfg.hidden_size

    def train(self, mode: bool = True):  # the tower stays in eval mode (frozen, no dropout)
        super().train(False)
        return self

    def _inject(self, module, inputs, output):
        if self._ctx is None:
            return output
        n = self._ctx.shape[1]
        return torch.cat([output[:, :1], self._ctx.to(output.dtype), output[:, 1 + n:]], dim=1)

    def tokenize_with_placeholders(self, texts: list[str], n_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [" ".join(["X"] * n_ctx) + " " + t + "." for t in texts]
        enc = self.tokenizer(prompts, padding="max_length" if self.kind == "clip" else True, truncation=True,
                             max_length=77, return_tensors="pt")
        ids = enc["input_ids"]
        placeholder = self.tokenizer("X", add_special_tokens=False)["input_ids"]
        if len(placeholder) != 1 or not bool((ids[:, 1 : 1 + n_ctx] == placeholder[0]).all()):
            raise ValueError("the tokenizer does not map the context placeholder to one token per slot")
        return ids, enc["attention_mask"]

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        self._ctx = ctx
        try:
            if self.kind == "clip":
                return self.model(input_ids=ids, attention_mask=mask).text_embeds
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        finally:
            self._ctx = None


class DynamicPriorMapping(nn.Module):
    """M1 (AU->FE, [C, A]) and M2 (FE->AU, [A, C]) from the FACS prior P [C, A] plus learned residuals,
    preserving each row's prior mass; neutral row / column fixed to the prior. Fusion gates start at 0.1."""

    def __init__(self, prior: torch.Tensor, neutral: int | None, gate_init: float = 0.1):
        super().__init__()
        c, a = prior.shape
        self.register_buffer("prior", prior.float())
        self.neutral = neutral
        self.delta1 = nn.Parameter(torch.zeros(c, a))
        self.delta2 = nn.Parameter(torch.zeros(a, c))
        logit = math.log(gate_init / (1 - gate_init))
        self.alpha = nn.Parameter(torch.tensor(logit))
        self.beta = nn.Parameter(torch.tensor(logit))

    def maps(self) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.prior
        m1 = torch.softmax(torch.log(p + 1e-8) + self.delta1, dim=1) * p.sum(dim=1, keepdim=True)
        pt = p.t()
        if self.neutral is None:
            m2 = torch.softmax(torch.log(pt + 1e-8) + self.delta2, dim=1) * pt.sum(dim=1, keepdim=True)
            return m1, m2
        n = self.neutral
        m1 = torch.cat([m1[:n], p[n : n + 1], m1[n + 1 :]], dim=0)
        keep = [j for j in range(p.shape[0]) if j != n]
        mass = pt.sum(dim=1, keepdim=True) - pt[:, n : n + 1]
        sub = torch.softmax(torch.log(pt[:, keep] + 1e-8) + self.delta2[:, keep], dim=1) * mass
        m2 = torch.empty_like(pt)
        m2 = m2.index_copy(1, torch.tensor(keep, device=pt.device), sub)
        m2 = m2.index_copy(1, torch.tensor([n], device=pt.device), pt[:, n : n + 1])
        return m1, m2

    def forward(self, t_e: torch.Tensor, t_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m1, m2 = self.maps()
        t_e2 = F.normalize(t_e + torch.sigmoid(self.alpha) * (m1 @ t_a), dim=-1)
        t_a2 = F.normalize(t_a + torch.sigmoid(self.beta) * (m2 @ t_e), dim=-1)
        return t_e2, t_a2


class PairSmoother(nn.Module):
    """The release's legacy smoothing: frames regrouped into consecutive pairs, each pair passed
    through a depthwise Conv1d (kernel 5, padding 2, weights 1/5, no bias) over its 2 frames."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=5, padding=2, groups=channels, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, T, A]
        b, t, a = z.shape
        pairs = z.reshape(b * t // 2, 2, a).transpose(1, 2)  # [B*T/2, A, 2]
        return self.conv(pairs).transpose(1, 2).reshape(b, t, a)


class TemporalSmoother(nn.Module):
    """A clean alternative: a trainable depthwise 5-tap average over the whole clip."""

    def __init__(self, channels: int, taps: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=taps, padding=taps // 2, groups=channels,
                              bias=False, padding_mode="replicate")
        nn.init.constant_(self.conv.weight, 1 / taps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(z.transpose(1, 2)).transpose(1, 2)
