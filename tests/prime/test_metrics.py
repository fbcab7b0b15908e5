"""Survival metrics of the prime task against lifelines, scikit-survival and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from affectkit.tasks.prime import metrics as M
from affectkit.tasks.prime.baselines import fit_ridge_cox

HORIZON = 3 * 365.25


def brute_cindex(time, event, risk):
    """O(n^2) reference of Harrell's C (exact risk equality = tie)."""
    time, event, risk = np.asarray(time, float), np.asarray(event, bool), np.asarray(risk, float)
    num = den = 0.0
    for i in np.flatnonzero(event):
        mask = (time > time[i]) | ((time == time[i]) & ~event)
        mask[i] = False
        num += np.sum(risk[mask] < risk[i]) + 0.5 * np.sum(risk[mask] == risk[i])
        den += mask.sum()
    return num / den


def _datasets():
    """(name, time, event, numeric feature matrix) of the bundled survival data sets."""
    sk = pytest.importorskip("sksurv.datasets")
    ll = pytest.importorskip("lifelines.datasets")
    out = []
    X, y = sk.load_gbsg2()
    out.append(("gbsg2", y["time"], y["cens"], X.select_dtypes("number").to_numpy(float)))
    X, y = sk.load_breast_cancer()
    out.append(("breast_cancer", y["t.tdm"], y["e.tdm"], X.select_dtypes("number").to_numpy(float)))
    X, y = sk.load_whas500()
    out.append(("whas500", y["lenfol"], y["fstat"], X.select_dtypes("number").to_numpy(float)))
    d = ll.load_lymph_node()
    feats = d[["age", "size", "grade", "nodes", "prog_recp", "estrg_recp"]].to_numpy(float)
    out.append(("lymph_death", d["survtime"].to_numpy(float), d["censdead"].to_numpy(), feats))
    out.append(("lymph_recurrence", d["rectime"].to_numpy(float), d["censrec"].to_numpy(), feats))
    return out


def _tied_risks(X, seed):
    """Risk scores with many exact ties: a random projection rounded to 1 decimal (distinct values
    differ by >= ~0.1, far above sksurv's 1e-8 tie tolerance), plus a 5-level integer risk."""
    rng = np.random.default_rng(seed)
    z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    return [np.round(z @ rng.normal(size=z.shape[1]), 1), rng.integers(0, 5, size=len(z)).astype(float)]


def test_harrell_matches_lifelines_sksurv_and_brute_force():
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    for k, (name, t, e, X) in enumerate(_datasets()):
        e = np.asarray(e).astype(int)
        for risk in _tied_risks(X, k):
            ours = M.harrell_cindex(t, e, risk)
            assert ours == pytest.approx(concordance_index(t, -risk, e), abs=1e-9), name
            ref = concordance_index_censored(e.astype(bool), t, risk)
            assert ours == pytest.approx(ref[0], abs=1e-9), name
            assert ours == pytest.approx(brute_cindex(t, e, risk), abs=1e-9), name
            conc, disc, tied, comp = M.concordance_counts(t, e, risk)
            assert (conc, disc, tied) == tuple(int(v) for v in ref[1:4]), name
            assert conc + disc + tied == comp


def test_harrell_random_against_brute_force():
    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 31, 64, 65, 200):
        t = rng.integers(0, 8, size=n).astype(float)  # many tied times
        e = rng.integers(0, 2, size=n)
        e[0] = 1
        t[1] = t[0] + 1
        r = rng.integers(0, 4, size=n).astype(float)
        assert M.harrell_cindex(t, e, r) == pytest.approx(brute_cindex(t, e, r), abs=1e-12)


def test_harrell_hand_cases():
    # events at the same time are not comparable; the event at 1 vs censored at 1 is
    t, e = [1.0, 1.0, 1.0, 2.0], [1, 1, 0, 1]
    # pairs: (0,2), (0,3), (1,2), (1,3) -> 4 comparable
    risk = [3.0, 1.0, 2.0, 0.0]
    # (0,2) conc, (0,3) conc, (1,2) disc, (1,3) conc
    assert M.concordance_counts(t, e, risk) == (3, 1, 0, 4)
    assert M.harrell_cindex(t, e, risk) == pytest.approx(0.75)
    # all risks tied -> 0.5
    assert M.harrell_cindex(t, e, [1.0, 1.0, 1.0, 1.0]) == pytest.approx(0.5)
    # tolerance: risks within 1e-8 are ties, beyond are not
    assert M.harrell_cindex([1.0, 2.0], [1, 0], [1.0 + 5e-9, 1.0]) == pytest.approx(0.5)
    assert M.harrell_cindex([1.0, 2.0], [1, 0], [1.0 + 1e-6, 1.0]) == pytest.approx(1.0)
    assert M.harrell_cindex([1.0, 2.0], [1, 0], [1.0, 2.0]) == pytest.approx(0.0)


