"""The shared prototype memory bank of PRIME and its patient-level consensus retrieval (spec 5.3).

K prototypes share one unit-norm key c_k in R^D across modalities; each prototype also holds, for
every modality m, a value slot V_k^m in R^{n_m x D}: a template of m's (raw, pre-embedding) tokens.

- ``initialise``: keys by k-means (sklearn ``KMeans``, ``n_init=10``) or random recent embeddings;
  value slots = per-slot mean tokens of the patients assigned to each prototype (the global mean
  where no patient is assigned).
- ``update`` (``update="ema"``): VQ-VAE style EMA. Keys: every observed (patient, modality) summary
  is assigned to its nearest key; counts N_k <- d N_k + (1-d) n_k, sums <- d sums + (1-d) sum of the
  assigned, key = normalise(sums / N_k). Value slots of modality m: only patients observing m, each
  assigned to the prototype of highest consensus score over all its observed modalities; per-slot
  counts so that padded tokens (text chunks, dropped gene groups) never enter a template. A
  prototype whose key count drops below ``dead_after`` is reset to a random embedding of the batch
  (its value slots to that patient's tokens). In ``torch.distributed`` runs the per-prototype sums
  and counts are all-reduced first and the resets come from rank 0, so every process keeps the same
  bank. With ``update="grad"`` keys and value slots are parameters trained by gradient and ``update``
  leaves them alone.
- ``retrieve``: consensus scores over EVERY observed modality (mean of cosines, or product of experts
  = sum over observed modalities of log-softmax(cos / tau) over the prototypes), top-k, weights
  softmax(score / tau) over the top-k, imputed tokens = sum_k w_k V_k^m.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from affectkit.core.errors import UsageError


def _dist_ready() -> bool:
    """True in an initialised torch.distributed run with more than one process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


