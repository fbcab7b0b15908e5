"""prime's baselines: the fusion model without the prototype bank (its config overrides: zero fill,
mean imputation, modality dropout), and ridge-penalised Cox regression (numpy only) on concatenated
features, the linear baseline.

Ridge Cox:

Objective (minimised): -log PL(beta) + 0.5 * alpha * ||beta||^2, where log PL is the Breslow partial
log-likelihood SUMMED over events: sum_i e_i [eta_i - log sum_{j: T_j >= T_i} exp(eta_j)].

scikit-survival's ``CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow")`` minimises
(1/n) * [-log PL(beta) + 0.5 * alpha * ||beta||^2]: it divides BOTH the likelihood and the penalty by the
number of samples n, so its ``alpha`` is on the same scale as here (no rescaling by n) and the two give
the same coefficients (checked by the tests).
"""

from __future__ import annotations

import numpy as np

from affectkit.tasks.prime.metrics import _check_survival, breslow_survival

__all__ = ["FUSION_BASELINES", "RidgeCox", "cox_linear_predictor", "fit_ridge_cox"]

# The same fusion model as PRIME with the missing modalities filled another way, trained from scratch:
# config overrides by baseline (a single-modality model is the same with one modality kept).
FUSION_BASELINES: dict[str, list[str]] = {
    "zero-fill": ["model.fill=zero"],
    "mean-imputation": ["model.fill=mean"],
    "modality-dropout": ["model.fill=zero", "finetune.modality_dropout=0.3"],
}


