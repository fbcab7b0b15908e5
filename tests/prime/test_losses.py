"""PRIME's pretraining objectives, the missingness sampler and the pretraining step."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from affectkit.tasks.prime.config import PrimeConfig
from affectkit.tasks.prime.method_losses import (
    MissingnessSampler,
    after_pretrain_step,
    align_loss,
    consistency_loss,
    imputation_loss,
    pretrain_step,
)
from affectkit.tasks.prime.model import ModalitySpec, PrimeModel

D = 16


def _cfg(**bank):
    cfg = PrimeConfig()
    cfg.model.dim, cfg.model.layers, cfg.model.heads, cfg.model.text_chunks = D, 1, 2, 2
    cfg.model.dropout = 0.0
    cfg.bank.size, cfg.bank.topk, cfg.bank.warmup_steps = 8, 3, 2
    for k, v in bank.items():
        setattr(cfg.bank, k, v)
    return cfg


def _specs():
    return [ModalitySpec("wsi", "bag", 6), ModalitySpec("rna", "vector", 9, [[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
            ModalitySpec("report", "text", 5)]


def _batch(B=12, seed=0, p_obs=0.7):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(B, 3, generator=g) < p_obs
    obs[torch.arange(B), torch.randint(3, (B,), generator=g)] = True
    wsi_mask = torch.rand(B, 6, generator=g) < 0.8
    wsi_mask[:, 0] = True
    return {"observed": obs,
            "wsi": torch.randn(B, 6, 6, generator=g) * obs[:, 0, None, None], "wsi:mask": wsi_mask & obs[:, :1],
            "rna": torch.randn(B, 9, generator=g) * obs[:, 1, None],
            "report": torch.randn(B, 2, 5, generator=g) * obs[:, 2, None, None],
            "report:mask": torch.ones(B, 2, dtype=torch.bool) & obs[:, 2:]}


# ---------------------------------------------------------------------------- alignment
def test_align_loss_hand_case():
    g = torch.Generator().manual_seed(0)
    za = F.normalize(torch.randn(3, 4, generator=g), dim=-1)
    zb = F.normalize(torch.randn(3, 4, generator=g), dim=-1)
    scale = 5.0
    loss, n = align_loss({"a": za, "b": zb}, torch.ones(3, 2, dtype=torch.bool), scale)
    logits = [[scale * float(za[i] @ zb[j]) for j in range(3)] for i in range(3)]
    rows = [-(logits[i][i] - math.log(sum(math.exp(v) for v in logits[i]))) for i in range(3)]
    cols = [-(logits[j][j] - math.log(sum(math.exp(logits[i][j]) for i in range(3)))) for j in range(3)]
    want = 0.5 * (sum(rows) / 3 + sum(cols) / 3)
    assert n == 1 and math.isclose(float(loss), want, rel_tol=1e-5)


def test_align_loss_uses_only_patients_observing_both_and_skips_small_pairs():
    g = torch.Generator().manual_seed(1)
    z = {n: F.normalize(torch.randn(4, 4, generator=g), dim=-1).requires_grad_() for n in "abc"}
    obs = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    loss, n = align_loss(z, obs, 3.0)
    rows = torch.tensor([0, 1, 3])
    ref, _ = align_loss({"a": z["a"][rows], "b": z["b"][rows]}, torch.ones(3, 2, dtype=torch.bool), 3.0)
    assert n == 1 and torch.allclose(loss, ref)                       # (a,c), (b,c): one patient only
    none, n0 = align_loss(z, torch.eye(4, 3, dtype=torch.bool), 3.0)
    assert n0 == 0 and float(none.detach()) == 0.0 and none.requires_grad


# ---------------------------------------------------------------------------- sampler
def test_sampler_never_keeps_missing_and_never_empties():
    g = torch.Generator().manual_seed(0)
    cohort = torch.rand(50, 3, generator=g) < 0.6
    sampler = MissingnessSampler(_specs(), cohort.numpy(), empirical_mix=0.5, token_drop=0.5)
    obs = torch.tensor(list(itertools.product([False, True], repeat=3))[1:] * 30, dtype=torch.bool)
    for _ in range(3):
        kept = sampler.draw_patterns(obs, g)
        assert not bool((kept & ~obs).any())
        assert bool(kept.any(1).all())
        multi = obs.sum(1) >= 2
        assert bool((kept[multi].sum(1) < obs[multi].sum(1)).all())  # drops >= 1 observed modality
        assert torch.equal(kept[~multi], obs[~multi])                  # a single modality is kept


def test_sampler_empirical_mode_draws_seen_patterns():
    cohort = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    sampler = MissingnessSampler(_specs(), cohort.numpy(), empirical_mix=1.0, token_drop=0.0)
    g = torch.Generator().manual_seed(3)
    full = sampler.draw_patterns(torch.ones(300, 3, dtype=torch.bool), g)
    drawn = {tuple(r) for r in full.int().tolist()}
    assert drawn == {(1, 1, 0), (1, 0, 0)}                               # seen proper subsets only
    # frequencies follow the cohort: (1,1,0) twice as often as (1,0,0)
    share = float((full.int() == torch.tensor([1, 1, 0])).all(1).float().mean())
    assert 0.55 < share < 0.78
    # nothing seen fits -> uniform over the proper subsets
    other = sampler.draw_patterns(torch.tensor([[False, True, True]] * 100), g)
    assert {tuple(r) for r in other.int().tolist()} == {(0, 1, 0), (0, 0, 1)}
    uniform = MissingnessSampler(_specs(), cohort.numpy(), empirical_mix=0.0).draw_patterns(
        torch.ones(300, 3, dtype=torch.bool), g)
    assert len({tuple(r) for r in uniform.int().tolist()}) == 6


def test_sampler_token_dropout():
    sampler = MissingnessSampler(_specs(), None, empirical_mix=0.0, token_drop=0.5)
    g = torch.Generator().manual_seed(0)
    batch = _batch(B=40, p_obs=0.9)
    view = sampler(batch, g)
    assert view is not batch and torch.equal(batch["observed"], _batch(B=40, p_obs=0.9)["observed"])
    for j, spec in enumerate(_specs()):
        key = f"{spec.name}:mask"
        orig = batch.get(key, torch.ones(40, 3, dtype=torch.bool))
        new = view[key]
        assert not bool((new & ~orig).any())                              # only removes tokens
        kept = view["observed"][:, j]
        assert bool(new[kept].any(1).all())                               # >= 1 token left
        dropped = (orig.sum(1) - new.sum(1))[kept]
        assert bool((dropped <= (0.5 * orig.sum(1)[kept]).floor()).all())
    assert int((view["rna:mask"].sum(1) < 3).sum()) > 0


# ---------------------------------------------------------------------------- consistency
def test_consistency_losses():
    g = torch.Generator().manual_seed(0)
    proj = torch.nn.Linear(D, D)
    h = torch.randn(8, D, generator=g)
    same = consistency_loss(h, h + 0.01 * torch.randn(8, D, generator=g), proj, "infonce", 0.1)
    other = consistency_loss(h, torch.randn(8, D, generator=g), proj, "infonce", 0.1)
    assert float(same.detach()) < float(other.detach())
    h_a = h.clone().requires_grad_()
    h_b = torch.randn(8, D, generator=g, requires_grad=True)
    loss = consistency_loss(h_a, h_b, proj, "simsiam", predictor=torch.nn.Linear(D, D))
    loss.backward()
    assert h_a.grad is None and h_b.grad is not None                     # stop-gradient on view A


# ---------------------------------------------------------------------------- pretraining step
def _model(cfg):
    torch.manual_seed(0)
    return PrimeModel(_specs(), cfg.model, cfg.bank, cfg.pretrain)


def test_pretrain_step_finite_and_grads_reach_tokenisers():
    cfg = _cfg(warmup_steps=1)
    model = _model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    g = torch.Generator().manual_seed(0)
    loss, logs = pretrain_step(model, _batch(), cfg, g)
    assert logs["consistency"] == 0.0 and logs["impute"] == 0.0        # warm-up: alignment only
    loss.backward()
    assert after_pretrain_step(model, 1, cfg) == {"bank_init": 1.0}
    assert model.bank.is_ready
    opt.zero_grad()
    loss, logs = pretrain_step(model, _batch(seed=1), cfg, g)
    assert math.isfinite(float(loss.detach())) and logs["consistency"] > 0 and logs["impute"] > 0
    loss.backward()
    for tok in model.tokenizers:
        grads = [p.grad for p in tok.parameters() if p.grad is not None]
        assert grads and sum(float(x.abs().sum()) for x in grads) > 0
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.logit_scale.grad is not None
    out = after_pretrain_step(model, 2, cfg)
    assert "bank_reset" in out


def test_bank_initialised_exactly_at_warmup():
    cfg = _cfg(warmup_steps=3)
    model = _model(cfg).train()
    g = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        assert not model.bank.is_ready
        pretrain_step(model, _batch(seed=step), cfg, g)
        after_pretrain_step(model, step, cfg)
    assert model.bank.is_ready and int(model.pretrain_steps) == 3
    assert int(model.recent_written) == 0 and model.recent_patients() is None  # ring buffer released


def test_imputation_loss_zero_before_bank_and_simsiam_step():
    cfg = _cfg(warmup_steps=0)
    cfg.pretrain.consistency = "simsiam"
    model = _model(cfg).train()
    enc = model.encode(_batch())
    assert float(imputation_loss(model, enc, _batch()).detach()) == 0.0
    g = torch.Generator().manual_seed(0)
    pretrain_step(model, _batch(), cfg, g)
    after_pretrain_step(model, 1, cfg)
    loss, logs = pretrain_step(model, _batch(seed=2), cfg, g)
    assert math.isfinite(logs["loss"]) and -1.0 <= logs["consistency"] <= 1.0 and logs["consistency"] != 0.0
    loss.backward()


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_other_fills_wait_for_warmup_steps(fill):
    cfg = _cfg(warmup_steps=1)
    cfg.model.fill = fill
    model = _model(cfg).train()
    g = torch.Generator().manual_seed(0)
    _, logs = pretrain_step(model, _batch(), cfg, g)
    assert logs["consistency"] == 0.0
    after_pretrain_step(model, 1, cfg)
    _, logs = pretrain_step(model, _batch(), cfg, g)
    assert logs["consistency"] > 0 and logs["impute"] == 0.0 and not model.bank.is_ready


def _toy(n=256, seed=0):
    """Three modalities (vector, vector, text chunks) that are noisy views of one latent; 25 % missing."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 4, generator=g)
    A, B, C = (torch.randn(4, k, generator=g) for k in (10, 8, 6))
    obs = torch.rand(n, 3, generator=g) > 0.25
    obs[torch.arange(n), torch.randint(3, (n,), generator=g)] = True
    x = {"a": u @ A + 0.1 * torch.randn(n, 10, generator=g), "b": u @ B + 0.1 * torch.randn(n, 8, generator=g),
         "t": (u @ C)[:, None, :] + 0.1 * torch.randn(n, 2, 6, generator=g)}
    return obs, x


