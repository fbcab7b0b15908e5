"""Streaming face traces from synthetic videos: face found, ROI means, pulse recovery, errors, I/O."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from tests.rppg.test_faces import ASTRONAUT, astronaut_frame  # noqa: E402

from affectkit.core.errors import DataError  # noqa: E402
from affectkit.tasks.rppg.faces import FaceTracker  # noqa: E402
from affectkit.tasks.rppg.frames import FrameSource, open_video  # noqa: E402
from affectkit.tasks.rppg.traces import (  # noqa: E402
    TraceExtractor,
    Traces,
    extract_traces,
    fill_missing,
    resample,
    rgb_to_yuv,
)

FPS = 30.0
N_FRAMES = 60
PULSE_HZ = 1.2


def pulse() -> np.ndarray:
    return np.sin(2 * np.pi * PULSE_HZ * np.arange(N_FRAMES) / FPS)


def write_avi(path, frames, fps=FPS):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(np.ascontiguousarray(f[:, :, ::-1]))
    vw.release()
    return path


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    """160x120 MJPG video of the astronaut with a 1.2 Hz, +-4 DN pulse added to G of the face region."""
    if not ASTRONAUT.is_file():
        pytest.skip("skimage's astronaut.png is not installed")
    base = astronaut_frame().astype(np.float64)
    p = pulse()
    frames = []
    for i in range(N_FRAMES):
        f = base.copy()
        f[28:86, 54:112, 1] += 4.0 * p[i]
        frames.append(np.clip(np.round(f), 0, 255).astype(np.uint8))
    return write_avi(tmp_path_factory.mktemp("vid") / "face.avi", frames)


class FixedTracker(FaceTracker):
    """A tracker whose detector always returns the same enlarged box."""

    def __init__(self, box, **kw):
        super().__init__(**kw)
        self.fixed = np.asarray(box, np.float64)

    def detect(self, frame_rgb):
        return self.fixed.copy()


def test_extract_traces_finds_face_and_pulse(face_video):
    src = open_video(face_video)
    seen = []
    tr = extract_traces(src, progress=seen.append)
    assert len(tr) == N_FRAMES and seen == list(range(1, N_FRAMES + 1))
    assert tr.found.all()
    assert tr.rgb.shape == (N_FRAMES, 3) and tr.rgb.dtype == np.float64
    assert tr.roi_means.shape == (N_FRAMES, 6, 6) and tr.roi_means.dtype == np.float32
    assert tr.roi_counts.dtype == np.int32 and (tr.roi_counts > 20).all()
    x0, y0, x1, y1 = tr.boxes[0]
    assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
    assert 60 <= x1 - x0 <= 90  # the ~51-px Haar face enlarged 1.5x
    # the pulse shows up in G of every cheek ROI, not in B
    p = pulse()
    for k in range(4):
        assert np.corrcoef(tr.roi_means[:, k, 1], p)[0, 1] > 0.9
        assert abs(np.corrcoef(tr.roi_means[:, k, 2], p)[0, 1]) < 0.5
    # Y, U, V columns are the spec formulas of the R, G, B columns
    np.testing.assert_allclose(tr.roi_means[..., 3:], rgb_to_yuv(tr.roi_means[..., :3]), atol=1e-3)


def test_max_frames(face_video):
    tr = extract_traces(open_video(face_video), max_frames=7)
    assert len(tr) == 7


def test_no_face_video_raises(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((120, 160, 3), 128, np.uint8) + rng.integers(0, 3, (120, 160, 3), dtype=np.uint8)
              for _ in range(12)]
    path = write_avi(tmp_path / "noface.avi", frames)
    with pytest.raises(DataError, match="no face found"):
        extract_traces(open_video(path))


def test_garbage_file_raises(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(DataError):
        extract_traces(open_video(bad))


def test_zero_frames_raises():
    src = FrameSource("empty", 30.0, 0, lambda: iter(()))
    with pytest.raises(DataError, match="no frame could be decoded"):
        extract_traces(src)


def test_yuv_formulas_known_pixel():
    y, u, v = rgb_to_yuv(np.array([200.0, 100.0, 50.0]))
    assert y == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # 124.2
    assert y == pytest.approx(124.2)
    assert u == pytest.approx(128 - 33.7472 - 33.1264 + 25.0)  # 86.1264
    assert v == pytest.approx(128 + 100.0 - 41.8688 - 4.0656)  # 182.0656


def test_uniform_frame_means_and_clipping():
    frame = np.empty((60, 80, 3), np.uint8)
    frame[:] = (200, 100, 50)
    ex = TraceExtractor(30.0, FixedTracker([10, 5, 55, 50]))
    ex.push(frame)
    ex_clip = TraceExtractor(30.0, FixedTracker([50, 20, 95, 65]))  # right and bottom parts off-frame
    ex_clip.push(frame)
    full, part = ex.result(), ex_clip.result()
    expect = np.array([200, 100, 50, 124.2, 86.1264, 182.0656])
    np.testing.assert_allclose(full.roi_means[0], np.tile(expect, (6, 1)), rtol=1e-6)
    np.testing.assert_allclose(full.rgb[0], [200, 100, 50])
    mask_counts = FaceTracker().roi_masks(45, 45).sum((1, 2))
    np.testing.assert_array_equal(full.roi_counts[0], mask_counts)
    np.testing.assert_array_equal(part.boxes[0], [50, 20, 80, 60])
    assert (part.roi_counts[0] < mask_counts).any() and (part.roi_counts[0] <= mask_counts).all()
    seen = part.roi_counts[0] > 0
    np.testing.assert_allclose(part.roi_means[0][seen], np.tile(expect, (seen.sum(), 1)), rtol=1e-6)
    assert (part.roi_means[0][~seen] == 0).all()


def test_frames_before_face_are_zero():
    class Late(FaceTracker):
        def detect(self, frame_rgb):
            return np.array([0.0, 0.0, 30.0, 30.0]) if self._index >= 3 else None

    ex = TraceExtractor(30.0, Late())
    frame = np.full((40, 40, 3), 90, np.uint8)
    for _ in range(5):
        ex.push(frame)
    tr = ex.result()
    np.testing.assert_array_equal(tr.found, [False, False, False, True, True])
    assert (tr.roi_means[:3] == 0).all() and (tr.rgb[:3] == 0).all() and (tr.boxes[:3] == 0).all()
    assert (tr.roi_means[3:, :, 0] == 90).all()


def test_save_load_round_trip_and_corrupt(tmp_path):
    rng = np.random.default_rng(1)
    t = Traces(25.0, rng.random((4, 3)), rng.random((4, 6, 6)).astype(np.float32),
               rng.integers(0, 9, (4, 6)).astype(np.int32), np.array([1, 0, 1, 1], bool),
               rng.integers(0, 99, (4, 4)).astype(np.int32))
    path = t.save(tmp_path / "sub" / "v.npz")
    assert [p.name for p in path.parent.iterdir()] == ["v.npz"]  # no temp file left behind
    u = Traces.load(path)
    assert u.fps == 25.0 and len(u) == 4
    for k in ("rgb", "roi_means", "roi_counts", "found", "boxes"):
        np.testing.assert_array_equal(getattr(u, k), getattr(t, k))
        assert getattr(u, k).dtype == getattr(t, k).dtype
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz"):
        Traces.load(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="missing"):
        Traces.load(tmp_path / "other.npz")


def test_fill_missing_nearest():
    x = np.array([[0.0], [1.0], [0.0], [0.0], [0.0], [5.0], [0.0]])
    found = np.array([0, 1, 0, 0, 0, 1, 0], bool)
    out = fill_missing(x, found)
    # frame 3 is 2 from both 1 and 5: the earlier wins
    np.testing.assert_array_equal(out[:, 0], [1, 1, 1, 1, 5, 5, 5])
    assert out is not x
    np.testing.assert_array_equal(fill_missing(x, np.zeros(7, bool)), x)


def test_resample_linear():
    x = np.arange(6, dtype=np.float64) * 2.0  # value = 2 * frame index, at 25 fps: 50 * t
    y = resample(x, 25.0, 30.0)
    # (6 - 1) * 30 / 25 = 6 -> 7 samples at t = k / 30
    np.testing.assert_allclose(y, 50.0 * np.arange(7) / 30.0)
    z = resample(np.stack([x, -x], 1).astype(np.float32), 25.0, 30.0)
    assert z.shape == (7, 2) and z.dtype == np.float32
    np.testing.assert_allclose(z[:, 1], -y, rtol=1e-6)
    np.testing.assert_array_equal(resample(x, 30.0, 30.0), x)
    assert resample(np.array([True, True, False]), 30.0, 60.0).tolist() == [1, 1, 1, 0.5, 0]
