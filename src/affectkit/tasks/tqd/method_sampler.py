"""TQD timestep samplers: per-sample noise levels skewed by data type (spec 3.1, 6.3, 7.6).

ONE internal variable: the noise level ``s`` in (0, 1), 1 = pure noise, x_s = (1 - s) x0 + s eps.
Motion-rich clips (M) are pushed to larger s (coarse layout and motion form there), high-visual-
quality clips (V) to smaller s (texture and detail); golden (G) and low (L) clips keep the base.

Two conventions meet here and must never be mixed up:

- diffusers' ``u`` (``compute_density_for_timestep_sampling``): an INDEX-space variable. The flow-
  matching trainers use ``index = floor(u * N)`` into ``FlowMatchEulerDiscreteScheduler.timesteps``,
  which DESCENDS ([1000, ..., 1]), so a LARGER u means LESS noise. ``base_u`` returns this u.
- our ``s = 1 - u`` (computed in float32). A logit-normal mean ``mu`` in OUR convention means
  s = sigmoid(N(mu, std)), so mu > 0 is noisier; a diffusers ``logit_mean=m`` is our ``mu0 = -m``
  (``TimestepSampler.from_diffusers_args`` does this conversion). Everything except ``base_u`` speaks
  in s. The converters go back to trainer units: flow-matching index ``floor((1 - s) N)``, DDPM
  integer ``round(s (N - 1))`` (ascending with noise), rectified flow ``t = s``.

Histograms, ``density`` and ``cdf`` describe s BEFORE any scheduler shift: the sigma a flow-matching
model sees is the scheduler's (shift-warped) sigma at that index, sigma' = shift sigma / (1 + (shift
- 1) sigma); TQD's skew composes with (is applied before) that warp.

Draw order of ``TimestepSampler.sample`` (what makes ``p_skew = 0`` EXACT): (1) the base density is
drawn for ALL n samples first, with the very calls of ``base_u``; (2) if the mode is a base mode or
``p_skew == 0``, the result is returned at once and the generator is left exactly where the base
sampler leaves it; (3) otherwise n Bernoulli uniforms (only when p_skew < 1) and then n skew uniforms
(float64) are drawn for every sample whatever its type, and each eligible sample whose Bernoulli
succeeded takes its type's inverse CDF at its skew uniform. The number of draws thus depends only on
(mode, p_skew, n), never on the mix of types, and the first n draws are always the base draws.

Usage in a diffusers flow-matching trainer (SD3 / Flux / Wan LoRA scripts). Replace

    u = compute_density_for_timestep_sampling(weighting_scheme=..., batch_size=bsz, logit_mean=..., ...)
    indices = (u * noise_scheduler_copy.config.num_train_timesteps).long()
    timesteps = noise_scheduler_copy.timesteps[indices].to(device=model_input.device)

by these three lines (``sampler`` is built once before the loop, ``batch["type"]`` holds the types):

    sampler = TimestepSampler(mode="tqd-categorical", base="logit_normal", p_skew=0.5)
    timesteps, sigmas = tqd_timesteps(batch["type"], noise_scheduler_copy, sampler, generator)
    timesteps = timesteps.to(device=model_input.device)

then keep the script's ``sigmas = get_sigmas(timesteps, ...)`` (or use the returned sigmas), the noisy
input ``(1 - sigmas) * model_input + sigmas * noise`` and the target ``noise - model_input``. With
``p_skew=0`` the timesteps equal the unmodified script's, except in about 1e-5 of logit-normal / mode
draws where the float32 rounding of 1 - (1 - u) moves u across an index boundary (one index off).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from affectkit.core.errors import UsageError

BASE_SCHEMES = ("uniform", "logit_normal", "mode")
BASE_MODES = ("uniform", "logit-normal", "mode")
TQD_MODES = ("tqd-categorical", "tqd-beta", "tqd-truncated", "tqd-continuous")
MODES = BASE_MODES + TQD_MODES

TYPE_CODES = {"golden": 0, "motion": 1, "quality": 2, "low": 3}
TYPE_NAMES = {v: k for k, v in TYPE_CODES.items()}
_TYPE_ALIASES = {"g": 0, "m": 1, "v": 2, "l": 3}
GOLDEN, MOTION, QUALITY, LOW = 0, 1, 2, 3

EPS = 1e-5
MODE_SCALE_MAX = 1.0 / (math.pi / 2.0 - 1.0)  # mode sampling is monotone only for scale in (-1, 1.7519)


# ---------------------------------------------------------------------------------------------
# base densities (diffusers index space u)
# ---------------------------------------------------------------------------------------------


def _scheme(name: str) -> str:
    """Normalise a base-scheme name ("logit-normal" -> "logit_normal"); UsageError when unknown."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in BASE_SCHEMES:
        raise UsageError(f"unknown base timestep scheme {name!r}", hint=f"use one of {', '.join(BASE_SCHEMES)}")
    return key


