"""TQD diagnostics (diagnostics.py): per-band loss, gradient similarity, sample metrics, Frechet, plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from affectkit.core.errors import UsageError
from affectkit.tasks.tqd import diagnostics as dg
from affectkit.tasks.tqd import synth
from affectkit.tasks.tqd.method_flow import flow_training_loss
from affectkit.tasks.tqd.model import build_model, to_tensor

SIZE, FRAMES = 16, 8


def clips(n: int, speed: float = 1.5, start: int = 0, channels: int = 3, degradation: float = 0.0) -> np.ndarray:
    """uint8 [n, T, H, W, C] procedural clips with fixed content seeds start..start+n-1."""
    return np.stack([synth.render_clip(np.random.default_rng(start + i), size=SIZE, frames=FRAMES, speed=speed,
                                       channels=channels, degradation=degradation) for i in range(n)])


def blur(batch: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Spatial Gaussian blur of uint8 [N, T, H, W, C] clips."""
    out = gaussian_filter(batch.astype(np.float64), sigma=(0, 0, sigma, sigma, 0), mode="wrap")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained():
    """(untrained, trained) copies of one small denoiser; the trained one saw 150 steps on 32 moving clips."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.manual_seed(0)
    untrained = build_model("conv3d", width=16, depth=2)
    model = build_model(**untrained.config)
    model.load_state_dict(untrained.state_dict())
    x = to_tensor(clips(32, speed=1.5, start=1000))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, x.shape[0], (8,), generator=g)
        loss = flow_training_loss(model, x[idx], None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return untrained, model


# ---- band losses ----------------------------------------------------------------------------


def test_band_losses_deterministic_and_keyed(trained):
    _, model = trained
    held = clips(6, start=5000)
    a = dg.band_losses(model, held, seed=7, n_draws=2, batch_size=4)
    b = dg.band_losses(model, to_tensor(held), seed=7, n_draws=2, batch_size=32)  # float input, other batching
    assert list(a) == ["0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0", "mean"]
    assert list(a) == [dg.band_label(band) for band in dg.BANDS] + ["mean"]
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5)
    assert a["mean"] == pytest.approx(np.mean([a[dg.band_label(band)] for band in dg.BANDS]))
    c = dg.band_losses(model, held, seed=8, n_draws=2, batch_size=4)
    assert c["mean"] != a["mean"]
    assert model.training  # mode restored
    with pytest.raises(UsageError):
        dg.band_losses(model, held, bands=((0.5, 0.2),))


def test_trained_model_has_lower_band_losses(trained):
    untrained, model = trained
    held = clips(8, speed=1.5, start=9000)  # unseen content, same distribution
    before = dg.band_losses(untrained, held, seed=0, n_draws=2)
    after = dg.band_losses(model, held, seed=0, n_draws=2)
    assert after["mean"] < 0.8 * before["mean"], (before, after)
    assert sum(after[k] < before[k] for k in before if k != "mean") >= 4, (before, after)


# ---- gradient similarity --------------------------------------------------------------------


def test_identical_clips_give_cosine_one():
    torch.manual_seed(0)
    model = build_model("conv3d", width=8, depth=2)
    a = clips(3, start=20)
    sims = dg.gradient_similarity(model, a, a.copy(), seed=1, n_draws=2)
    assert list(sims) == list(dg.S_GRID)
    for s, cos in sims.items():
        assert abs(cos - 1.0) < 1e-6, (s, cos)


def test_gradient_similarity_of_different_clips(trained):
    _, model = trained
    a = clips(3, start=40)
    b = blur(a, 1.0)
    stats = dg.gradient_similarity_stats(model, a, b, s_grid=(0.05, 0.95), seed=0, n_draws=2)
    for st in stats.values():
        assert st["n"] == 6 and -1.0 <= st["mean"] < 1.0 and st["std"] >= 0 and st["sem"] <= st["std"]
    # blur removes high frequencies, which the noise swamps at large s: gradients agree more there
    assert stats[0.95]["mean"] > stats[0.05]["mean"]
    again = dg.gradient_similarity(model, a, b, s_grid=(0.05, 0.95), seed=0, n_draws=2)
    assert again == {s: st["mean"] for s, st in stats.items()}
    with pytest.raises(UsageError):
        dg.gradient_similarity(model, a, b[:2])


# ---- sample metrics -------------------------------------------------------------------------


def test_motion_and_sharpness_statistics():
    moving, static = clips(6, speed=2.0, start=60), clips(6, speed=0.0, start=60)
    assert np.all(dg.motion_stat(static) < dg.motion_stat(moving))
    assert np.all(dg.motion_stat(static) == 0.0)
    assert np.all(dg.sharpness_stat(blur(moving)) < dg.sharpness_stat(moving))
    # the numpy Laplacian matches OpenCV's (reflect-101 borders)
    cv2 = pytest.importorskip("cv2")
    frame = np.random.default_rng(0).random((9, 11))
    assert np.allclose(dg._laplacian(frame), cv2.Laplacian(frame, cv2.CV_64F))


def test_sample_metrics_orders_static_and_blurred_sets():
    ref = clips(8, speed=2.0, start=80)
    static = clips(8, speed=0.0, start=180)
    moving = clips(8, speed=2.0, start=180)
    blurred = blur(moving, 1.2)
    m_static = dg.sample_metrics(static, ref)
    m_moving = dg.sample_metrics(moving, ref)
    m_blur = dg.sample_metrics(blurred, ref)
    assert m_static["motion_mean"] < m_moving["motion_mean"]
    assert m_static["motion_w1"] > m_moving["motion_w1"]
    assert m_blur["sharpness_mean"] < m_moving["sharpness_mean"]
    assert m_blur["sharpness_w1"] > m_moving["sharpness_w1"]
    assert m_moving["n_samples"] == 8 and m_moving["n_reference"] == 8
    assert len(m_moving["per_clip"]["motion"]) == 8
    if "flow_mean" in m_static:  # Farneback through the scorer, when OpenCV is present
        assert m_static["flow_mean"] < m_moving["flow_mean"]
        assert "flow" in m_static["per_clip"]
    for m in (m_static, m_moving, m_blur):
        assert math.isfinite(m["rfvd"]) and m["rfvd"] >= -1e-6
    same = dg.sample_metrics(ref, ref, flow=False)
    assert same["motion_w1"] == 0.0 and same["sharpness_w1"] == 0.0 and abs(same["rfvd"]) < 1e-6
    assert "flow_mean" not in same
    # float samples in [-1, 1] (the models' layout) give the same numbers as their uint8 clips
    as_float = dg.sample_metrics(to_tensor(moving), ref, flow=False)
    plain = dg.sample_metrics(moving, ref, flow=False)
    for k in ("motion_mean", "sharpness_mean", "rfvd"):
        assert as_float[k] == pytest.approx(plain[k], rel=1e-9, abs=1e-9)
    with pytest.raises(UsageError):
        dg.sample_metrics(clips(2, channels=1), ref)


def test_random_features_are_fixed():
    batch = clips(4, start=300)
    f1, f2 = dg.random_features(batch), dg.random_features(batch)
    assert f1.shape == (4, 64) and np.array_equal(f1, f2)
    assert not np.allclose(dg.random_features(batch, seed=1), f1)
    assert np.all(np.isfinite(f1)) and f1.std() > 0
    grey = clips(2, start=300, channels=1)
    assert dg.random_features(grey).shape == (2, 64)


# ---- Frechet distance -----------------------------------------------------------------------


def test_frechet_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(200, 8))
    assert abs(dg.frechet_distance(f, f)) < 1e-8
    few = np.random.default_rng(1).normal(size=(10, 64))  # singular covariance (N < D)
    assert abs(dg.frechet_distance(few, few)) < 1e-5


def test_frechet_shifted_gaussian_is_squared_mean_shift():
    f = np.random.default_rng(0).normal(size=(500, 6))
    delta = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 0.25])
    assert dg.frechet_distance(f, f + delta) == pytest.approx(float(delta @ delta), rel=1e-6)


def test_frechet_scaled_set_hand_case():
    """b = 2a: S_b = 4 S_a, so FD = tr(S_a) + 4 tr(S_a) - 2 tr(2 S_a) = tr(S_a) (means are 0)."""
    f = np.random.default_rng(2).normal(size=(300, 5))
    f -= f.mean(0)
    expected = float(np.trace(np.cov(f, rowvar=False)))
    assert dg.frechet_distance(f, 2 * f) == pytest.approx(expected, rel=1e-6)
    # 1-D: N(0, 1) vs N(m, sigma^2) -> m^2 + (1 - sigma)^2
    z = np.random.default_rng(3).normal(size=(400, 1))
    z = (z - z.mean()) / z.std(ddof=1)
    assert dg.frechet_distance(z, 3 * z + 2) == pytest.approx(4 + 4, rel=1e-9)
    with pytest.raises(UsageError):
        dg.frechet_distance(f, f[:, :3])


# ---- plots ----------------------------------------------------------------------------------


def test_plots_write_pngs(tmp_path):
    bands = {dg.band_label(b): 0.1 * (i + 1) for i, b in enumerate(dg.BANDS)}
    bands["mean"] = 0.3
    p1 = dg.plot_band_losses(tmp_path / "plots" / "bands.png", {"uniform": bands, "tqd": {k: v * 0.9 for k, v in
                                                                                          bands.items()}})
    curves = {"blurred": {0.05: 0.7, 0.5: 0.6, 0.95: 0.98}, "static": {0.05: 0.96, 0.5: 0.9, 0.95: 0.85}}
    errors = {"blurred": {0.05: 0.02, 0.5: 0.03, 0.95: 0.01}}
    p2 = dg.plot_gradient_similarity(tmp_path / "gradsim.png", curves, errors)
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in tmp_path.rglob("*") if x.is_file()) == ["bands.png", "gradsim.png"]
    with pytest.raises(UsageError):
        dg.plot_band_losses(tmp_path / "empty.png", {})
