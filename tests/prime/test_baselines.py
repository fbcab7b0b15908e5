"""Ridge Cox regression against scikit-survival's CoxPHSurvivalAnalysis."""

from __future__ import annotations

import numpy as np
import pytest

from affectkit.tasks.prime.baselines import RidgeCox, cox_linear_predictor, fit_ridge_cox
from affectkit.tasks.prime.metrics import harrell_cindex


@pytest.fixture(scope="module")
def gbsg():
    sk = pytest.importorskip("sksurv.datasets")
    X, y = sk.load_gbsg2()
    x = X.select_dtypes("number").to_numpy(float)
    return x, y


@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_coefficients_match_sksurv(gbsg, alpha):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    x, y = gbsg
    z = (x - x.mean(0)) / x.std(0)
    ours = fit_ridge_cox(z, y["time"], y["cens"].astype(int), alpha)
    ref = CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow").fit(z, y).coef_
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_ties_and_unpenalised_fit_match_sksurv():
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 3))
    t = np.round(rng.exponential(np.exp(-z @ np.array([0.8, -0.5, 0.0]))), 1)  # many tied times
    e = (rng.random(120) < 0.7).astype(int)
    for alpha in (0.0, 1.0):
        ours = fit_ridge_cox(z, t, e, alpha)
        ref = (
            CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow")
            .fit(z, Surv.from_arrays(e.astype(bool), t))
            .coef_
        )
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_ridge_cox_class_standardises_and_imputes(gbsg):
    x, y = gbsg
    t, e = y["time"], y["cens"].astype(int)
    model = RidgeCox(alpha=1.0).fit(x, t, e)
    z = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(model.coef_, fit_ridge_cox(z, t, e, 1.0), atol=1e-10)
    np.testing.assert_allclose(model.predict(x), cox_linear_predictor(z, model.coef_), atol=1e-10)
    assert harrell_cindex(t, e, model.predict(x)) > 0.6
    # NaN -> training mean, i.e. contributes 0 to the standardised linear predictor
    row = x[:1].copy()
    row[0, 2] = np.nan
    expected = np.delete(z[0], 2) @ np.delete(model.coef_, 2)
    assert model.predict(row)[0] == pytest.approx(expected)
    # a constant column gets scale 1 and a zero coefficient direction
    xc = np.c_[x, np.full(len(x), 3.0)]
    mc = RidgeCox(alpha=1.0).fit(xc, t, e)
    assert mc.scale_[-1] == 1.0 and abs(mc.coef_[-1]) < 1e-12
    surv = model.survival_function(x[:5], [100.0, 1000.0])
    assert surv.shape == (5, 2) and np.all(surv[:, 1] <= surv[:, 0])


def test_fit_errors():
    z = np.zeros((4, 2))
    with pytest.raises(ValueError, match="at least one event"):
        fit_ridge_cox(z, [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        fit_ridge_cox(np.full((4, 2), np.nan), [1.0, 2.0, 3.0, 4.0], [1, 0, 1, 0], 1.0)
    with pytest.raises(ValueError, match="X must be"):
        fit_ridge_cox(np.zeros((3, 2)), [1.0, 2.0, 3.0, 4.0], [1, 0, 1, 0], 1.0)
