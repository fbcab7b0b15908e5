"""rPPG dataset loaders and splits on tiny fixtures written in each dataset's released layout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.rppg.data import (
    DATASETS,
    Recording,
    detect_dataset,
    load_dataset,
    split_recordings,
)
from affectkit.tasks.rppg.frames import FrameSource

cv2 = pytest.importorskip("cv2")

H, W = 24, 32


def write_avi(path: Path, n: int, fps: float = 30.0, seed: int = 0) -> None:
    """``n`` frames of 32x24 noise, MJPG in AVI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    rng = np.random.default_rng(seed)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    writer.release()


def row(values) -> str:
    return " ".join(f"{v:.6e}" for v in values)


def write_ubfc(root: Path, name: str, n: int = 20, gt_len: int | None = None) -> np.ndarray:
    """A DATASET_2 subject folder; returns the PPG row written."""
    k = n if gt_len is None else gt_len
    ppg = np.sin(np.arange(k) * 0.3)
    hr = 60.0 + np.arange(k)
    write_avi(root / name / "vid.avi", n)
    (root / name / "ground_truth.txt").write_text(f"{row(ppg)}\n{row(hr)}\n{row(np.arange(k) / 30)}\n")
    return ppg


def first_frame(rec: Recording) -> np.ndarray:
    return next(rec.source.frames())


def check_frame(rec: Recording) -> None:
    frame = first_frame(rec)
    assert frame.dtype == np.uint8 and frame.shape == (H, W, 3)


def fake(subject: str, dataset: str, root: Path | None = None) -> Recording:
    """A recording with no real frames, for split tests."""
    src = FrameSource(subject, 30.0, 0, lambda: iter(()))
    meta = {"dataset": dataset} | ({"root": str(root)} if root else {})
    return Recording(f"{subject}-x", subject, src, np.zeros(3), None, meta)


def subjects_of(split: dict[str, list[Recording]]) -> dict[str, list[str]]:
    return {k: sorted(r.subject for r in v) for k, v in split.items()}


# ------------------------------------------------------------------ UBFC-rPPG


def test_ubfc_loads_frames_and_ground_truth(tmp_path):
    ppg = write_ubfc(tmp_path, "subject38")
    write_ubfc(tmp_path, "subject1")
    assert detect_dataset(tmp_path) == "ubfc-rppg"
    recs = load_dataset(tmp_path)
    assert [r.id for r in recs] == ["subject1", "subject38"]
    rec = recs[1]
    assert rec.subject == "subject38" and rec.fps == pytest.approx(30.0)
    assert rec.bvp.dtype == np.float64 and len(rec.bvp) == rec.source.n_frames == 20
    np.testing.assert_allclose(rec.bvp, ppg, rtol=1e-6)
    np.testing.assert_allclose(rec.hr, 60.0 + np.arange(20), rtol=1e-6)
    check_frame(rec)
    assert load_dataset(tmp_path, "ubfc", fps=25.0)[0].fps == 25.0


@pytest.mark.parametrize("gt_len", [19, 21])
def test_ubfc_off_by_one_is_trimmed_or_padded(tmp_path, gt_len):
    ppg = write_ubfc(tmp_path, "subject5", n=20, gt_len=gt_len)
    rec = load_dataset(tmp_path, "ubfc-rppg")[0]
    expected = ppg[:20] if gt_len > 20 else np.append(ppg, ppg[-1])
    np.testing.assert_allclose(rec.bvp, expected, rtol=1e-6)


