"""rPPG-Toolbox style post-processing and heart-rate metrics (numpy/scipy only, no I/O).

Pipeline per signal (rPPG-Toolbox ``evaluation/post_process.py``, as described in the affectkit spec §4.3):

1. Optionally integrate (``np.cumsum``) when the signal is a first difference (DiffNormalized models).
2. Detrend with the smoothness-priors method (Tarvainen et al., 2002), lambda = 100:
   ``z - (I + lambda^2 D^T D)^-1 z`` with ``D`` the (T-2, T) second-difference matrix.
3. Band-pass: Butterworth of order 1, pass band [0.6, 3.3] Hz (36-198 bpm), zero-phase ``filtfilt``.
   The NeurIPS'23 toolbox paper used [0.75, 2.5] Hz; both band and order are arguments.
4. Heart rate (bpm) by FFT: ``scipy.signal.periodogram`` (no detrending, boxcar window) with
   ``nfft`` = the next power of two >= T by default (zero padding), arg-max of the power inside the
   closed band [low, high] Hz, times 60. A 10-s window at 30 fps gives 512 bins of 3.52 bpm, so pass a
   larger ``nfft`` (e.g. 4096, or FreqPhys' 3600) when sub-bin accuracy matters.
   Heart rate by peaks: ``scipy.signal.find_peaks`` on the filtered signal,
   ``60 / (mean inter-peak interval in samples / fs)``.
5. SNR (dB) against the ground-truth HR: power within +-0.1 Hz (6 bpm) of the fundamental f1 = HR/60
   and of the second harmonic 2*f1, over the power of the remaining bins of [low, high] Hz, from the
   same periodogram as the FFT HR.

Aggregate metrics over videos/windows (heart rates in bpm, errors e = pred - gt), each returned as
``(value, standard_error)`` with the toolbox's standard-error conventions (``np.std`` with ddof=0):
MAE (bpm) +- std(|e|)/sqrt(n); RMSE (bpm) +- sqrt(std(e^2)/sqrt(n)); MAPE (%) +- std(|e|/|gt|)*100/sqrt(n);
Pearson r +- sqrt((1 - r^2)/(n - 2)).

References: M. P. Tarvainen, P. O. Ranta-aho, P. A. Karjalainen, "An advanced detrending method with
application to HRV analysis", IEEE TBME 2002. X. Liu et al., "rPPG-Toolbox: Deep Remote PPG Toolbox",
NeurIPS 2023 Datasets and Benchmarks.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import signal as sps
from scipy.sparse.linalg import spsolve

TOOLBOX_BAND: tuple[float, float] = (0.6, 3.3)
"""Default pass band (Hz) of the current rPPG-Toolbox evaluation (36-198 bpm)."""
NEURIPS23_BAND: tuple[float, float] = (0.75, 2.5)
"""Pass band (Hz) used in the rPPG-Toolbox NeurIPS'23 paper (45-150 bpm)."""

__all__ = [
    "NEURIPS23_BAND",
    "TOOLBOX_BAND",
    "bandpass",
    "detrend",
    "estimate_hr",
    "hr_fft",
    "hr_peaks",
    "macc",
    "mae",
    "mape",
    "next_pow2",
    "pearson",
    "power_spectrum",
    "rmse",
    "snr",
]