class _BreslowTerms:
    """Loss, gradient and Hessian of the penalised Breslow partial likelihood (vectorised, O(n p^2))."""

    def __init__(self, X: np.ndarray, time: np.ndarray, event: np.ndarray, alpha: float):
        order = np.argsort(time, kind="stable")
        self.X, self.t, self.e = X[order], time[order], event[order]
        self.alpha = alpha
        self.event_times, self.d = np.unique(self.t[self.e], return_counts=True)
        # first sorted position with time >= u (the risk set of u is the suffix from there)
        self.start = np.searchsorted(self.t, self.event_times, side="left")
        # per sample: index of the last event time <= its own time (-1 if none)
        self.last = np.searchsorted(self.event_times, self.t, side="right") - 1
        self.sum_event_x = self.X[self.e].sum(axis=0)

    def loss(self, beta: np.ndarray) -> float:
        """-log PL(beta) + 0.5 alpha ||beta||^2."""
        eta = self.X @ beta
        m = eta.max()
        suffix = np.cumsum(np.exp(eta - m)[::-1])[::-1]
        log_risk = np.log(suffix[self.start]) + m
        return float(-(eta[self.e].sum() - np.dot(self.d, log_risk)) + 0.5 * self.alpha * beta @ beta)

    def derivatives(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient [p] and Hessian [p, p] of ``loss`` at beta."""
        eta = self.X @ beta
        w = np.exp(eta - eta.max())
        s = np.cumsum(w[::-1])[::-1][self.start]  # [G] risk-set sums
        sx = np.cumsum((w[:, None] * self.X)[::-1], axis=0)[::-1][self.start]  # [G, p]
        z = sx / s[:, None]  # risk-set means of x
        grad = -(self.sum_event_x - self.d @ z) + self.alpha * beta
        # sum_u d_u * (sum_{j in R_u} w_j x_j x_j^T) / s_u = X^T diag(w_j * C_j) X, C_j = sum_{u <= T_j} d_u / s_u
        c = np.concatenate(([0.0], np.cumsum(self.d / s)))[self.last + 1]
        hess = (self.X * (w * c)[:, None]).T @ self.X - (z * self.d[:, None]).T @ z
        hess[np.diag_indices_from(hess)] += self.alpha
        return grad, hess


def fit_ridge_cox(X, time, event, alpha: float, max_iter: int = 100, tol: float = 1e-9) -> np.ndarray:
    """Coefficients beta [p] of the ridge Cox model (Breslow ties), by Newton-Raphson with step halving.

    ``X`` [n, p] finite (standardise it first; ``RidgeCox`` does), ``time`` >= 0, ``event`` in {0, 1}
    with at least one event, ``alpha`` >= 0 (the penalty 0.5 * alpha * ||beta||^2 on the SUMMED partial
    likelihood = scikit-survival's scaling). Stops when the largest Newton step is below
    ``tol * (1 + max|beta|)``; raises ValueError on bad input or when no step decreases the loss.
    """
    x = np.asarray(X, dtype=np.float64)
    t, e = _check_survival(time, event)
    if x.ndim != 2 or x.shape[0] != t.size:
        raise ValueError(f"X must be [n, p] with n = {t.size}, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("X contains NaN or infinite values (impute first)")
    if not e.any():
        raise ValueError("the Cox model needs at least one event")
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    terms = _BreslowTerms(x, t, e, float(alpha))
    beta = np.zeros(x.shape[1])
    loss = terms.loss(beta)
    for _ in range(max_iter):
        grad, hess = terms.derivatives(beta)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        if not np.all(np.isfinite(step)):
            raise ValueError("the Newton step is not finite (try a larger alpha)")
        for _ in range(40):  # step halving until the loss does not increase
            candidate = beta - step
            new_loss = terms.loss(candidate)
            if np.isfinite(new_loss) and new_loss <= loss + 1e-12 * abs(loss):
                break
            step = step / 2.0
        else:
            raise ValueError("ridge Cox: no step decreases the loss (try a larger alpha)")
        beta, loss = candidate, new_loss
        if np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(beta))):
            break
    return beta


def cox_linear_predictor(X, beta) -> np.ndarray:
    """eta = X @ beta (the Cox risk: higher = earlier event)."""
    return np.asarray(X, dtype=np.float64) @ np.asarray(beta, dtype=np.float64)


class RidgeCox:
    """Ridge Cox model on raw features: standardises X with the fit data's mean/std (std 0 -> 1) and
    fills NaNs with the training means (i.e. 0 after standardising) before fitting or predicting."""

    def __init__(self, alpha: float = 1.0, max_iter: int = 100, tol: float = 1e-9):
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    def _prepare(self, X) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean_.size:
            raise ValueError(f"X must be [n, {self.mean_.size}], got shape {x.shape}")
        if np.any(np.isinf(x)):
            raise ValueError("X contains infinite values")
        z = (x - self.mean_) / self.scale_
        return np.where(np.isnan(z), 0.0, z)

    def fit(self, X, time, event) -> RidgeCox:
        """Fit on X [n, p] (NaN allowed: mean-imputed), time [n], event [n]; returns self."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {x.shape}")
        counts = np.sum(~np.isnan(x), axis=0)
        filled = np.where(np.isnan(x), 0.0, x)
        self.mean_ = np.divide(filled.sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
        centred = np.where(np.isnan(x), 0.0, x - self.mean_)
        var = np.divide((centred**2).sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
        std = np.sqrt(var)
        self.scale_ = np.where(std > 0, std, 1.0)
        z = self._prepare(x)
        self.coef_ = fit_ridge_cox(z, time, event, self.alpha, self.max_iter, self.tol)
        self.train_eta_ = z @ self.coef_
        self.train_time_, train_event = _check_survival(time, event)
        self.train_event_ = train_event.astype(np.float64)
        return self

    def predict(self, X) -> np.ndarray:
        """Risk (linear predictor) of each row: higher = earlier event."""
        return self._prepare(X) @ self.coef_

    def survival_function(self, X, times) -> np.ndarray:
        """Predicted S(t) [n, T] at ``times`` (Breslow baseline of the training data)."""
        return breslow_survival(self.train_eta_, self.train_time_, self.train_event_, self.predict(X), times)
