"""FreqPhys diffusion: cosine schedule, training loss wiring, DDIM timesteps, losses, tiny overfit (CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from affectkit.tasks.rppg.method_diffusion import Diffusion, cosine_alphas_cumprod
from affectkit.tasks.rppg.method_losses import freq_mse, freqphys_loss, neg_pearson
from affectkit.tasks.rppg.model import FreqPhys


class Recorder(nn.Module):
    """Dummy denoiser: records its inputs and returns a fixed signal plus a trainable offset."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x_t, st_maps, phys_maps, t):
        self.calls.append((x_t.clone(), t.clone()))
        return st_maps[:, 0].mean(1) + self.offset + 0 * x_t


def test_cosine_schedule_monotone_and_closed_form():
    ac = cosine_alphas_cumprod(1000, 0.008)
    assert ac.shape == (1000,)
    assert (ac > 0).all() and (ac <= 1).all() and (ac[1:] < ac[:-1]).all()

    def f(u):
        return math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 1, 250, 500, 900, 998):
        assert ac[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert ac[999].item() == pytest.approx(ac[998].item() * 0.001, rel=1e-9)  # last beta clipped to 0.999


@pytest.mark.parametrize(
    "steps, expected",
    [(5, [999, 799, 599, 399, 199]), (3, [999, 665, 332]), (4, [999, 749, 499, 249]), (1, [999])],
)
def test_ddim_visits_exactly_the_configured_timesteps(steps, expected):
    diff = Diffusion()
    assert diff.ddim_times(steps) == expected
    model = Recorder()
    st = torch.sin(torch.linspace(0, 20, 3 * 12 * 2 * 40)).reshape(3, 12, 2, 40)  # |standardised| < 2.2
    out = diff.sample(model, st, None, steps=steps, generator=torch.Generator().manual_seed(0))
    assert diff.last_times == expected
    assert [c[1].tolist() for c in model.calls] == [[t] * 3 for t in expected]
    assert out.shape == (3, 40)
    # the returned x0 is the batch-standardised prediction (no clamping hit here): unit std, zero mean
    ref = st[:, 0].mean(1)
    torch.testing.assert_close(out, (ref - ref.mean()) / ref.std(), atol=1e-5, rtol=1e-5)
    assert all(c[0].abs().max() <= 2.2 + 1e-6 for c in model.calls)


def test_ddim_eta_zero_is_deterministic_given_the_start_and_eta_one_is_not():
    torch.manual_seed(0)
    model = FreqPhys(
        dim=16, depth=1, heads=2, dim_head=8, mlp_dim=16, dropout=0.0, n_rois=3, length=32
    ).eval()
    st, ph = torch.randn(2, 12, 3, 32), torch.randn(2, 6, 3, 32)
    diff = Diffusion()
    outs = {}
    for eta in (0.0, 1.0):
        for seed in (0, 0):
            outs.setdefault(eta, []).append(
                diff.sample(model, st, ph, steps=3, eta=eta, generator=torch.Generator().manual_seed(seed))
            )
    torch.testing.assert_close(outs[0.0][0], outs[0.0][1])
    torch.testing.assert_close(outs[1.0][0], outs[1.0][1])
    assert (outs[0.0][0] - outs[1.0][0]).abs().max() > 1e-4


def test_training_loss_feeds_clamped_rescaled_noisy_signal():
    diff = Diffusion()
    model = Recorder()
    bvp = 3 * torch.randn(64, 50)  # large values so that the clamp matters
    st = torch.randn(64, 12, 2, 50)
    loss, parts = diff.training_loss(model, bvp, st, None, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(parts) >= {"neg_pearson", "fft_real", "fft_imag"}
    assert loss.item() == pytest.approx(
        parts["neg_pearson"] + parts["fft_real"] + parts["fft_imag"], rel=1e-5
    )
    ((x_t, t),) = model.calls
    assert x_t.abs().max().item() == pytest.approx(2.2, abs=1e-6)  # clamp at 2.2 * 0.5, then / 0.5
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 999 and len(t.unique()) > 32
    # reproduce x_t by hand for the smallest t (almost clean: x_t ~ bvp)
    g = torch.Generator().manual_seed(0)
    t_ref = torch.randint(0, 1000, (64,), generator=g)
    noise = torch.randn(64, 50, generator=g)
    ab = diff.alphas_cumprod[t_ref].float()[:, None]
    x_ref = ((ab.sqrt() * 0.5 * bvp + (1 - ab).sqrt() * noise).clamp(-1.1, 1.1)) / 0.5
    torch.testing.assert_close(t, t_ref)
    torch.testing.assert_close(x_t, x_ref)


def test_neg_pearson_identical_and_negated():
    x = torch.randn(4, 100)
    assert neg_pearson(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert neg_pearson(-x, x).item() == pytest.approx(2.0, abs=1e-6)
    assert neg_pearson(3 * x + 1, x).item() == pytest.approx(0.0, abs=1e-6)


def test_freq_mse_matches_a_hand_dft():
    rng = np.random.default_rng(0)
    p, y = rng.standard_normal((3, 30)), rng.standard_normal((3, 30))
    length = 30
    k, n = np.arange(length // 2 + 1)[:, None], np.arange(length)[None]
    dft = np.exp(-2j * np.pi * k * n / length) / np.sqrt(length)  # orthonormal rFFT rows
    dp, dy = p @ dft.T, y @ dft.T
    expected = np.mean((dp.real - dy.real) ** 2) + np.mean((dp.imag - dy.imag) ** 2)
    got = freq_mse(torch.tensor(p), torch.tensor(y)).item()
    assert got == pytest.approx(expected, rel=1e-10)
    # Parseval with ortho norm: one-sided bins (DC and Nyquist once, the others twice) carry the energy
    w = np.full(length // 2 + 1, 2.0)
    w[0] = w[-1] = 1.0
    assert np.sum(w * np.abs(dp - dy) ** 2) == pytest.approx(np.sum((p - y) ** 2), rel=1e-10)


def test_freqphys_loss_standardises_pred_globally():
    torch.manual_seed(0)
    y = torch.randn(4, 60)
    y = (y - y.mean(1, keepdim=True)) / y.std(1, keepdim=True)
    pred = torch.randn(4, 60)
    loss, parts = freqphys_loss(pred, y)
    loss2, _ = freqphys_loss(5 * pred - 2, y)
    assert loss.item() == pytest.approx(loss2.item(), rel=1e-5)
    assert loss.item() == pytest.approx(sum(parts.values()), rel=1e-6)
    perfect, _ = freqphys_loss(3 * y + 1, y)  # y is already globally standardised up to the std convention
    assert perfect.item() < 0.02
    # not per-sample standardisation: rescaling one sample changes the loss
    pred2 = pred.clone()
    pred2[0] *= 10
    assert abs(freqphys_loss(pred2, y)[0].item() - loss.item()) > 1e-3


@pytest.mark.parametrize("frequency", [True, False])
def test_tiny_model_overfits_one_batch(frequency):
    torch.manual_seed(0)
    b, r, length = 4, 4, 64
    time = torch.arange(length) / 30.0
    hr = torch.tensor([1.0, 1.4, 1.9, 2.5])
    bvp = torch.sin(2 * math.pi * hr[:, None] * time + torch.rand(b, 1) * 6)
    bvp = (bvp - bvp.mean(1, keepdim=True)) / bvp.std(1, keepdim=True)
    st = bvp[:, None, None, :].expand(b, 12, r, length) + 0.3 * torch.randn(b, 12, r, length)
    ph = st[:, :6].clone()
    torch.manual_seed(1)
    model = FreqPhys(
        dim=16,
        depth=1,
        heads=2,
        dim_head=8,
        mlp_dim=16,
        dropout=0.0,
        n_rois=r,
        length=length,
        frequency=frequency,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    diff, g = Diffusion(), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss, _ = diff.training_loss(model, bvp, st, ph, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.35 * np.mean(losses[:3])
