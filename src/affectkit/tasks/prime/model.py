"""PRIME's encoder (spec 5.2-5.4, 5.6): tokenisers into one D-wide token space, missing-modality
fill (the prototype bank's consensus retrieval, or the zero / mean / learned baselines), and a pre-norm
fusion transformer whose CLS output is the patient representation h.

Batch format (a dict of tensors, modality order = the order of ``specs``):

- ``observed``: bool [B, M], which modalities each patient has;
- vector modality ``m``: ``m`` float [B, d] (standardised, no NaN); optional ``m:mask`` bool [B, G]
  (valid gene-group tokens; the missingness augmentation masks some);
- bag modality ``m``: ``m`` float [B, Nmax, d] and ``m:mask`` bool [B, Nmax] (valid instances);
- text modality ``m``: ``m`` float [B, C, e] (chunk embeddings of a frozen encoder) and ``m:mask`` bool
  [B, C] (valid chunks); C is padded / cut to ``text_chunks`` token slots.

Rows of missing modalities hold zeros. Tokens come in three layers: ``raw`` (tokeniser output, or the
fill for missing modalities: what the bank stores and what summaries are computed from), ``tokens``
(raw + modality-type embedding + status embedding observed/imputed: what the fusion encoder reads)
and ``masks`` (valid token slots; every slot of an imputed modality is valid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from affectkit.core.errors import UsageError
from affectkit.tasks.prime.method_bank import PrototypeBank

LORA_TARGET = r".*fusion\.layers\.\d+\.attn\.(q_proj|k_proj|v_proj)"


@dataclass
class ModalitySpec:
    """One modality: ``kind`` bag|vector|text, input width ``in_dim``; ``groups`` (vector only): gene
    groups as index lists into the in_dim features, one token each (None: one group of everything)."""

    name: str
    kind: str
    in_dim: int
    groups: list[list[int]] | None = None


# ---------------------------------------------------------------------------- tokenisers
class BagTokenizer(nn.Module):
    """Instances -> Linear+GELU+LayerNorm -> gated ABMIL (1 token) or learned-query pooling."""

    def __init__(self, in_dim: int, dim: int, pooling: str, queries: int, heads: int, dropout: float,
                 max_patches: int):
        super().__init__()
        self.pooling = pooling
        self.max_patches = int(max_patches)
        self.proj = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Dropout(dropout))
        if pooling == "abmil":
            self.att_v = nn.Linear(dim, dim)
            self.att_u = nn.Linear(dim, dim)
            self.att_w = nn.Linear(dim, 1)
            self.n_tokens = 1
        elif pooling == "query":
            if dim % heads:
                raise UsageError(f"model.dim {dim} must be a multiple of model.heads {heads}")
            self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
            self.heads = heads
            self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim) for _ in range(4))
            self.norm = nn.LayerNorm(dim)
            self.n_tokens = int(queries)
        else:
            raise UsageError(f"unknown model.bag_pooling {pooling!r} (abmil, query)")

    def _subsample(self, x: torch.Tensor, mask: torch.Tensor):
        """While training, keep at most ``max_patches`` random valid instances per bag."""
        if not self.training or self.max_patches <= 0 or x.shape[1] <= self.max_patches:
            return x, mask
        r = torch.rand(mask.shape, device=x.device).masked_fill(~mask, -1.0)
        idx = r.topk(self.max_patches, dim=1).indices
        x = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
        return x, mask.gather(1, idx)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self._subsample(x, mask.bool())
        h = self.proj(x)                                                   # [B, N, D]
        any_valid = mask.any(1)
        if self.pooling == "abmil":
            s = self.att_w(torch.tanh(self.att_v(h)) * torch.sigmoid(self.att_u(h))).squeeze(-1)
            s = s.masked_fill(~mask, float("-inf"))
            s = torch.where(any_valid[:, None], s, torch.zeros_like(s))
            a = torch.softmax(s, dim=1) * mask                             # empty bags pool to zero
            tok = (a[..., None] * h).sum(1, keepdim=True)
        else:
            tok = self._query_pool(h, mask | ~any_valid[:, None]) * any_valid[:, None, None]
        return tok, torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device)

    def _query_pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Multi-head cross-attention of the learned queries over the valid instances."""
        B, N, D = h.shape
        H, Q = self.heads, self.queries.shape[0]
        q = self.wq(self.queries).view(1, Q, H, D // H).transpose(1, 2).expand(B, -1, -1, -1)
        k = self.wk(h).view(B, N, H, D // H).transpose(1, 2)
        v = self.wv(h).view(B, N, H, D // H).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        out = self.wo(out.transpose(1, 2).reshape(B, Q, D))
        return self.norm(out + self.queries)


class VectorTokenizer(nn.Module):
    """One self-normalising network (Linear+SELU+AlphaDropout, 2 layers) per gene group -> one token each."""

    def __init__(self, in_dim: int, groups: list[list[int]] | None, dim: int, dropout: float):
        super().__init__()
        groups = groups if groups else [list(range(in_dim))]
        for g in groups:
            if not g or min(g) < 0 or max(g) >= in_dim:
                raise UsageError(f"a gene group must be a non-empty list of indices into {in_dim} features")
        self.n_tokens = len(groups)
        for i, g in enumerate(groups):
            self.register_buffer(f"idx_{i}", torch.tensor(g, dtype=torch.long), persistent=False)
        self.snns = nn.ModuleList(
            nn.Sequential(nn.Linear(len(g), dim), nn.SELU(), nn.AlphaDropout(dropout),
                          nn.Linear(dim, dim), nn.SELU(), nn.AlphaDropout(dropout)) for g in groups)
        for mod in self.snns.modules():
            if isinstance(mod, nn.Linear):                                 # LeCun normal init for SELU
                nn.init.normal_(mod.weight, std=1.0 / math.sqrt(mod.in_features))
                nn.init.zeros_(mod.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        toks = [snn(x[:, getattr(self, f"idx_{i}")]) for i, snn in enumerate(self.snns)]
        tok = torch.stack(toks, 1)
        if mask is None:
            mask = torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device)
        return tok, mask.bool()


class TextTokenizer(nn.Module):
    """Chunk embeddings of a frozen encoder -> Linear+GELU+LayerNorm -> up to ``chunks`` tokens."""

    def __init__(self, in_dim: int, dim: int, chunks: int, dropout: float):
        super().__init__()
        self.n_tokens = int(chunks)
        self.proj = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chunks, slots = x.shape[1], self.n_tokens
        mask = mask.bool()
        if chunks > slots:
            x, mask = x[:, :slots], mask[:, :slots]
        elif chunks < slots:
            x = F.pad(x, (0, 0, 0, slots - chunks))
            mask = F.pad(mask, (0, slots - chunks), value=False)
        tok = self.proj(x) * mask[..., None]                               # padded chunks: zero tokens
        return tok, mask


# ---------------------------------------------------------------------------- fusion
class FusionAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (LoRA targets) and key padding."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise UsageError(f"model.dim {dim} must be a multiple of model.heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        H = self.heads

        def split(t):
            return t.view(B, L, H, D // H).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                             attn_mask=valid[:, None, None, :],
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(B, L, D))


class FusionLayer(nn.Module):
    """Pre-norm transformer layer."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = FusionAttention(dim, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), valid))
        return x + self.drop(self.ff(self.norm2(x)))


class FusionEncoder(nn.Module):
    """[CLS; tokens] -> ``layers`` pre-norm layers -> final LayerNorm; returns the CLS output."""

    def __init__(self, dim: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList(FusionLayer(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B = tokens.shape[0]
        x = torch.cat([self.cls.expand(B, -1, -1), tokens], 1)
        valid = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=valid.device), valid], 1)
        for layer in self.layers:
            x = layer(x, valid)
        return self.norm(x[:, 0])


def _mlp(dim: int, hidden: int | None = None) -> nn.Sequential:
    hidden = hidden or dim
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


# ---------------------------------------------------------------------------- the model
class PrimeModel(nn.Module):
    """Tokenisers + missing-modality fill + fusion encoder; also holds the pretraining heads (alignment
    logit scale, consistency projector / predictor) and the prototype bank."""

    def __init__(self, specs: list[ModalitySpec], model_cfg, bank_cfg, pretrain_cfg=None,
                 buffer_size: int | None = None):
        super().__init__()
        if not specs:
            raise UsageError("PRIME needs at least one modality")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise UsageError(f"duplicate modality names: {names}")
        self.specs = list(specs)
        self.names = names
        self.fill = model_cfg.fill
        if self.fill not in ("bank", "zero", "mean", "learned"):
            raise UsageError(f"unknown model.fill {self.fill!r} (bank, zero, mean, learned)")
        D = int(model_cfg.dim)
        self.dim = D
        self.tokenizers = nn.ModuleList(self._tokenizer(s, model_cfg) for s in specs)
        self.n_tokens = [t.n_tokens for t in self.tokenizers]
        M = len(specs)
        self.type_emb = nn.Parameter(torch.randn(M, D) * 0.02)
        self.status_emb = nn.Parameter(torch.randn(2, D) * 0.02)           # 0 observed, 1 imputed
        self.summary = nn.ModuleList(_mlp(D) for _ in specs)
        self.fusion = FusionEncoder(D, int(model_cfg.layers), int(model_cfg.heads), float(model_cfg.dropout))
        self.bank = PrototypeBank(names, self.n_tokens, D, bank_cfg)
        for i, n in enumerate(self.n_tokens):
            self.register_buffer(f"fill_mean_{i}", torch.zeros(n, D))
            self.register_buffer(f"fill_count_{i}", torch.zeros(n))
            if self.fill == "learned":
                self.register_parameter(f"mask_token_{i}", nn.Parameter(torch.randn(n, D) * 0.02))
        # pretraining heads (spec 5.5)
        tau = float(pretrain_cfg.tau) if pretrain_cfg is not None else 0.07
        learn_tau = bool(pretrain_cfg.learn_tau) if pretrain_cfg is not None else True
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / tau)), requires_grad=learn_tau)
        self.projector = _mlp(D)
        self.predictor = _mlp(D, max(D // 2, 1))
        self.register_buffer("pretrain_steps", torch.zeros((), dtype=torch.long))
        # recent detached summaries / tokens for the bank's initialisation and dead-prototype resets
        # (after_pretrain_step): a ring of fixed capacity held in buffers, so a checkpoint keeps it and a
        # resumed run continues exactly
        self.buffer_size = int(buffer_size) if buffer_size else max(8 * int(bank_cfg.size), 256)
        cap = self.buffer_size
        self.register_buffer("recent_written", torch.zeros((), dtype=torch.long))
        self.register_buffer("recent_observed", torch.zeros(cap, M, dtype=torch.bool))
        for i, n in enumerate(self.n_tokens):
            self.register_buffer(f"recent_z_{i}", torch.zeros(cap, D))
            self.register_buffer(f"recent_raw_{i}", torch.zeros(cap, n, D))
            self.register_buffer(f"recent_mask_{i}", torch.zeros(cap, n, dtype=torch.bool))
        self.last_stats: dict | None = None
        self.sampler = None                                                 # optional MissingnessSampler

    @staticmethod
    def _tokenizer(spec: ModalitySpec, cfg) -> nn.Module:
        D, p = int(cfg.dim), float(cfg.dropout)
        if spec.kind == "bag":
            return BagTokenizer(spec.in_dim, D, cfg.bag_pooling, int(cfg.bag_queries), int(cfg.heads), p,
                                int(cfg.max_patches))
        if spec.kind == "vector":
            return VectorTokenizer(spec.in_dim, spec.groups, D, p)
        if spec.kind == "text":
            return TextTokenizer(spec.in_dim, D, int(cfg.text_chunks), p)
        raise UsageError(f"modality {spec.name!r}: unknown kind {spec.kind!r} (bag, vector, text)")

    def pretrain_parameters(self) -> list[nn.Parameter]:
        """Parameters used only by the pretraining objectives."""
        return [self.logit_scale, *self.projector.parameters(), *self.predictor.parameters()]

    # ------------------------------------------------------------------ pieces
    def _observed(self, batch: dict, observed: torch.Tensor | None) -> torch.Tensor:
        base = batch["observed"].bool()
        if base.shape[1] != len(self.specs):
            raise UsageError(f"batch['observed'] has {base.shape[1]} columns, the model {len(self.specs)} modalities")
        if observed is None:
            return base
        observed = observed.bool().to(base.device)
        if observed.shape != base.shape:
            raise UsageError(f"observed override has shape {tuple(observed.shape)}, expected {tuple(base.shape)}")
        if bool((observed & ~base).any()):
            raise UsageError("the observed override must be a subset of batch['observed']")
        return observed

    def tokenize(self, batch: dict) -> tuple[dict, dict]:
        """Raw tokens (m -> [B, n_m, D]) and valid-slot masks (m -> bool [B, n_m]) of every modality."""
        raw, masks = {}, {}
        for spec, tok in zip(self.specs, self.tokenizers, strict=True):
            x = batch[spec.name].float()
            mask = batch.get(f"{spec.name}:mask")
            if spec.kind in ("bag", "text") and mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            raw[spec.name], masks[spec.name] = tok(x, mask)
        return raw, masks

    def summarise(self, m: str | int, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """z_m = L2-normalise(MLP_m(masked mean of the tokens)) [B, D]."""
        i = m if isinstance(m, int) else self.names.index(m)
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        w = mask.to(tokens.dtype)[..., None]
        pooled = (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)
        return F.normalize(self.summary[i](pooled), dim=-1)

    @torch.no_grad()
    def _update_means(self, raw: dict, masks: dict, observed: torch.Tensor) -> None:
        """Running per-slot mean of observed patients' tokens (training mode, fill=mean)."""
        for i, name in enumerate(self.names):
            w = (masks[name] & observed[:, i, None]).float()              # [B, n]
            n_b = w.sum(0)
            if not bool((n_b > 0).any()):
                continue
            mean, count = getattr(self, f"fill_mean_{i}"), getattr(self, f"fill_count_{i}")
            batch_mean = (raw[name].detach() * w[..., None]).sum(0) / n_b.clamp_min(1.0)[:, None]
            count.add_(n_b)
            # exact cumulative mean early on, then a floor of 5 % so the mean follows the training tokens
            mom = torch.where(n_b > 0, (n_b / count.clamp_min(1.0)).clamp_min(0.05), torch.zeros_like(n_b))
            mean.add_(mom[:, None] * (batch_mean - mean))

    def _fill_tokens(self, i: int, z: dict, observed: torch.Tensor, B: int, like: torch.Tensor) -> torch.Tensor:
        """Tokens [B, n_m, D] for modality i where it is missing (rows observing it are ignored)."""
        n, D = self.n_tokens[i], self.dim
        if self.fill == "bank" and self.bank.is_ready:
            return self.bank.retrieve(z, observed, i)[0].to(like.dtype)
        if self.fill == "mean":
            return getattr(self, f"fill_mean_{i}").to(like.dtype).expand(B, n, D)
        if self.fill == "learned":
            return getattr(self, f"mask_token_{i}").to(like.dtype).expand(B, n, D)
        return like.new_zeros(B, n, D)

    # ------------------------------------------------------------------ encode
    def encode(self, batch: dict, observed: torch.Tensor | None = None) -> dict:
        """Encode a batch: ``h`` [B, D], ``z`` (m -> [B, D]; zero rows where m is missing), ``tokens``
        / ``raw`` (m -> [B, n_m, D]), ``masks`` (m -> bool [B, n_m]), ``imputed`` and ``observed``
        bool [B, M]."""
        obs = self._observed(batch, observed)
        raw, masks = self.tokenize(batch)
        B = obs.shape[0]
        z = {}
        for i, name in enumerate(self.names):
            zi = self.summarise(i, raw[name], masks[name])
            z[name] = torch.where(obs[:, i, None], zi, torch.zeros_like(zi))
        if self.training and self.fill == "mean":
            self._update_means(raw, masks, obs)
        out_raw, out_masks, tokens = {}, {}, {}
        for i, name in enumerate(self.names):
            miss = ~obs[:, i]
            t, mk = raw[name], masks[name]
            if bool(miss.any()):
                fill = self._fill_tokens(i, z, obs, B, t)
                t = torch.where(miss[:, None, None], fill, t)
                mk = mk | miss[:, None]
            status = self.status_emb[miss.long()][:, None, :]              # [B, 1, D]
            out_raw[name], out_masks[name] = t, mk
            tokens[name] = t + self.type_emb[i] + status
        seq = torch.cat([tokens[n] for n in self.names], 1)
        valid = torch.cat([out_masks[n] for n in self.names], 1)
        h = self.fusion(seq, valid)
        return {"h": h, "z": z, "tokens": tokens, "raw": out_raw, "masks": out_masks,
                "imputed": ~obs, "observed": obs}

    def forward(self, batch: dict, observed: torch.Tensor | None = None, pretrain: tuple | None = None):
        """Patient representation h [B, D]. With ``pretrain=(cfg, generator, sampler)``: the pretraining
        loss and logs instead (``method_losses.pretrain_step`` calls it this way so that a DDP /
        accelerate wrapper sees one forward per step)."""
        if pretrain is not None:
            from affectkit.tasks.prime.method_losses import pretrain_loss

            return pretrain_loss(self, batch, *pretrain)
        return self.encode(batch, observed)["h"]

    # ------------------------------------------------------------------ ring buffer for the bank
    @torch.no_grad()
    def remember(self, enc: dict) -> None:
        """Keep detached summaries / raw tokens / masks of a batch's patients in the ring (the last
        ``buffer_size`` patients)."""
        obs = enc["observed"].detach()
        B, cap = obs.shape[0], self.buffer_size
        keep = slice(max(0, B - cap), B)
        at = (int(self.recent_written) + torch.arange(keep.start, B)) % cap
        with torch.no_grad():
            self.recent_observed[at] = obs[keep].to(self.recent_observed.device)
            for i, n in enumerate(self.names):
                getattr(self, f"recent_z_{i}")[at] = enc["z"][n][keep].detach().float()
                getattr(self, f"recent_raw_{i}")[at] = enc["raw"][n][keep].detach().float()
                getattr(self, f"recent_mask_{i}")[at] = enc["masks"][n][keep].detach().bool()
            self.recent_written += B

    def recent_patients(self) -> dict | None:
        """The ring's patients, oldest first: observed [N, M], z / raw / masks dicts (CPU)."""
        written, cap = int(self.recent_written), self.buffer_size
        if written == 0:
            return None
        order = torch.arange(written) if written <= cap else (written + torch.arange(cap)) % cap
        return {"observed": self.recent_observed[order].cpu(),
                "z": {n: getattr(self, f"recent_z_{i}")[order].cpu() for i, n in enumerate(self.names)},
                "raw": {n: getattr(self, f"recent_raw_{i}")[order].cpu() for i, n in enumerate(self.names)},
                "masks": {n: getattr(self, f"recent_mask_{i}")[order].cpu() for i, n in enumerate(self.names)}}


# ---------------------------------------------------------------------------- adaptation helpers
def _encoder_of(model: nn.Module) -> nn.Module:
    return model.encoder if hasattr(model, "encoder") else model


def lora_wrap(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> nn.Module:
    """Inject peft LoRA adapters into q_proj/k_proj/v_proj of the fusion layers (in place) and freeze
    every other parameter; the caller unfreezes what it trains besides (e.g. a head)."""
    from peft import LoraConfig, inject_adapter_in_model

    enc = _encoder_of(model)
    if not any("lora_" in n for n, _ in enc.named_parameters()):
        cfg = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout), target_modules=LORA_TARGET,
                         bias="none")
        inject_adapter_in_model(cfg, enc)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model


def set_mode(model: nn.Module, mode: str, r: int = 8, alpha: float = 16.0) -> nn.Module:
    """Prepare a ``DownstreamModel`` for ``linear`` (encoder frozen and kept in eval mode), ``lora``
    (LoRA on the fusion attention + head) or ``full`` fine-tuning. Pretraining-only heads stay frozen."""
    enc = _encoder_of(model)
    if mode == "linear":
        for p in enc.parameters():
            p.requires_grad_(False)
        model.frozen_encoder = True
    elif mode == "lora":
        lora_wrap(model, r, alpha)
        model.frozen_encoder = False
    elif mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        model.frozen_encoder = False
    else:
        raise UsageError(f"unknown finetune mode {mode!r} (linear, lora, full)")
    if hasattr(enc, "pretrain_parameters"):
        for p in enc.pretrain_parameters():
            p.requires_grad_(False)
    if hasattr(model, "head"):
        for p in model.head.parameters():
            p.requires_grad_(True)
    model.train(model.training)
    return model
