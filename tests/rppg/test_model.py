"""FreqPhys network: PBF band, PSM formula, ASS straight-through mask, shapes and gradient flow (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from affectkit.tasks.rppg.model import FreModulation, FreqPhys, band_mask

TINY = dict(dim=16, depth=2, heads=2, dim_head=8, mlp_dim=16, dropout=0.0, n_rois=5, length=64)


def _identity_like(mod: FreModulation) -> None:
    """Make PSM return the input spectrum (Re' = 1, Im' = 0) and ASS keep every bin."""
    with torch.no_grad():
        mod.w_real.zero_()
        mod.w_imag.zero_()
        mod.b_real.fill_(1.0 + mod.shrink)
        mod.b_imag.fill_(-1.0)
        mod.theta.fill_(-1.0)


def test_band_mask_t300_keeps_24_bins_0p7_to_3hz():
    mask = band_mask(300, 30.0, (0.66, 3.0))
    assert mask.shape == (151,)
    assert torch.nonzero(mask).flatten().tolist() == list(range(7, 31))


@pytest.mark.parametrize("bandpass", [True, False])
def test_pbf_keeps_exactly_the_in_band_sinusoids(bandpass):
    length, fs = 300, 30.0
    n_bins = length // 2 + 1
    n = np.arange(length)
    # channel k is a single-bin cosine at bin k (0.1 Hz * k)
    x = torch.tensor(np.cos(2 * np.pi * np.outer(n, np.arange(n_bins)) / length), dtype=torch.float32)[None]
    mod = FreModulation(n_bins, length, fs, bandpass=bandpass, abs_output=False)
    _identity_like(mod)
    out = mod(x)[0]
    kept = (out.abs().amax(0) > 0.5).nonzero().flatten().tolist()
    if bandpass:
        assert kept == list(range(7, 31))
        torch.testing.assert_close(out[:, 7:31], x[0, :, 7:31], atol=1e-4, rtol=0)
        assert out[:, :7].abs().max() < 1e-4 and out[:, 31:].abs().max() < 1e-4
    else:
        assert kept == list(range(n_bins))
        torch.testing.assert_close(out, x[0], atol=1e-4, rtol=0)


def test_psm_matches_the_written_formula():
    torch.manual_seed(0)
    b, length, d = 2, 32, 4
    mod = FreModulation(d, length, bandpass=False, abs_output=False)
    with torch.no_grad():
        mod.theta.fill_(-1.0)  # keep all bins
        for p in (mod.w_real, mod.w_imag, mod.b_real, mod.b_imag):
            p.mul_(20.0)  # make ReLU and soft-shrink both active on some entries
    x = torch.randn(b, length, d)
    spec = torch.fft.rfft(x, dim=1, norm="ortho")
    re, im = spec.real, spec.imag
    wr, wi, br, bi = mod.w_real, mod.w_imag, mod.b_real, mod.b_imag
    re2 = F.softshrink(F.relu(re @ wr + im @ wi + br), 0.01)
    im2 = F.softshrink(F.relu(re @ wi - im @ wr + bi), 0.01)
    expected = torch.fft.irfft(torch.complex(re2, im2) * spec, n=length, dim=1, norm="ortho")
    out = mod(x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    mod.abs_output = True
    torch.testing.assert_close(mod(x), expected.abs(), atol=1e-5, rtol=1e-4)


def test_ass_mask_is_binary_and_theta_gets_a_gradient():
    torch.manual_seed(0)
    mod = FreModulation(8, 64, bandpass=False)
    with torch.no_grad():
        mod.theta.fill_(1.0)  # median-normalised energies straddle 1, so the mask is mixed
    out = mod(torch.randn(3, 64, 8))
    mask = mod.last_mask
    assert mask.shape == (3, 33)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    out.square().sum().backward()
    assert mod.theta.grad is not None and mod.theta.grad.abs() > 0


def test_ass_threshold_controls_the_mask():
    torch.manual_seed(0)
    mod = FreModulation(8, 64, bandpass=False)
    x = torch.randn(2, 64, 8)
    with torch.no_grad():
        mod.theta.fill_(1e9)
        assert mod(x).abs().max() == 0 and mod.last_mask.sum() == 0
        mod.theta.fill_(-1.0)
        mod(x)
        assert mod.last_mask.min() == 1


def _inputs(b: int = 2, r: int = 5, length: int = 64):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(b, length, generator=g),
        torch.randn(b, 12, r, length, generator=g),
        torch.randn(b, 6, r, length, generator=g),
        torch.randint(0, 1000, (b,), generator=g),
    )


@pytest.mark.parametrize("frequency", [True, False])
def test_freqphys_output_shape_and_modules(frequency):
    torch.manual_seed(0)
    model = FreqPhys(**TINY, frequency=frequency)
    x_t, st, ph, t = _inputs()
    out = model(x_t, st, ph if frequency else None, t)
    assert out.shape == (2, 64) and torch.isfinite(out).all()
    mods = [m for m in model.modules() if isinstance(m, FreModulation)]
    if frequency:
        # one FreModulation per layer (the released dead temporal one is not built); PBF from layer 1 on
        assert [m.bandpass for m in mods] == [False, True]
    else:
        assert mods == [] and model.phys_embed is None


def test_ablation_ignores_phys_maps_and_full_model_uses_them():
    torch.manual_seed(0)
    x_t, st, ph, t = _inputs()
    for frequency in (True, False):
        model = FreqPhys(**TINY, frequency=frequency).eval()
        with torch.no_grad():
            diff = (model(x_t, st, ph, t) - model(x_t, st, ph.flip(-1), t)).abs().max()
        assert (diff > 1e-6) if frequency else (diff == 0)


@pytest.mark.parametrize("frequency", [True, False])
def test_gradient_reaches_every_parameter(frequency):
    torch.manual_seed(0)
    model = FreqPhys(**TINY, frequency=frequency)
    x_t, st, ph, t = _inputs()
    model(x_t, st, ph, t).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
