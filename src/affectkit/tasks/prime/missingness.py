"""Seeded modality-level availability masks for the prime benchmarks.

A mask is a bool array [n, M] (True = the modality is observed for that patient); every generator
here keeps at least one modality per row. Modality index m follows the order of the dataset's
modality dict.

Patterns (``pattern_mask``):
- ``complete``: everything observed.
- ``mcar30`` / ``mcar50`` / ``mcar70``: each modality dropped independently with probability
  0.3 / 0.5 / 0.7; rows left empty are redrawn, so the realised rate is BELOW the nominal one:
  per modality it is (p - p^M) / (1 - p^M) in expectation (``mcar_expected_rate``), e.g. for M = 3
  0.29 / 0.43 / 0.54.
- ``site``: 4 pseudo-sites from a stable hash of the case id, each with a fixed availability
  pattern (``site_patterns``).
- ``mnar``: the ``which``-th modality missing with a logistic probability in a standardised
  covariate (e.g. age), slope 2, calibrated to a mean missing rate of 0.4.
- ``nopairs``: every patient observes exactly M - 1 modalities (balanced over the M patterns), so
  no patient is fully paired.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from affectkit.core.errors import UsageError

PATTERNS = ("complete", "mcar30", "mcar50", "mcar70", "site", "mnar", "nopairs")
MNAR_RATE = 0.4
MNAR_SLOPE = 2.0
N_SITES = 4
# M = 3, 4 sites: the complete pattern, one site per "one modality missing" that matters most for
# a (genes|clinical, clinical|labs, report) layout, and one single-modality site. Per-modality
# missing rates (equal site sizes): m0 25 %, m1 50 %, m2 25 %.
SITE_PATTERNS_3 = ((0, 1, 2), (0, 2), (1, 2), (0,))
_MAX_REDRAW_ROUNDS = 100_000


def _check_m(M: int, least: int = 1) -> int:
    """``M`` as an int, or UsageError when it is below ``least``."""
    count = int(M)
    if count != M or count < least:
        raise UsageError(f"the number of modalities must be an integer >= {least}, got {M}")
    return count


def _check_rate(rate: float, what: str = "rate") -> float:
    """``rate`` as a float in [0, 1], or UsageError."""
    r = float(rate)
    if not 0.0 <= r <= 1.0 or np.isnan(r):
        raise UsageError(f"{what} must be in [0, 1], got {rate}")
    return r


def realised_rate(mask: np.ndarray) -> np.ndarray:
    """Per-modality fraction of patients with the modality MISSING (float [M]); ``.mean()`` is the
    overall cell-level missing rate."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or m.shape[0] == 0:
        return np.zeros(m.shape[-1] if m.ndim == 2 else 0)
    return 1.0 - m.mean(axis=0)


def mcar_expected_rate(rates: Sequence[float]) -> np.ndarray:
    """Expected realised per-modality missing rate of ``mcar`` with these per-modality drop rates:
    P(m missing | not all missing) = (p_m - prod p) / (1 - prod p)."""
    p = np.asarray(rates, dtype=float)
    all_missing = float(np.prod(p))
    if all_missing >= 1.0:
        raise UsageError("at least one modality needs a drop rate below 1")
    return (p - all_missing) / (1.0 - all_missing)


def mcar(
    n: int, M: int, rate: float, rng: np.random.Generator, per_modality: Sequence[float] | None = None
) -> np.ndarray:
    """Drop each modality independently with probability ``rate`` (or ``per_modality[m]``).

    Rows left with no modality are redrawn (rejection sampling) until each keeps >= 1, so the
    realised missing rate is slightly below the nominal one (see ``mcar_expected_rate``)."""
    M = _check_m(M)
    if per_modality is None:
        rates = np.full(M, _check_rate(rate))
    else:
        if len(per_modality) != M:
            raise UsageError(f"per_modality needs {M} rates, got {len(per_modality)}")
        rates = np.array([_check_rate(r, "a per-modality rate") for r in per_modality])
    if np.all(rates >= 1.0):
        raise UsageError("at least one modality needs a drop rate below 1")
    observed = rng.random((n, M)) >= rates
    empty = ~observed.any(axis=1)
    rounds = 0
    while empty.any():
        rounds += 1
        if rounds > _MAX_REDRAW_ROUNDS:
            raise UsageError("drop rates too close to 1: rows keep coming out empty")
        idx = np.flatnonzero(empty)
        observed[idx] = rng.random((idx.size, M)) >= rates
        empty[idx] = ~observed[idx].any(axis=1)
    return observed