def base_u(
    scheme: str,
    n: int,
    generator: torch.Generator | None = None,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """diffusers' u in (0, 1) (INDEX space: larger u = less noise), float32, shape (n,).

    Same calls, same order and dtype as ``diffusers.training_utils.compute_density_for_timestep_sampling``
    (0.42.1), so the same generator state gives bit-identical u. ``logit_mean`` is in diffusers'
    convention (the noise level is 1 - u, so logit_mean = -1 is NOISIER). Pure torch.
    """
    scheme = _scheme(scheme)
    if device is None:
        device = generator.device if generator is not None else "cpu"
    size = (int(n),)
    if scheme == "logit_normal":
        u = torch.normal(mean=float(logit_mean), std=float(logit_std), size=size, device=device,
                         generator=generator)
        u = torch.nn.functional.sigmoid(u)
    elif scheme == "mode":
        u = torch.rand(size=size, device=device, generator=generator)
        u = 1 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    else:
        u = torch.rand(size=size, device=device, generator=generator)
    return u


def base_s(
    scheme: str,
    n: int,
    generator: torch.Generator | None = None,
    mu0: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Base noise levels s = 1 - u (OUR convention; ``mu0`` > 0 noisier), unclamped float32."""
    return 1 - base_u(scheme, n, generator, logit_mean=-float(mu0), logit_std=logit_std,
                      mode_scale=mode_scale, device=device)


# ---------------------------------------------------------------------------------------------
# types
# ---------------------------------------------------------------------------------------------


def type_codes(types: Any) -> torch.Tensor:
    """Int64 codes of the data types: golden 0, motion 1, quality 2, low 3.

    Accepts a list / array / Series of names ("golden", "motion", "quality", "low", or the spec's
    letters G, M, V, L; case-insensitive) or of ints, or an integer tensor.
    """
    if isinstance(types, torch.Tensor):
        if types.dtype.is_floating_point or types.dtype == torch.bool:
            raise UsageError("type codes must be integers (golden 0, motion 1, quality 2, low 3)")
        codes = types.reshape(-1).long()
    elif isinstance(types, np.ndarray) and np.issubdtype(types.dtype, np.integer):
        codes = torch.as_tensor(types.reshape(-1), dtype=torch.long)
    else:
        if isinstance(types, (str, bytes)):
            types = [types]
        out = []
        for t in list(types):
            if isinstance(t, str):
                key = t.strip().lower()
                code = TYPE_CODES.get(key, _TYPE_ALIASES.get(key))
                if code is None:
                    raise UsageError(f"unknown data type {t!r}", hint="use golden, motion, quality or low")
                out.append(code)
            elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                out.append(int(t))
            else:
                raise UsageError(f"unknown data type {t!r}", hint="use golden, motion, quality or low (or 0-3)")
        codes = torch.tensor(out, dtype=torch.long)
    if codes.numel() and (codes.min() < 0 or codes.max() > 3):
        raise UsageError("type codes must be in 0..3 (golden 0, motion 1, quality 2, low 3)")
    return codes


def _type_code(t: Any) -> int:
    """One type (name or code) as its int code."""
    return int(type_codes([t])[0])


# ---------------------------------------------------------------------------------------------
# analytic pieces (numpy, float64), all in OUR noise-level convention
# ---------------------------------------------------------------------------------------------


def _logit_normal_pdf(x: np.ndarray, mu: float, std: float) -> np.ndarray:
    """pdf of s = sigmoid(N(mu, std)) on (0, 1)."""
    out = np.zeros_like(x)
    ok = (x > 0) & (x < 1)
    xo = x[ok]
    z = (np.log(xo) - np.log1p(-xo) - mu) / std
    out[ok] = np.exp(-0.5 * z * z) / (std * math.sqrt(2 * math.pi) * xo * (1 - xo))
    return out


def _logit_normal_cdf(x: np.ndarray, mu: float, std: float) -> np.ndarray:
    """cdf of s = sigmoid(N(mu, std))."""
    from scipy.special import ndtr

    out = np.where(x >= 1, 1.0, 0.0)
    ok = (x > 0) & (x < 1)
    xo = x[ok]
    out[ok] = ndtr((np.log(xo) - np.log1p(-xo) - mu) / std)
    return out


def _mode_g(u0: np.ndarray, scale: float) -> np.ndarray:
    """s as a function of diffusers' uniform u0 in mode sampling: s = 1 - f(u0)."""
    return u0 + scale * (np.cos(np.pi * u0 / 2) ** 2 - 1 + u0)


def _mode_inverse(x: np.ndarray, scale: float) -> np.ndarray:
    """u0 with g(u0) = x by vectorised bisection (g is increasing for a valid scale)."""
    lo = np.zeros_like(x)
    hi = np.ones_like(x)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = _mode_g(mid, scale) < x
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _check_mode_scale(scale: float) -> None:
    """UsageError unless mode sampling is a monotone map of (0, 1) onto itself."""
    if not (-1.0 < scale < MODE_SCALE_MAX):
        raise UsageError(f"mode_scale {scale} makes mode sampling non-monotone",
                         hint=f"use a value in (-1, {MODE_SCALE_MAX:.4f}); SD3 uses 1.29")


def _base_pdf(x: np.ndarray, scheme: str, mu0: float, std: float, scale: float) -> np.ndarray:
    """pdf of the base noise level s = 1 - u."""
    inside = (x > 0) & (x < 1)
    if scheme == "uniform":
        return inside.astype(float)
    if scheme == "logit_normal":
        return _logit_normal_pdf(x, mu0, std)
    _check_mode_scale(scale)
    u0 = _mode_inverse(np.clip(x, 0, 1), scale)
    slope = 1 + scale * (1 - (np.pi / 2) * np.sin(np.pi * u0))
    return np.where(inside, 1.0 / slope, 0.0)


def _base_cdf(x: np.ndarray, scheme: str, mu0: float, std: float, scale: float) -> np.ndarray:
    """cdf of the base noise level s = 1 - u."""
    if scheme == "uniform":
        return np.clip(x, 0.0, 1.0)
    if scheme == "logit_normal":
        return _logit_normal_cdf(x, mu0, std)
    _check_mode_scale(scale)
    return np.where(x <= 0, 0.0, np.where(x >= 1, 1.0, _mode_inverse(np.clip(x, 0.0, 1.0), scale)))


# ---------------------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------------------


@dataclass
class TimestepSampler:
    """Per-sample noise levels s in (0, 1) (1 = pure noise) for base or TQD timestep sampling.

    Modes:
      - "uniform", "logit-normal", "mode": the base density alone (``base`` follows the mode).
      - "tqd-categorical": motion s ~ LogitNormal(mu0 + delta, logit_std), quality LogitNormal(mu0 -
        delta, logit_std), golden (mu_golden = mu0) and low draw from the base, which is exactly
        LogitNormal(mu0, logit_std) with the default logit-normal base.
      - "tqd-beta": motion Beta(*beta_motion) (default (3, 1.5), mean 0.667), quality
        Beta(*beta_quality) (default (1.5, 3)), golden and low base.
      - "tqd-truncated": motion U(tau_m, 1), quality U(0, tau_v), golden and low base.
      - "tqd-continuous": per-sample motion m and quality q scores, d = clip(z(m) - z(q), -clip,
        clip), mu_i = mu0 + (delta / clip) d_i, s ~ LogitNormal(mu_i, logit_std); a sample with d = 0
        takes the base draw itself. z uses ``motion_stats`` / ``quality_stats`` = (mean, std), given
        here or set by ``fit_continuous``.
    Each eligible sample takes its type's density with probability ``p_skew``, else the base.
    ``mu0`` and all means are in OUR convention (mu > 0 noisier); see the module docstring.
    """

    mode: str = "logit-normal"
    base: str | None = None
    mu0: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    delta: float = 1.0
    p_skew: float = 1.0
    beta_motion: tuple[float, float] = (3.0, 1.5)
    beta_quality: tuple[float, float] = (1.5, 3.0)
    tau_m: float = 0.4
    tau_v: float = 0.6
    clip: float = 2.0
    motion_stats: tuple[float, float] | None = None
    quality_stats: tuple[float, float] | None = None
    eps: float = field(default=EPS, repr=False)

    def __post_init__(self) -> None:
        """Validate the configuration; resolve ``base`` (base modes: the mode; TQD: logit_normal)."""
        mode = str(self.mode).strip().lower()
        if mode == "logit_normal":
            mode = "logit-normal"
        if mode not in MODES:
            raise UsageError(f"unknown timestep sampler mode {self.mode!r}", hint=f"use one of {', '.join(MODES)}")
        self.mode = mode
        if mode in BASE_MODES:
            implied = _scheme(mode)
            if self.base is not None and _scheme(self.base) != implied:
                raise UsageError(f"mode {mode!r} is itself a base density; base={self.base!r} contradicts it")
            self.base = implied
        else:
            self.base = _scheme(self.base if self.base is not None else "logit_normal")
        for name in ("mu0", "logit_std", "mode_scale", "delta", "p_skew", "tau_m", "tau_v", "clip"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise UsageError(f"timestep sampler: {name} must be finite, got {value}")
            setattr(self, name, value)
        if self.logit_std <= 0:
            raise UsageError(f"timestep sampler: logit_std must be > 0, got {self.logit_std}")
        if not 0.0 <= self.p_skew <= 1.0:
            raise UsageError(f"timestep sampler: p_skew must be in [0, 1], got {self.p_skew}")
        if not (0.0 < self.tau_m < 1.0 and 0.0 < self.tau_v < 1.0):
            raise UsageError("timestep sampler: tau_m and tau_v must be in (0, 1)")
        if self.clip <= 0:
            raise UsageError(f"timestep sampler: clip must be > 0, got {self.clip}")
        if self.base == "mode":
            _check_mode_scale(self.mode_scale)
        for name in ("beta_motion", "beta_quality"):
            a, b = (float(v) for v in getattr(self, name))
            if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
                raise UsageError(f"timestep sampler: {name} needs two positive numbers, got {(a, b)}")
            setattr(self, name, (a, b))
        for name in ("motion_stats", "quality_stats"):
            stats = getattr(self, name)
            if stats is not None:
                setattr(self, name, _checked_stats(name, stats))

    # -- construction helpers ---------------------------------------------------------------

    @classmethod
    def from_diffusers_args(cls, weighting_scheme: str = "logit_normal", logit_mean: float = 0.0,
                            logit_std: float = 1.0, mode_scale: float = 1.29, mode: str | None = None,
                            **tqd: Any) -> TimestepSampler:
        """The sampler whose base is a diffusers trainer's ``--weighting_scheme/--logit_mean``.

        diffusers' ``logit_mean = m`` (index space) is our ``mu0 = -m``. ``mode`` defaults to the
        base mode itself; pass a "tqd-*" mode (and its options) to add the skew.
        """
        scheme = "uniform" if str(weighting_scheme) in ("none", "sigma_sqrt", "cosmap") else _scheme(weighting_scheme)
        if mode is None:
            mode = scheme.replace("_", "-")
        return cls(mode=mode, base=scheme, mu0=-float(logit_mean), logit_std=logit_std,
                   mode_scale=mode_scale, **tqd)

    def fit_continuous(self, motion_scores: Any, quality_scores: Any) -> TimestepSampler:
        """Store mean/std of the training set's motion and quality scores for the z-scores."""
        m = _finite_scores("motion scores", motion_scores)
        q = _finite_scores("quality scores", quality_scores)
        self.motion_stats = _checked_stats("motion scores", (float(m.mean()), float(m.std())))
        self.quality_stats = _checked_stats("quality scores", (float(q.mean()), float(q.std())))
        return self

    # -- per-type parameters ----------------------------------------------------------------

    @property
    def mus(self) -> dict[str, float]:
        """Logit-normal means of tqd-categorical in OUR convention: golden mu0, motion mu0 + delta,
        quality mu0 - delta (low uses the base)."""
        return {"golden": self.mu0, "motion": self.mu0 + self.delta, "quality": self.mu0 - self.delta}

    def score_difference(self, motion: Any, quality: Any) -> torch.Tensor:
        """d = clip(z(m) - z(q), -clip, clip) per sample (float64) for tqd-continuous."""
        if self.motion_stats is None or self.quality_stats is None:
            raise UsageError("tqd-continuous needs score statistics",
                             hint="call fit_continuous(motion_scores, quality_scores) on the training set first")
        m = torch.as_tensor(_finite_scores("motion scores", motion), dtype=torch.float64)
        q = torch.as_tensor(_finite_scores("quality scores", quality), dtype=torch.float64)
        if m.shape != q.shape:
            raise UsageError(f"motion and quality scores differ in length ({m.numel()} vs {q.numel()})")
        zm = (m - self.motion_stats[0]) / self.motion_stats[1]
        zq = (q - self.quality_stats[0]) / self.quality_stats[1]
        return (zm - zq).clamp(-self.clip, self.clip)

    def continuous_mu(self, motion: Any, quality: Any) -> torch.Tensor:
        """mu_i = mu0 + (delta / clip) d_i (OUR convention), so |mu_i - mu0| <= |delta|."""
        return self.mu0 + (self.delta / self.clip) * self.score_difference(motion, quality)

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, batch: int | Sequence[Any] | torch.Tensor | None = None,
               generator: torch.Generator | None = None, *, motion: Any = None, quality: Any = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Noise levels s, float32, shape (n,), clamped to [eps, 1 - eps] (eps = 1e-5).

        ``batch``: for base modes an int n (or types, only their count is used); for categorical,
        beta and truncated the per-sample types (names or codes: golden 0, motion 1, quality 2,
        low 3); for tqd-continuous None or n, with ``motion`` and ``quality`` score sequences.
        Draws happen on the generator's device (else ``device``, else CPU). Draw order: module
        docstring (the first n draws are always the base's, so p_skew = 0 equals the base exactly).
        """
        codes, d, n = self._resolve(batch, motion, quality)
        if device is None:
            device = generator.device if generator is not None else "cpu"
        s = base_s(self.base, n, generator, self.mu0, self.logit_std, self.mode_scale, device)
        if self.mode in BASE_MODES or self.p_skew == 0.0 or n == 0:
            return s.clamp(self.eps, 1 - self.eps)
        take = self._eligible(codes, d).to(s.device)
        if self.p_skew < 1.0:
            bern = torch.rand(n, generator=generator, device=s.device, dtype=torch.float64)
            take = take & (bern < self.p_skew)
        v = torch.rand(n, generator=generator, device=s.device, dtype=torch.float64)
        skew = self._skew_inverse_cdf(codes, d, v)
        s = torch.where(take, skew.to(s.dtype), s)
        return s.clamp(self.eps, 1 - self.eps)

    def _resolve(self, batch: Any, motion: Any, quality: Any) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
        """(type codes or None, score differences or None, n) for a ``sample`` call."""
        if self.mode == "tqd-continuous":
            if motion is None or quality is None:
                raise UsageError("tqd-continuous samples need per-sample motion= and quality= scores")
            d = self.score_difference(motion, quality)
            if batch is not None and not isinstance(batch, int):
                batch = len(batch)
            if batch is not None and batch != d.numel():
                raise UsageError(f"batch size {batch} differs from the {d.numel()} scores given")
            return None, d, int(d.numel())
        if isinstance(batch, (int, np.integer)) and not isinstance(batch, bool):
            if batch < 0:
                raise UsageError(f"batch size must be >= 0, got {batch}")
            if self.mode in BASE_MODES:
                return None, None, int(batch)
            raise UsageError(f"{self.mode} needs the per-sample data types, not just a batch size",
                             hint="pass a list of golden/motion/quality/low names or an int code tensor")
        if batch is None:
            raise UsageError("sample() needs a batch size or the per-sample data types")
        codes = type_codes(batch)
        return codes, None, int(codes.numel())

    def _eligible(self, codes: torch.Tensor | None, d: torch.Tensor | None) -> torch.Tensor:
        """Boolean mask of samples whose type density differs from the base."""
        if self.mode == "tqd-continuous":
            return d != 0
        return (codes == MOTION) | (codes == QUALITY)

    def _skew_inverse_cdf(self, codes: torch.Tensor | None, d: torch.Tensor | None,
                          v: torch.Tensor) -> torch.Tensor:
        """Type-density inverse CDF at uniforms v (float64); non-eligible entries are don't-cares."""
        if self.mode == "tqd-continuous":
            mu = (self.mu0 + (self.delta / self.clip) * d).to(v.device)
            return torch.sigmoid(mu + self.logit_std * torch.special.ndtri(v))
        codes = codes.to(v.device)
        is_m = codes == MOTION
        if self.mode == "tqd-categorical":
            mu = torch.full_like(v, self.mu0 - self.delta)
            mu[is_m] = self.mu0 + self.delta
            return torch.sigmoid(mu + self.logit_std * torch.special.ndtri(v))
        if self.mode == "tqd-truncated":
            return torch.where(is_m, self.tau_m + (1 - self.tau_m) * v, self.tau_v * v)
        from scipy.special import betaincinv

        vn = v.detach().cpu().numpy()
        im = is_m.cpu().numpy()
        out = betaincinv(*self.beta_quality, vn)
        out[im] = betaincinv(*self.beta_motion, vn[im])
        return torch.from_numpy(out).to(v.device)

    # -- analytic density ---------------------------------------------------------------------

    def _type_parts(self, type: Any, d: float | None) -> tuple[str, Any]:
        """('base', None) or the type density family and its parameters."""
        if self.mode in BASE_MODES:
            return "base", None
        if self.mode == "tqd-continuous":
            if d is None:
                raise UsageError("tqd-continuous density needs d (the clipped z-score difference)")
            d = max(-self.clip, min(self.clip, float(d)))
            return ("base", None) if d == 0 else ("logit", self.mu0 + (self.delta / self.clip) * d)
        code = _type_code(type)
        if code in (GOLDEN, LOW):
            return "base", None
        motion = code == MOTION
        if self.mode == "tqd-categorical":
            return "logit", self.mu0 + self.delta if motion else self.mu0 - self.delta
        if self.mode == "tqd-beta":
            return "beta", self.beta_motion if motion else self.beta_quality
        return "trunc", (self.tau_m, 1.0) if motion else (0.0, self.tau_v)

    def density(self, type: Any = None, s: Any = None, *, d: float | None = None) -> np.ndarray:
        """Analytic pdf of the sampled s for one type (or score difference d in continuous mode),
        including the p_skew mixture with the base; ignores the 1e-5 clamp."""
        x = np.asarray(s, dtype=np.float64)
        base = _base_pdf(x, self.base, self.mu0, self.logit_std, self.mode_scale)
        kind, par = self._type_parts(type, d)
        if kind == "base":
            return base
        if kind == "logit":
            dens = _logit_normal_pdf(x, par, self.logit_std)
        elif kind == "beta":
            from scipy.stats import beta

            dens = beta.pdf(x, *par)
        else:
            lo, hi = par
            dens = np.where((x > lo) & (x < hi), 1.0 / (hi - lo), 0.0)
        return self.p_skew * dens + (1 - self.p_skew) * base

    def cdf(self, type: Any = None, s: Any = None, *, d: float | None = None) -> np.ndarray:
        """Analytic cdf matching ``density`` (for scipy.stats.kstest)."""
        x = np.asarray(s, dtype=np.float64)
        base = _base_cdf(x, self.base, self.mu0, self.logit_std, self.mode_scale)
        kind, par = self._type_parts(type, d)
        if kind == "base":
            return base
        if kind == "logit":
            c = _logit_normal_cdf(x, par, self.logit_std)
        elif kind == "beta":
            from scipy.stats import beta

            c = beta.cdf(x, *par)
        else:
            lo, hi = par
            c = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        return self.p_skew * c + (1 - self.p_skew) * base


def _finite_scores(what: str, values: Any) -> np.ndarray:
    """Scores as a flat float64 array; UsageError on NaN/inf or non-numbers."""
    try:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be numbers ({exc})") from None
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what} contain NaN or infinite values")
    return arr


def _checked_stats(what: str, stats: Any) -> tuple[float, float]:
    """(mean, std) with a positive finite std."""
    mean, std = (float(v) for v in stats)
    if not (math.isfinite(mean) and math.isfinite(std)) or std <= 0:
        raise UsageError(f"{what}: need a finite mean and a positive std, got {(mean, std)}",
                         hint="continuous mode needs scores that vary over the training set")
    return mean, std


def density(mode: str, type: Any, s: Any, *, d: float | None = None, **params: Any) -> np.ndarray:
    """pdf of s for ``TimestepSampler(mode=mode, **params)`` and one type (see its ``density``)."""
    return TimestepSampler(mode=mode, **params).density(type, s, d=d)


def cdf(mode: str, type: Any, s: Any, *, d: float | None = None, **params: Any) -> np.ndarray:
    """cdf of s for ``TimestepSampler(mode=mode, **params)`` and one type (see its ``cdf``)."""
    return TimestepSampler(mode=mode, **params).cdf(type, s, d=d)


# ---------------------------------------------------------------------------------------------
# type-balanced batches
# ---------------------------------------------------------------------------------------------


def type_balanced_indices(types: Any, batch_size: int, generator: torch.Generator | None = None,
                          num_batches: int | None = None) -> torch.Tensor:
    """Index batches, shape (num_batches, batch_size), with equal shares of the types present.

    Each batch holds batch_size // K samples of each of the K types present; the batch_size % K
    leftover slots go to distinct types chosen at random, so counts differ by at most one (and are
    equal when K divides batch_size). Each type's indices are consumed from a random permutation
    that is redrawn when exhausted (minority types are oversampled). ``num_batches`` defaults to
    len(types) // batch_size (at least 1). ``.tolist()`` is a DataLoader ``batch_sampler``.
    """
    codes = type_codes(types)
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    if codes.numel() == 0:
        raise UsageError("type_balanced_indices needs at least one sample")
    if num_batches is None:
        num_batches = max(1, codes.numel() // batch_size)
    present = torch.unique(codes).tolist()
    pools = {c: torch.nonzero(codes == c).reshape(-1) for c in present}
    order = {c: pools[c][torch.randperm(len(pools[c]), generator=generator)] for c in present}
    pos = dict.fromkeys(present, 0)
    k = len(present)
    share, extra = divmod(batch_size, k)
    batches = []
    for _ in range(int(num_batches)):
        counts = dict.fromkeys(present, share)
        if extra:
            for j in torch.randperm(k, generator=generator)[:extra].tolist():
                counts[present[j]] += 1
        rows = []
        for c in present:
            for _ in range(counts[c]):
                if pos[c] == len(order[c]):
                    order[c] = pools[c][torch.randperm(len(pools[c]), generator=generator)]
                    pos[c] = 0
                rows.append(int(order[c][pos[c]]))
                pos[c] += 1
        row = torch.tensor(rows, dtype=torch.long)
        batches.append(row[torch.randperm(batch_size, generator=generator)])
    return torch.stack(batches)


# ---------------------------------------------------------------------------------------------
# converters to trainer units
# ---------------------------------------------------------------------------------------------


def to_flowmatch_index(s: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """diffusers flow-matching table index clamp(floor((1 - s) N), 0, N - 1) (int64)."""
    n = int(num_train_timesteps)
    s = torch.as_tensor(s)
    return torch.floor((1 - s) * n).long().clamp(0, n - 1)


def flowmatch_timesteps(s: torch.Tensor, scheduler: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(timesteps, sigmas) of a FlowMatchEulerDiscreteScheduler at index floor((1 - s) N).

    Uses the scheduler's own tables, so any ``shift`` (sigma' = shift sigma / (1 + (shift - 1)
    sigma)) is applied. The scheduler must be a fresh training copy (no ``set_timesteps`` call),
    like the trainers' ``noise_scheduler_copy``.
    """
    n = int(scheduler.config.num_train_timesteps)
    table_t, table_sigma = scheduler.timesteps, scheduler.sigmas
    if len(table_t) != n or len(table_sigma) < n:
        raise UsageError(f"scheduler tables hold {len(table_t)} timesteps, not num_train_timesteps={n}",
                         hint="use a fresh copy of the training scheduler (set_timesteps() resizes its tables)")
    idx = to_flowmatch_index(s, n).to(table_t.device)
    return table_t[idx], table_sigma[idx.to(table_sigma.device)]


def to_ddpm_timesteps(s: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """DDPM-style integer t = clamp(round(s (N - 1)), 0, N - 1) (int64, ascending with noise)."""
    n = int(num_train_timesteps)
    s = torch.as_tensor(s)
    return torch.round(s * (n - 1)).long().clamp(0, n - 1)


def to_rectified_flow_t(s: torch.Tensor) -> torch.Tensor:
    """Pure rectified flow (x_t = (1 - t) x0 + t eps): t is s itself."""
    return s


def tqd_timesteps(batch_types: Any, scheduler: Any, sampler: TimestepSampler,
                  generator: torch.Generator | None = None, *, motion: Any = None,
                  quality: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for the diffusers trainer lines (module docstring): (timesteps, sigmas).

    ``batch_types`` are the per-sample types (or the batch size for base modes / tqd-continuous,
    which takes ``motion=``/``quality=`` scores). Tables stay on the scheduler's device.
    """
    s = sampler.sample(batch_types, generator, motion=motion, quality=quality)
    return flowmatch_timesteps(s, scheduler)
