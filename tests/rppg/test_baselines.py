"""Classical rPPG methods and toolbox post-processing on synthetic face traces (CPU, numpy/scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from affectkit.tasks.rppg import postprocess as pp
from affectkit.tasks.rppg.baselines import METHODS, chrom, green, pos

FS = 30.0
SKIN = np.array([180.0, 120.0, 95.0])
PULSATILITY = np.array([0.33, 0.77, 0.53])  # de Haan / van Leest blood-volume signature


def synth_trace(
    hr_bpm: float = 72.0,
    seconds: float = 20.0,
    fs: float = FS,
    amp: float = 0.004,
    noise_dn: float = 0.1,
    flicker: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Per-frame mean RGB (T, 3): skin * I(t) * (1 + amp * s * p(t)) + noise.

    p(t) is a 3-harmonic pulse at ``hr_bpm``; I(t) = 1 + 0.05 sin(2 pi 0.2 t) (out-of-band illumination
    drift) plus an optional colour-neutral in-band flicker at 1.5 Hz of relative amplitude ``flicker``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    f0 = hr_bpm / 60.0
    phase = 2 * np.pi * f0 * t + 0.3
    p = np.sin(phase) + 0.4 * np.sin(2 * phase + 0.8) + 0.15 * np.sin(3 * phase + 1.6)
    p /= p.std()
    illum = 1.0 + 0.05 * np.sin(2 * np.pi * 0.2 * t) + flicker * np.sin(2 * np.pi * 1.5 * t)
    rgb = SKIN * illum[:, None] * (1.0 + amp * PULSATILITY * p[:, None])
    return rgb + rng.normal(0.0, noise_dn, rgb.shape)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("hr", [60.0, 72.0, 110.0])
def test_every_method_recovers_hr(name: str, hr: float) -> None:
    rgb = synth_trace(hr_bpm=hr, seed=int(hr))
    bvp = METHODS[name](rgb, FS)
    assert bvp.shape == (rgb.shape[0],)
    assert np.all(np.isfinite(bvp))
    est = pp.estimate_hr(bvp, FS, nfft=4096)
    assert abs(est - hr) < 3.0, f"{name}: {est:.1f} bpm vs {hr}"


def test_chrominance_methods_reject_colour_neutral_flicker() -> None:
    rgb = synth_trace(hr_bpm=72.0, flicker=0.01, seed=3)
    for fn in (pos, chrom):
        assert abs(pp.estimate_hr(fn(rgb, FS), FS, nfft=4096) - 72.0) < 2.0
    # GREEN has no chrominance model and locks onto the 90-bpm flicker
    assert abs(pp.estimate_hr(green(rgb, FS), FS, nfft=4096) - 90.0) < 2.0


def test_bad_shapes() -> None:
    with pytest.raises(ValueError):
        pos(np.ones((10, 4)), FS)


def test_bandpass_keeps_in_band_and_suppresses_out_of_band() -> None:
    t = np.arange(int(30 * FS)) / FS
    inside = np.sin(2 * np.pi * 1.2 * t)
    low = np.sin(2 * np.pi * 0.05 * t)
    high = np.sin(2 * np.pi * 10.0 * t)
    core = slice(150, -150)  # ignore filtfilt edge transients
    kept = pp.bandpass(inside, FS)
    assert np.std(kept[core]) / np.std(inside[core]) > 0.9
    assert np.std(pp.bandpass(low, FS)[core]) < 0.15
    assert np.std(pp.bandpass(high, FS)[core]) < 0.15
    assert np.std(pp.bandpass(high, FS, band=(0.6, 3.3), order=4)[core]) < 1e-3
    assert pp.hr_fft(pp.bandpass(inside + low + high, FS), FS, nfft=4096) == pytest.approx(72.0, abs=0.5)


def test_detrend_removes_slow_trend_keeps_pulse() -> None:
    t = np.arange(600) / FS
    pulse = np.sin(2 * np.pi * 1.2 * t)
    out = pp.detrend(pulse + 0.5 * t + 3.0, lam=100.0)
    assert np.corrcoef(out[50:-50], pulse[50:-50])[0, 1] > 0.99
    assert abs(out.mean()) < 0.05


def test_detrend_equals_the_closed_form() -> None:
    # smoothness priors: z - (I + lambda^2 D^T D)^-1 z, D the (T-2, T) second-difference matrix
    z = np.random.default_rng(0).normal(size=80).cumsum()
    lam = 100.0
    d = np.zeros((78, 80))
    for i in range(78):
        d[i, i : i + 3] = (1.0, -2.0, 1.0)
    expected = z - np.linalg.solve(np.eye(80) + lam**2 * d.T @ d, z)
    np.testing.assert_allclose(pp.detrend(z, lam), expected, atol=1e-9)


def test_hr_fft_resolution_and_nfft_policy() -> None:
    t = np.arange(300) / FS  # 10 s: next-pow2 nfft 512 -> 3.52-bpm bins
    x = np.sin(2 * np.pi * 1.2 * t)
    coarse = pp.hr_fft(x, FS)
    assert any(coarse == pytest.approx(60 * k * FS / 512) for k in (20, 21))
    assert abs(coarse - 72.0) > 1.0
    assert pp.hr_fft(x, FS, nfft=3600) == pytest.approx(72.0, abs=0.5)
    assert pp.next_pow2(300) == 512 and pp.next_pow2(512) == 512
    with pytest.raises(ValueError):
        pp.hr_fft(x, FS, nfft=128)


def test_hr_peaks() -> None:
    t = np.arange(600) / FS
    assert pp.hr_peaks(np.sin(2 * np.pi * 1.5 * t), FS) == pytest.approx(90.0, abs=0.5)
    assert np.isnan(pp.hr_peaks(np.zeros(10), FS))
    assert pp.estimate_hr(np.sin(2 * np.pi * 1.2 * t), FS, method="peak") == pytest.approx(72.0, abs=1.0)


def test_snr_hand_computed() -> None:
    t = np.arange(512) / FS
    clean = np.sin(2 * np.pi * 1.2 * t)
    noisy = clean + 0.5 * np.sin(2 * np.pi * 2.9 * t)
    # hand computation from the same periodogram
    from scipy.signal import periodogram

    f, p = periodogram(noisy, fs=FS, nfft=512, detrend=False)
    h = ((f >= 1.1) & (f <= 1.3)) | ((f >= 2.3) & (f <= 2.5))
    rem = (f >= 0.6) & (f <= 3.3) & ~h
    expected = 10 * np.log10(p[h].sum() / p[rem].sum())
    assert pp.snr(noisy, 72.0, FS) == pytest.approx(expected)
    assert pp.snr(noisy, 72.0, FS, db_factor=20) == pytest.approx(2 * expected)
    assert pp.snr(clean, 72.0, FS) > pp.snr(noisy, 72.0, FS)


def test_macc() -> None:
    t = np.arange(300) / FS
    x = np.sin(2 * np.pi * 1.2 * t)
    shifted = np.roll(x, 7)
    assert pp.macc(x, shifted) == pytest.approx(1.0)
    brute = max(abs(stats.pearsonr(x, np.roll(shifted, k))[0]) for k in range(300))
    assert pp.macc(x, shifted) == pytest.approx(brute)
    assert pp.macc(x, shifted, max_lag=2) < 0.99


def test_metrics_against_hand_computation() -> None:
    gt = np.array([60.0, 72.0, 80.0, 95.0, 110.0])
    pred = np.array([62.0, 70.0, 81.0, 99.0, 108.0])
    e = pred - gt  # [2, -2, 1, 4, -2]
    n = gt.size
    m, se = pp.mae(pred, gt)
    assert m == pytest.approx(11 / 5)
    assert se == pytest.approx(np.std(np.abs(e)) / np.sqrt(n))
    r, se = pp.rmse(pred, gt)
    assert r == pytest.approx(np.sqrt((4 + 4 + 1 + 16 + 4) / 5))
    assert se == pytest.approx(np.sqrt(np.std(e**2) / np.sqrt(n)))
    mp, se = pp.mape(pred, gt)
    assert mp == pytest.approx(100 * np.mean([2 / 60, 2 / 72, 1 / 80, 4 / 95, 2 / 110]))
    assert se == pytest.approx(100 * np.std(np.abs(e) / gt) / np.sqrt(n))
    rho, se = pp.pearson(pred, gt)
    assert rho == pytest.approx(stats.pearsonr(pred, gt)[0])
    assert se == pytest.approx(np.sqrt((1 - rho**2) / (n - 2)))
    with pytest.raises(ValueError):
        pp.mae(pred, gt[:3])


def test_method_options() -> None:
    from affectkit.tasks.rppg.baselines import pbv

    rgb = synth_trace(hr_bpm=84.0, seed=5)
    assert abs(pp.estimate_hr(pos(rgb, FS, postfilter=True), FS, nfft=4096) - 84.0) < 3.0
    fixed = pbv(rgb, FS, signature=tuple(PULSATILITY))
    assert abs(pp.estimate_hr(fixed, FS, nfft=4096) - 84.0) < 3.0


def test_estimate_hr_diff_flag_and_bad_method() -> None:
    t = np.arange(601) / FS
    x = np.sin(2 * np.pi * 1.2 * t)
    assert pp.estimate_hr(np.diff(x), FS, diff_flag=True, nfft=4096) == pytest.approx(72.0, abs=0.5)
    with pytest.raises(ValueError):
        pp.estimate_hr(x, FS, method="welch")