def test_ubfc_dataset1_xmp_resampled_to_frames(tmp_path):
    write_avi(tmp_path / "5-gt" / "vid.avi", 20)
    k = 50
    ppg = np.cos(np.arange(k) * 0.2) * 100
    lines = [f"{i * 16},{70 + i},98,{ppg[i]:.6f}" for i in range(k)]
    (tmp_path / "5-gt" / "gtdump.xmp").write_text("\n".join(lines) + "\n")
    rec = load_dataset(tmp_path)[0]
    expected = np.interp(np.linspace(0, k - 1, 20), np.arange(k), ppg)
    np.testing.assert_allclose(rec.bvp, expected, atol=1e-5)
    assert rec.hr[0] == pytest.approx(70) and rec.hr[-1] == pytest.approx(70 + k - 1)


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "not found"),
        ("", "empty"),
        ("1 2 3\n4 5 6\n", "expected 3"),
        ("1 nan 3\n4 5 6\n7 8 9\n", "NaN"),
        ("1 x 3\n4 5 6\n7 8 9\n", "non-numeric"),
        (
            " ".join(["1"] * 25) + "\n" + " ".join(["2"] * 25) + "\n" + " ".join(["3"] * 25) + "\n",
            "25 samples",
        ),
    ],
)
def test_ubfc_bad_ground_truth_names_the_file(tmp_path, content, problem):
    write_avi(tmp_path / "subject3" / "vid.avi", 20)
    gt = tmp_path / "subject3" / "ground_truth.txt"
    if content is not None:
        gt.write_text(content)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, "ubfc-rppg")
    assert "ground_truth.txt" in str(err.value) and problem in str(err.value)
    if problem == "25 samples":
        assert "20 frames" in str(err.value)


# ------------------------------------------------------------------ PURE


def write_pure(root: Path, seq: str, n: int = 8, t0: int = 999_960_000) -> tuple[np.ndarray, dict]:
    """A PURE sequence whose timestamps cross a power of ten (so name order != time order)."""
    img_dir = root / seq / seq
    img_dir.mkdir(parents=True)
    img_ts = t0 + np.arange(n, dtype=np.int64) * 33_333_333
    for i, t in enumerate(img_ts):
        cv2.imwrite(str(img_dir / f"Image{t}.png"), np.full((H, W, 3), 10 * i, np.uint8))
    pulse_ts = t0 - 50_000_000 + np.arange(30, dtype=np.int64) * 16_666_667
    data = {
        "/FullPackage": [
            {"Timestamp": int(t), "Value": {"waveform": int(10 * j % 97), "pulseRate": 60 + j}}
            for j, t in enumerate(pulse_ts)
        ],
        "/Image": [{"Timestamp": int(t)} for t in img_ts],
    }
    (root / seq / f"{seq}.json").write_text(json.dumps(data))
    return img_ts, data


def test_pure_interpolates_onto_image_timestamps(tmp_path):
    img_ts, data = write_pure(tmp_path, "01-02")
    write_pure(tmp_path, "05-01")
    assert detect_dataset(tmp_path) == "pure"
    recs = load_dataset(tmp_path)
    assert [(r.id, r.subject, r.meta["setup"]) for r in recs] == [
        ("01-02", "01", "02"),
        ("05-01", "05", "01"),
    ]
    rec = recs[0]
    assert rec.fps == pytest.approx(30.0, rel=1e-6)
    pkg = data["/FullPackage"]
    t_p = np.array([e["Timestamp"] for e in pkg], dtype=np.float64)
    wave = np.array([e["Value"]["waveform"] for e in pkg], dtype=np.float64)
    rate = np.array([e["Value"]["pulseRate"] for e in pkg], dtype=np.float64)
    np.testing.assert_allclose(rec.bvp, np.interp(img_ts.astype(np.float64), t_p, wave), atol=1e-6)
    np.testing.assert_allclose(rec.hr, np.interp(img_ts.astype(np.float64), t_p, rate), atol=1e-6)
    frames = list(rec.source.frames())
    assert len(frames) == len(rec.bvp) == 8
    assert [int(f[0, 0, 0]) for f in frames] == [10 * i for i in range(8)]  # sorted by timestamp
    check_frame(rec)