def _as_1d(x: np.ndarray, name: str = "signal") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        a = np.squeeze(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {np.shape(x)}")
    return a


def next_pow2(n: int) -> int:
    """Smallest power of two >= ``n`` (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def detrend(x: np.ndarray, lam: float = 100.0) -> np.ndarray:
    """Smoothness-priors detrending: ``z - (I + lam^2 D^T D)^-1 z``, D the second-difference matrix.

    Sparse solve, O(T). Signals shorter than 3 samples are returned mean-removed.
    """
    z = _as_1d(x)
    t = z.size
    if t < 3:
        return z - z.mean() if t else z.copy()
    d = sp.diags([np.ones(t - 2), -2.0 * np.ones(t - 2), np.ones(t - 2)], [0, 1, 2], shape=(t - 2, t))
    a = (sp.identity(t) + (lam**2) * (d.T @ d)).tocsc()
    return z - spsolve(a, z)


def bandpass(
    x: np.ndarray, fs: float, band: tuple[float, float] = TOOLBOX_BAND, order: int = 1
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``butter(order, [lo, hi] / (fs/2))`` + ``filtfilt``).

    ``band`` is in Hz; the default [0.6, 3.3] Hz and order 1 are the rPPG-Toolbox evaluation settings.
    ``filtfilt`` uses scipy's default odd padding of 3 * max(len(a), len(b)) samples.
    """
    z = _as_1d(x)
    lo, hi = band
    nyq = fs / 2.0
    if not 0 < lo < hi < nyq:
        raise ValueError(f"band {band} Hz must satisfy 0 < low < high < fs/2 = {nyq}")
    b, a = sps.butter(order, [lo / nyq, hi / nyq], btype="bandpass")
    return sps.filtfilt(b, a, z)


def power_spectrum(x: np.ndarray, fs: float, nfft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies Hz, power) of ``scipy.signal.periodogram(x, fs, nfft, detrend=False)``.

    ``nfft=None`` = next power of two >= len(x) (zero padding); an explicit nfft must be >= len(x).
    """
    z = _as_1d(x)
    n = next_pow2(z.size) if nfft is None else int(nfft)
    if n < z.size:
        raise ValueError(f"nfft={n} is shorter than the signal ({z.size} samples); it would truncate it")
    return sps.periodogram(z, fs=fs, nfft=n, detrend=False)


def hr_fft(
    x: np.ndarray, fs: float, band: tuple[float, float] = TOOLBOX_BAND, nfft: int | None = None
) -> float:
    """Heart rate (bpm) = 60 * frequency of the largest periodogram bin within [low, high] Hz.

    ``nfft=None`` is the toolbox policy (next power of two >= len(x), zero padded); an int is used as
    given (must be >= len(x)). Band edges are inclusive.
    """
    f, p = power_spectrum(x, fs, nfft)
    mask = (f >= band[0]) & (f <= band[1])
    if not mask.any():
        raise ValueError(f"no frequency bin inside {band} Hz; increase nfft")
    return float(f[mask][np.argmax(p[mask])] * 60.0)


def hr_peaks(x: np.ndarray, fs: float, distance: int | None = None) -> float:
    """Heart rate (bpm) from ``scipy.signal.find_peaks``: ``60 / (mean peak interval [samples] / fs)``.

    ``distance=None`` reproduces the toolbox (no minimum distance); pass the signal already band-passed.
    Returns ``nan`` when fewer than two peaks are found.
    """
    peaks, _ = sps.find_peaks(_as_1d(x), distance=distance)
    if peaks.size < 2:
        return float("nan")
    return float(60.0 / (np.mean(np.diff(peaks)) / fs))


def snr(
    x: np.ndarray,
    hr_bpm: float,
    fs: float,
    band: tuple[float, float] = TOOLBOX_BAND,
    nfft: int | None = None,
    deviation_hz: float = 0.1,
    db_factor: float = 10.0,
) -> float:
    """SNR (dB) of a pulse signal given the ground-truth HR (bpm).

    Signal power = periodogram power in [f1 - dev, f1 + dev] and [2 f1 - dev, 2 f1 + dev] Hz
    (f1 = hr_bpm / 60, dev = 0.1 Hz = 6 bpm, edges inclusive); noise power = the other bins in
    [low, high] Hz. SNR = ``db_factor * log10(signal / noise)``; 0.0 when the noise power is zero.
    The spec states 10*log10 of the power ratio (default). The released toolbox code passes this power
    ratio to its ``mag2db`` helper; if that helper is 20*log10 (MATLAB convention, not re-verified here),
    ``db_factor=20`` reproduces the toolbox numbers.
    """
    f, p = power_spectrum(x, fs, nfft)
    f1 = hr_bpm / 60.0
    h1 = (f >= f1 - deviation_hz) & (f <= f1 + deviation_hz)
    h2 = (f >= 2 * f1 - deviation_hz) & (f <= 2 * f1 + deviation_hz)
    rem = (f >= band[0]) & (f <= band[1]) & ~(h1 | h2)
    noise = float(p[rem].sum())
    if noise == 0.0:
        return 0.0
    return float(db_factor * np.log10((p[h1].sum() + p[h2].sum()) / noise))


def macc(pred: np.ndarray, gt: np.ndarray, max_lag: int | None = None) -> float:
    """Maximum amplitude of cross-correlation: ``max_lag |Pearson(pred, roll(gt, lag))|``.

    Both signals are cut to the shorter length. Rolling is circular, so all lags are computed at once
    by FFT; ``max_lag`` limits the search to |lag| <= max_lag (None = all lags).
    """
    a, b = _as_1d(pred, "pred"), _as_1d(gt, "gt")
    n = min(a.size, b.size)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return 0.0
    # c[k] = sum_t a[t] * b[t - k] = Pearson with roll(b, k), times den
    c = np.fft.irfft(np.fft.rfft(a) * np.conj(np.fft.rfft(b)), n) / den
    if max_lag is not None:
        lags = np.arange(n)
        lags = np.minimum(lags, n - lags)
        c = c[lags <= max_lag]
    return float(np.max(np.abs(c)))


def estimate_hr(
    x: np.ndarray,
    fs: float,
    *,
    diff_flag: bool = False,
    detrend_lambda: float | None = 100.0,
    band: tuple[float, float] = TOOLBOX_BAND,
    order: int = 1,
    method: str = "fft",
    nfft: int | None = None,
) -> float:
    """Toolbox post-processing then HR (bpm): [cumsum] -> detrend(lambda) -> band-pass -> FFT or peaks.

    ``method`` is ``"fft"`` or ``"peak"``; ``detrend_lambda=None`` skips detrending.
    """
    z = _as_1d(x)
    if diff_flag:
        z = np.cumsum(z)
    if detrend_lambda is not None:
        z = detrend(z, detrend_lambda)
    z = bandpass(z, fs, band, order)
    if method == "fft":
        return hr_fft(z, fs, band, nfft)
    if method == "peak":
        return hr_peaks(z, fs)
    raise ValueError(f"method must be 'fft' or 'peak', got {method!r}")


def _errors(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_1d(pred, "pred"), _as_1d(gt, "gt")
    if p.shape != g.shape or p.size == 0:
        raise ValueError(f"pred and gt must be non-empty and the same length ({p.size} vs {g.size})")
    return p - g, g


def mae(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Mean absolute error (bpm) and its standard error std(|e|)/sqrt(n)."""
    e, _ = _errors(pred, gt)
    a = np.abs(e)
    return float(a.mean()), float(a.std() / np.sqrt(a.size))


def rmse(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Root mean squared error (bpm) and the toolbox's standard error sqrt(std(e^2)/sqrt(n))."""
    e, _ = _errors(pred, gt)
    s = e**2
    return float(np.sqrt(s.mean())), float(np.sqrt(s.std() / np.sqrt(s.size)))


def mape(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Mean absolute percentage error (%) = mean(|e| / |gt|) * 100, and std(|e|/|gt|) * 100 / sqrt(n)."""
    e, g = _errors(pred, gt)
    r = np.abs(e) / np.abs(g)
    return float(r.mean() * 100.0), float(r.std() * 100.0 / np.sqrt(r.size))


def pearson(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Pearson correlation r of predicted and true HR and its standard error sqrt((1 - r^2)/(n - 2)).

    The standard error is ``nan`` for n <= 2.
    """
    _errors(pred, gt)
    p, g = _as_1d(pred), _as_1d(gt)
    r = float(np.corrcoef(p, g)[0, 1])
    n = p.size
    se = float(np.sqrt((1.0 - r**2) / (n - 2))) if n > 2 else float("nan")
    return r, se
