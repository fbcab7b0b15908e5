"""Survival metrics of the prime task (numpy only; lifelines and matplotlib inside ``km_plot`` only).

Conventions
- ``time`` >= 0 (any unit, days in the embedded benchmarks), ``event`` in {0, 1} (1 = the event was
  observed, 0 = right-censored), ``risk``: higher = earlier event (a Cox linear predictor, or
  ``risk_from_hazards`` of a discrete-time head).
- Harrell's C (``harrell_cindex``) is defined exactly as lifelines' ``concordance_index`` (called with
  ``-risk``) and scikit-survival's ``concordance_index_censored``; Uno's C, the Brier score and the
  integrated Brier score equal ``sksurv.metrics.concordance_index_ipcw``, ``brier_score`` and
  ``integrated_brier_score`` (scikit-survival 0.28; checked by the tests).
- Invalid inputs (length mismatch, NaN, negative times, events outside {0, 1}) raise ``ValueError``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = [
    "assign_bins",
    "breslow_survival",
    "brier_scores",
    "concordance_counts",
    "default_ibs_times",
    "discrete_survival",
    "fold_summary",
    "harrell_cindex",
    "horizon_auroc",
    "horizon_labels",
    "integrated_brier_score",
    "km_plot",
    "nadeau_bengio",
    "quantile_bins",
    "risk_from_hazards",
    "uno_cindex",
]


# --------------------------------------------------------------------------- input checks


def _as_1d(x, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array (ValueError naming ``name`` otherwise)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_survival(time, event, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validated (time float64, event bool) of one sample: same length, finite time >= 0, event in {0,1}."""
    t = _as_1d(time, f"{prefix}time")
    e = _as_1d(event, f"{prefix}event")
    if t.shape != e.shape:
        raise ValueError(f"{prefix}time and {prefix}event differ in length ({t.size} vs {e.size})")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{prefix}time contains NaN or infinite values")
    if np.any(t < 0):
        raise ValueError(f"{prefix}time must be >= 0 (minimum {t.min()})")
    if not np.all((e == 0) | (e == 1)):
        raise ValueError(f"{prefix}event must contain only 0 and 1 (or NaN-free booleans)")
    return t, e.astype(bool)