def test_harrell_errors():
    with pytest.raises(ValueError, match="no comparable pairs"):
        M.harrell_cindex([1.0, 2.0, 3.0], [0, 0, 0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no comparable pairs"):
        M.harrell_cindex([1.0, 1.0], [1, 1], [1.0, 2.0])  # tied events only
    with pytest.raises(ValueError, match="differ in length"):
        M.harrell_cindex([1.0, 2.0], [1], [1.0, 2.0])
    with pytest.raises(ValueError, match="risk has"):
        M.harrell_cindex([1.0, 2.0], [1, 0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        M.harrell_cindex([1.0, 2.0], [1, 0], [np.nan, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        M.harrell_cindex([-1.0, 2.0], [1, 0], [1.0, 2.0])
    with pytest.raises(ValueError, match="0 and 1"):
        M.harrell_cindex([1.0, 2.0], [2, 0], [1.0, 2.0])


def test_harrell_scales_to_200k_patients():
    """Documents the O(n log n) algorithm: an O(n^2) loop would take minutes here (not timed)."""
    rng = np.random.default_rng(0)
    n = 200_000
    t = rng.exponential(size=n)
    e = (rng.random(n) < 0.6).astype(int)
    r = rng.normal(size=n)
    assert 0.49 < M.harrell_cindex(t, e, r) < 0.51
    assert 0.55 < M.harrell_cindex(t, e, -t + rng.normal(scale=2.0, size=n)) < 1.0


@pytest.fixture(scope="module")
def gbsg_split():
    """GBSG2 halves (the longest follow-up in the train half) and ridge-Cox linear predictors."""
    sk = pytest.importorskip("sksurv.datasets")
    X, y = sk.load_gbsg2()
    x = X.select_dtypes("number").to_numpy(float)
    x = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(1)
    idx = rng.permutation(len(y))
    tr, te = idx[: len(y) // 2], idx[len(y) // 2 :]
    longest = int(np.argmax(y["time"]))
    if longest in te:
        te, tr = te[te != longest], np.r_[tr, longest]
    beta = fit_ridge_cox(x[tr], y["time"][tr], y["cens"][tr].astype(int), 1.0)
    return y[tr], y[te], x[tr] @ beta, x[te] @ beta


def test_uno_matches_sksurv(gbsg_split):
    from sksurv.metrics import concordance_index_ipcw

    ytr, yte, _, eta = gbsg_split
    args = (ytr["time"], ytr["cens"].astype(int), yte["time"], yte["cens"].astype(int))
    for risk in (eta, np.round(eta, 1)):
        for tau in (None, 1500.0, 800.0):
            ref = concordance_index_ipcw(ytr, yte, risk, tau=tau)[0]
            assert M.uno_cindex(*args, risk, tau=tau) == pytest.approx(ref, abs=1e-9)


def test_uno_edge_cases():
    # all training subjects have the event: G == 1, Uno's C == Harrell's C
    t = np.array([1.0, 2.0, 3.0, 4.0])
    e = np.array([1, 0, 1, 0])
    r = np.array([4.0, 3.0, 1.0, 2.0])
    assert M.uno_cindex([1.0, 5.0], [1, 1], t, e, r) == pytest.approx(M.harrell_cindex(t, e, r))
    with pytest.raises(ValueError, match="beyond the largest training time"):
        M.uno_cindex([1.0, 2.0], [0, 1], t, e, r)
    # the censoring KM reaches 0 at 2 (last training subject censored): later events get no weight
    with pytest.raises(ValueError, match="zero"):
        M.uno_cindex([1.0, 2.0], [1, 0], t, e, r)
    with pytest.raises(ValueError, match="positive weight"):
        M.uno_cindex([1.0, 5.0], [1, 0], t, e, r, tau=0.5)


def test_brier_and_ibs_match_sksurv(gbsg_split):
    from sksurv.metrics import brier_score, integrated_brier_score

    ytr, yte, eta_tr, eta_te = gbsg_split
    tr = (ytr["time"], ytr["cens"].astype(int))
    te = (yte["time"], yte["cens"].astype(int))
    grid = M.default_ibs_times(ytr["time"], yte["time"])
    assert grid.size == 50 and grid[0] >= yte["time"].min() and grid[-1] < yte["time"].max()
    surv = M.breslow_survival(eta_tr, *tr, eta_te, grid)
    _, ref = brier_score(ytr, yte, surv, grid)
    np.testing.assert_allclose(M.brier_scores(*tr, *te, surv, grid), ref, rtol=0, atol=1e-9)
    ibs = M.integrated_brier_score(*tr, *te, surv, grid)
    assert ibs == pytest.approx(integrated_brier_score(ytr, yte, surv, grid), abs=1e-9)
    # a handful of arbitrary points inside the test follow-up
    pts = np.array([200.0, 365.0, 730.0, 1095.0, 1500.0])
    surv = M.breslow_survival(eta_tr, *tr, eta_te, pts)
    np.testing.assert_allclose(
        M.brier_scores(*tr, *te, surv, pts), brier_score(ytr, yte, surv, pts)[1], atol=1e-9
    )
    with pytest.raises(ValueError, match="follow-up"):
        M.brier_scores(*tr, *te, surv[:, :1], [yte["time"].max()])
    with pytest.raises(ValueError, match="increasing"):
        M.brier_scores(*tr, *te, surv[:, ::-1], pts[::-1])
    with pytest.raises(ValueError, match="two time points"):
        M.integrated_brier_score(*tr, *te, surv[:, :1], pts[:1])


def test_breslow_survival_matches_sksurv_coxph(gbsg_split):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    sk = pytest.importorskip("sksurv.datasets")
    X, y = sk.load_gbsg2()
    x = X.select_dtypes("number").to_numpy(float)
    x = (x - x.mean(0)) / x.std(0)
    model = CoxPHSurvivalAnalysis(alpha=1.0, ties="breslow").fit(x, y)
    grid = np.array([0.0, 100.0, 500.0, 1000.0, 2000.0])
    ref = np.array([f(grid) for f in model.predict_survival_function(x[:20])])
    ours = M.breslow_survival(x @ model.coef_, y["time"], y["cens"].astype(int), x[:20] @ model.coef_, grid)
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_horizon_labels_hand_cases():
    t = [100.0, 200.0, 200.0, 300.0, 50.0, np.nan, 10.0]
    e = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, np.nan]
    labels, keep = M.horizon_labels(t, e, 200.0)
    # event before, event AT the horizon (positive), censored AT the horizon (excluded),
    # followed beyond (negative), censored before (excluded), unknown time, unknown event
    assert keep.tolist() == [True, True, False, True, False, False, False]
    assert labels[keep].tolist() == [1, 1, 0]
    assert labels.dtype == np.int8 and np.all(labels[~keep] == -1)


def test_horizon_labels_lymph_node_counts():
    ll = pytest.importorskip("lifelines.datasets")
    d = ll.load_lymph_node()
    for time_col, event_col, expected in (
        ("survtime", "censdead", (107, 422, 157)),
        ("rectime", "censrec", (224, 331, 131)),
    ):
        labels, keep = M.horizon_labels(d[time_col], d[event_col], HORIZON)
        assert (int((labels == 1).sum()), int((labels == 0).sum()), int((~keep).sum())) == expected


def test_horizon_auroc():
    from sklearn.metrics import roc_auc_score

    t = np.array([100.0, 200.0, 300.0, 400.0, 50.0])
    e = np.array([1, 1, 0, 1, 0])
    r = np.array([0.9, 0.2, 0.5, 0.1, 5.0])
    # kept: 0 (pos), 1 (pos), 2 (neg), 3 (neg); 4 excluded
    assert M.horizon_auroc(t, e, r, 250.0) == pytest.approx(roc_auc_score([1, 1, 0, 0], r[:4]))
    assert np.isnan(M.horizon_auroc(t, e, r, 1000.0))  # only positives / exclusions


def test_quantile_bins_and_assign():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 9.0])
    e = np.array([1, 1, 1, 1, 1, 0, 0])
    edges = M.quantile_bins(t, e, n_bins=4, eps=1e-6)
    np.testing.assert_allclose(edges, [0.5 - 1e-6, 2.0, 3.0, 4.0, 9.0 + 1e-6])
    bins = M.assign_bins([0.0, 0.5, 1.99, 2.0, 3.5, 4.0, 9.0, 100.0], edges)
    assert bins.tolist() == [0, 0, 0, 1, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="uncensored"):
        M.quantile_bins(t, np.zeros_like(e))


def test_quantile_bins_match_pandas_qcut():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    t = rng.exponential(100.0, size=300)
    e = (rng.random(300) < 0.4).astype(int)
    _, ref = pd.qcut(t[e == 1], q=4, retbins=True, labels=False)
    ref[0], ref[-1] = t.min() - 1e-6, t.max() + 1e-6
    edges = M.quantile_bins(t, e)
    np.testing.assert_allclose(edges, ref, rtol=0, atol=1e-12)
    labels = pd.cut(t, bins=edges, labels=False, right=False, include_lowest=True)
    assert M.assign_bins(t, edges).tolist() == np.asarray(labels).tolist()


def test_discrete_survival_and_risk():
    h = np.array([[0.5, 0.5, 0.5], [0.0, 0.0, 1.0]])
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    s = M.discrete_survival(h, edges, [0.5, 1.0, 1.5, 2.0, 3.0, 10.0])
    np.testing.assert_allclose(s[0], [1.0, 0.5, 0.5, 0.25, 0.125, 0.125])
    np.testing.assert_allclose(s[1], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(M.risk_from_hazards(h), [-(0.5 + 0.25 + 0.125), -(1.0 + 1.0 + 0.0)])


def test_nadeau_bengio_hand_computation():
    d = np.array([0.02, 0.05, -0.01, 0.03, 0.04])
    res = M.nadeau_bengio(d, n_train=400, n_test=100, level=0.9)
    var = (1 / 5 + 100 / 400) * np.var(d, ddof=1)
    t = d.mean() / np.sqrt(var)
    assert res["df"] == 4
    assert res["mean"] == pytest.approx(d.mean())
    assert res["se"] == pytest.approx(np.sqrt(var))
    assert res["t"] == pytest.approx(t)
    assert res["p"] == pytest.approx(2 * stats.t.sf(abs(t), 4))
    half = stats.t.ppf(0.95, 4) * np.sqrt(var)
    assert res["ci_low"] == pytest.approx(d.mean() - half)
    assert res["ci_high"] == pytest.approx(d.mean() + half)
    with pytest.raises(ValueError):
        M.nadeau_bengio([0.1], 10, 2)


def test_fold_summary():
    assert M.fold_summary([1.0, 2.0, 3.0, np.nan]) == pytest.approx((2.0, 1.0))
    assert M.fold_summary([0.7]) == (0.7, 0.0)
    mean, sd = M.fold_summary([np.nan])
    assert np.isnan(mean) and np.isnan(sd)


def test_km_plot_writes_png_with_lifelines_p(tmp_path):
    ll = pytest.importorskip("lifelines.datasets")
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    d = ll.load_lymph_node()
    t, e = d["rectime"].to_numpy(float), d["censrec"].to_numpy()
    risk = d["nodes"].to_numpy(float) + 0.01 * d["size"].to_numpy(float)
    path = tmp_path / "plots" / "km.png"
    path.parent.mkdir()
    res = M.km_plot(path, t, e, risk, groups=2, title="GBSG recurrence")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["km.png"]  # no temporary file left
    high = risk > np.median(risk)
    ref = logrank_test(t[~high], t[high], event_observed_A=e[~high], event_observed_B=e[high]).p_value
    assert res["logrank_p"] == pytest.approx(ref, rel=1e-12)
    assert [g["name"] for g in res["groups"]] == ["low risk", "high risk"]
    assert sum(g["n"] for g in res["groups"]) == len(t)
    assert sum(g["events"] for g in res["groups"]) == int(e.sum())
    res3 = M.km_plot(tmp_path / "km3.png", t, e, risk, groups=3)
    cuts = np.quantile(risk, [1 / 3, 2 / 3])
    grp = np.searchsorted(cuts, risk, side="left")
    assert res3["logrank_p"] == pytest.approx(multivariate_logrank_test(t, grp, e).p_value, rel=1e-12)
    assert len(res3["groups"]) == 3
