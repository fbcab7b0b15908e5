"""Classical (unsupervised) rPPG methods on per-frame spatial-mean RGB traces.

Every function takes ``rgb`` of shape (T, 3) (columns R, G, B; raw camera units, any positive scale)
and the frame rate ``fs`` in Hz, and returns the pulse signal of shape (T,) (float64, arbitrary sign
and scale). Heart rate is then read with :mod:`affectkit.tasks.rppg.postprocess` (detrend, band-pass,
FFT peak). Written from the methods' published descriptions and the affectkit spec §4.3.

Methods, in words:

- GREEN (Verkruysse, Svaasand & Nelson, 2008): the spatial-mean green trace itself (mean removed);
  green carries the strongest haemoglobin absorption change.
- ICA (Poh, McDuff & Picard, 2010/2011): detrend each channel (smoothness priors, lambda = 100) and
  z-score it, unmix three sources with ICA, keep the source whose normalised power spectrum
  (power / total power) has the highest peak inside the pass band, then Butterworth order 3,
  [0.7, 2.5] Hz. Deviation: the toolbox uses JADE; here a deterministic symmetric FastICA
  (Hyvarinen, 1999; tanh contrast, fixed seed) in numpy. ICA sources are only defined up to order,
  sign and scale, hence the spectral selection rule.
- CHROM (de Haan & Jeanne, 2013): in 1.6-s windows (even length L, hop L/2) normalise each channel by
  its window mean, form the chrominance signals X = 3R - 2G and Y = 1.5R + G - 1.5B, band-pass each
  (Butterworth order 3, [0.7, 2.5] Hz, zero phase), combine S = Xf - (std Xf / std Yf) * Yf, multiply by
  a Hann window and overlap-add (50 %).
- POS (Wang, den Brinker, Stuijk & de Haan, 2017): in every 1.6-s sliding window (hop one frame)
  divide each channel by its window mean, project onto the plane orthogonal to the skin tone with the
  rows [0, 1, -1] and [-2, 1, 1] giving S1, S2, tune h = S1 + (std S1 / std S2) * S2, remove its mean and
  overlap-add. The toolbox then detrends (lambda = 100) and band-passes (Butterworth order 1,
  [0.75, 3] Hz); ``postfilter=True`` does the same.
- LGI (Pilz, Zaunseder, Krajewski & Blazek, 2018, local group invariance): take the first left-singular
  vector u of the 3 x T trace matrix (its dominant, intensity/skin-tone direction), project it out
  (P = I - u u^T) and return the green row of P @ C.
- PBV (de Haan & van Leest, 2014, blood-volume pulse signature): normalise channels by their means and
  band-pass them; the signature is the vector of per-channel standard deviations divided by its norm
  (or a user-given signature such as (0.33, 0.77, 0.53)); weights W = Q^-1 pbv with Q = Cn Cn^T; the
  pulse is Cn^T W / (pbv . W), i.e. the minimum-variance projection with unit gain along pbv.
- OMIT (Casado & Lopez, 2023, orthogonal matrix image transformation): like LGI but the dominant
  direction is the first column q of the QR decomposition of the 3 x T trace matrix; project out q
  (P = I - q q^T) and return the green row of P @ C.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from affectkit.tasks.rppg.postprocess import bandpass, detrend, power_spectrum

__all__ = ["METHODS", "chrom", "green", "ica", "lgi", "omit", "pbv", "pos"]


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"rgb must have shape (T, 3), got {c.shape}")
    if c.shape[0] < 2:
        raise ValueError("rgb needs at least 2 frames")
    return c


def _window_len(fs: float, win_sec: float) -> int:
    return max(2, int(np.ceil(win_sec * fs)))


def green(rgb: np.ndarray, fs: float) -> np.ndarray:
    """GREEN: the mean-removed green trace. ``fs`` is unused (uniform signature)."""
    g = _as_rgb(rgb)[:, 1]
    return g - g.mean()


def _fastica(x: np.ndarray, seed: int = 0, max_iter: int = 500, tol: float = 1e-6) -> np.ndarray:
    """Symmetric FastICA (tanh) on x (k, T), rows zero-mean; returns sources (k, T)."""
    k = x.shape[0]
    cov = x @ x.T / x.shape[1]
    d, e = np.linalg.eigh(cov)
    d = np.maximum(d, 1e-12)
    white = (e / np.sqrt(d)) @ e.T  # symmetric whitening cov^-1/2
    z = white @ x
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, k))

    def decorrelate(m: np.ndarray) -> np.ndarray:
        s, u = np.linalg.eigh(m @ m.T)
        return (u / np.sqrt(np.maximum(s, 1e-12))) @ u.T @ m

    w = decorrelate(w)
    for _ in range(max_iter):
        y = np.tanh(w @ z)
        w_new = decorrelate(y @ z.T / z.shape[1] - np.diag((1.0 - y**2).mean(axis=1)) @ w)
        converged = np.max(np.abs(np.abs(np.einsum("ij,ij->i", w_new, w)) - 1.0)) < tol
        w = w_new
        if converged:
            break
    return w @ z


def ica(
    rgb: np.ndarray,
    fs: float,
    band: tuple[float, float] = (0.7, 2.5),
    order: int = 3,
    detrend_lambda: float = 100.0,
    seed: int = 0,
) -> np.ndarray:
    """ICA (Poh et al.): detrend + z-score channels, FastICA, pick the component with the highest
    normalised in-band spectral peak (power / total power, next-pow2 periodogram), band-pass it."""
    c = _as_rgb(rgb)
    x = np.stack([detrend(c[:, i], detrend_lambda) for i in range(3)])
    sd = x.std(axis=1, keepdims=True)
    x = (x - x.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    sources = _fastica(x, seed=seed)
    best, best_peak = 0, -1.0
    for i, s in enumerate(sources):
        f, p = power_spectrum(s, fs, None)
        total = p.sum()
        mask = (f >= band[0]) & (f <= band[1])
        peak = float(p[mask].max() / total) if total > 0 and mask.any() else 0.0
        if peak > best_peak:
            best, best_peak = i, peak
    return bandpass(sources[best], fs, band, order)


def chrom(
    rgb: np.ndarray,
    fs: float,
    win_sec: float = 1.6,
    band: tuple[float, float] = (0.7, 2.5),
    order: int = 3,
) -> np.ndarray:
    """CHROM (de Haan & Jeanne): windowed chrominance X - alpha*Y, Hann-windowed 50 % overlap-add.

    Window length L = ceil(win_sec * fs) rounded up to even, hop L/2; frames not covered by a full
    window (at most L/2 at the end) are zero. If T < L one window spans the whole trace.
    """
    c = _as_rgb(rgb)
    t = c.shape[0]
    win = _window_len(fs, win_sec)
    win += win % 2
    win = min(win, t - t % 2)
    hop = win // 2
    hann = np.hanning(win)
    out = np.zeros(t)
    for start in range(0, t - win + 1, hop):
        seg = c[start : start + win]
        n = seg / seg.mean(axis=0)
        xs = 3.0 * n[:, 0] - 2.0 * n[:, 1]
        ys = 1.5 * n[:, 0] + n[:, 1] - 1.5 * n[:, 2]
        xf, yf = bandpass(xs, fs, band, order), bandpass(ys, fs, band, order)
        alpha = xf.std() / yf.std() if yf.std() > 0 else 0.0
        out[start : start + win] += (xf - alpha * yf) * hann
    return out


_POS_PROJECTION = np.array([[0.0, 1.0, -1.0], [-2.0, 1.0, 1.0]])


def pos(
    rgb: np.ndarray,
    fs: float,
    win_sec: float = 1.6,
    postfilter: bool = False,
    band: tuple[float, float] = (0.75, 3.0),
) -> np.ndarray:
    """POS (Wang et al.): plane-orthogonal-to-skin projection in 1.6-s sliding windows, overlap-added.

    Window length L = ceil(win_sec * fs), hop 1 frame. ``postfilter=True`` appends the toolbox's
    detrend (lambda = 100) and Butterworth order-1 ``band`` (default [0.75, 3] Hz).
    """
    c = _as_rgb(rgb)
    t = c.shape[0]
    win = min(_window_len(fs, win_sec), t)
    out = np.zeros(t)
    for start in range(0, t - win + 1):
        seg = c[start : start + win]
        s = _POS_PROJECTION @ (seg / seg.mean(axis=0)).T
        s2_sd = s[1].std()
        h = s[0] + (s[0].std() / s2_sd if s2_sd > 0 else 0.0) * s[1]
        out[start : start + win] += h - h.mean()
    if postfilter:
        out = bandpass(detrend(out, 100.0), fs, band, 1)
    return out


def lgi(rgb: np.ndarray, fs: float) -> np.ndarray:
    """LGI (Pilz et al.): remove the first left-singular vector of the 3 x T trace, return the G row."""
    x = _as_rgb(rgb).T
    u = np.linalg.svd(x, full_matrices=False)[0][:, :1]
    y = (np.eye(3) - u @ u.T) @ x
    return y[1] - y[1].mean()


def pbv(
    rgb: np.ndarray,
    fs: float,
    signature: tuple[float, float, float] | None = None,
    band: tuple[float, float] = (0.6, 3.3),
    order: int = 1,
) -> np.ndarray:
    """PBV (de Haan & van Leest): minimum-variance projection with unit gain along the pulse signature.

    Channels are divided by their means, centred and band-passed (Butterworth ``order``, ``band``) before
    the signature (per-channel std / norm, unless ``signature`` is given) and Q = Cn Cn^T are formed.
    """
    c = _as_rgb(rgb)
    n = c / c.mean(axis=0) - 1.0
    n = np.stack([bandpass(n[:, i], fs, band, order) for i in range(3)])
    sig = n.std(axis=1) if signature is None else np.asarray(signature, dtype=np.float64)
    norm = np.linalg.norm(sig)
    if norm == 0:
        return np.zeros(c.shape[0])
    sig = sig / norm
    q = n @ n.T
    w = np.linalg.lstsq(q, sig, rcond=None)[0]
    gain = float(sig @ w)
    return (w @ n) / gain if gain != 0 else np.zeros(c.shape[0])


def omit(rgb: np.ndarray, fs: float) -> np.ndarray:
    """OMIT (Casado & Lopez): remove the first QR column of the 3 x T trace, return the G row."""
    x = _as_rgb(rgb).T
    q = np.linalg.qr(x)[0][:, :1]
    y = (np.eye(3) - q @ q.T) @ x
    return y[1] - y[1].mean()


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "green": green,
    "ica": ica,
    "chrom": chrom,
    "pos": pos,
    "lgi": lgi,
    "pbv": pbv,
    "omit": omit,
}
"""Method name -> function(rgb, fs) -> pulse (T,)."""
