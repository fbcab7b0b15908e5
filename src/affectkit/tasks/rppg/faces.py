"""Face tracking for rPPG: OpenCV Haar-cascade boxes (the rPPG-Toolbox "HC" backend) and geometric ROIs.

Box (spec §4.3): the Haar box of the largest face, enlarged ``box_scale`` (toolbox ``LARGE_BOX_COEF`` 1.5)
about its centre. Unlike the toolbox, which detects once per video or per chunk and falls back to the
whole frame when no face is found, :class:`FaceTracker` re-detects every ``detect_every`` frames,
smooths the box coordinates with an exponential moving average and reports "no box" until a face was
found.

ROIs (spec §2.1 step 1): CVD's MSTmap uses six landmark polygons. No landmark model is available
offline, so :func:`roi_masks` places the same six polygons at fixed fractions of the (un-enlarged)
Haar face box, from a mean frontal 68-point landmark template - a documented deviation: the regions
follow the face box, not the actual facial features, so head rotation shifts them.

Side convention: the CVD ROI order is "left cheek upper, left cheek lower, right cheek upper, right
cheek lower, mouth surround, forehead", with the left cheek built from jaw points 0-2 (68-point
convention, 0-based) and the lower lid of the eye at points 36-41. Those points lie on the **image
left**, i.e. the subject's right. This module keeps CVD's geometry: "left" = image left (subject's
right), so row order and positions match maps built from landmarks.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from affectkit.tasks.rppg.frames import _cv2

__all__ = ["ROI_NAMES", "FaceTracker", "roi_masks"]

ROI_NAMES: tuple[str, ...] = (
    "left_cheek_upper",
    "left_cheek_lower",
    "right_cheek_upper",
    "right_cheek_lower",
    "mouth_surround",
    "forehead",
)
"""CVD ROI order; "left" = image left (the subject's right), see the module docstring."""

# Mean frontal 68-point landmarks (0-based indices) in Haar-face coordinates: u to the image right,
# v downwards, (0, 0) = top-left and (1, 1) = bottom-right corner of the Haar box. Only the points the
# CVD polygons use; right-side points mirror the left ones (u -> 1 - u).
_LEFT_POINTS: dict[int, tuple[float, float]] = {
    0: (0.07, 0.38),
    1: (0.08, 0.50),
    2: (0.10, 0.62),
    3: (0.13, 0.73),
    4: (0.18, 0.83),
    5: (0.25, 0.91),
    6: (0.33, 0.97),
    7: (0.41, 1.00),
    31: (0.41, 0.63),  # left nose wing
    41: (0.31, 0.43),  # lower lid, image-left eye
    48: (0.35, 0.78),  # mouth corner
    59: (0.40, 0.83),  # lower lip contour
    58: (0.45, 0.85),
}
_MIRROR: dict[int, int] = {0: 16, 1: 15, 2: 14, 3: 13, 4: 12, 5: 11, 6: 10, 7: 9, 31: 35, 41: 46, 48: 54,
                           59: 55, 58: 56}
_BROWS: tuple[tuple[float, float], ...] = (
    (0.14, 0.29), (0.20, 0.24), (0.27, 0.22), (0.34, 0.23), (0.41, 0.25),  # points 17-21
)
_EYE_CENTRE_V = 0.40
_INTER_EYE = 0.40  # distance between the eye centres (u = 0.30 and 0.70)


def _landmarks() -> dict[int, tuple[float, float]]:
    """The template points used by the CVD polygons, both sides, plus 8 (chin) and 57 (lip bottom)."""
    pts = dict(_LEFT_POINTS)
    for i, j in _MIRROR.items():
        u, v = _LEFT_POINTS[i]
        pts[j] = (1.0 - u, v)
    pts[8] = (0.50, 1.01)
    pts[57] = (0.50, 0.86)
    for k, (u, v) in enumerate(_BROWS):
        pts[17 + k] = (u, v)
        pts[26 - k] = (1.0 - u, v)
    return pts


def _forehead(pts: dict[int, tuple[float, float]]) -> list[tuple[float, float]]:
    """Brow points 17..26 and the same points moved up by 0.6 x inter-eye distance (CVD's forehead).

    With a frontal template the eye-centre -> brow-centre direction is straight up."""
    brows = [pts[i] for i in range(17, 27)]
    lift = 0.6 * _INTER_EYE
    top = [(u, v - lift) for u, v in reversed(brows)]
    return brows + top


def _polygons() -> list[list[tuple[float, float]]]:
    """The six CVD polygons in Haar-face coordinates, in ROI order."""
    p = _landmarks()
    idx = [
        [0, 1, 2, 31, 41],
        [2, 3, 4, 5, 48, 31],
        [16, 15, 14, 35, 46],
        [14, 13, 12, 11, 54, 35],
        [5, 6, 7, 8, 9, 10, 11, 54, 55, 56, 57, 58, 59, 48],
    ]
    return [[p[i] for i in poly] for poly in idx] + [_forehead(p)]


@lru_cache(maxsize=128)
def _roi_masks_cached(box_w: int, box_h: int, box_scale: float) -> np.ndarray:
    cv2 = _cv2()
    masks = np.zeros((6, box_h, box_w), np.uint8)
    for k, poly in enumerate(_polygons()):
        uv = np.asarray(poly, np.float64)
        # Haar-face coordinates -> enlarged-box pixels: the Haar face is the central 1/box_scale.
        x = ((uv[:, 0] - 0.5) / box_scale + 0.5) * box_w
        y = ((uv[:, 1] - 0.5) / box_scale + 0.5) * box_h
        pts = np.round(np.stack([x, y], 1) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(masks[k], [pts], 1, lineType=cv2.LINE_8, shift=4)
    out = masks.astype(bool)
    out.setflags(write=False)
    return out


def roi_masks(box_w: int, box_h: int, box_scale: float = 1.5) -> np.ndarray:
    """Six boolean ROI masks ``[6, box_h, box_w]`` for a face box of that size (read-only, cached per size).

    The box is the Haar box enlarged ``box_scale`` about its centre; ROIs are CVD's landmark polygons
    on a mean frontal template, in :data:`ROI_NAMES` order ("left" = image left)."""
    if box_w < 1 or box_h < 1:
        raise ValueError(f"box size must be positive, got {box_w} x {box_h}")
    return _roi_masks_cached(int(box_w), int(box_h), float(box_scale))


class FaceTracker:
    """Haar-cascade face box, re-detected every ``detect_every`` frames and EMA-smoothed in between.

    - Detection runs on frame 0, every ``detect_every``-th frame, and on every one of the first 30
      frames while no face has been found yet (after that only every ``detect_every``-th).
    - Frames wider than ``detect_width`` are downscaled (INTER_AREA) for detection; ``min_size`` is
      the smallest face side in pixels of that detection image. Cascade parameters are OpenCV's defaults
      (scaleFactor 1.1, minNeighbors 3), as the toolbox.
    - Among several faces the largest (area) is used; its box is enlarged ``box_scale`` about its centre.
      Once a face is known, re-detection searches near it first (see :meth:`detect`).
    - A new detection moves the box by ``smooth`` (EMA weight of the new box); the first is taken as is.
    """

    FIRST_SEARCH_FRAMES = 30

    def __init__(
        self, detect_every: int = 30, box_scale: float = 1.5, smooth: float = 0.3, detect_width: int = 320,
        min_size: int = 24, deadband: float = 0.08,
    ):
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        if not 0.0 < smooth <= 1.0:
            raise ValueError("smooth must be in (0, 1]")
        self.detect_every = int(detect_every)
        self.box_scale = float(box_scale)
        self.smooth = float(smooth)
        self.detect_width = int(detect_width)
        self.min_size = int(min_size)
        self.deadband = float(deadband)
        cv2 = _cv2()
        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._cascade.empty():
            raise RuntimeError("cannot load OpenCV's haarcascade_frontalface_default.xml")
        self.reset()

    def reset(self) -> None:
        """Forget the box and the frame counter (start of a new video)."""
        self._index = 0
        self._box: np.ndarray | None = None  # smoothed float box x0, y0, x1, y1 (unclipped)

    def detect(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """The enlarged float box ``x0, y0, x1, y1`` of the largest Haar face, or None.

        With a current box, the cascade first searches only a window of twice the enlarged box around
        it, for faces of 0.5-2x the current size (several times faster); if that finds nothing, it
        searches the whole frame."""
        if self._box is not None:
            h, w = frame_rgb.shape[:2]
            cx, cy = (self._box[0] + self._box[2]) / 2.0, (self._box[1] + self._box[3]) / 2.0
            half = max(self._box[2] - self._box[0], self._box[3] - self._box[1])  # 2x box, halved
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
            face = half / self.box_scale  # current Haar face side in pixels
            if x1 - x0 > 8 and y1 - y0 > 8:
                box = self._detect_in(frame_rgb[y0:y1, x0:x1], 0.5 * face, 2.0 * face)
                if box is not None:
                    return box + np.array([x0, y0, x0, y0], np.float64)
        return self._detect_in(frame_rgb, None, None)

    def _detect_in(self, image_rgb: np.ndarray, min_face: float | None, max_face: float | None):
        """Largest Haar face in ``image_rgb`` (optionally with face side limits in image pixels),
        enlarged, in image coordinates; None when there is none."""
        cv2 = self._cv2
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        scale = 1.0
        if gray.shape[1] > self.detect_width:
            scale = self.detect_width / gray.shape[1]
            size = (self.detect_width, max(1, round(gray.shape[0] * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        lo = self.min_size if min_face is None else max(self.min_size, int(min_face * scale))
        hi = (0, 0) if max_face is None else (int(max_face * scale) + 1,) * 2
        if hi[0] and hi[0] < lo:
            return None
        faces = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(lo, lo),
                                               maxSize=hi)
        if len(faces) == 0:
            return None
        faces = np.asarray(faces, np.float64) / scale
        x, y, w, h = faces[int(np.argmax(faces[:, 2] * faces[:, 3]))]
        cx, cy = x + w / 2.0, y + h / 2.0
        hw, hh = self.box_scale * w / 2.0, self.box_scale * h / 2.0
        return np.array([cx - hw, cy - hh, cx + hw, cy + hh])

    def _should_detect(self) -> bool:
        if self._index % self.detect_every == 0:
            return True
        return self._box is None and self._index < self.FIRST_SEARCH_FRAMES

    def raw_box(self) -> np.ndarray | None:
        """The current smoothed box rounded to ints but not clipped to the frame (None before a face)."""
        return None if self._box is None else np.round(self._box).astype(np.int64)

    def update(self, frame_rgb: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """Advance one frame: ``(box, detected)``.

        ``box`` is the smoothed ``x0, y0, x1, y1`` (int, clipped to the frame; None before the first
        face); ``detected`` is True when a detection ran on this frame and found a face."""
        found = False
        if self._should_detect():
            new = self.detect(frame_rgb)
            if new is not None:
                found = True
                if self._box is None:
                    self._box = new
                elif not self._within_deadband(new):
                    self._box = (1 - self.smooth) * self._box + self.smooth * new
        self._index += 1
        raw = self.raw_box()
        if raw is None:
            return None, found
        h, w = frame_rgb.shape[:2]
        return np.clip(raw, 0, [w, h, w, h]).astype(np.int64), found

    def _within_deadband(self, new: np.ndarray) -> bool:
        """True when every corner of ``new`` is within ``deadband`` x the box width of the current box:
        detector jitter on a still face then never moves the box (a box that jumps every
        ``detect_every`` frames puts colour steps into the traces)."""
        assert self._box is not None
        width = float(self._box[2] - self._box[0])
        return bool(np.all(np.abs(new - self._box) <= self.deadband * width))

    def roi_masks(self, box_w: int, box_h: int) -> np.ndarray:
        """:func:`roi_masks` for this tracker's ``box_scale``."""
        return roi_masks(box_w, box_h, self.box_scale)
