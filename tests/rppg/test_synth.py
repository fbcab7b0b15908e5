"""The embedded rPPG benchmark (synth.py) and the real-PPG beat bank (ppg_source.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from affectkit.tasks.rppg import ppg_source, synth
from affectkit.tasks.rppg.baselines import chrom, green, pos
from affectkit.tasks.rppg.frames import open_video
from affectkit.tasks.rppg.postprocess import estimate_hr, hr_fft

cv2 = pytest.importorskip("cv2")

FS = 30.0
SEED = 0
SECONDS = 12.0  # accuracy videos (quick mode, shortened)
CLEAN_SUBJECT, HARD_SUBJECT = 10, 13  # test-split subjects of seed 0 (checked against the plan below)
COLUMNS = ["subject", "split", "subset", "hr_mean", "skin_tone", "face", "nuisances"]


def read_frames(path: Path) -> np.ndarray:
    """All frames of a video as RGB uint8 [T, H, W, 3], through affectkit's own reader."""
    return np.stack(list(open_video(path).frames()))


def read_gt(folder: Path) -> np.ndarray:
    return np.loadtxt(folder / "ground_truth.txt")


def face_box_rgb(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean RGB of the largest Haar face box of the first frame, enlarged 1.5x (toolbox HC crop)."""
    boxes = synth.detect_faces(frames[0])
    assert len(boxes), "no face found"
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    cx, cy, hw, hh = x + w / 2, y + h / 2, 0.75 * w, 0.75 * h
    height, width = frames.shape[1:3]
    x0, x1 = int(max(0, cx - hw)), int(min(width, cx + hw))
    y0, y1 = int(max(0, cy - hh)), int(min(height, cy + hh))
    return frames[:, y0:y1, x0:x1].reshape(len(frames), -1, 3).astype(np.float64).mean(axis=1)


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory) -> tuple[Path, dict]:
    """Every quick subject, shortened to 6 s."""
    out = tmp_path_factory.mktemp("rppg_quick")
    return out, synth.make(out, seed=SEED, quick=True, duration=6.0)


@pytest.fixture(scope="module")
def accuracy_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rppg_acc")
    synth.make(out, seed=SEED, quick=True, duration=SECONDS, subjects=[CLEAN_SUBJECT, HARD_SUBJECT])
    return out


def test_layout_splits_and_summary(quick_all):
    out, summary = quick_all
    assert (out / "README.txt").read_text().startswith("affectkit embedded rPPG benchmark")
    with (out / "splits.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert len(rows) == summary["n_videos"] == 14
    for row in rows:
        folder = out / row["subject"]
        assert (folder / "vid.avi").is_file() and (folder / "ground_truth.txt").is_file()
        assert row["split"] in {"train", "valid", "test"} and row["subset"] in {"clean", "hard"}
        assert row["face"] in synth.FACE_KINDS and 1 <= int(row["skin_tone"]) <= 6
        assert 40.0 <= float(row["hr_mean"]) <= 155.0
        assert ("flicker=" in row["nuisances"]) == (row["subset"] == "hard")
    count = {(s, b): sum(r["split"] == s and r["subset"] == b for r in rows)
             for s in ("train", "valid", "test") for b in ("clean", "hard")}
    assert count == {("train", "clean"): 3, ("train", "hard"): 3, ("valid", "clean"): 1, ("valid", "hard"): 1,
                     ("test", "clean"): 3, ("test", "hard"): 3}
    assert summary["counts"]["test"] == {"clean": 3, "hard": 3}
    assert summary["fps"] == FS and summary["size"] == [160, 120] and summary["frames"] == 180
    assert summary["ppg_source"] == "heartpy" and not summary["ppg_fallback"]


def test_ground_truth_matches_decoded_video(quick_all):
    out, _ = quick_all
    for folder in sorted(out.glob("subject*")):
        gt = read_gt(folder)
        src = open_video(folder / "vid.avi")
        frames = read_frames(folder / "vid.avi")
        assert gt.shape == (3, len(frames)) == (3, 180)
        assert src.fps == pytest.approx(FS) and frames.shape[1:] == (120, 160, 3)
        np.testing.assert_allclose(gt[2], np.arange(len(frames)) / FS, atol=1e-6)


def test_hr_row_matches_ppg_fft(quick_all):
    out, _ = quick_all
    for folder in sorted(out.glob("subject*")):
        ppg, hr, _ = read_gt(folder)
        assert abs(hr_fft(ppg, FS, nfft=8192) - hr.mean()) < 1.0, folder.name
        assert hr.min() > 40.0 and hr.max() < 160.0 and hr.std() > 0.3  # an instantaneous, varying HR


def test_haar_finds_a_face_in_every_first_frame(quick_all):
    out, _ = quick_all
    cascade = synth._haar()
    for folder in sorted(out.glob("subject*")):
        first = next(open_video(folder / "vid.avi").frames())
        assert len(synth.detect_faces(first, cascade)) >= 1, folder.name


def test_deterministic_given_seed(tmp_path):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synth.make(tmp_path / name, seed=seed, quick=True, duration=2.0, subjects=[1, 14])
        runs[name] = tmp_path / name
    for sub in ("subject1", "subject14"):
        gt = {k: (v / sub / "ground_truth.txt").read_bytes() for k, v in runs.items()}
        assert gt["a"] == gt["b"] and gt["a"] != gt["c"]
        np.testing.assert_array_equal(read_frames(runs["a"] / sub / "vid.avi"), read_frames(runs["b"] / sub / "vid.avi"))
    assert (runs["a"] / "splits.csv").read_text() == (runs["b"] / "splits.csv").read_text()


def test_plan_covers_hr_tones_and_keeps_flicker_off_the_pulse():
    plans = synth.plan_subjects(SEED, quick=False)
    assert len(plans) == 48 and sum(p.split == "test" and p.subset == "hard" for p in plans) == 12
    means = np.array([p.hr.mean() for p in plans])
    assert means.min() < 55 and means.max() > 140
    assert len({int(p.tone) for p in plans}) == 5 and max(p.tone for p in plans) > 4.0
    for p in plans:
        span = np.abs(p.hr - p.hr.mean()).max()
        assert 1.5 < span < 7.0
        if p.subset == "hard":
            f = 60.0 * p.flicker["hz"]
            assert 42.0 <= f <= 180.0 and np.abs(p.hr - f).min() >= 15.0
            assert 60 <= p.jpeg <= 75 and 3.0 <= p.motion["px"] <= 6.0
        else:
            assert not p.flicker and p.motion["px"] <= 1.0


def test_pos_and_chrom_recover_hr_on_a_clean_video(accuracy_set):
    plan = synth.plan_subjects(SEED, quick=True, duration=SECONDS)[CLEAN_SUBJECT - 1]
    assert (plan.split, plan.subset) == ("test", "clean") and 60 <= plan.hr.mean() <= 120
    folder = accuracy_set / f"subject{CLEAN_SUBJECT}"
    rgb = face_box_rgb(read_frames(folder / "vid.avi"))
    truth = read_gt(folder)[1].mean()
    for method in (pos, chrom):
        assert abs(estimate_hr(method(rgb, FS), FS, nfft=4096) - truth) < 1.0, method.__name__


def test_pos_resists_flicker_that_captures_green(accuracy_set):
    plan = synth.plan_subjects(SEED, quick=True, duration=SECONDS)[HARD_SUBJECT - 1]
    assert (plan.split, plan.subset) == ("test", "hard") and plan.flicker
    folder = accuracy_set / f"subject{HARD_SUBJECT}"
    rgb = face_box_rgb(read_frames(folder / "vid.avi"))
    truth = read_gt(folder)[1].mean()
    hr_pos = estimate_hr(pos(rgb, FS), FS, nfft=4096)
    hr_green = estimate_hr(green(rgb, FS), FS, nfft=4096)
    assert abs(hr_pos - truth) < 2.0
    assert abs(hr_green - truth) > 10.0
    assert abs(hr_green - 60.0 * plan.flicker["hz"]) < 2.0  # GREEN locked onto the flicker


def test_ppg_bank_is_real_and_follows_the_hr_curve():
    bank = ppg_source.load_bank()
    assert bank.source == "heartpy" and bank.templates.shape[0] > 500
    spectrum = np.abs(np.fft.rfft(bank.templates, axis=1))
    assert np.median(spectrum[:, 1] / spectrum[:, 2]) > 1.2  # volume waveform: fundamental dominates
    rng = np.random.default_rng(1)
    for bpm in (48.0, 72.0, 140.0):
        wave = ppg_source.synthesize(np.full(900, bpm), FS, rng)
        assert abs(hr_fft(wave, FS, nfft=8192) - bpm) < 0.5
        assert wave.mean() == pytest.approx(0.0, abs=1e-9) and wave.std() == pytest.approx(1.0)


def test_harmonic_fallback_is_flagged(tmp_path, monkeypatch):
    monkeypatch.setattr(ppg_source, "heartpy_data_dir", lambda: None)
    ppg_source.load_bank.cache_clear()
    try:
        summary = synth.make(tmp_path, seed=1, quick=True, duration=2.0, subjects=[1])
    finally:
        ppg_source.load_bank.cache_clear()
    assert summary["ppg_source"] == "harmonic" and summary["ppg_fallback"]
    assert "3-harmonic" in (tmp_path / "README.txt").read_text()


def test_size_argument_sets_the_frame_size(tmp_path):
    summary = synth.make(tmp_path, seed=2, quick=True, size=(320, 240), duration=1.0, subjects=[3])
    frames = read_frames(tmp_path / "subject3" / "vid.avi")
    assert summary["size"] == [320, 240] and frames.shape == (30, 240, 320, 3)
    assert len(synth.detect_faces(frames[0])) >= 1
