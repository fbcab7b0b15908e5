"""Survival losses, risks and the downstream model of PRIME."""

from __future__ import annotations

import math

import torch

from affectkit.tasks.prime.config import BankConfig, FinetuneConfig, ModelConfig
from affectkit.tasks.prime.heads import (
    DownstreamModel,
    cox_ph_loss,
    modality_dropout,
    nll_surv_loss,
    risk_from_logits,
)
from affectkit.tasks.prime.model import ModalitySpec, PrimeModel


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_nll_uncensored_and_censored_by_hand():
    logits = torch.tensor([[0.2, -0.5, 1.0, 0.3], [0.2, -0.5, 1.0, 0.3]])
    h = [_sig(v) for v in [0.2, -0.5, 1.0, 0.3]]
    bins = torch.tensor([2, 2])
    censored = torch.tensor([0.0, 1.0])
    per = nll_surv_loss(logits, bins, censored, reduction="none")
    # event in bin 2: survived bins 0, 1 then the hazard of bin 2
    want_unc = -(math.log(1 - h[0]) + math.log(1 - h[1]) + math.log(h[2]))
    # censored in bin 2: survived bins 0, 1, 2
    want_cens = -(math.log(1 - h[0]) + math.log(1 - h[1]) + math.log(1 - h[2]))
    assert math.isclose(float(per[0]), want_unc, rel_tol=1e-5)
    assert math.isclose(float(per[1]), want_cens, rel_tol=1e-5)
    assert math.isclose(float(nll_surv_loss(logits, bins, censored)), (want_unc + want_cens) / 2, rel_tol=1e-5)
    assert math.isclose(float(nll_surv_loss(logits, bins, censored, reduction="sum")), want_unc + want_cens,
                        rel_tol=1e-5)
    # alpha: (1 - alpha) * (unc + cens) + alpha * unc
    per_a = nll_surv_loss(logits, bins, censored, alpha=0.4, reduction="none")
    assert math.isclose(float(per_a[0]), want_unc, rel_tol=1e-5)
    assert math.isclose(float(per_a[1]), 0.6 * want_cens, rel_tol=1e-5)


def test_nll_first_bin_and_clamp():
    logits = torch.tensor([[-30.0, 0.0, 0.0, 0.0]])
    loss = nll_surv_loss(logits, torch.tensor([0]), torch.tensor([0.0]))
    assert math.isclose(float(loss), -math.log(1e-7), rel_tol=1e-4)      # hazard clamped at eps
    loss = nll_surv_loss(torch.tensor([[0.0, 0, 0, 0]]), torch.tensor([3]), torch.tensor([1.0]))
    assert math.isclose(float(loss), -4 * math.log(0.5), rel_tol=1e-5)


def _breslow_reference(eta, time, event):
    total, n = 0.0, 0
    for i in range(len(eta)):
        if event[i]:
            risk = sum(math.exp(eta[j]) for j in range(len(eta)) if time[j] >= time[i])
            total += eta[i] - math.log(risk)
            n += 1
    return -total / n


def test_cox_against_direct_breslow_with_ties():
    g = torch.Generator().manual_seed(0)
    eta = torch.randn(12, generator=g, dtype=torch.float64)
    time = torch.tensor([5, 3, 3, 8, 1, 3, 8, 2, 9, 5, 5, 1], dtype=torch.float64)
    event = torch.tensor([1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1])
    got = float(cox_ph_loss(eta, time, event))
    want = _breslow_reference(eta.tolist(), time.tolist(), event.tolist())
    assert math.isclose(got, want, rel_tol=1e-10)
    perm = torch.randperm(12, generator=g)
    assert math.isclose(float(cox_ph_loss(eta[perm], time[perm], event[perm])), want, rel_tol=1e-10)


def test_cox_without_events_is_zero_with_grad():
    eta = torch.randn(4, requires_grad=True)
    loss = cox_ph_loss(eta, torch.arange(4.0), torch.zeros(4))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert eta.grad is not None


def test_risk_from_logits_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [10.0, 10.0]])
    # bin hazards 0.5, 0.75 -> S = 0.5, 0.125
    risk = risk_from_logits(logits)
    assert math.isclose(float(risk[0]), -(0.5 + 0.125), rel_tol=1e-6)
    assert float(risk[1]) > float(risk[0])                                # high hazards = higher risk


def test_modality_dropout_keeps_one():
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(200, 3, generator=g) > 0.3
    obs[0] = False
    out = modality_dropout(obs, 0.9, g)
    assert not bool((out & ~obs).any())
    assert bool(out[obs.any(1)].any(1).all())
    assert not bool(out[0].any())
    assert torch.equal(modality_dropout(obs, 0.0, g), obs)


def _encoder():
    torch.manual_seed(0)
    return PrimeModel([ModalitySpec("a", "vector", 5), ModalitySpec("b", "vector", 3)],
                      ModelConfig(dim=16, layers=1, heads=2), BankConfig(size=2))


def test_downstream_heads_and_risk_orientation():
    batch = {"observed": torch.ones(3, 2, dtype=torch.bool), "a": torch.randn(3, 5), "b": torch.randn(3, 3)}
    nll = DownstreamModel(_encoder(), "nll", 4).eval()
    logits = nll(batch)
    assert logits.shape == (3, 4)
    assert torch.allclose(nll.risk(batch), risk_from_logits(logits))
    cox = DownstreamModel.from_config(_encoder(), FinetuneConfig(head="cox")).eval()
    assert cox.kind == "cox" and cox(batch).shape == (3,) and torch.equal(cox.risk(batch), cox(batch))
    binary = DownstreamModel.from_config(_encoder(), FinetuneConfig(target="horizon")).eval()
    assert binary.kind == "binary" and binary.risk(batch).shape == (3,)
    obs = torch.tensor([[True, False], [True, True], [False, True]])
    assert nll(batch, obs).shape == (3, 4)