@pytest.mark.parametrize(
    "text, problem", [("{not json", "not valid JSON"), ('{"/Image": []}', "/FullPackage")]
)
def test_pure_bad_json_names_the_file(tmp_path, text, problem):
    write_pure(tmp_path, "02-01")
    (tmp_path / "02-01" / "02-01.json").write_text(text)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, "pure")
    assert "02-01.json" in str(err.value) and problem in str(err.value)


# ------------------------------------------------------------------ COHFACE


def test_cohface_interpolates_pulse_onto_frame_times(tmp_path):
    h5py = pytest.importorskip("h5py")
    for subj, sess in [("4", "0"), ("1", "1")]:
        folder = tmp_path / subj / sess
        write_avi(folder / "data.avi", 20, fps=20.0)
        t = 100.0 + np.arange(300) / 256.0
        with h5py.File(folder / "data.hdf5", "w") as f:
            f["pulse"] = np.sin(2 * np.pi * 1.2 * (t - 100.0))
            f["time"] = t
            f["respiration"] = np.zeros(300)
    assert detect_dataset(tmp_path) == "cohface"
    recs = load_dataset(tmp_path)
    assert [(r.id, r.subject, r.meta["session"]) for r in recs] == [("1-1", "1", "1"), ("4-0", "4", "0")]
    rec = recs[0]
    assert rec.fps == pytest.approx(20.0) and rec.hr is None
    np.testing.assert_allclose(rec.bvp, np.sin(2 * np.pi * 1.2 * np.arange(20) / 20.0), atol=1e-3)
    check_frame(rec)
    split = split_recordings(recs, "cohface")
    assert subjects_of(split) == {"train": ["1"], "valid": [], "test": ["4"]}


# ------------------------------------------------------------------ MMPD

MMPD_META = {
    "light": "LED-low",
    "motion": "Stationary",
    "exercise": "False",
    "skin_color": 3,
    "gender": "male",
    "glasser": "False",
    "hair_cover": "False",
    "makeup": "False",
}


def write_mmpd(root: Path, subj: int, k: int, n: int = 12, gt_len: int | None = None, floats: bool = False):
    rng = np.random.default_rng(subj * 10 + k)
    video = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    if floats:
        video = video.astype(np.float32) / 255.0
    ppg = np.sin(np.arange(gt_len or n) * 0.4)
    path = root / f"subject{subj}" / f"p{subj}_{k}.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"video": video, "GT_ppg": ppg[None, :], **MMPD_META})
    return path, video, ppg


def test_mmpd_reads_metadata_and_loads_video_lazily(tmp_path):
    _, video, ppg = write_mmpd(tmp_path, 27, 0)
    write_mmpd(tmp_path, 27, 1, floats=True)
    assert detect_dataset(tmp_path) == "mmpd"
    recs = load_dataset(tmp_path)
    assert [(r.id, r.subject) for r in recs] == [("p27_0", "subject27"), ("p27_1", "subject27")]
    rec = recs[0]
    assert rec.fps == 30.0 and rec.source.n_frames == 12
    np.testing.assert_allclose(rec.bvp, ppg)
    assert {k: rec.meta[k] for k in MMPD_META} == MMPD_META
    frames = list(rec.source.frames())
    assert len(frames) == 12 and np.array_equal(frames[0], video[0])
    check_frame(recs[1])


def test_mmpd_length_mismatch_names_the_mat(tmp_path):
    write_mmpd(tmp_path, 3, 0, n=12, gt_len=15)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, "mmpd")
    assert "p3_0.mat" in str(err.value) and "15 samples" in str(err.value)


