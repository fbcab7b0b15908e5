"""Seeded modality-availability masks: shapes, rates, stability and the >= 1 modality rule."""

from __future__ import annotations

import numpy as np
import pytest

from affectkit.core.errors import UsageError
from affectkit.tasks.prime import missingness as mi

N = 5000
IDS = [f"CASE-{i:05d}" for i in range(N)]


def _age(n: int = N, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(55.0, 10.0, n)


@pytest.mark.parametrize("name", mi.PATTERNS)
def test_every_row_keeps_a_modality(name):
    mask = mi.pattern_mask(name, IDS, 3, seed=1, covariate=_age())
    assert mask.shape == (N, 3) and mask.dtype == bool
    assert mask.any(axis=1).all()


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.7, 0.9])
def test_mcar_rate_matches_redraw_expectation(rate):
    mask = mi.mcar(N, 3, rate, np.random.default_rng(0))
    assert mask.any(axis=1).all()
    expected = mi.mcar_expected_rate([rate] * 3)
    assert np.all(expected <= rate)
    np.testing.assert_allclose(mi.realised_rate(mask), expected, atol=0.03)


def test_mcar_per_modality_rates():
    rates = [0.3, 0.4, 0.1]
    mask = mi.mcar(N, 3, 0.0, np.random.default_rng(1), per_modality=rates)
    np.testing.assert_allclose(mi.realised_rate(mask), mi.mcar_expected_rate(rates), atol=0.03)
    with pytest.raises(UsageError):
        mi.mcar(10, 3, 0.0, np.random.default_rng(1), per_modality=[0.1, 0.2])
    with pytest.raises(UsageError):
        mi.mcar(10, 2, 1.0, np.random.default_rng(1))


@pytest.mark.parametrize("name,nominal", [("mcar30", 0.3), ("mcar50", 0.5), ("mcar70", 0.7)])
def test_pattern_mask_mcar_rates(name, nominal):
    mask = mi.pattern_mask(name, IDS, 3, seed=0)
    np.testing.assert_allclose(mi.realised_rate(mask), mi.mcar_expected_rate([nominal] * 3), atol=0.03)


def test_site_patterns_fixed_and_cover_every_modality():
    pats = mi.site_patterns(3)
    assert pats[0] == (0, 1, 2) and len(pats) == 4 and len(set(pats)) == 4
    for M in (1, 2, 3, 4, 5):
        for n_sites in (1, 2, 4, 7):
            p = mi.site_patterns(M, n_sites)
            assert len(p) == n_sites and p[0] == tuple(range(M))
            assert all(len(s) >= 1 for s in p)
            assert set().union(*p) == set(range(M))
            assert p == mi.site_patterns(M, n_sites)


def test_site_blocks_stable_by_case_id():
    a = mi.site_blocks(IDS, 3, seed=0)
    assert np.array_equal(a, mi.site_blocks(IDS, 3, seed=0))
    # a case's row depends only on its own id: shuffled / sub-sampled ids give the same rows
    order = np.random.default_rng(0).permutation(N)[:700]
    b = mi.site_blocks([IDS[i] for i in order], 3, seed=0)
    assert np.array_equal(b, a[order])
    # the hash is hashlib-based, not Python's salted hash(): pinned values survive new processes
    pinned = {"BC-0001": 0, "BC-0002": 3, "BC-0003": 3, "GBSG-0001": 1, "GBSG-0686": 0, "CASE-00000": 1}
    assert {c: mi.site_of(c) for c in pinned} == pinned
    rows = {tuple(r) for r in a.astype(int).tolist()}
    assert len(rows) == 4 and (1, 1, 1) in rows
    # sites are roughly balanced
    sites = np.array([mi.site_of(c) for c in IDS])
    assert np.all(np.abs(np.bincount(sites, minlength=4) / N - 0.25) < 0.03)
    assert not np.array_equal(a, mi.site_blocks(IDS, 3, seed=1))


def test_no_complete_has_no_paired_row_and_all_pairs():
    mask = mi.no_complete(N, 3, np.random.default_rng(0))
    assert not mask.all(axis=1).any()
    assert (mask.sum(axis=1) == 2).all()
    rows, counts = np.unique(mask.astype(int), axis=0, return_counts=True)
    assert {tuple(r) for r in rows.tolist()} == {(1, 1, 0), (0, 1, 1), (1, 0, 1)}
    assert counts.max() - counts.min() <= 1
    with pytest.raises(UsageError):
        mi.no_complete(10, 1, np.random.default_rng(0))


def test_covariate_dependent_calibrated_and_monotone():
    age = _age()
    p = mi.missing_probability(age, 0.4, slope=2.0)
    assert abs(p.mean() - 0.4) < 1e-6
    order = np.argsort(age)
    assert np.all(np.diff(p[order]) >= 0)
    mask = mi.covariate_dependent(age, 3, 1, 0.4, np.random.default_rng(0))
    assert mask[:, [0, 2]].all()
    miss = ~mask[:, 1]
    assert abs(miss.mean() - 0.4) < 0.03
    low, high = age < np.quantile(age, 0.25), age > np.quantile(age, 0.75)
    assert miss[high].mean() > miss[low].mean() + 0.3
    for rate in (0.1, 0.7):
        assert abs(mi.missing_probability(age, rate).mean() - rate) < 1e-6
    # constant covariate: plain MCAR at the rate
    assert np.allclose(mi.missing_probability(np.ones(50), 0.25), 0.25)


def test_mnar_pattern_uses_covariate_on_modality_which():
    age = _age()
    mask = mi.pattern_mask("mnar", IDS, 3, seed=0, covariate=age, which=2)
    assert mask[:, :2].all()
    assert abs((~mask[:, 2]).mean() - mi.MNAR_RATE) < 0.03
    with pytest.raises(UsageError):
        mi.pattern_mask("mnar", IDS, 3, seed=0)


def test_unknown_pattern_lists_valid_names():
    with pytest.raises(UsageError) as exc:
        mi.pattern_mask("mcar40", IDS[:5], 3, seed=0)
    assert "mcar40" in exc.value.message
    assert all(name in (exc.value.hint or "") for name in mi.PATTERNS)


@pytest.mark.parametrize("name", mi.PATTERNS)
def test_patterns_deterministic(name):
    age = _age(300)
    ids = IDS[:300]
    a = mi.pattern_mask(name, ids, 3, seed=7, covariate=age)
    assert np.array_equal(a, mi.pattern_mask(name, ids, 3, seed=7, covariate=age))
    if name not in ("complete",):
        assert not np.array_equal(a, mi.pattern_mask(name, ids, 3, seed=8, covariate=age))


def test_complete_and_realised_rate():
    mask = mi.pattern_mask("complete", IDS[:10], 3, seed=0)
    assert mask.all()
    assert np.array_equal(mi.realised_rate(mask), np.zeros(3))
    m = np.array([[True, False], [True, True], [False, True], [True, False]])
    np.testing.assert_allclose(mi.realised_rate(m), [0.25, 0.5])


def test_all_subsets():
    assert mi.all_subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert len(mi.all_subsets(5)) == 31
    assert mi.all_subsets(1) == [(0,)]