def _stable_int(text: str) -> int:
    """A 64-bit integer from the SHA-256 of ``text`` (stable across processes and platforms)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def site_of(case_id: str, n_sites: int = N_SITES, seed: int = 0) -> int:
    """Pseudo-site index of one case: stable hash of ``seed`` and the case id, modulo ``n_sites``."""
    return _stable_int(f"prime-site\0{seed}\0{case_id}") % n_sites


def site_patterns(M: int, n_sites: int = N_SITES) -> list[tuple[int, ...]]:
    """The fixed availability pattern (observed modality indices) of each pseudo-site.

    Site 0 is always complete, so every modality is observed somewhere. M = 3 with 4 sites uses
    ``SITE_PATTERNS_3``. Otherwise sites 1.. cycle through the non-empty proper subsets ordered by
    size (largest first) then lexicographically: e.g. M = 2 -> (0, 1), (0,), (1,), (0,)."""
    M = _check_m(M)
    if int(n_sites) != n_sites or n_sites < 1:
        raise UsageError(f"n_sites must be an integer >= 1, got {n_sites}")
    if M == 3 and n_sites == len(SITE_PATTERNS_3):
        return list(SITE_PATTERNS_3)
    full = tuple(range(M))
    others = [s for s in all_subsets(M) if len(s) < M]
    others.sort(key=lambda s: (-len(s), s))
    if not others:
        return [full] * n_sites
    return [full] + [others[(k - 1) % len(others)] for k in range(1, n_sites)]


def site_blocks(case_ids: Sequence[str], M: int, n_sites: int = N_SITES, seed: int = 0) -> np.ndarray:
    """Availability by pseudo-site: each case is hashed to a site (``site_of``) and observes that
    site's pattern (``site_patterns``). A case's row depends only on its own id, ``M``,
    ``n_sites`` and ``seed``."""
    patterns = site_patterns(M, n_sites)
    mask = np.zeros((len(case_ids), M), dtype=bool)
    for i, cid in enumerate(case_ids):
        mask[i, list(patterns[site_of(str(cid), n_sites, seed)])] = True
    return mask


def _standardise(covariate: Sequence[float]) -> np.ndarray:
    """Covariate as z-scores (all zeros when it is constant); UsageError on NaN."""
    x = np.asarray(covariate, dtype=float).ravel()
    if np.isnan(x).any():
        raise UsageError("the covariate for covariate-dependent missingness contains NaN")
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def missing_probability(covariate: Sequence[float], rate: float, slope: float = MNAR_SLOPE) -> np.ndarray:
    """Per-patient probability of missing: sigmoid(a + slope * z) with z the standardised covariate
    and the intercept a found by bisection so that the mean probability equals ``rate``."""
    r = _check_rate(rate)
    z = _standardise(covariate)
    if z.size == 0 or r in (0.0, 1.0):
        return np.full(z.shape, r)
    lo, hi = -60.0, 60.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _sigmoid(mid + slope * z).mean() < r:
            lo = mid
        else:
            hi = mid
    return _sigmoid(0.5 * (lo + hi) + slope * z)


def covariate_dependent(
    covariate: Sequence[float],
    M: int,
    which: int,
    rate: float,
    rng: np.random.Generator,
    slope: float = MNAR_SLOPE,
) -> np.ndarray:
    """Modality ``which`` missing with the calibrated logistic probability of
    ``missing_probability`` (increasing in the covariate for slope > 0; expected mean missing rate
    = ``rate``); all other modalities observed."""
    M = _check_m(M, least=2)
    if int(which) != which or not 0 <= which < M:
        raise UsageError(f"modality index 'which' must be in 0..{M - 1}, got {which}")
    if _check_rate(rate) >= 1.0:
        raise UsageError("rate must be below 1")
    p = missing_probability(covariate, rate, slope)
    mask = np.ones((p.size, M), dtype=bool)
    mask[:, int(which)] = rng.random(p.size) >= p
    return mask


def no_complete(n: int, M: int, rng: np.random.Generator) -> np.ndarray:
    """Every patient observes exactly M - 1 modalities; the dropped modality is balanced over
    patients (counts differ by at most one) and shuffled. No patient is fully paired."""
    M = _check_m(M, least=2)
    dropped = rng.permutation(np.arange(n) % M)
    mask = np.ones((n, M), dtype=bool)
    mask[np.arange(n), dropped] = False
    return mask


def all_subsets(M: int) -> list[tuple[int, ...]]:
    """Every non-empty modality subset, by size (smallest first) then lexicographically."""
    M = _check_m(M)
    return [s for r in range(1, M + 1) for s in combinations(range(M), r)]


def _pattern_rng(seed: int, name: str) -> np.random.Generator:
    """Independent stream per (seed, pattern name)."""
    return np.random.default_rng([int(seed), _stable_int(f"prime-pattern\0{name}") % 2**32])


def pattern_mask(
    name: str,
    case_ids: Sequence[str],
    M: int,
    seed: int,
    covariate: Sequence[float] | None = None,
    which: int = 0,
) -> np.ndarray:
    """The availability mask of the named pattern (one of ``PATTERNS``) for these cases.

    ``covariate`` (one value per case) is needed by ``mnar``, which drops modality ``which``."""
    if name not in PATTERNS:
        raise UsageError(f"unknown missingness pattern {name!r}", f"valid patterns: {', '.join(PATTERNS)}")
    if int(seed) != seed or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed}")
    M = _check_m(M)
    n = len(case_ids)
    rng = _pattern_rng(seed, name)
    if name == "complete":
        return np.ones((n, M), dtype=bool)
    if name.startswith("mcar"):
        return mcar(n, M, int(name[4:]) / 100.0, rng)
    if name == "site":
        return site_blocks(case_ids, M, N_SITES, seed)
    if name == "mnar":
        if covariate is None:
            raise UsageError("the 'mnar' pattern needs a covariate (one value per case)")
        if len(covariate) != n:
            raise UsageError(f"the covariate has {len(covariate)} values for {n} cases")
        return covariate_dependent(covariate, M, which, MNAR_RATE, rng)
    return no_complete(n, M, rng)
