"""Real photoplethysmogram (PPG) morphology for synthetic rPPG: beat templates cut from recordings.

The recordings are the three finger-PPG examples bundled with the ``heartpy`` package
(``heartpy/data``): ``data.csv`` (one column, no header, 100 Hz), ``data2.csv`` (``timer,hr``, timer in
ms, about 117 Hz) and ``data3.csv`` (``datetime,hr``, about 100 Hz, 11 min). The files are read
directly; heartpy itself is never imported (its import pulls in matplotlib and is broken in some
environments).

Each recording is resampled to 100 Hz, band-limited (0.3-10 Hz), and cut into beats between
consecutive systolic peaks. These example signals are strongly high-passed by the sensor's front end:
their 2nd and 3rd harmonics are about as strong as the fundamental, as in a velocity plethysmogram
(the first derivative of the volume pulse). Each beat is therefore integrated once, which restores the
textbook volume waveform (steep upstroke, systolic peak, dicrotic notch, diastolic wave; fundamental
1.5-2x the 2nd harmonic, as in finger PPG) and puts the cut points at the upstroke's maximum slope.
Beats of implausible length or shape are dropped; each kept beat is scaled by its amplitude relative
to the recording's median beat (keeping the natural beat-to-beat amplitude variation) and resampled
to ``TEMPLATE_LEN`` points over one cycle, starting and ending at the same level so beats join.

:func:`synthesize` renders a waveform that follows a given instantaneous heart-rate curve: the
cardiac phase is the integral of HR/60, and beat k of the output is template k of a run of
consecutive real beats, time-warped to fill its cycle. When heartpy is not installed a bank of one
3-harmonic template is used instead (``TemplateBank.source == "harmonic"``).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal as sps

__all__ = ["TEMPLATE_LEN", "TemplateBank", "extract_beats", "harmonic_bank", "heartpy_data_dir",
           "load_bank", "load_recordings", "synthesize"]

log = logging.getLogger(__name__)

TEMPLATE_LEN = 128
"""Samples per beat template (one cardiac cycle, starting at the maximum upstroke slope)."""
RESAMPLE_HZ = 100.0
"""Rate the recordings are brought to before beat detection."""


@dataclass(frozen=True)
class TemplateBank:
    """Beat templates ``(n, TEMPLATE_LEN)`` in recording order; ``source`` is ``"heartpy"`` or
    ``"harmonic"`` (the fallback); ``breaks`` marks rows that do not follow the previous row in
    time (a new recording or a dropped beat in between)."""

    templates: np.ndarray
    breaks: np.ndarray
    source: str


def package_data_dir(package: str, marker: str) -> Path | None:
    """The ``data`` folder of an installed ``package``, found without importing it (heartpy's import
    is broken on recent setuptools, scikit-image's is slow); None unless ``data/marker`` exists."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if (folder / marker).exists() else None


def heartpy_data_dir() -> Path | None:
    """heartpy's bundled recordings (None if heartpy is not installed)."""
    return package_data_dir("heartpy", "data.csv")


def _uniform(t: np.ndarray, x: np.ndarray, fs: float = RESAMPLE_HZ) -> np.ndarray:
    """Linear resampling of samples ``x`` at increasing times ``t`` (s) onto a uniform grid."""
    keep = np.concatenate([[True], np.diff(t) > 0])
    t, x = t[keep], x[keep]
    grid = np.arange(t[0], t[-1], 1.0 / fs)
    return np.interp(grid, t, x)


def _read_two_columns(path: Path) -> tuple[list[str], np.ndarray]:
    """First column as strings, second as floats, of a CSV with a header line."""
    rows = path.read_text().strip().splitlines()[1:]
    first, second = zip(*(r.split(",", 1) for r in rows), strict=True)
    return list(first), np.asarray(second, dtype=np.float64)


def load_recordings(folder: Path) -> list[np.ndarray]:
    """heartpy's three example PPG recordings, each resampled to ``RESAMPLE_HZ``."""
    recs = [np.loadtxt(folder / "data.csv", dtype=np.float64)]  # already 100 Hz
    timer, x2 = _read_two_columns(folder / "data2.csv")
    recs.append(_uniform(np.asarray(timer, dtype=np.float64) / 1000.0, x2))
    stamps, x3 = _read_two_columns(folder / "data3.csv")
    # the clock ticks in ~15.6 ms steps (many duplicate stamps), so only the overall rate is trusted
    t3 = np.asarray(stamps, dtype="datetime64[us]")
    seconds = float((t3[-1] - t3[0]) / np.timedelta64(1, "s"))
    recs.append(_uniform(np.arange(x3.size) * seconds / (x3.size - 1), x3))
    return recs


def _clean(x: np.ndarray, fs: float) -> np.ndarray:
    """Zero-phase 0.3-10 Hz band-limiting: removes baseline wander, keeps the dicrotic notch."""
    b, a = sps.butter(2, [0.3 / (fs / 2), 10.0 / (fs / 2)], btype="bandpass")
    return sps.filtfilt(b, a, x - np.median(x))


def _period(x: np.ndarray, fs: float) -> int:
    """Dominant beat period (samples): the highest autocorrelation at lags of 0.4-1.5 s."""
    z = x - x.mean()
    n = 1 << (2 * z.size - 1).bit_length()
    ac = np.fft.irfft(np.abs(np.fft.rfft(z, n)) ** 2, n)[: int(1.5 * fs) + 1]
    lo = int(0.4 * fs)
    return lo + int(np.argmax(ac[lo:]))


def _systolic_peaks(x: np.ndarray, fs: float, chunk_s: float = 20.0) -> np.ndarray:
    """Systolic peaks, found chunk by chunk (HR drifts over long recordings) at least 0.6 of the
    chunk's dominant period apart, so the dicrotic wave is not taken for a beat."""
    peaks: list[int] = []
    step = int(chunk_s * fs)
    starts = list(range(0, max(1, x.size - step // 2), step))
    for k, start in enumerate(starts):
        stop = x.size if k == len(starts) - 1 else start + step
        seg = x[start:stop]
        period = _period(seg, fs)
        spread = np.percentile(seg, 95) - np.percentile(seg, 5)
        found, _ = sps.find_peaks(seg, distance=int(0.6 * period), prominence=0.3 * spread)
        peaks += [start + int(p) for p in found]
    return np.array(sorted(set(peaks)), dtype=int)


def _saturated(x: np.ndarray) -> np.ndarray:
    """Samples at the recording's extreme values (a clipped sensor repeats its min or max)."""
    hi, lo = x.max(), x.min()
    sat = np.zeros(x.size, dtype=bool)
    for v in (hi, lo):
        if np.count_nonzero(x == v) > 3:
            sat |= x == v
    return sat


def _to_template(beat: np.ndarray) -> np.ndarray:
    """Remove the peak-to-peak line and resample a beat to ``TEMPLATE_LEN`` points of one cycle."""
    n = beat.size - 1  # beat includes the next peak as its last sample
    line = beat[0] + (beat[-1] - beat[0]) * np.arange(n + 1) / n
    flat = beat - line
    return np.interp(np.arange(TEMPLATE_LEN) * n / TEMPLATE_LEN, np.arange(n + 1), flat)


def _integrate(velocity: np.ndarray) -> np.ndarray:
    """Volume waveform of one velocity-like beat: cumulative sum of the mean-removed cycle, starting
    at 0 and (the mean being removed) returning to 0 one sample after the end, so cycles join."""
    v = velocity - velocity.mean()
    return np.concatenate([[0.0], np.cumsum(v)[:-1]])


def extract_beats(x: np.ndarray, fs: float = RESAMPLE_HZ) -> tuple[np.ndarray, np.ndarray]:
    """Beat templates of one recording and, per template, whether it starts a new run (does not
    follow the previous template in time).

    A beat runs from one peak of the recorded (velocity-like) signal to the next and is integrated
    once (:func:`_integrate`), so templates are volume waveforms cut at the upstroke's maximum slope. It is kept when it lasts 0.33-1.5 s and within
    25 % of the median beat, is not clipped by the sensor, and its template correlates >= 0.9 with the
    median template. Templates are scaled to unit peak-to-trough amplitude times the beat's amplitude
    over the median amplitude (clipped to 0.6-1.4)."""
    x = np.asarray(x, dtype=np.float64)
    y = _clean(x, fs)
    peaks = _systolic_peaks(y, fs)
    if peaks.size < 3:
        return np.zeros((0, TEMPLATE_LEN)), np.zeros(0, dtype=bool)
    sat = np.cumsum(_saturated(x))
    lengths = np.diff(peaks)
    median_len = np.median(lengths)
    idx = [i for i, n in enumerate(lengths)
           if 0.33 * fs <= n <= 1.5 * fs and abs(n - median_len) <= 0.25 * median_len
           and sat[peaks[i + 1]] == sat[peaks[i]]]
    if len(idx) < 3:
        return np.zeros((0, TEMPLATE_LEN)), np.zeros(0, dtype=bool)
    raw = np.array([_integrate(_to_template(y[peaks[i]: peaks[i + 1] + 1])) for i in idx])
    amps = np.ptp(raw, axis=1)
    shapes = raw / amps[:, None]
    median_shape = np.median(shapes, axis=0)
    corr = np.array([np.corrcoef(s, median_shape)[0, 1] for s in shapes])
    kept = np.flatnonzero(corr >= 0.9)
    scale = np.clip(amps / np.median(amps[kept]), 0.6, 1.4)
    templates = shapes[kept] * scale[kept, None]
    order = np.asarray(idx)[kept]
    breaks = np.concatenate([[True], np.diff(order) != 1])
    return templates, breaks


def harmonic_bank() -> TemplateBank:
    """Fallback bank: one 3-harmonic pulse cycle (used only when heartpy is not installed)."""
    phase = 2 * np.pi * np.arange(TEMPLATE_LEN) / TEMPLATE_LEN
    cycle = np.sin(phase) + 0.4 * np.sin(2 * phase + 0.8) + 0.15 * np.sin(3 * phase + 1.6)
    cycle = (cycle - cycle[0]) / np.ptp(cycle)
    return TemplateBank(cycle[None, :], np.array([True]), "harmonic")


@lru_cache(maxsize=1)
def load_bank() -> TemplateBank:
    """The template bank from heartpy's recordings, or the harmonic fallback (logged) without heartpy."""
    folder = heartpy_data_dir()
    if folder is None:
        log.warning("heartpy is not installed: synthetic PPG falls back to a 3-harmonic waveform")
        return harmonic_bank()
    parts = [extract_beats(x) for x in load_recordings(folder)]
    templates = np.concatenate([p[0] for p in parts])
    breaks = np.concatenate([p[1] for p in parts])
    templates.setflags(write=False)
    return TemplateBank(templates, breaks, "heartpy")


def _beat_sequence(bank: TemplateBank, n_beats: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_beats`` templates: runs of consecutive real beats from random starting points."""
    n = bank.templates.shape[0]
    out = np.empty(n_beats, dtype=int)
    i = int(rng.integers(n))
    for k in range(n_beats):
        out[k] = i
        i += 1
        if i >= n or bank.breaks[i]:
            i = int(rng.integers(n))
    return out


def synthesize(hr_bpm: np.ndarray, fs: float, rng: np.random.Generator, bank: TemplateBank | None = None,
               oversample: int = 4) -> np.ndarray:
    """PPG waveform (zero mean, unit std) sampled at ``fs`` following the instantaneous heart rate
    ``hr_bpm`` (one value per output sample).

    The cardiac phase is integrated at ``oversample * fs`` from a random start; each cycle is a real beat
    time-warped to its length. Each output sample averages its ``oversample`` sub-samples (the camera's
    exposure integrates light over the frame interval)."""
    bank = bank if bank is not None else load_bank()
    hr = np.repeat(np.asarray(hr_bpm, dtype=np.float64), oversample)
    phase = float(rng.uniform()) + np.cumsum(hr / 60.0) / (fs * oversample)
    beat = np.floor(phase).astype(int)
    seq = _beat_sequence(bank, int(beat[-1]) + 1, rng)
    pos = (phase - beat) * TEMPLATE_LEN
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    temps = bank.templates
    nxt_row = np.where(lo + 1 < TEMPLATE_LEN, seq[beat], seq[np.minimum(beat + 1, seq.size - 1)])
    a = temps[seq[beat], lo]
    b = np.where(lo + 1 < TEMPLATE_LEN, temps[nxt_row, (lo + 1) % TEMPLATE_LEN], 0.0)
    wave = (a + frac * (b - a)).reshape(-1, oversample).mean(axis=1)
    wave -= wave.mean()
    sd = wave.std()
    return wave / sd if sd > 0 else wave