def write_v73(path: Path, video: np.ndarray) -> None:
    """A minimal MATLAB v7.3 file: HDF5 with a 512-byte MAT header, arrays stored column-major."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        f["video"] = video.T
        f["video"].attrs["MATLAB_class"] = np.bytes_("uint8")
        f["GT_ppg"] = np.arange(float(len(video)))[:, None]
        f["GT_ppg"].attrs["MATLAB_class"] = np.bytes_("double")
        f["light"] = np.array([[ord(c)] for c in "LED-high"], dtype=np.uint16)
        f["light"].attrs["MATLAB_class"] = np.bytes_("char")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")


def test_mmpd_v73_mat_goes_through_h5py(tmp_path):
    pytest.importorskip("h5py")
    video = np.random.default_rng(0).integers(0, 256, (10, H, W, 3), dtype=np.uint8)
    write_v73(tmp_path / "subject1" / "p1_0.mat", video)
    rec = load_dataset(tmp_path, "mmpd")[0]
    assert rec.source.n_frames == 10 and rec.meta["light"] == "LED-high"
    np.testing.assert_allclose(rec.bvp, np.arange(10.0))
    assert np.array_equal(first_frame(rec), video[0])


def test_v73_without_h5py_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    write_v73(tmp_path / "subject1" / "p1_0.mat", np.zeros((4, H, W, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, "mmpd")
    assert "p1_0.mat" in str(err.value) and "h5py" in str(err.value) and "pip install h5py" in err.value.hint


# ------------------------------------------------------------------ VIPL-HR


def write_vipl(root: Path, p: str, v: str, s: str, n: int = 20, waves: int = 40) -> np.ndarray:
    folder = root / p / v / s
    write_avi(folder / "video.avi", n, fps=30.0)
    wave = np.sin(np.arange(waves) * 0.25)
    (folder / "wave.csv").write_text("Wave\n" + "\n".join(f"{x:.6f}" for x in wave) + "\n")
    (folder / "gt_HR.csv").write_text("HR\n70\n76\n")
    (folder / "time.txt").write_text("\n".join(str(40 * i) for i in range(n)) + "\n")
    return wave


def test_vipl_resamples_and_skips_nir(tmp_path):
    wave = write_vipl(tmp_path, "p1", "v1", "source1")
    write_vipl(tmp_path, "p1", "v1", "source2")
    write_vipl(tmp_path, "p1", "v1", "source4")
    write_vipl(tmp_path, "p2", "v3", "source1")
    assert detect_dataset(tmp_path) == "vipl-hr"
    recs = load_dataset(tmp_path, "vipl")
    assert [(r.id, r.subject) for r in recs] == [
        ("p1-v1-source1", "p1"),
        ("p1-v1-source2", "p1"),
        ("p2-v3-source1", "p2"),
    ]
    rec = recs[0]
    assert rec.fps == pytest.approx(25.0)  # 19 intervals over 760 ms
    assert rec.meta["scenario"] == "v1" and rec.meta["source"] == "source1"
    np.testing.assert_allclose(rec.bvp, np.interp(np.linspace(0, 39, 20), np.arange(40), wave), atol=1e-6)
    np.testing.assert_allclose(rec.hr, np.linspace(70, 76, 20))
    check_frame(rec)


@pytest.mark.parametrize(
    "text, problem",
    [(None, "not found"), ("Wave\n1\nnan\n", "NaN"), ("Wave\n1,2\n3,4\n", "columns"), ("Wave\n", "empty")],
)
def test_vipl_bad_wave_names_the_file(tmp_path, text, problem):
    write_vipl(tmp_path, "p1", "v1", "source1")
    wave = tmp_path / "p1" / "v1" / "source1" / "wave.csv"
    wave.unlink() if text is None else wave.write_text(text)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, "vipl-hr")
    assert "wave.csv" in str(err.value) and problem in str(err.value)


def test_vipl_folds_from_mat_files(tmp_path):
    recs = [fake(s, "vipl-hr", tmp_path) for s in ("p1", "p2", "p3", "p5")]
    scipy.io.savemat(tmp_path / "fold1.mat", {"fold1": np.array([[1, 5]], dtype=np.float64)})
    scipy.io.savemat(tmp_path / "fold2.mat", {"names": np.array(["p2", "p3"], dtype=object)})
    assert subjects_of(split_recordings(recs, "vipl-hr", fold=1)) == {
        "train": ["p2", "p3"],
        "valid": [],
        "test": ["p1", "p5"],
    }
    assert subjects_of(split_recordings(recs, "vipl-hr", fold=2))["test"] == ["p2", "p3"]
    with pytest.raises(UsageError):
        split_recordings(recs, "vipl-hr")
    with pytest.raises(DataError) as err:
        split_recordings(recs, "vipl-hr", fold=3)
    assert "fold3.mat" in str(err.value) and err.value.hint


# ------------------------------------------------------------------ splits


def test_protocol_splits_follow_the_spec():
    ubfc = [fake(f"subject{i}", "ubfc-rppg") for i in (1, 37, 38, 49)]
    assert subjects_of(split_recordings(ubfc, "ubfc-rppg")) == {
        "train": ["subject1", "subject37"],
        "valid": [],
        "test": ["subject38", "subject49"],
    }
    pure = [fake(s, "pure") for s in ("01", "04", "05", "10")]
    assert subjects_of(split_recordings(pure, "pure")) == {
        "train": ["05", "10"],
        "valid": [],
        "test": ["01", "04"],
    }
    mmpd = [fake(f"subject{i}", "mmpd") for i in (1, 23, 24, 26, 27, 33)]
    assert subjects_of(split_recordings(mmpd)) == {
        "train": ["subject1", "subject23"],
        "valid": ["subject24", "subject26"],
        "test": ["subject27", "subject33"],
    }
    cohface = [fake(s, "cohface") for s in ("3", "8", "40")]
    assert subjects_of(split_recordings(cohface, "cohface"))["test"] == ["40", "8"]


def test_splits_csv_overrides_and_fills_meta(tmp_path):
    recs = [fake(f"subject{i}", "ubfc-rppg", tmp_path) for i in (1, 38, 40)]
    (tmp_path / "splits.csv").write_text(
        "subject,split,subset\nsubject1,test,a\n38,valid,b\nsubject40,train,c\n"
    )
    split = split_recordings(recs, "ubfc-rppg")
    assert subjects_of(split) == {"train": ["subject40"], "valid": ["subject38"], "test": ["subject1"]}
    assert split["valid"][0].meta["subset"] == "b"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("subject,split\nsubject1,test\n", "subject38"),
        ("subject,split\nsubject1,dev\nsubject38,test\n", "dev"),
        ("name,fold\nsubject1,1\n", "subject,split"),
    ],
)
def test_splits_csv_errors_name_the_file(tmp_path, text, problem):
    recs = [fake(f"subject{i}", "ubfc-rppg", tmp_path) for i in (1, 38)]
    (tmp_path / "splits.csv").write_text(text)
    with pytest.raises(DataError) as err:
        split_recordings(recs, "ubfc-rppg")
    assert "splits.csv" in str(err.value) and problem in str(err.value)


def test_loaded_recordings_split_by_their_root(tmp_path):
    write_ubfc(tmp_path, "subject38")
    write_ubfc(tmp_path, "subject2")
    split = split_recordings(load_dataset(tmp_path), "ubfc-rppg")
    assert subjects_of(split) == {"train": ["subject2"], "valid": [], "test": ["subject38"]}


# ------------------------------------------------------------------ detection / names


def test_unknown_layout_and_name(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError) as err:
        detect_dataset(tmp_path)
    assert str(tmp_path) in str(err.value) and "vid.avi" in err.value.hint
    with pytest.raises(UsageError):
        load_dataset(tmp_path, "nope")
    with pytest.raises(DataError):
        load_dataset(tmp_path, "ubfc-rppg")  # no recordings
    assert DATASETS == ("ubfc-rppg", "pure", "cohface", "mmpd", "vipl-hr")
