"""The embedded TQD benchmark generator (synth.py): files, ground truth, the dilemma and paired clips."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.tqd import synth

cv2 = pytest.importorskip("cv2")

SEED = 0
SMALL = {"natural": 6, "golden": 2, "motion": 2, "quality": 2, "low": 2, "heldout": 2, "pairs": 2}


def read_meta(out: Path) -> list[dict[str, str]]:
    with (out / "meta.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def lap_var(clip: np.ndarray) -> float:
    """Sharpness proxy: variance of the Laplacian of the luma, averaged over frames."""
    luma = clip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(np.mean([cv2.Laplacian(f, cv2.CV_32F).var() for f in luma]))


def frame_diff(clip: np.ndarray) -> float:
    """Motion proxy: mean absolute difference between consecutive frames."""
    return float(np.abs(np.diff(clip.astype(np.float32), axis=0)).mean())


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, dict, list[dict[str, str]], list[np.ndarray]]:
    """The quick pool of seed 0, its truth, meta rows and decoded clips."""
    out = tmp_path_factory.mktemp("tqd_quick")
    truth = synth.make(out, seed=SEED, quick=True)
    rows = read_meta(out)
    return out, truth, rows, [synth.load_clip(out / r["path"]) for r in rows]


def test_meta_columns_types_and_counts(quick):
    out, truth, rows, clips = quick
    assert list(rows[0]) == list(synth.META_COLUMNS)
    assert len(rows) == truth["n_clips"] == sum(truth["subsets"].values())
    scale = 32 / synth.REF_SIZE
    for r in rows:
        speed, deg = float(r["speed"]), float(r["degradation"])
        assert r["type"] == synth.type_of(speed, deg)
        fast, clean = speed >= synth.FAST * scale, deg <= synth.CLEAN
        assert r["type"] == {(True, True): "golden", (True, False): "motion", (False, True): "quality",
                             (False, False): "low"}[(fast, clean)]
        assert r["aes"] == r["flow"] == r["vq"] == ""
        assert r["split"] in ("train", "test") and r["text"] and (out / r["path"]).is_file()
        assert r["path"].endswith(truth["codec"]["suffix"])
        if r["subset"] in synth.TYPES:  # typed subsets: generated inside their ranges
            lo, hi = synth.SUBSETS[r["subset"]]["speed"]
            assert lo * scale - 1e-4 <= speed <= hi * scale + 1e-4
            dlo, dhi = synth.SUBSETS[r["subset"]]["degradation"]
            assert dlo - 1e-6 <= deg <= dhi + 1e-6 and r["type"] == r["subset"] and r["split"] == "train"
        if r["subset"] == "heldout":
            assert r["split"] == "test" and r["type"] == "golden" and not r["pair"]
    counts = {}
    for r in rows:
        counts.setdefault(r["split"], dict.fromkeys(synth.TYPES, 0))[r["type"]] += 1
    assert counts == truth["counts"]
    # quick is about a sixth of the full pool: ~200 train clips, ~33 held-out golden, ~11 pairs
    assert 180 <= sum(truth["counts"]["train"].values()) <= 220 and truth["n_pairs"] >= 10
    assert truth["subsets"]["heldout"] >= 30
    # train and test never share content
    train = {r["content_seed"] for r in rows if r["split"] == "train"}
    assert not train & {r["content_seed"] for r in rows if r["split"] == "test"}
    assert all(c.shape == (16, 32, 32, 3) and c.dtype == np.uint8 for c in clips)


def test_pairs_share_content_and_differ_as_planned(quick):
    _, truth, rows, clips = quick
    pairs: dict[str, dict[str, int]] = {}
    for i, r in enumerate(rows):
        if r["pair"]:
            assert r["subset"] == "pair" and r["split"] == "test"
            pairs.setdefault(r["pair"], {})[r["variant"]] = i
    assert len(pairs) == truth["n_pairs"]
    for p in pairs.values():
        assert set(p) == {"golden", "degraded", "static"}
        g, d, s = (rows[p[v]] for v in ("golden", "degraded", "static"))
        assert g["content_seed"] == d["content_seed"] == s["content_seed"]
        assert (g["type"], d["type"], s["type"]) == ("golden", "motion", "quality")
        assert g["speed"] == d["speed"] and g["text"] == d["text"] and float(g["degradation"]) == 0.0
        # decoded from the files: the degraded clip is less sharp, the static one moves less
        assert lap_var(clips[p["degraded"]]) < 0.5 * lap_var(clips[p["golden"]])
        assert frame_diff(clips[p["static"]]) < 0.5 * frame_diff(clips[p["golden"]])


def test_natural_pool_shows_the_motion_quality_dilemma(quick):
    _, truth, rows, clips = quick
    nat = [i for i, r in enumerate(rows) if r["subset"] == "natural"]
    speed = [float(rows[i]["speed"]) for i in nat]
    assert truth["natural_spearman_speed_quality"] < -0.3
    assert synth.spearman(speed, [-float(rows[i]["degradation"]) for i in nat]) == pytest.approx(
        truth["natural_spearman_speed_quality"])
    assert synth.spearman(speed, [lap_var(clips[i]) for i in nat]) < -0.3
    # golden clips are scarce in the natural pool
    assert truth["natural_types"]["golden"] < min(truth["natural_types"][t] for t in ("motion", "quality"))


def test_decoded_clips_equal_a_rerender_from_meta(quick):
    out, truth, rows, clips = quick
    if not truth["codec"]["lossless"]:
        pytest.skip(f"codec {truth['codec']['name']} is lossy in this OpenCV build")
    for i in (0, 85, len(rows) - 2):
        r = rows[i]
        again = synth.render_clip(np.random.default_rng(int(r["content_seed"])), speed=float(r["speed"]),
                                  degradation=float(r["degradation"]), exposure=float(r["exposure"]))
        # the CSV keeps 6 significant digits: allow the odd rounding step
        assert np.abs(again.astype(int) - clips[i]).max() <= 2
        assert np.abs(again.astype(int) - clips[i]).mean() < 0.05


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ta = synth.make(a, seed=5, quick=True, counts=SMALL)
    synth.make(b, seed=5, quick=True, counts=SMALL)
    synth.make(c, seed=6, quick=True, counts=SMALL)
    assert (a / "meta.csv").read_bytes() == (b / "meta.csv").read_bytes()
    rows = read_meta(a)
    assert len(rows) == ta["n_clips"] == 6 + 8 + 2 + 6
    for r in rows:  # identical decoded frames, and (same OpenCV build) identical bytes
        assert np.array_equal(synth.load_clip(a / r["path"]), synth.load_clip(b / r["path"]))
        assert (a / r["path"]).read_bytes() == (b / r["path"]).read_bytes()
    assert (a / "meta.csv").read_bytes() != (c / "meta.csv").read_bytes()
    assert not np.array_equal(synth.load_clip(a / rows[0]["path"]), synth.load_clip(c / rows[0]["path"]))
    assert not list((a / "clips").glob(".*"))  # no temporary files left behind
    # a smaller pool written over a larger one leaves no stale clips
    synth.make(a, seed=5, quick=True, counts={**SMALL, "natural": 2})
    assert len(list((a / "clips").iterdir())) == len(read_meta(a)) == 18


def test_load_clip_errors_name_the_file(tmp_path, quick):
    out, _, rows, _ = quick
    data = (out / rows[0]["path"]).read_bytes()
    for name, payload in (("half.avi", data[: len(data) // 2]), ("head.avi", data[:200]), ("empty.avi", b""),
                          ("junk.avi", b"not a video at all")):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DataError, match=name):
            synth.load_clip(tmp_path / name)
    with pytest.raises(DataError, match="missing.avi: video not found"):
        synth.load_clip(tmp_path / "missing.avi")


def test_render_clip_knobs():
    info: dict = {}
    fast = synth.render_clip(np.random.default_rng(3), size=24, frames=8, speed=2.0, exposure=0.0, info=info)
    assert fast.shape == (8, 24, 24, 3) and fast.dtype == np.uint8
    assert {"blur_sigma", "resample", "noise_std", "jpeg_quality", "caption", "exposure"} <= set(info)
    # the scene does not depend on speed: at t = 0 (no blur, no degradation) both clips agree
    slow = synth.render_clip(np.random.default_rng(3), size=24, frames=8, speed=0.0, exposure=0.0)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(slow[0], slow[-1])
    assert not np.array_equal(fast[0], fast[-1])
    blurred = synth.render_clip(np.random.default_rng(3), size=24, frames=8, speed=2.0, exposure=1.0)
    sharp = synth.render_clip(np.random.default_rng(3), size=24, frames=8, speed=2.0, exposure=1.0,
                              motion_blur=False)
    assert np.array_equal(sharp, fast) and not np.array_equal(blurred, fast)
    grey = synth.render_clip(np.random.default_rng(3), channels=1, kind="checker", speed=1.0)
    assert grey.shape == (16, 32, 32, 1)
    sharp_lv = lap_var(np.repeat(grey, 3, -1))
    worse = synth.render_clip(np.random.default_rng(3), channels=1, kind="checker", speed=1.0, degradation=0.8)
    assert lap_var(np.repeat(worse, 3, -1)) < 0.5 * sharp_lv
    for bad in ({"degradation": 1.5}, {"channels": 2}, {"kind": "dots"}, {"speed": -1.0}):
        with pytest.raises(UsageError):
            synth.render_clip(np.random.default_rng(0), **bad)


def test_degradation_params_and_types():
    assert synth.degradation_params(0.0) == {"blur_sigma": 0.0, "resample": 1.0, "noise_std": 0.0, "jpeg_quality": 0}
    assert synth.degradation_params(1.0) == {"blur_sigma": 1.5, "resample": 3.0, "noise_std": 0.02,
                                             "jpeg_quality": 10}
    assert synth.degradation_params(0.5)["jpeg_quality"] == 50
    assert synth.type_of(1.6, 0.25) == "golden" and synth.type_of(1.59, 0.0) == "quality"
    assert synth.type_of(0.8, 0.1, size=16) == "golden" and synth.type_of(3.0, 0.3) == "motion"
    assert synth.type_of(0.2, 0.9) == "low"
    codec = synth.choose_codec()
    assert codec["name"] in {name for name, _, _ in synth.CODECS}
    assert synth.spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
