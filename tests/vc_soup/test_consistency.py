import math

import numpy as np
import pytest

from affectkit.tasks.vc_soup.method_consistency import keep_mask, score_gaps, value_consistency, zscore_pooled


def test_pooled_zscore_worked_example():
    zc, zr, mu, sigma = zscore_pooled(np.array([1.0, 3.0]), np.array([0.0, 2.0]))
    assert mu == pytest.approx(1.5)
    assert sigma == pytest.approx(1.29099, abs=1e-5)
    np.testing.assert_allclose(zc, [-0.3873, 1.1619], atol=1e-4)
    np.testing.assert_allclose(zr, [-1.1619, 0.3873], atol=1e-4)
    np.testing.assert_allclose(zc - zr, [0.7746, 0.7746], atol=1e-4)


def test_pooled_zscore_matches_pandas_ddof1():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    c, r = rng.normal(size=50), rng.normal(size=50)
    pooled = pd.Series(np.concatenate([c, r]))
    zc, zr, mu, sigma = zscore_pooled(c, r)
    assert sigma == pytest.approx(pooled.std())
    np.testing.assert_allclose(zc, (c - pooled.mean()) / (pooled.std() + 1e-12))


@pytest.mark.parametrize(
    "gap, expected",
    [((2, 1), 0.9487), ((1, -1), 0.0), ((2, -1), 0.3162), ((-1, -2), -0.9487), ((1, 1, -1), 0.3333), ((3, 3, 3), 1.0), ((0, 0), 0.0)],
)
def test_consistency_examples(gap, expected):
    assert value_consistency(np.array(gap, float))[0] == pytest.approx(expected, abs=1e-4)


def test_consistency_equals_reference_two_value_formula():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(100, 2))
    ref = (g[:, 0] + g[:, 1]) / (np.sqrt(g[:, 0] ** 2 + g[:, 1] ** 2) * math.sqrt(2) + 1e-12)
    np.testing.assert_allclose(value_consistency(g), ref)


def test_cost_model_flag_equals_negated_scores():
    rng = np.random.default_rng(2)
    rc, rr = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    flagged = score_gaps(rc, rr, cost=[False, True])
    neg_c, neg_r = rc.copy(), rr.copy()
    neg_c[:, 1] *= -1
    neg_r[:, 1] *= -1
    manual = score_gaps(neg_c, neg_r)
    np.testing.assert_allclose(flagged["consistency"], manual["consistency"])
    np.testing.assert_allclose(flagged["gaps"], manual["gaps"])
    # and the flip matters: without it the second gap changes sign
    plain = score_gaps(rc, rr)
    np.testing.assert_allclose(plain["gaps"][:, 1], -flagged["gaps"][:, 1])


def test_threshold_is_inclusive():
    c = np.array([0.5, 0.0, -0.1, 0.3])
    assert keep_mask(c, threshold=0.3).tolist() == [True, False, False, True]
    assert keep_mask(c, threshold=0.0).tolist() == [True, True, False, True]


def test_keep_ratio_ceil_and_stable_tiebreak():
    c = np.array([0.2, 0.9, 0.2, 0.2, -0.5])
    # ceil(0.5 * 5) = 3: 0.9, then the first two 0.2s in input order
    assert keep_mask(c, keep_ratio=0.5).tolist() == [True, True, True, False, False]
    assert keep_mask(c, keep_ratio=0.0).sum() == 0
    assert keep_mask(c, keep_ratio=1.0).all()
    with pytest.raises(ValueError):
        keep_mask(c)
