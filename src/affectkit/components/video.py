"""Video reading and face boxes with OpenCV (opencv-python-headless < 5 ships the Haar cascades)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectkit.core.errors import DataError, UsageError


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UsageError("reading video needs OpenCV", "pip install 'affectkit[video]' (opencv-python-headless<5)") from None
    return cv2


@dataclass
class Video:
    frames: np.ndarray  # [T, H, W, 3] RGB uint8
    fps: float


def open_capture(path: str | Path):
    """An opened ``cv2.VideoCapture`` of a video file; DataError naming the file when it is missing,
    is a directory, or OpenCV cannot open it. The caller releases it."""
    cv2 = _cv2()
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "video not found" if not p.exists() else "expected a video file, found a directory")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise DataError(p, "cannot open video (corrupt, empty or unsupported codec)")
    return cap


def read_video(path: str | Path, max_frames: int | None = None) -> Video:
    cv2 = _cv2()
    p = Path(path)
    cap = open_capture(p)
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    cap.release()
    if not frames:
        raise DataError(p, "no frames could be decoded (corrupt or empty video)")
    return Video(np.stack(frames), fps)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade: the largest face, detected every ``every`` frames and
    carried between detections; boxes enlarged by ``scale`` and made square."""

    def __init__(self, every: int = 5, scale: float = 1.3, min_size: int = 24):
        cv2 = _cv2()
        data = getattr(cv2, "data", None)
        if data is None or not hasattr(cv2, "CascadeClassifier"):
            raise UsageError("this OpenCV build has no Haar cascades", "install opencv-python-headless<5")
        self.cascade = cv2.CascadeClassifier(str(Path(data.haarcascades) / "haarcascade_frontalface_default.xml"))
        self.every, self.scale, self.min_size = every, scale, min_size

    def boxes(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per frame (x0, y0, x1, y1) and a detection flag; frames before the first detection reuse it,
        and a video with no detection falls back to the whole frame (flag 0)."""
        cv2 = _cv2()
        t, h, w = frames.shape[:3]
        found = np.zeros(t, bool)
        raw: list[tuple[int, int, int, int] | None] = [None] * t
        for i in range(0, t, self.every):
            gray = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
            faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4,
                                                  minSize=(self.min_size, self.min_size))
            if len(faces):
                x, y, fw, fh = max(faces, key=lambda f: f[2] * f[3])
                raw[i] = (int(x), int(y), int(fw), int(fh))
                found[i] = True
        boxes = np.zeros((t, 4), int)
        last = next((r for r in raw if r is not None), None)
        for i in range(t):
            if raw[i] is not None:
                last = raw[i]
            if last is None:
                boxes[i] = (0, 0, w, h)
                continue
            x, y, fw, fh = last
            side = int(max(fw, fh) * self.scale)
            cx, cy = x + fw // 2, y + fh // 2
            x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
            boxes[i] = (x0, y0, min(w, x0 + side), min(h, y0 + side))
        return boxes, found if last is not None else np.zeros(t, bool)
