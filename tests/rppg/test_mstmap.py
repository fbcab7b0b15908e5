"""MSTmap construction (CVD / FreqPhys, spec §2.1) checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from affectkit.core.errors import DataError  # noqa: E402
from affectkit.tasks.rppg.mstmap import (  # noqa: E402
    SUBSETS,
    Clip,
    bvp_target,
    clip_hr,
    clip_starts,
    clip_tensors,
    make_clips,
    normalise_map,
    pbf_mask,
    read_clip_folder,
    read_mst_dataset,
    resample_to_length,
    subset_signals,
    write_clip_folder,
)
from affectkit.tasks.rppg.traces import Traces  # noqa: E402


def test_subsets_ff2n_order():
    assert SUBSETS.shape == (63, 6) and SUBSETS.dtype == bool
    assert SUBSETS[0].tolist() == [0, 0, 0, 0, 0, 1]
    assert SUBSETS[1].tolist() == [0, 0, 0, 0, 1, 0]
    assert SUBSETS[2].tolist() == [0, 0, 0, 0, 1, 1]
    assert SUBSETS[31].tolist() == [1, 0, 0, 0, 0, 0]
    assert SUBSETS[62].all()
    assert len({tuple(r) for r in SUBSETS.tolist()}) == 63 and SUBSETS.any(1).all()


def test_subset_weighting_by_hand():
    means = np.zeros((2, 6, 1))
    means[:, 4, 0] = [10.0, 1.0]  # ROI 5
    means[:, 5, 0] = [40.0, 4.0]  # ROI 6
    counts = np.zeros((2, 6))
    counts[:, 4] = [1, 3]
    counts[:, 5] = [3, 1]
    s = subset_signals(means, counts)
    assert s.shape == (63, 2, 1)
    np.testing.assert_allclose(s[0, :, 0], [40.0, 4.0])  # ROI 6 alone
    np.testing.assert_allclose(s[1, :, 0], [10.0, 1.0])  # ROI 5 alone
    # ROIs 5+6: (1*10 + 3*40) / 4 = 32.5 ; (3*1 + 1*4) / 4 = 1.75
    np.testing.assert_allclose(s[2, :, 0], [32.5, 1.75])
    assert (s[31] == 0).all()  # ROI 1 alone has no pixels -> 0
    np.testing.assert_allclose(s[62, :, 0], [32.5, 1.75])


def test_clip_starts():
    assert clip_starts(299, 30.0) == []
    assert clip_starts(300, 30.0) == []  # floor(0 / fps * 2) = 0 clips
    s30 = clip_starts(600, 30.0)  # floor(300 / 30 * 2) = 20 clips every 15 frames
    assert s30 == list(range(0, 300, 15))
    s25 = clip_starts(400, 25.0)  # floor(100 / 25 * 2) = 8 clips at floor(12.5 i)
    assert s25 == [0, 12, 25, 37, 50, 62, 75, 87]
    assert all(s + 300 <= 400 for s in s25)


def test_movmean_minmax_by_hand():
    sig = np.zeros((63, 4, 2))
    sig[:, :, 0] = [0.0, 3.0, 6.0, 3.0]
    sig[:, :, 1] = 7.0  # constant -> 0
    out = normalise_map(sig)
    # movmean: [1.5, 3, 4, 4.5] -> min-max: (x - 1.5) / 3 * 255
    np.testing.assert_allclose(out[0, :, 0], [0.0, 127.5, 212.5, 255.0], rtol=1e-6)
    assert out.dtype == np.float32 and (out[..., 1] == 0).all()


def test_pbf_24_bins():
    m = pbf_mask(300)
    assert m.shape == (151,) and m.sum() == 24
    f = np.flatnonzero(m) * 30.0 / 300
    np.testing.assert_allclose([f[0], f[-1]], [0.7, 3.0])


def test_clip_hr_of_sinusoid():
    t = np.arange(300) / 30.0
    assert clip_hr(np.sin(2 * np.pi * 1.2 * t) + 3.0) == 72.0


def test_resample_to_length():
    np.testing.assert_allclose(resample_to_length(np.array([0.0, 1.0, 2.0]), 5), [0, 0.5, 1, 1.5, 2])


def synthetic_traces(n: int, fps: float, hz: float = 1.2) -> tuple[Traces, np.ndarray]:
    t = np.arange(n) / fps
    p = np.sin(2 * np.pi * hz * t)
    means = np.zeros((n, 6, 6), np.float32)
    means[:] = np.array([180, 120, 95, 130, 110, 160], np.float32)
    means += (np.arange(1, 7)[None, :, None] * p[:, None, None]).astype(np.float32)
    counts = np.tile(np.arange(10, 70, 10, dtype=np.int32), (n, 1))
    tr = Traces(fps, means[:, 0, :3].astype(np.float64), means, counts, np.ones(n, bool),
                np.zeros((n, 4), np.int32))
    return tr, p


def test_make_clips_30fps_drop_and_hr():
    tr, p = synthetic_traces(420, 30.0)
    tr.found[350] = False
    clips = make_clips(tr, p, "vid")
    # floor(120 / 30 * 2) = 8 candidate clips at 0, 15, ..., 105; those covering frame 350 are dropped
    assert [c.index for c in clips] == [i for i in range(8) if not 15 * i <= 350 < 15 * i + 300] == [0, 1, 2, 3]
    c = clips[0]
    assert c.rgb.shape == (63, 300, 3) and c.rgb.dtype == np.uint8 and c.yuv.shape == (63, 300, 3)
    assert c.hr == 72.0 and c.bvp.dtype == np.float32
    np.testing.assert_allclose(c.bvp, p[:300], atol=1e-6)
    assert c.rgb.min() == 0 and c.rgb.max() == 255
    # rows are the normalised subset signals
    expect = np.round(normalise_map(subset_signals(tr.roi_means, tr.roi_counts)[:, :300]))
    np.testing.assert_array_equal(c.rgb, expect[..., :3].astype(np.uint8))


def test_make_clips_resamples_to_30fps():
    tr, p = synthetic_traces(500, 25.0)  # 20 s
    clips = make_clips(tr, p, "v25")
    # 500 frames at 25 fps -> floor(499 * 1.2) + 1 = 599 at 30 fps -> floor(299 / 30 * 2) = 19 clips
    assert len(clips) == 19 and clips[1].start == 15
    assert all(c.hr == 72.0 for c in clips)
    assert make_clips(tr, None, "v")[0].bvp is None


def test_clip_tensors():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (63, 300, 3), dtype=np.uint8)
    yuv = rng.integers(0, 256, (63, 300, 3), dtype=np.uint8)
    clip = Clip("v", 0, 0, rgb, yuv, np.sin(np.arange(300) / 5.0).astype(np.float32), 70.0)
    st, phys = clip_tensors(clip)
    assert st.shape == (12, 63, 300) and phys.shape == (6, 63, 300)
    assert st.dtype == np.float32 and phys.dtype == np.float32
    np.testing.assert_allclose(st[0, 3, 7], (rgb[3, 7, 0] / 255 - 0.49) / 0.26, rtol=1e-5)
    np.testing.assert_allclose(st[4, 3, 7], (yuv[3, 7, 1] / 255 - 0.49) / 0.26, rtol=1e-5)
    assert (st[6:, :, -1] == 0).all()
    d = st[0, 5, 11] - st[0, 5, 10]
    raw = np.diff(st[:6], axis=-1)
    np.testing.assert_allclose(st[6, 5, 10], d / np.concatenate([raw, np.zeros((6, 63, 1))], -1).std(), rtol=1e-4)
    # phys: only 24 in-band bins survive
    spec = np.abs(np.fft.rfft(phys.astype(np.float64), axis=-1))
    assert spec[..., ~pbf_mask(300)].max() < 1e-3
    b = bvp_target(clip)
    assert abs(b.mean()) < 1e-6 and abs(b.std() - 1) < 1e-5


def test_write_read_round_trip(tmp_path):
    tr, p = synthetic_traces(330, 30.0)
    clips = make_clips(tr, p, "subject1")
    root = tmp_path / "UBFC_MST"
    for c in clips:
        write_clip_folder(root, c)
    write_clip_folder(root, clips[0])  # overwrite is fine
    assert sorted(x.name for x in (root / "subject1").iterdir()) == ["0", "1"]
    assert sorted(x.name for x in (root / "subject1" / "0").iterdir()) == ["bvp.mat", "hr.mat", "img_rgb.png",
                                                                             "img_yuv.png"]
    back = read_mst_dataset(root)
    assert len(back) == 2
    for a, b in zip(clips, back, strict=True):
        assert (b.video, b.index, b.hr) == (a.video, a.index, a.hr)
        np.testing.assert_array_equal(b.rgb, a.rgb)
        np.testing.assert_array_equal(b.yuv, a.yuv)
        np.testing.assert_allclose(b.bvp, a.bvp, rtol=1e-6)
    # the PNG holds RGB in OpenCV's BGR order: channel 0 of the file is B
    png = cv2.imread(str(root / "subject1" / "0" / "img_rgb.png"))
    np.testing.assert_array_equal(png[..., 0], clips[0].rgb[..., 2])


def test_read_errors(tmp_path):
    tr, p = synthetic_traces(300 + 15, 30.0)
    clip = make_clips(tr, p, "v")[0]
    d = write_clip_folder(tmp_path, clip)
    (d / "img_yuv.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="img_yuv.png"):
        read_clip_folder(d)
    (d / "img_yuv.png").unlink()
    with pytest.raises(DataError, match="img_yuv.png.*not found"):
        read_clip_folder(d)
    cv2.imwrite(str(d / "img_yuv.png"), np.zeros((62, 300, 3), np.uint8))
    with pytest.raises(DataError, match="63 x L x 3"):
        read_clip_folder(d)
    cv2.imwrite(str(d / "img_yuv.png"), np.zeros((63, 300, 3), np.uint8))
    from scipy.io import savemat

    savemat(d / "hr.mat", {"HR": 70.0})
    with pytest.raises(DataError, match="hr.mat: missing key 'hr'"):
        read_clip_folder(d)
    with pytest.raises(DataError, match="no MSTmap clip"):
        read_mst_dataset(tmp_path / "v" / "0")