def _check_risk(risk, n: int, name: str = "risk") -> np.ndarray:
    """Validated finite 1-D risk of length ``n``."""
    r = _as_1d(risk, name)
    if r.size != n:
        raise ValueError(f"{name} has {r.size} values but time has {n}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return r


# --------------------------------------------------------------------------- Harrell's C


def _count_below(perm: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """For each query k: #{t < q[k] : perm[t] < s[k]}, ``perm`` a permutation of 0..n-1, 0 <= q, s <= n.

    A wavelet-matrix rank count: one stable 0/1 partition and one cumulative sum per bit of n, so
    O((n + m) log n) for m queries, vectorised over the queries.
    """
    n = perm.size
    seq = perm.astype(np.int64, copy=True)
    q = q.astype(np.int64)
    s = s.astype(np.int64)
    lo = np.zeros_like(q)
    hi = q.copy()
    count = np.zeros_like(q)
    zeros = np.empty(n + 1, dtype=np.int64)
    zeros[0] = 0
    for b in range(max(int(n).bit_length(), 1) - 1, -1, -1):
        bit = (seq >> b) & 1
        np.cumsum(1 - bit, out=zeros[1:])
        nz = zeros[n]
        zl, zr = zeros[lo], zeros[hi]
        take = ((s >> b) & 1).astype(bool)
        # where s has a 1 here, elements of the range with a 0 are below s: count them, follow the 1s
        count += np.where(take, zr - zl, 0)
        lo = np.where(take, nz + lo - zl, zl)
        hi = np.where(take, nz + hi - zr, zr)
        seq = np.concatenate((seq[bit == 0], seq[bit == 1]))
    return count


def _pair_counts(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tied_tol: float):
    """Per event (anchor) i: (index into the inputs, concordant, tied risk, comparable) counts.

    Comparable partners of event i: every j with T_j > T_i, and every censored j with T_j == T_i.
    Sorting by (time ascending, events before censored within a time) makes that set the suffix of
    the sorted order starting at the first censored sample of i's time group. Counting partners whose
    risk lies below r_i - tol (concordant) or at most r_i + tol in a suffix is a 2-D dominance count,
    done with ``_count_below`` on the risk ranks: O(n log n) overall.
    """
    n = time.size
    order = np.lexsort((~event, time))  # time ascending, events first within a tie
    t, e, r = time[order], event[order], risk[order]
    group_start = np.searchsorted(t, t, side="left")
    group_end = np.searchsorted(t, t, side="right")
    cum_events = np.concatenate(([0], np.cumsum(e)))
    suffix_start = group_start + (cum_events[group_end] - cum_events[group_start])

    by_risk = np.argsort(r, kind="stable")  # rank -> sorted position; ranks are the keys
    sorted_r = r[by_risk]
    anchors = np.flatnonzero(e)
    ra = r[anchors]
    below = np.searchsorted(sorted_r, ra - tied_tol, side="left")  # #risks < r_i - tol
    upto = np.searchsorted(sorted_r, ra + tied_tol, side="right")  # #risks <= r_i + tol
    s = suffix_start[anchors]
    counts = _count_below(by_risk, np.concatenate((below, upto)), np.concatenate((s, s)))
    m = anchors.size
    concordant = below - counts[:m]
    lower_or_tied = upto - counts[m:]
    comparable = n - s
    return order[anchors], concordant, lower_or_tied - concordant, comparable


def concordance_counts(time, event, risk, tied_tol: float = 1e-8) -> tuple[int, int, int, int]:
    """Harrell's pair counts (concordant, discordant, tied_risk, comparable).

    A pair (i, j) is comparable when i had the event and T_j > T_i, or T_j == T_i and j is censored
    (two events at the same time are not comparable; a censored subject never anchors a pair). It is
    concordant when risk_i > risk_j, tied when |risk_i - risk_j| <= ``tied_tol``, discordant otherwise.
    Time O(n log n), memory O(n).
    """
    t, e = _check_survival(time, event)
    r = _check_risk(risk, t.size)
    if not tied_tol >= 0:
        raise ValueError(f"tied_tol must be >= 0, got {tied_tol}")
    _, conc, tied, comp = _pair_counts(t, e, r, float(tied_tol))
    concordant, tied_risk, comparable = int(conc.sum()), int(tied.sum()), int(comp.sum())
    return concordant, comparable - concordant - tied_risk, tied_risk, comparable


def harrell_cindex(time, event, risk, tied_tol: float = 1e-8) -> float:
    """Harrell's C = (concordant + 0.5 * tied_risk) / comparable (pairs as in ``concordance_counts``).

    Equals ``lifelines.utils.concordance_index(time, -risk, event)`` (when no two different risks lie
    within ``tied_tol``; lifelines ties on exact equality) and
    ``sksurv.metrics.concordance_index_censored(event, time, risk)[0]``. O(n log n).
    Raises ValueError when there is no comparable pair.
    """
    concordant, _, tied_risk, comparable = concordance_counts(time, event, risk, tied_tol)
    if comparable == 0:
        raise ValueError("no comparable pairs: the C-index needs an event followed by a longer time")
    return (concordant + 0.5 * tied_risk) / comparable


# --------------------------------------------------------------------------- censoring distribution


class _CensoringKM:
    """Kaplan-Meier estimate G of the censoring survival function, as scikit-survival fits it.

    At each distinct time u: G drops by the factor 1 - c_u / (n_u - d_u), with n_u the number at risk
    (time >= u), d_u events and c_u censorings at u: events at a tied time count as happening before
    the censorings. G is right-continuous (G(u) includes the drop at u). Beyond the largest training
    time G is undefined (ValueError) unless it has already reached 0.
    """

    def __init__(self, train_time, train_event):
        t, e = _check_survival(train_time, train_event, "train_")
        if t.size == 0:
            raise ValueError("train_time is empty")
        uniq, inverse = np.unique(t, return_inverse=True)
        n_at = t.size - np.concatenate(([0], np.cumsum(np.bincount(inverse))[:-1]))
        d = np.bincount(inverse, weights=e.astype(np.float64))
        c = np.bincount(inverse, weights=(~e).astype(np.float64))
        ratio = np.divide(c, n_at - d, out=np.zeros(uniq.size), where=c != 0)
        self.times = uniq
        self.prob = np.cumprod(1.0 - ratio)

    def __call__(self, t: np.ndarray, what: str = "time") -> np.ndarray:
        """G(t) at each value of ``t`` (right-continuous step function)."""
        t = np.asarray(t, dtype=np.float64)
        beyond = t > self.times[-1]
        if beyond.any() and self.prob[-1] > 0:
            raise ValueError(
                f"{what} {t[beyond].max():g} lies beyond the largest training time {self.times[-1]:g}, "
                "where the censoring distribution is unknown"
            )
        idx = np.searchsorted(self.times, t, side="right") - 1
        out = np.where(idx >= 0, self.prob[np.clip(idx, 0, None)], 1.0)
        out[beyond] = 0.0
        return out


# --------------------------------------------------------------------------- Uno's C


def uno_cindex(
    train_time, train_event, time, event, risk, tau: float | None = None, tied_tol: float = 1e-8
) -> float:
    """Uno's IPCW C-index, equal to ``sksurv.metrics.concordance_index_ipcw`` (scikit-survival 0.28).

    Pairs as in ``concordance_counts``; each pair anchored at event i is weighted by G(T_i)^-2, G the
    Kaplan-Meier estimate of the censoring distribution fitted on the TRAINING data and evaluated at
    T_i itself (right-continuous, as sksurv does, not at T_i-). With ``tau``, only events with
    T_i < tau anchor pairs (partners may lie beyond tau). Raises ValueError when an anchor's time lies
    beyond the training follow-up, when G(T_i) == 0, or when no comparable pair has positive weight.
    Time O((n + n_train) log(n + n_train)).
    """
    km = _CensoringKM(train_time, train_event)
    t, e = _check_survival(time, event)
    r = _check_risk(risk, t.size)
    idx, conc, tied, comp = _pair_counts(t, e, r, float(tied_tol))
    if idx.size == 0:
        raise ValueError("no comparable pairs: the test data have no event")
    anchor_time = t[idx]
    inside = anchor_time < tau if tau is not None else np.ones(idx.size, dtype=bool)
    g = np.ones(idx.size)
    if inside.any():
        g[inside] = km(anchor_time[inside], "test event time")
        if np.any(g[inside] == 0):
            raise ValueError("the censoring survival function is zero at one or more test event times")
    w = np.where(inside, 1.0 / g, 0.0) ** 2
    denominator = float(np.sum(w * comp))
    if denominator == 0:
        raise ValueError("no comparable pairs with positive weight (check tau)")
    return float(np.sum(w * (conc + 0.5 * tied))) / denominator


# --------------------------------------------------------------------------- Brier score


def _check_grid(time: np.ndarray, surv, times) -> tuple[np.ndarray, np.ndarray]:
    """Validated (surv [n, T], times [T]) for the Brier score (times strictly increasing, inside the
    test follow-up [min time, max time[ as scikit-survival requires)."""
    grid = _as_1d(np.atleast_1d(times), "times")
    if grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("times must be a non-empty array of finite values")
    if grid.size > 1 and not np.all(np.diff(grid) > 0):
        raise ValueError("times must be strictly increasing")
    if grid.max() >= time.max() or grid.min() < time.min():
        raise ValueError(f"all times must be within the test follow-up [{time.min():g}; {time.max():g}[")
    s = np.asarray(surv, dtype=np.float64)
    if s.ndim == 1 and grid.size == 1:
        s = s.reshape(-1, 1)
    if s.shape != (time.size, grid.size):
        raise ValueError(f"surv must have shape ({time.size}, {grid.size}), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("surv contains NaN or infinite values")
    return s, grid


def brier_scores(train_time, train_event, time, event, surv, times) -> np.ndarray:
    """IPCW Brier score at each of ``times``, equal to ``sksurv.metrics.brier_score(...)[1]``.

    BS(t) = mean_i [ S_i(t)^2 * 1(T_i <= t, event_i) / G(T_i) + (1 - S_i(t))^2 * 1(T_i > t) / G(t) ],
    G the censoring Kaplan-Meier fitted on the training data (terms where G == 0 count 0, as in sksurv).
    ``surv`` [n, T]: predicted S(t) of each test patient at ``times`` (strictly increasing, inside
    [min test time, max test time[). Every test time must lie within the training follow-up.
    """
    km = _CensoringKM(train_time, train_event)
    t, e = _check_survival(time, event)
    s, grid = _check_grid(t, surv, times)
    g_t = km(grid, "time point")
    g_y = km(t, "test time")
    with np.errstate(divide="ignore"):
        inv_t = np.where(g_t > 0, 1.0 / g_t, 0.0)
        inv_y = np.where(g_y > 0, 1.0 / g_y, 0.0)
    case = (t[:, None] <= grid[None, :]) & e[:, None]
    control = t[:, None] > grid[None, :]
    terms = np.square(s) * case * inv_y[:, None] + np.square(1.0 - s) * control * inv_t[None, :]
    return terms.mean(axis=0)


def integrated_brier_score(train_time, train_event, time, event, surv, times) -> float:
    """Integrated Brier score: trapezoid of ``brier_scores`` over ``times`` / (times[-1] - times[0]),
    equal to ``sksurv.metrics.integrated_brier_score``. Needs at least two time points."""
    grid = _as_1d(np.atleast_1d(times), "times")
    if grid.size < 2:
        raise ValueError("the integrated Brier score needs at least two time points")
    bs = brier_scores(train_time, train_event, time, event, surv, grid)
    area = float(np.sum(np.diff(grid) * (bs[1:] + bs[:-1]) / 2.0))
    return area / float(grid[-1] - grid[0])


def default_ibs_times(train_time, time, n: int = 50) -> np.ndarray:
    """An evaluation grid of ``n`` evenly spaced times for the (integrated) Brier score.

    It spans the 10th to the 90th percentile of the test times, cut to lie strictly below the largest
    test time (scikit-survival's requirement) and strictly below the largest training time. The
    censoring Kaplan-Meier of the training data is positive everywhere below its largest time (it can
    only reach 0 at the last time, when that one is censored), so every grid point has G(t) > 0
    whatever the training events are. Raises ValueError when that range is empty.
    """
    train_t = _as_1d(train_time, "train_time")
    test_t = _as_1d(time, "time")
    if train_t.size == 0 or test_t.size == 0:
        raise ValueError("default_ibs_times needs non-empty train and test times")
    if not (np.all(np.isfinite(train_t)) and np.all(np.isfinite(test_t))):
        raise ValueError("times contain NaN or infinite values")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    lo, hi = np.percentile(test_t, [10.0, 90.0])
    cap = min(test_t.max(), train_t.max())
    hi = min(hi, np.nextafter(cap, -np.inf))
    if not hi > lo:
        raise ValueError(f"no time range for the Brier score: [{lo:g}, {hi:g}] is empty")
    return np.linspace(lo, hi, int(n))


# --------------------------------------------------------------------------- horizon labels and AUROC


def horizon_labels(time, event, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels at a fixed horizon (e.g. 3 years = 1095.75 days) with censoring exclusions.

    label 1: event observed at or before the horizon (time <= horizon, event 1); label 0: followed
    beyond the horizon (time > horizon, whatever the event); excluded (keep False, label -1): censored
    at or before the horizon (status at the horizon unknown), or time/event NaN (label unknown).
    Returns (labels int8 [n], keep bool [n]).
    """
    t = _as_1d(time, "time")
    e = _as_1d(event, "event")
    if t.shape != e.shape:
        raise ValueError(f"time and event differ in length ({t.size} vs {e.size})")
    known = np.isfinite(t) & np.isfinite(e)
    if np.any(t[known] < 0):
        raise ValueError("time must be >= 0")
    if not np.all((e[known] == 0) | (e[known] == 1)):
        raise ValueError("event must contain only 0, 1 or NaN")
    if not math.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon must be a positive number, got {horizon}")
    with np.errstate(invalid="ignore"):
        positive = known & (e == 1) & (t <= horizon)
        negative = known & (t > horizon)
    labels = np.full(t.size, -1, dtype=np.int8)
    labels[positive] = 1
    labels[negative] = 0
    return labels, positive | negative


def horizon_auroc(time, event, risk, horizon: float) -> float:
    """AUROC of ``risk`` for the ``horizon_labels`` on the kept patients (sklearn ``roc_auc_score``);
    NaN when the kept patients hold only one class (or none)."""
    from sklearn.metrics import roc_auc_score

    labels, keep = horizon_labels(time, event, horizon)
    r = _as_1d(risk, "risk")
    if r.size != labels.size:
        raise ValueError(f"risk has {r.size} values but time has {labels.size}")
    if not np.all(np.isfinite(r[keep])):
        raise ValueError("risk contains NaN or infinite values for labelled patients")
    y = labels[keep]
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, r[keep]))


# --------------------------------------------------------------------------- discrete-time survival


def quantile_bins(train_time, train_event, n_bins: int = 4, eps: float = 1e-6) -> np.ndarray:
    """Bin edges [n_bins + 1] of discrete-time survival heads (the MCAT/SurvPath rule).

    Inner edges are the quantiles (linear interpolation, as ``pandas.qcut``) of the UNCENSORED training
    times; the outer edges are then set to the minimum - eps and maximum + eps of ALL training times.
    Rows with a NaN time or event are ignored. Repeated quantiles are kept (the bin between them is
    empty) where ``pandas.qcut`` would refuse.
    """
    t = _as_1d(train_time, "train_time")
    e = _as_1d(train_event, "train_event")
    if t.shape != e.shape:
        raise ValueError(f"train_time and train_event differ in length ({t.size} vs {e.size})")
    ok = np.isfinite(t) & np.isfinite(e)
    t, e = t[ok], e[ok]
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    uncensored = t[e == 1]
    if uncensored.size == 0:
        raise ValueError("quantile bins need at least one uncensored training time")
    edges = np.quantile(uncensored, np.linspace(0.0, 1.0, int(n_bins) + 1))
    edges[0] = t.min() - eps
    edges[-1] = t.max() + eps
    return edges


def assign_bins(time, edges) -> np.ndarray:
    """Bin index of each time: bin k holds [edges[k], edges[k+1]) (left-closed, right-open); times
    outside the edges are clipped into the first / last bin. Raises ValueError on NaN times."""
    t = _as_1d(time, "time")
    ed = _as_1d(edges, "edges")
    if ed.size < 2:
        raise ValueError("edges need at least two values")
    if not np.all(np.isfinite(t)):
        raise ValueError("time contains NaN or infinite values; drop unlabelled patients first")
    idx = np.searchsorted(ed, t, side="right") - 1
    return np.clip(idx, 0, ed.size - 2).astype(np.int64)


def discrete_survival(hazards, edges, times) -> np.ndarray:
    """Step survival curves [n, T] of a discrete-time head at ``times``.

    ``hazards`` [n, K]: per-bin hazards h_k (probability of the event in bin k given survival to it),
    ``edges`` [K + 1]. Convention: an event in bin k is placed at the bin's upper edge, so
    S(t) = prod over the bins k whose upper edge edges[k+1] <= t of (1 - h_k); S = 1 before edges[1],
    and S = prod of all (1 - h_k) from the last edge on.
    """
    h = np.asarray(hazards, dtype=np.float64)
    ed = _as_1d(edges, "edges")
    grid = _as_1d(np.atleast_1d(times), "times")
    if h.ndim != 2 or h.shape[1] + 1 != ed.size:
        raise ValueError(f"hazards must be [n, {ed.size - 1}] for {ed.size} edges, got {h.shape}")
    surv = np.concatenate((np.ones((h.shape[0], 1)), np.cumprod(1.0 - h, axis=1)), axis=1)
    done = np.searchsorted(ed[1:], grid, side="right")  # number of bins whose upper edge <= t
    return surv[:, done]


def risk_from_hazards(hazards) -> np.ndarray:
    """Risk of a discrete-time head: -sum_k prod_{l <= k} (1 - h_l) (MCAT/SurvPath), higher = earlier."""
    h = np.asarray(hazards, dtype=np.float64)
    return -np.cumprod(1.0 - h, axis=-1).sum(axis=-1)


def breslow_survival(train_eta, train_time, train_event, eta, times) -> np.ndarray:
    """Cox survival curves S_i(t) = exp(-H0(t) * exp(eta_i)) [n, T], H0 the Breslow baseline.

    H0(t) = sum over distinct training event times u <= t of d_u / sum_{j: T_j >= u} exp(eta_j), with
    d_u the number of events at u (the estimator of ``sksurv``'s ``BreslowEstimator``). The linear
    predictors are shifted by a common constant for numerical safety (the curves do not change).
    """
    t, e = _check_survival(train_time, train_event, "train_")
    tr_eta = _check_risk(train_eta, t.size, "train_eta")
    te_eta = _as_1d(eta, "eta")
    if not np.all(np.isfinite(te_eta)):
        raise ValueError("eta contains NaN or infinite values")
    grid = _as_1d(np.atleast_1d(times), "times")
    shift = tr_eta.max()
    order = np.argsort(t, kind="stable")
    ts, ws = t[order], np.exp(tr_eta[order] - shift)
    at_risk = np.cumsum(ws[::-1])[::-1]  # sum over j >= position
    event_times, d = np.unique(t[e], return_counts=True)
    denom = at_risk[np.searchsorted(ts, event_times, side="left")]
    cum_hazard = np.cumsum(d / denom)
    padded = np.concatenate(([0.0], cum_hazard))  # H0 = 0 before the first event time
    h0 = padded[np.searchsorted(event_times, grid, side="right")]
    return np.exp(-np.exp(te_eta - shift)[:, None] * h0[None, :])


# --------------------------------------------------------------------------- fold statistics


def nadeau_bengio(deltas, n_train: int, n_test: int, level: float = 0.95) -> dict:
    """Corrected resampled t-test (Nadeau & Bengio 2003; repeated k-fold form of Bouckaert & Frank 2004).

    ``deltas``: the J per-fold (per split) differences of a metric between two methods. The variance of
    the mean is corrected for the overlap of training sets: var = (1/J + n_test/n_train) * s^2, s^2 the
    sample variance (ddof=1) of the deltas; t = mean / sqrt(var), df = J - 1, two-sided p; the
    confidence interval is mean -/+ t_{(1+level)/2, df} * se. Returns dict(mean, se, t, df, p, ci_low,
    ci_high). With zero variance: t = +-inf and p = 0 (or t = nan, p = 1 when the mean is 0 too).
    """
    from scipy import stats

    d = _as_1d(deltas, "deltas")
    if d.size < 2:
        raise ValueError("the corrected t-test needs at least two deltas")
    if not np.all(np.isfinite(d)):
        raise ValueError("deltas contain NaN or infinite values")
    if n_train <= 0 or n_test <= 0:
        raise ValueError("n_train and n_test must be positive")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    j = d.size
    mean = float(d.mean())
    se = math.sqrt((1.0 / j + n_test / n_train) * float(d.var(ddof=1)))
    df = j - 1
    if se > 0:
        t = mean / se
        p = float(2.0 * stats.t.sf(abs(t), df))
    elif mean != 0:
        t, p = math.copysign(math.inf, mean), 0.0
    else:
        t, p = float("nan"), 1.0
    half = float(stats.t.ppf((1.0 + level) / 2.0, df)) * se
    return {
        "mean": mean,
        "se": se,
        "t": float(t),
        "df": df,
        "p": p,
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def fold_summary(values) -> tuple[float, float]:
    """(mean, sample std with ddof=1) of the finite values (NaN skipped); std 0 for one value,
    (nan, nan) for none."""
    v = _as_1d(values, "values")
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


# --------------------------------------------------------------------------- Kaplan-Meier plot


def _risk_groups(risk: np.ndarray, groups: int) -> tuple[np.ndarray, list[str]]:
    """Group index per patient from risk quantiles (risk at a cut point goes to the lower group)."""
    cuts = np.quantile(risk, np.arange(1, groups) / groups)
    idx = np.searchsorted(cuts, risk, side="left")
    if groups == 2:
        names = ["low risk", "high risk"]
    elif groups == 3:
        names = ["low risk", "intermediate risk", "high risk"]
    else:
        names = [f"risk Q{k + 1}" for k in range(groups)]
    return idx, names


def km_plot(path, time, event, risk, groups: int = 2, title: str = "") -> dict:
    """Kaplan-Meier curves of risk groups, with the log-rank p value, written atomically as a PNG.

    Patients are split by risk quantiles (2 = median split into low/high risk, 3 = tertiles, ...);
    the p value is lifelines' ``logrank_test`` (2 groups) or ``multivariate_logrank_test`` (more),
    over the non-empty groups (NaN when fewer than two are non-empty). Returns
    dict(logrank_p, groups=[{"name", "n", "events"}, ...]) for all groups, empty ones included.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test, multivariate_logrank_test
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from affectkit.core.runs import atomic_save

    t, e = _check_survival(time, event)
    r = _check_risk(risk, t.size)
    if groups < 2:
        raise ValueError(f"groups must be >= 2, got {groups}")
    idx, names = _risk_groups(r, int(groups))
    present = [k for k in range(groups) if np.any(idx == k)]
    if len(present) < 2:
        p = float("nan")
    elif len(present) == 2:
        a, b = (idx == present[0]), (idx == present[1])
        p = float(logrank_test(t[a], t[b], event_observed_A=e[a], event_observed_B=e[b]).p_value)
    else:
        sel = np.isin(idx, present)
        p = float(multivariate_logrank_test(t[sel], idx[sel], e[sel]).p_value)

    fig = Figure(figsize=(6.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    summary = []
    for k, name in enumerate(names):
        sel = idx == k
        summary.append({"name": name, "n": int(sel.sum()), "events": int(e[sel].sum())})
        if sel.any():
            kmf = KaplanMeierFitter(label=f"{name} (n={int(sel.sum())})")
            kmf.fit(t[sel], e[sel])
            kmf.plot_survival_function(ax=ax, ci_show=False, show_censors=True)
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0.0, 1.05)
    p_text = "n/a" if math.isnan(p) else f"{p:.3g}"
    ax.set_title(f"{title}\nlog-rank p = {p_text}" if title else f"log-rank p = {p_text}")
    atomic_save(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return {"logrank_p": p, "groups": summary}