def _toy_batch(obs, x, idx):
    o = obs[idx]
    return {"observed": o, "a": x["a"][idx] * o[:, :1], "b": x["b"][idx] * o[:, 1:2],
            "t": x["t"][idx] * o[:, 2, None, None], "t:mask": o[:, 2:].expand(-1, 2).clone()}


def test_pretraining_on_shared_latent_lowers_alignment():
    cfg = _cfg(warmup_steps=20)
    cfg.bank.size = 8
    specs = [ModalitySpec("a", "vector", 10, [list(range(5)), list(range(5, 10))]), ModalitySpec("b", "vector", 8),
             ModalitySpec("t", "text", 6)]
    torch.manual_seed(0)
    model = PrimeModel(specs, cfg.model, cfg.bank, cfg.pretrain)
    obs, x = _toy(n=320)
    held = _toy_batch(obs, x, torch.arange(256, 320))                  # held-out patients, same views
    obs, x = obs[:256], {k: v[:256] for k, v in x.items()}
    sampler = MissingnessSampler(specs, obs.numpy(), 0.5, 0.3)

    def held_align():
        model.eval()
        with torch.no_grad():
            enc = model.encode(held)
            return float(align_loss(enc["z"], enc["observed"], 1 / 0.1)[0])

    before = held_align()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(1, 201):
        model.train()
        idx = torch.randint(obs.shape[0], (32,), generator=g)
        loss, logs = pretrain_step(model, _toy_batch(obs, x, idx), cfg, g, sampler=sampler)
        opt.zero_grad()
        loss.backward()
        opt.step()
        after_pretrain_step(model, step, cfg)
        assert math.isfinite(logs["loss"])
    after = held_align()
    assert model.bank.is_ready
    print("held-out alignment", before, after)
    assert after < 0.6 * before, (before, after)
