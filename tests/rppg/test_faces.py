"""Face tracker scheduling/smoothing and the geometric CVD ROI masks (OpenCV Haar cascade, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from affectkit.tasks.rppg.faces import FaceTracker, roi_masks  # noqa: E402

ASTRONAUT = Path(np.__file__).parents[1] / "skimage" / "data" / "astronaut.png"


def astronaut_frame(w: int = 160, h: int = 120) -> np.ndarray:
    """RGB frame: the 320 x 240 crop of skimage's astronaut photograph around the face, resized."""
    if not ASTRONAUT.is_file():
        pytest.skip("skimage's astronaut.png is not installed")
    img = cv2.imread(str(ASTRONAUT))[0:240, 60:380, ::-1]
    return cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_AREA)


class ScriptedTracker(FaceTracker):
    """A tracker whose detector returns scripted boxes and records the frames it ran on."""

    def __init__(self, script: dict[int, np.ndarray], **kw):
        super().__init__(**kw)
        self.script = script
        self.calls: list[int] = []

    def detect(self, frame_rgb):
        self.calls.append(self._index)
        box = self.script.get(self._index)
        return None if box is None else np.asarray(box, np.float64)


def test_detects_astronaut_and_enlarges_about_centre():
    frame = astronaut_frame()
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(gray, 1.1, 3, minSize=(24, 24))
    assert len(faces) >= 1
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    tracker = FaceTracker()
    box, found = tracker.update(frame)
    assert found
    expect = np.round([x - 0.25 * w, y - 0.25 * h, x + 1.25 * w, y + 1.25 * h]).clip(0, [160, 120, 160, 120])
    np.testing.assert_array_equal(box, expect)
    # the next frame is not a detection frame: box carried, found False
    box2, found2 = tracker.update(frame)
    assert not found2
    np.testing.assert_array_equal(box2, box)


def test_no_box_before_first_face_and_search_schedule():
    t = ScriptedTracker({}, detect_every=10)
    frame = np.zeros((40, 50, 3), np.uint8)
    for _ in range(55):
        assert t.update(frame) == (None, False)
    # every frame for the first 30 while nothing is found, then every 10th
    assert t.calls == list(range(30)) + [30, 40, 50]


def test_schedule_after_face_and_ema_smoothing():
    a = np.array([10.0, 10.0, 40.0, 40.0])
    b = np.array([20.0, 0.0, 50.0, 30.0])
    t = ScriptedTracker({0: a, 10: b}, detect_every=10, smooth=0.3)
    frame = np.zeros((100, 100, 3), np.uint8)
    out = [t.update(frame) for _ in range(21)]
    assert t.calls == [0, 10, 20]
    np.testing.assert_array_equal(out[0][0], a)
    assert out[0][1] and not out[5][1] and out[10][1] and not out[20][1]
    np.testing.assert_array_equal(out[9][0], a)  # carried between detections
    np.testing.assert_array_equal(out[10][0], np.round(0.7 * a + 0.3 * b))  # [13, 7, 43, 37]
    np.testing.assert_array_equal(out[20][0], out[10][0])  # failed detection keeps the box


def test_box_clipped_to_frame():
    t = ScriptedTracker({0: np.array([-10.0, -5.0, 30.0, 90.0])})
    box, found = t.update(np.zeros((60, 80, 3), np.uint8))
    assert found
    np.testing.assert_array_equal(box, [0, 0, 30, 60])
    np.testing.assert_array_equal(t.raw_box(), [-10, -5, 30, 90])


def test_roi_masks_geometry_and_cache():
    w, h = 150, 150
    m = roi_masks(w, h)
    assert m.shape == (6, h, w) and m.dtype == bool
    assert m is roi_masks(w, h)  # cached
    assert not m.flags.writeable
    assert (m.sum((1, 2)) > 50).all()
    ys, xs = np.mgrid[0:h, 0:w]
    cx = [xs[m[k]].mean() for k in range(6)]
    cy = [ys[m[k]].mean() for k in range(6)]
    # CVD "left" = image left; cheeks mirror each other
    assert cx[0] < w / 2 and cx[1] < w / 2 and cx[2] > w / 2 and cx[3] > w / 2
    assert abs(cx[0] + cx[2] - w + 1) < 2 and abs(cy[0] - cy[2]) < 1
    assert cy[0] < cy[1] and cy[2] < cy[3]  # upper above lower
    assert cy[5] < min(cy[:4]) and cy[4] > max(cy[:4])  # forehead on top, mouth surround below
    assert abs(cx[4] - w / 2) < 2 and abs(cx[5] - w / 2) < 2
    # all ROIs lie within the Haar face (central 1/1.5 of the enlarged box), up to a small margin
    union = m.any(0)
    inner = np.zeros_like(union)
    inner[20:131, 20:131] = True
    assert not (union & ~inner).any()
    # cheek ROIs do not overlap the forehead or the mouth surround
    assert not (m[5] & m[:4].any(0)).any()


def test_roi_masks_scale_with_box_scale():
    m15 = roi_masks(90, 90, 1.5)
    m10 = roi_masks(60, 60, 1.0)
    # the same 60-px Haar face: the 1.5x box has a 15-px margin around the 1.0x one
    np.testing.assert_allclose(m15.sum((1, 2)), m10.sum((1, 2)), rtol=0.15)
    with pytest.raises(ValueError):
        roi_masks(0, 10)
