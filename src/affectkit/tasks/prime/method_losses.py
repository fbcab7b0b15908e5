"""PRIME's label-free pretraining objectives (spec 5.5): pairwise inter-modality alignment, imputation
alignment through the prototype bank, post-fusion consistency under structured missingness, the
missingness sampler, and one pretraining step (plus the bank bookkeeping after the optimizer step).

Order of a training step: ``loss, logs = pretrain_step(model, batch, cfg, generator)``; backward and the
optimizer step; ``after_pretrain_step(model, step, cfg)`` with ``step`` = optimizer steps done so far
(1 after the first). The latter initialises the bank once ``step >= cfg.bank.warmup_steps`` (from the
recent batches the model remembers) and afterwards applies the EMA update from the last step.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affectkit.core.errors import UsageError


def _unwrap(model: nn.Module) -> nn.Module:
    """The PrimeModel behind DDP / accelerate wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def _info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the diagonal as the positive, rows against columns."""
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


# ---------------------------------------------------------------------------- alignment
def align_loss(z: dict, observed: torch.Tensor, logit_scale) -> tuple[torch.Tensor, int]:
    """Symmetric InfoNCE per modality pair on the patients observing both (CLIP / TANGLE style).

    ``z``: modality -> unit summaries [B, D] in modality order (the columns of ``observed``);
    ``logit_scale``: the multiplier 1/tau (tensor or float). Pairs with < 2 such patients are skipped;
    returns (mean over the used pairs, number of used pairs); 0 with the graph intact when none.
    """
    names = list(z)
    obs = observed.bool()
    losses = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            rows = obs[:, a] & obs[:, b]
            if int(rows.sum()) < 2:
                continue
            logits = logit_scale * z[names[a]][rows] @ z[names[b]][rows].T
            losses.append(0.5 * (_info_nce(logits) + _info_nce(logits.T)))
    if not losses:
        return sum(v.sum() for v in z.values()) * 0.0, 0
    return torch.stack(losses).mean(), len(losses)


def imputation_loss(model: nn.Module, enc: dict, batch: dict | None = None, scale=None) -> torch.Tensor:
    """Hide each observed modality m of the patients with >= 2 observed modalities, retrieve it from
    the bank with the other observed ones, pool the retrieved tokens through m's summary head and
    pull the result to stop-grad(z_m): InfoNCE over those patients (temperature: the alignment
    scale unless ``scale`` is given); 1 - cosine when a single patient qualifies. Mean over modalities;
    0 (with graph) when none qualifies or the bank is not ready."""
    m = _unwrap(model)
    obs = enc["observed"].bool()
    z = enc["z"]
    zero = enc["h"].sum() * 0.0
    if not m.bank.is_ready:
        return zero
    if scale is None:
        scale = m.logit_scale.exp().clamp(max=100.0)
    multi = obs.sum(1) >= 2
    losses = []
    for i, name in enumerate(m.names):
        rows = obs[:, i] & multi
        n = int(rows.sum())
        if n == 0:
            continue
        hidden = obs.clone()
        hidden[:, i] = False
        tokens, _, _ = m.bank.retrieve(z, hidden, i)
        z_hat = m.summarise(i, tokens[rows])
        target = z[name][rows].detach()
        if n == 1:
            losses.append(1.0 - (z_hat * target).sum(-1).mean())
        else:
            losses.append(_info_nce(scale * z_hat @ target.T))
    return torch.stack(losses).mean() if losses else zero


# ---------------------------------------------------------------------------- consistency
def consistency_loss(h_a: torch.Tensor, h_b: torch.Tensor, projector: nn.Module, mode: str = "infonce",
                     tau: float = 0.1, predictor: nn.Module | None = None) -> torch.Tensor:
    """Post-fusion consistency between the full view A and the missingness view B of each patient:
    ``infonce`` (symmetric, positives = same patient, temperature ``tau``) or ``simsiam`` (predictor on
    B, stop-gradient on A, negative cosine)."""
    p_a, p_b = projector(h_a), projector(h_b)
    if mode == "infonce":
        p_a, p_b = F.normalize(p_a, dim=-1), F.normalize(p_b, dim=-1)
        logits = p_b @ p_a.T / tau
        return 0.5 * (_info_nce(logits) + _info_nce(logits.T))
    if mode == "simsiam":
        if predictor is None:
            raise UsageError("simsiam consistency needs a predictor")
        return -F.cosine_similarity(predictor(p_b), p_a.detach(), dim=-1).mean()
    raise UsageError(f"unknown consistency {mode!r} (infonce, simsiam)")


# ---------------------------------------------------------------------------- missingness sampler
def _bits(observed: torch.Tensor) -> list[int]:
    """Availability patterns as bit masks (bit j = modality j)."""
    obs = observed.bool().cpu().numpy()
    weights = 1 << np.arange(obs.shape[1])
    return [int(v) for v in (obs * weights).sum(1)]


class MissingnessSampler:
    """Structured missingness augmentation (spec 5.5) that builds view B of a batch.

    Per patient with >= 2 observed modalities: with probability ``empirical_mix`` a pattern drawn (by
    frequency) from the cohort's empirical availability patterns that are proper non-empty subsets of
    the patient's observed set, else (or when no such pattern exists) one drawn uniformly from those
    subsets. Patients with a single observed modality keep it. Then token dropout: in every kept
    modality a share U(0, ``token_drop``) of the valid tokens (bag instances, text chunks, gene-group
    tokens) is masked, keeping >= 1.
    """

    def __init__(self, specs: list, cohort_observed, empirical_mix: float = 0.5, token_drop: float = 0.3):
        self.specs = list(specs)
        self.M = len(self.specs)
        obs = torch.as_tensor(np.asarray(cohort_observed, dtype=bool)) if cohort_observed is not None \
            else torch.zeros(0, self.M, dtype=torch.bool)
        if obs.ndim != 2 or obs.shape[1] != self.M:
            raise UsageError(f"availability patterns need {self.M} columns, got shape {tuple(obs.shape)}")
        self.empirical = Counter(b for b in _bits(obs) if b)
        self.empirical_mix = float(empirical_mix)
        self.token_drop = float(token_drop)
        self._cands: dict[int, list[int]] = {}

    @classmethod
    def from_config(cls, specs: list, cohort_observed, pretrain_cfg) -> MissingnessSampler:
        return cls(specs, cohort_observed, pretrain_cfg.empirical_mix, pretrain_cfg.token_drop)

    def _candidates(self, full: int) -> list[int]:
        """Proper non-empty subsets of the bit mask ``full``."""
        if full not in self._cands:
            self._cands[full] = [s for s in range(1, 1 << self.M) if s & ~full == 0 and s != full]
        return self._cands[full]

    def draw_patterns(self, observed: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """View-B availability [B, M]: a subset of ``observed`` per patient (see the class doc)."""
        bits = _bits(observed)
        u = torch.rand(len(bits), 2, generator=generator)
        out = []
        for b, full in enumerate(bits):
            cands = self._candidates(full) if bin(full).count("1") >= 2 else []
            if not cands:
                out.append(full)
                continue
            pool, weights = cands, None
            if float(u[b, 0]) < self.empirical_mix:
                seen = [s for s in cands if s in self.empirical]
                if seen:
                    pool, weights = seen, np.array([self.empirical[s] for s in seen], dtype=float)
            if weights is None:
                out.append(pool[min(int(float(u[b, 1]) * len(pool)), len(pool) - 1)])
            else:
                cdf = np.cumsum(weights / weights.sum())
                out.append(pool[min(int(np.searchsorted(cdf, float(u[b, 1]), side="right")), len(pool) - 1)])
        pat = torch.tensor([[(v >> j) & 1 for j in range(self.M)] for v in out], dtype=torch.bool)
        return pat.to(observed.device)

    def _drop_tokens(self, mask: torch.Tensor, rows: torch.Tensor, generator) -> torch.Tensor:
        """Mask a random share U(0, token_drop) of the valid tokens of ``rows``, keeping >= 1."""
        mask = mask.bool()
        B, n = mask.shape
        if self.token_drop <= 0 or n < 2:
            return mask
        n_valid = mask.sum(1)
        share = torch.rand(B, generator=generator).to(mask.device) * self.token_drop
        n_drop = torch.minimum((share * n_valid).floor().long(), (n_valid - 1).clamp_min(0))
        n_drop = torch.where(rows, n_drop, torch.zeros_like(n_drop))
        r = torch.rand(B, n, generator=generator).to(mask.device).masked_fill(~mask, 2.0)
        rank = r.argsort(1).argsort(1)                                       # rank among the valid first
        return mask & ~(rank < n_drop[:, None])

    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """View B of ``batch``: a new dict with ``observed`` replaced and token masks thinned."""
        observed = batch["observed"].bool()
        kept = self.draw_patterns(observed, generator)
        out = dict(batch)
        out["observed"] = kept
        for j, spec in enumerate(self.specs):
            key = f"{spec.name}:mask"
            mask = batch.get(key)
            if mask is None:
                x = batch[spec.name]
                n = len(spec.groups) if spec.kind == "vector" and spec.groups else 1
                shape = (x.shape[0], n) if spec.kind == "vector" else tuple(x.shape[:2])
                mask = torch.ones(shape, dtype=torch.bool, device=x.device)
            out[key] = self._drop_tokens(mask, kept[:, j], generator)
        return out


# ---------------------------------------------------------------------------- one pretraining step
def _scale(model: nn.Module, cfg) -> torch.Tensor | float:
    """Alignment multiplier 1/tau: learned (clamped at 100) or fixed from the config."""
    if cfg.pretrain.learn_tau:
        return model.logit_scale.exp().clamp(max=100.0)
    return 1.0 / float(cfg.pretrain.tau)


def pretrain_step(model: nn.Module, batch: dict, cfg, generator: torch.Generator | None = None,
                  sampler: MissingnessSampler | None = None) -> tuple[torch.Tensor, dict]:
    """Loss of one pretraining step: align_weight * L_align + consistency_weight * L_cons +
    impute_weight * L_imp. Until the warm-up ends (fill=bank: until the bank is initialised; other
    fills: ``bank.warmup_steps`` steps) only the alignment term. The missingness sampler is
    ``sampler``, else ``model.sampler``, else one built from the batch's own availability patterns
    (``generator``: a CPU torch.Generator). ``model`` may be wrapped (DDP / accelerate): the loss is
    computed inside its forward."""
    return model(batch, pretrain=(cfg, generator, sampler))


def pretrain_loss(m: nn.Module, batch: dict, cfg, generator: torch.Generator | None = None,
                  sampler: MissingnessSampler | None = None) -> tuple[torch.Tensor, dict]:
    """The body of ``pretrain_step`` on the unwrapped PrimeModel ``m``."""
    p = cfg.pretrain
    enc = m.encode(batch)
    obs = enc["observed"]
    scale = _scale(m, cfg)
    l_align, n_pairs = align_loss(enc["z"], obs, scale)
    zero = enc["h"].sum() * 0.0
    warm = (not m.bank.is_ready) if m.fill == "bank" else int(m.pretrain_steps) < int(cfg.bank.warmup_steps)
    l_cons, l_imp = zero, zero
    if not warm:
        if p.consistency_weight > 0:
            smp = sampler or m.sampler or MissingnessSampler(m.specs, obs.cpu().numpy(), p.empirical_mix,
                                                              p.token_drop)
            enc_b = m.encode(smp(batch, generator))
            l_cons = consistency_loss(enc["h"], enc_b["h"], m.projector, p.consistency, p.consistency_tau,
                                      m.predictor)
        if m.fill == "bank" and p.impute_weight > 0:
            l_imp = imputation_loss(m, enc, batch, scale)
    loss = p.align_weight * l_align + p.consistency_weight * l_cons + p.impute_weight * l_imp
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # DDP needs every trainable parameter in the graph (warm-up, unused projector / predictor)
        loss = loss + 0.0 * sum(q.sum() for q in m.parameters() if q.requires_grad)
    if m.fill == "bank":
        m.last_stats = {"z": {k: v.detach() for k, v in enc["z"].items()},
                        "raw": {k: v.detach() for k, v in enc["raw"].items()},
                        "masks": {k: v.detach() for k, v in enc["masks"].items()},
                        "observed": obs.detach()}
        if not m.bank.is_ready:
            m.remember(enc)
    logs = {"loss": float(loss.detach()), "align": float(l_align.detach()), "pairs": float(n_pairs),
            "consistency": float(l_cons.detach()), "impute": float(l_imp.detach()),
            "logit_scale": float(scale) if isinstance(scale, float) else float(scale.detach()),
            "bank_ready": float(m.bank.is_ready)}
    return loss, logs


def after_pretrain_step(model: nn.Module, step: int, cfg, seed: int = 0) -> dict:
    """Bank bookkeeping after the optimizer step ``step`` (1-based): initialise the bank once
    ``step >= bank.warmup_steps`` from the remembered recent batches, afterwards the EMA update from
    the last step's detached summaries. Returns what happened (floats, for logging)."""
    m = _unwrap(model)
    m.pretrain_steps.fill_(int(step))
    stats, m.last_stats = m.last_stats, None
    if m.fill != "bank" or stats is None:
        return {}
    bank = m.bank
    if not bank.is_ready:
        if int(step) < int(cfg.bank.warmup_steps):
            return {}
        rec = m.recent_patients()
        if rec is None:
            return {}
        _init_bank(m, rec, cfg, seed)
        m.recent_written.zero_()  # the ring is released
        return {"bank_init": 1.0}
    out = bank.update(stats["z"], stats["raw"], stats["observed"], stats["masks"])
    return {"bank_reset": float(out["reset"])}


def _init_bank(m: nn.Module, rec: dict, cfg, seed: int) -> None:
    """k-means / random keys from the remembered summaries; value slots from the remembered tokens, each
    patient assigned through its consensus embedding (normalised sum of its observed summaries)."""
    obs = rec["observed"]
    z_all = torch.cat([rec["z"][n][obs[:, i]] for i, n in enumerate(m.names)])
    stacked = torch.stack([rec["z"][n] * obs[:, i, None] for i, n in enumerate(m.names)], 0)
    query = F.normalize(stacked.sum(0), dim=-1)
    values = {}
    for i, n in enumerate(m.names):
        rows = obs[:, i]
        values[n] = (query[rows], rec["raw"][n][rows], rec["masks"][n][rows])
    device = m.bank.key_sums.device
    m.bank.initialise(z_all.to(device), values, method=cfg.bank.init, seed=seed)