class PrototypeBank(nn.Module):
    """K prototypes: unit-norm keys [K, D] and per-modality value slots [K, n_m, D]."""

    def __init__(self, names: list[str], slots: list[int], dim: int, cfg):
        super().__init__()
        if len(names) != len(slots):
            raise UsageError("prototype bank: one token count per modality is needed")
        self.names = list(names)
        self.slots = [int(n) for n in slots]
        self.dim = int(dim)
        self.size = int(cfg.size)
        self.update_mode = cfg.update
        self.decay = float(cfg.decay)
        self.topk = int(cfg.topk)
        self.tau = float(cfg.tau)
        self.consensus = cfg.consensus
        self.dead_after = float(cfg.dead_after)
        self.grad_through = bool(cfg.grad_through)
        K, D = self.size, self.dim
        keys = F.normalize(torch.randn(K, D), dim=-1)
        learn = self.update_mode == "grad"
        if learn:
            self.keys = nn.Parameter(keys)
        else:
            self.register_buffer("keys", keys)
        self.register_buffer("key_sums", keys.clone())
        self.register_buffer("key_counts", torch.ones(K))
        for i, n in enumerate(self.slots):
            value = torch.zeros(K, n, D)
            if learn:
                self.register_parameter(f"value_{i}", nn.Parameter(value))
            else:
                self.register_buffer(f"value_{i}", value)
            self.register_buffer(f"value_sums_{i}", torch.zeros(K, n, D))
            self.register_buffer(f"value_counts_{i}", torch.zeros(K, n))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self._gen = torch.Generator().manual_seed(0)

    # ------------------------------------------------------------------ state
    @property
    def is_ready(self) -> bool:
        """False until ``initialise`` ran (the model then falls back to zero fill)."""
        return bool(self.ready)

    def index(self, name: str) -> int:
        """Index of modality ``name``."""
        return self.names.index(name)

    def values(self, m: str | int) -> torch.Tensor:
        """Value slots [K, n_m, D] of modality ``m`` (name or index)."""
        i = m if isinstance(m, int) else self.index(m)
        return getattr(self, f"value_{i}")

    def unit_keys(self) -> torch.Tensor:
        """Keys as unit vectors (grad mode normalises the parameter at use)."""
        return F.normalize(self.keys, dim=-1) if self.update_mode == "grad" else self.keys

    # ------------------------------------------------------------------ initialise
    @torch.no_grad()
    def initialise(self, z_all: torch.Tensor, values: dict, method: str = "kmeans", seed: int = 0) -> None:
        """Set keys from the embeddings ``z_all`` [N, D] and value slots from ``values``.

        ``values``: modality -> ``(query [N_m, D], tokens [N_m, n_m, D])`` or with a third element
        ``mask`` bool [N_m, n_m] (valid token slots), for the N_m patients that observe the modality;
        ``query`` assigns each of them to its nearest key (use the patient's consensus embedding).
        """
        z_all = F.normalize(z_all.detach().float().cpu(), dim=-1)
        K = self.size
        if z_all.shape[0] == 0:
            raise UsageError("prototype bank: no embeddings to initialise from")
        self._gen = torch.Generator().manual_seed(int(seed))
        if method == "kmeans" and z_all.shape[0] >= K:
            from sklearn.cluster import KMeans

            km = KMeans(n_clusters=K, n_init=10, random_state=int(seed)).fit(z_all.double().numpy())
            centres = torch.from_numpy(np.asarray(km.cluster_centers_)).float()
            keys = F.normalize(centres, dim=-1)
        elif method in ("kmeans", "random"):
            # random patients (with replacement and a little jitter when there are fewer than K)
            n = z_all.shape[0]
            if n >= K:
                idx = torch.randperm(n, generator=self._gen)[:K]
                keys = z_all[idx].clone()
            else:
                idx = torch.randint(n, (K,), generator=self._gen)
                keys = F.normalize(z_all[idx] + 1e-2 * torch.randn(K, self.dim, generator=self._gen), dim=-1)
        else:
            raise UsageError(f"prototype bank: unknown init {method!r} (kmeans, random)")
        device = self.key_sums.device
        keys = keys.to(device)
        self.keys.data.copy_(keys)
        self.key_sums.copy_(keys)
        self.key_counts.fill_(1.0)
        for i, name in enumerate(self.names):
            self._init_values(i, values.get(name), keys)
        self.ready.fill_(True)
        self._broadcast()

    def _init_values(self, i: int, entry, keys: torch.Tensor) -> None:
        """Per-slot mean tokens of each prototype's patients; the global mean where none."""
        n, D = self.slots[i], self.dim
        vals = getattr(self, f"value_{i}")
        sums, counts = getattr(self, f"value_sums_{i}"), getattr(self, f"value_counts_{i}")
        if entry is None or entry[1].shape[0] == 0:
            vals.data.zero_()
            sums.zero_()
            counts.zero_()
            return
        query, tokens = entry[0], entry[1]
        mask = entry[2] if len(entry) > 2 and entry[2] is not None else torch.ones(tokens.shape[:2], dtype=torch.bool)
        device = keys.device
        query = F.normalize(query.detach().float().to(device), dim=-1)
        tokens = tokens.detach().float().to(device)
        w = mask.to(device).float()                                     # [N, n]
        assign = (query @ keys.T).argmax(-1)                              # [N]
        onehot = F.one_hot(assign, self.size).float()                     # [N, K]
        slot_sum = torch.einsum("nk,ns,nsd->ksd", onehot, w, tokens)      # [K, n, D]
        slot_cnt = torch.einsum("nk,ns->ks", onehot, w)                   # [K, n]
        g_cnt = w.sum(0)                                                  # [n]
        g_mean = (tokens * w[..., None]).sum(0) / g_cnt.clamp_min(1.0)[:, None]   # [n, D]
        have = slot_cnt > 0
        mean = slot_sum / slot_cnt.clamp_min(1.0)[..., None]
        value = torch.where(have[..., None], mean, g_mean.expand(self.size, n, D))
        vals.data.copy_(value)
        sums.copy_(value)
        counts.copy_((have | (g_cnt > 0).expand(self.size, n)).float())

    # ------------------------------------------------------------------ scores and retrieval
    def scores(self, z: dict, observed: torch.Tensor, exclude: int | None = None) -> torch.Tensor:
        """Consensus scores [B, K] over every observed modality (except ``exclude``)."""
        keys = self.unit_keys()
        obs = observed.clone().bool()
        if exclude is not None:
            obs[:, exclude] = False
        B = obs.shape[0]
        total = keys.new_zeros(B, self.size)
        for j, name in enumerate(self.names):
            if name not in z or not bool(obs[:, j].any()):
                continue
            cos = F.normalize(z[name], dim=-1) @ keys.T                     # [B, K]
            part = F.log_softmax(cos / self.tau, dim=-1) if self.consensus == "poe" else cos
            total = total + torch.where(obs[:, j, None], part, torch.zeros_like(part))
        if self.consensus == "poe":
            return total
        return total / obs.sum(1, keepdim=True).clamp_min(1).to(total.dtype)

    def retrieve(self, z: dict, observed: torch.Tensor, missing_modality: str | int):
        """Impute modality ``missing_modality`` from the consensus of the observed ones.

        Returns ``(tokens [B, n_m, D], weights [B, K], scores [B, K])``; the weights are softmax(score /
        tau) over the top-k prototypes (zero elsewhere), with gradients when ``grad_through``.
        """
        i = missing_modality if isinstance(missing_modality, int) else self.index(missing_modality)
        zz = z if self.grad_through else {k: v.detach() for k, v in z.items()}
        s = self.scores(zz, observed, exclude=i)
        k = min(self.topk, self.size)
        top, idx = s.topk(k, dim=-1)
        w_top = torch.softmax(top / self.tau, dim=-1)
        weights = torch.zeros_like(s).scatter(-1, idx, w_top)
        if not self.grad_through:
            weights = weights.detach()
        tokens = torch.einsum("bk,ksd->bsd", weights, self.values(i).to(weights.dtype))
        return tokens, weights, s

    # ------------------------------------------------------------------ EMA update
    @torch.no_grad()
    def update(self, z: dict, tokens: dict, observed: torch.Tensor, token_masks: dict | None = None) -> dict:
        """One EMA step from a batch's detached summaries ``z`` (m -> [B, D]) and raw tokens ``tokens``
        (m -> [B, n_m, D]); ``token_masks`` (m -> bool [B, n_m]) marks the valid token slots.
        Returns counts of what happened (assigned embeddings, dead prototypes reset)."""
        if self.update_mode != "ema" or not self.is_ready:
            return {"assigned": 0, "reset": 0}
        obs = observed.bool().to(self.keys.device)
        keys, d = self.keys, self.decay
        K, D = self.size, self.dim
        # keys: every observed (patient, modality) summary
        emb, owner = [], []
        for j, name in enumerate(self.names):
            if name in z:
                rows = obs[:, j].nonzero().flatten()
                emb.append(F.normalize(z[name].detach().float()[rows], dim=-1))
                owner.append(rows)
        emb = torch.cat(emb) if emb else keys.new_zeros(0, D)
        owner = torch.cat(owner) if owner else torch.zeros(0, dtype=torch.long, device=keys.device)
        onehot = F.one_hot((emb @ keys.T).argmax(-1), K).float() if emb.shape[0] else keys.new_zeros(0, K)
        n_k, sum_k = onehot.sum(0), onehot.T @ emb
        # value slots: patients observing m, assigned by their consensus over all observed modalities
        zd = {k: v.detach().float() for k, v in z.items()}
        assign = self.scores(zd, obs).argmax(-1)
        v_stats = []
        for i, name in enumerate(self.names):
            if name not in tokens:
                v_stats.append(None)
                continue
            t = tokens[name].detach().float()
            w = obs[:, i, None].float().expand(t.shape[0], t.shape[1]).clone()
            if token_masks is not None and name in token_masks:
                w = w * token_masks[name].float()
            oh = F.one_hot(assign, K).float()
            v_stats.append((torch.einsum("bk,bs,bsd->ksd", oh, w, t), torch.einsum("bk,bs->ks", oh, w)))
        if _dist_ready():
            self._all_reduce([n_k, sum_k] + [x for st in v_stats if st is not None for x in st])
        self.key_counts.mul_(d).add_((1 - d) * n_k)
        self.key_sums.mul_(d).add_((1 - d) * sum_k)
        self.keys.copy_(F.normalize(self.key_sums / self.key_counts.clamp_min(1e-12)[:, None], dim=-1))
        for i, st in enumerate(v_stats):
            if st is None:
                continue
            sums, counts = getattr(self, f"value_sums_{i}"), getattr(self, f"value_counts_{i}")
            sums.mul_(d).add_((1 - d) * st[0])
            counts.mul_(d).add_((1 - d) * st[1])
            have = counts > 1e-12
            value = getattr(self, f"value_{i}")
            value.copy_(torch.where(have[..., None], sums / counts.clamp_min(1e-12)[..., None], value))
        reset = self._reset_dead(emb, owner, tokens, obs, token_masks)
        return {"assigned": int(emb.shape[0]), "reset": reset}

    def _reset_dead(self, emb, owner, tokens, obs, token_masks) -> int:
        """Re-seed prototypes whose EMA count fell below ``dead_after`` with random batch embeddings."""
        dead = (self.key_counts < self.dead_after).nonzero().flatten()
        if dead.numel() == 0 or emb.shape[0] == 0:
            return 0
        pick = torch.randint(emb.shape[0], (dead.numel(),), generator=self._gen).to(emb.device)
        for k, r in zip(dead.tolist(), pick.tolist(), strict=True):
            self.keys[k] = emb[r]
            self.key_sums[k] = emb[r]
            self.key_counts[k] = 1.0
            p = int(owner[r])
            for i, name in enumerate(self.names):
                if name not in tokens or not bool(obs[p, i]):
                    continue
                w = torch.ones(self.slots[i], device=emb.device)
                if token_masks is not None and name in token_masks:
                    w = token_masks[name][p].float()
                t = tokens[name][p].detach().float()
                value = getattr(self, f"value_{i}")
                getattr(self, f"value_sums_{i}")[k] = t * w[:, None]
                getattr(self, f"value_counts_{i}")[k] = w
                value[k] = torch.where(w[:, None] > 0, t, value[k])
        self._broadcast()
        return int(dead.numel())

    # ------------------------------------------------------------------ distributed
    @staticmethod
    def _all_reduce(tensors: list) -> None:
        """Sum per-prototype statistics over the processes (in place)."""
        for t in tensors:
            torch.distributed.all_reduce(t)

    @torch.no_grad()
    def _broadcast(self) -> None:
        """Copy the whole bank from rank 0 (after k-means or random resets) in distributed runs."""
        if not _dist_ready():
            return
        for t in list(self.buffers()) + list(self.parameters()):
            torch.distributed.broadcast(t.data, src=0)
