"""The tiny video denoisers (model.py) and the rectified-flow objective / Euler sampler (method_flow.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectkit.core.errors import UsageError
from affectkit.tasks.tqd import synth
from affectkit.tasks.tqd.method_flow import euler_sample, flow_loss, flow_target, flow_training_loss, noisy
from affectkit.tasks.tqd.model import (
    Conv3dDenoiser,
    TinyDiT,
    build_model,
    count_parameters,
    noise_level_embedding,
    to_tensor,
    to_uint8,
)


def tiny_clips(n: int = 32, size: int = 16, frames: int = 8, channels: int = 3) -> np.ndarray:
    """Fixed procedural clips uint8 [n, T, H, W, C] (seeded content, speeds 0.5-2 px/frame)."""
    return np.stack([synth.render_clip(np.random.default_rng(100 + i), size=size, frames=frames,
                                       speed=0.5 + 1.5 * (i % 4) / 3, channels=channels) for i in range(n)])


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def test_to_tensor_round_trip_and_range():
    clip = tiny_clips(1)[0]
    x = to_tensor(clip)
    assert x.shape == (3, 8, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert np.array_equal(to_uint8(x), clip)
    batch = tiny_clips(2)
    xb = to_tensor(batch)
    assert xb.shape == (2, 3, 8, 16, 16)
    assert np.array_equal(to_uint8(xb), batch)
    assert float(to_tensor(np.zeros((1, 2, 2, 1), np.uint8)).max()) == -1.0
    assert float(to_tensor(np.full((1, 2, 2, 1), 255, np.uint8)).min()) == 1.0
    with pytest.raises(UsageError):
        to_tensor(np.zeros((2, 2, 2, 1), np.float32))
    with pytest.raises(UsageError):
        to_tensor(np.zeros((2, 2, 1), np.uint8))


@pytest.mark.parametrize("kind", ["conv3d", "dit"])
def test_shapes_and_parameter_counts(kind):
    model = build_model(kind)
    n = count_parameters(model)
    assert 50_000 <= n <= 500_000, n
    x = torch.randn(2, 3, 8, 16, 16)
    assert model(x, torch.tensor([0.1, 0.9])).shape == x.shape
    assert model(x, 0.5).shape == x.shape  # a scalar level broadcasts
    odd = torch.randn(1, 3, 5, 10, 12)  # not a multiple of the DiT patch: padded and cropped back
    assert model(odd, torch.tensor([0.3])).shape == odd.shape
    with pytest.raises(UsageError):
        model(torch.randn(2, 1, 8, 16, 16), torch.tensor([0.1, 0.2]))
    with pytest.raises(UsageError):
        model(x, torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("kind", ["conv3d", "dit"])
def test_config_rebuilds_the_architecture(kind):
    model = build_model(kind, channels=1, width=24, depth=2)
    assert model.config["kind"] == kind and model.config["channels"] == 1
    twin = build_model(**model.config)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 4, 8, 8)
    s = torch.tensor([0.2, 0.7])
    assert torch.equal(model(x, s), twin(x, s))


def test_build_model_rejects_bad_arguments():
    with pytest.raises(UsageError):
        build_model("unet")
    with pytest.raises(UsageError):
        build_model("conv3d", bogus=1)
    with pytest.raises(UsageError):
        build_model("conv3d", width=0)
    with pytest.raises(UsageError):
        build_model("dit", width=30, heads=4)
    assert isinstance(build_model("conv3d"), Conv3dDenoiser) and isinstance(build_model("dit"), TinyDiT)


@pytest.mark.parametrize("kind", ["conv3d", "dit"])
def test_noise_level_changes_the_output(kind):
    model = build_model(kind).eval()
    x = torch.randn(1, 3, 8, 16, 16)
    with torch.no_grad():
        lo, hi, again = model(x, 0.1), model(x, 0.9), model(x, 0.1)
    assert torch.equal(lo, again)
    assert float((lo - hi).abs().mean()) > 1e-3


def test_noise_level_embedding():
    e = noise_level_embedding(torch.tensor([0.0, 0.5, 1.0]), 16)
    assert e.shape == (3, 16)
    assert torch.allclose(e[0], torch.cat([torch.ones(8), torch.zeros(8)]))  # cos(0) = 1, sin(0) = 0
    assert noise_level_embedding(torch.tensor([0.3]), 7).shape == (1, 7)
    # s is scaled by 1000 before the sinusoids: the first frequency is 1, so its phase is 1000 s
    assert torch.allclose(noise_level_embedding(torch.tensor([0.001]), 16)[0, 0], torch.cos(torch.tensor(1.0)))


def test_noisy_target_and_loss():
    x0 = torch.randn(3, 1, 2, 4, 4)
    eps = torch.randn(3, 1, 2, 4, 4)
    assert torch.equal(noisy(x0, 0.0, eps), x0)
    assert torch.equal(noisy(x0, 1.0, eps), eps)
    s = torch.tensor([0.0, 0.5, 1.0])
    xs = noisy(x0, s, eps)
    assert torch.allclose(xs[1], 0.5 * x0[1] + 0.5 * eps[1])
    assert torch.equal(flow_target(x0, eps), eps - x0)

    class Zero(torch.nn.Module):
        def forward(self, x, s):
            return torch.zeros_like(x)

    per = flow_loss(Zero(), x0, s, eps)
    assert per.shape == (3,)
    assert torch.allclose(per, (eps - x0).pow(2).flatten(1).mean(1))
    with pytest.raises(UsageError):
        noisy(x0, torch.tensor([0.1, 0.2]), eps)


def test_flow_training_loss_is_seeded_and_weighted():
    model = build_model("conv3d", channels=1, width=8, depth=1)
    x0 = torch.randn(4, 1, 2, 8, 8)
    s = torch.tensor([0.1, 0.3, 0.6, 0.9])
    a = flow_training_loss(model, x0, s, torch.Generator().manual_seed(3))
    b = flow_training_loss(model, x0, s, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, flow_loss(model, x0, s, eps).mean())
    w = torch.tensor([1.0, 0.0, 0.0, 0.0])
    weighted = flow_training_loss(model, x0, s, torch.Generator().manual_seed(3), weights=w)
    assert torch.allclose(weighted, flow_loss(model, x0, s, eps)[0])
    assert flow_training_loss(model, x0, None, torch.Generator().manual_seed(3)).ndim == 0


def test_euler_sampler_recovers_a_point_mass():
    """For data = one clip x*, the exact velocity is (x_s - x*) / s; Euler from s = 1 lands on x* exactly."""
    target = torch.rand(2, 1, 2, 4, 4) * 2 - 1

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, s):
            return (x - target) / s.reshape(-1, 1, 1, 1, 1)

    out = euler_sample(Oracle(), target.shape, steps=7, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-5)
    model = build_model("conv3d", channels=1, width=8, depth=1)
    a = euler_sample(model, (2, 1, 2, 8, 8), steps=3, generator=torch.Generator().manual_seed(1))
    b = euler_sample(model, (2, 1, 2, 8, 8), steps=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 1, 2, 8, 8) and torch.equal(a, b)
    with pytest.raises(UsageError):
        euler_sample(model, (1, 1, 2, 8, 8), steps=0)


def test_training_reduces_the_flow_loss():
    """120 AdamW steps on 32 fixed 16x16x8 clips clearly lower the loss on fixed (s, eps) draws."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    x = to_tensor(tiny_clips(32))
    model = build_model("conv3d", width=16, depth=2)
    g_eval = torch.Generator().manual_seed(123)
    s_eval = torch.rand(32, generator=g_eval)
    eps_eval = torch.randn(x.shape, generator=g_eval)

    def evaluate() -> float:
        with torch.no_grad():
            return float(flow_loss(model, x, s_eval, eps_eval).mean())

    before = evaluate()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(0, 32, (8,), generator=g)
        loss = flow_training_loss(model, x[idx], None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after < 0.7 * before, (before, after)
