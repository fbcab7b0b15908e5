"""TQD data scoring on clips rendered here: textured squares moving at a known speed over a textured
background, degraded by a known Gaussian blur or JPEG quality, written as MJPG .avi files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.tqd import scoring
from affectkit.tasks.tqd.scoring import (
    ScoringWarning,
    assign_types,
    iter_frames,
    motion_score,
    processing_size,
    quality_features,
    score_videos,
    spearman,
    top_fraction_mean,
    vbench_is_dynamic,
    vq_score,
)

# ---- a tiny clip generator (independent of the task's synth.py) -----------------------------------

CANVAS = 256  # the scene is drawn on a 256-px canvas that spans a 64-px reference frame (4 px per px)
REF = 64


def _smooth_field(rng: np.random.Generator, sigma: float, contrast: float) -> np.ndarray:
    """Periodic Gaussian-smoothed white noise (seamless under wrap-around), std ``contrast``."""
    f = np.fft.fftfreq(CANVAS)
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((CANVAS, CANVAS))) * gain))
    return field / field.std() * contrast


def render_clip(path: Path, speed: float = 1.0, size: int = 64, seed: int = 0, blur: float = 0.0,
                jpeg: int | None = None, n: int = 16, fps: float = 8.0) -> Path:
    """Two textured squares (20 px of the 64-px frame) moving at ``speed`` px/frame of the 64-px frame in a
    seeded direction, over a smooth textured background; the scene scales with ``size`` (so size 128 is the
    same clip at 2x resolution, moving 2 * speed px/frame). ``blur``: Gaussian sigma in 64-px pixels;
    ``jpeg``: JPEG quality applied to each frame before the (MJPG) writer."""
    rng = np.random.default_rng(seed)
    background = 128 + _smooth_field(rng, 6.0, 30)
    texture = 128 + _smooth_field(rng, 2.5, 60)
    mask = np.zeros((CANVAS, CANVAS))
    side = CANVAS * 5 // 16
    for x, y in rng.integers(0, CANVAS - side, size=(2, 2)):
        mask[y : y + side, x : x + side] = 1.0
    angle = rng.uniform(0, 2 * np.pi)
    step = speed * CANVAS / REF
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    for t in range(n):
        shift = np.float64([[1, 0, step * t * np.cos(angle)], [0, 1, step * t * np.sin(angle)]])
        obj = cv2.warpAffine(texture, shift, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        alpha = cv2.warpAffine(mask, shift, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        img = cv2.resize(alpha * obj + (1 - alpha) * background, (size, size), interpolation=cv2.INTER_AREA)
        if blur > 0:
            img = cv2.GaussianBlur(img, (0, 0), blur * size / REF)
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if jpeg is not None:
            img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg])[1], cv2.IMREAD_GRAYSCALE)
        writer.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    writer.release()
    assert path.is_file() and path.stat().st_size > 0
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---- reading ------------------------------------------------------------------------------------


def test_processing_size_never_upsamples():
    assert processing_size(1080, 1920) == (256, 455)
    assert processing_size(1920, 1080) == (455, 256)
    assert processing_size(64, 48) == (64, 48)
    assert processing_size(300, 256, size=256) == (300, 256)
    with pytest.raises(UsageError):
        processing_size(10, 10, size=0)


def test_frames_are_taken_at_the_fixed_rate(tmp_path):
    clip = render_clip(tmp_path / "fast.avi", speed=1.0, n=48, fps=24.0)
    frames = list(iter_frames(clip, fps=8.0))
    assert [f.index for f in frames] == list(range(0, 48, 3))
    assert frames[1].time == pytest.approx(3 / 24)
    assert frames[0].image.shape == (64, 64, 3)
    big = render_clip(tmp_path / "big.avi", speed=1.0, size=128, n=4)
    f = next(iter_frames(big, size=32))
    assert f.image.shape == (32, 32, 3) and f.source.shape == (128, 128, 3)
    assert len(list(iter_frames(clip, fps=8.0, max_frames=5))) == 5


# ---- motion -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["farneback", "vbench"])
def test_motion_ranks_clips_by_true_speed(tmp_path, method):
    speeds = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]
    scores = [
        motion_score(iter_frames(render_clip(tmp_path / f"m{i}.avi", speed=v, seed=10 + i)), method).score
        for i, v in enumerate(speeds)
    ]
    assert spearman(scores, speeds) > 0.8
    assert scores[0] < 0.2 * scores[-1]


def test_vbench_statistic_tracks_the_normalised_object_speed(tmp_path):
    # 1.5 px/frame at 64 px = 6 px/frame at a 256-px short side; the top 5 % of magnitudes are the squares'
    r = motion_score(iter_frames(render_clip(tmp_path / "c.avi", speed=1.5, seed=3)), "vbench")
    assert r.score == pytest.approx(6.0, rel=0.2)
    assert r.n_frames == 16 and r.n_pairs == 15


@pytest.mark.parametrize("method", ["farneback", "vbench"])
def test_motion_score_is_normalised_for_resolution(tmp_path, method):
    for speed, seed in ((1.0, 4), (2.0, 5)):
        low = motion_score(iter_frames(render_clip(tmp_path / "lo.avi", speed, size=64, seed=seed)), method)
        high = motion_score(iter_frames(render_clip(tmp_path / "hi.avi", speed, size=128, seed=seed)), method)
        assert abs(high.score - low.score) <= 0.25 * low.score, (speed, low.score, high.score)


def test_motion_score_is_normalised_for_frame_rate(tmp_path):
    # the same motion per second: 3 px/frame at 8 fps, 1 px/frame at 24 fps (read back at 8 fps)
    slow = motion_score(iter_frames(render_clip(tmp_path / "a.avi", 3.0, seed=6, n=16, fps=8.0)))
    fast = motion_score(iter_frames(render_clip(tmp_path / "b.avi", 1.0, seed=6, n=46, fps=24.0)))
    assert fast.n_frames == slow.n_frames
    assert fast.score == pytest.approx(slow.score, rel=0.1)
    # bare arrays (no times) are taken as sampled at the reference rate
    frames = [f.image for f in iter_frames(tmp_path / "a.avi")]
    assert motion_score(frames).score == pytest.approx(slow.score, rel=1e-6)


def test_vbench_statistic_by_hand():
    mag = np.ones((10, 20))  # 200 pixels: the top 5 % are 10 of them
    mag.flat[:8] = 5.0
    mag.flat[50:52] = 13.0
    assert top_fraction_mean(mag) == pytest.approx((2 * 13 + 8 * 5) / 10)
    flow = np.zeros((10, 20, 2))
    flow[..., 0], flow[..., 1] = 3.0, 4.0  # magnitude 5 everywhere
    assert top_fraction_mean(np.hypot(flow[..., 0], flow[..., 1])) == pytest.approx(5.0)
    assert top_fraction_mean(np.arange(5.0)) == 4.0  # int(5 * 0.05) = 0 -> at least one value
    # 16 frames -> round(4 * 16 / 16) = 4 pairs must exceed 6.0 * short / 256
    assert not vbench_is_dynamic([7, 7, 7] + [1] * 12, n_frames=16)
    assert vbench_is_dynamic([7, 7, 7, 6.5] + [1] * 11, n_frames=16)
    assert not vbench_is_dynamic([6.0] * 15, n_frames=16)  # strictly above
    assert vbench_is_dynamic([3.5] * 4, n_frames=16, short_side=128)  # raw scores: threshold 3.0
    assert not vbench_is_dynamic([3.5] * 4, n_frames=16)
    assert vbench_is_dynamic([0.1], n_frames=2)  # round(0.5) = 0 pairs needed, as in VBench
    assert not vbench_is_dynamic([], n_frames=1)


def test_motion_scorer_on_a_uniform_shift():
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (64, 96)), (0, 0), 2.0)
    base = (base - base.min()) / np.ptp(base) * 255
    frames = [np.roll(base, 2 * t, axis=1).astype(np.uint8) for t in range(6)]
    r = motion_score(frames, "farneback")
    assert r.score == pytest.approx(2 * 256 / 64, rel=0.15)  # 2 px/frame at a 64-px short side
    assert r.is_dynamic  # 8 > 6 in every pair
    with pytest.raises(UsageError):
        motion_score(frames, "raft")
    assert math.isnan(motion_score(frames[:1]).score)


# ---- visual quality -----------------------------------------------------------------------------


def _vq_ladder(tmp_path: Path, key: str, levels: list, degradation: list[float]) -> tuple[list, list]:
    vq, deg = [], []
    for seed in (20, 21):
        for level, d in zip(levels, degradation, strict=True):
            clip = render_clip(tmp_path / f"{key}{seed}_{d}.avi", speed=1.0, seed=seed, **{key: level})
            vq.append(vq_score(quality_features(iter_frames(clip))))
            deg.append(d)
    return vq, deg


def test_vq_ranks_blur_levels(tmp_path):
    blurs = [0.0, 0.5, 1.0, 1.5, 2.0]
    vq, deg = _vq_ladder(tmp_path, "blur", blurs, blurs)
    assert spearman(vq, [-d for d in deg]) > 0.8


def test_vq_ranks_jpeg_levels(tmp_path):
    vq, deg = _vq_ladder(tmp_path, "jpeg", [None, 60, 30, 15, 8], [0, 1, 2, 3, 4])
    assert spearman(vq, [-d for d in deg]) > 0.8


def test_quality_features_by_hand():
    rng = np.random.default_rng(1)
    smooth = np.full((64, 64), 120.0)
    noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255)
    feats = quality_features([noisy.astype(np.uint8)])
    assert feats["noise"] == pytest.approx(8, rel=0.2)  # Immerkaer on a flat frame recovers sigma
    assert feats["hf_ratio"] > 0.6  # white noise: most power lies above half-Nyquist
    flat = quality_features([smooth.astype(np.uint8)])
    assert flat["sharpness"] == 0.0 and flat["noise"] == 0.0 and flat["blockiness"] == 1.0
    blocks = np.kron(rng.integers(60, 200, (8, 8)), np.ones((8, 8))).astype(np.uint8)  # an 8x8 mosaic
    assert quality_features([blocks])["blockiness"] > 10
    clean = dict(sharpness=1000.0, hf_ratio=0.3, blockiness=1.0, noise=1.0)
    assert vq_score(clean) > vq_score({**clean, "sharpness": 100.0})
    assert vq_score(clean) > vq_score({**clean, "blockiness": 1.5})
    assert vq_score(clean) > vq_score({**clean, "noise": 5.0})
    arr = vq_score({k: np.array([v, v]) for k, v in clean.items()})
    assert arr.shape == (2,) and arr[0] == pytest.approx(vq_score(clean))


# ---- types and statistics -----------------------------------------------------------------------


def test_assign_types_on_hand_arrays():
    flow = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, np.nan]
    vq = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 5]  # the motion-quality dilemma: perfectly anti-correlated
    # P70 = 6.3 and P50 = 4.5 on both axes
    t = assign_types(flow, vq)
    assert t == ["quality"] * 3 + ["low"] * 4 + ["motion"] * 3 + [""]
    t = assign_types([9, 8, 1, 0, 5, 5], [9, 1, 8, 0, 5, 5])
    assert t == ["golden", "motion", "quality", "low", "low", "low"]
    t = assign_types(flow[:10], vq[:10], motion_pct=50, quality_pct=50, low_pct=40)
    assert t == ["quality"] * 4 + ["low"] * 2 + ["motion"] * 4  # P50 = 4.5, P40 = 3.6 on both axes
    with pytest.raises(UsageError):
        assign_types(flow, vq, low_pct=80)
    with pytest.raises(UsageError):
        assign_types(flow, vq, motion_pct=120)
    assert assign_types([np.nan], [1.0]) == [""]


def test_spearman_helper():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, np.nan], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1], [2]))


# ---- whole sources ------------------------------------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    render_clip(src / "a_static.avi", speed=0.0, seed=30)
    render_clip(src / "b_fast_blurry.avi", speed=2.5, seed=31, blur=1.5)
    render_clip(src / "sub" / "c_fast_sharp.avi", speed=2.5, seed=32)
    render_clip(src / "d_slow_jpeg.avi", speed=0.25, seed=33, jpeg=10)
    render_clip(src / "e_mid.avi", speed=1.0, seed=34, blur=0.7)
    (src / "notes.txt").write_text("not a video")
    return src


def test_score_videos_on_a_folder(tmp_path):
    src = _folder(tmp_path)
    (src / "z_corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "meta" / "scores.csv"
    calls = []
    with pytest.warns(ScoringWarning, match="z_corrupt.mp4"):
        summary = score_videos(src, out, progress=lambda i, n, p: calls.append((i, n, Path(p).name)))
    assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
    assert calls[-1][2] == "z_corrupt.mp4"
    assert summary["n_videos"] == 6 and summary["n_scored"] == 5 and summary["n_failed"] == 1
    assert summary["failed"][0]["path"].endswith("z_corrupt.mp4")
    assert sum(summary["types"].values()) == 5
    rows = _read_csv(out)
    assert list(rows[0])[:6] == ["path", "text", "aes", "flow", "vq", "type"]
    assert {"sharpness", "hf_ratio", "blockiness", "noise", "dynamic", "n_frames", "score_error"} <= set(rows[0])
    assert [r["path"] for r in rows] == [
        "../videos/a_static.avi", "../videos/b_fast_blurry.avi", "../videos/d_slow_jpeg.avi",
        "../videos/e_mid.avi", "../videos/sub/c_fast_sharp.avi", "../videos/z_corrupt.mp4",
    ]
    by = {Path(r["path"]).stem: r for r in rows}
    bad = by["z_corrupt"]
    assert bad["flow"] == bad["vq"] == bad["type"] == bad["sharpness"] == ""
    assert "cannot open" in bad["score_error"]
    flow = {k: float(r["flow"]) for k, r in by.items() if r["flow"]}
    vq = {k: float(r["vq"]) for k, r in by.items() if r["vq"]}
    assert flow["a_static"] < flow["d_slow_jpeg"] < flow["e_mid"] < flow["c_fast_sharp"]
    assert vq["c_fast_sharp"] > vq["b_fast_blurry"] and vq["c_fast_sharp"] > vq["d_slow_jpeg"]
    assert by["c_fast_sharp"]["type"] == "golden"
    assert by["b_fast_blurry"]["type"] == "motion"
    assert all(r["score_error"] == "" and r["n_frames"] == "16" for k, r in by.items() if k != "z_corrupt")
    assert not list(out.parent.glob(".*tmp"))  # the temporary file was renamed into place


def test_score_videos_on_a_meta_csv(tmp_path):
    src = _folder(tmp_path)
    meta = src / "meta.csv"
    with open(meta, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "text", "speed", "split"])
        w.writerow(["a_static.avi", "a still scene", "0.0", "train"])
        w.writerow(["sub/c_fast_sharp.avi", "two squares, fast", "2.5", "test"])
        w.writerow(["missing.avi", "gone", "1.0", "train"])
        w.writerow([str(src / "b_fast_blurry.avi"), "", "2.5", "train"])
    messages = []

    class Sink:
        def warn(self, message: str) -> None:
            messages.append(message)

    out = src / "scored.csv"
    summary = score_videos(meta, out, method="vbench", output=Sink())
    assert summary["n_scored"] == 3 and summary["n_failed"] == 1 and summary["method"] == "vbench"
    assert len(messages) == 1 and "missing.avi" in messages[0] and "not found" in messages[0]
    rows = _read_csv(out)
    assert [r["path"] for r in rows] == ["a_static.avi", "sub/c_fast_sharp.avi", "missing.avi", "b_fast_blurry.avi"]
    assert [r["text"] for r in rows] == ["a still scene", "two squares, fast", "gone", ""]
    assert [r["speed"] for r in rows] == ["0.0", "2.5", "1.0", "2.5"]
    assert [r["split"] for r in rows] == ["train", "test", "train", "train"]
    assert rows[2]["flow"] == "" and rows[2]["type"] == ""
    assert float(rows[1]["flow"]) > 5 * float(rows[0]["flow"])
    assert rows[1]["dynamic"] == "1" and rows[0]["dynamic"] == "0"
    # on_error="skip" drops the row, "raise" stops on it
    score_videos(meta, out, on_error="skip", output=Sink())
    assert [r["path"] for r in _read_csv(out)] == ["a_static.avi", "sub/c_fast_sharp.avi", "b_fast_blurry.avi"]
    with pytest.raises(DataError, match="missing.avi"):
        score_videos(meta, tmp_path / "x.csv", on_error="raise")


def test_score_videos_with_a_plugged_quality_model(tmp_path):
    src = _folder(tmp_path)
    seen = []

    class Brightness:
        name = "brightness"

        def __call__(self, frames):
            arr = [f for f in frames]
            seen.append(arr[0].shape)
            return float(np.mean([f.mean() for f in arr]))

    scoring.register_quality_predictor("brightness-test", Brightness)
    try:
        summary = score_videos(src, tmp_path / "s.csv", vq_model="brightness-test")
    finally:
        scoring._PREDICTORS.pop("brightness-test")
    assert summary["vq_model"] == "brightness" and seen[0] == (64, 64, 3)
    assert all(60 < float(r["vq"]) < 200 for r in _read_csv(tmp_path / "s.csv"))
    with pytest.raises(UsageError):
        scoring.load_quality_predictor("no_such_module_xyz:Model")
    with pytest.raises(UsageError):
        scoring.load_quality_predictor("not-registered")
    pred = scoring.load_quality_predictor("statistics:fmean")  # a plain function gets the spec as its name
    assert pred.name == "statistics:fmean" and isinstance(pred, scoring.QualityPredictor)


def test_score_videos_bad_sources(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no video files"):
        score_videos(empty, tmp_path / "o.csv")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.mp4").write_bytes(b"")
    (broken / "y.avi").write_bytes(np.random.default_rng(1).bytes(2048))
    with pytest.warns(ScoringWarning), pytest.raises(DataError, match="none of its 2 video"):
        score_videos(broken, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    nopath = tmp_path / "nopath.csv"
    nopath.write_text("file,text\na.avi,x\n")
    with pytest.raises(DataError, match="no 'path' column"):
        score_videos(nopath, tmp_path / "o.csv")
    with pytest.raises(DataError, match="not found"):
        score_videos(tmp_path / "nowhere", tmp_path / "o.csv")
    with pytest.raises(UsageError):
        score_videos(empty, tmp_path / "o.csv", method="raft")


@pytest.fixture(scope="module")
def natural_pool(tmp_path_factory) -> list[dict[str, str]]:
    """The embedded generator's natural pool (240 clips: content, speed, degradation and exposure all
    random, motion blur coupled to speed), scored with both motion statistics."""
    from affectkit.tasks.tqd import synth

    out = tmp_path_factory.mktemp("tqd-natural")
    counts = {"natural": 240, "golden": 0, "motion": 0, "quality": 0, "low": 0, "heldout": 0, "pairs": 0}
    synth.make(out, seed=0, quick=True, counts=counts)
    rows = {}
    for method in ("farneback", "vbench"):
        score_videos(out / "meta.csv", out / f"{method}.csv", method=method)
        rows[method] = _read_csv(out / f"{method}.csv")
    return rows


def _column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows]


def test_scores_on_the_embedded_pool_rank_its_truth_and_show_the_dilemma(natural_pool):
    """On the generator's own mixed pool. Quality ranks degradation above 0.8 and motion and quality
    are anti-correlated (the dilemma) with either statistic. Motion ranks true speed above 0.8 only
    with content held fixed (test_motion_ranks_clips_by_true_speed); on the mixed pool Farneback at the
    clips' 32 px confounds speed with the moving area (the mean statistic) and with blur and noise, so
    the pinned values are what it measures (docs/tasks/tqd.md, Accuracy of scoring)."""
    for method, rows in natural_pool.items():
        speed, deg = _column(rows, "speed"), _column(rows, "degradation")
        flow, vq = _column(rows, "flow"), _column(rows, "vq")
        assert spearman(vq, [-d for d in deg]) > 0.8, method
        assert spearman(flow, vq) < -0.3, method
        assert spearman(flow, speed) > (0.75 if method == "vbench" else 0.6), method
