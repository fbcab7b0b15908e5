"""rPPG heart-rate evaluation: presets, windows, aggregation, metrics, CSV and plots (hand computations)."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
from scipy import signal as sps
from scipy import stats

from affectkit.core.errors import AffectkitError, UsageError
from affectkit.tasks.rppg import metrics as ev
from affectkit.tasks.rppg import postprocess as pp

FS = 30.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sine(hr_bpm: float, seconds: float, fs: float = FS, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * fs))) / fs
    return np.sin(2 * np.pi * hr_bpm / 60.0 * t + phase)


def row(
    video: str, k: int, hr_gt: float, hr_pred: float, snr: float = 0.0, macc: float = 0.5
) -> ev.WindowRow:
    return ev.WindowRow(video, k, 10.0 * k, 10.0 * (k + 1), hr_gt, hr_pred, snr, macc)


# ---- presets ---------------------------------------------------------------------------------------


def test_presets_as_specified() -> None:
    tb, fp = ev.PRESETS["toolbox"], ev.PRESETS["freqphys"]
    assert (tb.band, tb.order, tb.detrend_lambda, tb.nfft, tb.window_s) == ((0.6, 3.3), 1, 100.0, None, None)
    assert (tb.aggregate, tb.round_hr, tb.standardize) == ("windows", False, False)
    assert (fp.band, fp.order, fp.detrend_lambda, fp.nfft, fp.window_s) == ((0.66, 3.0), 1, None, 3600, 10)
    assert (fp.aggregate, fp.round_hr, fp.standardize) == ("video-mean", True, True)


def test_preset_overrides_and_errors() -> None:
    p = ev.preset("toolbox", window_s=10)
    assert p.window_s == 10 and p.band == (0.6, 3.3) and ev.PRESETS["toolbox"].window_s is None
    with pytest.raises(UsageError, match="freqphys.*toolbox"):
        ev.preset("physnet")
    with pytest.raises(UsageError, match="nfft_size"):
        ev.preset("toolbox", nfft_size=4096)
    with pytest.raises(UsageError, match="aggregate"):
        ev.preset("toolbox", aggregate="median")


# ---- windows ---------------------------------------------------------------------------------------


def test_windows_toolbox_boundaries() -> None:
    w = ev.windows(65 * 30, FS, 10)
    assert len(w) == 7
    assert w[0] == (0, 300) and w[5] == (1500, 1800) and w[-1] == (1800, 1950)  # last 5 s kept
    assert ev.windows(608, FS, 10) == [(0, 300), (300, 600)]  # trailing 8-frame fragment dropped
    assert ev.windows(609, FS, 10)[-1] == (600, 609)  # 9 frames: kept by the toolbox rule
    assert ev.windows(1950, FS, None) == [(0, 1950)]
    assert ev.windows(200, FS, 10) == [(0, 200)]  # window longer than the video: capped
    assert ev.windows(8, FS, None) == [] and ev.windows(0, FS, 10) == []


def test_score_video_drops_windows_filtfilt_cannot_pad() -> None:
    assert ev.min_window_frames(ev.PRESETS["toolbox"]) == 10
    x = sine(72, 609 / FS)
    rows = ev.score_video("v", x, x, FS, ev.preset("toolbox", window_s=10))
    assert [(r.start_s, r.end_s) for r in rows] == [(0.0, 10.0), (10.0, 20.0)]
    x = sine(72, 610 / FS)
    rows = ev.score_video("v", x, x, FS, ev.preset("toolbox", window_s=10))
    assert rows[-1].end_s == pytest.approx(610 / FS)


# ---- heart rate ------------------------------------------------------------------------------------


def test_resolution_pitfall_on_pure_sinusoid() -> None:
    x = sine(72, 10)  # 300 frames
    bin_bpm = FS / 512 * 60  # 3.515625 bpm
    hr_tb = ev.hr_of(x, FS, ev.PRESETS["toolbox"])
    assert min(abs(hr_tb - 20 * bin_bpm), abs(hr_tb - 21 * bin_bpm)) < 1e-9
    assert hr_tb in (pytest.approx(70.3125), pytest.approx(73.828125))
    assert abs(hr_tb - 72) > 1.5
    assert abs(ev.hr_of(x, FS, ev.PRESETS["freqphys"]) - 72) <= 0.5


def test_freqphys_hr_matches_scipy_by_hand() -> None:
    rng = np.random.default_rng(1)
    x = 3.0 + 2.0 * sine(87, 10, phase=0.4) + rng.normal(0, 0.8, 300)
    z = (x - x.mean()) / x.std()
    b, a = sps.butter(1, [0.66 / 15.0, 3.0 / 15.0], btype="bandpass")
    f, pxx = sps.periodogram(sps.filtfilt(b, a, z), fs=FS, nfft=3600, detrend=False)
    band = (f >= 0.66) & (f <= 3.0)
    expected = f[band][np.argmax(pxx[band])] * 60
    assert ev.hr_of(x, FS, ev.PRESETS["freqphys"]) == pytest.approx(expected, abs=1e-12)
    assert abs(expected - 87) <= 1.0


def test_toolbox_hr_matches_postprocess_and_diff() -> None:
    rng = np.random.default_rng(2)
    x = sine(95, 20) + 0.01 * np.arange(600) + rng.normal(0, 0.3, 600)
    tb = ev.PRESETS["toolbox"]
    assert ev.hr_of(x, FS, tb) == pp.estimate_hr(x, FS)
    assert ev.hr_of(x, FS, tb, method="peak") == pp.estimate_hr(x, FS, method="peak")
    d = np.diff(x, prepend=0.0)  # cumsum(d) == x
    assert ev.hr_of(d, FS, tb, diff=True) == pytest.approx(ev.hr_of(x, FS, tb), abs=1e-9)
    with pytest.raises(UsageError):
        ev.hr_of(x, FS, tb, method="wavelet")


def test_nfft_never_truncates_long_units() -> None:
    p = ev.preset("freqphys", window_s=None)
    assert ev.effective_nfft(300, p) == 3600 and ev.effective_nfft(5000, p) == 5000
    assert ev.effective_nfft(300, ev.PRESETS["toolbox"]) == 512
    assert abs(ev.hr_of(sine(66, 200), FS, p) - 66) <= 0.5  # 6000 samples > 3600


# ---- score_video -----------------------------------------------------------------------------------


def test_score_video_rows() -> None:
    rng = np.random.default_rng(3)
    gt = sine(72, 65)
    pred = sine(72, 65, phase=0.7) + rng.normal(0, 0.3, gt.size)
    p = ev.preset("freqphys", hop_s=None)  # non-overlapping 10-s windows, the last one partial
    rows = ev.score_video("s1", pred, gt, FS, p)
    assert [r.window for r in rows] == list(range(7))
    assert rows[-1].start_s == 60.0 and rows[-1].end_s == 65.0
    for r in rows:
        s, e = int(r.start_s * FS), int(r.end_s * FS)
        zp, zg = ev.process(pred[s:e], FS, p), ev.process(gt[s:e], FS, p)
        assert r.hr_gt == ev.hr_of(gt[s:e], FS, p)
        assert r.hr_pred == ev.hr_of(pred[s:e], FS, p)
        assert r.snr == pp.snr(zp, r.hr_gt, FS, p.band, 3600)
        assert r.macc == pp.macc(zp, zg)
        assert abs(r.hr_gt - 72) <= 1.0 and abs(r.hr_pred - 72) <= 1.5 and r.macc > 0.8
    with pytest.raises(AffectkitError, match="1950"):
        ev.score_video("s1", pred, gt[:-1], FS, p)


def test_predict_windows_have_no_ground_truth() -> None:
    rows = ev.predict_windows("clip", sine(84, 25), FS, ev.preset("freqphys", hop_s=None))
    assert len(rows) == 3 and all(math.isnan(r.hr_gt) and math.isnan(r.snr) for r in rows)
    assert all(abs(r.hr_pred - 84) <= 1.0 for r in rows)


# ---- aggregation and metrics -------------------------------------------------------------------------


def test_video_mean_with_rounding_by_hand() -> None:
    rows = [
        row("A", 0, 72.0, 70.5),
        row("A", 1, 73.0, 74.0),  # gt mean 72.5 -> 72 (half to even), pred 72.25 -> 72
        row("B", 0, 77.0, 80.0),
        row("B", 1, 78.0, 81.0),  # gt mean 77.5 -> 78, pred 80.5 -> 80
        row("C", 0, 60.2, 66.9),  # single window: 60, 67
    ]
    units = ev.video_level(rows, ev.PRESETS["freqphys"])
    assert units == [
        {"video": "A", "hr_gt": 72.0, "hr_pred": 72.0},
        {"video": "B", "hr_gt": 78.0, "hr_pred": 80.0},
        {"video": "C", "hr_gt": 60.0, "hr_pred": 67.0},
    ]
    unrounded = ev.video_level(rows, ev.preset("freqphys", round_hr=False))
    assert [u["hr_pred"] for u in unrounded] == [72.25, 80.5, 66.9]
    per_window = ev.video_level(rows, ev.PRESETS["toolbox"])
    assert [(u["video"], u["hr_gt"], u["hr_pred"]) for u in per_window] == [
        (r.video, r.hr_gt, r.hr_pred) for r in rows
    ]


def test_summarize_matches_postprocess_hand_and_scipy() -> None:
    rows = [
        row("A", 0, 70.0, 72.0, snr=2.0, macc=0.9),
        row("A", 1, 74.0, 74.0, snr=4.0, macc=0.7),
        row("B", 0, 90.0, 84.0, snr=-1.0, macc=0.5),
        row("C", 0, 60.0, 61.0, snr=3.0, macc=0.8),
        row("D", 0, 100.0, 104.0, snr=0.0, macc=0.6),
    ]
    s = ev.summarize(rows, ev.PRESETS["freqphys"])
    gt = np.array([72.0, 90.0, 60.0, 100.0])
    pred = np.array([73.0, 84.0, 61.0, 104.0])
    e = pred - gt  # [1, -6, 1, 4]
    assert s["n_units"] == 4 and s["n_videos"] == 4
    assert s["mae"] == pytest.approx(12 / 4)
    assert s["rmse"] == pytest.approx(math.sqrt((1 + 36 + 1 + 16) / 4))
    assert s["mape"] == pytest.approx(100 * np.mean(np.abs(e) / gt))
    assert (s["mae"], s["mae_se"]) == pytest.approx(pp.mae(pred, gt))
    assert (s["rmse"], s["rmse_se"]) == pytest.approx(pp.rmse(pred, gt))
    assert (s["mape"], s["mape_se"]) == pytest.approx(pp.mape(pred, gt))
    r = stats.pearsonr(pred, gt)[0]
    assert s["pearson"] == pytest.approx(r)
    assert s["pearson_se"] == pytest.approx(math.sqrt((1 - r**2) / 2))
    assert s["snr"] == pytest.approx(1.6) and s["macc"] == pytest.approx(0.7)
    assert s["snr_se"] == pytest.approx(np.std([2.0, 4.0, -1.0, 3.0, 0.0]) / math.sqrt(5))
    tb = ev.summarize(rows, ev.PRESETS["toolbox"])
    assert tb["n_units"] == 5 and tb["n_videos"] == 4
    assert tb["mae"] == pytest.approx((2 + 0 + 6 + 1 + 4) / 5)


def test_pearson_nan_below_three_units() -> None:
    s = ev.summarize([row("A", 0, 70, 71), row("B", 0, 80, 84)], ev.PRESETS["toolbox"])
    assert math.isnan(s["pearson"]) and math.isnan(s["pearson_se"])
    assert s["mae"] == pytest.approx(2.5)
    with pytest.raises(AffectkitError):
        ev.summarize([], ev.PRESETS["toolbox"])


# ---- files -------------------------------------------------------------------------------------------


def test_windows_csv_round_trip(tmp_path) -> None:
    rows = [row("A", 0, 72.0, 70.3125, snr=1 / 3, macc=0.123456789012345), row("B,x", 1, 61.5, 0.1 + 0.2)]
    path = tmp_path / "windows.csv"
    ev.write_windows_csv(path, rows)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == ev.CSV_HEADER
        back = list(reader)
    assert tuple(ev.CSV_HEADER) == ("video", "window", "start_s", "end_s", "hr_gt", "hr_pred", "snr", "macc")
    for got, want in zip(back, rows, strict=True):
        assert got["video"] == want.video and int(got["window"]) == want.window
        for key in ("start_s", "end_s", "hr_gt", "hr_pred", "snr", "macc"):
            assert float(got[key]) == getattr(want, key)
    assert [p.name for p in tmp_path.iterdir()] == ["windows.csv"]


def test_csv_failure_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "windows.csv"
    path.write_text("old\n")

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(AffectkitError, match="windows.csv"):
        ev.write_windows_csv(path, [row("A", 0, 72, 72)])
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["windows.csv"]


def test_bland_altman_stats_by_hand() -> None:
    units = [
        {"video": "a", "hr_gt": 72.0, "hr_pred": 70.0},
        {"video": "b", "hr_gt": 74.0, "hr_pred": 75.0},
        {"video": "c", "hr_gt": 77.0, "hr_pred": 80.0},
        {"video": "d", "hr_gt": 85.0, "hr_pred": 90.0},
    ]  # d = [-2, 1, 3, 5]: mean 1.75, squared deviations sum 26.75, SD = sqrt(26.75 / 3)
    bias, lo, hi = ev.bland_altman_stats(units)
    sd = math.sqrt(26.75 / 3)
    assert bias == pytest.approx(1.75)
    assert lo == pytest.approx(1.75 - 1.96 * sd) and hi == pytest.approx(1.75 + 1.96 * sd)
    assert lo == pytest.approx(-4.10272, abs=1e-4)


def test_pngs_are_written(tmp_path) -> None:
    units = [{"video": str(k), "hr_gt": 60.0 + 5 * k, "hr_pred": 61.0 + 5 * k + (-1) ** k} for k in range(6)]
    ba = tmp_path / "bland_altman.png"
    ev.bland_altman_png(ba, units)
    assert ba.read_bytes()[:8] == PNG_MAGIC
    x = sine(72, 30) + 0.2 * np.random.default_rng(4).normal(size=900)
    rows = ev.predict_windows("clip", x, FS, ev.PRESETS["freqphys"])
    tr = tmp_path / "trace.png"
    ev.trace_plot_png(tr, x, FS, rows, "clip: 72 bpm")
    assert tr.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bland_altman.png", "trace.png"]


def test_png_failure_mid_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    def half_write(self, fname, **kwargs) -> None:
        with open(fname, "wb") as fh:
            fh.write(PNG_MAGIC + b"partial")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", half_write)
    units = [{"video": "a", "hr_gt": 70.0, "hr_pred": 71.0}, {"video": "b", "hr_gt": 80.0, "hr_pred": 78.0}]
    with pytest.raises(RuntimeError, match="renderer"):
        ev.bland_altman_png(tmp_path / "ba.png", units)
    x = sine(72, 12)
    with pytest.raises(RuntimeError, match="renderer"):
        ev.trace_plot_png(tmp_path / "trace.png", x, FS, [], "t")
    assert list(tmp_path.iterdir()) == []


def test_freqphys_windows_are_full_clips_every_half_second() -> None:
    from affectkit.tasks.rppg.metrics import PRESETS, windows

    p = PRESETS["freqphys"]
    spans = windows(900, 30.0, p.window_s, 10, p.hop_s)
    # CVD's rule: clip i starts at floor(0.5 * fps * i), (N - 300) / fps * 2 + 1 full clips fit
    assert spans[:3] == [(0, 300), (15, 315), (30, 330)]
    assert spans[-1] == (600, 900) and len(spans) == 41
    assert windows(299, 30.0, p.window_s, 10, p.hop_s) == []
    assert windows(500, 25.0, 10.0, 10, 0.5)[1] == (12, 262)
