"""TQD timestep samplers: analytic densities (KS), exact base parity, diffusers orientation (spec 3.1, 6.3, 7.6)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import kstest

from affectkit.core.errors import UsageError
from affectkit.tasks.tqd.method_sampler import (
    BASE_MODES,
    TQD_MODES,
    TimestepSampler,
    base_s,
    base_u,
    cdf,
    density,
    flowmatch_timesteps,
    to_ddpm_timesteps,
    to_flowmatch_index,
    to_rectified_flow_t,
    tqd_timesteps,
    type_balanced_indices,
    type_codes,
)

N_KS = 20000
TYPES = ("golden", "motion", "quality", "low")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ks_p(sampler: TimestepSampler, draws: torch.Tensor, type=None, d=None) -> float:
    return kstest(draws.numpy().astype(np.float64), lambda x: sampler.cdf(type, x, d=d)).pvalue


def mixed_types(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [TYPES[i] for i in rng.integers(0, 4, n)]


# -- KS tests against the analytic cdf ---------------------------------------------------------


@pytest.mark.parametrize("mode,kw", [("uniform", {}), ("logit-normal", {}), ("logit-normal", {"mu0": 1.0}),
                                     ("logit-normal", {"mu0": -0.5, "logit_std": 0.7}), ("mode", {}),
                                     ("mode", {"mode_scale": 0.5})])
def test_base_densities_ks(mode, kw):
    sampler = TimestepSampler(mode=mode, **kw)
    s = sampler.sample(N_KS, gen(3))
    assert s.dtype == torch.float32 and s.shape == (N_KS,)
    assert ks_p(sampler, s) > 0.01


@pytest.mark.parametrize("p_skew", [1.0, 0.5])
@pytest.mark.parametrize("mode", ["tqd-categorical", "tqd-beta", "tqd-truncated"])
def test_tqd_types_ks(mode, p_skew):
    sampler = TimestepSampler(mode=mode, p_skew=p_skew)
    for i, t in enumerate(TYPES):
        s = sampler.sample([t] * N_KS, gen(10 + i))
        assert ks_p(sampler, s, t) > 0.01, (mode, p_skew, t)


def test_ks_has_power_and_types_are_mixed_per_sample():
    sampler = TimestepSampler(mode="tqd-categorical", p_skew=1.0)
    s = sampler.sample(["motion"] * N_KS, gen(0))
    assert ks_p(sampler, s, "golden") < 1e-6
    # a mixed batch: each type's subset follows its own density
    types = mixed_types(4 * N_KS)
    s = sampler.sample(types, gen(5))
    codes = type_codes(types)
    for c, t in enumerate(TYPES):
        assert ks_p(sampler, s[codes == c], t) > 0.01


def test_beta_and_truncated_with_other_bases():
    sampler = TimestepSampler(mode="tqd-beta", base="uniform", beta_motion=(4.0, 2.0), p_skew=0.7)
    assert ks_p(sampler, sampler.sample(["motion"] * N_KS, gen(1)), "motion") > 0.01
    assert ks_p(sampler, sampler.sample(["golden"] * N_KS, gen(2)), "golden") > 0.01
    sampler = TimestepSampler(mode="tqd-truncated", base="mode", tau_m=0.3, tau_v=0.5, p_skew=0.5)
    assert ks_p(sampler, sampler.sample(["quality"] * N_KS, gen(3)), "quality") > 0.01
    assert ks_p(sampler, sampler.sample(["low"] * N_KS, gen(4)), "low") > 0.01


@pytest.mark.parametrize("mode,base", [("uniform", None), ("logit-normal", None), ("mode", None),
                                       ("tqd-categorical", "logit_normal"), ("tqd-beta", "mode"),
                                       ("tqd-truncated", "uniform")])
def test_density_integrates_to_one_and_matches_cdf(mode, base):
    sampler = TimestepSampler(mode=mode, base=base, p_skew=0.6)
    xs = np.linspace(0.02, 0.98, 25)
    for t in TYPES:
        total = quad(lambda x, t=t: float(sampler.density(t, np.array([x]))[0]), 0, 1, limit=200,
                     points=[0.4, 0.6])[0]
        assert total == pytest.approx(1.0, abs=1e-4)
        h = 1e-5
        numeric = (sampler.cdf(t, xs + h) - sampler.cdf(t, xs - h)) / (2 * h)
        np.testing.assert_allclose(numeric, sampler.density(t, xs), rtol=1e-3, atol=1e-3)
    assert sampler.cdf("motion", np.array([0.0, 1.0])).tolist() == [0.0, 1.0]


def test_module_level_density_and_cdf():
    x = np.array([0.25, 0.5, 0.75])
    sampler = TimestepSampler(mode="tqd-beta", p_skew=1.0)
    np.testing.assert_allclose(density("tqd-beta", "motion", x, p_skew=1.0), sampler.density("motion", x))
    np.testing.assert_allclose(cdf("tqd-beta", "quality", x, p_skew=1.0), sampler.cdf("quality", x))
    from scipy.stats import beta

    np.testing.assert_allclose(density("tqd-beta", "motion", x), beta.pdf(x, 3, 1.5))


def test_spec_7_6_analytic_numbers():
    sampler = TimestepSampler(mode="tqd-categorical", p_skew=1.0)
    x = np.array([0.2, 0.5, 0.8])
    expect = {"motion": (0.0085, 0.8413, 0.3496), "golden": (0.0828, 0.5, 0.0828),
              "quality": (0.3496, 0.1587, 0.0085)}
    for t, (p02, p05, p08) in expect.items():
        c = sampler.cdf(t, x)
        np.testing.assert_allclose([c[0], 1 - c[1], 1 - c[2]], [p02, p05, p08], atol=1e-4)
    assert sampler.mus == {"golden": 0.0, "motion": 1.0, "quality": -1.0}
    # median = sigmoid(mu)
    assert sampler.cdf("motion", np.array([1 / (1 + math.exp(-1))]))[0] == pytest.approx(0.5)


# -- p_skew = 0 is the base, exactly -------------------------------------------------------------


@pytest.mark.parametrize("mode", TQD_MODES)
@pytest.mark.parametrize("base", ["uniform", "logit_normal", "mode"])
def test_p_skew_zero_equals_base_exactly(mode, base):
    n = 512
    types = mixed_types(n)
    rng = np.random.default_rng(0)
    motion, quality = rng.normal(size=n), rng.normal(size=n)
    kw = {"mu0": 0.3, "logit_std": 0.8}
    skew = TimestepSampler(mode=mode, base=base, p_skew=0.0, **kw)
    skew.fit_continuous(motion, quality)
    ref = TimestepSampler(mode=base.replace("_", "-"), **kw)
    g1, g2 = gen(42), gen(42)
    for _ in range(3):  # consecutive calls too: the generator is left where the base leaves it
        got = skew.sample(None if mode == "tqd-continuous" else types, g1, motion=motion, quality=quality)
        want = ref.sample(n, g2)
        assert torch.equal(got, want)
    direct = base_s(base, n, gen(42), mu0=0.3, logit_std=0.8).clamp(1e-5, 1 - 1e-5)
    assert torch.equal(skew.sample(types if mode != "tqd-continuous" else n, gen(42), motion=motion,
                                   quality=quality), direct)


def test_base_draws_come_first_for_any_p_skew():
    n = 1000
    types = mixed_types(n)
    base = TimestepSampler(mode="logit-normal").sample(n, gen(7))
    s = TimestepSampler(mode="tqd-categorical", p_skew=0.5).sample(types, gen(7))
    codes = type_codes(types)
    base_type = (codes == 0) | (codes == 3)
    assert torch.equal(s[base_type], base[base_type])  # golden / low keep the base draw itself
    changed = (s != base) & ~base_type
    assert 0.4 < changed.float().sum().item() / (~base_type).sum().item() < 0.6
    # the draws a sample gets do not depend on the other samples' types
    s2 = TimestepSampler(mode="tqd-categorical", p_skew=0.5).sample(["motion"] * n, gen(7))
    m = codes == 1
    assert torch.equal(s[m], s2[m])


# -- diffusers parity and orientation ------------------------------------------------------------

def need_diffusers() -> None:
    pytest.importorskip("diffusers", reason="diffusers (>= 0.30) is needed for the parity and scheduler tests")


@pytest.mark.parametrize("scheme,kw", [("uniform", {}), ("logit_normal", {"logit_mean": -1.0}),
                                       ("logit_normal", {"logit_mean": 0.0}),
                                       ("logit_normal", {"logit_mean": 1.0}), ("mode", {"mode_scale": 1.29})])
def test_base_u_equals_diffusers(scheme, kw):
    need_diffusers()
    from diffusers.training_utils import compute_density_for_timestep_sampling

    full = {"logit_mean": 0.0, "logit_std": 1.0, "mode_scale": 1.29, **kw}
    for seed in (0, 123):
        want = compute_density_for_timestep_sampling(scheme, 4096, generator=gen(seed), **full)
        got = base_u(scheme, 4096, gen(seed), **full)
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_from_diffusers_args_flips_the_mean_and_matches_trainer_indices():
    need_diffusers()
    from diffusers.training_utils import compute_density_for_timestep_sampling

    n, big = 4096, 1000
    for scheme, mean in (("uniform", 0.0), ("logit_normal", -1.0), ("mode", 0.0)):
        sampler = TimestepSampler.from_diffusers_args(scheme, logit_mean=mean, logit_std=1.0, mode_scale=1.29)
        assert sampler.mu0 == -mean
        u = compute_density_for_timestep_sampling(scheme, n, logit_mean=mean, logit_std=1.0, mode_scale=1.29,
                                                  generator=gen(9))
        s = sampler.sample(n, gen(9))
        assert torch.equal(s, (1 - u).clamp(1e-5, 1 - 1e-5))
        mismatch = (to_flowmatch_index(s, big) != (u * big).long()).float().mean().item()
        assert mismatch == 0.0 if scheme == "uniform" else mismatch < 1e-3
    tqd = TimestepSampler.from_diffusers_args("logit_normal", logit_mean=0.5, mode="tqd-beta", p_skew=0.5)
    assert tqd.base == "logit_normal" and tqd.mu0 == -0.5 and tqd.mode == "tqd-beta"


def _scheduler(shift: float = 1.0):
    need_diffusers()
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config({"num_train_timesteps": 1000, "shift": shift})


def test_orientation_motion_gets_larger_sigmas():
    sched = _scheduler(1.0)
    assert sched.timesteps[0] > sched.timesteps[-1]  # the pitfall: tables descend
    sampler = TimestepSampler(mode="tqd-categorical", p_skew=1.0)
    means = {}
    for i, t in enumerate(("motion", "golden", "quality")):
        s = sampler.sample([t] * N_KS, gen(20 + i))
        timesteps, sigmas = flowmatch_timesteps(s, sched)
        torch.testing.assert_close(timesteps / 1000, sigmas)
        assert torch.all(sigmas >= s - 1e-6) and torch.all(sigmas <= s + 1e-3 + 1e-6)
        means[t] = sigmas.mean().item()
    assert means["motion"] == pytest.approx(0.697, abs=0.01)
    assert means["golden"] == pytest.approx(0.500, abs=0.01)
    assert means["quality"] == pytest.approx(0.303, abs=0.01)


def test_shift_warps_sigmas_and_ddpm_is_ascending():
    s = TimestepSampler(mode="tqd-categorical").sample(mixed_types(2000), gen(4))
    _, sig1 = flowmatch_timesteps(s, _scheduler(1.0))
    t3, sig3 = flowmatch_timesteps(s, _scheduler(3.0))
    torch.testing.assert_close(sig3, 3 * sig1 / (1 + 2 * sig1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(t3, sig3 * 1000, rtol=1e-5, atol=1e-3)
    assert flowmatch_timesteps(torch.tensor([0.5]), _scheduler(3.0))[0].item() == pytest.approx(750.0)
    ordered = torch.sort(s).values
    ddpm = to_ddpm_timesteps(ordered, 1000)
    assert ddpm.dtype == torch.long and torch.all(ddpm[1:] >= ddpm[:-1])
    assert to_ddpm_timesteps(torch.tensor([1e-5, 0.5, 1 - 1e-5]), 1000).tolist() == [0, 500, 999]
    assert to_flowmatch_index(torch.tensor([1e-5, 0.5, 1 - 1e-5]), 1000).tolist() == [999, 500, 0]
    assert to_rectified_flow_t(s) is s


def test_three_line_integration_noise_share():
    sched = _scheduler(1.0)
    sampler = TimestepSampler(mode="tqd-categorical", base="logit_normal", p_skew=1.0)
    types = ["motion"] * 64 + ["golden"] * 64 + ["quality"] * 64
    timesteps, sigmas = tqd_timesteps(types, sched, sampler, gen(0))
    assert timesteps.shape == (192,) and timesteps.dtype == torch.float32
    # the trainer's next lines
    torch.manual_seed(0)
    x0, noise = torch.randn(192, 4096), torch.randn(192, 4096)
    sig = sigmas.view(-1, 1)
    noisy = (1.0 - sig) * x0 + sig * noise
    share = (noisy * noise).sum(1) / (noise * noise).sum(1)  # regression coefficient on the noise
    torch.testing.assert_close(share, sigmas, atol=0.06, rtol=0)
    s_again = sampler.sample(types, gen(0))
    assert torch.all((sigmas - s_again).abs() <= 1e-3 + 1e-6)
    m, g, q = share[:64].mean(), share[64:128].mean(), share[128:].mean()
    assert m > g + 0.1 and g > q + 0.1
    used = copy.deepcopy(sched)
    used.set_timesteps(20)
    with pytest.raises(UsageError):
        tqd_timesteps(types, used, sampler, gen(0))


# -- continuous mode -----------------------------------------------------------------------------


def test_continuous_mode():
    rng = np.random.default_rng(0)
    motion_pop, quality_pop = rng.normal(5, 2, 1000), rng.normal(0.5, 0.1, 1000)
    sampler = TimestepSampler(mode="tqd-continuous", delta=1.0, p_skew=1.0).fit_continuous(motion_pop, quality_pop)
    mm, ms = sampler.motion_stats
    qm, qs = sampler.quality_stats
    n = N_KS
    hi_m_lo_q = sampler.sample(None, gen(1), motion=[mm + 2 * ms] * n, quality=[qm - qs] * n)  # d = 3 -> 2
    lo_m_hi_q = sampler.sample(n, gen(1), motion=[mm - ms] * n, quality=[qm + qs] * n)  # d = -2
    assert hi_m_lo_q.mean() > lo_m_hi_q.mean() + 0.3
    # equal z-scores: exactly zero -> the base draws themselves; about equal -> the base density
    equal = sampler.sample(None, gen(1), motion=[mm] * n, quality=[qm] * n)
    base = TimestepSampler(mode="logit-normal").sample(n, gen(1))
    assert torch.equal(equal, base)
    assert lo_m_hi_q.mean() + 0.15 < base.mean() < hi_m_lo_q.mean() - 0.15
    near = sampler.sample(None, gen(2), motion=[mm + 0.5 * ms] * n, quality=[qm + 0.5 * qs] * n)
    assert ks_p(TimestepSampler(mode="logit-normal"), near) > 0.01
    # d = clip(3, -2, 2) = 2 -> mu = mu0 + delta exactly, and the draws follow that logit-normal
    assert ks_p(sampler, hi_m_lo_q, d=3.0) > 0.01
    assert ks_p(TimestepSampler(mode="tqd-categorical"), hi_m_lo_q, "motion") > 0.01
    mu = sampler.continuous_mu(rng.normal(5, 20, 500), rng.normal(0.5, 1.0, 500))
    assert torch.all((mu - sampler.mu0).abs() <= sampler.delta + 1e-12)
    half = sampler.continuous_mu([mm + ms], [qm])
    assert half.item() == pytest.approx(0.5)


def test_continuous_errors():
    sampler = TimestepSampler(mode="tqd-continuous")
    with pytest.raises(UsageError):
        sampler.sample(None, gen(0), motion=[1.0], quality=[2.0])  # not fitted
    with pytest.raises(UsageError):
        sampler.fit_continuous([1.0, 1.0], [0.0, 1.0])  # constant motion
    sampler.fit_continuous([0.0, 1.0], [0.0, 1.0])
    with pytest.raises(UsageError):
        sampler.sample(None, gen(0), motion=[float("nan")], quality=[0.0])
    with pytest.raises(UsageError):
        sampler.sample(3, gen(0), motion=[0.0, 1.0], quality=[0.0, 1.0])


# -- batches, types, errors ----------------------------------------------------------------------


def test_type_balanced_indices():
    types = ["motion"] * 900 + ["quality"] * 100  # heavily imbalanced, no golden data
    batches = type_balanced_indices(types, 16, gen(0))
    assert batches.shape == (1000 // 16, 16)
    codes = type_codes(types)
    for row in batches:
        assert (codes[row] == 1).sum() == 8 and (codes[row] == 2).sum() == 8
    # the minority is cycled through: no quality sample twice before all were used once
    q_used = batches.reshape(-1)[codes[batches.reshape(-1)] == 2]
    assert len(set(q_used[:96].tolist())) == 96 and set(q_used[:104].tolist()) == set(range(900, 1000))
    # three types present, batch 16 -> counts differ by at most one
    types3 = ["golden"] * 30 + ["motion"] * 300 + ["quality"] * 70
    b3 = type_balanced_indices(types3, 16, gen(1), num_batches=50)
    c3 = type_codes(types3)
    for row in b3:
        counts = torch.bincount(c3[row], minlength=3)[:3]
        assert counts.sum() == 16 and counts.max() - counts.min() <= 1
    assert torch.equal(b3, type_balanced_indices(types3, 16, gen(1), num_batches=50))
    with pytest.raises(UsageError):
        type_balanced_indices(types, 0, gen(0))


def test_type_codes_and_usage_errors():
    assert type_codes(["golden", "Motion", "V", "l", 2]).tolist() == [0, 1, 2, 3, 2]
    assert type_codes(torch.tensor([3, 0])).tolist() == [3, 0]
    assert type_codes(np.array([1, 2])).tolist() == [1, 2]
    for bad in (["gold"], [7], torch.tensor([0.5])):
        with pytest.raises(UsageError):
            type_codes(bad)
    with pytest.raises(UsageError):
        TimestepSampler(mode="tqd-gaussian")
    with pytest.raises(UsageError):
        TimestepSampler(mode="tqd-beta", p_skew=1.5)
    with pytest.raises(UsageError):
        TimestepSampler(mode="uniform", base="logit_normal")
    with pytest.raises(UsageError):
        TimestepSampler(mode="mode", mode_scale=2.0)
    with pytest.raises(UsageError):
        TimestepSampler(mode="tqd-categorical").sample(8, gen(0))  # types are required
    with pytest.raises(UsageError):
        base_u("cosine", 4)
    sampler = TimestepSampler(mode="tqd-truncated", p_skew=0.5)
    names = ["motion", "quality", "golden", "low"] * 8
    assert torch.equal(sampler.sample(names, gen(3)), sampler.sample(type_codes(names).int(), gen(3)))
    assert sampler.sample([], gen(3)).shape == (0,)
    for mode in BASE_MODES:
        assert TimestepSampler(mode=mode).sample(["motion", "golden"], gen(0)).shape == (2,)
